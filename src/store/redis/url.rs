//! `--store` addresses: `redis://[user[:password]@]host[:port][/db]`,
//! `rediss://` (TLS) and `unix:///path/redis.sock[?db=N]`.
//!
//! The password is a [`Secret`]: it has no `Display`, its `Debug` prints
//! `***`, and [`StoreUrl`]'s own `Display` leaves it out, so no error,
//! warning, `stats` line or stored argv can carry it by accident.

use std::fmt;
use std::path::PathBuf;

/// Environment variable with the password, for URLs that leave it out (so it
/// need not appear in a command line, where `ps` shows it to every user).
pub const ENV_PASSWORD: &str = "CACHEBACK_STORE_PASSWORD";
/// The store's address when `--store` is not given.
pub const ENV_STORE: &str = "CACHEBACK_STORE";

/// Every variable that configures the store, none of which the wrapped
/// command (or a hook) is given: see `exec::hide_store_credentials`.
pub const STORE_VARIABLES: [&str; 7] = [
    ENV_STORE,
    ENV_PASSWORD,
    "CACHEBACK_STORE_TIMEOUT",
    "CACHEBACK_STORE_CA_FILE",
    "CACHEBACK_STORE_MAX_VALUE",
    "CACHEBACK_STORE_PREFIX",
    "CACHEBACK_STORE_LEASE",
];

/// The Redis port when the URL gives none.
pub const DEFAULT_PORT: u16 = 6379;

/// A password, kept out of every printed form.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(password: String) -> Secret {
        Secret(password)
    }

    /// The password itself, for the `AUTH` command only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How to reach the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP.
    Tcp {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
    },
    /// TCP with TLS (`rediss://`).
    Tls {
        /// Host name or address, also the name the certificate must carry.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix-domain socket.
    Unix(PathBuf),
}

/// A parsed `--store` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// Where the server is.
    pub transport: Transport,
    /// The ACL user, if any (else `default`).
    pub user: Option<String>,
    /// The password, from the URL or [`ENV_PASSWORD`].
    pub password: Option<Secret>,
    /// The logical database.
    pub db: u32,
    /// With `rediss://`, the PEM file whose certificates alone are trusted
    /// (`--store-ca-file`); `None` trusts the system's roots. Never set by
    /// [`StoreUrl::parse`].
    pub ca_file: Option<PathBuf>,
}

impl StoreUrl {
    /// Parses an address; `env_password` is [`ENV_PASSWORD`]'s value, used
    /// when the URL carries no password. Errors never quote the password.
    pub fn parse(text: &str, env_password: Option<String>) -> Result<StoreUrl, String> {
        let invalid = |why: &str| {
            format!(
                "invalid store address '{}': {why} (expected redis://[user[:password]@]host[:port][/db], \
                 rediss://... or unix:///path/redis.sock)",
                redact(text)
            )
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        let mut url = match scheme {
            "redis" | "rediss" => {
                // The credentials end at the last `@`, wherever it is: a
                // host, port or database never holds one, and a password
                // may hold an unencoded `/` (base64 ones do).
                let (userinfo, address) = match rest.rsplit_once('@') {
                    Some((userinfo, address)) => (Some(userinfo), address),
                    None => (None, rest),
                };
                let (hostport, path) = address.split_once('/').unwrap_or((address, ""));
                let (host, port) = split_host_port(hostport).ok_or_else(|| invalid("bad port"))?;
                if host.is_empty() {
                    return Err(invalid("no host"));
                }
                let (user, password) = match userinfo {
                    None => (None, None),
                    Some(info) => {
                        let (user, password) = match info.split_once(':') {
                            Some((user, password)) => (user, Some(password)),
                            None => (info, None),
                        };
                        let user = percent_decode(user).ok_or_else(|| invalid("bad user"))?;
                        let password = password
                            .map(|p| percent_decode(p).ok_or_else(|| invalid("bad password")))
                            .transpose()?;
                        ((!user.is_empty()).then_some(user), password.map(Secret))
                    }
                };
                let db = match path {
                    "" => 0,
                    db => db
                        .parse()
                        .map_err(|_| invalid("the database is not a number"))?,
                };
                let host = host.to_owned();
                let port = port.unwrap_or(DEFAULT_PORT);
                let transport = if scheme == "rediss" {
                    Transport::Tls { host, port }
                } else {
                    Transport::Tcp { host, port }
                };
                StoreUrl {
                    transport,
                    user,
                    password,
                    db,
                    ca_file: None,
                }
            }
            "unix" => {
                let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
                if !path.starts_with('/') {
                    return Err(invalid("a socket path must be absolute"));
                }
                let db = match query.strip_prefix("db=") {
                    Some(db) => db
                        .parse()
                        .map_err(|_| invalid("the database is not a number"))?,
                    None if query.is_empty() => 0,
                    None => return Err(invalid("the only query is ?db=N")),
                };
                StoreUrl {
                    transport: Transport::Unix(PathBuf::from(path)),
                    user: None,
                    password: None,
                    db,
                    ca_file: None,
                }
            }
            _ => return Err(invalid("the scheme must be redis, rediss or unix")),
        };
        if url.password.is_none() {
            url.password = env_password.filter(|p| !p.is_empty()).map(Secret);
        }
        Ok(url)
    }
}

/// The address without its password, for messages.
impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.user.as_deref().map_or(String::new(), |user| {
            format!(
                "{user}{}@",
                if self.password.is_some() { ":***" } else { "" }
            )
        });
        match &self.transport {
            Transport::Tcp { host, port } => {
                write!(f, "redis://{user}{}:{port}/{}", bracket(host), self.db)
            }
            Transport::Tls { host, port } => {
                write!(f, "rediss://{user}{}:{port}/{}", bracket(host), self.db)
            }
            Transport::Unix(path) => write!(f, "unix://{}?db={}", path.display(), self.db),
        }
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `None` for a bad port.
fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((text, None)),
    }
}

/// Decodes `%XX` escapes (a password may hold `@`, `:` or `/`).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The text with everything that may be a credential hidden, for an error
/// about an address that did not parse (and so has no [`StoreUrl`] to
/// print): all between the scheme and the last `@` (which cannot be split
/// into user and password reliably before the address parses), and the value
/// of any `password=` parameter.
pub fn redact(text: &str) -> String {
    let mut shown = match text.split_once("://") {
        Some((scheme, rest)) => match rest.rfind('@') {
            Some(at) => format!("{scheme}://***{}", &rest[at..]),
            None => text.to_owned(),
        },
        // No scheme: an `@` still ends what may be credentials.
        None => match text.rfind('@') {
            Some(at) => format!("***{}", &text[at..]),
            None => text.to_owned(),
        },
    };
    let mut from = 0;
    while let Some(found) = shown[from..].to_ascii_lowercase().find("password=") {
        let start = from + found + "password=".len();
        let end = shown[start..]
            .find(['&', ';', '#'])
            .map_or(shown.len(), |end| start + end);
        shown.replace_range(start..end, "***");
        from = start + 3;
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> StoreUrl {
        StoreUrl::parse(text, None).unwrap()
    }

    #[test]
    fn every_documented_form_parses() {
        let url = parse("redis://cache:s3cr%40t@example.net:6380/2");
        assert_eq!(
            url.transport,
            Transport::Tcp {
                host: "example.net".into(),
                port: 6380
            }
        );
        assert_eq!(url.user.as_deref(), Some("cache"));
        assert_eq!(url.password.as_ref().map(Secret::expose), Some("s3cr@t"));
        assert_eq!(url.db, 2);
        assert_eq!(
            parse("redis://localhost").transport,
            Transport::Tcp {
                host: "localhost".into(),
                port: DEFAULT_PORT
            }
        );
        assert_eq!(
            parse("rediss://[::1]:7000").transport,
            Transport::Tls {
                host: "::1".into(),
                port: 7000
            }
        );
        let unix = parse("unix:///run/redis/redis.sock?db=3");
        assert_eq!(
            unix.transport,
            Transport::Unix("/run/redis/redis.sock".into())
        );
        assert_eq!(unix.db, 3);
        let only_password = parse("redis://:pw@h");
        assert_eq!(only_password.user, None);
        assert_eq!(
            only_password.password.as_ref().map(Secret::expose),
            Some("pw")
        );
    }

    #[test]
    fn the_environment_supplies_a_missing_password_only() {
        let from_env = StoreUrl::parse("redis://u@h", Some("envpw".into())).unwrap();
        assert_eq!(
            from_env.password.as_ref().map(Secret::expose),
            Some("envpw")
        );
        let from_url = StoreUrl::parse("redis://u:urlpw@h", Some("envpw".into())).unwrap();
        assert_eq!(
            from_url.password.as_ref().map(Secret::expose),
            Some("urlpw")
        );
    }

    #[test]
    fn no_printed_form_carries_the_password() {
        let url = parse("redis://cache:hunter2@h:1/0");
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        assert_eq!(url.to_string(), "redis://cache:***@h:1/0");
        for bad in [
            "redis://cache:hunter2@h:notaport",
            "redis://cache:hunter2@h:1/x",
            "ftp://cache:hunter2@h",
            "redis://cache:hunter2%zz@h",
            "redis://cache:hun/ter2@h:notaport",
            "redis://cache:hun@ter2@h:notaport",
            "rediss://hunter2@@h:x",
            "cache:hunter2@h:6379",
        ] {
            let err = StoreUrl::parse(bad, None).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(!err.contains("hun"), "{err}");
            assert!(err.contains("***@"), "{err}");
        }
        for bad in [
            "unix:///x.sock?password=hunter2",
            "unix:///x.sock?db=1&password=hunter2&x=1",
            "unix:///x.sock?PASSWORD=hunter2",
        ] {
            let err = StoreUrl::parse(bad, None).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.contains("=***"), "{err}");
        }
    }

    #[test]
    fn every_store_setting_is_listed_for_the_commands_environment() {
        use crate::two_tier::{ENV_CA_FILE, ENV_LEASE, ENV_MAX_VALUE, ENV_PREFIX, ENV_TIMEOUT};
        for name in [
            ENV_CA_FILE,
            ENV_LEASE,
            ENV_MAX_VALUE,
            ENV_PREFIX,
            ENV_TIMEOUT,
        ] {
            assert!(STORE_VARIABLES.contains(&name), "{name}");
        }
    }

    #[test]
    fn a_password_may_hold_an_unencoded_slash() {
        let url = parse("redis://base:ab/cd+ef==@host:6379/3");
        assert_eq!(
            url.password.as_ref().map(Secret::expose),
            Some("ab/cd+ef==")
        );
        assert_eq!(url.user.as_deref(), Some("base"));
        assert_eq!(url.db, 3);
        assert_eq!(url.to_string(), "redis://base:***@host:6379/3");
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "",
            "localhost:6379",
            "redis://",
            "redis://:6379",
            "unix://relative.sock",
            "unix:///s?x=1",
        ] {
            assert!(StoreUrl::parse(bad, None).is_err(), "{bad}");
        }
    }
}
