//! A local miss with a fleet store: copy another host's value, wait for
//! the host running the command, or take the lease and run it here.

use std::time::{Duration, Instant};

use super::connect::{Connected, connect, went_down};
use super::fleet_store::{FleetStore, holding_of};
use super::lease::Leased;
use super::read::{Waited, copyable, fill, millis, preamble_of, read_entry, wait_for_holder};
use super::settings::{FleetConfig, FleetSettings};
use crate::clock::now_ms;
use crate::key::Key;
use crate::options::RunOptions;
use crate::output;
use crate::rules::{self, Claim, Store as _};
use crate::store::lock::EntryLock;
use crate::store::redis::{Fleet, Snapshot};
use crate::store::{FileKind, FsStore};

/// What a local miss found in the fleet tier.
pub enum MissOutcome {
    /// No fleet tier to ask (none configured, or down): the local rules alone.
    Local,
    /// The fleet's value is now the local entry; `stale` when it is due for
    /// a refresh.
    Filled {
        /// Due for a refresh.
        stale: bool,
    },
    /// Another host ran the command while this caller waited, and it failed.
    FailedElsewhere {
        /// Its exit status.
        exit_code: i32,
        /// The end of its stderr.
        stderr_tail: Vec<u8>,
    },
    /// Nobody has a value: run the command, then [`Leased::share`] the result.
    Run(Box<Leased>),
}

/// A local miss, under the local lock: copies a usable fleet value, or waits
/// for the host running the command, or returns the lease to run it here.
pub fn on_miss(
    settings: &FleetSettings,
    store: &FsStore,
    lock: &EntryLock,
    key: &Key,
    args: &RunOptions,
) -> MissOutcome {
    let Some(Connected { mut fleet, config }) = connect(settings, store, args.ttl()) else {
        return MissOutcome::Local;
    };
    let (mut answered, mut warned) = (false, false);
    // Another host's run is waited for as long as this caller would let its
    // own run go on (`--timeout`), plus the lease that outlives a dead holder.
    let deadline = args
        .timeout
        .map(|limit| Instant::now() + limit + config.lease);
    // Bounded: each turn ends in a copy, a lease or a wait for a holder, and
    // only a holder that vanished without a result brings another turn.
    for _ in 0..8 {
        let Some(snapshot) = read_entry(&mut fleet, &config, store, key, &mut answered) else {
            return MissOutcome::Local;
        };
        match copy_if_usable(
            store,
            &config,
            lock,
            &mut fleet,
            &snapshot,
            args,
            &mut warned,
        ) {
            Ok(Some(stale)) => return MissOutcome::Filled { stale },
            Err(()) => return MissOutcome::Local,
            Ok(None) => {}
        }
        let seen_failure = snapshot.failure.as_ref().map(|failure| failure.stamp_ms);
        let generation = snapshot.meta.as_ref().map(|meta| meta.generation);
        let held = holding_of(&snapshot, config.max_value);
        let shared = FleetStore::new(&mut fleet, &config);
        let claimed = rules::claim_miss(&shared, key, &held);
        match claimed {
            Ok(Claim::Run(lease)) => {
                return MissOutcome::Run(Box::new(Leased::new(fleet, config, lease)));
            }
            // A host's run ended between our reads and our lease: its result
            // is ours, as if we had waited for it (found by the seeded
            // cluster model test).
            Ok(Claim::Landed(lease)) => {
                shared.give_back(lease);
                continue;
            }
            Ok(Claim::Failed(lease)) => {
                shared.give_back(lease);
                let failure = shared.last_read().and_then(|latest| latest.failure);
                return MissOutcome::FailedElsewhere {
                    exit_code: failure.as_ref().map_or(1, |failure| failure.exit_code),
                    stderr_tail: failure
                        .map(|failure| failure.stderr_tail)
                        .unwrap_or_default(),
                };
            }
            Ok(Claim::InFlight) => {}
            Err(err) => {
                went_down(store, &config, &err);
                return MissOutcome::Local;
            }
        }
        match wait_for_holder(&mut fleet, &config, key, generation, seen_failure, deadline) {
            Waited::Value | Waited::Gone => continue,
            Waited::Failed {
                exit_code,
                stderr_tail,
            } => {
                return MissOutcome::FailedElsewhere {
                    exit_code,
                    stderr_tail,
                };
            }
            Waited::Broken(err) => {
                went_down(store, &config, &err);
                return MissOutcome::Local;
            }
            Waited::TimedOut => {
                output::warn(format_args!(
                    "another host's run of this command is still going after --timeout: \
                     running it here"
                ));
                return MissOutcome::Local;
            }
        }
    }
    MissOutcome::Local
}

/// A local run this caller waited for failed, and it may have been one
/// that does not ask the fleet (`--force`): a usable fleet value is better
/// than that failure. Copies it if there is one and returns whether it is
/// stale; `None` leaves the caller with the failure.
pub fn fill_if_usable(
    settings: &FleetSettings,
    store: &FsStore,
    lock: &EntryLock,
    key: &Key,
    args: &RunOptions,
) -> Option<bool> {
    let Connected { mut fleet, config } = connect(settings, store, args.ttl())?;
    let (mut answered, mut warned) = (false, false);
    let snapshot = read_entry(&mut fleet, &config, store, key, &mut answered)?;
    copy_if_usable(
        store,
        &config,
        lock,
        &mut fleet,
        &snapshot,
        args,
        &mut warned,
    )
    .ok()
    .flatten()
}

/// Copies the fleet's value in `snapshot` into the local entry if this
/// host may use it (a sound header, within `--store-max-value` and
/// `--max-age`): `Ok(Some(stale))` once copied, `Ok(None)` when there was
/// nothing to copy or it could not be used (said once, through `warned`),
/// `Err(())` when the store failed mid-copy (it is marked down).
fn copy_if_usable(
    store: &FsStore,
    config: &FleetConfig,
    lock: &EntryLock,
    fleet: &mut Fleet,
    snapshot: &Snapshot,
    args: &RunOptions,
    warned: &mut bool,
) -> Result<Option<bool>, ()> {
    let now = now_ms();
    let Some(meta) = copyable(snapshot, config, warned)
        .filter(|meta| preamble_of(meta).is_usable(now, args.max_age.map(millis)))
    else {
        return Ok(None);
    };
    match fill(store, config, lock, fleet, meta, warned) {
        Ok(()) => {
            let _ = fleet.count(&snapshot.key, "fills");
            Ok(Some(store.peek(&snapshot.key, FileKind::Entry).is_none_or(
                |local| local.is_stale(now, millis(args.ttl())),
            )))
        }
        Err(Some(())) => Err(()),
        Err(None) => Ok(None),
    }
}

/// `--force`: the lease, if nobody holds it, so the result is shared; the
/// command runs either way.
pub fn lease_if_free(
    settings: &FleetSettings,
    store: &FsStore,
    key: &Key,
    ttl: Duration,
) -> Option<Leased> {
    let Connected { mut fleet, config } = connect(settings, store, ttl)?;
    match fleet.try_lease(key, config.lease) {
        Ok(Some(lease)) => Some(Leased::new(fleet, config, lease)),
        Ok(None) => {
            // Held: by a running host, or by a lease stored without an
            // expiry, which nobody else may be waiting on to cut it.
            let _ = fleet.lease_held(key, config.lease);
            None
        }
        Err(err) => {
            went_down(store, &config, &err);
            None
        }
    }
}
