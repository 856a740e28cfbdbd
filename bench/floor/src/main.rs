//! `floor FILE`: stream FILE to stdout and exit.
//!
//! The benchmark floor for `cacheback`: the least a cache hit can cost is
//! starting a (static) process, opening a file and handing its bytes to
//! stdout.  The copy is done by the kernel with sendfile(2) (file -> pipe,
//! file, socket or /dev/null); if sendfile is refused, a plain read/write loop
//! with a 128 KiB buffer (what GNU cat does) takes over.
//!
//! Note: `std::io::copy(&mut File, &mut Stdout)` is *not* used.  For a pipe on
//! stdout std deliberately declines splice/sendfile (pages of a file spliced
//! into a pipe could change later), so it falls back to an 8 KiB buffer fed
//! through stdout's LineWriter, which splits the writes at newlines: two
//! write(2) calls per 8 KiB of text, noticeably slower than cat for 1 MiB.
use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::ExitCode;

unsafe extern "C" {
    // glibc: ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count);
    fn sendfile(out_fd: i32, in_fd: i32, offset: *mut i64, count: usize) -> isize;
}

const CHUNK: usize = 1 << 30;

fn copy_to_stdout(file: &mut File) -> io::Result<()> {
    // fd 1 as a File: unbuffered, never closed by us
    let mut out = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    let mut kernel = true;
    loop {
        if kernel {
            let n = unsafe { sendfile(1, file.as_raw_fd(), std::ptr::null_mut(), CHUNK) };
            if n > 0 {
                continue;
            }
            if n == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(4) => continue,                 // EINTR
                Some(22) | Some(38) => kernel = false,          // EINVAL, ENOSYS
                _ => return Err(e),
            }
        } else {
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
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(path), None) = (args.next(), args.next()) else {
        let _ = writeln!(io::stderr(), "usage: floor FILE");
        return ExitCode::from(2);
    };
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(io::stderr(), "floor: {}: {e}", path.to_string_lossy());
            return ExitCode::from(1);
        }
    };
    match copy_to_stdout(&mut file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "floor: write: {e}");
            ExitCode::from(1)
        }
    }
}
