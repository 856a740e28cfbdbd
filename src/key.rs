//! Key derivation: which cache entry a command line maps to.
//!
//! The key is a SHA-256 over an unambiguous, length-prefixed encoding of the
//! argv and of every input the caller chose to key on, so `a b` as one
//! argument and `a`, `b` as two can never meet. Environment values may be
//! secrets: they enter the key, and are kept on disk, only as a keyed hash.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::sha256_copy;
use crate::options::{KeyOptions, RunOptions};

/// Length of a key in bytes.
pub const KEY_LEN: usize = crate::digest::DIGEST_LEN;

/// An entry's identity: the SHA-256 of its key inputs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    /// The key as 64 lowercase hex digits, the form used in file names.
    pub fn to_hex(&self) -> String {
        let mut hex = String::with_capacity(KEY_LEN * 2);
        for byte in self.0 {
            hex.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(HEX_DIGITS[usize::from(byte & 0xf)]));
        }
        hex
    }

    /// Parses the 64-hex-digit form back; `None` for anything else.
    pub fn from_hex(hex: &str) -> Option<Key> {
        let bytes = hex.as_bytes();
        if bytes.len() != KEY_LEN * 2 {
            return None;
        }
        let mut key = [0u8; KEY_LEN];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let digit = |c: u8| {
                char::from(c)
                    .to_digit(16)
                    .filter(|_| !c.is_ascii_uppercase())
            };
            key[i] = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
        }
        Some(Key(key))
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.to_hex())
    }
}

/// One `--env` input: the variable's name and a hash of its value (`None` when unset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvInput {
    /// The variable's name.
    pub name: Vec<u8>,
    /// HMAC-SHA-256 of the value under the cache's secret ([`EnvSecret`]);
    /// the value itself is never stored.
    pub value_hash: Option<[u8; KEY_LEN]>,
}

/// One `--modtime` input: the path as given and its modification time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModtimeInput {
    /// The path as the caller wrote it.
    pub path: Vec<u8>,
    /// Seconds and nanoseconds since the epoch, `None` when the file did not exist.
    pub modified: Option<(i64, u32)>,
}

/// One `--hash` input: the path as given and a digest of its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentInput {
    /// The path as the caller wrote it.
    pub path: Vec<u8>,
    /// SHA-256 of the file's content, `None` when it could not be read.
    pub digest: Option<[u8; KEY_LEN]>,
}

/// Everything an entry is keyed on, in the form stored in the entry header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInputs {
    /// The command and its arguments, as raw bytes.
    pub argv: Vec<Vec<u8>>,
    /// The working directory, when keyed on with `--cwd`.
    pub cwd: Option<Vec<u8>>,
    /// The `--env` inputs, sorted by name, without duplicates.
    pub env: Vec<EnvInput>,
    /// The `--modtime` inputs, in the order given.
    pub modtimes: Vec<ModtimeInput>,
    /// The `--hash` inputs, in the order given.
    pub contents: Vec<ContentInput>,
    /// SHA-256 of the caller's stdin, when keyed on with `--stdin`.
    pub stdin: Option<[u8; KEY_LEN]>,
    /// The `--scope` namespace.
    pub scope: Option<String>,
    /// Whether the run stores failures (`--cache-failures`). Part of the key,
    /// so a stored failure never reaches a caller who did not ask for one;
    /// kept in the preamble's flags rather than here on disk
    /// ([`FLAG_CACHE_FAILURES`](crate::store::entry::FLAG_CACHE_FAILURES)),
    /// which leaves the details format as it was.
    #[serde(skip)]
    pub cache_failures: bool,
}

impl KeyInputs {
    /// Gathers the inputs a `run` asks for from the current process's state.
    pub fn gather(run: &RunOptions, secret: &dyn EnvSecret) -> io::Result<KeyInputs> {
        let mut inputs = Self::gather_for(&run.command, &run.key, secret)?;
        inputs.cache_failures = run.cache_failures;
        Ok(inputs)
    }

    /// Gathers inputs for a command and key options (shared by every subcommand that names an entry).
    /// `secret` is asked for only when `--env` inputs need hashing. With
    /// `--stdin` it reads all of stdin (see [`crate::stdin_input`]).
    pub fn gather_for(
        command: &[OsString],
        key: &KeyOptions,
        secret: &dyn EnvSecret,
    ) -> io::Result<KeyInputs> {
        let cwd = if key.cwd {
            Some(std::env::current_dir()?.into_os_string().into_vec())
        } else {
            None
        };
        let mut names: Vec<&OsString> = key.env.iter().collect();
        names.sort();
        names.dedup();
        let secret = if names.is_empty() {
            [0; KEY_LEN]
        } else {
            secret.env_secret()?
        };
        let env = names
            .into_iter()
            .map(|name| EnvInput {
                name: name.as_bytes().to_vec(),
                value_hash: std::env::var_os(name).map(|value| hmac(&secret, value.as_bytes())),
            })
            .collect();
        let modtimes = key.modtime.iter().map(|path| modtime_input(path)).collect();
        let contents = key
            .hash
            .iter()
            .map(|path| content_input(path))
            .collect::<io::Result<_>>()?;
        Ok(KeyInputs {
            argv: command.iter().map(|arg| arg.as_bytes().to_vec()).collect(),
            cwd,
            env,
            modtimes,
            contents,
            stdin: if key.stdin {
                Some(crate::stdin_input::capture()?)
            } else {
                None
            },
            scope: key.scope.clone(),
            cache_failures: false,
        })
    }

    /// Derives the key. Every field is length-prefixed and tagged, so no two
    /// different inputs encode to the same byte string.
    pub fn key(&self) -> Key {
        let mut hasher = Sha256::new();
        hasher.update(b"cacheback key v1\0");
        let mut field = |tag: u8, bytes: &[u8]| {
            hasher.update([tag]);
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        for arg in &self.argv {
            field(b'a', arg);
        }
        if let Some(cwd) = &self.cwd {
            field(b'c', cwd);
        }
        for env in &self.env {
            field(b'e', &env.name);
            match &env.value_hash {
                Some(hash) => field(b'v', hash),
                None => field(b'u', b""),
            }
        }
        for modtime in &self.modtimes {
            field(b'f', &modtime.path);
            match modtime.modified {
                Some((secs, nanos)) => {
                    let mut time = [0u8; 12];
                    time[..8].copy_from_slice(&secs.to_le_bytes());
                    time[8..].copy_from_slice(&nanos.to_le_bytes());
                    field(b't', &time);
                }
                None => field(b'n', b""),
            }
        }
        for content in &self.contents {
            field(b'h', &content.path);
            match &content.digest {
                Some(digest) => field(b'd', digest),
                None => field(b'm', b""),
            }
        }
        if let Some(stdin) = &self.stdin {
            field(b'i', stdin);
        }
        if let Some(scope) = &self.scope {
            field(b's', scope.as_bytes());
        }
        if self.cache_failures {
            field(b'F', b"");
        }
        Key(hasher.finalize().into())
    }

    /// The command as a readable string, for tables and messages.
    pub fn command_line(&self) -> String {
        command_line(self.argv.iter().map(Vec::as_slice))
    }
}

/// An argv as one readable, shell-quoted line, for tables and messages.
pub fn command_line<'a>(argv: impl IntoIterator<Item = &'a [u8]>) -> String {
    let words: Vec<String> = argv.into_iter().map(shell_word).collect();
    words.join(" ")
}

fn modtime_input(path: &Path) -> ModtimeInput {
    let modified = std::fs::metadata(path).ok().map(|meta| {
        use std::os::unix::fs::MetadataExt;
        (meta.mtime(), meta.mtime_nsec() as u32)
    });
    ModtimeInput {
        path: PathBuf::from(path).into_os_string().into_vec(),
        modified,
    }
}

/// A `--hash` input: a file that cannot be read keys as "missing", as a
/// `--modtime` of a missing file does, so the command still runs (and may
/// say what is wrong better than we could). Anything but a regular file (a
/// FIFO, `/dev/zero`, a directory) is refused with an `InvalidInput` error:
/// reading it to its end could hang a prompt for ever. It is opened
/// non-blocking, so a FIFO without a writer cannot hang the open either.
fn content_input(path: &Path) -> io::Result<ContentInput> {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    let digest = match opened {
        Ok(mut file) => {
            let kind = file.metadata()?.file_type();
            if !kind.is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "--hash {}: not a regular file ({}); --hash reads a file to its end, \
                         which this may never reach, so it takes regular files only \
                         (--modtime takes any path)",
                        path.display(),
                        file_kind(kind)
                    ),
                ));
            }
            sha256_copy(&mut file, &mut io::sink()).ok()
        }
        Err(_) => None,
    };
    Ok(ContentInput {
        path: PathBuf::from(path).into_os_string().into_vec(),
        digest,
    })
}

/// What a file that is not a regular one is, for the `--hash` refusal.
fn file_kind(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

impl KeyInputs {
    /// Warns, once per file, about `--modtime` and `--hash` files that do
    /// not exist or cannot be read: the key takes them as "missing", which
    /// is right for a file that comes and goes but hides a typo in the path.
    /// Called on a miss only, so a hit pays nothing.
    #[cold]
    pub fn warn_missing_files(&self) {
        let modtimes = self.modtimes.iter().filter(|m| m.modified.is_none());
        let contents = self.contents.iter().filter(|c| c.digest.is_none());
        let missing = modtimes
            .map(|m| ("--modtime", &m.path))
            .chain(contents.map(|c| ("--hash", &c.path)));
        for (flag, path) in missing {
            let path = Path::new(std::ffi::OsStr::from_bytes(path));
            let why = match std::fs::metadata(path) {
                Err(err) if err.kind() == io::ErrorKind::NotFound => "no such file".to_owned(),
                Err(err) => err.to_string(),
                Ok(_) => "cannot be read".to_owned(),
            };
            crate::output::warn(format_args!(
                "{flag} {}: {why}; the key takes it as missing, so the entry will not follow \
                 changes to it (check the path)",
                crate::display::escape_bytes(path.as_os_str().as_bytes())
            ));
        }
    }
}

/// The secret that keys the hashes of `--env` values, so a table of likely
/// values (short PINs, common passwords) cannot reverse them: a SHA-256 of
/// the value alone would be reversed by such a table.
pub trait EnvSecret {
    /// The secret, created on first use.
    fn env_secret(&self) -> io::Result<[u8; KEY_LEN]>;
}

/// HMAC-SHA-256 (RFC 2104) of `message` under `secret`.
pub fn hmac(secret: &[u8; KEY_LEN], message: &[u8]) -> [u8; KEY_LEN] {
    mac(secret, message)
}

/// HMAC-SHA-256 under a key of any length, through RustCrypto's audited
/// `hmac` crate (on the same `digest` release as `sha2`).
fn mac(secret: &[u8], message: &[u8]) -> [u8; KEY_LEN] {
    use ::hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .expect("HMAC accepts a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Quotes an argument the way a POSIX shell would need it, for display only.
///
/// Control characters (and the bidirectional and zero-width ones, which
/// would make the line read other than it is) and invalid UTF-8 cannot go
/// inside plain single quotes without reaching the terminal raw (or, made
/// lossy, looking like other bytes), so such words use bash's `$'...'`
/// quoting with the escapes of [`crate::display`], the way `ls` quotes such
/// file names: the line still pastes into bash (and zsh, ksh) as the same argv.
fn shell_word(arg: &[u8]) -> String {
    let plain = !arg.is_empty()
        && arg
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(b));
    match std::str::from_utf8(arg) {
        Ok(text) if plain => text.to_owned(),
        Ok(text)
            if !text
                .chars()
                .any(|c| crate::display::is_control(c) || crate::display::is_invisible(c)) =>
        {
            format!("'{}'", text.replace('\'', r"'\''"))
        }
        _ => format!(
            "$'{}'",
            crate::display::escape_bytes(arg).replace('\'', r"\'")
        ),
    }
}

use std::os::unix::ffi::OsStringExt;

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(argv: &[&str]) -> KeyInputs {
        KeyInputs {
            argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            ..KeyInputs::default()
        }
    }

    #[test]
    fn argument_boundaries_matter() {
        assert_ne!(
            inputs(&["printf", "%s|", "a b"]).key(),
            inputs(&["printf", "%s|", "a", "b"]).key()
        );
        assert_ne!(inputs(&["ab", ""]).key(), inputs(&["a", "b"]).key());
    }

    #[test]
    fn scope_and_cwd_separate_entries() {
        let plain = inputs(&["date"]);
        let scoped = KeyInputs {
            scope: Some("x".into()),
            ..plain.clone()
        };
        let in_dir = KeyInputs {
            cwd: Some(b"/tmp".to_vec()),
            ..plain.clone()
        };
        assert_ne!(plain.key(), scoped.key());
        assert_ne!(plain.key(), in_dir.key());
        assert_ne!(scoped.key(), in_dir.key());
    }

    #[test]
    fn unset_and_empty_env_differ() {
        let unset = KeyInputs {
            env: vec![EnvInput {
                name: b"X".to_vec(),
                value_hash: None,
            }],
            ..inputs(&["date"])
        };
        let empty = KeyInputs {
            env: vec![EnvInput {
                name: b"X".to_vec(),
                value_hash: Some(crate::digest::sha256(&[b""])),
            }],
            ..inputs(&["date"])
        };
        assert_ne!(unset.key(), empty.key());
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 4231's seven HMAC-SHA-256 test cases (case 5 compares the first
    /// 128 bits, as the RFC does).
    #[test]
    fn hmac_matches_rfc_4231() {
        let big_key = vec![0xaa; 131];
        let cases: [(&[u8], &[u8], &str); 7] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &[0xaa; 20],
                &[0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                &unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                &[0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                &[0x0c; 20],
                b"Test With Truncation",
                "a3b6167473100ee06e0c796c2955552b",
            ),
            (
                &big_key,
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                &big_key,
                b"This is a test using a larger than block-size key and a larger than \
                  block-size data. The key needs to be hashed before being used by the \
                  HMAC algorithm.",
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (i, (secret, message, expected)) in cases.iter().enumerate() {
            let got = hex(&mac(secret, message));
            assert_eq!(&got[..expected.len()], *expected, "RFC 4231 case {}", i + 1);
            // Keys up to 32 bytes also go through `hmac`, zero-padded: HMAC
            // pads a short key with zeros itself, so the result is the same.
            if secret.len() <= KEY_LEN {
                let mut padded = [0u8; KEY_LEN];
                padded[..secret.len()].copy_from_slice(secret);
                assert_eq!(&hex(&hmac(&padded, message))[..expected.len()], *expected);
            }
        }
    }

    /// A key with an `--env` input, computed before HMAC moved to the
    /// `hmac` crate (and checked with Python's hmac and hashlib): existing
    /// cache directories keep their entries.
    #[test]
    fn keys_with_env_inputs_stay_as_they_were() {
        let secret: [u8; KEY_LEN] = std::array::from_fn(|i| i as u8);
        let value_hash = hmac(&secret, b"s3cret value");
        assert_eq!(
            hex(&value_hash),
            "8a61c936a67f94039e7e4b0547877322ed822f3903cbc37c732806d508d17c88"
        );
        let inputs = KeyInputs {
            env: vec![EnvInput {
                name: b"TOKEN".to_vec(),
                value_hash: Some(value_hash),
            }],
            ..inputs(&["printenv", "TOKEN"])
        };
        assert_eq!(
            inputs.key().to_hex(),
            "0f493b51c80cb72969679e742f1c2eb8d4cda68bd44ef06c1fc496e9f5241a37"
        );
    }

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        let key = inputs(&["date"]).key();
        assert_eq!(Key::from_hex(&key.to_hex()), Some(key));
        assert_eq!(Key::from_hex("abc"), None);
        assert_eq!(Key::from_hex(&key.to_hex().to_uppercase()), None);
        assert_eq!(Key::from_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn display_quotes_what_a_shell_would_split() {
        assert_eq!(
            inputs(&["echo", "a b", "it's"]).command_line(),
            r#"echo 'a b' 'it'\''s'"#
        );
    }

    #[test]
    fn display_escapes_controls_and_invalid_bytes() {
        let line = |argv: &[&[u8]]| {
            KeyInputs {
                argv: argv.iter().map(|a| a.to_vec()).collect(),
                ..KeyInputs::default()
            }
            .command_line()
        };
        assert_eq!(
            line(&[b"printf", b"\x1b]0;x\x07", b"it's\n"]),
            r"printf $'\e]0;x\x07' $'it\'s\n'"
        );
        assert_eq!(line(&[b"cat", b"a\xffb"]), r"cat $'a\xffb'");
        assert_ne!(line(&[b"cat", b"\xff"]), line(&[b"cat", b"\xfe"]));
        // A literal backslash escape is not the byte it spells.
        assert_eq!(line(&[b"echo", br"\e"]), r"echo '\e'");
        assert_eq!(line(&[b"echo", b"\\\x1b"]), r"echo $'\\\e'");
        assert_eq!(line(&[b"echo", "天気".as_bytes()]), "echo '天気'");
    }
}
