//! The wall clock, in milliseconds since the Unix epoch.
//!
//! Entries carry the time their run finished, and every subcommand judges
//! age against this one clock, so they all read it here.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
///
/// On Linux it is read with the system call rather than through the vDSO,
/// which std uses: the vDSO reads the clock from a data page that costs the
/// process a page fault on first touch (about 3 µs here), against ~0.2 µs for
/// the call, and a hit reads the clock once. Elsewhere, and in a build with
/// `--cfg cacheback_portable`, std's clock does the work.
#[cfg(not(cacheback_test_clock))]
pub fn now_ms() -> u64 {
    wall_ms()
}

/// Milliseconds since the Unix epoch, shifted by the signed offset in
/// `CACHEBACK_TEST_CLOCK_OFFSET_MS` (read once per process).
///
/// Only a build with `--cfg cacheback_test_clock` has this: the tests use it
/// to play a host whose clock is ahead or behind. A shipped binary must never
/// take its clock from the environment, so the default build compiles none of
/// it (and its `now_ms` is the wall clock's code, inlined, as before).
#[cfg(cacheback_test_clock)]
pub fn now_ms() -> u64 {
    static OFFSET_MS: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let offset = *OFFSET_MS.get_or_init(|| {
        std::env::var("CACHEBACK_TEST_CLOCK_OFFSET_MS")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    });
    wall_ms().saturating_add_signed(offset)
}

/// The wall clock itself; see [`now_ms`].
#[inline(always)]
fn wall_ms() -> u64 {
    #[cfg(all(target_os = "linux", not(cacheback_portable)))]
    if let Some(now) = raw_now_ms() {
        return now;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// `clock_gettime(CLOCK_REALTIME)` by system call; `None` if it fails.
#[cfg(all(target_os = "linux", not(cacheback_portable)))]
fn raw_now_ms() -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the live `now`.
    let read = unsafe { libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_REALTIME, &mut now) };
    if read != 0 {
        return None;
    }
    let secs = u64::try_from(now.tv_sec).ok()?;
    Some(secs * 1000 + now.tv_nsec as u64 / 1_000_000)
}
