//! cacheback's own stdout and stderr, written without buffering.
//!
//! A cache hit writes its bytes with one `write` (or one kernel copy), so the
//! standard library's line-buffered `Stdout` would only add copies and
//! syscalls. These handles are `File`s over descriptors 1 and 2, which also
//! lets `io::copy` use sendfile/splice from the entry file.

use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;

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

/// Prints a one-line message prefixed `cacheback:` on stderr; failures to do so are ignored.
pub fn warn(message: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let line = format!("cacheback: {message}\n");
    let _ = (&*stderr()).write_all(line.as_bytes());
}

/// Whether to colour output: only on a terminal, and never when `NO_COLOR` is
/// set to anything non-empty (<https://no-color.org>).
pub fn colour() -> bool {
    use std::io::IsTerminal;
    let opted_out = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    !opted_out && std::io::stdout().is_terminal()
}
