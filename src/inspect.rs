//! Reading the cache for the management commands: which keys have files,
//! what state each entry is in, and its counters.
//!
//! Nothing here takes a lock or writes: `stats` and `show` must be safe to
//! run at any moment, next to any number of callers and refreshers.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::display;
use crate::error::{Error, Result};
use crate::key::{Key, KeyInputs};
use crate::options::{EntryName, KeyOptions};
use crate::store::entry::{Details, PREAMBLE_LEN, Preamble};
use crate::store::events::{self, Counts};
use crate::store::lock;
use crate::store::{FileKind, FsStore, TEMP_PREFIX};
use crate::units::format_utc;

/// Bytes of a failed run's stderr kept in listings.
pub const STDERR_TAIL: u64 = 1024;

/// What `stats` reports an entry to be, in order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A run holds the entry's lock right now.
    Refreshing,
    /// The last run failed (its failure record is newer than the entry).
    Failing,
    /// The entry is older than its `--max-age`, or has a `--max-age` and
    /// finished in the future: `run` will not serve it.
    Expired,
    /// The entry is older than its TTL, finished in the future (its age is
    /// unknown), or was marked stale by `invalidate --refresh`.
    Stale,
    /// The entry is younger than its TTL.
    Fresh,
    /// The entry file cannot be read (damaged, or from another format version).
    Unreadable,
}

impl State {
    /// The name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Refreshing => "refreshing",
            State::Failing => "failing",
            State::Expired => "expired",
            State::Stale => "stale",
            State::Fresh => "fresh",
            State::Unreadable => "unreadable",
        }
    }
}

/// A failed run, from the failure record.
#[derive(Debug, Clone)]
pub struct Failure {
    /// When it finished, in milliseconds since the epoch.
    pub finished_ms: u64,
    /// Its shell-style exit status.
    pub exit_code: i32,
    /// How long it ran, in milliseconds.
    pub duration_ms: u64,
    /// Failed runs in a row that it ended.
    pub consecutive: u32,
    /// It came after the entry (or there is none), so it is the newest run
    /// ([`Preamble::failed_since`]).
    pub after_entry: bool,
    /// The end of its stderr.
    pub stderr_tail: Vec<u8>,
}

/// Everything the management commands know about one key.
#[derive(Debug, Clone)]
pub struct EntryInfo {
    /// The key.
    pub key: Key,
    /// What produced the entry (from the entry, else from the failure record).
    pub details: Option<Details>,
    /// The stored result's header, when there is a readable one.
    pub entry: Option<Preamble>,
    /// The last failed run, if one is recorded.
    pub failure: Option<Failure>,
    /// Why a file of this key could not be read.
    pub error: Option<String>,
    /// Hits, misses, refreshes and failures so far.
    pub counts: Counts,
    /// The newest event (read or run), from the events logs' modification times.
    pub last_event: Option<SystemTime>,
    /// Bytes of all the key's files.
    pub size_bytes: u64,
    /// The state, see [`State`].
    pub state: State,
    /// The stored result finished later than now by this machine's clock (the
    /// clock was stepped back, or the cache dir restored or copied): its age
    /// is unknown, so it counts as stale.
    pub finished_in_future: bool,
}

impl EntryInfo {
    /// The label, if any.
    pub fn name(&self) -> Option<&str> {
        self.details.as_ref()?.name.as_deref()
    }

    /// The command line as one readable string.
    pub fn command_line(&self) -> String {
        match &self.details {
            Some(details) => details.inputs.command_line(),
            None => format!("(key {})", short_key(&self.key)),
        }
    }

    /// The label, else the command line, escaped for a terminal (see
    /// [`display`]): every caller prints it to people.
    pub fn title(&self) -> String {
        self.name().map_or_else(
            || self.command_line(),
            |name| display::escape(name).into_owned(),
        )
    }

    /// Milliseconds since the stored result finished, when there is one and
    /// it did not finish in the future (then its age is unknown, not 0).
    pub fn age_ms(&self, now_ms: u64) -> Option<u64> {
        if self.finished_in_future {
            return None;
        }
        Some(now_ms.saturating_sub(self.entry?.finished_ms))
    }

    /// When the entry was last read or written, in milliseconds since the epoch:
    /// the newest of its events and its last run. `gc` goes by this, not by
    /// atime, which many systems do not keep.
    pub fn last_read_ms(&self) -> u64 {
        let event = self.last_event.map_or(0, system_ms);
        let run = match (&self.entry, &self.failure) {
            (Some(entry), _) => entry.finished_ms,
            (None, Some(failure)) => failure.finished_ms,
            (None, None) => 0,
        };
        event.max(run)
    }

    /// When the stored value goes stale (or went stale): its finish time plus
    /// its TTL and the jitter drawn for it; `None` without a stored value.
    pub fn stale_at_ms(&self) -> Option<u64> {
        let (entry, details) = (self.entry.as_ref()?, self.details.as_ref()?);
        Some(
            entry
                .finished_ms
                .saturating_add(entry.stale_after_ms(details.ttl_ms)),
        )
    }

    /// What besides the command the key was derived from, in `run`'s option
    /// terms; empty for the command alone. Hashed inputs (`--env` values,
    /// `--hash` contents, `--stdin`) show a short digest, which is what tells
    /// apart two entries that differ only there.
    pub fn keyed_on(&self) -> String {
        let Some(details) = &self.details else {
            return String::new();
        };
        let inputs = &details.inputs;
        let shown = |bytes: &[u8]| display::escape_bytes(bytes).into_owned();
        let digest = |hash: &[u8]| {
            hash[..3]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let mut parts = Vec::new();
        if let Some(cwd) = &inputs.cwd {
            parts.push(format!("--cwd {}", shown(cwd)));
        }
        for env in &inputs.env {
            let value = env
                .value_hash
                .map_or(" (unset)".to_owned(), |hash| format!(" #{}", digest(&hash)));
            parts.push(format!("--env {}{value}", shown(&env.name)));
        }
        for modtime in &inputs.modtimes {
            let when = modtime.modified.map_or("missing".into(), |(secs, nanos)| {
                format_utc(secs.max(0) as u64 * 1000 + u64::from(nanos / 1_000_000))
            });
            parts.push(format!("--modtime {} ({when})", shown(&modtime.path)));
        }
        for content in &inputs.contents {
            let what = content
                .digest
                .map_or("missing".to_owned(), |hash| format!("#{}", digest(&hash)));
            parts.push(format!("--hash {} ({what})", shown(&content.path)));
        }
        if let Some(stdin) = &inputs.stdin {
            parts.push(format!("--stdin #{}", digest(stdin)));
        }
        if let Some(scope) = &inputs.scope {
            parts.push(format!("--scope {}", display::escape(scope)));
        }
        if self.entry.is_some_and(|entry| entry.cache_failures()) {
            parts.push("--cache-failures".to_owned());
        }
        parts.join(", ")
    }

    /// True when the entry matches a `stats` filter: a substring of its label or command.
    pub fn matches(&self, filter: &str) -> bool {
        self.name().is_some_and(|name| name.contains(filter))
            || self.command_line().contains(filter)
    }
}

/// The files one key owns, as found on disk.
#[derive(Debug, Clone, Default)]
pub struct KeyFiles {
    /// Each present file's kind and metadata.
    pub files: Vec<(FileKind, Metadata)>,
}

impl KeyFiles {
    /// True when a file of this kind is present.
    pub fn has(&self, kind: FileKind) -> bool {
        self.files.iter().any(|(k, _)| *k == kind)
    }

    /// Total size of the key's files.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|(_, meta)| meta.len()).sum()
    }

    /// True when the key has a stored result or failure record: an entry users can see.
    pub fn is_entry(&self) -> bool {
        self.has(FileKind::Entry) || self.has(FileKind::Failure)
    }
}

/// The cache directory's content, grouped by key.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every key with at least one file.
    pub keys: BTreeMap<Key, KeyFiles>,
    /// Temp files of writers (live, or killed before they finished).
    pub temps: Vec<(PathBuf, Metadata)>,
    /// Bytes of every file cacheback owns in the directory.
    pub total_bytes: u64,
}

/// Lists the cache directory. A directory that does not exist is an empty cache.
pub fn scan(store: &FsStore) -> Result<Scan> {
    let listing = match std::fs::read_dir(store.dir()) {
        Ok(listing) => listing,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Scan::default()),
        Err(err) => return Err(Error::path(store.dir(), err)),
    };
    let mut scan = Scan::default();
    for item in listing {
        let item = item.map_err(|err| Error::path(store.dir(), err))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        // A file may vanish between listing and stat (a refresh renaming, a
        // concurrent gc): it is simply not there any more.
        let Ok(meta) = item.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        if name.starts_with(TEMP_PREFIX) {
            scan.total_bytes += meta.len();
            scan.temps.push((item.path(), meta));
            continue;
        }
        let Some((key, kind)) = parse_name(name) else {
            continue;
        };
        scan.total_bytes += meta.len();
        scan.keys.entry(key).or_default().files.push((kind, meta));
    }
    Ok(scan)
}

/// Splits `<64 hex><suffix>` into key and kind.
fn parse_name(name: &str) -> Option<(Key, FileKind)> {
    let (hex, suffix) = name.split_at_checked(64)?;
    let key = Key::from_hex(hex)?;
    let kind = FileKind::ALL
        .into_iter()
        .find(|kind| kind.suffix() == suffix)?;
    Some((key, kind))
}

/// Every visible entry (a key with a result or a failure record, or a first
/// run in flight), in key order.
pub fn list(store: &FsStore, now_ms: u64) -> Result<(Vec<EntryInfo>, Scan)> {
    let scan = scan(store)?;
    let infos = scan
        .keys
        .iter()
        .filter(|(key, files)| {
            files.is_entry()
                || (files.has(FileKind::Lock) && lock::is_held(&store.path(key, FileKind::Lock)))
        })
        .map(|(key, files)| inspect(store, key, files.size(), now_ms))
        .collect();
    Ok((infos, scan))
}

/// Reads everything about one key. Never fails: what cannot be read is reported in `error`.
pub fn inspect(store: &FsStore, key: &Key, size_bytes: u64, now_ms: u64) -> EntryInfo {
    let mut errors = Vec::new();
    let mut details = None;
    let mut head = [std::mem::MaybeUninit::uninit(); PREAMBLE_LEN];
    let entry = match store.open(key, FileKind::Entry, &mut head) {
        Ok(Some(entry)) => {
            match entry.details() {
                Ok(read) => details = Some(read),
                Err(err) => errors.push(format!("entry: {err}")),
            }
            Some(entry.preamble)
        }
        Ok(None) => None,
        Err(err) => {
            errors.push(format!("entry: {err}"));
            None
        }
    };
    let mut head = [std::mem::MaybeUninit::uninit(); PREAMBLE_LEN];
    let failure = match store.open(key, FileKind::Failure, &mut head) {
        Ok(Some(record)) => {
            if details.is_none() {
                details = record.details().ok();
            }
            Some(Failure {
                finished_ms: record.preamble.finished_ms,
                exit_code: record.preamble.exit_code,
                duration_ms: u64::from(record.preamble.duration_ms),
                consecutive: record.preamble.failures,
                after_entry: record.preamble.failed_since(entry.as_ref()),
                stderr_tail: record.stderr_tail(STDERR_TAIL).unwrap_or_default(),
            })
        }
        Ok(None) => None,
        Err(err) => {
            errors.push(format!("failure record: {err}"));
            None
        }
    };
    let (counts, last_event) = events::read(store, key);
    let refreshing = lock::is_held(&store.path(key, FileKind::Lock));
    let failing = failure.as_ref().is_some_and(|failure| failure.after_entry);
    // Checked against a second reading of the clock too: a run that stored
    // its result after the caller read `now_ms` is new, not from the future.
    let finished_in_future = entry.is_some_and(|entry| {
        entry.finished_ms > now_ms && entry.finished_ms > system_ms(SystemTime::now())
    });
    let state = if refreshing {
        State::Refreshing
    } else if failing {
        State::Failing
    } else if let (Some(entry), Some(details)) = (&entry, &details) {
        let age = now_ms.saturating_sub(entry.finished_ms);
        // The rule `run` follows: a result from the future has an unknown
        // age, so it is stale, and with a `--max-age` it is not usable.
        if details
            .max_age_ms
            .is_some_and(|max_age| finished_in_future || age >= max_age)
        {
            State::Expired
        } else if finished_in_future
            || entry.forced_stale()
            || age >= entry.stale_after_ms(details.ttl_ms)
        {
            State::Stale
        } else {
            State::Fresh
        }
    } else {
        State::Unreadable
    };
    EntryInfo {
        key: *key,
        details,
        entry,
        failure,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
        counts,
        last_event,
        size_bytes,
        state,
        finished_in_future,
    }
}

/// The keys a `show` or `invalidate` selector names, newest result first.
/// An unknown label or command is an error naming it.
pub fn select(store: &FsStore, selector: &EntryName, now_ms: u64) -> Result<Vec<EntryInfo>> {
    if let Some(name) = &selector.name {
        let (mut infos, _) = list(store, now_ms)?;
        infos.retain(|info| info.name() == Some(name.as_str()));
        if infos.is_empty() {
            return Err(Error::NotFound(format!(
                "no entry named '{}'",
                display::escape(name)
            )));
        }
        infos.sort_by_key(|info| std::cmp::Reverse(info.last_read_ms()));
        return Ok(infos);
    }
    let mut inputs = inputs_of(store, &selector.command, &selector.key)?;
    let mut key = inputs.key();
    let mut files = scan_key(store, &key);
    let mut in_flight = lock::is_held(&store.path(&key, FileKind::Lock));
    if !files.is_entry() && !in_flight {
        // Stored with `--cache-failures`, which is part of the key?
        inputs.cache_failures = true;
        let flagged = inputs.key();
        let flagged_files = scan_key(store, &flagged);
        let flagged_in_flight = lock::is_held(&store.path(&flagged, FileKind::Lock));
        if flagged_files.is_entry() || flagged_in_flight {
            (key, files, in_flight) = (flagged, flagged_files, flagged_in_flight);
        }
    }
    if !files.is_entry() && !in_flight {
        let command = KeyInputs {
            argv: selector
                .command
                .iter()
                .map(|arg| arg.clone().into_vec())
                .collect(),
            ..KeyInputs::default()
        };
        return Err(Error::NotFound(format!(
            "no entry for {}",
            command.command_line()
        )));
    }
    Ok(vec![inspect(store, &key, files.size(), now_ms)])
}

/// The key inputs `run` would use for this command and key options, here
/// and now (without `--cache-failures`).
pub fn inputs_of(store: &FsStore, command: &[OsString], key: &KeyOptions) -> Result<KeyInputs> {
    KeyInputs::gather_for(command, key, store).map_err(|err| Error::io("reading key inputs", err))
}

/// The files of one key, without listing the whole directory.
pub fn scan_key(store: &FsStore, key: &Key) -> KeyFiles {
    let files = FileKind::ALL
        .into_iter()
        .filter_map(|kind| {
            let meta = std::fs::symlink_metadata(store.path(key, kind)).ok()?;
            meta.is_file().then_some((kind, meta))
        })
        .collect();
    KeyFiles { files }
}

/// The first 12 hex digits of a key, enough to tell entries apart in messages.
pub fn short_key(key: &Key) -> String {
    key.to_hex()[..12].to_owned()
}

/// Milliseconds since the epoch of a file time.
pub fn system_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_split_into_key_and_kind() {
        let hex = "0f".repeat(32);
        let key = Key::from_hex(&hex).unwrap();
        assert_eq!(
            parse_name(&format!("{hex}.events.old")),
            Some((key, FileKind::EventsFolding))
        );
        assert_eq!(
            parse_name(&format!("{hex}.entry")),
            Some((key, FileKind::Entry))
        );
        for junk in [
            format!("{hex}.entryx"),
            hex.clone(),
            format!("{}.entry", "0F".repeat(32)),
            ".gc-stamp".to_owned(),
            "é".repeat(40),
        ] {
            assert_eq!(parse_name(&junk), None, "{junk}");
        }
    }
}
