//! The fleet tier's transport: a small synchronous client of the Redis
//! protocol (Redis, Valkey, or any server speaking it).
//!
//! First part of the shared fleet cache (issue 12): addresses, the wire
//! protocol, a connection with bounded waits, and the fleet's data layout
//! with its lease and atomic publish. The two tiers built on it (`--store`,
//! the local copy in front) are still to come; nothing on the local hit path
//! refers to this module, so it costs a cache hit nothing.

pub mod cluster;
pub mod conn;
pub mod fleet;
pub mod health;
pub mod resp;
pub mod tls;
pub mod url;

pub use conn::{Connection, DEFAULT_CONNECT_TIMEOUT, StoreError};
pub use fleet::{Fleet, FleetFailure, FleetLease, FleetMeta, LeaseRenewer, Published, Snapshot};
pub use resp::Value;
pub use url::{StoreUrl, Transport};
