//! The `cacheback` binary; everything lives in the library.
//!
//! `main` is the C entry point rather than Rust's. std's start-up spends about
//! 45,000 instructions — 40% of a whole cache hit, measured with callgrind —
//! finding the main thread's stack bounds by parsing /proc/self/maps, only to
//! print a nicer message on stack overflow. The parts of that start-up
//! cacheback needs are done here by hand: SIGPIPE is ignored (so a closed
//! stdout is an EPIPE error, handled quietly, instead of death by signal; std
//! still restores the default for the commands it spawns). std's buffered
//! stdout is flushed where it is used (clap's help), not here: touching it
//! costs a hit two page faults.

#![no_main]

use std::ffi::{c_char, c_int};

#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    // SAFETY: changes one signal disposition before any other code runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    c_int::from(cacheback::main())
}
