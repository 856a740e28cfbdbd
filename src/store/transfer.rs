//! Copying values between the two tiers: the local cache directory (near,
//! per host) and the fleet store (shared).
//!
//! A copy keeps the time the value was produced, wherever that was, so every
//! host judges its age alike; and it goes through each tier's own atomic
//! write (the local temp file and rename, the fleet's publish script), so a
//! reader of either tier sees the old value or the new one, never a mix.

use std::io::{self, Read, Seek, SeekFrom};
use std::mem::MaybeUninit;

use super::entry::{Details, FORMAT_VERSION, PREAMBLE_LEN};
use super::redis::{Fleet, FleetLease, FleetMeta, Published, StoreError};
use super::{Committed, FileKind, FsStore, Record, RunRecord, StderrSource};
use crate::error::{Error, Result};
use crate::store::lock::EntryLock;

/// Largest value copied to the fleet by default; larger ones stay local
/// (the caller warns once). Above the 100 MiB outputs the fleet is tested
/// with, below what would strain a server's memory.
pub const DEFAULT_FLEET_MAX_VALUE: u64 = 256 << 20;

/// Why [`fill_local`] stored nothing.
#[derive(Debug)]
pub enum FillError {
    /// The store stopped answering (or answered nonsense) mid-copy.
    Store(StoreError),
    /// The fleet's value cannot be used: its details do not decode, a
    /// chunk is missing or of the wrong length, or its bytes do not match
    /// its digest. The store works; the value counts as missing.
    BadValue(String),
    /// The local side failed (the cache directory, the disk).
    Local(Error),
}

impl From<StoreError> for FillError {
    fn from(err: StoreError) -> FillError {
        if super::redis::fleet::is_bad_value(&err) {
            FillError::BadValue(err.to_string())
        } else {
            FillError::Store(err)
        }
    }
}

impl From<Error> for FillError {
    fn from(err: Error) -> FillError {
        FillError::Local(err)
    }
}

/// Stores the fleet's value of the lock's key (described by `meta`) as the
/// local entry; the fleet's chunks stream into the local temp file, one
/// chunk in memory at a time, and the copy is kept only if it is whole and
/// matches the value's digest.
pub fn fill_local(
    store: &FsStore,
    lock: &EntryLock,
    fleet: &mut Fleet,
    meta: &FleetMeta,
) -> Result<Committed, FillError> {
    let key = lock.key();
    let mut details = Details::decode(&meta.details, FORMAT_VERSION)
        .map_err(|err| FillError::BadValue(format!("its details do not decode: {err}")))?;
    // `--cache-failures` is part of the key but travels in the flags, not
    // the details: the copy keeps it, so its `show` and `invalidate
    // --refresh` rebuild the key it was stored under.
    details.inputs.cache_failures = meta.flags & super::entry::FLAG_CACHE_FAILURES != 0;
    let mut writer = store.writer(lock, &details)?;
    if meta.flags & super::entry::FLAG_FORCED_STALE != 0 {
        writer.mark_stale();
    }
    let mut sink = writer
        .stdout_sink()
        .map_err(|err| Error::io("preparing the copy", err))?;
    // Stdout and stderr arrive as one stream, already in the file's order.
    fleet.read_value(key, meta, &mut sink)?;
    io::Write::flush(&mut sink).map_err(|err| Error::io("writing the copy", err))?;
    drop(sink);
    let record = RunRecord {
        exit_code: meta.exit_code,
        finished_ms: meta.finished_ms,
        duration_ms: meta.duration_ms,
        jitter_ms: meta.jitter_ms,
        failures: 0,
        stdout_len: meta.stdout_len,
    };
    Ok(writer.commit(
        store,
        Record::Value,
        record,
        &mut AlreadyWritten(meta.stderr_len),
    )?)
}

/// What became of [`publish_local`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    /// The fleet answered (stored, or kept a newer value, or the lease was lost).
    Fleet(Published),
    /// Larger than the fleet's limit: it stays local.
    TooLarge {
        /// Its size.
        len: u64,
    },
    /// There is no local entry to share.
    Nothing,
}

/// Publishes the local entry of the lease's key to the fleet under `lease`, unless it
/// is larger than `max_len`.
pub fn publish_local(
    store: &FsStore,
    fleet: &mut Fleet,
    lease: &FleetLease,
    max_len: u64,
) -> Result<Shared> {
    let key = lease.key();
    let mut head = [MaybeUninit::uninit(); PREAMBLE_LEN];
    let Some(entry) = store
        .open(key, FileKind::Entry, &mut head)
        .map_err(|err| Error::io("reading the entry", io::Error::other(err.to_string())))?
    else {
        return Ok(Shared::Nothing);
    };
    let preamble = entry.preamble;
    let len = preamble.stdout_len + preamble.stderr_len;
    if len > max_len {
        return Ok(Shared::TooLarge { len });
    }
    let details = entry
        .details()
        .map_err(|err| Error::io("reading the entry", io::Error::other(err.to_string())))?;
    let meta = FleetMeta {
        generation: 0,
        finished_ms: preamble.finished_ms,
        duration_ms: u64::from(preamble.duration_ms),
        exit_code: preamble.exit_code,
        jitter_ms: preamble.jitter_ms,
        // Not the forced-stale mark: what is published is the newest value.
        flags: preamble.flags & super::entry::FLAG_CACHE_FAILURES,
        stdout_len: preamble.stdout_len,
        stderr_len: preamble.stderr_len,
        details: details.encode(),
        digest: None, // computed by the publish, from the bytes it sends
    };
    let mut file = entry.file();
    file.seek(SeekFrom::Start(preamble.stdout_start()))
        .map_err(|err| Error::io("reading the entry", err))?;
    let published = fleet
        .publish(lease, meta, &mut Read::take(file, len))
        .map_err(|err| fleet_error(&err))?;
    Ok(Shared::Fleet(published))
}

/// Stderr that is already in the file: the fleet sends a value's stdout and
/// stderr as one stream, which the stdout sink wrote in full.
struct AlreadyWritten(u64);

impl StderrSource for AlreadyWritten {
    fn copy_to(&mut self, _out: &std::fs::File) -> io::Result<u64> {
        Ok(self.0)
    }

    fn copy_tail_to(&mut self, _out: &std::fs::File, _limit: u64) -> io::Result<u64> {
        // A copy is always stored as the entry, never as a failure record.
        Err(io::Error::other(
            "a copy of a fleet value is not a failure record",
        ))
    }
}

fn fleet_error(err: &StoreError) -> Error {
    Error::io("the fleet store", io::Error::other(err.to_string()))
}
