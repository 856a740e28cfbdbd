//! The background refresh with a fleet store: copy what another host
//! refreshed, back off while the fleet's last run failed, wait for a host
//! that is running it, or take the lease and run.

use std::time::Instant;

use super::connect::{Connected, connect, went_down};
use super::fleet_store::{FleetStore, holding_of};
use super::lease::Leased;
use super::read::{Waited, copyable, fill, millis, preamble_of, read_entry, wait_for_holder};
use super::settings::FleetSettings;
use crate::clock::now_ms;
use crate::key::Key;
use crate::options::RunOptions;
use crate::rules::{self, Start, Store as _};
use crate::store::lock::EntryLock;
use crate::store::{FileKind, FsStore};

/// What the refresher does, having asked the fleet.
pub enum RefreshPlan {
    /// No fleet tier to ask: the local rules alone.
    Local,
    /// Nothing to run: the fleet had a fresh value (copied when `stored`),
    /// or it is backing off, or another host's run just ended.
    Done {
        /// A value was copied into the local entry.
        stored: bool,
    },
    /// Run the command under this lease, then [`Leased::share`] the result.
    Run(Box<Leased>),
}

/// The background refresh of a stale entry (or a `--no-wait` miss), under
/// the local lock: copy what another host refreshed, back off while the
/// fleet's last run failed, wait for a host that is running it, or take the
/// lease and run. With `args.force` (`warm`, `invalidate --refresh`) neither
/// a fresh fleet value nor the back-off stops the run.
pub fn before_refresh(
    settings: &FleetSettings,
    store: &FsStore,
    lock: &EntryLock,
    key: &Key,
    args: &RunOptions,
) -> RefreshPlan {
    let Some(Connected { mut fleet, config }) = connect(settings, store, args.ttl()) else {
        return RefreshPlan::Local;
    };
    let ttl_ms = millis(args.ttl());
    let mut stored = false;
    let (mut answered, mut warned) = (false, false);
    let deadline = Some(Instant::now() + crate::produce::background_timeout(args) + config.lease);
    for _ in 0..8 {
        let Some(snapshot) = read_entry(&mut fleet, &config, store, key, &mut answered) else {
            return RefreshPlan::Local;
        };
        let now = now_ms();
        let local = store.peek(key, FileKind::Entry);
        if let Some(meta) = copyable(&snapshot, &config, &mut warned) {
            let shared = preamble_of(meta);
            let newer = rules::replaces_local(&shared, local.as_ref(), now, ttl_ms);
            if newer && shared.is_usable(now, args.max_age.map(millis)) {
                match fill(store, &config, lock, &mut fleet, meta, &mut warned) {
                    Ok(()) => {
                        stored = true;
                        let _ = fleet.count(key, "fills");
                        // `warm` and `invalidate --refresh` (`force`) asked for a run.
                        if !shared.is_stale(now, ttl_ms) && !args.force {
                            return RefreshPlan::Done { stored };
                        }
                    }
                    Err(Some(())) => return RefreshPlan::Local,
                    Err(None) => {}
                }
            }
        }
        let held = holding_of(&snapshot, config.max_value);
        // A fleet backing off is not even leased: every host keeps serving.
        if !args.force && held.backing_off(args.ttl(), now) {
            return RefreshPlan::Done { stored };
        }
        let shared = FleetStore::new(&mut fleet, &config);
        let decided = rules::start_refresh(&shared, key, held.value_version, args.ttl(), now_ms);
        match decided {
            // `warm` and `invalidate --refresh` (`force`) run all the same.
            Ok(Start::Refresh(lease) | Start::BackingOff(lease)) if args.force => {
                return RefreshPlan::Run(Box::new(Leased::new(fleet, config, lease)));
            }
            Ok(Start::Refresh(lease)) => {
                return RefreshPlan::Run(Box::new(Leased::new(fleet, config, lease)));
            }
            Ok(Start::BackingOff(lease)) => {
                shared.give_back(lease);
                return RefreshPlan::Done { stored };
            }
            // Another host published between our read and our lease.
            Ok(Start::Landed(lease)) => {
                shared.give_back(lease);
                continue;
            }
            Ok(Start::InFlight) => {}
            Err(err) => {
                went_down(store, &config, &err);
                return RefreshPlan::Local;
            }
        }
        let seen_failure = snapshot.failure.as_ref().map(|failure| failure.stamp_ms);
        let generation = snapshot.meta.as_ref().map(|meta| meta.generation);
        match wait_for_holder(&mut fleet, &config, key, generation, seen_failure, deadline) {
            Waited::Value | Waited::Gone => continue,
            Waited::Broken(err) => {
                went_down(store, &config, &err);
                return RefreshPlan::Done { stored };
            }
            Waited::Failed { .. } | Waited::TimedOut => return RefreshPlan::Done { stored },
        }
    }
    RefreshPlan::Done { stored }
}
