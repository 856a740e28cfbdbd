//! What `run` and the background refresher do with the fleet tier.
//!
//! Every host keeps its cache directory as the near tier; a Redis server the
//! hosts share (`--store`) is the fleet tier. A caller never waits on the
//! network while a local copy exists:
//!
//! - a fresh local copy is served, and nothing here runs;
//! - a stale local copy is served at once, and the detached refresher asks
//!   the fleet: a newer value another host produced is copied in without
//!   running the command; otherwise the refresher takes the fleet lease, runs
//!   the command and publishes the result. A host that finds the lease taken
//!   waits for that host's result and copies it;
//! - a local miss asks the fleet first (one round trip) and copies a usable
//!   value; with none, the caller takes the lease and runs, and the callers
//!   of other hosts wait for that run, as local callers wait on the lock.
//!
//! Failures are recorded fleet-wide, so one host's failing refresh backs off
//! every host. A store that does not answer within the connect timeout
//! leaves the caller with the local rules, one warning, and a marker that
//! spares the next callers the wait for a while ([`health`]).

use std::ffi::OsString;
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cli::StoreArgs;
use crate::clock::now_ms;
use crate::key::Key;
use crate::options::{EntryName, RunOptions};
use crate::output;
use crate::rules::{self, FailureMark};
use crate::store::entry::{self, PREAMBLE_LEN, Preamble};
use crate::store::lock::EntryLock;
use crate::store::redis::{
    Connection, Fleet, FleetLease, FleetMeta, LeaseRenewer, Published, Snapshot, StoreError,
    StoreUrl, health,
};
use crate::store::tiers::{self, FillError, Shared};
use crate::store::{FileKind, FsStore};
use crate::units::{format_duration_brief, format_size, parse_duration, parse_size};

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
/// How far apart two reads of one fleet value may put its time: each
/// carries the store's clock over to this host's with its own round trip.
/// A stale fleet value must be newer than the local copy by more than this
/// to be taken for a later one (and copied before the refresh runs).
pub const SAME_VALUE_SLACK_MS: u64 = 1000;
/// Bytes of a failed run's stderr kept fleet-wide, for the callers of other
/// hosts who waited for it.
pub const FAILURE_TAIL: u64 = 4096;

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
            None => from_env(ENV_MAX_VALUE, parse_size)?.unwrap_or(tiers::DEFAULT_FLEET_MAX_VALUE),
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
fn expiry(ttl: Duration) -> Duration {
    MIN_EXPIRY.max(ttl.saturating_mul(2))
}

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
fn went_down(store: &FsStore, config: &FleetConfig, err: &StoreError) {
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

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// What a local miss found in the fleet tier.
pub enum MissOutcome {
    /// No fleet tier to ask (none configured, or down): the local rules alone.
    Local,
    /// The fleet's value is now the local entry; `stale` when it is due for
    /// a refresh.
    Filled {
        /// Due for a refresh.
        stale: bool,
    },
    /// Another host ran the command while this caller waited, and it failed.
    FailedElsewhere {
        /// Its exit status.
        exit_code: i32,
        /// The end of its stderr.
        stderr_tail: Vec<u8>,
    },
    /// Nobody has a value: run the command, then [`Leased::share`] the result.
    Run(Box<Leased>),
}

/// Everything the fleet holds about `key`, or `None` when the store failed
/// (it is then marked down). The first read is bounded by the connect
/// timeout; once the store has `answered`, later replies get
/// [`FleetConfig::reply_timeout`].
fn read_entry(
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
fn copyable<'s>(
    snapshot: &'s Snapshot,
    config: &FleetConfig,
    warned: &mut bool,
) -> Option<&'s FleetMeta> {
    if let Some(why) = &snapshot.invalid {
        warn_bad_value(&format!("its header is not valid: {why}"), warned);
        return None;
    }
    let meta = snapshot.meta.as_ref()?;
    if meta.len() > config.max_value {
        warn_bad_value(
            &format!(
                "it is larger ({}) than --store-max-value ({})",
                format_size(meta.len()),
                format_size(config.max_value)
            ),
            warned,
        );
        return None;
    }
    Some(meta)
}

/// Says once per caller that the fleet's value of an entry was not used.
fn warn_bad_value(why: &str, warned: &mut bool) {
    if !std::mem::replace(warned, true) {
        output::warn(format_args!(
            "not using the fleet store's value of this entry ({why}): running the command"
        ));
    }
}

/// Copies the fleet's value into the local entry. `Err(None)`: it could
/// not be used (said once), and the run goes on as if it were missing;
/// `Err(Some(()))`: the store failed mid-copy and is marked down.
fn fill(
    store: &FsStore,
    config: &FleetConfig,
    lock: &EntryLock,
    fleet: &mut Fleet,
    meta: &FleetMeta,
    warned: &mut bool,
) -> Result<(), Option<()>> {
    match tiers::fill_local(store, lock, fleet, meta) {
        Ok(_) => Ok(()),
        Err(FillError::Store(err)) => {
            went_down(store, &config, &err);
            Err(Some(()))
        }
        Err(FillError::BadValue(why)) => {
            warn_bad_value(&why, warned);
            Err(None)
        }
        Err(FillError::Local(_)) => Err(None),
    }
}

/// A local miss, under the local lock: copies a usable fleet value, or waits
/// for the host running the command, or returns the lease to run it here.
pub fn on_miss(
    settings: &FleetSettings,
    store: &FsStore,
    lock: &EntryLock,
    key: &Key,
    args: &RunOptions,
) -> MissOutcome {
    let Some(Connected { mut fleet, config }) = connect(settings, store, args.ttl()) else {
        return MissOutcome::Local;
    };
    let (mut answered, mut warned) = (false, false);
    // Another host's run is waited for as long as this caller would let its
    // own run go on (`--timeout`), plus the lease that outlives a dead holder.
    let deadline = args
        .timeout
        .map(|limit| Instant::now() + limit + config.lease);
    // Bounded: each turn ends in a copy, a lease or a wait for a holder, and
    // only a holder that vanished without a result brings another turn.
    for _ in 0..8 {
        let Some(snapshot) = read_entry(&mut fleet, &config, store, key, &mut answered) else {
            return MissOutcome::Local;
        };
        let now = now_ms();
        if let Some(meta) = copyable(&snapshot, &config, &mut warned)
            && preamble_of(meta).is_usable(now, args.max_age.map(millis))
        {
            match fill(store, &config, lock, &mut fleet, meta, &mut warned) {
                Ok(()) => {
                    let _ = fleet.count(key, "fills");
                    let stale = store
                        .peek(key, FileKind::Entry)
                        .is_none_or(|local| local.is_stale(now, millis(args.ttl())));
                    return MissOutcome::Filled { stale };
                }
                Err(Some(())) => return MissOutcome::Local,
                Err(None) => {}
            }
        }
        let seen_failure = snapshot.failure.as_ref().map(|failure| failure.stamp_ms);
        let generation = snapshot.meta.as_ref().map(|meta| meta.generation);
        match fleet.try_lease(key, config.lease) {
            Ok(Some(lease)) => {
                // The lease is free also when a host's run ended between
                // our reads and our lease: its result is ours, as if we had
                // waited for it (found by the seeded cluster model test).
                let latest = match fleet.read(key) {
                    Ok(latest) => latest,
                    Err(err) => {
                        let _ = fleet.release(lease);
                        went_down(store, &config, &err);
                        return MissOutcome::Local;
                    }
                };
                if latest.meta.as_ref().map(|meta| meta.generation) != generation {
                    let _ = fleet.release(lease);
                    continue;
                }
                if let Some(failure) = latest
                    .failure
                    .filter(|failure| Some(failure.stamp_ms) != seen_failure)
                {
                    let _ = fleet.release(lease);
                    return MissOutcome::FailedElsewhere {
                        exit_code: failure.exit_code,
                        stderr_tail: failure.stderr_tail,
                    };
                }
                return MissOutcome::Run(Box::new(Leased::new(fleet, config, lease)));
            }
            Ok(None) => {}
            Err(err) => {
                went_down(store, &config, &err);
                return MissOutcome::Local;
            }
        }
        match wait_for_holder(&mut fleet, &config, key, generation, seen_failure, deadline) {
            Waited::Value | Waited::Gone => continue,
            Waited::Failed {
                exit_code,
                stderr_tail,
            } => {
                return MissOutcome::FailedElsewhere {
                    exit_code,
                    stderr_tail,
                };
            }
            Waited::Broken(err) => {
                went_down(store, &config, &err);
                return MissOutcome::Local;
            }
            Waited::TimedOut => {
                output::warn(format_args!(
                    "another host's run of this command is still going after --timeout: \
                     running it here"
                ));
                return MissOutcome::Local;
            }
        }
    }
    MissOutcome::Local
}

/// `--force`: the lease, if nobody holds it, so the result is shared; the
/// command runs either way.
pub fn lease_if_free(
    settings: &FleetSettings,
    store: &FsStore,
    key: &Key,
    ttl: Duration,
) -> Option<Leased> {
    let Connected { mut fleet, config } = connect(settings, store, ttl)?;
    match fleet.try_lease(key, config.lease) {
        Ok(Some(lease)) => Some(Leased::new(fleet, config, lease)),
        Ok(None) => None,
        Err(err) => {
            went_down(store, &config, &err);
            None
        }
    }
}

/// What the refresher does, having asked the fleet.
pub enum RefreshPlan {
    /// No fleet tier to ask: the local rules alone.
    Local,
    /// Nothing to run: the fleet had a fresh value (copied when `stored`),
    /// or it is backing off, or another host's run just ended.
    Done {
        /// A value was copied into the local entry.
        stored: bool,
    },
    /// Run the command under this lease, then [`Leased::share`] the result.
    Run(Box<Leased>),
}

/// The background refresh of a stale entry (or a `--no-wait` miss), under
/// the local lock: copy what another host refreshed, back off while the
/// fleet's last run failed, wait for a host that is running it, or take the
/// lease and run. With `args.force` (`warm`, `invalidate --refresh`) neither
/// a fresh fleet value nor the back-off stops the run.
pub fn before_refresh(
    settings: &FleetSettings,
    store: &FsStore,
    lock: &EntryLock,
    key: &Key,
    args: &RunOptions,
) -> RefreshPlan {
    let Some(Connected { mut fleet, config }) = connect(settings, store, args.ttl()) else {
        return RefreshPlan::Local;
    };
    let ttl_ms = millis(args.ttl());
    let mut stored = false;
    let (mut answered, mut warned) = (false, false);
    let deadline = Some(Instant::now() + crate::produce::background_timeout(args) + config.lease);
    for _ in 0..8 {
        let Some(snapshot) = read_entry(&mut fleet, &config, store, key, &mut answered) else {
            return RefreshPlan::Local;
        };
        let now = now_ms();
        let local = store.peek(key, FileKind::Entry);
        if let Some(meta) = copyable(&snapshot, &config, &mut warned) {
            let shared = preamble_of(meta);
            // Copied when it is fresh, or when it is a later value than ours.
            // A value marked stale fleet-wide, or from the future, is copied
            // only into an empty cache: anything is better than nothing, but
            // not worth replacing a copy with just before the run that
            // replaces it again.
            let newer = match &local {
                None => true,
                Some(local) => {
                    !shared.forced_stale()
                        && (!shared.is_stale(now, ttl_ms)
                            || (shared.finished_ms <= now
                                && shared.finished_ms
                                    > local.finished_ms.saturating_add(SAME_VALUE_SLACK_MS)))
                }
            };
            if newer && shared.is_usable(now, args.max_age.map(millis)) {
                match fill(store, &config, lock, &mut fleet, meta, &mut warned) {
                    Ok(()) => {
                        stored = true;
                        let _ = fleet.count(key, "fills");
                        // `warm` and `invalidate --refresh` (`force`) asked for a run.
                        if !shared.is_stale(now, ttl_ms) && !args.force {
                            return RefreshPlan::Done { stored };
                        }
                    }
                    Err(Some(())) => return RefreshPlan::Local,
                    Err(None) => {}
                }
            }
        }
        let mark = snapshot.failure.as_ref().map(|failure| FailureMark {
            finished_ms: failure.finished_ms,
            failures: failure.failures,
        });
        let value_finished = snapshot.meta.as_ref().map(|meta| meta.finished_ms);
        if !args.force && rules::backing_off(mark, value_finished, args.ttl(), now) {
            return RefreshPlan::Done { stored }; // a host failed lately: every host backs off
        }
        let generation = snapshot.meta.as_ref().map(|meta| meta.generation);
        match fleet.try_lease(key, config.lease) {
            Ok(Some(lease)) => {
                // A host may have published between our read and our lease.
                match fleet.meta(key) {
                    Ok(latest) if latest.as_ref().map(|m| m.generation) == generation => {
                        return RefreshPlan::Run(Box::new(Leased::new(fleet, config, lease)));
                    }
                    Ok(_) => {
                        let _ = fleet.release(lease);
                        continue;
                    }
                    Err(err) => {
                        let _ = fleet.release(lease);
                        went_down(store, &config, &err);
                        return RefreshPlan::Local;
                    }
                }
            }
            Ok(None) => {}
            Err(err) => {
                went_down(store, &config, &err);
                return RefreshPlan::Local;
            }
        }
        let seen_failure = snapshot.failure.as_ref().map(|failure| failure.stamp_ms);
        match wait_for_holder(&mut fleet, &config, key, generation, seen_failure, deadline) {
            Waited::Value | Waited::Gone => continue,
            Waited::Broken(err) => {
                went_down(store, &config, &err);
                return RefreshPlan::Done { stored };
            }
            Waited::Failed { .. } | Waited::TimedOut => return RefreshPlan::Done { stored },
        }
    }
    RefreshPlan::Done { stored }
}

/// How waiting for another host's run ended.
enum Waited {
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
fn wait_for_holder(
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

/// The fleet lease of one entry, kept alive while the command runs.
pub struct Leased {
    fleet: Fleet,
    config: FleetConfig,
    lease: FleetLease,
    keeper: Keeper,
    started_ms: u64,
}

impl Leased {
    fn new(fleet: Fleet, config: FleetConfig, lease: FleetLease) -> Leased {
        let keeper = Keeper::start(&config, lease.renewer());
        Leased {
            fleet,
            config,
            lease,
            keeper,
            started_ms: now_ms(),
        }
    }

    /// After the run: publishes the local entry it stored (or records its
    /// failure fleet-wide) and gives the lease back. `warn`: the caller is
    /// in the foreground, with a stderr to say that a value stays local.
    pub fn share(mut self, store: &FsStore, warn: bool) -> Option<Published> {
        self.keeper.stop();
        // A copy: the lease itself is given back at the end.
        let key = &{ *self.lease.key() };
        let entry = store.peek(key, FileKind::Entry);
        let failure = store.peek(key, FileKind::Failure);
        let fresh_entry = entry
            .as_ref()
            .is_some_and(|entry| entry.finished_ms >= self.started_ms);
        let mut published = None;
        if fresh_entry {
            let _ = self.fleet.count(key, "runs");
            match tiers::publish_local(store, &mut self.fleet, &self.lease, self.config.max_value) {
                Ok(Shared::Fleet(outcome)) => published = Some(outcome),
                Ok(Shared::TooLarge { len }) if warn => output::warn(format_args!(
                    "the output ({}) is larger than --store-max-value ({}): it stays in this \
                     host's cache only",
                    format_size(len),
                    format_size(self.config.max_value)
                )),
                Ok(_) => {}
                Err(err) if warn => output::warn(format_args!("could not share the result: {err}")),
                Err(_) => {}
            }
        } else if let Some(failure) = failure
            && failure.finished_ms >= self.started_ms
        {
            let _ = self.fleet.count(key, "failures");
            let tail = failure_tail(store, key);
            let _ = self.fleet.record_failure(
                &self.lease,
                failure.finished_ms,
                failure.exit_code,
                &tail,
            );
        }
        let _ = self.fleet.release(self.lease);
        published
    }
}

/// The end of the local failure record's stderr.
fn failure_tail(store: &FsStore, key: &Key) -> Vec<u8> {
    let mut head = [MaybeUninit::uninit(); PREAMBLE_LEN];
    match store.open(key, FileKind::Failure, &mut head) {
        Ok(Some(record)) => record.stderr_tail(FAILURE_TAIL).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A thread that renews the lease every third of its length on a connection
/// of its own, until stopped: a long run keeps its lease, and a holder that
/// dies (and its thread with it) frees the entry one lease length later.
struct Keeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Keeper {
    fn start(config: &FleetConfig, renewer: LeaseRenewer) -> Keeper {
        let (stop, stopped) = mpsc::channel::<()>();
        let config = config.clone();
        let thread = std::thread::Builder::new()
            .name("lease".into())
            .spawn(move || {
                let mut fleet: Option<Fleet> = None;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(config.lease / 3) {
                    if fleet.is_none() {
                        fleet = Connection::open(
                            &config.url,
                            config.connect_timeout,
                            MIN_REPLY_TIMEOUT,
                        )
                        .ok()
                        .map(|conn| Fleet::new(conn, &config.prefix, MIN_EXPIRY));
                    }
                    match fleet
                        .as_mut()
                        .map(|fleet| fleet.renew_with(&renewer, config.lease))
                    {
                        Some(Ok(true)) | None => {}
                        // Lost: the publish will be refused; nothing to keep.
                        Some(Ok(false)) => return,
                        Some(Err(_)) => fleet = None, // reconnect next time
                    }
                }
            })
            .ok();
        Keeper {
            stop: Some(stop),
            thread,
        }
    }

    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop();
    }
}

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
