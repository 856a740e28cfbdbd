//! `cacheback gc`: reports a pass of the store's collection
//! ([`crate::store::fs::gc`]) and, with a fleet store, forgets old fleet values.

use std::io::Write as _;

use crate::cli::GcArgs;
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::output;
use crate::store::FsStore;
use crate::store::fs::gc::collect;
use crate::two_tier::{self, FleetSettings};
use crate::units::{format_duration_brief, format_size};

/// Runs `cacheback gc`.
///
/// With a fleet store, fleet values produced longer than `--older-than` ago
/// are forgotten too (the fleet does not know when hosts read them; its
/// keys also expire on their own, see [`two_tier::MIN_EXPIRY`]).
pub fn run(store: &FsStore, args: &GcArgs, fleet: &FleetSettings) -> Result<u8> {
    let report = collect(
        store,
        args.older_than,
        args.max_size,
        args.dry_run,
        crate::clock::now_ms(),
    )?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut text = String::new();
    let mut line = |(count, bytes): (usize, u64), what: String| {
        if count > 0 {
            text.push_str(&format!("{verb} {what} ({})\n", format_size(bytes)));
        }
    };
    let plural = |count: usize, one: &str, many: &str| {
        format!("{count} {}", if count == 1 { one } else { many })
    };
    line(
        report.unused,
        format!(
            "{} not read for {}",
            plural(report.unused.0, "entry", "entries"),
            format_duration_brief(args.older_than)
        ),
    );
    if let Some(max_size) = args.max_size {
        line(
            report.evicted,
            format!(
                "{} least recently read, to fit {}",
                plural(report.evicted.0, "entry", "entries"),
                format_size(max_size)
            ),
        );
    }
    line(
        report.temps,
        format!(
            "{} left by killed writers",
            plural(report.temps.0, "temp file", "temp files")
        ),
    );
    line(
        report.orphans,
        format!(
            "{} of entries that no longer exist",
            plural(report.orphans.0, "lock/events file", "lock/events files")
        ),
    );
    let freed = report.unused.1 + report.evicted.1 + report.temps.1 + report.orphans.1;
    text.push_str(&format!(
        "{} {}; {} ({}) left\n",
        if args.dry_run { "would free" } else { "freed" },
        format_size(freed),
        plural(report.remaining.0, "entry", "entries"),
        format_size(report.remaining.1),
    ));
    let (connected, unreachable) = two_tier::connect_beside_local(fleet)?;
    let shared = connected
        .map(|mut connected| collect_fleet(&mut connected, args, crate::clock::now_ms()))
        .transpose();
    // What was removed here is said whatever became of the fleet's part.
    if let Ok(Some(line)) = &shared {
        text.push_str(line);
    }
    (&*output::stdout())
        .write_all(text.as_bytes())
        .map_err(|err| Error::io("writing to stdout", err))?;
    shared?;
    match unreachable {
        Some(err) => Err(err),
        None => Ok(exit_codes::SUCCESS),
    }
}

/// The fleet's part of `gc`: forgets values produced more than
/// `--older-than` ago, and says what it did.
fn collect_fleet(connected: &mut two_tier::Connected, args: &GcArgs, now: u64) -> Result<String> {
    let fail = |err| two_tier::store_error(&err);
    let limit = u64::try_from(args.older_than.as_millis()).unwrap_or(u64::MAX);
    let (mut old, mut bytes, mut kept) = (0usize, 0u64, 0usize);
    for key in connected.fleet.keys().map_err(fail)? {
        let Some(meta) = connected.fleet.meta(&key).map_err(fail)? else {
            continue;
        };
        if now.saturating_sub(meta.finished_ms) < limit {
            kept += 1;
            continue;
        }
        old += 1;
        bytes += meta.stdout_len + meta.stderr_len;
        if !args.dry_run {
            connected.fleet.forget(&key).map_err(fail)?;
        }
    }
    Ok(format!(
        "fleet store {}: {} {old} {} produced over {} ago ({}); {kept} left\n",
        connected.config.url,
        if args.dry_run {
            "would forget"
        } else {
            "forgot"
        },
        if old == 1 { "value" } else { "values" },
        format_duration_brief(args.older_than),
        format_size(bytes),
    ))
}
