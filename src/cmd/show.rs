//! `cacheback show`: one entry's metadata, or its cached output.
//!
//! Several entries can carry one label (for example one per directory with
//! `--cwd`); `show --name` then shows the most recently used one and says how
//! many others there are.
//!
//! The metadata is decoration and goes through [`display`] escaping; the
//! cached output (`--stdout`, `--stderr`) is data and is copied byte for byte.

use std::fmt::Write as _;
use std::io::Write as _;

use crate::cli::ShowArgs;
use crate::cmd::stats::ago;
use crate::display;
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::inspect::{self, EntryInfo};
use crate::output;
use crate::store::entry::PREAMBLE_LEN;
use crate::store::{FileKind, FsStore};
use crate::two_tier::{self, FleetEntry, FleetSettings};
use crate::units::{format_duration, format_duration_brief, format_size, format_utc};

/// "No entry named ...", and where the names are: a user who mistyped a
/// label, or never gave one, learns the command that lists them.
#[cold]
fn pointing_at_stats(err: Error) -> Error {
    match err {
        Error::NotFound(message) => Error::NotFound(format!(
            "{message}; `cacheback stats` lists the cached entries with their names"
        )),
        other => other,
    }
}

/// Runs `cacheback show`. With a fleet store, the fleet's value of the
/// entry is described too, and an entry only the fleet has is shown alone.
pub fn run(store: &FsStore, args: &ShowArgs, fleet: &FleetSettings) -> Result<u8> {
    let now = crate::clock::now_ms();
    let entry = crate::options::EntryName::from(args.entry.clone());
    let wants_fleet = !(args.stdout || args.stderr);
    let (mut connected, unreachable) = match wants_fleet {
        true => two_tier::connect_beside_local(fleet)?,
        false => (None, None),
    };
    let infos = match inspect::select(store, &entry, now) {
        Ok(infos) => infos,
        Err(err @ Error::NotFound(_)) => {
            let Some(connected) = &mut connected else {
                return Err(pointing_at_stats(err));
            };
            let found = two_tier::select(&mut connected.fleet, store, &entry)?;
            let Some(shared) = found.first() else {
                return Err(pointing_at_stats(err));
            };
            let mut text = format!(
                "{}(not in this host's cache: its next `run` copies it from the fleet)\n",
                describe_fleet(shared, now, true)
            );
            let others = found.len() - 1;
            if let (Some(name), 1..) = (&entry.name, others) {
                let name = display::escape(name);
                let _ = writeln!(
                    text,
                    "\n{others} more fleet {} labelled '{name}'; `cacheback stats {name}` lists them all.",
                    if others == 1 {
                        "entry is"
                    } else {
                        "entries are"
                    },
                );
            }
            (&*output::stdout())
                .write_all(text.as_bytes())
                .map_err(|err| Error::io("writing to stdout", err))?;
            return Ok(exit_codes::SUCCESS);
        }
        Err(err) => return Err(err),
    };
    let info = &infos[0];
    if args.stdout || args.stderr {
        return print_output(store, info, args);
    }
    let mut text = describe(info, now);
    if let Some(connected) = &mut connected {
        match two_tier::entry(&mut connected.fleet, &info.key) {
            Ok(Some(shared)) => text.push_str(&describe_fleet(&shared, now, false)),
            Ok(None) => text.push_str("fleet:        no value\n"),
            Err(err) => return Err(two_tier::store_error(&err)),
        }
    }
    if infos.len() > 1 {
        let name = display::escape(info.name().unwrap_or_default());
        let others = infos.len() - 1;
        let _ = writeln!(
            text,
            "\n{others} more {} labelled '{name}'; `cacheback stats {name}` lists them all.",
            if others == 1 {
                "entry is"
            } else {
                "entries are"
            },
        );
    }
    (&*output::stdout())
        .write_all(text.as_bytes())
        .map_err(|err| Error::io("writing to stdout", err))?;
    match unreachable {
        // This host's part is shown; the fleet's could not be.
        Some(err) => Err(err),
        None => Ok(exit_codes::SUCCESS),
    }
}

fn print_output(store: &FsStore, info: &EntryInfo, args: &ShowArgs) -> Result<u8> {
    let mut head = [std::mem::MaybeUninit::uninit(); PREAMBLE_LEN];
    let entry = match store.open(&info.key, FileKind::Entry, &mut head) {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            return Err(Error::NotFound(format!(
                "{}: no cached output (only a failed run is recorded)",
                info.title()
            )));
        }
        Err(err) => {
            return Err(Error::NotFound(format!(
                "{}: cached output unreadable: {err}",
                info.title()
            )));
        }
    };
    let written = if args.stdout {
        entry.copy_stdout(&output::stdout())
    } else {
        Ok(())
    };
    written
        .and_then(|()| {
            if args.stderr {
                // With both flags the two streams go where `run` would send them.
                let out = if args.stdout {
                    output::stderr()
                } else {
                    output::stdout()
                };
                entry.copy_stderr(&out)
            } else {
                Ok(())
            }
        })
        .map_err(|err| Error::io("writing the cached output", err))?;
    Ok(exit_codes::SUCCESS)
}

/// The fleet tier's value as `field: value` lines; `alone` when the local
/// cache has no entry, so the lines that say which entry it is come too.
fn describe_fleet(entry: &FleetEntry, now: u64, alone: bool) -> String {
    let mut text = String::new();
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(text, "{:<13} {value}", format!("{name}:"));
    };
    let meta = &entry.meta;
    if alone {
        field("key", &entry.key.to_hex());
        field(
            "name",
            &display::escape(
                entry
                    .details
                    .as_ref()
                    .and_then(|d| d.name.as_deref())
                    .unwrap_or("-"),
            ),
        );
        field(
            "command",
            &entry
                .details
                .as_ref()
                .map_or_else(|| "-".to_owned(), |details| details.inputs.command_line()),
        );
    }
    field(
        "fleet",
        &format!(
            "{}, produced {} ({}), {}{}",
            entry.state(now),
            format_utc(meta.finished_ms),
            ago(now, meta.finished_ms),
            format_size(meta.stdout_len + meta.stderr_len),
            if meta.flags & crate::store::entry::FLAG_FORCED_STALE != 0 {
                ", marked stale"
            } else {
                ""
            }
        ),
    );
    let count = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    field(
        "fleet counts",
        &format!(
            "{}, {} to hosts, {}",
            count(entry.count("runs"), "run", "runs"),
            count(entry.count("fills"), "copy", "copies"),
            count(entry.count("failures"), "failure", "failures")
        ),
    );
    if let Some(failure) = &entry.failure {
        field(
            "fleet failure",
            &format!(
                "{} ({}), exit {}, {} in a row",
                format_utc(failure.finished_ms),
                ago(now, failure.finished_ms),
                failure.exit_code,
                failure.failures
            ),
        );
    }
    text
}

/// The full metadata as `field: value` lines.
fn describe(info: &EntryInfo, now: u64) -> String {
    let ms = |millis: u64| format_duration(std::time::Duration::from_millis(millis));
    let mut text = String::new();
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(text, "{:<13} {value}", format!("{name}:"));
    };
    field("key", &info.key.to_hex());
    field("name", &display::escape(info.name().unwrap_or("-")));
    field("command", &info.command_line());
    field("state", info.state.as_str());
    if let Some(error) = &info.error {
        field("error", &display::escape(error));
    }
    if let Some(details) = &info.details {
        let brief = |millis: u64| format_duration_brief(std::time::Duration::from_millis(millis));
        field("ttl", &brief(details.ttl_ms));
        field("max age", &details.max_age_ms.map_or("-".into(), brief));
        if let Some(entry) = &info.entry {
            let jitter = u64::from(entry.jitter_ms);
            if jitter > 0 {
                field("jitter", &format!("+{} (drawn when stored)", brief(jitter)));
            }
        }
        if let Some(stale_at) = info.stale_at_ms() {
            let when = if stale_at > now {
                format!("in {}", ms(stale_at - now))
            } else {
                ago(now, stale_at)
            };
            field("stale at", &format!("{} ({when})", format_utc(stale_at)));
        }
        let keyed = info.keyed_on();
        field(
            "keyed on",
            if keyed.is_empty() {
                "command only"
            } else {
                &keyed
            },
        );
    }
    match &info.entry {
        Some(entry) => {
            field(
                "finished",
                &format!(
                    "{} ({}){}",
                    format_utc(entry.finished_ms),
                    if info.finished_in_future {
                        "in the future: age unknown".to_owned()
                    } else {
                        ago(now, entry.finished_ms)
                    },
                    if entry.forced_stale() {
                        ", marked stale"
                    } else {
                        ""
                    }
                ),
            );
            field("duration", &ms(u64::from(entry.duration_ms)));
            field("exit status", &entry.exit_code.to_string());
            field(
                "output",
                &format!(
                    "{} stdout, {} stderr",
                    format_size(entry.stdout_len),
                    format_size(entry.stderr_len)
                ),
            );
        }
        None => field("finished", "- (no stored result)"),
    }
    field("size on disk", &format_size(info.size_bytes));
    let counts = &info.counts;
    field(
        "hits",
        &format!(
            "{} ({} fresh, {} stale)",
            counts.hits + counts.stale_hits,
            counts.hits,
            counts.stale_hits
        ),
    );
    field("misses", &counts.misses.to_string());
    field("refreshes", &counts.refreshes.to_string());
    field("failures", &counts.failures.to_string());
    field(
        "last used",
        &match info.last_read_ms() {
            0 => "-".to_owned(),
            at => ago(now, at),
        },
    );
    match &info.failure {
        Some(failure) => {
            field(
                "last failure",
                &format!(
                    "{} ({}), exit {}, after {}, {} in a row",
                    format_utc(failure.finished_ms),
                    ago(now, failure.finished_ms),
                    failure.exit_code,
                    ms(failure.duration_ms),
                    failure.consecutive
                ),
            );
            let tail = display::escape_block(&failure.stderr_tail);
            for line in tail.lines() {
                let _ = writeln!(text, "  | {line}");
            }
        }
        None => field("last failure", "-"),
    }
    text
}
