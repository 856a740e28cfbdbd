//! The detached background run, in the child that `refresh::spawn` forked.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::exit_codes;
use crate::key::{Key, KeyInputs};
use crate::options::RunOptions;
use crate::store::events;
use crate::store::lock::EntryLock;
use crate::store::{Committed, FsStore};
use crate::two_tier::{self, FleetSettings, RefreshPlan};

/// Runs of one refresh at most: the first, and reruns after `invalidate
/// --refresh` marked the result stale while it ran. Bounded, so a loop of
/// invalidations cannot keep a refresher going for ever.
const MAX_RUNS: usize = 3;

/// Runs the command with the inherited lock and stores the result; returns
/// the refresher's own exit status (nobody waits for it, but it shows in traces).
/// With a fleet store, the fleet tier is asked first: it may have the value,
/// or another host may be running the command (see [`two_tier`]).
pub fn run(
    store: &FsStore,
    key: &Key,
    args: &RunOptions,
    lock: &EntryLock,
    fleet: &FleetSettings,
) -> u8 {
    // A --modtime file or --env value may have changed since the caller
    // looked: then the entry it wanted refreshed has become unreachable.
    let current = KeyInputs::gather(args, store)
        .ok()
        .filter(|inputs| inputs.key() == *key);
    let Some(inputs) = current else {
        return exit_codes::SUCCESS;
    };
    let before = args
        .on_refresh
        .as_ref()
        .and_then(|_| store.stdout_digest(key));
    // With --stale-marker, the caller showed the marker after a stale or
    // failing value; a stored refresh takes it away even when the value is
    // the same, so the hook has a change to show then too.
    let marker_shown = args.on_refresh.is_some()
        && crate::env_defaults::stale_marker(args.stale_marker.as_ref()).is_some()
        && store
            .peek(key, crate::store::FileKind::Entry)
            .is_some_and(|seen| {
                let ttl_ms = u64::try_from(args.ttl().as_millis()).unwrap_or(u64::MAX);
                seen.is_stale(crate::clock::now_ms(), ttl_ms) || seen.failed_since_stored()
            });
    let mut status = exit_codes::SUCCESS;
    let mut stored = false;
    let (leased, runs) = match two_tier::before_refresh(fleet, store, lock, key, args) {
        RefreshPlan::Local => (None, MAX_RUNS),
        RefreshPlan::Run(leased) => (Some(leased), MAX_RUNS),
        RefreshPlan::Done { stored: copied } => {
            stored = copied;
            (None, 0)
        }
    };
    let mut unstored = false;
    for _ in 0..runs {
        match crate::produce::execute(store, key, &inputs, args, lock, false) {
            // Marked stale while it ran: the result may predate what the user
            // reacted to, so run again while we hold the lock.
            Ok(ran) if ran.committed == Some(Committed::StoredStale) => {
                stored = true;
                continue;
            }
            Ok(ran) => {
                stored |= ran.committed == Some(Committed::Stored);
                unstored = ran.unstored;
            }
            Err(err) => {
                // A result that could not be committed (a full disk) is
                // this host's failure (see `produce::record_unstored`); a
                // command that could not start is the command's.
                unstored = !matches!(
                    err,
                    crate::error::Error::CommandNotFound { .. }
                        | crate::error::Error::CannotExecute { .. }
                );
                status = err.exit_code();
            }
        }
        break;
    }
    if let Some(leased) = leased {
        leased.share(store, false, unstored);
    }
    if let Some(hook) = &args.on_refresh
        && stored
        && (marker_shown
            || store
                .stdout_digest(key)
                .is_some_and(|after| Some(after) != before))
    {
        notify(hook, args, key);
    }
    let _ = events::fold(store, key, lock);
    // This entry's lock stays held until we exit, so gc passes over it: fine,
    // it was just refreshed.
    crate::store::fs::gc::maybe_daily(store, crate::clock::now_ms());
    status
}

/// Runs the `--on-refresh` hook with `sh -c`, detached (its own process
/// group, no stdio) and not waited for: a slow hook must not hold the lock,
/// and a status bar's `pkill -RTMIN+8 i3blocks` needs nothing back. The label
/// and key tell a hook shared by several entries which one changed.
fn notify(hook: &OsStr, args: &RunOptions, key: &Key) {
    let mut command = Command::new("sh");
    crate::exec::hide_store_credentials(&mut command);
    let _ = command
        .arg("-c")
        .arg(hook)
        .env("CACHEBACK_NAME", args.name.as_deref().unwrap_or(""))
        .env("CACHEBACK_KEY", key.to_hex())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
}
