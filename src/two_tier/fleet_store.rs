//! The fleet, as the rules see it: the same [`rules::Store`] the file store
//! implements, so "who refreshes", "a run landed meanwhile" and "back off"
//! are decided for a fleet value by the code that decides them for a local
//! one ([`rules::start_refresh`], [`rules::claim_miss`]).
//!
//! A fleet value is told from the next by its generation (each publish
//! makes a new one, whatever the publishing host's clock says), a failure
//! by its stamp on the store's clock; the times the rules compare with the
//! local clock have been carried over to it by the read ([`Fleet::read`]).

use std::cell::RefCell;
use std::time::Duration;

use super::read::preamble_of;
use super::settings::FleetConfig;
use crate::key::Key;
use crate::rules::{self, FailureMark, Holding};
use crate::store::redis::{Fleet, FleetLease, Snapshot, StoreError};

/// A connected fleet tier with its lease length and value limit.
pub(super) struct FleetStore<'f> {
    fleet: RefCell<&'f mut Fleet>,
    lease: Duration,
    max_value: u64,
    /// The last snapshot [`rules::Store::holding`] read: what a failure
    /// that landed left for the callers who waited (its status, its stderr).
    last: RefCell<Option<Snapshot>>,
}

impl<'f> FleetStore<'f> {
    /// The rules' view of `fleet`, leasing for `config.lease`.
    pub(super) fn new(fleet: &'f mut Fleet, config: &FleetConfig) -> FleetStore<'f> {
        FleetStore {
            fleet: RefCell::new(fleet),
            lease: config.lease,
            max_value: config.max_value,
            last: RefCell::new(None),
        }
    }

    /// The last snapshot the rules read through this view.
    pub(super) fn last_read(self) -> Option<Snapshot> {
        self.last.into_inner()
    }
}

impl rules::Store for FleetStore<'_> {
    type Lease = FleetLease;
    type Error = StoreError;

    fn holding(&self, key: &Key) -> Result<Holding, StoreError> {
        let snapshot = self.fleet.borrow_mut().read(key)?;
        let holding = holding_of(&snapshot, self.max_value);
        *self.last.borrow_mut() = Some(snapshot);
        Ok(holding)
    }

    fn try_lease(&self, key: &Key) -> Result<Option<FleetLease>, StoreError> {
        self.fleet.borrow_mut().try_lease(key, self.lease)
    }

    fn give_back(&self, lease: FleetLease) {
        let _ = self.fleet.borrow_mut().release(lease);
    }
}

impl rules::Lease for FleetLease {
    fn key(&self) -> &Key {
        FleetLease::key(self)
    }
}

/// What `snapshot` holds, as the rules see it. A value whose header does not
/// hold together, or larger than `max_value` (`--store-max-value`), counts
/// as no value: this host would not copy it, and its run replaces it.
pub(super) fn holding_of(snapshot: &Snapshot, max_value: u64) -> Holding {
    let meta = snapshot
        .meta
        .as_ref()
        .filter(|meta| snapshot.invalid.is_none() && meta.value_len() <= max_value);
    let failure = snapshot.failure.as_ref();
    Holding {
        value: meta.map(preamble_of),
        value_version: meta.map(|meta| meta.generation),
        failure: failure.map(|failure| FailureMark {
            finished_ms: failure.finished_ms,
            failures: failure.failures,
        }),
        failure_version: failure.map(|failure| failure.stamp_ms),
    }
}
