//! The rules of refreshing, in one place: when a caller starts a refresh,
//! when failures call for patience, how long that patience lasts. They are
//! written against the [`Store`] trait, so the file store and the tests'
//! in-memory store obey the same code, and the fleet tier (whose failure
//! records live in Redis) asks [`backing_off`] too.
//!
//! What a stored value's header means by itself (fresh, stale, usable under
//! `--max-age`, failed since) is written here too, as methods of
//! [`Preamble`] (the file format only says what a header holds); the
//! fleet's headers are judged by the same methods (see
//! `two_tier::preamble_of`).

use std::time::Duration;

use crate::error::Result;
use crate::key::Key;
use crate::store::entry::Preamble;

/// What a stored header means: fresh, stale, usable under `--max-age`,
/// failed since. The file format ([`crate::store::entry`]) says what a
/// header holds; these say what it means, for a local entry and for a
/// fleet value alike (the fleet's headers become [`Preamble`]s on the
/// reader's clock, see `two_tier::read`).
impl Preamble {
    /// For a failure record: true when it came after `entry` (or there is no
    /// entry), so it counts against it. The `failing` state, the back-off and
    /// the consecutive-failure count all rest on this one rule. The entry's
    /// flag ([`FLAG_FAILED_SINCE`](crate::store::entry::FLAG_FAILED_SINCE))
    /// says so whatever the clocks did: an entry dated in the future (a clock
    /// stepped back, a copied cache) must not hide the failures after it.
    pub fn failed_since(&self, entry: Option<&Preamble>) -> bool {
        entry
            .is_none_or(|entry| entry.failed_since_stored() || self.finished_ms > entry.finished_ms)
    }

    /// How old the value is at `now_ms`, or `None` when it finished in the
    /// future: the clock was stepped back, or the cache was restored or copied
    /// from elsewhere. Such an age is unknown, and an unknown age is treated
    /// as too old: stale, and past any `--max-age`. The next refresh stamps
    /// it with the clock as it is now.
    pub fn age_ms(&self, now_ms: u64) -> Option<u64> {
        now_ms.checked_sub(self.finished_ms)
    }

    /// Whether the value is due for a refresh at `now_ms` under `ttl_ms`
    /// (moved later by the value's own jitter).
    pub fn is_stale(&self, now_ms: u64, ttl_ms: u64) -> bool {
        self.forced_stale()
            || self
                .age_ms(now_ms)
                .is_none_or(|age| age >= self.stale_after_ms(ttl_ms))
    }

    /// The age at which this value goes stale under `ttl_ms`: the TTL plus
    /// the jitter drawn when it was stored.
    pub fn stale_after_ms(&self, ttl_ms: u64) -> u64 {
        ttl_ms.saturating_add(u64::from(self.jitter_ms))
    }

    /// Whether the value may be served at all under a hard `--max-age`.
    pub fn is_usable(&self, now_ms: u64, max_age_ms: Option<u64>) -> bool {
        max_age_ms.is_none_or(|limit| self.age_ms(now_ms).is_some_and(|age| age < limit))
    }
}

/// How far apart two reads of one fleet value may put its time: each
/// carries the store's clock over to this host's with its own round trip.
pub const SAME_VALUE_SLACK_MS: u64 = 1000;

/// Whether a value from the other tier (`shared`) should replace the local
/// copy before a refresh: always into an empty cache (anything is better
/// than nothing); otherwise when it is fresh, or a later value than ours by
/// more than [`SAME_VALUE_SLACK_MS`]. A value marked stale everywhere, or
/// from the future, is not worth replacing a copy with just before the run
/// that replaces it again.
pub fn replaces_local(
    shared: &Preamble,
    local: Option<&Preamble>,
    now_ms: u64,
    ttl_ms: u64,
) -> bool {
    let Some(local) = local else {
        return true;
    };
    !shared.forced_stale()
        && (!shared.is_stale(now_ms, ttl_ms)
            || (shared.finished_ms <= now_ms
                && shared.finished_ms > local.finished_ms.saturating_add(SAME_VALUE_SLACK_MS)))
}

/// First back-off step after a failed run; it doubles per consecutive failure, up to the TTL.
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);

/// How long to wait after `failures` consecutive failed runs before trying again.
pub fn backoff(failures: u32, ttl: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    BACKOFF_BASE.saturating_mul(1 << doublings).min(ttl)
}

/// The last failed run, as the back-off needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureMark {
    /// When it finished.
    pub finished_ms: u64,
    /// Failed runs in a row up to it.
    pub failures: u32,
}

/// True while the last failures call for waiting before the next try: a
/// failure after the value (`value_finished_ms`, `None` without one) that is
/// younger than its back-off. A failure "from the future" (the clock was
/// stepped back) has waited an unknown time; holding off until the clock
/// catches up could take years, far past the cap, so its back-off is over.
pub fn backing_off(
    failure: Option<FailureMark>,
    value_finished_ms: Option<u64>,
    ttl: Duration,
    now_ms: u64,
) -> bool {
    let Some(failure) = failure else {
        return false;
    };
    if value_finished_ms.is_some_and(|value| failure.finished_ms <= value) {
        return false; // a success came after the last failure
    }
    let wait = u64::try_from(backoff(failure.failures, ttl).as_millis()).unwrap_or(u64::MAX);
    now_ms
        .checked_sub(failure.finished_ms)
        .is_some_and(|waited| waited < wait)
}

/// What the rules need of a store: the headers of an entry's value and of
/// its last failure, and its lease.
pub trait Store {
    /// The right to write one entry.
    type Lease: Lease;
    /// The header of the stored value of `key`, if there is one.
    fn value(&self, key: &Key) -> Option<Preamble>;
    /// The header of the last failed run of `key`, if one is recorded.
    fn failure(&self, key: &Key) -> Option<Preamble>;
    /// Takes the lease of `key` if nobody holds it.
    fn try_lease(&self, key: &Key) -> Result<Option<Self::Lease>>;
}

/// A held lease: it names its key, and knows whether it still counts.
pub trait Lease {
    /// The entry it is for.
    fn key(&self) -> &Key;
    /// False once the entry was invalidated after the lease was taken: what
    /// it would write must not be kept.
    fn is_current(&self) -> bool;
}

/// What [`start_refresh`] decided. Every variant but `InFlight` holds the
/// lease, which the caller keeps (to count its call) or hands to the refresher.
#[derive(Debug)]
pub enum Start<L> {
    /// Another caller holds the lease: its run will serve everyone.
    InFlight,
    /// A refresh landed between the caller's read and its lease: nothing to do.
    Landed(L),
    /// The last runs failed and their back-off is not over: keep serving.
    BackingOff(L),
    /// Refresh now, under this lease.
    Refresh(L),
}

/// Whether a caller that served `seen` (or nothing, on a `--no-wait` miss)
/// starts a refresh of `key`: one caller of any number takes the lease, and
/// it refreshes unless a refresh just landed or failures call for patience.
pub fn start_refresh<S: Store>(
    store: &S,
    key: &Key,
    seen: Option<&Preamble>,
    ttl: Duration,
    now_ms: u64,
) -> Result<Start<S::Lease>> {
    let Some(lease) = store.try_lease(key)? else {
        return Ok(Start::InFlight);
    };
    let current = store.value(key);
    if let (Some(seen), Some(current)) = (seen, &current)
        && current.finished_ms != seen.finished_ms
        && !current.forced_stale()
    {
        return Ok(Start::Landed(lease));
    }
    let failure = store.failure(key).map(|failure| FailureMark {
        finished_ms: failure.finished_ms,
        failures: failure.failures,
    });
    // A value flagged as failed since it was stored has no success after
    // the failure, whatever the two times say (see `Preamble::failed_since`).
    let value_finished = current
        .as_ref()
        .filter(|current| !current.failed_since_stored())
        .map(|current| current.finished_ms);
    if backing_off(failure, value_finished, ttl, now_ms) {
        return Ok(Start::BackingOff(lease));
    }
    Ok(Start::Refresh(lease))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::{HashMap, HashSet};
    use std::rc::Rc;

    use super::*;
    use crate::store::entry::{FLAG_FORCED_STALE, FORMAT_VERSION, MAGIC};

    /// A store in memory: headers by key, and the set of leased keys.
    #[derive(Default)]
    struct MemoryStore {
        values: RefCell<HashMap<Key, Preamble>>,
        failures: RefCell<HashMap<Key, Preamble>>,
        leased: Rc<RefCell<HashSet<Key>>>,
    }

    struct MemoryLease {
        key: Key,
        leased: Rc<RefCell<HashSet<Key>>>,
    }

    impl Lease for MemoryLease {
        fn key(&self) -> &Key {
            &self.key
        }
        fn is_current(&self) -> bool {
            self.leased.borrow().contains(&self.key)
        }
    }

    impl Drop for MemoryLease {
        fn drop(&mut self) {
            self.leased.borrow_mut().remove(&self.key);
        }
    }

    impl Store for MemoryStore {
        type Lease = MemoryLease;
        fn value(&self, key: &Key) -> Option<Preamble> {
            self.values.borrow().get(key).copied()
        }
        fn failure(&self, key: &Key) -> Option<Preamble> {
            self.failures.borrow().get(key).copied()
        }
        fn try_lease(&self, key: &Key) -> Result<Option<MemoryLease>> {
            Ok(self.leased.borrow_mut().insert(*key).then(|| MemoryLease {
                key: *key,
                leased: Rc::clone(&self.leased),
            }))
        }
    }

    fn header(finished_ms: u64, failures: u32) -> Preamble {
        Preamble {
            magic: MAGIC,
            version: FORMAT_VERSION,
            flags: 0,
            exit_code: i32::from(failures > 0),
            finished_ms,
            duration_ms: 0,
            jitter_ms: 0,
            details_len: 0,
            failures,
            stdout_len: 0,
            stderr_len: 0,
        }
    }

    fn key(n: u8) -> Key {
        Key::from_hex(&format!("{n:02x}").repeat(32)).expect("64 hex digits")
    }

    const TTL: Duration = Duration::from_secs(900);

    #[test]
    fn backoff_doubles_up_to_the_ttl() {
        let ttl = Duration::from_secs(900);
        assert_eq!(backoff(1, ttl), Duration::from_secs(10));
        assert_eq!(backoff(2, ttl), Duration::from_secs(20));
        assert_eq!(backoff(4, ttl), Duration::from_secs(80));
        assert_eq!(backoff(30, ttl), ttl);
        assert_eq!(backoff(1, Duration::from_secs(2)), Duration::from_secs(2));
    }

    #[test]
    fn another_tiers_value_replaces_a_local_copy_when_fresh_or_clearly_later() {
        let ttl = 60_000;
        let now = 1_000_000;
        let local = header(now - 120_000, 0); // stale
        let at = |finished| header(finished, 0);
        assert!(
            replaces_local(&at(now - 500_000), None, now, ttl),
            "empty cache"
        );
        assert!(
            replaces_local(&at(now - 1_000), Some(&local), now, ttl),
            "fresh"
        );
        let same = at(local.finished_ms + SAME_VALUE_SLACK_MS);
        assert!(
            !replaces_local(&same, Some(&local), now, ttl),
            "the same value, read again"
        );
        let later = at(local.finished_ms + SAME_VALUE_SLACK_MS + 1);
        assert!(
            replaces_local(&later, Some(&local), now, ttl),
            "stale, but later"
        );
        assert!(
            !replaces_local(&at(now + 600_000), Some(&local), now, ttl),
            "from the future"
        );
        let mut marked = at(now - 1_000);
        marked.flags = FLAG_FORCED_STALE;
        assert!(
            !replaces_local(&marked, Some(&local), now, ttl),
            "marked stale everywhere"
        );
    }

    #[test]
    fn one_caller_of_many_takes_the_lease() {
        let store = MemoryStore::default();
        let first = start_refresh(&store, &key(1), None, TTL, 0).unwrap();
        assert!(matches!(first, Start::Refresh(_)));
        let second = start_refresh(&store, &key(1), None, TTL, 0).unwrap();
        assert!(matches!(second, Start::InFlight));
        // Another key is not held up.
        assert!(matches!(
            start_refresh(&store, &key(2), None, TTL, 0).unwrap(),
            Start::Refresh(_)
        ));
        drop(first);
        assert!(matches!(
            start_refresh(&store, &key(1), None, TTL, 0).unwrap(),
            Start::Refresh(_)
        ));
    }

    #[test]
    fn a_refresh_that_landed_is_not_repeated_unless_marked_stale() {
        let store = MemoryStore::default();
        let seen = header(1_000, 0);
        store.values.borrow_mut().insert(key(1), header(2_000, 0));
        let landed = start_refresh(&store, &key(1), Some(&seen), TTL, 3_000).unwrap();
        assert!(matches!(landed, Start::Landed(_)));
        drop(landed);
        let mut marked = header(2_000, 0);
        marked.flags = FLAG_FORCED_STALE;
        store.values.borrow_mut().insert(key(1), marked);
        let again = start_refresh(&store, &key(1), Some(&seen), TTL, 3_000).unwrap();
        assert!(matches!(again, Start::Refresh(_)));
    }

    #[test]
    fn failures_back_off_until_their_time_or_a_success() {
        let store = MemoryStore::default();
        store.values.borrow_mut().insert(key(1), header(1_000, 0));
        store.failures.borrow_mut().insert(key(1), header(5_000, 2)); // waits 20 s
        let seen = header(1_000, 0);
        let at = |now| start_refresh(&store, &key(1), Some(&seen), TTL, now).unwrap();
        assert!(matches!(at(5_000 + 19_999), Start::BackingOff(_)));
        assert!(matches!(at(5_000 + 20_000), Start::Refresh(_)));
        // From the future: its wait is unknown, and counts as over.
        assert!(matches!(at(4_000), Start::Refresh(_)));
        // A success after the failure ends the back-off.
        store.values.borrow_mut().insert(key(1), header(6_000, 0));
        let seen = header(6_000, 0);
        let after = start_refresh(&store, &key(1), Some(&seen), TTL, 7_000).unwrap();
        assert!(matches!(after, Start::Refresh(_)));
    }

    /// Random calls, failures, successes and clock moves on a few keys,
    /// checked against a model of the rules written independently: at most
    /// one lease per key, and a refresh starts exactly when the model says.
    /// Replay a failure with `CACHEBACK_RULES_SEED`.
    #[test]
    fn random_sequences_follow_the_model() {
        let seed = std::env::var("CACHEBACK_RULES_SEED")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(crate::clock::now_ms);
        let mut state = seed | 1;
        let mut next = move |limit: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % limit
        };
        let store = MemoryStore::default();
        let mut held: Vec<MemoryLease> = Vec::new();
        let mut now = 1_000_000u64;
        for step in 0..5_000 {
            let which = key(next(3) as u8);
            let context = format!("seed {seed} step {step} (CACHEBACK_RULES_SEED={seed})");
            match next(6) {
                // Whole seconds, often exactly on a back-off's edge.
                0 => now += next(25) * 1_000,
                1 if !held.is_empty() => {
                    let lease = held.remove(next(held.len() as u64) as usize);
                    // The run ends: a success or a failure, at `now`.
                    let key = *lease.key();
                    if next(2) == 0 {
                        store.values.borrow_mut().insert(key, header(now, 0));
                    } else {
                        let value = store.value(&key).map(|value| value.finished_ms);
                        let previous = store.failure(&key).filter(|failure| {
                            value.is_none_or(|value| failure.finished_ms > value)
                        });
                        let failures = previous.map_or(1, |failure| failure.failures + 1);
                        store
                            .failures
                            .borrow_mut()
                            .insert(key, header(now, failures));
                    }
                }
                _ => {
                    let seen = store.value(&which);
                    let leased = store.leased.borrow().contains(&which);
                    let value = seen.map(|value| value.finished_ms);
                    let patient = store.failure(&which).is_some_and(|failure| {
                        value.is_none_or(|value| failure.finished_ms > value)
                            && now >= failure.finished_ms
                            && now - failure.finished_ms
                                < (10_000u64 << (failure.failures - 1).min(20)).min(900_000)
                    });
                    match start_refresh(&store, &which, seen.as_ref(), TTL, now).unwrap() {
                        Start::InFlight => assert!(leased, "{context}: in flight without a lease"),
                        Start::Landed(_) => panic!("{context}: nothing can land in between here"),
                        Start::BackingOff(_) => {
                            assert!(!leased && patient, "{context}: backed off wrongly")
                        }
                        Start::Refresh(lease) => {
                            assert!(!leased && !patient, "{context}: refreshed wrongly");
                            assert!(lease.is_current());
                            held.push(lease);
                        }
                    }
                }
            }
        }
    }
}
