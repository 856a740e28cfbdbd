//! Starting a detached background run, and the back-off after failures.
//!
//! The caller takes the entry lock *before* starting the refresher, so of any
//! number of callers that find an entry stale at once, exactly one starts a
//! process; the rest see the lock taken and return.
//!
//! The refresher is a `fork` of the caller that never `exec`s: it already holds
//! the lock (a forked descriptor shares the lock), the parsed options and the
//! key, so it has nothing to re-derive, no binary to find again, and the caller
//! does not wait for an `exec` to finish before it exits. The child starts its
//! own session (a closing terminal's SIGHUP does not reach it), points stdin,
//! stdout and stderr at /dev/null and closes every other descriptor it
//! inherited, so `$(cacheback run ...)` never waits for it. It starts work only
//! once the caller has exited, so the two never compete for a CPU.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::key::Key;
use crate::options::RunOptions;
use crate::rules::{self, Start};
use crate::store::FsStore;
use crate::store::events::{self, Event};
use crate::store::lock::EntryLock;
use crate::two_tier::FleetSettings;

/// Whether [`start`] counted the caller's event under the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Added to the totals in the lock file.
    Yes,
    /// Another process holds the lock: the caller appends the event to the log.
    No,
}

/// Starts a background run for `key` unless one is running, one landed since
/// the caller looked, or failures call for patience. `seen` is the version
/// ([`rules::Holding::value_version`]) of the value the caller found, served
/// or not; `None` when it found none.
///
/// The caller's `event` is counted in the lock file's totals when this takes
/// the lock, which spares it the log append (and the log file's creation, on
/// an entry's first call after its miss). After an error it is not counted:
/// the directory may be unsafe to write to.
pub fn start(
    store: &FsStore,
    key: &Key,
    args: &RunOptions,
    seen: Option<u64>,
    event: Event,
    fleet: &FleetSettings,
) -> Result<Counted> {
    // A stale hit reaches here without a miss's directory check; a refresher
    // must not write into a directory someone else can plant files in.
    store.prepare()?;
    let lock = match rules::start_refresh(store, key, seen, args.ttl(), crate::clock::now_ms)? {
        Start::InFlight => return Ok(Counted::No), // its run will serve everyone
        Start::Landed(lock) | Start::BackingOff(lock) => {
            events::record_held(&lock, event);
            return Ok(Counted::Yes);
        }
        Start::Refresh(lock) => lock,
    };
    events::record_held(&lock, event);
    spawn(store, key, args, &lock, fleet)?;
    Ok(Counted::Yes)
}

/// Starts the detached refresher, which inherits the held lock.
///
/// Must be called before the process starts any thread: only the calling
/// thread survives a `fork`, and every call site (a hit, `--no-wait`, `warm`,
/// `invalidate --refresh`) runs single-threaded. Points this process's stdin
/// and stdout at /dev/null: call it once everything meant for stdout is written.
///
/// The refresher starts work only when this process has exited (every caller
/// exits right after this), so the caller, whose exit the user is waiting
/// for, does not share a CPU with it.
pub fn spawn(
    store: &FsStore,
    key: &Key,
    args: &RunOptions,
    lock: &EntryLock,
    fleet: &FleetSettings,
) -> Result<()> {
    fork_detached(Some(lock.file().as_raw_fd()), || {
        crate::refresher::run(store, key, args, lock, fleet)
    })
}

/// One refresh for [`spawn_batch`] to run.
#[derive(Debug)]
pub struct Planned {
    /// The entry.
    pub key: Key,
    /// The options that stored it.
    pub args: RunOptions,
    /// Where to run it (where it was keyed, for `--cwd` entries).
    pub cwd: PathBuf,
}

/// Starts one detached process that runs the planned refreshes, at most
/// `jobs` at a time, and returns at once (same rules as [`spawn`]).
///
/// It takes each entry's lock only when that refresh starts, so it holds one
/// lock per running refresh and no descriptor per waiting one, whatever the
/// number of entries. An entry whose lock is taken by then needs nothing:
/// its run sees the stale mark and runs again, or a caller started a refresh.
pub fn spawn_batch(
    store: &FsStore,
    plans: Vec<Planned>,
    jobs: u16,
    fleet: &FleetSettings,
) -> Result<()> {
    fork_detached(None, || {
        let jobs = usize::from(jobs.max(1));
        let mut running = 0;
        for plan in &plans {
            while running >= jobs && wait_for_child() {
                running -= 1;
            }
            let Ok(Some(lock)) = store.try_lock(&plan.key) else {
                continue;
            };
            // SAFETY: single-threaded (see `spawn`); the child leaves by _exit.
            match unsafe { libc::fork() } {
                0 => {
                    let status = match std::env::set_current_dir(&plan.cwd) {
                        Ok(()) => crate::refresher::run(store, &plan.key, &plan.args, &lock, fleet),
                        Err(_) => crate::exit_codes::FAILURE,
                    };
                    // SAFETY: as in `fork_detached`.
                    unsafe { libc::_exit(i32::from(status)) }
                }
                -1 => {
                    // No process to spare: run it here, in turn.
                    let _ = std::env::set_current_dir(&plan.cwd);
                    crate::refresher::run(store, &plan.key, &plan.args, &lock, fleet);
                }
                _ => running += 1,
            }
        }
        // Reaped before it exits, so none outlives it as a zombie for long.
        while wait_for_child() {}
        crate::exit_codes::SUCCESS
    })
}

/// Waits for any child to end; false when there is none left to wait for.
fn wait_for_child() -> bool {
    loop {
        match nix::sys::wait::wait() {
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false, // ECHILD: every child is reaped
        }
    }
}

/// Forks a child that detaches from the caller (its own session, /dev/null
/// for stdio, no inherited descriptor but `keep`), waits until the caller has
/// exited, runs `body` and exits with its status.
fn fork_detached(keep: Option<RawFd>, body: impl FnOnce() -> u8) -> Result<()> {
    // Ignored across the fork, so a hangup in the instant before the child has
    // its own session cannot end it; the caller is about to exit anyway.
    // SAFETY: changing a signal disposition.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    // A child holding the caller's stdout would keep `$(...)` waiting until it
    // got to replace it, so the caller lets go of it first: it has written
    // everything it will (stderr stays for a message if the fork fails).
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|err| Error::path("/dev/null", err))?;
    // Input captured by `--stdin` stays at fd 0 (a private temp file, not
    // the caller's pipe): the refresher's runs read it there.
    let first = i32::from(crate::stdin_input::is_captured());
    for fd in first..2 {
        // SAFETY: dup2 onto standard descriptors the caller is done with.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
    drop(null);
    // Its write end closes when this process exits: the refresher's signal to start.
    let (caller_gone, caller_alive) =
        close_on_exec_pipe().map_err(|err| Error::io("starting a background refresh", err))?;
    // SAFETY: the process is single-threaded here (see `spawn`), so the child
    // gets a consistent copy of all state; it leaves through `_exit` only.
    match unsafe { libc::fork() } {
        -1 => Err(Error::io(
            "starting a background refresh",
            io::Error::last_os_error(),
        )),
        0 => {
            // A session of its own before anything else: a Ctrl-C or hangup
            // meant for the caller's process group must not reach a refresher
            // still waiting for the caller to exit.
            let _ = nix::unistd::setsid();
            drop(caller_alive);
            wait_for_eof(&caller_gone);
            drop(caller_gone);
            detach(keep);
            let status = body();
            // SAFETY: ends the child without running the parent's exit-time
            // cleanup twice; everything it wrote went straight to files.
            unsafe { libc::_exit(i32::from(status)) }
        }
        // The child is not waited for: it outlives us, and init reaps it.
        _ => {
            std::mem::forget(caller_alive); // held open until we exit
            Ok(())
        }
    }
}

/// Blocks until every copy of the pipe's write end is closed.
fn wait_for_eof(pipe: &OwnedFd) {
    let mut byte = [0u8; 1];
    while let Err(nix::errno::Errno::EINTR) = nix::unistd::read(pipe, &mut byte) {}
}

/// Cuts the refresher (already in a session of its own) off from the caller:
/// default SIGHUP, /dev/null for stdio (but `--stdin`'s captured input), and
/// no inherited descriptor but the lock.
fn detach(keep: Option<RawFd>) {
    // SAFETY: restores the default the command should inherit (an ignored
    // signal would stay ignored across its exec).
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_DFL) };
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let first = i32::from(crate::stdin_input::is_captured());
        for fd in first..3 {
            // SAFETY: dup2 onto the standard descriptors, which nothing else uses in the child.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    close_descriptors_from(3, keep);
}

/// A pipe whose ends close on `exec`, so the command a refresher runs never
/// holds them.
fn close_on_exec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    // One system call on Linux; macOS has no pipe2.
    #[cfg(all(target_os = "linux", not(cacheback_portable)))]
    return nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from);
    // pipe, then the flag on each end: no other thread could exec in between,
    // as the process is single-threaded here (see `spawn`).
    #[cfg(not(all(target_os = "linux", not(cacheback_portable))))]
    {
        let (read, write) = nix::unistd::pipe().map_err(io::Error::from)?;
        for end in [&read, &write] {
            // SAFETY: sets a descriptor flag on a descriptor we own.
            if unsafe { libc::fcntl(end.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok((read, write))
    }
}

fn close_descriptors_from(first: RawFd, keep: Option<RawFd>) {
    let ranges = match keep {
        Some(keep) if keep >= first => [(first, keep - 1), (keep + 1, RawFd::MAX)],
        _ => [(first, RawFd::MAX), (1, 0)],
    };
    for (low, high) in ranges {
        if low <= high {
            close_range(low, high);
        }
    }
}

/// Closes descriptors `low..=high`: nothing in this process uses them (the
/// child has opened none yet), but the caller's parent may have left some
/// open without close-on-exec (a shell's redirections, a bar's pipes).
#[cfg(all(target_os = "linux", not(cacheback_portable)))]
fn close_range(low: RawFd, high: RawFd) {
    // SAFETY: close_range closes descriptors only.
    let closed = unsafe { libc::syscall(libc::SYS_close_range, low as u32, high as u32, 0) } == 0;
    // Kernels before 5.9 have no close_range.
    if !closed && !close_listed_descriptors("/proc/self/fd", low, high) {
        close_each_descriptor(low, high);
    }
}

/// FreeBSD has close_range(2) since 13.0, in libc.
#[cfg(target_os = "freebsd")]
fn close_range(low: RawFd, high: RawFd) {
    // SAFETY: close_range closes descriptors only.
    if unsafe { libc::close_range(low as u32, high as u32, 0) } != 0 {
        close_each_descriptor(low, high);
    }
}

/// The portable way (macOS, and Linux with `--cfg cacheback_portable`): close
/// what /dev/fd lists (on macOS a devfs view of this process's descriptors,
/// on Linux a link to /proc/self/fd), else every number up to the limit.
#[cfg(not(any(
    all(target_os = "linux", not(cacheback_portable)),
    target_os = "freebsd"
)))]
fn close_range(low: RawFd, high: RawFd) {
    if !close_listed_descriptors("/dev/fd", low, high) {
        close_each_descriptor(low, high);
    }
}

/// Closes the descriptors in `low..=high` that the directory `listing` names;
/// false when it cannot be read. (FreeBSD's /dev/fd shows only 0, 1 and 2
/// unless fdescfs is mounted, so it is not used there.)
#[cfg(not(target_os = "freebsd"))]
fn close_listed_descriptors(listing: &str, low: RawFd, high: RawFd) -> bool {
    let Ok(listing) = std::fs::read_dir(listing) else {
        return false;
    };
    // Collected first: the listing's own descriptor is in range, and it is
    // closed (dropped) before the loop runs.
    let fds: Vec<RawFd> = listing
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| (low..=high).contains(fd))
        .collect();
    for fd in fds {
        // SAFETY: see close_range.
        unsafe { libc::close(fd) };
    }
    true
}

/// The last resort: `close` on every number from `low` up to the descriptor
/// limit (at most 65,536 of them, so a huge limit cannot stall the refresher).
fn close_each_descriptor(low: RawFd, high: RawFd) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the live `limit`.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let cap: RawFd = 1 << 16;
    let end = match known {
        true => RawFd::try_from(limit.rlim_cur).unwrap_or(cap).min(cap),
        false => cap,
    };
    for fd in low..end.min(high.saturating_add(1)) {
        // SAFETY: see close_range.
        unsafe { libc::close(fd) };
    }
}
