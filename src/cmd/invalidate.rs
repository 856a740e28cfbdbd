//! `cacheback invalidate`: forget entries, or mark them stale and refresh them.
//!
//! A refresh running at that moment may hold data from before the change the
//! user is reacting to. Forgetting unlinks the entry's lock file first: the
//! refresh notices when it commits and discards its result. Marking stale
//! counts up the lock file's stale generation instead (the entry must never
//! disappear): the refresh stores its result marked stale and runs again.
//! See `lock::bump_stale_generation` and `EntryWriter::commit`.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::InvalidateArgs;
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::inspect::{self, EntryInfo};
use crate::key::KeyInputs;
use crate::options::{EntryName, KeyOptions, RunOptions};
use crate::output;
use crate::refresh;
use crate::store::entry::{Details, FLAG_FORCED_STALE, FLAGS_OFFSET, MAGIC};
use crate::store::lock;
use crate::store::{FileKind, FsStore, remove_if_present};
use crate::two_tier::{self, FleetSettings};

/// Runs `cacheback invalidate`.
///
/// With `--refresh`, every entry is marked stale first (cheap, and callers
/// keep their values), then one background process refreshes them, at most
/// `--jobs` at a time. An entry that cannot be handled gets a line saying
/// why and the others go on; the status is then [`FAILURE`](exit_codes::FAILURE).
///
/// With a fleet store, the fleet's values are forgotten too (or marked stale
/// with `--refresh`), before any refresh starts. Other hosts' local copies
/// are not reached: each serves its copy until it goes stale, and its
/// refresh then finds the fleet value gone (or marked stale) and runs.
pub fn run(store: &FsStore, args: &InvalidateArgs, fleet: &FleetSettings) -> Result<u8> {
    let now = crate::clock::now_ms();
    let entry = EntryName::from(args.entry.clone());
    let (mut connected, unreachable) = two_tier::connect_beside_local(fleet)?;
    let selected = if args.all {
        inspect::list(store, now).map(|(infos, _)| infos)
    } else {
        inspect::select(store, &entry, now)
    };
    let infos = match selected {
        // Only the fleet may have it.
        Err(Error::NotFound(_)) if connected.is_some() => Vec::new(),
        other => other?,
    };
    let shared = match &mut connected {
        Some(connected) if args.all => {
            let keys = connected
                .fleet
                .keys()
                .map_err(|err| two_tier::store_error(&err))?;
            keys.iter()
                .filter_map(|key| two_tier::entry(&mut connected.fleet, key).transpose())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|err| two_tier::store_error(&err))?
        }
        Some(connected) => two_tier::select(&mut connected.fleet, store, &entry)?,
        None => Vec::new(),
    };
    if infos.is_empty() && shared.is_empty() && !args.all {
        // Neither tier has it: the local tier's message says why.
        inspect::select(store, &entry, now)?;
    }
    // `refresh::spawn_batch` points our stdout at /dev/null, so the report
    // goes to a copy of it taken now.
    let report_to = output::stdout()
        .try_clone()
        .map_err(|err| Error::io("duplicating stdout", err))?;
    let mut report = String::new();
    let mut failed = false;
    let home =
        std::env::current_dir().map_err(|err| Error::io("reading the working directory", err))?;
    let mut plans = Vec::new();
    for info in &infos {
        let line = if args.refresh {
            match mark_stale_and_plan(store, info, &home) {
                Ok((line, plan)) => {
                    plans.extend(plan);
                    line
                }
                Err(err) => {
                    failed = true;
                    format!("could not mark {} stale: {err}", info.title())
                }
            }
        } else {
            let running = lock::is_held(&store.path(&info.key, FileKind::Lock));
            forget(store, info)?;
            format!(
                "invalidated {}{}",
                info.title(),
                if running {
                    " (the run in progress will not be stored)"
                } else {
                    ""
                }
            )
        };
        report.push_str(&line);
        report.push('\n');
    }
    if args.all && !args.refresh {
        // Keys with no entry yet (a first run in flight) have only a lock and
        // events; forgetting "everything" includes them.
        for (key, _) in inspect::scan(store)?.keys {
            store.invalidate(&key)?;
            remove_events(store, &key)?;
        }
    }
    if let Some(connected) = &mut connected {
        for entry in &shared {
            let done = if args.refresh {
                connected.fleet.mark_stale(&entry.key)
            } else {
                connected.fleet.forget(&entry.key)
            };
            let line = match done {
                Ok(_) if args.refresh => {
                    format!("marked {} stale in the fleet store", entry.title())
                }
                Ok(_) => format!("invalidated {} in the fleet store", entry.title()),
                Err(err) => {
                    failed = true;
                    format!(
                        "could not invalidate {} in the fleet store: {err}",
                        entry.title()
                    )
                }
            };
            report.push_str(&line);
            report.push('\n');
        }
    }
    if let Some(connected) = connected.as_mut().filter(|_| args.all && !args.refresh) {
        // Keys with only a failure record or counters go too.
        let keys = connected
            .fleet
            .keys()
            .map_err(|err| two_tier::store_error(&err))?;
        for key in keys {
            connected
                .fleet
                .forget(&key)
                .map_err(|err| two_tier::store_error(&err))?;
        }
    }
    if infos.is_empty() && shared.is_empty() {
        report.push_str("nothing to invalidate\n");
    }
    if !plans.is_empty() {
        let count = plans.len();
        match refresh::spawn_batch(store, plans, args.jobs, fleet) {
            Ok(()) if count > 1 => report.push_str(&format!(
                "refreshing {count} entries in the background, {} at a time\n",
                usize::from(args.jobs).min(count)
            )),
            Ok(()) => {}
            Err(err) => {
                failed = true;
                report.push_str(&format!(
                    "could not start the refreshes ({err}); the entries stay marked stale, \
                     so the next `run` of each refreshes it\n"
                ));
            }
        }
    }
    output::write_all(&report_to, report.as_bytes())
        .map_err(|err| Error::io("writing to stdout", err))?;
    if let Some(err) = unreachable {
        // This host's cache is done; the fleet's values are not.
        output::warn(format_args!(
            "{err}; only this host's cache was invalidated"
        ));
        return Ok(exit_codes::FAILURE);
    }
    Ok(if failed {
        exit_codes::FAILURE
    } else {
        exit_codes::SUCCESS
    })
}

/// Removes the entry, its failure record, its lock and its counters: the next
/// `run` is a miss and counts from zero.
fn forget(store: &FsStore, info: &EntryInfo) -> Result<()> {
    store.invalidate(&info.key)?;
    remove_events(store, &info.key)
}

fn remove_events(store: &FsStore, key: &crate::key::Key) -> Result<()> {
    for kind in [FileKind::Events, FileKind::EventsFolding] {
        remove_if_present(&store.path(key, kind))?;
    }
    Ok(())
}

/// `invalidate --refresh` of one entry: callers keep getting the old value,
/// marked stale, until a new one lands; the refresh is planned now, whatever
/// the back-off says, because the user asked for it. Returns the report line
/// and the refresh to run, if any.
/// `home` is where the user ran us: entries not keyed on a directory are
/// refreshed there, as `run` would.
fn mark_stale_and_plan(
    store: &FsStore,
    info: &EntryInfo,
    home: &Path,
) -> Result<(String, Option<refresh::Planned>)> {
    let title = info.title();
    let Some(details) = &info.details else {
        forget(store, info)?;
        return Ok((
            format!("invalidated {title} (unreadable, so it cannot be refreshed)"),
            None,
        ));
    };
    // The generation first, then the flag: a run in flight either sees the
    // new generation when it stores its result (and marks that stale
    // itself), or stored it before, and the flag lands on its result.
    let lock_path = store.path(&info.key, FileKind::Lock);
    lock::bump_stale_generation(&lock_path)?;
    if info.entry.is_some() {
        mark_stale(&store.path(&info.key, FileKind::Entry))?;
    }
    let args = run_args(details, info);
    let cwd = match &details.inputs.cwd {
        Some(cwd) => PathBuf::from(OsString::from_vec(cwd.clone())),
        None => home.to_owned(),
    };
    // The key is checked where the refresh will run: a `--cwd` entry is
    // recomputed where it was keyed.
    if let Err(err) = std::env::set_current_dir(&cwd) {
        return Ok((
            format!(
                "marked {title} stale; not refreshed now: {}: {err}",
                cwd.display()
            ),
            None,
        ));
    }
    if args.key.stdin {
        // Its input was never stored: only a caller who has it can refresh it.
        return Ok((
            format!(
                "marked {title} stale; not refreshed now: it is keyed on its input (--stdin), so \
                 the next `run` with that input refreshes it"
            ),
            None,
        ));
    }
    let inputs =
        KeyInputs::gather(&args, store).map_err(|err| Error::io("reading key inputs", err))?;
    if inputs.key() != info.key {
        return Ok((
            format!(
                "marked {title} stale; not refreshed now: its --env/--modtime/--hash inputs differ \
                 here, so the next `run` that uses it refreshes it"
            ),
            None,
        ));
    }
    let line = if lock::is_held(&lock_path) {
        format!("marked {title} stale; the run in progress will run again when it ends")
    } else {
        format!("marked {title} stale; refreshing in the background")
    };
    let plan = refresh::Planned {
        key: info.key,
        args,
        cwd,
    };
    Ok((line, Some(plan)))
}

/// Sets the forced-stale flag in the entry's header, in place.
fn mark_stale(path: &Path) -> Result<()> {
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(file) => file,
        // Replaced or removed since we looked: nothing left to mark.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(Error::path(path, err)),
    };
    let mut head = [0u8; FLAGS_OFFSET as usize + 4];
    file.read_exact_at(&mut head, 0)
        .map_err(|err| Error::path(path, err))?;
    if head[..4] != MAGIC {
        return Ok(()); // not an entry we can mark; `run` treats it as a miss anyway
    }
    let at = FLAGS_OFFSET as usize;
    let flags = u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    file.write_all_at(&(flags | FLAG_FORCED_STALE).to_le_bytes(), FLAGS_OFFSET)
        .map_err(|err| Error::path(path, err))
}

/// The `run` options that stored this entry, as far as the entry records them.
/// `--timeout` is not recorded (the background default applies);
/// `--cache-failures` is a flag in the preamble, as it is part of the key.
fn run_args(details: &Details, info: &EntryInfo) -> RunOptions {
    let inputs = &details.inputs;
    let os = |bytes: &Vec<u8>| OsString::from_vec(bytes.clone());
    RunOptions {
        ttl: Duration::from_millis(details.ttl_ms),
        max_age: details.max_age_ms.map(Duration::from_millis),
        timeout: None,
        // Not recorded: the original jitter stays in the entry until this
        // refresh replaces it, and the hook belongs to the callers' command line.
        jitter: None,
        stale_marker: None,
        on_refresh: None,
        no_wait: false,
        placeholder: None,
        // The user asked: no back-off, and a fleet value does not count as fresh.
        force: true,
        cache_failures: info.entry.is_some_and(|entry| entry.cache_failures()),
        name: details.name.clone(),
        key: KeyOptions {
            cwd: inputs.cwd.is_some(),
            env: inputs.env.iter().map(|env| os(&env.name)).collect(),
            modtime: inputs
                .modtimes
                .iter()
                .map(|modtime| PathBuf::from(os(&modtime.path)))
                .collect(),
            hash: inputs
                .contents
                .iter()
                .map(|content| PathBuf::from(os(&content.path)))
                .collect(),
            stdin: inputs.stdin.is_some(),
            scope: inputs.scope.clone(),
        },
        command: inputs.argv.iter().map(os).collect(),
    }
}
