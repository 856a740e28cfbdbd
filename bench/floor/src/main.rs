//! `floor FILE`: stream FILE to stdout and exit.
//!
//! The benchmark floor for `cacheback`: the least a cache hit can cost is
//! starting a process, opening a file and handing its bytes to stdout.  So
//! this binary does nothing else:
//!
//! * static and non-position-independent (see .cargo/config.toml): no dynamic
//!   loader, no self-relocation;
//! * C `main` instead of Rust's: skips std's start-up (parsing
//!   /proc/self/maps for the stack guard, sigaltstack, SIGPIPE disposition);
//!   a broken stdout pipe simply ends it with SIGPIPE, as it does `cat`;
//! * the copy is done by the kernel with sendfile(2) (file -> pipe, file,
//!   socket or /dev/null); if sendfile is refused, a read/write loop with a
//!   128 KiB buffer (what GNU cat does) takes over.
//!
//! `std::io::copy(&mut File, &mut Stdout)` is deliberately not used: for a
//! pipe on stdout std declines splice/sendfile (pages of a file spliced into a
//! pipe could change later) and falls back to an 8 KiB buffer fed through
//! stdout's LineWriter, which splits the writes at newlines: two write(2)
//! calls per 8 KiB of text, slower than cat at 1 MiB.
#![no_main]

use std::ffi::{c_char, c_int, CStr, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;

unsafe extern "C" {
    // glibc: ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count);
    fn sendfile(out_fd: c_int, in_fd: c_int, offset: *mut i64, count: usize) -> isize;
}

const EINTR: i32 = 4;
const EINVAL: i32 = 22;
const ENOSYS: i32 = 38;

fn copy_to_stdout(file: &mut File) -> io::Result<()> {
    loop {
        let n = unsafe { sendfile(1, file.as_raw_fd(), std::ptr::null_mut(), 1 << 30) };
        if n > 0 {
            continue;
        }
        if n == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(EINTR) => continue,
            Some(EINVAL) | Some(ENOSYS) => break,
            _ => return Err(e),
        }
    }
    // fd 1 as an unbuffered File that is never closed by us
    let mut out = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
    }
}

#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    if argc != 2 {
        let _ = writeln!(io::stderr(), "usage: floor FILE");
        return 2;
    }
    // SAFETY: the C runtime hands main argc valid NUL-terminated strings.
    let path = OsStr::from_bytes(unsafe { CStr::from_ptr(*argv.add(1)) }.to_bytes());
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(io::stderr(), "floor: {}: {e}", path.to_string_lossy());
            return 1;
        }
    };
    match copy_to_stdout(&mut file) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(io::stderr(), "floor: write: {e}");
            1
        }
    }
}
