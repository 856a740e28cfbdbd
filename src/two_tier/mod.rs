//! What `run` and the background refresher do with two tiers: the local
//! cache directory (near, per host) and the fleet store (a Redis server the
//! hosts share, `--store`). Top to bottom, a caller:
//!
//! 1. serves a fresh local copy, and nothing here runs (the hit never
//!    touches the fleet code);
//! 2. serves a stale local copy at once; the detached refresher asks the
//!    fleet ([`refresh`]): a later value another host produced is copied in
//!    without running the command; while the fleet's last run failed, every
//!    host backs off; otherwise it takes the fleet lease ([`lease`]), runs the
//!    command and publishes the result; a host that finds the lease taken
//!    waits for that host's result and copies it;
//! 3. on a local miss, asks the fleet first ([`miss`], one round trip) and
//!    copies a usable value; with none, it takes the lease and runs, and the
//!    callers of other hosts wait for that run, as local callers wait on the
//!    lock.
//!
//! A fleet value is judged by the same rules as a local one ([`rules`],
//! [`Preamble`](crate::store::entry::Preamble)'s fresh, stale and usable),
//! its times carried over from the store's clock to this host's
//! ([`read`]); and the fleet is a [`rules::Store`](crate::rules::Store) like
//! the file store (`fleet_store`), so who runs the command, whether a run
//! landed meanwhile and whether to back off are decided for it by the same
//! functions ([`rules::start_refresh`](crate::rules::start_refresh),
//! [`rules::claim_miss`](crate::rules::claim_miss)). A store that does not answer in time, mid-reply included,
//! leaves the caller with the local rules, one warning, and a marker that
//! spares the next callers the wait for a while ([`connect`]).
//!
//! [`rules`]: crate::rules

pub mod connect;
mod fleet_store;
pub mod lease;
pub mod manage;
pub mod miss;
pub mod read;
pub mod refresh;
pub mod settings;

pub use connect::{Connected, connect_beside_local, connect_for_management, store_error};
pub use lease::{FAILURE_TAIL, Leased};
pub use manage::{FleetEntry, entries, entry, select};
pub use miss::{MissOutcome, fill_if_usable, lease_if_free, on_miss};
pub use read::preamble_of;
pub use refresh::{RefreshPlan, before_refresh};
pub use settings::{
    DEFAULT_LEASE, DEFAULT_PREFIX, ENV_CA_FILE, ENV_LEASE, ENV_MAX_VALUE, ENV_PREFIX, ENV_STORE,
    ENV_TIMEOUT, FleetConfig, FleetSettings, MIN_EXPIRY, MIN_REPLY_TIMEOUT,
};
