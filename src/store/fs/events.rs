//! Per-entry counters that cost a hit one small append.
//!
//! Every hit appends one byte to `<key>.events` (opened `O_APPEND`, so
//! concurrent appends never overwrite each other). `stats` adds the bytes up,
//! so counts are current the moment it runs. The file's modification time
//! doubles as the entry's last use, which `gc` relies on instead of atime
//! (often not updated).
//!
//! What happens under the entry lock (a miss, a stored or failed run, a stale
//! hit whose caller takes the lock to start the refresh) is added to the
//! totals in the lock file directly ([`record_held`]): the holder is the only
//! writer of those totals, and neither a miss nor an entry's first stale hit
//! has to create a log file: creating a file was the dearest single step of a
//! miss (on ext4 without a journal the allocator checks recently freed inodes
//! one by one).
//!
//! To keep the log small, a lock holder folds it: it renames the log aside and
//! adds up the log renamed aside at the previous fold into the totals kept in
//! the lock file. Waiting a whole fold period before reading the renamed log
//! means an append that raced the rename has long landed. Refreshers fold
//! after every run; an entry that is never refreshed is folded by the hit that
//! takes its log to [`FOLD_AT`] bytes, so the log stays bounded either way.
//!
//! Every file here is opened `O_NOFOLLOW | O_NONBLOCK` and used only when
//! fstat says it is a regular file: a FIFO planted under a log's name must
//! not hang a hit (a write-open of a FIFO without a reader then fails with
//! `ENXIO`) or `stats` (a read-open returns at once and is then ignored).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::SystemTime;

use crate::key::Key;
use crate::store::lock::EntryLock;
use crate::store::{FileKind, FsStore};

/// One thing that happened to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Event {
    /// A fresh entry was served.
    Hit = b'h',
    /// A stale entry was served (and a refresh considered).
    StaleHit = b's',
    /// No usable entry: the caller ran the command or waited for it.
    Miss = b'm',
    /// A run (refresh, miss or forced) stored a new result.
    Refresh = b'r',
    /// A run failed and stored nothing.
    Failure = b'f',
}

/// Totals of each event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Fresh hits.
    pub hits: u64,
    /// Stale hits.
    pub stale_hits: u64,
    /// Misses.
    pub misses: u64,
    /// Successful runs that stored a result.
    pub refreshes: u64,
    /// Failed runs.
    pub failures: u64,
}

impl Counts {
    fn add_byte(&mut self, byte: u8) {
        match byte {
            b'h' => self.hits += 1,
            b's' => self.stale_hits += 1,
            b'm' => self.misses += 1,
            b'r' => self.refreshes += 1,
            b'f' => self.failures += 1,
            _ => {}
        }
    }

    fn add(&mut self, other: Counts) {
        self.hits += other.hits;
        self.stale_hits += other.stale_hits;
        self.misses += other.misses;
        self.refreshes += other.refreshes;
        self.failures += other.failures;
    }

    fn encode(&self, folded_ino: u64) -> [u8; TOTALS_LEN] {
        let mut out = [0u8; TOTALS_LEN];
        out[..4].copy_from_slice(TOTALS_MAGIC);
        let fields = [
            self.hits,
            self.stale_hits,
            self.misses,
            self.refreshes,
            self.failures,
            folded_ino,
        ];
        for (i, value) in fields.iter().enumerate() {
            out[8 + i * 8..16 + i * 8].copy_from_slice(&value.to_le_bytes());
        }
        let sum = checksum(&out[..TOTALS_LEN - 8]);
        out[TOTALS_LEN - 8..].copy_from_slice(&sum.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<(Counts, u64)> {
        if bytes.len() != TOTALS_LEN || &bytes[..4] != TOTALS_MAGIC {
            return None;
        }
        let stored = u64::from_le_bytes(bytes[TOTALS_LEN - 8..].try_into().ok()?);
        if stored != checksum(&bytes[..TOTALS_LEN - 8]) {
            return None;
        }
        let field = |i: usize| u64::from_le_bytes(bytes[8 + i * 8..16 + i * 8].try_into().unwrap());
        let counts = Counts {
            hits: field(0),
            stale_hits: field(1),
            misses: field(2),
            refreshes: field(3),
            failures: field(4),
        };
        Some((counts, field(5)))
    }
}

const TOTALS_MAGIC: &[u8; 4] = b"CBKc";

/// The lock file's layout is the lock's (see `store::lock`): everything here
/// reads and writes only its first `TOTALS_LEN` bytes and never truncates.
pub use super::lock::TOTALS_LEN;

/// Size at which the hit that appends to an events log folds it: 64 KiB is
/// 65,536 hits between folds, enough that a fold is rare next to the hits
/// it bounds, and that an append racing one fold's rename has long landed by
/// the next (see the module comment).
pub const FOLD_AT: u64 = 64 * 1024;

/// FNV-1a, enough to notice a torn write of the totals record.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Appends one event, and folds the log when this append took it to
/// [`FOLD_AT`] bytes. Failures are ignored: counting must never cost the user
/// their output.
pub fn record(store: &FsStore, key: &Key, event: Event) {
    let path = store.path(key, FileKind::Events);
    if let Ok(logged) = append(&path, event as u8)
        && logged >= FOLD_AT
    {
        fold_full_log(store, key);
    }
}

/// Appends `byte` to the log at `path` and returns the log's size after it.
/// This is on the hit path: one open, one fstat, one write, no allocation.
fn append(path: &Path, byte: u8) -> io::Result<u64> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    // libc's fstat rather than `File::metadata`: std's statx fills a larger
    // structure and converts it, for the two fields needed here.
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a whole `stat` into the pointer on success.
    if unsafe { libc::fstat(file.as_raw_fd(), stat.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so it initialised `stat`.
    let stat = unsafe { stat.assume_init() };
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
        // A FIFO with a reader, a device: not ours to write a count into.
        return Err(io::ErrorKind::InvalidInput.into());
    }
    file.write_all(&[byte])?;
    Ok(u64::try_from(stat.st_size).unwrap_or(0) + 1)
}

/// Folds a log a hit found full, if the entry's lock is free right now
/// (a holder is a run, which folds when it ends). Kept out of line: it runs
/// once per [`FOLD_AT`] hits and must not grow the hit's code.
#[cold]
#[inline(never)]
fn fold_full_log(store: &FsStore, key: &Key) {
    let Ok(Some(lock)) = store.try_lock(key) else {
        return;
    };
    // Hits that found the log full at the same moment queue up here: after
    // the first has folded, the log at the path is a new, short one, and
    // folding again would read the log just renamed aside while appends that
    // opened it before the rename may still be landing in it.
    let full = std::fs::symlink_metadata(store.path(key, FileKind::Events))
        .is_ok_and(|meta| meta.is_file() && meta.len() >= FOLD_AT);
    if full {
        let _ = fold(store, key, &lock);
    }
}

/// Current totals for a key and when it was last used (the newest event).
pub fn read(store: &FsStore, key: &Key) -> (Counts, Option<SystemTime>) {
    let (mut counts, _) = read_totals(&store.path(key, FileKind::Lock));
    let mut last_used = None;
    for kind in [FileKind::EventsFolding, FileKind::Events] {
        if let Some((logged, modified)) = count_log(&store.path(key, kind)) {
            counts.add(logged);
            last_used = last_used.max(Some(modified));
        }
    }
    (counts, last_used)
}

/// Counts one event that happened under the entry lock straight into the
/// totals kept in the lock file. Failures are ignored, as in [`record`].
pub fn record_held(lock: &EntryLock, event: Event) {
    // A record that cannot be read is left as it is.
    let Ok((mut totals, folded_ino)) = totals_in(lock.file()) else {
        return;
    };
    totals.add_byte(event as u8);
    let _ = lock.file().write_all_at(&totals.encode(folded_ino), 0);
}

fn read_totals(lock_path: &Path) -> (Counts, u64) {
    crate::store::lock::open_for_reading(lock_path)
        .and_then(|file| totals_in(&file))
        .unwrap_or_default()
}

/// The totals record at the start of a lock file (zero when it has none yet
/// or holds something else). Only the first [`TOTALS_LEN`] bytes are the
/// record: whatever follows (the stale generation) is not read here.
fn totals_in(file: &File) -> io::Result<(Counts, u64)> {
    // A regular file's pread returns all there is up to the length.
    let mut bytes = [0u8; TOTALS_LEN];
    let len = loop {
        match file.read_at(&mut bytes, 0) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            read => break read?,
        }
    };
    Ok(Counts::decode(&bytes[..len]).unwrap_or_default())
}

/// Adds up the events in the log at `path` and returns them with the log's
/// modification time; `None` when there is no such regular file.
fn count_log(path: &Path) -> Option<(Counts, SystemTime)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let modified = meta.modified().ok()?;
    let mut counts = Counts::default();
    let mut buf = [0u8; 64 * 1024];
    let mut reader = &file;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => buf[..n].iter().for_each(|&b| counts.add_byte(b)),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    Some((counts, modified))
}

/// Folds the events log into the totals kept in the lock file. Only a lock
/// holder may fold, hence the lock argument.
pub fn fold(store: &FsStore, key: &Key, lock: &EntryLock) -> io::Result<()> {
    let folding = store.path(key, FileKind::EventsFolding);
    let live = store.path(key, FileKind::Events);
    let (mut totals, folded_ino) = totals_in(lock.file()).unwrap_or_default();
    if let Ok(meta) = std::fs::symlink_metadata(&folding) {
        // A crash after the totals were written but before the old log was
        // removed must not count it twice: the totals remember its inode.
        if meta.ino() != folded_ino {
            if let Some((counts, _)) = count_log(&folding) {
                totals.add(counts);
            }
            lock.file().write_all_at(&totals.encode(meta.ino()), 0)?;
        }
        std::fs::remove_file(&folding)?;
        // Forget the inode now that the file is gone: the number may be reused.
        lock.file().write_all_at(&totals.encode(0), 0)?;
    }
    match std::fs::rename(&live, &folding) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts whose every field differs (5, 1, 2, 3, 4 in field order).
    fn sample() -> Counts {
        Counts {
            hits: 5,
            stale_hits: 1,
            misses: 2,
            refreshes: 3,
            failures: 4,
        }
    }

    #[test]
    fn totals_round_trip_and_detect_damage() {
        let counts = sample();
        let mut bytes = counts.encode(77);
        assert_eq!(Counts::decode(&bytes), Some((counts, 77)));
        bytes[9] ^= 1;
        assert_eq!(Counts::decode(&bytes), None);
        assert_eq!(Counts::decode(&bytes[..10]), None);
    }

    /// Every cache holds lock files in this layout, and an upgrade must keep
    /// their counts: a record built byte by byte (magic, padding, five
    /// counts and the folded inode, then the checksum of all that) reads.
    #[test]
    fn a_totals_record_in_the_layout_on_disk_reads() {
        let mut bytes = b"CBKc\0\0\0\0".to_vec();
        for value in [5u64, 1, 2, 3, 4, 77] {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        let sum = checksum(&bytes);
        bytes.extend_from_slice(&sum.to_le_bytes());
        assert_eq!(bytes.len(), 64);
        assert_eq!(Counts::decode(&bytes), Some((sample(), 77)));
    }

    #[test]
    fn totals_ignore_what_follows_the_record() {
        let counts = Counts {
            hits: 9,
            ..Counts::default()
        };
        let file = tempfile::tempfile().unwrap();
        file.write_all_at(&counts.encode(3), 0).unwrap();
        // The stale generation, written by whoever owns it.
        file.write_all_at(&42u64.to_le_bytes(), TOTALS_LEN as u64)
            .unwrap();
        assert_eq!(totals_in(&file).unwrap(), (counts, 3));
        assert_eq!(file.metadata().unwrap().len(), TOTALS_LEN as u64 + 8);
    }

    #[test]
    fn logs_that_are_not_regular_files_are_skipped_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("log");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(count_log(&fifo).is_none());
        assert!(append(&fifo, b'h').is_err());
        let log = dir.path().join("regular");
        assert_eq!(append(&log, b'h').unwrap(), 1);
        assert_eq!(append(&log, b's').unwrap(), 2);
        let (counts, _) = count_log(&log).unwrap();
        assert_eq!((counts.hits, counts.stale_hits), (1, 1));
    }
}
