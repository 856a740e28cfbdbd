//! The fleet store's settings: what `--store` and its options say, with the
//! environment filling the gaps, resolved only on the paths that use the
//! store (a fresh hit never does).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::StoreArgs;
use crate::store::redis::StoreUrl;
use crate::store::transfer;
use crate::units::{parse_duration, parse_size};

/// The store's address when `--store` is not given.
pub use crate::store::redis::url::ENV_STORE;

/// Default of `--store-timeout`.
pub const ENV_TIMEOUT: &str = "CACHEBACK_STORE_TIMEOUT";

/// Default of `--store-ca-file`.
pub const ENV_CA_FILE: &str = "CACHEBACK_STORE_CA_FILE";

/// Default of `--store-max-value`.
pub const ENV_MAX_VALUE: &str = "CACHEBACK_STORE_MAX_VALUE";

/// Default of `--store-prefix`.
pub const ENV_PREFIX: &str = "CACHEBACK_STORE_PREFIX";

/// Length of the fleet lease (renewed every third of it while a run goes on).
pub const ENV_LEASE: &str = "CACHEBACK_STORE_LEASE";

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "cacheback";

/// Default lease length: a holder that dies frees the entry this long after.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// Shortest life of a fleet key after its last write (longer for TTLs over
/// half of it): an abandoned cache empties itself.
pub const MIN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Shortest wait for a reply once the store has answered once: a value's
/// chunks take longer than the first round trip, which the connect timeout bounds.
pub const MIN_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// The fleet store's options as given on the command line; the environment
/// fills the gaps when [`FleetSettings::resolve`] is called, which only the
/// paths that use the store do (a fresh hit never does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetSettings {
    url: Option<String>,
    timeout: Option<Duration>,
    ca_file: Option<PathBuf>,
    max_value: Option<u64>,
    prefix: Option<String>,
}

impl From<StoreArgs> for FleetSettings {
    fn from(args: StoreArgs) -> FleetSettings {
        FleetSettings {
            url: args.store,
            timeout: args.store_timeout,
            ca_file: args.store_ca_file,
            max_value: args.store_max_value,
            prefix: args.store_prefix,
        }
    }
}

/// The fleet store, resolved and checked.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Where it is (the password inside is never printed).
    pub url: StoreUrl,
    /// How long to wait for it to accept a connection and answer once.
    pub connect_timeout: Duration,
    /// Largest value shared; larger ones stay local.
    pub max_value: u64,
    /// Prefix of its keys.
    pub prefix: String,
    /// Length of the refresh lease.
    pub lease: Duration,
}

impl FleetConfig {
    /// How long a reply may take once the store has answered once: longer
    /// than the connect timeout, which bounds only the first round trip.
    pub fn reply_timeout(&self) -> Duration {
        MIN_REPLY_TIMEOUT.max(self.connect_timeout * 10)
    }
}

impl FleetSettings {
    /// The store to use: `Ok(None)` when none is configured (no `--store`,
    /// `CACHEBACK_STORE` unset or empty); `Err` is a one-line reason.
    pub fn resolve(&self) -> Result<Option<FleetConfig>, String> {
        let Some(text) = self.url.clone().or_else(|| env(ENV_STORE)) else {
            return Ok(None);
        };
        if text.is_empty() {
            return Ok(None);
        }
        let password = env(crate::store::redis::url::ENV_PASSWORD);
        let mut url = StoreUrl::parse(&text, password)?;
        url.ca_file = self
            .ca_file
            .clone()
            .or_else(|| env(ENV_CA_FILE).map(PathBuf::from));
        let connect_timeout = match self.timeout {
            Some(timeout) => timeout,
            None => from_env(ENV_TIMEOUT, crate::units::parse_timeout)?
                .unwrap_or(crate::store::redis::DEFAULT_CONNECT_TIMEOUT),
        };
        let max_value = match self.max_value {
            Some(limit) => limit,
            None => {
                from_env(ENV_MAX_VALUE, parse_size)?.unwrap_or(transfer::DEFAULT_FLEET_MAX_VALUE)
            }
        };
        let prefix = self
            .prefix
            .clone()
            .or_else(|| env(ENV_PREFIX))
            .unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        // Glob characters would make the SCAN that lists entries miss them.
        if prefix.is_empty() || prefix.contains(['{', '}', '*', '?', '[', ']', '\\', '^', ' ']) {
            return Err(format!(
                "store prefix {prefix:?}: use letters, digits and punctuation other than \
                 {{}}*?[]\\^ and spaces"
            ));
        }
        let lease = from_env(ENV_LEASE, parse_duration)?
            .filter(|lease| !lease.is_zero())
            .unwrap_or(DEFAULT_LEASE);
        Ok(Some(FleetConfig {
            url,
            connect_timeout,
            max_value,
            prefix,
            lease,
        }))
    }
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(|value: OsString| value.to_string_lossy().into_owned())
}

fn from_env<T>(name: &str, parse: fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    env(name)
        .map(|text| parse(&text).map_err(|err| format!("{name}: {err}")))
        .transpose()
}

/// How long a fleet key lives after its last write, for values kept `ttl`.
pub(super) fn expiry(ttl: Duration) -> Duration {
    MIN_EXPIRY.max(ttl.saturating_mul(2))
}
