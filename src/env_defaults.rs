//! Defaults a script or shell sets once in the environment, for flags it
//! would otherwise repeat on every line: `CACHEBACK_TTL`, `CACHEBACK_SCOPE`
//! and `CACHEBACK_STALE_MARKER`. A flag on the command line always wins, and
//! an empty variable counts as unset (as `CACHEBACK_DIR` does), so `VAR=`
//! switches a default off for one command.
//!
//! Applied after parsing, to whichever parser answered (`fast_args` or clap),
//! so both see the same defaults and clap stays the only source of messages
//! about the command line itself.

use std::ffi::OsString;

use crate::cli::{Cli, Command, KeyArgs, RunArgs};
use crate::units::parse_duration;

/// Default for `run --ttl` and `warm --ttl`.
pub const ENV_TTL: &str = "CACHEBACK_TTL";
/// Default for `--scope`, wherever an entry is named by its command.
pub const ENV_SCOPE: &str = "CACHEBACK_SCOPE";
/// Default for `run --stale-marker`.
pub const ENV_STALE_MARKER: &str = "CACHEBACK_STALE_MARKER";

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
            .ok_or_else(|| format!("{ENV_TTL} is not valid UTF-8"))?;
        let ttl = parse_duration(text).map_err(|err| format!("{ENV_TTL}: {err}"))?;
        run.ttl = Some(ttl);
    }
    if run.stale_marker.is_none() {
        run.stale_marker = var(ENV_STALE_MARKER);
    }
    apply_to_key(&mut run.key)
}

fn apply_to_key(key: &mut KeyArgs) -> Result<(), String> {
    if key.scope.is_none()
        && let Some(scope) = var(ENV_SCOPE)
    {
        let scope = scope
            .into_string()
            .map_err(|_| format!("{ENV_SCOPE} is not valid UTF-8"))?;
        key.scope = Some(scope);
    }
    Ok(())
}

/// The variable's value, `None` when unset or empty.
fn var(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|value| !value.is_empty())
}
