//! Reaching the fleet store: a caller that finds it down goes on with the
//! local cache alone, says so once, and leaves a marker that spares the
//! next callers the wait for a while ([`health`]); a management command
//! asked about the store reports it as an error instead.

use std::time::Duration;

use super::settings::{FleetConfig, FleetSettings, MIN_EXPIRY, expiry};
use crate::output;
use crate::store::FsStore;
use crate::store::redis::{Connection, Fleet, StoreError, health};
use crate::units::format_duration_brief;

/// An open fleet tier and its settings.
pub struct Connected {
    /// The tier.
    pub fleet: Fleet,
    /// Its settings.
    pub config: FleetConfig,
}

/// Connects to the fleet store for entries kept `ttl`. `None` means "the
/// local cache alone": no store is configured, it is misconfigured (said on
/// stderr), or it is down (said once per [`health::DOWN_FOR`]).
pub fn connect(settings: &FleetSettings, store: &FsStore, ttl: Duration) -> Option<Connected> {
    let config = match settings.resolve() {
        Ok(config) => config?,
        Err(message) => {
            output::warn(format_args!("not using the fleet store: {message}"));
            return None;
        }
    };
    match health::connect(store.dir(), &config.url, config.connect_timeout)? {
        Ok(conn) => Some(Connected {
            fleet: Fleet::new(conn, &config.prefix, expiry(ttl)),
            config,
        }),
        Err(err) => {
            warn_down(&err);
            None
        }
    }
}

/// Notes that the store stopped answering after it accepted the connection
/// (a paused server does), warning if this caller is the first to notice.
pub(super) fn went_down(store: &FsStore, config: &FleetConfig, err: &StoreError) {
    if health::note_down(store.dir(), &config.url).unwrap_or(true) {
        warn_down(err);
    }
}

fn warn_down(err: &StoreError) {
    output::warn(format_args!(
        "fleet store unavailable, using the local cache alone for the next {}: {err}",
        format_duration_brief(health::DOWN_FOR)
    ));
}

/// Connects for a management command: `Ok(None)` without a store; a store
/// that does not answer is an error (the command was asked about it).
pub fn connect_for_management(settings: &FleetSettings) -> crate::error::Result<Option<Connected>> {
    let config = match settings.resolve() {
        Ok(config) => config,
        Err(message) => return Err(crate::error::Error::Usage(message)),
    };
    let Some(config) = config else {
        return Ok(None);
    };
    let conn = Connection::open(&config.url, config.connect_timeout, config.reply_timeout())
        .map_err(|err| store_error(&err))?;
    Ok(Some(Connected {
        fleet: Fleet::new(conn, &config.prefix, MIN_EXPIRY),
        config,
    }))
}

/// [`connect_for_management`] for a command that does its local part
/// whatever the store's state: a store that cannot be reached comes back as
/// the error to report once the local part is done (status 125); a
/// misconfigured one is still a usage error at once.
pub fn connect_beside_local(
    settings: &FleetSettings,
) -> crate::error::Result<(Option<Connected>, Option<crate::error::Error>)> {
    match connect_for_management(settings) {
        Ok(connected) => Ok((connected, None)),
        Err(err @ crate::error::Error::Usage(_)) => Err(err),
        Err(err) => Ok((None, Some(err))),
    }
}

/// A fleet store error as cacheback's error (status 125).
pub fn store_error(err: &StoreError) -> crate::error::Error {
    crate::error::Error::io("the fleet store", std::io::Error::other(err.to_string()))
}
