//! The `cacheback` binary; everything lives in the library.
//!
//! `main` is the C entry point rather than Rust's. std's start-up spends about
//! 45,000 instructions — 40% of a whole cache hit, measured with callgrind —
//! finding the main thread's stack bounds by parsing /proc/self/maps, only to
//! print a nicer message on stack overflow. The parts of that start-up
//! cacheback needs are done here by hand, before anything else runs:
//!
//! - descriptors 0, 1 and 2 are made to exist (on /dev/null when closed), so
//!   no file cacheback opens later (the lock, an entry) can land on one of
//!   them and be clobbered by output or by the refresher's `dup2`s;
//! - the arguments are taken from `argv`, because std's `args_os()` relies on
//!   its own start-up or on glibc passing them to initialisers (musl does not);
//! - SIGPIPE is ignored, so a closed stdout is an EPIPE error, handled quietly,
//!   instead of death by signal (std restores the default for the commands it
//!   spawns).
//!
//! std's buffered stdout is flushed where it is used (clap's help), not here:
//! touching it costs a hit two page faults.

#![no_main]

use std::ffi::{CStr, OsStr, OsString, c_char, c_int};
use std::os::unix::ffi::OsStrExt;

#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    if !cacheback::startup::open_standard_descriptors() {
        return c_int::from(cacheback::exit_codes::FAILURE);
    }
    // SAFETY: changes one signal disposition before any other code runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // SAFETY: the C runtime passes `argc` valid NUL-terminated strings in `argv`.
    let args = unsafe { arguments(argc, argv) };
    c_int::from(cacheback::main(args))
}

/// Copies the C arguments into owned strings.
///
/// # Safety
/// `argv` must point to `argc` valid NUL-terminated strings.
unsafe fn arguments(argc: c_int, argv: *const *const c_char) -> Vec<OsString> {
    let count = usize::try_from(argc).unwrap_or(0);
    (0..count)
        .map(|i| {
            // SAFETY: guaranteed by the caller for every i < argc.
            let arg = unsafe { CStr::from_ptr(*argv.add(i)) };
            OsStr::from_bytes(arg.to_bytes()).to_owned()
        })
        .collect()
}
