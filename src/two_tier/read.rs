//! What the miss and the refresh both do with the fleet: read an entry in
//! one round trip, judge its value by the same rules as a local one, copy
//! it in, and wait for another host's run.

use std::time::{Duration, Instant};

use super::connect::went_down;
use super::settings::FleetConfig;
use crate::key::Key;
use crate::output;
use crate::store::FsStore;
use crate::store::entry::{self, Preamble};
use crate::store::lock::EntryLock;
use crate::store::redis::{Fleet, FleetMeta, Snapshot, StoreError};
use crate::store::transfer::{self, FillError};
use crate::units::format_size;

/// The fleet's header as a local preamble, so both tiers are judged by the
/// same rules (fresh, stale, usable).
pub fn preamble_of(meta: &FleetMeta) -> Preamble {
    Preamble {
        magic: entry::MAGIC,
        version: entry::FORMAT_VERSION,
        flags: meta.flags,
        exit_code: meta.exit_code,
        finished_ms: meta.finished_ms,
        duration_ms: u32::try_from(meta.duration_ms).unwrap_or(u32::MAX),
        jitter_ms: meta.jitter_ms,
        details_len: 0,
        failures: 0,
        stdout_len: meta.stdout_len,
        stderr_len: meta.stderr_len,
    }
}

pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Everything the fleet holds about `key`, or `None` when the store failed
/// (it is then marked down). The first read is bounded by the connect
/// timeout; once the store has `answered`, later replies get
/// [`FleetConfig::reply_timeout`].
pub(super) fn read_entry(
    fleet: &mut Fleet,
    config: &FleetConfig,
    store: &FsStore,
    key: &Key,
    answered: &mut bool,
) -> Option<Snapshot> {
    match fleet.read(key) {
        Ok(snapshot) => {
            if !std::mem::replace(answered, true) {
                fleet.set_reply_timeout(config.reply_timeout());
            }
            Some(snapshot)
        }
        Err(err) => {
            went_down(store, config, &err);
            None
        }
    }
}

/// The fleet's value in `snapshot` if this host may copy it: a header that
/// does not hold together, or a value larger than `--store-max-value`,
/// counts as no value (said once, through `warned`), and the run that
/// follows replaces it.
pub(super) fn copyable<'s>(
    snapshot: &'s Snapshot,
    config: &FleetConfig,
    warned: &mut bool,
) -> Option<&'s FleetMeta> {
    if let Some(why) = &snapshot.invalid {
        warn_bad_value(&format!("its header is not valid: {why}"), warned);
        return None;
    }
    let meta = snapshot.meta.as_ref()?;
    if meta.value_len() > config.max_value {
        warn_bad_value(
            &format!(
                "it is larger ({}) than --store-max-value ({})",
                format_size(meta.value_len()),
                format_size(config.max_value)
            ),
            warned,
        );
        return None;
    }
    Some(meta)
}

/// Says once per caller that the fleet's value of an entry was not used.
pub(super) fn warn_bad_value(why: &str, warned: &mut bool) {
    if !std::mem::replace(warned, true) {
        output::warn(format_args!(
            "not using the fleet store's value of this entry ({why}): running the command"
        ));
    }
}

/// Copies the fleet's value into the local entry. `Err(None)`: it could
/// not be used (said once), and the run goes on as if it were missing;
/// `Err(Some(()))`: the store failed mid-copy and is marked down.
pub(super) fn fill(
    store: &FsStore,
    config: &FleetConfig,
    lock: &EntryLock,
    fleet: &mut Fleet,
    meta: &FleetMeta,
    warned: &mut bool,
) -> Result<(), Option<()>> {
    match transfer::fill_local(store, lock, fleet, meta) {
        Ok(_) => Ok(()),
        Err(FillError::Store(err)) => {
            went_down(store, config, &err);
            Err(Some(()))
        }
        Err(FillError::BadValue(why)) => {
            warn_bad_value(&why, warned);
            Err(None)
        }
        Err(FillError::Local(_)) => Err(None),
    }
}

/// How waiting for another host's run ended.
pub(super) enum Waited {
    /// It published a value.
    Value,
    /// It failed.
    Failed {
        exit_code: i32,
        stderr_tail: Vec<u8>,
    },
    /// Its lease ended with neither (it died, or lost the lease).
    Gone,
    /// The store stopped answering.
    Broken(StoreError),
    /// The deadline passed with the holder still running.
    TimedOut,
}

/// Polls until the value's generation moves on from `generation`, or the
/// lease is gone; a failure record other than `seen_failure` then tells of
/// a failed run. As long as the holder lives (it renews its lease), so does
/// the wait, up to `deadline`. A lease that would outlive cacheback's own
/// lease length (one stored without an expiry) is cut to it, so a lease
/// nobody renews ends.
pub(super) fn wait_for_holder(
    fleet: &mut Fleet,
    config: &FleetConfig,
    key: &Key,
    generation: Option<u64>,
    seen_failure: Option<u64>,
    deadline: Option<Instant>,
) -> Waited {
    let mut pause = Duration::from_millis(10);
    loop {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Waited::TimedOut;
        }
        std::thread::sleep(pause);
        pause = (pause * 3 / 2).min(Duration::from_millis(200));
        let snapshot = match fleet.read(key) {
            Ok(snapshot) => snapshot,
            Err(err) => return Waited::Broken(err),
        };
        if snapshot.meta.as_ref().map(|meta| meta.generation) != generation {
            return Waited::Value;
        }
        if snapshot.lease_held {
            match fleet.lease_held(key, config.lease) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(err) => return Waited::Broken(err),
            }
        }
        // The lease is gone: read once more for what its holder left.
        let latest = match fleet.read(key) {
            Ok(latest) => latest,
            Err(err) => return Waited::Broken(err),
        };
        if latest.meta.as_ref().map(|meta| meta.generation) != generation {
            return Waited::Value;
        }
        return match latest
            .failure
            .filter(|failure| Some(failure.stamp_ms) != seen_failure)
        {
            Some(failure) => Waited::Failed {
                exit_code: failure.exit_code,
                stderr_tail: failure.stderr_tail,
            },
            None => Waited::Gone,
        };
    }
}
