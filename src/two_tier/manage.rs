//! The fleet tier as the management commands (`stats`, `show`,
//! `invalidate`, `gc`) see it: its entries, listed, selected and described
//! in the words used for local entries.

use super::connect::store_error;
use super::read::preamble_of;
use crate::key::Key;
use crate::options::EntryName;
use crate::store::FsStore;
use crate::store::entry;
use crate::store::redis::{Fleet, FleetMeta, StoreError};

/// One entry of the fleet tier, as the management commands show it.
#[derive(Debug, Clone)]
pub struct FleetEntry {
    /// Its key.
    pub key: Key,
    /// Its header.
    pub meta: FleetMeta,
    /// Its details (label, command line, TTL), when they decode.
    pub details: Option<entry::Details>,
    /// Its last failed run, if one is recorded.
    pub failure: Option<crate::store::redis::FleetFailure>,
    /// Its fleet-wide counters (`runs`, `fills`, `failures`).
    pub counts: Vec<(String, u64)>,
    /// Some host holds its refresh lease now.
    pub refreshing: bool,
}

impl FleetEntry {
    /// The entry a snapshot describes, if it has a value.
    pub fn from_snapshot(snapshot: crate::store::redis::Snapshot) -> Option<FleetEntry> {
        let meta = snapshot.meta?;
        Some(FleetEntry {
            key: snapshot.key,
            details: entry::Details::decode(&meta.details, entry::FORMAT_VERSION).ok(),
            failure: snapshot.failure,
            counts: snapshot.counts,
            refreshing: snapshot.lease_held,
            meta,
        })
    }

    /// Whether `stats FILTER` lists it: its label or its command line
    /// contains the text, as for local entries.
    pub fn matches(&self, filter: &str) -> bool {
        self.details.as_ref().is_some_and(|details| {
            details
                .name
                .as_deref()
                .is_some_and(|name| name.contains(filter))
                || details.inputs.command_line().contains(filter)
        })
    }

    /// The label, else the command line, escaped for a terminal.
    pub fn title(&self) -> String {
        match &self.details {
            Some(details) => match &details.name {
                Some(name) => crate::display::escape(name).into_owned(),
                None => details.inputs.command_line(),
            },
            None => format!("(key {})", &self.key.to_hex()[..12]),
        }
    }

    /// A counter's value (0 when never counted).
    pub fn count(&self, name: &str) -> u64 {
        self.counts
            .iter()
            .find(|(counter, _)| counter == name)
            .map_or(0, |(_, value)| *value)
    }

    /// Its state at `now_ms`, in the words `stats` uses for local entries.
    pub fn state(&self, now_ms: u64) -> &'static str {
        let preamble = preamble_of(&self.meta);
        let ttl_ms = self.details.as_ref().map_or(0, |details| details.ttl_ms);
        if self
            .failure
            .as_ref()
            .is_some_and(|failure| failure.finished_ms > self.meta.finished_ms)
        {
            "failing"
        } else if self.refreshing {
            "refreshing"
        } else if preamble.is_stale(now_ms, ttl_ms) {
            "stale"
        } else {
            "fresh"
        }
    }
}

/// One entry of the fleet tier, if it has a value.
pub fn entry(fleet: &mut Fleet, key: &Key) -> Result<Option<FleetEntry>, StoreError> {
    Ok(fleet
        .snapshots(std::slice::from_ref(key))?
        .into_iter()
        .find_map(FleetEntry::from_snapshot))
}

/// Every entry of the fleet tier with a value (listed with SCAN, read in
/// batches of one round trip).
pub fn entries(fleet: &mut Fleet) -> Result<Vec<FleetEntry>, StoreError> {
    let keys = fleet.keys()?;
    Ok(fleet
        .snapshots(&keys)?
        .into_iter()
        .filter_map(FleetEntry::from_snapshot)
        .collect())
}

/// The fleet entries an entry selector names: by label, every fleet entry
/// with it; by command, the key `run` would use here (with or without
/// `--cache-failures`).
pub fn select(
    fleet: &mut Fleet,
    store: &FsStore,
    selector: &EntryName,
) -> crate::error::Result<Vec<FleetEntry>> {
    let fail = |err: StoreError| store_error(&err);
    if let Some(name) = &selector.name {
        let mut found = entries(fleet).map_err(fail)?;
        found.retain(|entry| {
            entry
                .details
                .as_ref()
                .is_some_and(|details| details.name.as_deref() == Some(name.as_str()))
        });
        // The newest first, as `show` shows the first.
        found.sort_by_key(|entry| std::cmp::Reverse(entry.meta.finished_ms));
        return Ok(found);
    }
    let mut inputs = crate::inspect::inputs_of(store, &selector.command, &selector.key)?;
    let mut found = Vec::new();
    for cache_failures in [false, true] {
        inputs.cache_failures = cache_failures;
        found.extend(entry(fleet, &inputs.key()).map_err(fail)?);
    }
    Ok(found)
}
