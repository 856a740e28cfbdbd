//! `rediss://` against a real `redis-server` with a TLS port, serving a
//! certificate from a throwaway CA that each test makes with the `openssl`
//! command line in a temp directory. Tests skip, saying so, without
//! `redis-server` or `openssl`.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cacheback::key::{Key, KeyInputs};
use cacheback::store::redis::{
    Connection, Fleet, FleetMeta, Published, StoreError, StoreUrl, Value,
};

use crate::redis_harness::RedisServer;

/// Generous, for a busy 2-core machine: the point is that it is bounded.
const BOUNDED: Duration = Duration::from_secs(5);

/// A CA and a server certificate it signed for IP 127.0.0.1 and DNS localhost.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// `None` (the test skips) where `openssl` is not installed.
    fn new(test: &str) -> Option<Pki> {
        if !crate::harness::installed("openssl", test) {
            return None;
        }
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        pki.new_ca("ca");
        pki.sign("server", "IP:127.0.0.1, DNS:localhost");
        Some(pki)
    }

    /// `NAME.pem` and `NAME.key`: a certificate for these subject
    /// alternative names, signed by the CA. An EC key under an RSA CA, so
    /// both kinds of signature get checked.
    fn sign(&self, name: &str, names: &str) {
        self.openssl(&format!(
            "req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout {name}.key -out {name}.csr -subj /CN={name}"
        ));
        fs::write(
            self.path(&format!("{name}.ext")),
            format!(
                "subjectAltName = {names}\n\
                 basicConstraints = CA:FALSE\n\
                 keyUsage = digitalSignature\n\
                 extendedKeyUsage = serverAuth\n"
            ),
        )
        .unwrap();
        self.openssl(&format!(
            "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2 \
             -extfile {name}.ext -out {name}.pem"
        ));
    }

    /// Another self-signed CA, `NAME.pem`, that signed nothing of ours.
    fn new_ca(&self, name: &str) -> PathBuf {
        self.openssl(&format!(
            "req -x509 -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.pem -days 2 \
             -subj /CN=cacheback-test-{name}"
        ));
        self.path(&format!("{name}.pem"))
    }

    /// Runs `openssl` in the directory with these (space-separated) arguments.
    fn openssl(&self, args: &str) {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("running openssl");
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A redis-server with a TLS port serving the server certificate.
    fn server(&self, config: &[&str], test: &str) -> Option<RedisServer> {
        self.server_with("server", config, test)
    }

    /// A redis-server with a TLS port serving certificate `NAME` (see [`Pki::sign`]).
    fn server_with(&self, name: &str, config: &[&str], test: &str) -> Option<RedisServer> {
        RedisServer::start_tls(
            config,
            &self.path(&format!("{name}.pem")),
            &self.path(&format!("{name}.key")),
            test,
        )
    }
}

fn url(text: &str, ca_file: Option<&Path>) -> StoreUrl {
    let mut url = StoreUrl::parse(text, None).unwrap();
    url.ca_file = ca_file.map(Path::to_path_buf);
    url
}

fn open(url: &StoreUrl) -> Result<Connection, StoreError> {
    Connection::open(url, Duration::from_secs(2), Duration::from_secs(5))
}

fn key(name: &str) -> Key {
    KeyInputs {
        argv: vec![name.as_bytes().to_vec()],
        ..KeyInputs::default()
    }
    .key()
}

fn meta(stdout_len: u64, stderr_len: u64) -> FleetMeta {
    FleetMeta {
        generation: 0,
        finished_ms: 1000,
        duration_ms: 5,
        exit_code: 0,
        jitter_ms: 7,
        flags: 0,
        stdout_len,
        stderr_len,
        details: b"\x00details\xff".to_vec(),
        digest: None,
    }
}

fn tls_port(server: &RedisServer) -> u16 {
    server.tls_port.expect("started with TLS")
}

#[test]
fn with_the_ca_file_commands_run_over_tls_to_an_address_or_a_name() {
    let test = "with_the_ca_file_commands_run_over_tls";
    let Some(pki) = Pki::new(test) else { return };
    let Some(server) = pki.server(&[], test) else {
        return;
    };
    let port = tls_port(&server);
    let ca = pki.ca();
    let mut by_ip = open(&url(&format!("rediss://127.0.0.1:{port}/2"), Some(&ca))).unwrap();
    assert_eq!(
        by_ip.command(&[b"SET", b"k", b"over tls"]).unwrap(),
        Value::Simple("OK".into())
    );
    let mut by_name = open(&url(&format!("rediss://localhost:{port}/2"), Some(&ca))).unwrap();
    assert_eq!(
        by_name.command(&[b"GET", b"k"]).unwrap(),
        Value::Bulk(Some(b"over tls".to_vec())),
        "the same database, selected over TLS"
    );
    let replies = by_ip
        .pipeline(&[&[b"INCR", b"n"], &[b"INCR", b"n"], &[b"GET", b"n"]])
        .unwrap();
    assert_eq!(replies[2], Value::Bulk(Some(b"2".to_vec())));
    // What went over TLS is what the plain socket sees.
    let mut plain = open(&url(
        &format!("unix://{}?db=2", server.socket.display()),
        None,
    ))
    .unwrap();
    assert_eq!(
        plain.command(&[b"GET", b"k"]).unwrap(),
        Value::Bulk(Some(b"over tls".to_vec()))
    );
}

#[test]
fn an_acl_user_authenticates_over_tls_and_no_error_shows_the_password() {
    let test = "an_acl_user_authenticates_over_tls";
    let Some(pki) = Pki::new(test) else { return };
    let config = [
        "user default off",
        "user cacheback on >s3cret-pw ~cacheback:* +@all",
    ];
    let Some(server) = pki.server(&config, test) else {
        return;
    };
    let base = format!("127.0.0.1:{}", tls_port(&server));
    let ca = pki.ca();
    let mut good = open(&url(
        &format!("rediss://cacheback:s3cret-pw@{base}"),
        Some(&ca),
    ))
    .unwrap();
    assert_eq!(
        good.command(&[b"SET", b"cacheback:x", b"1"]).unwrap(),
        Value::Simple("OK".into())
    );
    let denied = good.command(&[b"SET", b"elsewhere", b"1"]).unwrap_err();
    let shown = format!("{denied} {denied:?}");
    assert!(shown.contains("NOPERM"), "{shown}");
    assert!(!shown.contains("s3cret-pw"), "{shown}");

    let wrong = open(&url(
        &format!("rediss://cacheback:wrong-pw@{base}"),
        Some(&ca),
    ))
    .err()
    .expect("a wrong password is refused");
    let shown = format!("{wrong} {wrong:?}");
    assert!(shown.contains("WRONGPASS"), "{shown}");
    assert!(!shown.contains("wrong-pw"), "{shown}");
    assert!(shown.contains("rediss://cacheback:***@"), "{shown}");

    // An untrusted certificate with the right password: no password either.
    let other = pki.new_ca("other");
    let untrusted = open(&url(
        &format!("rediss://cacheback:s3cret-pw@{base}"),
        Some(&other),
    ))
    .err()
    .expect("not trusted");
    let shown = format!("{untrusted} {untrusted:?}");
    assert!(!shown.contains("s3cret-pw"), "{shown}");
}

#[test]
fn a_certificate_from_another_ca_is_not_trusted_and_the_message_names_the_ca_file() {
    let test = "a_certificate_from_another_ca_is_not_trusted";
    let Some(pki) = Pki::new(test) else { return };
    let Some(server) = pki.server(&[], test) else {
        return;
    };
    let other = pki.new_ca("other");
    let address = format!("rediss://127.0.0.1:{}", tls_port(&server));
    let started = Instant::now();
    let err = open(&url(&address, Some(&other)))
        .err()
        .expect("not trusted");
    assert!(started.elapsed() < BOUNDED);
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("certificate not trusted"), "{shown}");
    assert!(shown.contains(&other.display().to_string()), "{shown}");
    assert!(!shown.contains('\n'), "one line: {shown}");

    // The system's roots know nothing of a throwaway CA either; nor do
    // those SSL_CERT_FILE or SSL_CERT_DIR name, where the environment the
    // tests run in sets them (and then the message names them instead).
    let err = open(&url(&address, None)).err().expect("not trusted");
    let shown = err.to_string();
    let from_env = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|value| !value.is_empty()));
    let source = if from_env {
        "SSL_CERT_"
    } else {
        "system's CA bundle"
    };
    assert!(
        shown.contains("certificate not trusted") && shown.contains(source)
            || shown.contains("no system CA bundle found")
            || shown.contains("no certificate found in SSL_CERT_"),
        "{shown}"
    );
}

#[test]
fn a_certificate_for_another_name_is_not_trusted() {
    let test = "a_certificate_for_another_name_is_not_trusted";
    let Some(pki) = Pki::new(test) else { return };
    pki.sign("elsewhere", "DNS:elsewhere.test");
    let Some(server) = pki.server_with("elsewhere", &[], test) else {
        return;
    };
    let address = format!("rediss://127.0.0.1:{}", tls_port(&server));
    let err = open(&url(&address, Some(&pki.ca())))
        .err()
        .expect("not trusted");
    let shown = err.to_string();
    assert!(
        shown.contains("certificate not trusted: not valid for 127.0.0.1"),
        "{shown}"
    );
    assert!(shown.contains("elsewhere.test"), "{shown}");
}

#[test]
fn a_server_that_wants_a_client_certificate_says_so() {
    let test = "a_server_that_wants_a_client_certificate_says_so";
    let Some(pki) = Pki::new(test) else { return };
    let Some(server) = pki.server(&["tls-auth-clients yes"], test) else {
        return;
    };
    // With TLS 1.3 the server checks last: the handshake passes, the
    // first reply (SELECT's) fails.
    let address = format!("rediss://127.0.0.1:{}/1", tls_port(&server));
    let err = open(&url(&address, Some(&pki.ca())))
        .err()
        .expect("no client certificate");
    let shown = err.to_string();
    assert!(shown.contains("wants a client certificate"), "{shown}");
}

#[test]
fn a_ca_file_that_cannot_be_read_or_holds_no_certificate_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let empty = dir.path().join("empty.pem");
    fs::write(&empty, "").unwrap();
    let text = dir.path().join("text.pem");
    fs::write(&text, "not a certificate\n").unwrap();
    let key_only = dir.path().join("key.pem");
    fs::write(
        &key_only,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let broken = dir.path().join("broken.pem");
    fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    // Nothing listens there: the file is read before any connecting.
    for (file, why) in [
        (&missing, "cannot read it"),
        (&empty, "holds no certificate"),
        (&text, "holds no certificate"),
        (&key_only, "holds no certificate"),
        (&broken, "holds no usable certificate"),
    ] {
        let url = url("rediss://cacheback:s3cret-pw@127.0.0.1:1", Some(file));
        let err = open(&url).err().expect("refused");
        assert!(matches!(err, StoreError::Tls { .. }), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(shown.contains(&file.display().to_string()), "{shown}");
        assert!(shown.contains(why), "{shown}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
    }
}

#[test]
fn plain_and_tls_mixed_up_fail_within_a_bounded_time() {
    let test = "plain_and_tls_mixed_up_fail";
    let Some(pki) = Pki::new(test) else { return };
    let Some(server) = pki.server(&[], test) else {
        return;
    };
    let ca = pki.ca();
    // A plain client at the TLS port: the first reply is not RESP.
    let started = Instant::now();
    let failed = open(&url(
        &format!("redis://127.0.0.1:{}/1", tls_port(&server)),
        None,
    ))
    .and_then(|mut conn| conn.command(&[b"PING"]));
    assert!(failed.is_err(), "{failed:?}");
    assert!(started.elapsed() < BOUNDED, "{:?}", started.elapsed());
    // A TLS client at the plain port.
    let started = Instant::now();
    let err = open(&url(
        &format!("rediss://127.0.0.1:{}", server.port),
        Some(&ca),
    ))
    .err()
    .expect("no TLS there");
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    assert!(started.elapsed() < BOUNDED, "{:?}", started.elapsed());
}

#[test]
fn a_server_that_never_answers_the_handshake_costs_one_connect_timeout() {
    let test = "a_server_that_never_answers_the_handshake";
    let Some(pki) = Pki::new(test) else { return };
    // The kernel completes the TCP connect; nobody ever reads the hello.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let limit = Duration::from_millis(300);
    let url = url(&format!("rediss://127.0.0.1:{port}"), Some(&pki.ca()));
    let started = Instant::now();
    let err = Connection::open(&url, limit, Duration::from_secs(30))
        .err()
        .expect("no handshake");
    let waited = started.elapsed();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(waited >= limit && waited < BOUNDED, "{waited:?}");
}

#[test]
fn a_fleet_value_of_megabytes_round_trips_over_tls_byte_exact() {
    let test = "a_fleet_value_of_megabytes_round_trips_over_tls";
    let Some(pki) = Pki::new(test) else { return };
    let Some(server) = pki.server(&[], test) else {
        return;
    };
    let address = format!("rediss://127.0.0.1:{}", tls_port(&server));
    let conn = Connection::open(
        &url(&address, Some(&pki.ca())),
        Duration::from_secs(2),
        Duration::from_secs(10),
    )
    .unwrap();
    let mut fleet = Fleet::new(conn, "cacheback", Duration::from_secs(3600));
    let key = key("tls");
    let lease = fleet
        .try_lease(&key, Duration::from_secs(30))
        .unwrap()
        .unwrap();
    let value: Vec<u8> = (0..3u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let stderr_len = 4321;
    let outcome = fleet
        .publish(
            &lease,
            meta((value.len() - stderr_len) as u64, stderr_len as u64),
            &mut &value[..],
        )
        .unwrap();
    assert_eq!(outcome, Published::Stored);
    let stored = fleet.meta(&key).unwrap().unwrap();
    let mut read = Vec::new();
    fleet.read_value(&key, &stored, &mut read).unwrap();
    assert!(read.len() == value.len() && read == value, "byte-exact");
    fleet.release(lease).unwrap();
}

#[test]
fn two_hosts_share_a_value_through_a_tls_store_given_on_the_command_line() {
    use crate::harness::{Bounded, Cache, stderr, stdout};
    let test = "two_hosts_share_a_value_through_a_tls_store";
    let Some(pki) = Pki::new(test) else { return };
    let Some(server) = pki.server(&[], test) else {
        return;
    };
    let store = format!("rediss://127.0.0.1:{}", tls_port(&server));
    // Each host runs the same argv, so the same key; its output is its own.
    let run = |host: &Cache, ca: &Path| {
        host.cmd()
            .env_remove("CACHEBACK_STORE")
            .env_remove("CACHEBACK_STORE_CA_FILE")
            .env_remove("CACHEBACK_STORE_PASSWORD")
            .args(["run", "--store", &store, "--store-ca-file"])
            .arg(ca)
            .args(["--ttl", "1h", "--", "sh", "-c", "echo $$-$(date +%s%N)"])
            .bounded_output()
    };
    let (first, second, third) = (Cache::new(), Cache::new(), Cache::new());
    let ran = run(&first, &pki.ca());
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert_eq!(stderr(&ran), "");
    let copied = run(&second, &pki.ca());
    assert!(copied.status.success(), "{}", stderr(&copied));
    assert_eq!(stdout(&copied), stdout(&ran), "the first host's value");
    // A CA that did not sign the server's certificate: the local rules,
    // with a warning that says why.
    let other = pki.new_ca("other");
    let alone = run(&third, &other);
    assert!(alone.status.success(), "{}", stderr(&alone));
    assert_ne!(stdout(&alone), stdout(&ran), "ran locally");
    let warning = stderr(&alone);
    assert!(warning.contains("certificate not trusted"), "{warning}");
    assert!(warning.contains(&other.display().to_string()), "{warning}");
}

#[test]
fn without_a_ca_file_the_roots_come_from_ssl_cert_file_or_ssl_cert_dir() {
    use crate::harness::{Bounded, Cache, stderr, stdout};
    let test = "without_a_ca_file_the_roots_come_from_ssl_cert_file_or_ssl_cert_dir";
    let Some(pki) = Pki::new(test) else { return };
    let Some(server) = pki.server(&[], test) else {
        return;
    };
    let store = format!("rediss://127.0.0.1:{}", tls_port(&server));
    // Same argv on each host, so the same key; a value that came through
    // the store is the first host's output.
    let run = |host: &Cache, var: &str, value: &Path| {
        host.cmd()
            .env_remove("CACHEBACK_STORE")
            .env_remove("CACHEBACK_STORE_CA_FILE")
            .env_remove("CACHEBACK_STORE_PASSWORD")
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .env(var, value)
            .args(["run", "--store", &store, "--ttl", "1h", "--"])
            .args(["sh", "-c", "echo $$-$(date +%s%N)"])
            .bounded_output()
    };
    let (first, second, third) = (Cache::new(), Cache::new(), Cache::new());
    let filled = run(&first, "SSL_CERT_FILE", &pki.ca());
    assert!(filled.status.success(), "{}", stderr(&filled));
    assert_eq!(stderr(&filled), "", "SSL_CERT_FILE's CA is trusted");
    // A directory as OpenSSL keeps one: other files (not certificates)
    // next to the CA's, which is found under any name.
    let dir = pki.path("certs");
    fs::create_dir(&dir).unwrap();
    fs::copy(pki.ca(), dir.join("0a1b2c3d.0")).unwrap();
    fs::write(dir.join("README"), "not a certificate\n").unwrap();
    let missing = pki.path("no-such-dir");
    let mut dirs = std::ffi::OsString::from(&missing);
    dirs.push(":");
    dirs.push(&dir);
    let copied = run(&second, "SSL_CERT_DIR", Path::new(&dirs));
    assert!(copied.status.success(), "{}", stderr(&copied));
    assert_eq!(stderr(&copied), "", "SSL_CERT_DIR's CA is trusted");
    assert_eq!(stdout(&copied), stdout(&filled), "the first host's value");
    // Only what the variable names is trusted, and the warning says so.
    let other = pki.new_ca("other");
    let alone = run(&third, "SSL_CERT_FILE", &other);
    assert!(alone.status.success(), "{}", stderr(&alone));
    assert_ne!(stdout(&alone), stdout(&filled), "ran locally");
    let warning = stderr(&alone);
    assert!(warning.contains("certificate not trusted"), "{warning}");
    assert!(
        warning.contains(&format!("SSL_CERT_FILE={}", other.display())),
        "{warning}"
    );
}
