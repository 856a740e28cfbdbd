//! `cacheback gc`: remove entries nobody reads, shrink the cache to a size,
//! and clean up what killed processes left behind.
//!
//! "Last read" is the newest modification time of an entry's result,
//! failure record and events logs: every hit appends to the events log, so
//! its mtime is the last read, and a result's mtime is when its run finished.
//! atime is not used (many systems do not update it), and no entry file is
//! opened, so a pass over a large cache costs one directory listing and its
//! stats (only temp files old enough to be a killed writer's are opened).
//! An entry whose lock is held (a run in flight) is never touched. Refreshers
//! run a default pass at most once a day
//! ([`maybe_daily`]); the hit path never does.

use std::fs::OpenOptions;
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt};
use std::time::{Duration, SystemTime};

use fs2::FileExt as _;

use super::lock;
use super::{FileKind, FsStore, remove_if_present};
use crate::error::Result;
use crate::inspect::{self, KeyFiles, system_ms};
use crate::key::Key;

/// Default for `--older-than`, also used by the daily gc.
pub const DEFAULT_OLDER_THAN: Duration = Duration::from_secs(30 * 86400);
/// A temp file is removed only once it is untouched this long and no process
/// has it open (see [`writer_gone`]). The age alone was the rule before the
/// open check, and still is where the filesystem cannot tell (no leases):
/// a live writer's file is modified as output arrives, and background runs
/// stop after their time limit long before this.
pub const TEMP_GRACE: Duration = Duration::from_secs(86400);
/// Lock and events files of a key without an entry are left alone this long,
/// so a first run that has counted its miss but not yet stored anything keeps them.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(3600);
/// How often refreshers run the opportunistic gc.
pub const DAILY: Duration = Duration::from_secs(86400);
/// File in the cache directory recording when the opportunistic gc last ran.
pub const STAMP: &str = ".gc-stamp";

/// What one gc pass removed (or would remove) and what remains.
#[derive(Debug, Default)]
pub struct Report {
    /// Entries removed for not being read within `--older-than`: count, bytes.
    pub unused: (usize, u64),
    /// Entries removed to fit `--max-size`: count, bytes.
    pub evicted: (usize, u64),
    /// Temp files of killed writers: count, bytes.
    pub temps: (usize, u64),
    /// Lock and events files of keys without an entry: count, bytes.
    pub orphans: (usize, u64),
    /// Entries left: count, and bytes of the entries' files left in the
    /// directory (temp files are not entries, see [`collect`]).
    pub remaining: (usize, u64),
}

/// One gc pass over the whole directory.
///
/// Temp files never count toward `max_size`: most belong to runs in flight,
/// whose output becomes an entry (counted by the next pass) or goes away, and
/// evicting entries to make room for them freed nothing they would occupy.
pub fn collect(
    store: &FsStore,
    older_than: Duration,
    max_size: Option<u64>,
    dry_run: bool,
    now_ms: u64,
) -> Result<Report> {
    let scan = inspect::scan(store)?;
    let mut report = Report::default();
    let older = |meta: &std::fs::Metadata, grace: Duration| {
        meta.modified()
            .is_ok_and(|at| now_ms.saturating_sub(system_ms(at)) >= millis(grace))
    };
    let mut temp_bytes = 0;
    for (path, meta) in &scan.temps {
        temp_bytes += meta.len();
        if older(meta, TEMP_GRACE) && writer_gone(path) && (dry_run || remove_if_present(path)?) {
            report.temps.0 += 1;
            report.temps.1 += meta.len();
        }
    }
    let mut live: Vec<(u64, Key, u64)> = Vec::new();
    for (key, files) in &scan.keys {
        if !files.is_entry() {
            let stale = files
                .files
                .iter()
                .all(|(_, meta)| older(meta, ORPHAN_GRACE));
            if stale && remove_key(store, key, dry_run)? {
                report.orphans.0 += files.files.len();
                report.orphans.1 += files.size();
            }
            continue;
        }
        let mut last_read = last_read_ms(files);
        // A last read from the future (a clock stepped back, a copied
        // cache) has an unknown age. Taken as "just used" it would keep the
        // entry for ever; its age starts now instead (the files' times are
        // set to now), so it goes one --older-than later if nobody reads it.
        // The clock is read again: a file written since `now_ms` is not one.
        if last_read > now_ms && last_read > system_ms(SystemTime::now()) {
            if !dry_run {
                restart_age(store, key, files);
            }
            last_read = now_ms;
        }
        if now_ms.saturating_sub(last_read) >= millis(older_than)
            && remove_key(store, key, dry_run)?
        {
            report.unused.0 += 1;
            report.unused.1 += files.size();
            continue;
        }
        live.push((last_read, *key, files.size()));
    }
    let removed = report.unused.1 + report.orphans.1;
    let mut total = scan
        .total_bytes
        .saturating_sub(temp_bytes)
        .saturating_sub(removed);
    if let Some(max_size) = max_size {
        live.sort();
        let mut kept = Vec::with_capacity(live.len());
        for (last_read, key, size) in live {
            if total > max_size && remove_key(store, &key, dry_run)? {
                total = total.saturating_sub(size);
                report.evicted.0 += 1;
                report.evicted.1 += size;
            } else {
                kept.push((last_read, key, size));
            }
        }
        live = kept;
    }
    report.remaining = (live.len(), total);
    Ok(report)
}

/// Sets the modification time of `key`'s files that are dated in the future
/// to now (best effort: a file that cannot be changed keeps its time).
fn restart_age(store: &FsStore, key: &Key, files: &KeyFiles) {
    let now = SystemTime::now();
    for (kind, meta) in &files.files {
        if *kind == FileKind::Lock || meta.modified().is_ok_and(|modified| modified <= now) {
            continue;
        }
        if let Ok(file) = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(store.path(key, *kind))
        {
            let _ = file.set_modified(now);
        }
    }
}

/// When the entry was last read or stored, from its files' modification times
/// (the lock file's is left out: folding counters rewrites it).
fn last_read_ms(files: &KeyFiles) -> u64 {
    files
        .files
        .iter()
        .filter(|(kind, _)| *kind != FileKind::Lock)
        .filter_map(|(_, meta)| meta.modified().ok())
        .map(system_ms)
        .max()
        .unwrap_or(0)
}

/// True when no process has the temp file at `path` open, so its writer is
/// gone. A live writer keeps its temp file open from creating it until it
/// renames it into place, but may write nothing for hours (a command silent
/// after its first line), so age alone cannot tell. The kernel can: it grants
/// a write lease only on a file nobody else has open (fcntl(2),
/// `F_SETLEASE`). Where it grants no leases at all (some network
/// filesystems, leases disabled), the age rule decides alone, as before.
fn writer_gone(path: &std::path::Path) -> bool {
    // O_NONBLOCK: a lease another gc holds for a moment makes the open fail
    // rather than wait for the lease to be broken.
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        // Renamed into place or removed meanwhile: nothing to remove.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return false,
        Err(err) => return err.raw_os_error() != Some(libc::EWOULDBLOCK),
    };
    // SAFETY: plain fcntl on a descriptor we own; the lease, if granted, goes
    // with the descriptor when `file` is dropped.
    #[cfg(target_os = "linux")]
    let leased = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) };
    // Leases are Linux's: elsewhere the age alone decides.
    #[cfg(not(target_os = "linux"))]
    let leased = {
        drop(file);
        0
    };
    if leased == 0 {
        return true;
    }
    // EAGAIN: someone has the file open (or mapped). Anything else: the
    // filesystem cannot say, and the age alone decides.
    std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)
}

/// Removes every file of a key unless a run holds its lock; true when removed
/// (or, dry, when it would be).
fn remove_key(store: &FsStore, key: &Key, dry_run: bool) -> Result<bool> {
    if dry_run {
        return Ok(!lock::is_held(&store.path(key, FileKind::Lock)));
    }
    // Holding the lock keeps a refresh from starting while the files go.
    let Some(_lock) = store.try_lock(key)? else {
        return Ok(false);
    };
    store.invalidate(key)?;
    for kind in [FileKind::Events, FileKind::EventsFolding] {
        remove_if_present(&store.path(key, kind))?;
    }
    Ok(true)
}

/// Runs a default gc pass if none ran in the last day. Called by refreshers
/// after their work is stored; errors are ignored, as gc is housekeeping.
pub fn maybe_daily(store: &FsStore, now_ms: u64) {
    let path = store.dir().join(STAMP);
    let last_run = |file: &std::fs::File| -> u64 {
        let mut bytes = [0u8; 32];
        let len = file.read_at(&mut bytes, 0).unwrap_or(0);
        std::str::from_utf8(&bytes[..len])
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    };
    let due = |last: u64| now_ms.saturating_sub(last) >= millis(DAILY);
    // The stamp holds the time of the last pass; a missing or empty stamp means never.
    let Ok(file) = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    else {
        return;
    };
    if !due(last_run(&file)) {
        return;
    }
    // Of refreshers finishing at once, one does the pass; the others see the
    // lock taken, or the new time once they get it.
    if file.try_lock_exclusive().is_err() {
        return;
    }
    if !due(last_run(&file)) {
        return;
    }
    let stamp = format!("{now_ms:<20}\n");
    if file.write_all_at(stamp.as_bytes(), 0).is_err() {
        return;
    }
    let _ = collect(store, DEFAULT_OLDER_THAN, None, false, now_ms);
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
