//! What std's start-up would have done for a `#![no_main]` binary, and that
//! cacheback relies on: descriptors 0, 1 and 2 exist.
//!
//! A cron job, a daemon or a status bar may start cacheback with stdin,
//! stdout or stderr closed. The next file opened then takes the lowest free
//! number: a lock file opened as descriptor 1 receives the command's output,
//! and one opened as 0 is replaced by the refresher's `dup2` of /dev/null,
//! which silently drops the lock that makes refreshes single-flight.

/// Opens /dev/null on whichever of descriptors 0, 1 and 2 is closed. Costs one
/// `poll` when all three are open (the usual case). Returns false when a
/// closed one could not be replaced; the caller must then stop.
pub fn open_standard_descriptors() -> bool {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of three pollfd for the call. A zero
    // timeout makes it a pure check: POLLNVAL marks a descriptor not open.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
    if polled == 0 {
        return true;
    }
    if polled < 0 {
        // poll itself failed (EINTR or ENOMEM at start-up): ask one by one.
        return fds
            .iter()
            .all(|pollfd| ensure_open(pollfd.fd, is_open(pollfd.fd)));
    }
    fds.iter()
        .all(|pollfd| ensure_open(pollfd.fd, pollfd.revents & libc::POLLNVAL == 0))
}

fn is_open(fd: libc::c_int) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    flags != -1
}

/// Puts /dev/null on `fd` unless it is already open.
fn ensure_open(fd: libc::c_int, open: bool) -> bool {
    if open {
        return true;
    }
    // Read-write, so the same descriptor serves as stdin or as an output.
    // SAFETY: a NUL-terminated path and plain flags.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
    if null < 0 {
        return false;
    }
    if null == fd {
        return true; // open takes the lowest free number: the closed one
    }
    // Unreachable while the descriptors are fixed in ascending order, but
    // cheap to get right: move it where it belongs.
    // SAFETY: dup2 onto a closed standard descriptor, then closing our own.
    let moved = unsafe { libc::dup2(null, fd) } == fd;
    unsafe { libc::close(null) };
    moved
}
