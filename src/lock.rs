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

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use fs2::FileExt;

use crate::error::{Error, Result};

/// A held exclusive lock on one entry. Dropping it releases the lock.
#[derive(Debug)]
pub struct EntryLock {
    file: File,
    path: PathBuf,
}

impl EntryLock {
    /// Takes the lock if nobody holds it; `None` when another process does.
    pub fn try_acquire(path: &Path) -> Result<Option<EntryLock>> {
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
            };
            if lock.is_current() {
                return Ok(Some(lock));
            }
        }
    }

    /// Takes the lock, waiting for the holder if there is one. The flag tells
    /// whether the caller had to wait, that is, whether another run was in flight.
    pub fn acquire(path: &Path) -> Result<(EntryLock, bool)> {
        let mut waited = false;
        loop {
            if let Some(lock) = Self::try_acquire(path)? {
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
            };
            if lock.is_current() {
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

    /// The lock file, for reading and writing the counters kept in it.
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// True when some process holds the lock at `path` right now (a refresh is running).
pub fn is_held(path: &Path) -> bool {
    let Ok(file) = open_for_reading(path) else {
        return false;
    };
    match FileExt::try_lock_shared(&file) {
        Ok(()) => false,
        Err(err) => err.kind() == fs2::lock_contended_error().kind(),
    }
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
    if !meta.is_file() || meta.uid() != crate::store::effective_uid() || meta.mode() & 0o022 != 0 {
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
