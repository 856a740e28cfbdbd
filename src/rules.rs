//! The rules of refreshing, in one place: who of many callers runs the
//! command, whether a run landed while a caller looked, when failures call
//! for patience and how long it lasts. They are written against the
//! [`Store`] trait, which the file store, the fleet tier
//! (`two_tier::fleet_store`) and the tests' in-memory store implement, so
//! both tiers obey the same code: [`start_refresh`] for a value that went
//! stale, [`claim_miss`] for a caller with nothing to serve.
//!
//! What a stored value's header means by itself (fresh, stale, usable under
//! `--max-age`, failed since) is written here too, as methods of
//! [`Preamble`] (the file format only says what a header holds); the
//! fleet's headers are judged by the same methods (see
//! `two_tier::preamble_of`).

use std::time::Duration;

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

/// What a store holds of one entry, read at once: everything the rules look
/// at. Both tiers give it: the file store from its files, the fleet from one
/// round trip (its times carried over to this host's clock).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holding {
    /// The stored value's header, if there is one this host would use (a
    /// fleet value that is damaged or over `--store-max-value` counts as none).
    pub value: Option<Preamble>,
    /// Tells one stored value from the next: every commit (or publish) makes
    /// a new one. Compared, never ordered.
    pub value_version: Option<u64>,
    /// The last failed run.
    pub failure: Option<FailureMark>,
    /// Tells one failure record from the next, whatever the clocks did.
    pub failure_version: Option<u64>,
}

impl Holding {
    /// True while the last failures call for waiting before the next try
    /// ([`backing_off`], with the value's time). A value flagged as failed
    /// since it was stored has no success after the failure, whatever the
    /// two times say (see [`Preamble::failed_since`]).
    pub fn backing_off(&self, ttl: Duration, now_ms: u64) -> bool {
        let value_finished = self
            .value
            .filter(|value| !value.failed_since_stored())
            .map(|value| value.finished_ms);
        backing_off(self.failure, value_finished, ttl, now_ms)
    }

    /// Whether a value other than the one a caller saw (`seen`: its
    /// version, `None` when it saw none) is stored now: another caller's
    /// run ended in between.
    pub fn value_stored_since(&self, seen: Option<u64>) -> bool {
        self.value.is_some() && self.value_version != seen
    }

    /// Whether a failure record other than the one a caller saw (`seen`)
    /// is stored now: a run that a waiting caller shares ended, and failed.
    pub fn failure_stored_since(&self, seen: Option<u64>) -> bool {
        self.failure_version.is_some() && self.failure_version != seen
    }
}

/// What the rules need of a store: what it holds of an entry, and its lease.
/// The file store implements it, and so does the fleet (`two_tier::fleet_store`).
pub trait Store {
    /// The right to write one entry: only the store makes one.
    type Lease: Lease;
    /// Why the store could not answer.
    type Error;
    /// What the store holds of `key` now.
    fn holding(&self, key: &Key) -> Result<Holding, Self::Error>;
    /// Takes the lease of `key` if nobody holds it.
    fn try_lease(&self, key: &Key) -> Result<Option<Self::Lease>, Self::Error>;
    /// Gives an unused lease back at once, so other callers need not wait
    /// for it to expire (best effort: a store that failed lets it expire).
    fn give_back(&self, lease: Self::Lease);
}

/// A held lease: it names its key, so what is written under it can only be
/// that key's.
pub trait Lease {
    /// The entry it is for.
    fn key(&self) -> &Key;
}

/// Takes the lease of `key` and reads what the store holds under it: what
/// landed before the lease can be seen, and nothing lands after it. `None`
/// when another caller holds the lease. A lease taken just before the store
/// failed is given back, not left to expire.
fn lease_and_look<S: Store>(store: &S, key: &Key) -> Result<Option<(S::Lease, Holding)>, S::Error> {
    let Some(lease) = store.try_lease(key)? else {
        return Ok(None);
    };
    match store.holding(key) {
        Ok(now) => Ok(Some((lease, now))),
        Err(err) => {
            store.give_back(lease);
            Err(err)
        }
    }
}

/// What [`start_refresh`] decided. Every variant but `InFlight` holds the
/// lease, which the caller keeps (to count its call), gives back, or hands
/// to the refresher.
#[derive(Debug)]
pub enum Start<L> {
    /// Another caller holds the lease: its run will serve everyone.
    InFlight,
    /// A refresh landed between the caller's read and its lease: nothing to do.
    Landed(L),
    /// The last runs failed and their back-off is not over: keep serving.
    /// (`warm` and `invalidate --refresh` run all the same.)
    BackingOff(L),
    /// Refresh now, under this lease.
    Refresh(L),
}

/// Whether a caller that saw the value of version `seen` (`None`: it saw
/// none) starts a refresh of `key`: one caller of any number takes the
/// lease, and it refreshes unless a refresh landed since it looked or
/// failures call for patience. Both tiers decide with it.
///
/// `clock` is read once the lease is taken: a run that failed while the
/// caller waited for it ended after the caller looked, and judged by the
/// time the caller looked it would be a failure "from the future", whose
/// back-off counts as over; every caller that looked before it landed
/// would then run the failing command again.
pub fn start_refresh<S: Store>(
    store: &S,
    key: &Key,
    seen: Option<u64>,
    ttl: Duration,
    clock: impl FnOnce() -> u64,
) -> Result<Start<S::Lease>, S::Error> {
    let Some((lease, now)) = lease_and_look(store, key)? else {
        return Ok(Start::InFlight);
    };
    // A value marked stale everywhere (`invalidate --refresh`) since the
    // caller looked still needs its run.
    if now.value_stored_since(seen) && now.value.is_some_and(|value| !value.forced_stale()) {
        return Ok(Start::Landed(lease));
    }
    if now.backing_off(ttl, clock()) {
        return Ok(Start::BackingOff(lease));
    }
    Ok(Start::Refresh(lease))
}

/// What [`claim_miss`] decided. Every variant but `InFlight` holds the lease.
#[derive(Debug)]
pub enum Claim<L> {
    /// Another caller holds the lease: its run serves this caller too.
    InFlight,
    /// A value landed since the caller looked: serve it.
    Landed(L),
    /// A run ended since the caller looked, and failed: its failure is the
    /// caller's result, as if it had run the command itself.
    Failed(L),
    /// Run the command under this lease.
    Run(L),
}

/// Whether a caller with no value to serve, having seen `seen`, runs the
/// command: it takes the lease unless another caller holds it, and with the
/// lease, a run that ended since it looked (a value or a failure) answers
/// it instead. A miss never backs off: it has nothing else to give.
pub fn claim_miss<S: Store>(
    store: &S,
    key: &Key,
    seen: &Holding,
) -> Result<Claim<S::Lease>, S::Error> {
    let Some((lease, now)) = lease_and_look(store, key)? else {
        return Ok(Claim::InFlight);
    };
    if now.value_stored_since(seen.value_version) {
        return Ok(Claim::Landed(lease));
    }
    if now.failure_stored_since(seen.failure_version) {
        return Ok(Claim::Failed(lease));
    }
    Ok(Claim::Run(lease))
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
    }

    impl MemoryLease {
        fn is_current(&self) -> bool {
            self.leased.borrow().contains(&self.key)
        }
    }

    impl Drop for MemoryLease {
        fn drop(&mut self) {
            self.leased.borrow_mut().remove(&self.key);
        }
    }

    impl MemoryStore {
        fn value(&self, key: &Key) -> Option<Preamble> {
            self.values.borrow().get(key).copied()
        }
        fn failure(&self, key: &Key) -> Option<Preamble> {
            self.failures.borrow().get(key).copied()
        }
    }

    impl Store for MemoryStore {
        type Lease = MemoryLease;
        type Error = std::convert::Infallible;
        fn holding(&self, key: &Key) -> Result<Holding, Self::Error> {
            let (value, failure) = (self.value(key), self.failure(key));
            Ok(Holding {
                value,
                value_version: value.map(|value| value.finished_ms),
                failure: failure.map(|failure| FailureMark {
                    finished_ms: failure.finished_ms,
                    failures: failure.failures,
                }),
                failure_version: failure.map(|failure| failure.finished_ms),
            })
        }
        fn give_back(&self, lease: MemoryLease) {
            drop(lease);
        }
        fn try_lease(&self, key: &Key) -> Result<Option<MemoryLease>, Self::Error> {
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
    fn a_header_is_usable_below_max_age_and_failed_since_after_the_value() {
        let value = header(10_000, 0);
        // `--max-age` 5 s: usable up to, not at, five seconds of age.
        assert!(value.is_usable(14_999, Some(5_000)));
        assert!(!value.is_usable(15_000, Some(5_000)));
        assert!(value.is_usable(15_000, None));
        // Without the entry's flag, the times decide: a failure counts
        // against the value only when it came later.
        assert!(header(10_001, 1).failed_since(Some(&value)));
        assert!(!header(10_000, 1).failed_since(Some(&value)));
        assert!(!header(9_999, 1).failed_since(Some(&value)));
        assert!(header(9_999, 1).failed_since(None));
    }

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
        let first = start_refresh(&store, &key(1), None, TTL, || 0).unwrap();
        assert!(matches!(first, Start::Refresh(_)));
        let second = start_refresh(&store, &key(1), None, TTL, || 0).unwrap();
        assert!(matches!(second, Start::InFlight));
        // Another key is not held up.
        assert!(matches!(
            start_refresh(&store, &key(2), None, TTL, || 0).unwrap(),
            Start::Refresh(_)
        ));
        drop(first);
        assert!(matches!(
            start_refresh(&store, &key(1), None, TTL, || 0).unwrap(),
            Start::Refresh(_)
        ));
    }

    #[test]
    fn a_refresh_that_landed_is_not_repeated_unless_marked_stale() {
        let store = MemoryStore::default();
        let seen = header(1_000, 0);
        store.values.borrow_mut().insert(key(1), header(2_000, 0));
        let landed = start_refresh(&store, &key(1), Some(seen.finished_ms), TTL, || 3_000).unwrap();
        assert!(matches!(landed, Start::Landed(_)));
        drop(landed);
        let mut marked = header(2_000, 0);
        marked.flags = FLAG_FORCED_STALE;
        store.values.borrow_mut().insert(key(1), marked);
        let again = start_refresh(&store, &key(1), Some(seen.finished_ms), TTL, || 3_000).unwrap();
        assert!(matches!(again, Start::Refresh(_)));
    }

    #[test]
    fn failures_back_off_until_their_time_or_a_success() {
        let store = MemoryStore::default();
        store.values.borrow_mut().insert(key(1), header(1_000, 0));
        store.failures.borrow_mut().insert(key(1), header(5_000, 2)); // waits 20 s
        let seen = header(1_000, 0);
        let at = |now| start_refresh(&store, &key(1), Some(seen.finished_ms), TTL, || now).unwrap();
        assert!(matches!(at(5_000 + 19_999), Start::BackingOff(_)));
        assert!(matches!(at(5_000 + 20_000), Start::Refresh(_)));
        // From the future: its wait is unknown, and counts as over.
        assert!(matches!(at(4_000), Start::Refresh(_)));
        // A success after the failure ends the back-off.
        store.values.borrow_mut().insert(key(1), header(6_000, 0));
        let seen = header(6_000, 0);
        let after = start_refresh(&store, &key(1), Some(seen.finished_ms), TTL, || 7_000).unwrap();
        assert!(matches!(after, Start::Refresh(_)));
    }

    #[test]
    fn a_failure_that_landed_while_the_caller_took_the_lease_backs_it_off() {
        let store = MemoryStore::default();
        store.values.borrow_mut().insert(key(1), header(1_000, 0));
        // The caller looked at 4 s; the run it waited for failed at 5 s.
        store.failures.borrow_mut().insert(key(1), header(5_000, 1));
        let decided = start_refresh(&store, &key(1), Some(1_000), TTL, || 5_001).unwrap();
        assert!(matches!(decided, Start::BackingOff(_)));
    }

    #[test]
    fn a_value_that_landed_where_the_caller_saw_none_counts() {
        let store = MemoryStore::default();
        store.values.borrow_mut().insert(key(1), header(2_000, 0));
        let landed = start_refresh(&store, &key(1), None, TTL, || 3_000).unwrap();
        assert!(matches!(landed, Start::Landed(_)));
    }

    #[test]
    fn a_miss_is_answered_by_a_run_that_ended_since_it_looked() {
        let store = MemoryStore::default();
        let seen = store.holding(&key(1)).unwrap();
        assert!(matches!(
            claim_miss(&store, &key(1), &seen).unwrap(),
            Claim::Run(_)
        ));
        // A failure landed: it is the caller's result.
        store.failures.borrow_mut().insert(key(1), header(1_000, 1));
        let failed = claim_miss(&store, &key(1), &seen).unwrap();
        assert!(matches!(failed, Claim::Failed(_)));
        // Held: the caller waits for the holder's run.
        assert!(matches!(
            claim_miss(&store, &key(1), &seen).unwrap(),
            Claim::InFlight
        ));
        drop(failed);
        // The same failure seen before the lease is old news: run.
        let seen = store.holding(&key(1)).unwrap();
        assert!(matches!(
            claim_miss(&store, &key(1), &seen).unwrap(),
            Claim::Run(_)
        ));
        // A value landed: serve it, even with a failure before it.
        store.values.borrow_mut().insert(key(1), header(2_000, 0));
        assert!(matches!(
            claim_miss(&store, &key(1), &seen).unwrap(),
            Claim::Landed(_)
        ));
        // Even one marked stale everywhere: better than nothing, and its
        // refresh is the stale value's business.
        let mut marked = header(2_000, 0);
        marked.flags = FLAG_FORCED_STALE;
        store.values.borrow_mut().insert(key(1), marked);
        assert!(matches!(
            claim_miss(&store, &key(1), &seen).unwrap(),
            Claim::Landed(_)
        ));
    }

    /// A store whose reads fail, and whose leases, like the fleet's, are
    /// only given back when the store is told to (dropping one keeps it).
    #[derive(Default)]
    struct FailingReads {
        leased: RefCell<HashSet<Key>>,
    }

    struct KeptLease(Key);

    impl Lease for KeptLease {
        fn key(&self) -> &Key {
            &self.0
        }
    }

    impl Store for FailingReads {
        type Lease = KeptLease;
        type Error = &'static str;
        fn holding(&self, _: &Key) -> Result<Holding, &'static str> {
            Err("the store went away")
        }
        fn try_lease(&self, key: &Key) -> Result<Option<KeptLease>, &'static str> {
            Ok(self
                .leased
                .borrow_mut()
                .insert(*key)
                .then_some(KeptLease(*key)))
        }
        fn give_back(&self, lease: KeptLease) {
            self.leased.borrow_mut().remove(lease.key());
        }
    }

    #[test]
    fn a_lease_taken_before_the_store_failed_is_given_back() {
        let store = FailingReads::default();
        assert!(start_refresh(&store, &key(1), None, TTL, || 0).is_err());
        assert!(
            store.leased.borrow().is_empty(),
            "start_refresh kept a lease"
        );
        assert!(claim_miss(&store, &key(1), &Holding::default()).is_err());
        assert!(store.leased.borrow().is_empty(), "claim_miss kept a lease");
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
                    match start_refresh(
                        &store,
                        &which,
                        seen.map(|seen| seen.finished_ms),
                        TTL,
                        || now,
                    )
                    .unwrap()
                    {
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
