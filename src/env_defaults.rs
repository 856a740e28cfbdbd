//! Defaults a script or shell sets once in the environment, for flags it
//! would otherwise repeat on every line: `CACHEBACK_TTL`, `CACHEBACK_SCOPE`
//! and `CACHEBACK_STALE_MARKER`. A flag on the command line always wins, and
//! an empty variable counts as unset (as `CACHEBACK_DIR` does), so `VAR=`
//! switches a default off for one command.
//!
//! Applied after parsing, to whichever parser answered (`fast_args` or clap),
//! so both see the same defaults and clap stays the only source of messages
//! about the command line itself.

use std::ffi::{CStr, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use crate::cli::{Cli, Command, KeyArgs, RunArgs};
use crate::units::parse_duration;

/// Default for `run --ttl` and `warm --ttl`.
pub const ENV_TTL: &CStr = c"CACHEBACK_TTL";
/// Default for `--scope`, wherever an entry is named by its command.
pub const ENV_SCOPE: &CStr = c"CACHEBACK_SCOPE";
/// Default for `run --stale-marker`.
pub const ENV_STALE_MARKER: &CStr = c"CACHEBACK_STALE_MARKER";

/// Fills what the command line left out from the environment; `Err` is a
/// one-line usage error (exit status 2).
pub fn apply(cli: &mut Cli) -> Result<(), String> {
    match &mut cli.command {
        Command::Run(run) => apply_to_run(run),
        Command::Warm(warm) => apply_to_run(&mut warm.run),
        Command::Show(show) => apply_to_key(&mut show.entry.key),
        Command::Invalidate(invalidate) => apply_to_key(&mut invalidate.entry.key),
        Command::Stats(_) | Command::Gc(_) => Ok(()),
    }
}

fn apply_to_run(run: &mut RunArgs) -> Result<(), String> {
    if run.ttl.is_none() {
        let Some(text) = var(ENV_TTL) else {
            return Err(
                "--ttl is required: give it before the command, as in `cacheback run --ttl 5m \
                 -- COMMAND`, or set CACHEBACK_TTL"
                    .to_owned(),
            );
        };
        let text = text
            .to_str()
            .ok_or_else(|| "CACHEBACK_TTL is not valid UTF-8".to_owned())?;
        let ttl = parse_duration(text).map_err(|err| format!("CACHEBACK_TTL: {err}"))?;
        run.ttl = Some(ttl);
    }
    apply_to_key(&mut run.key)
}

fn apply_to_key(key: &mut KeyArgs) -> Result<(), String> {
    if key.scope.is_none()
        && let Some(scope) = var(ENV_SCOPE)
    {
        let scope = scope
            .into_string()
            .map_err(|_| "CACHEBACK_SCOPE is not valid UTF-8".to_owned())?;
        key.scope = Some(scope);
    }
    Ok(())
}

/// The `--stale-marker` text: the flag's, else `CACHEBACK_STALE_MARKER`'s.
/// Looked up only for a stale value, the one time it is printed, so a fresh
/// hit does not pay for the lookup.
pub fn stale_marker(flag: Option<&OsString>) -> Option<OsString> {
    flag.cloned().or_else(|| var(ENV_STALE_MARKER))
}

/// The variable's value, `None` when unset or empty.
///
/// libc's `getenv` rather than `std::env::var_os`: a cache hit asks for
/// `CACHEBACK_SCOPE` every time, and std's lookup copies the name, takes a
/// lock and copies the value (with the marker's lookup made lazy, this saved
/// about 570 instructions of a hit, measured with callgrind). Nothing in
/// cacheback changes its environment, so std's lock guards against nothing here.
fn var(name: &CStr) -> Option<OsString> {
    // SAFETY: a NUL-terminated name; the result points into the environment,
    // which is not modified while it is read (no thread, no setenv).
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: getenv returned a NUL-terminated string.
    let bytes = unsafe { CStr::from_ptr(value) }.to_bytes();
    (!bytes.is_empty()).then(|| OsStr::from_bytes(bytes).to_owned())
}
