//! The fleet lease of a run: kept alive by a thread while the command runs,
//! then given back with the result published (or the failure recorded)
//! fleet-wide.

use std::mem::MaybeUninit;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;

use super::settings::{FleetConfig, MIN_EXPIRY, MIN_REPLY_TIMEOUT};
use crate::clock::now_ms;
use crate::key::Key;
use crate::output;
use crate::store::entry::PREAMBLE_LEN;
use crate::store::redis::{Connection, Fleet, FleetLease, LeaseRenewer, Published};
use crate::store::transfer::{self, Shared};
use crate::store::{FileKind, FsStore};
use crate::units::format_size;

/// Bytes of a failed run's stderr kept fleet-wide, for the callers of other
/// hosts who waited for it.
pub const FAILURE_TAIL: u64 = 4096;

/// The fleet lease of one entry, kept alive while the command runs.
pub struct Leased {
    fleet: Fleet,
    config: FleetConfig,
    lease: FleetLease,
    keeper: Keeper,
    started_ms: u64,
}

impl Leased {
    pub(super) fn new(fleet: Fleet, config: FleetConfig, lease: FleetLease) -> Leased {
        let keeper = Keeper::start(&config, lease.renewer());
        Leased {
            fleet,
            config,
            lease,
            keeper,
            started_ms: now_ms(),
        }
    }

    /// After the run: publishes the local entry it stored (or records its
    /// failure fleet-wide) and gives the lease back. `warn`: the caller is
    /// in the foreground, with a stderr to say that a value stays local.
    /// `unstored`: the command succeeded but this host could not store its
    /// output (a full disk); that failure is this host's, not the command's,
    /// so the fleet is not told of it, and the callers of other hosts who
    /// waited for the run find the lease free and run it themselves.
    pub fn share(mut self, store: &FsStore, warn: bool, unstored: bool) -> Option<Published> {
        self.keeper.stop();
        // A copy: the lease itself is given back at the end.
        let key = &{ *self.lease.key() };
        let entry = store.peek(key, FileKind::Entry);
        let failure = store.peek(key, FileKind::Failure);
        let fresh_entry = entry
            .as_ref()
            .is_some_and(|entry| entry.finished_ms >= self.started_ms);
        let mut published = None;
        if fresh_entry {
            let _ = self.fleet.count(key, "runs");
            match transfer::publish_local(
                store,
                &mut self.fleet,
                &self.lease,
                self.config.max_value,
            ) {
                Ok(Shared::Fleet(outcome)) => published = Some(outcome),
                Ok(Shared::TooLarge { len }) if warn => output::warn(format_args!(
                    "the output ({}) is larger than --store-max-value ({}): it stays in this \
                     host's cache only",
                    format_size(len),
                    format_size(self.config.max_value)
                )),
                Ok(_) => {}
                Err(err) if warn => output::warn(format_args!("could not share the result: {err}")),
                Err(_) => {}
            }
        } else if let Some(failure) = failure
            && failure.finished_ms >= self.started_ms
            && !unstored
        {
            let _ = self.fleet.count(key, "failures");
            let tail = failure_tail(store, key);
            let _ = self.fleet.record_failure(
                &self.lease,
                failure.finished_ms,
                failure.exit_code,
                &tail,
            );
        }
        let _ = self.fleet.release(self.lease);
        published
    }
}

/// The end of the local failure record's stderr.
fn failure_tail(store: &FsStore, key: &Key) -> Vec<u8> {
    let mut head = [MaybeUninit::uninit(); PREAMBLE_LEN];
    match store.open(key, FileKind::Failure, &mut head) {
        Ok(Some(record)) => record.stderr_tail(FAILURE_TAIL).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A thread that renews the lease every third of its length on a connection
/// of its own, until stopped: a long run keeps its lease, and a holder that
/// dies (and its thread with it) frees the entry one lease length later.
struct Keeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Keeper {
    fn start(config: &FleetConfig, renewer: LeaseRenewer) -> Keeper {
        let (stop, stopped) = mpsc::channel::<()>();
        let config = config.clone();
        let thread = std::thread::Builder::new()
            .name("lease".into())
            .spawn(move || {
                let mut fleet: Option<Fleet> = None;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(config.lease / 3) {
                    if fleet.is_none() {
                        fleet = Connection::open(
                            &config.url,
                            config.connect_timeout,
                            MIN_REPLY_TIMEOUT,
                        )
                        .ok()
                        .map(|conn| Fleet::new(conn, &config.prefix, MIN_EXPIRY));
                    }
                    match fleet
                        .as_mut()
                        .map(|fleet| fleet.renew_with(&renewer, config.lease))
                    {
                        Some(Ok(true)) | None => {}
                        // Lost: the publish will be refused; nothing to keep.
                        Some(Ok(false)) => return,
                        Some(Err(_)) => fleet = None, // reconnect next time
                    }
                }
            })
            .ok();
        Keeper {
            stop: Some(stop),
            thread,
        }
    }

    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop();
    }
}
