//! The on-disk entry format.
//!
//! ```text
//! [preamble: fixed PREAMBLE_LEN bytes][details: details_len bytes][stdout][stderr]
//! ```
//!
//! The preamble is a fixed-size, fixed-int bincode record holding everything a
//! cache hit needs (age, exit status, byte counts), so a hit decodes a few
//! integers and never allocates. The variable-length details (argv, label, key
//! inputs) follow and are decoded only by inspection commands. Output is stored
//! raw, so replay is a plain kernel copy from the file.
//!
//! The first eight bytes (magic, version) will never move: any other magic or
//! version is reported as unsupported and treated as a miss, so two versions
//! of cacheback can share a directory without either misreading the other.
//!
//! Version 2 split version 1's 64-bit run duration into a 32-bit duration and
//! the 32-bit `--jitter` delay (same offsets, same size), and added the
//! `--hash` and `--stdin` inputs to the details. Version 1 entries are still
//! read: their duration's high half is zero, which reads as no jitter, and
//! their details as having neither input.

use serde::{Deserialize, Serialize};

use crate::key::KeyInputs;

/// Identifies a cacheback entry file.
pub const MAGIC: [u8; 4] = *b"CBKe";
/// The entry format this build writes.
pub const FORMAT_VERSION: u32 = 2;
/// The older format this build still reads (see the module docs).
pub const FORMAT_VERSION_1: u32 = 1;
/// Encoded size of [`Preamble`].
pub const PREAMBLE_LEN: usize = 56;
/// Byte offset of [`Preamble::flags`], rewritten in place by `invalidate --refresh`.
pub const FLAGS_OFFSET: u64 = 8;
/// Byte offset of [`Preamble::finished_ms`] (tests backdate entries through it).
pub const FINISHED_OFFSET: u64 = 16;
/// Flag: the entry was marked stale by `invalidate --refresh`, whatever its age.
pub const FLAG_FORCED_STALE: u32 = 1;
/// Flag: stored by a run with `--cache-failures`, which is part of its key.
pub const FLAG_CACHE_FAILURES: u32 = 2;
/// Flag: a run after this value failed (set in place when the failure is
/// recorded), so a hit can say so (`--stale-marker`) from the preamble it
/// has read anyway. It has the flags' second byte to itself: setting it
/// writes only [`FAILED_SINCE_OFFSET`], and can never undo a concurrent
/// `invalidate --refresh`, which writes the first.
pub const FLAG_FAILED_SINCE: u32 = 1 << 8;
/// Byte offset of the byte holding [`FLAG_FAILED_SINCE`].
pub const FAILED_SINCE_OFFSET: u64 = FLAGS_OFFSET + 1;
/// Details larger than this are refused as corrupt (argv is limited by the kernel anyway).
const MAX_DETAILS_LEN: u32 = 16 << 20;

/// The fixed-size head of every entry file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preamble {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// Always [`FORMAT_VERSION`] for entries this build accepts.
    pub version: u32,
    /// Bit set of `FLAG_*` values.
    pub flags: u32,
    /// The command's exit status, shell style: 0-255, 128+N for signal N, 124 for a timeout.
    pub exit_code: i32,
    /// When the run finished, in milliseconds since the Unix epoch; the entry's age counts from here.
    pub finished_ms: u64,
    /// How long the run took, in milliseconds (saturating at 49 days).
    pub duration_ms: u32,
    /// How much later than its TTL this value goes stale (`--jitter`), in
    /// milliseconds, drawn when it was stored.
    pub jitter_ms: u32,
    /// Length of the encoded [`Details`].
    pub details_len: u32,
    /// Consecutive failed runs this record ends (0 for a success); drives refresh back-off.
    pub failures: u32,
    /// Length of the captured stdout.
    pub stdout_len: u64,
    /// Length of the captured stderr.
    pub stderr_len: u64,
}

/// What inspection needs about an entry and what produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Details {
    /// Everything the key was derived from (env values only as hashes).
    pub inputs: KeyInputs,
    /// The `--name` label, if any.
    pub name: Option<String>,
    /// The TTL of the run that stored this entry, in milliseconds.
    pub ttl_ms: u64,
    /// The `--max-age` of the run that stored this entry, in milliseconds.
    pub max_age_ms: Option<u64>,
}

/// Why bytes could not be read as an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Fewer bytes than a preamble: a zero-length or torn file.
    #[error("truncated entry ({0} bytes)")]
    Truncated(u64),
    /// Not a cacheback entry at all.
    #[error("not a cacheback entry")]
    BadMagic,
    /// Written by a cacheback with another format.
    #[error("unsupported entry format (got {got}, supports {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// The version found in the file.
        got: u32,
    },
    /// The lengths do not add up to the file's size, or a field is out of range.
    #[error("corrupt entry: {0}")]
    Corrupt(&'static str),
}

fn preamble_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian()
}

fn details_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ MAX_DETAILS_LEN as usize }>()
}

impl Preamble {
    /// Encodes to exactly [`PREAMBLE_LEN`] bytes.
    pub fn encode(&self) -> [u8; PREAMBLE_LEN] {
        let mut out = [0u8; PREAMBLE_LEN];
        let written = bincode::serde::encode_into_slice(self, &mut out, preamble_config())
            .expect("a preamble always fits its fixed size");
        debug_assert_eq!(written, PREAMBLE_LEN);
        out
    }

    /// Decodes and validates the head of an entry file of `file_len` bytes.
    /// `head` must hold at least the first [`PREAMBLE_LEN`] bytes.
    pub fn decode(head: &[u8], file_len: u64) -> Result<Preamble, FormatError> {
        if head.len() < 8 {
            return Err(FormatError::Truncated(file_len));
        }
        if head[..4] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if version != FORMAT_VERSION && version != FORMAT_VERSION_1 {
            return Err(FormatError::UnsupportedVersion { got: version });
        }
        if head.len() < PREAMBLE_LEN {
            return Err(FormatError::Truncated(file_len));
        }
        let (mut preamble, _): (Preamble, usize) =
            bincode::serde::decode_from_slice(&head[..PREAMBLE_LEN], preamble_config())
                .map_err(|_| FormatError::Corrupt("unreadable preamble"))?;
        if version == FORMAT_VERSION_1 && preamble.jitter_ms != 0 {
            // The high half of a version-1 duration: a run of over 49 days.
            (preamble.duration_ms, preamble.jitter_ms) = (u32::MAX, 0);
        }
        if preamble.details_len > MAX_DETAILS_LEN {
            return Err(FormatError::Corrupt("details too large"));
        }
        if preamble.total_len() != Some(file_len) {
            return Err(FormatError::Corrupt("lengths do not match the file size"));
        }
        Ok(preamble)
    }

    /// Offset of the details in the file.
    pub fn details_start(&self) -> u64 {
        PREAMBLE_LEN as u64
    }

    /// Offset of the stdout bytes in the file.
    pub fn stdout_start(&self) -> u64 {
        PREAMBLE_LEN as u64 + u64::from(self.details_len)
    }

    /// Offset of the stderr bytes in the file.
    pub fn stderr_start(&self) -> u64 {
        self.stdout_start() + self.stdout_len
    }

    /// The file size these lengths imply, `None` on overflow.
    pub fn total_len(&self) -> Option<u64> {
        self.stdout_start()
            .checked_add(self.stdout_len)?
            .checked_add(self.stderr_len)
    }

    /// True when `invalidate --refresh` marked the entry stale.
    pub fn forced_stale(&self) -> bool {
        self.flags & FLAG_FORCED_STALE != 0
    }

    /// True when a run after this value failed (see [`FLAG_FAILED_SINCE`]).
    pub fn failed_since_stored(&self) -> bool {
        self.flags & FLAG_FAILED_SINCE != 0
    }

    /// True when a run with `--cache-failures` stored this.
    pub fn cache_failures(&self) -> bool {
        self.flags & FLAG_CACHE_FAILURES != 0
    }
}

impl Details {
    /// Encodes the details.
    pub fn encode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, details_config()).expect("details always encode")
    }

    /// Decodes the details of an entry of format `version`; any malformed
    /// input is an error, never a panic.
    pub fn decode(bytes: &[u8], version: u32) -> Result<Details, FormatError> {
        if version == FORMAT_VERSION_1 {
            return decode_exactly::<v1::Details>(bytes).map(Details::from);
        }
        decode_exactly(bytes)
    }
}

fn decode_exactly<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, FormatError> {
    match bincode::serde::decode_from_slice(bytes, details_config()) {
        Ok((details, used)) if used == bytes.len() => Ok(details),
        _ => Err(FormatError::Corrupt("unreadable details")),
    }
}

/// The details as format version 1 wrote them: no `--hash` or `--stdin` inputs.
mod v1 {
    use serde::Deserialize;

    use crate::key::{EnvInput, ModtimeInput};

    #[derive(Deserialize)]
    pub struct KeyInputs {
        argv: Vec<Vec<u8>>,
        cwd: Option<Vec<u8>>,
        env: Vec<EnvInput>,
        modtimes: Vec<ModtimeInput>,
        scope: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct Details {
        inputs: KeyInputs,
        name: Option<String>,
        ttl_ms: u64,
        max_age_ms: Option<u64>,
    }

    impl From<Details> for super::Details {
        fn from(old: Details) -> super::Details {
            let inputs = old.inputs;
            super::Details {
                inputs: crate::key::KeyInputs {
                    argv: inputs.argv,
                    cwd: inputs.cwd,
                    env: inputs.env,
                    modtimes: inputs.modtimes,
                    scope: inputs.scope,
                    ..Default::default()
                },
                name: old.name,
                ttl_ms: old.ttl_ms,
                max_age_ms: old.max_age_ms,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Preamble {
        Preamble {
            magic: MAGIC,
            version: FORMAT_VERSION,
            flags: 0,
            exit_code: 3,
            finished_ms: 1_700_000_000_000,
            duration_ms: 1234,
            jitter_ms: 0,
            details_len: 10,
            failures: 0,
            stdout_len: 100,
            stderr_len: 7,
        }
    }

    #[test]
    fn preamble_round_trips_at_fixed_size() {
        let preamble = sample();
        let bytes = preamble.encode();
        let len = preamble.total_len().unwrap();
        assert_eq!(Preamble::decode(&bytes, len), Ok(preamble));
    }

    #[test]
    fn flags_sit_at_their_documented_offset() {
        let bytes = Preamble {
            flags: FLAG_FORCED_STALE,
            ..sample()
        }
        .encode();
        let at = FLAGS_OFFSET as usize;
        assert_eq!(bytes[at..at + 4], FLAG_FORCED_STALE.to_le_bytes());
        let at = FINISHED_OFFSET as usize;
        assert_eq!(bytes[at..at + 8], sample().finished_ms.to_le_bytes());
    }

    #[test]
    fn damaged_heads_are_errors() {
        let bytes = sample().encode();
        let len = sample().total_len().unwrap();
        assert_eq!(Preamble::decode(&[], 0), Err(FormatError::Truncated(0)));
        assert_eq!(
            Preamble::decode(&bytes[..20], len),
            Err(FormatError::Truncated(len))
        );
        assert!(matches!(
            Preamble::decode(&bytes, len - 1),
            Err(FormatError::Corrupt(_))
        ));
        let mut other = bytes;
        other[4] = 9;
        assert_eq!(
            Preamble::decode(&other, len),
            Err(FormatError::UnsupportedVersion { got: 9 })
        );
        other[0] = b'X';
        assert_eq!(Preamble::decode(&other, len), Err(FormatError::BadMagic));
    }

    /// A header whose details length is past the bound is refused from the
    /// header alone, even when the file is as long as it claims: reading
    /// the details would otherwise allocate whatever a damaged or planted
    /// file says (up to 4 GiB). The bound itself is accepted.
    #[test]
    fn details_past_their_bound_are_refused_before_reading_them() {
        for (details_len, accepted) in [(MAX_DETAILS_LEN, true), (MAX_DETAILS_LEN + 1, false)] {
            let preamble = Preamble {
                details_len,
                ..sample()
            };
            let len = preamble.total_len().unwrap();
            let decoded = Preamble::decode(&preamble.encode(), len);
            if accepted {
                assert_eq!(decoded, Ok(preamble));
            } else {
                assert_eq!(decoded, Err(FormatError::Corrupt("details too large")));
            }
        }
    }

    #[test]
    fn details_reject_trailing_garbage() {
        let details = Details {
            inputs: KeyInputs::default(),
            name: Some("n".into()),
            ttl_ms: 5,
            max_age_ms: None,
        };
        let mut bytes = details.encode();
        assert_eq!(Details::decode(&bytes, FORMAT_VERSION), Ok(details));
        bytes.push(0);
        assert!(Details::decode(&bytes, FORMAT_VERSION).is_err());
    }

    #[test]
    fn version_1_entries_still_read() {
        // A version-1 preamble: the duration a u64 where jitter now sits.
        let mut bytes = Preamble {
            version: FORMAT_VERSION_1,
            ..sample()
        }
        .encode();
        let len = sample().total_len().unwrap();
        let read = Preamble::decode(&bytes, len).unwrap();
        assert_eq!((read.duration_ms, read.jitter_ms), (1234, 0));
        bytes[28] = 1; // a duration of over 49 days
        let read = Preamble::decode(&bytes, len).unwrap();
        assert_eq!((read.duration_ms, read.jitter_ms), (u32::MAX, 0));

        // Version-1 details: the key inputs without contents and stdin.
        // Every field carries a value, so none can be dropped unseen: `show`
        // and `invalidate --refresh` rebuild the entry's key from them.
        let mut old = Vec::new();
        let config = details_config();
        let argv: Vec<Vec<u8>> = vec![b"date".to_vec()];
        let env = vec![crate::key::EnvInput {
            name: b"TZ".to_vec(),
            value_hash: Some([7; crate::key::KEY_LEN]),
        }];
        let modtimes = vec![crate::key::ModtimeInput {
            path: b"conf".to_vec(),
            modified: Some((1_700_000_000, 5)),
        }];
        let inputs = (
            argv,
            Some(b"/srv".to_vec()),
            env.clone(),
            modtimes.clone(),
            Some("s"),
        );
        old.extend(bincode::serde::encode_to_vec(inputs, config).unwrap());
        let rest = (Some("label"), 5000u64, None::<u64>);
        old.extend(bincode::serde::encode_to_vec(rest, config).unwrap());
        let details = Details::decode(&old, FORMAT_VERSION_1).unwrap();
        assert_eq!(details.inputs.argv, [b"date".to_vec()]);
        assert_eq!(details.inputs.cwd.as_deref(), Some(&b"/srv"[..]));
        assert_eq!(details.inputs.env, env);
        assert_eq!(details.inputs.modtimes, modtimes);
        assert_eq!(details.inputs.scope.as_deref(), Some("s"));
        assert_eq!(details.name.as_deref(), Some("label"));
        assert_eq!(details.ttl_ms, 5000);
    }
}
