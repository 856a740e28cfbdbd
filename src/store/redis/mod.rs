//! The fleet tier's transport: a small synchronous client of the Redis
//! protocol (Redis, Valkey, or any server speaking it).
//!
//! First part of the shared fleet cache (issue 12): addresses, the wire
//! protocol and a connection with bounded waits. The fleet store built on it
//! (leases, chunked values, two tiers) is still to come; nothing on the local
//! hit path refers to this module, so it costs a cache hit nothing.

pub mod conn;
pub mod resp;
pub mod url;

pub use conn::{Connection, DEFAULT_CONNECT_TIMEOUT, StoreError};
pub use resp::Value;
pub use url::{StoreUrl, Transport};
