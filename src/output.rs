//! cacheback's own stdout and stderr, written without buffering.
//!
//! A cache hit writes its bytes with one `write` (or one kernel copy), so the
//! standard library's line-buffered `Stdout` would only add copies and
//! syscalls. These handles are `File`s over descriptors 1 and 2, which also
//! lets `io::copy` use sendfile/splice from the entry file.

use std::fs::File;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd};

/// A `File` over one of the standard descriptors that is never closed.
pub type StdFile = ManuallyDrop<File>;

/// Descriptor 1 as a `File`.
pub fn stdout() -> StdFile {
    // SAFETY: descriptor 1 stays open for the life of the process and
    // ManuallyDrop keeps this handle from ever closing it.
    ManuallyDrop::new(unsafe { File::from_raw_fd(1) })
}

/// Descriptor 2 as a `File`.
pub fn stderr() -> StdFile {
    // SAFETY: as for `stdout`, with descriptor 2.
    ManuallyDrop::new(unsafe { File::from_raw_fd(2) })
}

/// Writes all of `bytes` to `out`. A descriptor left non-blocking by whoever
/// shares it (a status bar's pipe, say) reports EAGAIN when its reader is
/// slow: then this waits until it is writable again, rather than losing the
/// rest. Any other failure is returned.
pub fn write_all(out: &File, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: writes at most `bytes.len()` bytes from a live slice.
        let n = unsafe { libc::write(out.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        if n > 0 {
            bytes = &bytes[n as usize..];
            continue;
        }
        let err = if n == 0 {
            io::Error::from(io::ErrorKind::WriteZero)
        } else {
            io::Error::last_os_error()
        };
        match err.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => wait_writable(out)?,
            _ => return Err(err),
        }
    }
    Ok(())
}

/// Blocks until `out` can take more bytes (or reports an error or hang-up,
/// which the next write then returns).
pub fn wait_writable(out: &File) -> io::Result<()> {
    let mut fd = libc::pollfd {
        fd: out.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd for the duration of the call.
        if unsafe { libc::poll(&mut fd, 1, -1) } >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// True for the error a closed reader causes (`| head -1`), which cacheback
/// does not report: the reader chose to stop.
pub fn is_broken_pipe(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::BrokenPipe
}

/// Prints a one-line message prefixed `cacheback:` on stderr; failures to do so are ignored.
pub fn warn(message: std::fmt::Arguments<'_>) {
    let line = format!("cacheback: {message}\n");
    let _ = write_all(&stderr(), line.as_bytes());
}

/// Whether to colour output: only on a terminal, and never when `NO_COLOR` is
/// set to anything non-empty (<https://no-color.org>).
pub fn colour() -> bool {
    use std::io::IsTerminal;
    let opted_out = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    !opted_out && std::io::stdout().is_terminal()
}
