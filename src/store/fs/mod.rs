//! The on-disk store: one set of files per key in a private directory.
//!
//! ```text
//! <dir>/<key>.entry        the last good result (entry format, see `entry`)
//! <dir>/<key>.fail         the last failed run, in the same format
//! <dir>/<key>.lock         the single-flight lock; also holds folded counters
//! <dir>/<key>.events       append-only log of hits, misses and refreshes
//! <dir>/.tmp-*             results being written; renamed into place when whole
//! ```
//!
//! `FsStore` is the seam a shared network store would implement next to it:
//! everything above this module speaks in keys, entries and locks.

pub mod block_writer;
pub mod entry;
pub mod events;
pub mod gc;
pub mod lock;
pub mod owner;

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt as _, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::key::Key;
use block_writer::BlockWriter;
use entry::{Details, FormatError, PREAMBLE_LEN, Preamble};
use lock::EntryLock;

/// The files a key owns in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The last good result.
    Entry,
    /// The last failed run.
    Failure,
    /// The lock file.
    Lock,
    /// The append-only events log.
    Events,
    /// The events log being folded into the lock file's counters.
    EventsFolding,
}

impl FileKind {
    /// The file-name suffix of this kind.
    pub fn suffix(self) -> &'static str {
        match self {
            FileKind::Entry => ".entry",
            FileKind::Failure => ".fail",
            FileKind::Lock => ".lock",
            FileKind::Events => ".events",
            FileKind::EventsFolding => ".events.old",
        }
    }

    /// Every kind, for listing and removal.
    pub const ALL: [FileKind; 5] = [
        FileKind::Entry,
        FileKind::Failure,
        FileKind::Lock,
        FileKind::Events,
        FileKind::EventsFolding,
    ];
}

/// Prefix of temp files, so `gc` can find the ones a killed writer left behind.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Why a stored entry could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file is not a valid entry of this version.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The file is not ours: another owner, writable by others, or not a regular file.
    #[error("entry file is not a regular file private to this user")]
    Untrusted,
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A cache directory on the local filesystem.
#[derive(Debug, Clone)]
pub struct FsStore {
    dir: PathBuf,
}

impl FsStore {
    /// A store rooted at `dir` (not created until something is written).
    pub fn new(dir: PathBuf) -> FsStore {
        FsStore { dir }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of one of a key's files.
    pub fn path(&self, key: &Key, kind: FileKind) -> PathBuf {
        let mut name = key.to_hex();
        name.push_str(kind.suffix());
        self.dir.join(name)
    }

    /// Creates the directory (mode 0700) if needed and checks that it is safe
    /// to write to: ours, and writable by nobody else.
    pub fn prepare(&self) -> Result<()> {
        // Look before creating: the directory nearly always exists, and one
        // stat is cheaper than a mkdir that fails and a stat after it.
        let meta = match std::fs::metadata(&self.dir) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&self.dir)
                    .map_err(|err| Error::path(&self.dir, err))?;
                std::fs::metadata(&self.dir)
            }
            found => found,
        }
        .map_err(|err| Error::path(&self.dir, err))?;
        match unsafe_because(&meta) {
            Some(reason) => Err(Error::UnsafeCacheDir {
                path: self.dir.clone(),
                reason: reason.to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// Why the directory cannot be used as it is, without creating it:
    /// `Ok(None)` when it is usable, `Ok(Some(reason))` when it is missing or
    /// unsafe, `Err` when it cannot even be looked at.
    pub fn problem(&self) -> io::Result<Option<&'static str>> {
        match std::fs::metadata(&self.dir) {
            Ok(meta) => Ok(unsafe_because(&meta)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                Ok(Some("does not exist yet (the first `run` creates it)"))
            }
            Err(err) => Err(err),
        }
    }

    /// Opens a key's entry or failure record, reading its head into `head`.
    /// `Ok(None)` when there is none.
    ///
    /// The buffer is uninitialised memory because clearing the (then 16 KiB) buffer
    /// first cost a cache hit a quarter of its instructions.
    pub fn open<'h>(
        &self,
        key: &Key,
        kind: FileKind,
        head: &'h mut [MaybeUninit<u8>],
    ) -> Result<Option<StoredEntry<'h>>, OpenError> {
        open_entry(&self.path(key, kind), head)
    }

    /// The preamble of a key's entry or failure record, when one is readable.
    pub fn peek(&self, key: &Key, kind: FileKind) -> Option<Preamble> {
        let mut head = [MaybeUninit::uninit(); PREAMBLE_LEN];
        Some(self.open(key, kind, &mut head).ok()??.preamble)
    }

    /// SHA-256 of a key's cached stdout, when its entry is readable: tells
    /// whether a refresh changed the value (`--on-refresh`).
    pub fn stdout_digest(&self, key: &Key) -> Option<[u8; crate::key::KEY_LEN]> {
        let mut head = [MaybeUninit::uninit(); PREAMBLE_LEN];
        let entry = self.open(key, FileKind::Entry, &mut head).ok()??;
        let (start, len) = (entry.preamble.stdout_start(), entry.preamble.stdout_len);
        let mut stdout = Read::take(&entry.file, len);
        (&entry.file).seek(io::SeekFrom::Start(start)).ok()?;
        crate::digest::sha256_copy(&mut stdout, &mut io::sink()).ok()
    }

    /// Flags a key's entry, if it has one, as having a failed run after it
    /// ([`entry::FLAG_FAILED_SINCE`]); a later success replaces the file and
    /// with it the flag. Best effort: the failure record is what counts.
    pub fn flag_entry_failed(&self, key: &Key) {
        let Ok(file) = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.path(key, FileKind::Entry))
        else {
            return;
        };
        let byte = (entry::FLAG_FAILED_SINCE >> 8) as u8;
        let _ = file.write_all_at(&[byte], entry::FAILED_SINCE_OFFSET);
    }

    /// Takes a key's lock if it is free.
    pub fn try_lock(&self, key: &Key) -> Result<Option<EntryLock>> {
        EntryLock::try_acquire(&self.path(key, FileKind::Lock), key)
    }

    /// Takes a key's lock, waiting for a holder; the flag tells whether it waited.
    pub fn lock(&self, key: &Key) -> Result<(EntryLock, bool)> {
        EntryLock::acquire(&self.path(key, FileKind::Lock), key)
    }

    /// A miss's lookup under the lease: waits for the key's lease (another
    /// caller running the command holds it), then either a run that ended
    /// since the caller looked (`seen`) answers it, the value if `usable`,
    /// or its failure; or the caller gets the lease and runs the command.
    /// The decision is the rules' ([`crate::rules::Holding`]), as the fleet's
    /// is ([`crate::rules::claim_miss`]).
    pub fn take_turn<'h>(
        &self,
        key: &Key,
        seen: &crate::rules::Holding,
        usable: impl Fn(&Preamble) -> bool,
        head: &'h mut [MaybeUninit<u8>],
    ) -> Result<Turn<'h>> {
        self.prepare()?;
        let (lease, _) = self.lock(key)?;
        let now = crate::rules::Store::holding(self, key)?;
        if now.value_stored_since(seen.value_version) && now.value.as_ref().is_some_and(usable) {
            return Ok(match self.open(key, FileKind::Entry, head) {
                Ok(Some(entry)) => Turn::Hit { entry, lease },
                _ => Turn::Miss(lease),
            });
        }
        if now.failure_stored_since(seen.failure_version) {
            return Ok(match self.open(key, FileKind::Failure, head) {
                Ok(Some(record)) => Turn::Failed { record, lease },
                _ => Turn::Miss(lease),
            });
        }
        Ok(Turn::Miss(lease))
    }

    /// Starts writing a result for the key of `lock`: the lock is the only
    /// way to get a writer, and the writer commits under it, as its key's.
    pub fn writer<'l>(&self, lock: &'l EntryLock, details: &Details) -> Result<EntryWriter<'l>> {
        EntryWriter::create(&self.dir, details, lock)
    }

    /// Removes a key's entry, failure record and lock (which tells a running
    /// refresh that its result is outdated), in that safe order.
    pub fn invalidate(&self, key: &Key) -> Result<()> {
        // The lock goes first: a refresher renames its result into place and then
        // checks its lock, so whichever order the two interleave in, the result
        // of a refresh that overlaps an invalidation never survives it.
        for kind in [FileKind::Lock, FileKind::Entry, FileKind::Failure] {
            remove_if_present(&self.path(key, kind))?;
        }
        Ok(())
    }
}

/// What a miss gets from [`FsStore::take_turn`]: the value or the lease.
/// Each holds the lease, so the caller's call is counted under it.
#[derive(Debug)]
pub enum Turn<'h> {
    /// A value stored by a run that ended since the caller looked: serve it.
    Hit {
        /// The value.
        entry: StoredEntry<'h>,
        /// The key's lease, held while the caller counts its call.
        lease: EntryLock,
    },
    /// A run that ended since the caller looked failed: its record is the
    /// caller's result, as if it had run the command itself.
    Failed {
        /// The failure record.
        record: StoredEntry<'h>,
        /// The key's lease.
        lease: EntryLock,
    },
    /// Nothing landed: run the command under this lease.
    Miss(EntryLock),
}

/// The file store, as the rules see it. A value is told from the next by
/// its finish time, as the caller that served it knows it; a failure record
/// by its inode: every record is a new file renamed into place, so a clock
/// stepped while a caller waited cannot make an old record look new.
impl crate::rules::Store for FsStore {
    type Lease = EntryLock;
    type Error = Error;

    fn holding(&self, key: &Key) -> Result<crate::rules::Holding> {
        let value = self.peek(key, FileKind::Entry);
        let mut head = [MaybeUninit::uninit(); PREAMBLE_LEN];
        let failure = self.open(key, FileKind::Failure, &mut head).ok().flatten();
        Ok(crate::rules::Holding {
            value,
            value_version: value.map(|value| value.finished_ms),
            failure: failure.as_ref().map(|record| crate::rules::FailureMark {
                finished_ms: record.preamble.finished_ms,
                failures: record.preamble.failures,
            }),
            failure_version: failure
                .and_then(|record| record.file().metadata().ok())
                .map(|meta| meta.ino()),
        })
    }

    fn try_lease(&self, key: &Key) -> Result<Option<EntryLock>> {
        self.try_lock(key)
    }

    fn give_back(&self, lease: EntryLock) {
        drop(lease);
    }
}

impl crate::rules::Lease for EntryLock {
    fn key(&self) -> &Key {
        EntryLock::key(self)
    }
}

/// Name of the file holding the secret that keys `--env` hashes.
pub const SECRET_FILE: &str = ".secret";

impl crate::key::EnvSecret for FsStore {
    /// Reads the cache's secret, creating the directory and the secret on
    /// first use. A new secret is written whole to a temp file and linked
    /// into place, so racing creators agree on whichever landed first.
    fn env_secret(&self) -> io::Result<[u8; crate::key::KEY_LEN]> {
        let path = self.dir.join(SECRET_FILE);
        loop {
            match read_secret(&path) {
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                read => return read,
            }
            self.prepare().map_err(io::Error::other)?;
            let mut secret = [0u8; crate::key::KEY_LEN];
            File::open("/dev/urandom")?.read_exact(&mut secret)?;
            let temp = tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .tempfile_in(&self.dir)?;
            temp.as_file().write_all(&secret)?;
            match std::fs::hard_link(temp.path(), &path) {
                Ok(()) => return Ok(secret),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err),
            }
        }
    }
}

/// Reads a secret file that must be a private regular file of ours.
fn read_secret(path: &Path) -> io::Result<[u8; crate::key::KEY_LEN]> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.uid() != effective_uid() || meta.mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{}: not a regular file private to this user",
                path.display()
            ),
        ));
    }
    let mut secret = [0u8; crate::key::KEY_LEN];
    (&file).read_exact(&mut secret)?;
    Ok(secret)
}

/// Why a cache directory with this metadata may not be used, if it may not.
fn unsafe_because(meta: &std::fs::Metadata) -> Option<&'static str> {
    if !meta.is_dir() {
        Some("not a directory")
    } else if meta.uid() != effective_uid() {
        Some("owned by another user")
    } else if meta.mode() & 0o022 != 0 {
        Some("writable by group or others (chmod 700 it)")
    } else {
        None
    }
}

/// Removes a file; `Ok(false)` when it was not there.
pub fn remove_if_present(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(Error::path(path, err)),
    }
}

pub use owner::effective_uid;

fn open_entry<'h>(
    path: &Path,
    head: &'h mut [MaybeUninit<u8>],
) -> Result<Option<StoredEntry<'h>>, OpenError> {
    // O_NONBLOCK: a FIFO planted under an entry's name would otherwise block
    // the open until a writer appears, hanging the caller's shell.
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    let meta = file.metadata()?;
    // Anyone who can plant a file here could make us replay their output.
    if !owner::is_private_file(&meta) {
        return Err(OpenError::Untrusted);
    }
    let file_len = meta.len();
    let wanted = usize::try_from(file_len)
        .unwrap_or(usize::MAX)
        .min(head.len());
    let head = read_head(&file, &mut head[..wanted])?;
    let preamble = Preamble::decode(head, file_len)?;
    Ok(Some(StoredEntry {
        file,
        preamble,
        head,
    }))
}

/// Fills `buf` from the file's current position (short only at end of file)
/// and returns the bytes read.
fn read_head<'b>(file: &File, buf: &'b mut [MaybeUninit<u8>]) -> io::Result<&'b [u8]> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: read(2) writes at most `rest.len()` bytes into `rest`.
        let n = unsafe { libc::read(file.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) };
        match n {
            0 => break,
            n if n > 0 => filled += n as usize,
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    // SAFETY: the first `filled` bytes were written by read(2) above.
    Ok(unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), filled) })
}

/// An open, validated entry (or failure record).
#[derive(Debug)]
pub struct StoredEntry<'h> {
    file: File,
    /// The decoded preamble.
    pub preamble: Preamble,
    head: &'h [u8],
}

impl StoredEntry<'_> {
    /// Writes the cached stdout to `out`.
    pub fn copy_stdout(&self, out: &File) -> io::Result<()> {
        self.copy_range(self.preamble.stdout_start(), self.preamble.stdout_len, out)
    }

    /// Writes the cached stdout to `out` with `marker` inserted before its
    /// final newline (or at its end, when it has none).
    pub fn copy_stdout_marked(&self, out: &File, marker: &[u8]) -> io::Result<()> {
        let (start, len) = (self.preamble.stdout_start(), self.preamble.stdout_len);
        let newline = len > 0 && self.byte_at(start + len - 1)? == b'\n';
        self.copy_range(start, len - u64::from(newline), out)?;
        crate::output::write_all(out, marker)?;
        if newline {
            crate::output::write_all(out, b"\n")?;
        }
        Ok(())
    }

    fn byte_at(&self, at: u64) -> io::Result<u8> {
        if let Some(&byte) = usize::try_from(at).ok().and_then(|at| self.head.get(at)) {
            return Ok(byte);
        }
        let mut byte = [0u8];
        self.file.read_exact_at(&mut byte, at)?;
        Ok(byte[0])
    }

    /// Writes the cached stderr to `out`.
    pub fn copy_stderr(&self, out: &File) -> io::Result<()> {
        self.copy_range(self.preamble.stderr_start(), self.preamble.stderr_len, out)
    }

    /// Copies `len` bytes at `start`: what the first read already brought in
    /// is written from memory, the rest goes file-to-output inside the kernel
    /// (`io::copy` between files uses sendfile/splice), so output of any size
    /// never passes through a user-space buffer of its size.
    fn copy_range(&self, start: u64, len: u64, out: &File) -> io::Result<()> {
        let end = start + len;
        let in_head = self.head.len() as u64;
        if start < in_head {
            crate::output::write_all(out, &self.head[start as usize..end.min(in_head) as usize])?;
        }
        if end > in_head {
            copy_file_range_to(&self.file, start.max(in_head), end, out)?;
        }
        Ok(())
    }

    /// Reads and decodes the details (argv, label, key inputs).
    pub fn details(&self) -> Result<Details, OpenError> {
        let mut bytes = vec![0u8; self.preamble.details_len as usize];
        self.file
            .read_exact_at(&mut bytes, self.preamble.details_start())?;
        Ok(Details::decode(&bytes, self.preamble.version)?)
    }

    /// Reads at most the last `limit` bytes of the cached stderr.
    pub fn stderr_tail(&self, limit: u64) -> io::Result<Vec<u8>> {
        let len = self.preamble.stderr_len.min(limit);
        let mut bytes = vec![0u8; len as usize];
        let at = self.preamble.stderr_start() + self.preamble.stderr_len - len;
        self.file.read_exact_at(&mut bytes, at)?;
        Ok(bytes)
    }

    /// The underlying file, for in-place flag updates.
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Copies bytes `from..end` of `file` to `out` inside the kernel with
/// sendfile(2), whatever `out` is (a pipe, a file, a socket); std's `io::copy`
/// does not do this for a pipe and would loop over 8 KiB reads and writes.
/// Falls back to a plain copy where the kernel refuses (a terminal, say).
/// Only Linux's sendfile writes to any descriptor (the BSDs' and macOS's
/// write to sockets only): elsewhere, and with `--cfg cacheback_portable`,
/// the plain copy does it all.
#[cfg(not(all(target_os = "linux", not(cacheback_portable))))]
fn copy_file_range_to(file: &File, from: u64, end: u64, out: &File) -> io::Result<()> {
    copy_through_memory(file, from, end.saturating_sub(from), out)
}

/// See the portable version above.
#[cfg(all(target_os = "linux", not(cacheback_portable)))]
fn copy_file_range_to(file: &File, from: u64, end: u64, out: &File) -> io::Result<()> {
    let mut offset = libc::off_t::try_from(from).map_err(io::Error::other)?;
    let end = libc::off_t::try_from(end).map_err(io::Error::other)?;
    while offset < end {
        let chunk = usize::try_from(end - offset)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        // SAFETY: plain descriptors; sendfile advances `offset` by what it copied.
        let sent = unsafe { libc::sendfile(out.as_raw_fd(), file.as_raw_fd(), &mut offset, chunk) };
        match sent {
            0 => return Err(entry_shrank()),
            n if n > 0 => {}
            _ => {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EINTR) => {}
                    // A non-blocking output with a slow reader: wait, lose nothing.
                    Some(libc::EAGAIN) => crate::output::wait_writable(out)?,
                    Some(libc::EINVAL | libc::ENOSYS) => {
                        return copy_through_memory(
                            file,
                            offset as u64,
                            (end - offset) as u64,
                            out,
                        );
                    }
                    _ => return Err(err),
                }
            }
        }
    }
    Ok(())
}

/// The fallback of [`copy_file_range_to`]: `len` bytes at `from` through a
/// user-space buffer. Kept out of line and on the heap because a stack
/// buffer, inlined, made every hit probe (and fault in) more stack pages.
#[cold]
#[inline(never)]
fn copy_through_memory(file: &File, from: u64, len: u64, out: &File) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0;
    while done < len {
        let want = usize::try_from(len - done)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = match file.read_at(&mut buf[..want], from + done) {
            Ok(0) => return Err(entry_shrank()),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        crate::output::write_all(out, &buf[..n])?;
        done += n as u64;
    }
    Ok(())
}

/// The error for an entry file that ended before its preamble said it would.
fn entry_shrank() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "entry shrank while replaying")
}

/// A result being written to a temp file in the store's directory.
#[derive(Debug)]
pub struct EntryWriter<'l> {
    /// The lease it writes under, which names the key.
    lock: &'l EntryLock,
    temp: tempfile::NamedTempFile,
    details_len: u32,
    /// Preamble flags that follow from the details (`--cache-failures`).
    flags: u32,
    /// The lock's stale generation when the run started.
    generation: u64,
    /// Make the result durable before it is renamed into place (see
    /// [`EntryWriter::make_durable`]).
    durable: bool,
}

/// What became of a committed result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// In place, and current.
    Stored,
    /// In place, but marked stale: `invalidate --refresh` came while it ran,
    /// so it may predate what the user reacted to. Better than the value it
    /// replaced, not yet good enough: run again.
    StoredStale,
    /// Thrown away: the entry was invalidated (forgotten) while it ran.
    Discarded,
}

/// What a commit writes, named by what it is rather than by a file: under
/// its key's lease a writer can store the value or the failure record, and
/// nothing else (not the lock, not the events log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// The value callers are served: a success, or any result with
    /// `--cache-failures`.
    Value,
    /// The last failed run: its status and the end of its stderr.
    Failure,
}

impl Record {
    /// The file it is stored in.
    pub fn kind(self) -> FileKind {
        match self {
            Record::Value => FileKind::Entry,
            Record::Failure => FileKind::Failure,
        }
    }
}

/// How a finished run ended, as recorded in the preamble.
#[derive(Debug, Clone, Copy)]
pub struct RunRecord {
    /// Shell-style exit status.
    pub exit_code: i32,
    /// Wall-clock end of the run, milliseconds since the epoch.
    pub finished_ms: u64,
    /// How long the run took, in milliseconds.
    pub duration_ms: u64,
    /// The `--jitter` delay drawn for this value, in milliseconds.
    pub jitter_ms: u32,
    /// Consecutive failures this record ends (0 for a success).
    pub failures: u32,
    /// Bytes of stdout already written through [`EntryWriter::stdout`].
    pub stdout_len: u64,
}

impl<'l> EntryWriter<'l> {
    fn create(dir: &Path, details: &Details, lock: &'l EntryLock) -> Result<EntryWriter<'l>> {
        let generation = lock.stale_generation();
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(dir)
            .map_err(|err| Error::path(dir, err))?;
        let encoded = details.encode();
        let details_len = u32::try_from(encoded.len())
            .map_err(|_| Error::Usage("command line too long to cache".into()))?;
        let mut file = temp.as_file();
        let write = |file: &mut &File| -> io::Result<()> {
            file.write_all(&[0u8; PREAMBLE_LEN])?;
            file.write_all(&encoded)
        };
        write(&mut file).map_err(|err| Error::path(temp.path(), err))?;
        let flags = if details.inputs.cache_failures {
            entry::FLAG_CACHE_FAILURES
        } else {
            0
        };
        Ok(EntryWriter {
            lock,
            temp,
            details_len,
            flags,
            generation,
            durable: false,
        })
    }

    /// Makes [`EntryWriter::commit`] flush the file's data to the disk
    /// (`fdatasync`) before the rename, and the directory after it. Without
    /// it, a power loss soon after the rename can leave the new name on a
    /// file whose header reached the disk and whose output did not: a
    /// well-formed entry replaying zeros. Background refreshes ask for it,
    /// as nobody waits for them; a foreground miss does not (its cost and
    /// the reasons are in docs/internals.md, "Crash consistency").
    pub fn make_durable(&mut self) {
        self.durable = true;
    }

    /// Stores the value marked stale (a copy of a fleet value that
    /// `invalidate --refresh` marked stale for every host).
    pub fn mark_stale(&mut self) {
        self.flags |= entry::FLAG_FORCED_STALE;
    }

    /// A writer for the captured stdout, from where stdout belongs in the
    /// file; it must be flushed before [`EntryWriter::commit`].
    pub fn stdout_sink(&self) -> io::Result<BlockWriter> {
        BlockWriter::new(self.temp.as_file().try_clone()?)
    }

    /// Appends the stderr from `stderr`, writes the preamble and renames the
    /// result into place as the `record` of the lease's key. The rename is atomic: readers see
    /// the old file or the new one, never a part of either.
    ///
    /// An `invalidate` while the run went on decides its fate. A forgotten
    /// entry (lock file unlinked) must not come back with a result that may
    /// predate the change the user reacted to: it is not stored, or removed
    /// again if the invalidation slipped in just before the rename. A
    /// mark-stale (stale generation counted up) must never leave callers
    /// without a value: the result is stored, marked stale.
    pub fn commit(
        self,
        store: &FsStore,
        what: Record,
        record: RunRecord,
        stderr: &mut dyn StderrSource,
    ) -> Result<Committed> {
        let (lock, key) = (self.lock, self.lock.key());
        let mut file = self.temp.as_file();
        let fail = |err| Error::path(self.temp.path(), err);
        let (stdout_len, stderr_len) = if what == Record::Failure {
            // A failure record tells why a run failed: its status and the end
            // of its stderr. Its stdout may be partial (a full disk, a crash)
            // and is never served, so it is dropped, which also keeps a record
            // small on a filesystem that is running out of space.
            let stdout_start = PREAMBLE_LEN as u64 + u64::from(self.details_len);
            file.set_len(stdout_start).map_err(fail)?;
            file.seek(io::SeekFrom::Start(stdout_start)).map_err(fail)?;
            let len = stderr
                .copy_tail_to(file, FAILURE_STDERR_TAIL)
                .map_err(fail)?;
            (0, len)
        } else {
            (record.stdout_len, stderr.copy_to(file).map_err(fail)?)
        };
        let before_rename = lock.stale_generation();
        let mut flags = self.flags;
        if before_rename != self.generation {
            flags |= entry::FLAG_FORCED_STALE;
        }
        let preamble = Preamble {
            magic: entry::MAGIC,
            version: entry::FORMAT_VERSION,
            flags,
            exit_code: record.exit_code,
            finished_ms: record.finished_ms,
            duration_ms: u32::try_from(record.duration_ms).unwrap_or(u32::MAX),
            jitter_ms: record.jitter_ms,
            details_len: self.details_len,
            failures: record.failures,
            stdout_len,
            stderr_len,
        };
        file.write_all_at(&preamble.encode(), 0).map_err(fail)?;
        if self.durable {
            file.sync_data().map_err(fail)?;
        }
        if !lock.is_current() {
            return Ok(Committed::Discarded); // the temp file goes with `self`
        }
        let dest = store.path(key, what.kind());
        let durable = self.durable;
        let placed = self
            .temp
            .persist(&dest)
            .map_err(|err| Error::path(&dest, err.error))?;
        if durable {
            // The rename itself: without this the old entry may be back
            // after a power loss. Best effort: the value is whole either way.
            if let Ok(dir) = File::open(&store.dir) {
                let _ = dir.sync_all();
            }
        }
        if !lock.is_current() {
            remove_if_present(&dest)?;
            return Ok(Committed::Discarded);
        }
        // A mark-stale that came between the check above and the rename set
        // its flag on the file we replaced: set it on ours (the same inode,
        // wherever the path points by now).
        let after_rename = lock.stale_generation();
        if after_rename != before_rename {
            flags |= entry::FLAG_FORCED_STALE;
            placed
                .write_all_at(&flags.to_le_bytes(), entry::FLAGS_OFFSET)
                .map_err(|err| Error::path(&dest, err))?;
        }
        Ok(if flags & entry::FLAG_FORCED_STALE != 0 {
            Committed::StoredStale
        } else {
            Committed::Stored
        })
    }
}

/// Bytes of stderr a failure record keeps: the end, where a command says
/// what went wrong.
pub const FAILURE_STDERR_TAIL: u64 = 64 << 10;

/// Where captured stderr is kept until the entry is committed.
pub trait StderrSource {
    /// Appends everything captured to `out`, returning the byte count.
    fn copy_to(&mut self, out: &File) -> io::Result<u64>;
    /// Appends the last `limit` bytes captured to `out`, returning their count.
    fn copy_tail_to(&mut self, out: &File, limit: u64) -> io::Result<u64>;
}

/// Stderr that cacheback wrote itself (why a command could not start).
impl StderrSource for &[u8] {
    fn copy_to(&mut self, mut out: &File) -> io::Result<u64> {
        out.write_all(self)?;
        Ok(self.len() as u64)
    }

    fn copy_tail_to(&mut self, mut out: &File, limit: u64) -> io::Result<u64> {
        let skip = self
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(usize::MAX));
        out.write_all(&self[skip..])?;
        Ok((self.len() - skip) as u64)
    }
}
