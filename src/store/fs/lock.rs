//! The per-entry lock that makes refreshes single-flight.
//!
//! The lock is an `flock` on `<key>.lock`. The lock, not the file's existence,
//! is the truth: the kernel releases it when its holder dies, so `kill -9` of a
//! refresher never leaves a stuck lock behind.
//!
//! `invalidate` unlinks the lock file to tell a running refresh that its
//! result is outdated. A holder therefore checks after locking that the path
//! still names the file it locked ([`EntryLock::is_current`]), and retries
//! when it does not.
//!
//! `invalidate --refresh` must not make the entry disappear, so it does not
//! unlink the lock: it counts up the *stale generation* kept in the lock file
//! ([`bump_stale_generation`]). A run that sees the number change while it
//! ran stores its result marked stale (it may predate what the user reacted
//! to), and a refresher runs again.
//!
//! Readers (`stats`, `show`) ask whether a run is in flight without taking
//! anything: a shared `flock`, even for a moment, made a concurrent `warm` or
//! stale hit see the lock taken and back off. On Linux a holder also sets an
//! open-file-description (OFD) record lock, which a reader can query with
//! `F_OFD_GETLK` without holding any lock itself.

use std::fs::{File, OpenOptions};
use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use fs2::FileExt;

use crate::error::{Error, Result};
use crate::key::Key;

/// A held exclusive lock on one entry: the lease that is the only way to
/// write it (see [`crate::store::FsStore::writer`]). It carries its key, so
/// a result can only ever be committed as that key's. Dropping it releases
/// the lock.
#[derive(Debug)]
pub struct EntryLock {
    file: File,
    path: PathBuf,
    key: Key,
}

impl EntryLock {
    /// Takes the lock if nobody holds it; `None` when another process does.
    pub(super) fn try_acquire(path: &Path, key: &Key) -> Result<Option<EntryLock>> {
        loop {
            let file = open_lock_file(path)?;
            match FileExt::try_lock_exclusive(&file) {
                Ok(()) => {}
                Err(err) if err.kind() == fs2::lock_contended_error().kind() => return Ok(None),
                Err(err) => return Err(Error::path(path, err)),
            }
            let lock = EntryLock {
                file,
                path: path.to_owned(),
                key: *key,
            };
            if lock.is_current() {
                lock.advertise();
                return Ok(Some(lock));
            }
        }
    }

    /// Takes the lock, waiting for the holder if there is one. The flag tells
    /// whether the caller had to wait, that is, whether another run was in flight.
    pub(super) fn acquire(path: &Path, key: &Key) -> Result<(EntryLock, bool)> {
        let mut waited = false;
        loop {
            if let Some(lock) = Self::try_acquire(path, key)? {
                return Ok((lock, waited));
            }
            waited = true;
            let file = open_lock_file(path)?;
            loop {
                match FileExt::lock_exclusive(&file) {
                    Ok(()) => break,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(Error::path(path, err)),
                }
            }
            let lock = EntryLock {
                file,
                path: path.to_owned(),
                key: *key,
            };
            if lock.is_current() {
                lock.advertise();
                return Ok((lock, waited));
            }
        }
    }

    /// True while the lock file on disk is still the one this lock holds, that
    /// is, no `invalidate` has happened since it was taken.
    pub fn is_current(&self) -> bool {
        match (self.file.metadata(), std::fs::symlink_metadata(&self.path)) {
            (Ok(held), Ok(on_disk)) => held.ino() == on_disk.ino() && held.dev() == on_disk.dev(),
            _ => false,
        }
    }

    /// The entry this lock is for.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The lock file, for reading and writing the counters kept in it.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The stale generation as it is now (see [`bump_stale_generation`]).
    pub fn stale_generation(&self) -> u64 {
        read_generation(&self.file)
    }

    /// Lets readers see that this lock is held, without their taking it.
    /// The record lock belongs to the open file description, so the forked
    /// refresher, which shares it, keeps it until it exits.
    fn advertise(&self) {
        #[cfg(target_os = "linux")]
        {
            let mut record = whole_file(libc::F_WRLCK);
            // SAFETY: a valid flock record for the duration of the call.
            // Failure only hides the run from `stats`.
            unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_SETLK, &mut record) };
        }
    }
}

/// Bytes of the counters' totals record at the start of a lock file
/// (written by `store::events`). The layout of the lock file is defined here,
/// below the events that use it: events depend on the lock, not the reverse.
pub const TOTALS_LEN: usize = 8 + 6 * 8 + 8;

/// Byte offset of the stale generation in the lock file: right after the
/// counters' totals record, which never grows into it.
pub const GENERATION_OFFSET: u64 = TOTALS_LEN as u64;

/// Counts up the stale generation of the lock file at `path` (creating it
/// if need be), without taking the lock: a run in flight sees the change when
/// it stores its result. Two bumps racing may count once; either way the
/// number differs from what the run saw when it started, which is all that matters.
pub fn bump_stale_generation(path: &Path) -> Result<()> {
    let file = open_lock_file(path)?;
    let next = read_generation(&file).wrapping_add(1);
    std::os::unix::fs::FileExt::write_all_at(&file, &next.to_le_bytes(), GENERATION_OFFSET)
        .map_err(|err| Error::path(path, err))
}

fn read_generation(file: &File) -> u64 {
    let mut bytes = [0u8; 8];
    match std::os::unix::fs::FileExt::read_exact_at(file, &mut bytes, GENERATION_OFFSET) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => 0, // a lock file from before generations, or a fresh one
    }
}

/// True when some process holds the lock at `path` right now (a run is in
/// flight). Takes no lock, so it never makes a writer back off.
pub fn is_held(path: &Path) -> bool {
    let Ok(file) = open_for_reading(path) else {
        return false;
    };
    #[cfg(target_os = "linux")]
    {
        let mut record = whole_file(libc::F_WRLCK);
        // SAFETY: a valid flock record for the duration of the call.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut record) } == 0 {
            return i32::from(record.l_type) != libc::F_UNLCK;
        }
    }
    // Without OFD locks: a shared flock for an instant. A writer trying its
    // lock in that instant backs off, which costs one refresh at worst.
    match FileExt::try_lock_shared(&file) {
        Ok(()) => false,
        Err(err) => err.kind() == fs2::lock_contended_error().kind(),
    }
}

#[cfg(target_os = "linux")]
fn whole_file(kind: libc::c_int) -> libc::flock {
    // SAFETY: flock is plain data; zero is a valid value for every field.
    let mut record: libc::flock = unsafe { std::mem::zeroed() };
    record.l_type = kind as libc::c_short;
    record.l_whence = libc::SEEK_SET as libc::c_short;
    record
}

fn open_lock_file(path: &Path) -> Result<File> {
    // O_NONBLOCK keeps a planted FIFO from blocking the open; flock(2)
    // ignores the flag, so waiting for the lock still blocks.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| Error::path(path, err))?;
    // Whoever can plant the lock file could hold it forever or feed the
    // counters kept in it: only a private regular file of ours is used.
    let meta = file.metadata().map_err(|err| Error::path(path, err))?;
    if !super::owner::is_private_file(&meta) {
        let err = io::Error::new(
            io::ErrorKind::PermissionDenied,
            "lock file is not a regular file private to this user",
        );
        return Err(Error::path(path, err));
    }
    Ok(file)
}

/// Opens a lock file read-only, without following a symlink or blocking on a FIFO.
pub fn open_for_reading(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}
