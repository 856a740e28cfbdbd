//! `--stdin`: the caller's input as part of the key and as the command's stdin.
//!
//! The input is read to its end (it must be, to hash it) into an unnamed,
//! private temp file, which then replaces the caller's own stdin (fd 0). So
//! every run that follows, in this process or in a refresher forked from it,
//! finds the same bytes at fd 0 and only has to rewind it: nothing has to be
//! handed from process to process, and input of any size never sits in memory.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

use crate::digest::DIGEST_LEN as KEY_LEN;

/// The SHA-256 of the captured input, once [`capture`] has run.
static CAPTURED: OnceLock<[u8; KEY_LEN]> = OnceLock::new();

/// Reads all of stdin into a temp file, puts that file at fd 0 and returns
/// the input's SHA-256. Later calls return the first result.
pub fn capture() -> io::Result<[u8; KEY_LEN]> {
    if let Some(hash) = CAPTURED.get() {
        return Ok(*hash);
    }
    let mut copy = tempfile::tempfile()?;
    let hash = crate::digest::sha256_copy(&mut io::stdin().lock(), &mut copy)?;
    // SAFETY: dup2 onto fd 0, whose old input has been read to its end.
    if unsafe { libc::dup2(copy.as_raw_fd(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(*CAPTURED.get_or_init(|| hash))
}

/// Whether fd 0 holds captured input that a run must get (and a refresher keep).
pub fn is_captured() -> bool {
    CAPTURED.get().is_some()
}

/// Rewinds the captured input for the next run of the command.
pub fn rewind() -> io::Result<()> {
    // SAFETY: lseek on fd 0, which `capture` made a regular file.
    if unsafe { libc::lseek(0, 0, libc::SEEK_SET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Warns when input was piped or redirected in without `--stdin`: the
/// command reads /dev/null, and caching what it prints for no input would
/// silently answer later callers with that. Quiet for a terminal, /dev/null,
/// and an empty pipe (cron's stdin, or a writer that has not written yet).
#[cold]
pub fn warn_if_ignored() {
    if has_waiting_input() {
        crate::output::warn(format_args!(
            "stdin has input, but the command gets none (it reads /dev/null); add --stdin to pass \
             the input on and key the entry on it"
        ));
    }
}

fn has_waiting_input() -> bool {
    let stdin = std::mem::ManuallyDrop::new(
        // SAFETY: borrows fd 0 without taking ownership (never closed here).
        unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(0) },
    );
    let Ok(meta) = stdin.metadata() else {
        return false;
    };
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_file() {
        // SAFETY: lseek with SEEK_CUR 0 only reads the offset.
        let at = unsafe { libc::lseek(0, 0, libc::SEEK_CUR) };
        return at >= 0 && (at as u64) < meta.len();
    }
    if kind.is_fifo() || kind.is_socket() {
        let mut waiting: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int into `waiting`.
        let asked = unsafe { libc::ioctl(0, libc::FIONREAD, &mut waiting) };
        return asked == 0 && waiting > 0;
    }
    false
}
