//! Seeded random operation sequences against the real binary, checked against a model.
//!
//! The other tests each check a scenario someone imagined; this one lets a
//! pseudo-random generator combine the operations (misses, hits, stale hits,
//! `--no-wait`, `--force`, `--cache-failures`, `warm`, `invalidate`, `gc`,
//! concurrent callers, callers with a closed standard descriptor, refreshers
//! killed with SIGKILL, finish times moved into the future) and checks, after
//! every step, invariants that hold whatever the timing.
//!
//! Every execution of a fixture command appends `start` and `end` lines to the
//! shared log `$W/log` (appends of one short line are atomic, so the log's
//! order is the real order) and prints a value naming its own run: `v<id>` on
//! success, `f<id>` with exit status 3 on failure, `e<id>` on stderr. A caller's
//! output therefore says exactly which run produced it, and the log says when
//! that run started and ended, under which process and in which mode. Whether
//! a command fails is read from `$W/mode-<key>`, which the sequence rewrites
//! between steps, so one key (one entry) succeeds and fails over time.
//!
//! Exact: a caller's stdout, stderr and status are one whole run's; `--force`
//! prints its own run; no caller runs the command in the foreground, or gets
//! the `--no-wait` placeholder or a failure without `--cache-failures`, while
//! a value is stored; values never go back to an older run or to one from
//! before an invalidation; the two sides of `--cache-failures` never see each
//! other's runs; runs of one entry never overlap (except across an
//! `invalidate` that forgets it, which the README allows); after settling no
//! lock is held, no stored value has vanished, a future-dated entry was
//! refreshed, `invalidate --refresh` ran its refresh, and `stats` counts
//! exactly one hit or miss per `run` call and one stored or failed result per
//! finished run. Lenient: temp files, up to one per `kill -9` (the README's
//! failure table keeps a killed writer's); the counters after an invalidation
//! that raced a running refresh (that refresh folds the events log into its
//! forgotten lock file) and after a kill that came after its run ended (the
//! count dies with the refresher): then they may only be lower, never higher
//! than the calls made, nor fall between two checks.
//!
//! Full disk: one sequence in six (drawn from its seed) puts the cache
//! directory on a 512 KiB tmpfs (root only; elsewhere it runs on a normal
//! directory, after one note) and adds foreground runs (`--force`, or a miss)
//! printing 800 KB, more than fits. Exact: the caller gets the whole output
//! and status 0, the run's stderr plus at most one warning; a stored value
//! stays byte for byte; no temp file is left; `stats` counts such a run, which
//! stored nothing, as a failure. `gc --max-size 1` resets the counters of the
//! keys it removes, not of a key that never stored anything.
//!
//! `CACHEBACK_MODEL_SEED` fixes the master seed, `CACHEBACK_MODEL_SECS` the
//! time budget (default 40) and `CACHEBACK_MODEL_SEQUENCES` the number of
//! sequences (which then replaces the time budget). A failure prints the one
//! command line that replays the failing sequence.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cacheback::store::entry::{FINISHED_OFFSET, Preamble};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::harness::*;

const KEYS: usize = 3;
/// Generous on purpose: CI runs this on a busy 2-core machine next to the other tests.
const SETTLE_LIMIT: Duration = Duration::from_secs(90);
const PLACEHOLDER: &str = "P";

/// Back-off probes that found a failure to probe, and groups of callers
/// whose miss coalescing was checked, over the whole test process: printed,
/// so a run shows that those checks had something to check.
static PROBED: AtomicUsize = AtomicUsize::new(0);
static COALESCING_CHECKED: AtomicUsize = AtomicUsize::new(0);

/// The two counts above, for the summary lines.
fn checks_done() -> String {
    format!(
        "{} back-off probes, {} miss-coalescing checks",
        PROBED.load(Ordering::Relaxed),
        COALESCING_CHECKED.load(Ordering::Relaxed)
    )
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Sequence 0 runs the master seed itself, so a failing sequence's own seed
/// with one sequence replays exactly that sequence.
fn sequence_seed(master: u64, index: u64) -> u64 {
    if index == 0 {
        master
    } else {
        SplitMix(master ^ index.wrapping_mul(0xa076_1d64_78bd_642f)).next()
    }
}

#[test]
fn model_random_sequences_keep_the_invariants() {
    let master = env_u64("CACHEBACK_MODEL_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let count = env_u64("CACHEBACK_MODEL_SEQUENCES");
    let budget = Duration::from_secs(env_u64("CACHEBACK_MODEL_SECS").unwrap_or(40));
    println!("model: master seed {master} (CACHEBACK_MODEL_SEED to repeat)");
    let started = Instant::now();
    let (mut sequences, mut operations) = (0u64, 0usize);
    let (mut small, mut full_ops) = (0usize, 0usize);
    loop {
        match count {
            Some(count) if sequences >= count => break,
            None if sequences > 0 && started.elapsed() >= budget => break,
            _ => {}
        }
        let seed = sequence_seed(master, sequences);
        let (ops, on_small, full) = Sequence::new(seed).run();
        operations += ops;
        small += usize::from(on_small);
        full_ops += full;
        sequences += 1;
    }
    println!(
        "model: {sequences} sequences, {operations} operations in {:.1}s (master seed {master}); {small} sequences on a {SMALL_DISK} tmpfs, {full_ops} full-disk operations; so far {}",
        started.elapsed().as_secs_f64(),
        checks_done()
    );
}

/// The callers of a group as [`Sequence::coalesced`] needs them.
#[allow(clippy::type_complexity)]
fn done_pids(
    done: &[(usize, bool, Flavor, usize, u32, bool, usize, Output)],
) -> Vec<(usize, bool, Flavor, u32)> {
    done.iter()
        .map(|&(key, cf, flavor, _, pid, _, _, _)| (key, cf, flavor, pid))
        .collect()
}

/// Sequence seeds that once broke an invariant (found by the random runs, in
/// CI or locally), with what they found. They run on every test run beside
/// the random sequences, and always in full: a sequence is a fixed number of
/// operations drawn from its seed, so their power does not depend on how
/// busy the machine is (the random test's share does: it runs for a time
/// budget). Add a seed here whenever a random run finds a bug.
const FOUND_BUGS: &[(u64, &str)] = &[
    (
        12_438_244_024_547_907_875,
        "a future-dated entry whose failure record is newer than it: back-off, not a refresh, \
         is the right answer (commit 05aab9a)",
    ),
    (
        10_054_773_603_107_493_663,
        "a back-off probe's second call after entries were backdated twice: the probe shifted \
         the entry from where it was before its first call, which made it fresh",
    ),
];

#[test]
fn model_sequences_that_once_found_bugs_still_pass() {
    let mut operations = 0;
    for &(seed, found) in FOUND_BUGS {
        println!("model: fixed sequence seed {seed} ({found})");
        operations += Sequence::new(seed).run().0;
    }
    println!(
        "model: {} fixed sequences, {operations} operations; so far {}",
        FOUND_BUGS.len(),
        checks_done()
    );
}

// ---------------------------------------------------------------- the fixture command

/// The command for key `k`: its argv (and so its cache key) never changes; what
/// it does is read from `$W/mode-k<k>` ("ok|fail SLEEP") when it starts.
fn script(key: usize) -> String {
    format!(
        "K=k{key}; read -r id < /proc/sys/kernel/random/uuid; id=${{id%%-*}}; \
         read -r m s < \"$W/mode-$K\"; \
         echo \"start $id $K $m ${{CF:-n}} $$ $PPID\" >> \"$W/log\"; \
         [ \"$s\" = 0 ] || sleep \"$s\"; \
         [ \"$m\" != big ] || {{ head -c {BIG} /dev/zero | tr '\\0' x; echo; }}; \
         if [ \"$m\" = fail ]; then echo \"f$id\"; echo \"e$id\" >&2; echo \"end $id 3\" >> \"$W/log\"; exit 3; fi; \
         echo \"v$id\"; echo \"e$id\" >&2; echo \"end $id 0\" >> \"$W/log\""
    )
}

/// Bytes of `x` a run prints in mode `big`, before its value line: more than
/// a small-disk sequence's whole cache directory holds.
const BIG: usize = 800_000;
/// Size of the tmpfs a small-disk sequence puts its cache directory on.
const SMALL_DISK: &str = "512k";

/// A small tmpfs mounted on a sequence's cache directory, unmounted on drop
/// (as in `tests/faults.rs`).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// None (after one note per test process) when it cannot be mounted:
    /// the sequence then runs on a normal directory.
    fn mount(at: std::path::PathBuf) -> Option<SmallDisk> {
        static NOTE: std::sync::Once = std::sync::Once::new();
        fs::create_dir_all(&at).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={SMALL_DISK},mode=0700"))
            .arg("tmpfs")
            .arg(&at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if mounted {
            return Some(SmallDisk(at));
        }
        // cacheback creates it itself, private, on the first write.
        let _ = fs::remove_dir(&at);
        NOTE.call_once(|| {
            println!("model: note: cannot mount a tmpfs (needs root): full-disk sequences run on a normal directory, without full-disk operations");
        });
        None
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// One execution of a fixture command, as the log tells it.
#[derive(Debug, Clone)]
struct RunRec {
    id: String,
    key: usize,
    fail: bool,
    cf: bool,
    pid: u32,
    ppid: u32,
    /// Position of its `start` line in the log.
    start: usize,
    /// Position of its `end` line and its exit status.
    end: Option<(usize, i32)>,
}

struct Log {
    runs: Vec<RunRec>,
    by_id: HashMap<String, usize>,
    len: usize,
}

impl Log {
    fn get(&self, id: &str) -> Option<&RunRec> {
        self.by_id.get(id).map(|&i| &self.runs[i])
    }
}

// ---------------------------------------------------------------- the model

/// One cache entry as the model sees it: key `k<key>`, with or without
/// `--cache-failures` (which is part of the key, so they are separate entries).
#[derive(Debug, Clone)]
struct Ent {
    /// A value is stored for certain (learned from a caller or read after settling).
    has: bool,
    /// Values from runs that started before this log position may no longer be
    /// served: a newer one was stored, or an invalidation removed them.
    min_start: usize,
    /// `run` calls that reached the entry since its counters were last reset:
    /// all of them, and those whose count nothing can lose.
    calls_hi: u64,
    calls_lo: u64,
    /// False after an event that may legitimately lose counts (see `Sequence::invalidate`).
    exact: bool,
    /// Log position of the last counter reset.
    reset_pos: usize,
    /// hits + misses at the last check since the reset: counts never go down.
    last_seen: u64,
}

impl Ent {
    fn new() -> Ent {
        Ent {
            has: false,
            min_start: 0,
            calls_hi: 0,
            calls_lo: 0,
            exact: true,
            reset_pos: 0,
            last_seen: 0,
        }
    }

    fn reset_counters(&mut self, pos: usize, exact: bool) {
        self.calls_hi = 0;
        self.calls_lo = 0;
        self.exact = exact;
        self.reset_pos = pos;
        self.last_seen = 0;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    One(usize, bool),
    All,
}

impl Target {
    fn covers(self, key: usize, cf: bool) -> bool {
        self == Target::All || self == Target::One(key, cf)
    }
}

/// An `invalidate` call, by the log positions before and after it.
#[derive(Debug, Clone, Copy)]
struct Inval {
    target: Target,
    refresh: bool,
    begin: usize,
    end: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Plain,
    NoWait,
    Force,
    /// With this standard descriptor closed.
    Closed(i32),
}

struct Caller {
    key: usize,
    cf: bool,
    flavor: Flavor,
    spawn_pos: usize,
    pid: u32,
    child: Child,
    /// The entry's model state when the caller started.
    has: bool,
    min_start: usize,
}

fn label(key: usize, cf: bool) -> String {
    format!("k{key}{}", if cf { "cf" } else { "" })
}

struct Sequence {
    seed: u64,
    rng: SplitMix,
    /// Declared before `cache`: unmounted before the cache's directory is removed.
    disk: Option<SmallDisk>,
    /// Full-disk operations run.
    full_ops: usize,
    cache: Cache,
    ents: BTreeMap<(usize, bool), Ent>,
    invals: Vec<Inval>,
    /// Killed runs and the log position of their death.
    killed: HashMap<String, usize>,
    kills: usize,
    /// `invalidate --refresh` calls (entry, log positions before and after)
    /// that owe a run of the entry, checked at the next settling.
    owed: Vec<(usize, bool, usize, usize)>,
    ops: Vec<String>,
    /// Draws for the back-off probes, apart from `rng`, so that adding the
    /// probes left every seed's other operations as they were.
    probes: SplitMix,
}

impl Sequence {
    fn new(seed: u64) -> Sequence {
        let cache = Cache::new();
        // Drawn from its own generator, so the other sequences' draws are
        // what they were before full-disk sequences existed.
        let disk = if SplitMix(seed ^ 0x5ed1_d15c).below(6) == 0 {
            SmallDisk::mount(cache.dir())
        } else {
            None
        };
        for key in 0..KEYS {
            fs::write(cache.work().join(format!("mode-k{key}")), "ok 0\n").unwrap();
        }
        fs::write(cache.work().join("log"), "").unwrap();
        let mut ents = BTreeMap::new();
        for key in 0..KEYS {
            for cf in [false, true] {
                ents.insert((key, cf), Ent::new());
            }
        }
        Sequence {
            seed,
            rng: SplitMix(seed),
            disk,
            full_ops: 0,
            cache,
            ents,
            invals: Vec::new(),
            killed: HashMap::new(),
            kills: 0,
            owed: Vec::new(),
            ops: Vec::new(),
            probes: SplitMix(seed ^ 0xbac0_ff00_0000_0001),
        }
    }

    /// Runs the sequence; returns how many operations it ran, whether its cache
    /// was on a small disk and how many full-disk operations it ran. Panics
    /// with the replay line on the first broken invariant.
    fn run(mut self) -> (usize, bool, usize) {
        let steps = 10 + self.rng.below(16) as usize;
        for _ in 0..steps {
            if let Err(why) = self.step() {
                self.fail(&why);
            }
        }
        if let Err(why) = self.settle().and_then(|()| self.strict()) {
            self.fail(&why);
        }
        (steps, self.disk.is_some(), self.full_ops)
    }

    fn fail(&mut self, why: &str) -> ! {
        let left = self.leftovers();
        for &pid in &left {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        let mut text = format!(
            "model invariant broken: {why}\n\nsequence seed {}; operations so far:\n",
            self.seed
        );
        for (i, op) in self.ops.iter().enumerate() {
            let _ = writeln!(text, "  {i:2}. {op}");
        }
        let log = fs::read_to_string(self.cache.work().join("log")).unwrap_or_default();
        let _ = write!(text, "\nthe runs log ($W/log):\n{log}");
        let _ = write!(
            text,
            "\nreplay: CACHEBACK_MODEL_SEED={} CACHEBACK_MODEL_SEQUENCES=1 cargo test --release --test integration model -- --nocapture\n",
            self.seed
        );
        panic!("{text}");
    }

    fn step(&mut self) -> Result<(), String> {
        let key = self.rng.below(KEYS as u64) as usize;
        if self.disk.is_some() && self.rng.chance(25) {
            return self.full_disk(key);
        }
        match self.rng.below(100) {
            0..=11 => self.set_mode(key),
            12..=33 => self.single(key),
            34..=45 => self.group(),
            46..=53 => self.stale(),
            54..=57 => self.future(key),
            58..=62 => self.warm(key),
            63..=72 => self.invalidate(key),
            73..=74 => self.invalidate_all(),
            75..=77 => self.gc(false),
            78..=79 => self.gc(true),
            80..=85 => self.kill_refresher(key),
            _ => {
                self.ops.push("settle and check".into());
                self.settle()?;
                self.strict()
            }
        }?;
        // Settling now and then makes the strict checks run mid-sequence, not only at its end.
        if self.rng.chance(25) {
            self.settle()?;
            self.strict()?;
        }
        if self.probes.chance(30) {
            let key = self.probes.below(KEYS as u64) as usize;
            self.backoff_probe(key)?;
        }
        Ok(())
    }

    /// Back-off length: when the last runs of an entry failed (a failure
    /// record newer than its value), a stale hit 3 s before the back-off of
    /// that many failures in a row ends starts no run, and one 3 s after it
    /// ends does. The back-off is 10 s after one failure, doubling per
    /// failure in a row, at most the TTL (1 h here): written out here, not
    /// taken from the crate.
    fn backoff_probe(&mut self, key: usize) -> Result<(), String> {
        self.settle()?;
        let Some(entry) = self.entry_path(key, false) else {
            return Ok(());
        };
        let fail = entry.with_extension("fail");
        let (Some(value), Some(failed)) = (finished_of(&entry), finished_of(&fail)) else {
            return Ok(());
        };
        let Some(failures) = fs::read(&fail)
            .ok()
            .and_then(|bytes| Preamble::decode(&bytes, bytes.len() as u64).ok())
            .map(|failure| failure.failures)
        else {
            return Ok(());
        };
        if failed <= value || failures == 0 {
            return Ok(());
        }
        let wait = (10_000u64 << (failures - 1).min(20)).min(3_600_000);
        PROBED.fetch_add(1, Ordering::Relaxed);
        for (offset, expect_run) in [(-3_000i64, false), (3_000, true)] {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let at = (now - wait).saturating_add_signed(-offset);
            // The value two hours old (stale), the failure record `wait + offset` ago.
            // Shifted from where the entry is now: the first probe moved it.
            let current = finished_of(&entry).unwrap_or(value);
            shift_finished(&entry, (now - 7_200_000) as i64 - current as i64);
            shift_finished(&fail, at as i64 - finished_of(&fail).unwrap_or(at) as i64);
            let before = self.log().runs.len();
            let what = format!(
                "back-off probe: {} with {failures} failures in a row, the last {} s ago (back-off {} s)",
                label(key, false),
                (wait as i64 + offset) / 1000,
                wait / 1000
            );
            self.callers(&[(key, false, Flavor::Plain)], &what)?;
            self.settle()?;
            let log = self.log();
            let ran = log.runs[before..]
                .iter()
                .any(|run| run.key == key && !run.cf);
            if ran != expect_run {
                return Err(format!(
                    "{what}: {}",
                    if ran {
                        "a refresh started before the back-off ended"
                    } else {
                        "no refresh started after the back-off ended"
                    }
                ));
            }
            if ran {
                break;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ operations

    fn set_mode(&mut self, key: usize) -> Result<(), String> {
        let fail = self.rng.chance(40);
        let sleep = if self.rng.chance(40) {
            format!("0.{}", 3 + self.rng.below(7))
        } else {
            "0".into()
        };
        let mode = format!("{} {sleep}", if fail { "fail" } else { "ok" });
        self.ops.push(format!("mode k{key} = {mode}"));
        self.write_mode(key, &mode);
        Ok(())
    }

    fn write_mode(&self, key: usize, mode: &str) {
        // Renamed into place: a command reading it meanwhile must see a whole line.
        let work = self.cache.work();
        let tmp = work.join(format!("mode-k{key}.tmp"));
        fs::write(&tmp, format!("{mode}\n")).unwrap();
        fs::rename(&tmp, work.join(format!("mode-k{key}"))).unwrap();
    }

    fn flavor(&mut self) -> Flavor {
        match self.rng.below(100) {
            0..=59 => Flavor::Plain,
            60..=74 => Flavor::NoWait,
            75..=86 => Flavor::Force,
            _ => Flavor::Closed(self.rng.below(3) as i32),
        }
    }

    fn single(&mut self, key: usize) -> Result<(), String> {
        let cf = self.rng.chance(20);
        let flavor = self.flavor();
        self.callers(&[(key, cf, flavor)], "run")
    }

    fn group(&mut self) -> Result<(), String> {
        let n = 3 + self.rng.below(6) as usize;
        let first = self.rng.below(KEYS as u64) as usize;
        let second = self.rng.below(KEYS as u64) as usize;
        let mut specs = Vec::new();
        for _ in 0..n {
            let key = if self.rng.chance(70) { first } else { second };
            let cf = self.rng.chance(15);
            let flavor = match self.flavor() {
                // A group is about callers racing one run; keep --force rare in it.
                Flavor::Force if self.rng.chance(60) => Flavor::Plain,
                other => other,
            };
            specs.push((key, cf, flavor));
        }
        self.callers(&specs, &format!("{n} concurrent callers"))
    }

    /// Makes every stored entry two hours old: the next callers get stale hits.
    fn stale(&mut self) -> Result<(), String> {
        self.ops.push("backdate every entry by 2h (stale)".into());
        for path in self.cache.files(".entry") {
            shift_finished(&path, -7_200_000);
        }
        Ok(())
    }

    /// The clock stepped back: an entry finished an hour in the future must be
    /// treated as stale, so the next caller starts a refresh.
    fn future(&mut self, key: usize) -> Result<(), String> {
        self.settle()?;
        self.strict()?;
        let log = self.log();
        let last_ok = log
            .runs
            .iter()
            .rev()
            .find(|r| r.key == key && !r.cf && !self.killed.contains_key(&r.id))
            .is_some_and(|r| r.end.is_some_and(|(_, code)| code == 0));
        // A failure newer than the entry calls for back-off, which may fairly
        // delay the refresh; only a key whose last run succeeded is tested.
        if !self.ents[&(key, false)].has || !last_ok {
            self.ops
                .push(format!("future k{key}: skipped (no entry, or back-off)"));
            return Ok(());
        }
        let Some(path) = self.entry_path(key, false) else {
            return Err(format!(
                "k{key} should have an entry after settling, but stats lists none"
            ));
        };
        shift_finished(&path, 3_600_000);
        // The run log's order is not the stored times' order: an earlier
        // `stale` step backdates entries but not failure records, so an old
        // failure can now be newer than the entry, and back-off is then right.
        let failure = finished_of(&path.with_extension("fail"));
        if failure.is_some_and(|failed| Some(failed) > finished_of(&path)) {
            self.ops.push(format!(
                "future k{key}: skipped (a failure record newer than the entry: back-off)"
            ));
            return Ok(());
        }
        let pos = self.log().len;
        self.callers(&[(key, false, Flavor::Plain)], "future-dated entry, then")?;
        let refreshed = wait_until(Duration::from_secs(30), || {
            self.log()
                .runs
                .iter()
                .any(|r| r.key == key && !r.cf && r.start >= pos)
        });
        if !refreshed {
            return Err(format!(
                "k{key}: an entry finished 1h in the future was served without a refresh (treated as fresh)"
            ));
        }
        Ok(())
    }

    fn warm(&mut self, key: usize) -> Result<(), String> {
        let cf = self.rng.chance(20);
        let mut cmd = self.cache.cmd();
        cmd.args(["warm", "--ttl", "1h", "--name", &label(key, cf)]);
        if cf {
            cmd.arg("--cache-failures").env("CF", "y");
        }
        let out = cmd.arg("--").args(sh(&script(key))).bounded_output();
        self.ops.push(format!(
            "warm {} -> exit {:?} {:?}",
            label(key, cf),
            out.status.code(),
            stderr(&out)
        ));
        if out.status.code() != Some(0) || !out.stdout.is_empty() {
            return Err(format!(
                "warm must print nothing and exit 0: {:?}, stdout {:?}",
                out.status,
                stdout(&out)
            ));
        }
        Ok(())
    }

    fn invalidate(&mut self, key: usize) -> Result<(), String> {
        let cf = self.rng.chance(25);
        let refresh = self.rng.chance(55);
        let name = label(key, cf);
        let in_flight = !self.leftovers().is_empty();
        let begin = self.log().len;
        let mut cmd = self.cache.cmd();
        cmd.arg("invalidate");
        if refresh {
            cmd.arg("--refresh");
        }
        if cf {
            // The refresh reruns the command with invalidate's environment.
            cmd.env("CF", "y");
        }
        let out = cmd.args(["--name", &name]).bounded_output();
        let end = self.log().len;
        let code = out.status.code();
        self.ops.push(format!(
            "invalidate{} --name {name} (refresh running: {in_flight}) -> exit {code:?} {:?}",
            if refresh { " --refresh" } else { "" },
            stdout(&out).trim()
        ));
        let ent = self.ents.get_mut(&(key, cf)).unwrap();
        match code {
            Some(0) => {}
            Some(1) if !ent.has => return Ok(()),
            _ => {
                return Err(format!(
                    "invalidate --name {name} exited {code:?} though the entry exists: {}",
                    stderr(&out)
                ));
            }
        }
        self.invals.push(Inval {
            target: Target::One(key, cf),
            refresh,
            begin,
            end,
        });
        if refresh {
            // It starts a refresh at once (a run in flight reruns instead).
            if ent.has {
                self.owed.push((key, cf, begin, end));
            }
        } else {
            self.owed.retain(|o| (o.0, o.1) != (key, cf));
            ent.has = false;
            ent.min_start = ent.min_start.max(begin);
            // A refresh still running folds the events log into its (now
            // unlinked) lock file, which may take later counts with it.
            ent.reset_counters(begin, !in_flight);
        }
        Ok(())
    }

    fn invalidate_all(&mut self) -> Result<(), String> {
        let in_flight = !self.leftovers().is_empty();
        let begin = self.log().len;
        let out = self.cache.cacheback(&["invalidate", "--all"]);
        let end = self.log().len;
        self.ops.push(format!(
            "invalidate --all (refresh running: {in_flight}) -> exit {:?}",
            out.status.code()
        ));
        if !out.status.success() {
            return Err(format!("invalidate --all failed: {}", stderr(&out)));
        }
        self.invals.push(Inval {
            target: Target::All,
            refresh: false,
            begin,
            end,
        });
        self.owed.clear();
        for ent in self.ents.values_mut() {
            ent.has = false;
            ent.min_start = ent.min_start.max(begin);
            ent.reset_counters(begin, !in_flight);
        }
        Ok(())
    }

    /// `gc` with defaults must remove nothing in use; `gc --max-size 1` after
    /// settling (no lock held) must remove every entry and its counters.
    fn gc(&mut self, evict: bool) -> Result<(), String> {
        if evict {
            self.settle()?;
            self.strict()?;
        }
        let pos = self.log().len;
        // gc removes entries with their counters; a key that never stored a
        // value (every run failed or hit a full disk) keeps its counters in
        // its lock file, which gc leaves alone while it is young.
        let stored: Vec<(usize, bool)> = if evict {
            // What gc counts as an entry: a stored result or a failure record,
            // which is what `stats` lists (with the label the runs stored).
            let stats = self.stats()?;
            let listed = |key: usize, cf: bool| {
                let name = label(key, cf);
                stats["entries"]
                    .as_array()
                    .is_some_and(|all| all.iter().any(|e| e["name"].as_str() == Some(&name)))
            };
            self.ents
                .keys()
                .copied()
                .filter(|&(key, cf)| listed(key, cf))
                .collect()
        } else {
            Vec::new()
        };
        let out = if evict {
            self.cache.cacheback(&["gc", "--max-size", "1"])
        } else {
            self.cache.cacheback(&["gc"])
        };
        self.ops.push(format!(
            "gc{} -> exit {:?} {:?}",
            if evict { " --max-size 1 (settled)" } else { "" },
            out.status.code(),
            stdout(&out)
        ));
        if !out.status.success() {
            return Err(format!("gc failed: {}", stderr(&out)));
        }
        if evict {
            self.owed.clear();
            for (id, ent) in self.ents.iter_mut() {
                ent.has = false;
                ent.min_start = ent.min_start.max(pos);
                if stored.contains(id) {
                    ent.reset_counters(pos, true);
                }
            }
            let left = self.cache.files(".entry");
            if !left.is_empty() {
                return Err(format!(
                    "gc --max-size 1 with no lock held left entries: {left:?}"
                ));
            }
        }
        Ok(())
    }

    /// Starts a slow background run and SIGKILLs its refresher mid-run.
    fn kill_refresher(&mut self, key: usize) -> Result<(), String> {
        let cf = false;
        let pos = self.log().len;
        self.write_mode(key, "ok 5");
        let mut cmd = self.cache.cmd();
        cmd.args(["warm", "--ttl", "1h", "--name", &label(key, cf), "--"])
            .args(sh(&script(key)));
        let _ = cmd.bounded_output();
        // The victim: the run of this key in flight (ours, or one already running).
        let mut victim = None;
        wait_until(Duration::from_secs(15), || {
            let log = self.log();
            victim = log
                .runs
                .iter()
                .rev()
                .find(|r| {
                    r.key == key && !r.cf && r.end.is_none() && !self.killed.contains_key(&r.id)
                })
                .cloned();
            victim.is_some()
                || log
                    .runs
                    .iter()
                    .any(|r| r.key == key && !r.cf && r.start >= pos && r.end.is_some())
        });
        self.write_mode(key, "ok 0");
        let Some(victim) = victim else {
            self.ops
                .push(format!("kill -9 refresher of k{key}: none caught running"));
            return Ok(());
        };
        let refresher = Pid::from_raw(victim.ppid as i32);
        // Stopped first, so it holds the lock while its command is removed and
        // no other run can start in between (that would look like an overlap).
        let _ = kill(refresher, Signal::SIGSTOP);
        let mut note = "";
        if self.log().get(&victim.id).is_some_and(|r| r.end.is_none()) {
            let _ = killpg(Pid::from_raw(victim.pid as i32), Signal::SIGKILL);
            if !wait_until(Duration::from_secs(10), || !alive(victim.pid)) {
                return Err(format!("run {} survived SIGKILL", victim.id));
            }
            let at = self.log().len;
            self.killed.insert(victim.id.clone(), at);
        } else {
            // Its command finished: the refresher dies storing or counting.
            note = " (after its command ended)";
            self.ents.get_mut(&(key, cf)).unwrap().exact = false;
        }
        let _ = kill(refresher, Signal::SIGKILL);
        let _ = kill(refresher, Signal::SIGCONT);
        self.kills += 1;
        if !wait_until(Duration::from_secs(10), || !alive(victim.ppid)) {
            return Err(format!("refresher {} survived SIGKILL", victim.ppid));
        }
        self.ops.push(format!(
            "kill -9 refresher {} of k{key} during run {}{note}",
            victim.ppid, victim.id
        ));
        Ok(())
    }

    /// On a small disk: a foreground run whose output does not fit (a `--force`,
    /// or a miss), for a key that may hold a good small value. The caller
    /// still gets the whole output and status (and at most one warning), the
    /// stored value stays as it was, and the failed write leaves no temp file.
    fn full_disk(&mut self, key: usize) -> Result<(), String> {
        let cf = false;
        // At rest, so no refresh in flight reads the `big` mode.
        self.settle()?;
        self.strict()?;
        let before = self.entry_path(key, cf).and_then(|path| read_entry(&path));
        let force = before.is_some() || self.rng.chance(50);
        let temps_before = self.temps().len();
        let mode_path = self.cache.work().join(format!("mode-k{key}"));
        let mode = fs::read_to_string(&mode_path).unwrap();
        self.write_mode(key, "big 0");
        let pos = self.log().len;
        let mut cmd = self.cache.cmd();
        cmd.args(["run", "--ttl", "1h", "--name", &label(key, cf)]);
        if force {
            cmd.arg("--force");
        }
        let out = cmd.arg("--").args(sh(&script(key))).bounded_output();
        self.write_mode(key, mode.trim());
        self.full_ops += 1;
        let ent = self.ents.get_mut(&(key, cf)).unwrap();
        ent.calls_hi += 1;
        ent.calls_lo += 1;
        let err = stderr(&out);
        let tail = out
            .stdout
            .get(BIG..)
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        self.ops.push(format!(
            "full disk: {} k{key} printing {BIG} bytes (value stored: {}) -> exit {:?}, {} bytes out ending {tail:?}, err {err:?}",
            if force { "--force" } else { "miss" },
            before.is_some(),
            out.status.code(),
            out.stdout.len()
        ));
        let log = self.log();
        let Some(run) = log.runs.iter().find(|r| r.key == key && r.start >= pos) else {
            return Err(format!("full disk k{key}: the command did not run"));
        };
        let value = format!("v{}\n", run.id);
        let whole = out.stdout.len() == BIG + 1 + value.len()
            && out.stdout[..BIG].iter().all(|&b| b == b'x')
            && tail == format!("\n{value}");
        if !whole || out.status.code() != Some(0) {
            return Err(format!(
                "full disk k{key}: the caller did not get the run's whole output and status 0"
            ));
        }
        // Lenient on stderr: the run's own line plus at most one warning.
        let (warnings, own): (Vec<&str>, Vec<&str>) =
            err.lines().partition(|line| line.starts_with("cacheback:"));
        if own != [format!("e{}", run.id)] || warnings.len() > 1 {
            return Err(format!(
                "full disk k{key}: stderr {err:?} is not the run's stderr plus at most one warning"
            ));
        }
        self.settle()?;
        let temps = self.temps();
        if temps.len() > temps_before {
            return Err(format!(
                "full disk k{key}: the failed write left a temp file: {temps:?}"
            ));
        }
        if let Some(before) = before {
            let after = self.entry_path(key, cf).and_then(|path| read_entry(&path));
            if after.as_ref() != Some(&before) {
                return Err(format!(
                    "full disk k{key}: the stored value was lost or changed: {:?} became {:?}",
                    String::from_utf8_lossy(&before.0),
                    after.map(|a| String::from_utf8_lossy(&a.0).into_owned())
                ));
            }
        }
        self.strict()
    }

    fn temps(&self) -> Vec<std::path::PathBuf> {
        self.cache
            .files("")
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".tmp-")
            })
            .collect()
    }

    // ------------------------------------------------------------ callers

    fn spawn(&self, key: usize, cf: bool, flavor: Flavor, spawn_pos: usize) -> Caller {
        let mut cmd = self.cache.cmd();
        cmd.args(["run", "--ttl", "1h", "--name", &label(key, cf)]);
        if cf {
            cmd.arg("--cache-failures").env("CF", "y");
        }
        match flavor {
            Flavor::NoWait => {
                cmd.args(["--no-wait", "--placeholder", PLACEHOLDER]);
            }
            Flavor::Force => {
                cmd.arg("--force");
            }
            Flavor::Plain | Flavor::Closed(_) => {}
        }
        cmd.arg("--")
            .args(sh(&script(key)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Flavor::Closed(fd) = flavor {
            // SAFETY: close(2) is async-signal-safe; it runs in the child after the stdio set-up.
            unsafe {
                cmd.pre_exec(move || {
                    libc::close(fd);
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().unwrap();
        let ent = &self.ents[&(key, cf)];
        Caller {
            key,
            cf,
            flavor,
            spawn_pos,
            pid: child.id(),
            child,
            has: ent.has,
            min_start: ent.min_start,
        }
    }

    fn callers(&mut self, specs: &[(usize, bool, Flavor)], what: &str) -> Result<(), String> {
        let spawn_pos = self.log().len;
        let callers: Vec<Caller> = specs
            .iter()
            .map(|&(key, cf, flavor)| self.spawn(key, cf, flavor, spawn_pos))
            .collect();
        let mut done = Vec::new();
        for caller in callers {
            let Caller {
                key,
                cf,
                flavor,
                spawn_pos,
                pid,
                child,
                has,
                min_start,
            } = caller;
            let out = child.bounded_wait_with_output();
            done.push((key, cf, flavor, spawn_pos, pid, has, min_start, out));
        }
        let log = self.log();
        let mut text = format!("{what}:");
        let mut verdict = self.coalesced(&log, spawn_pos, &done_pids(&done));
        let mut learned = Vec::new();
        for (key, cf, flavor, spawn_pos, pid, has, min_start, out) in &done {
            let _ = write!(
                text,
                " [{} {flavor:?} pid {pid}{} -> exit {:?} out {:?} err {:?}]",
                label(*key, *cf),
                if *has { " (entry stored)" } else { "" },
                out.status.code(),
                stdout(out),
                stderr(out)
            );
            let ent = self.ents.get_mut(&(*key, *cf)).unwrap();
            // Exact for callers with a closed descriptor too: cacheback opens
            // /dev/null on 0-2 first, so nothing it opens can land there.
            ent.calls_hi += 1;
            ent.calls_lo += 1;
            let judged = judge(
                &log,
                &self.killed,
                &Served {
                    key: *key,
                    cf: *cf,
                    flavor: *flavor,
                    spawn_pos: *spawn_pos,
                    pid: *pid,
                    has: *has,
                    min_start: *min_start,
                },
                out,
            );
            match judged {
                Ok(Some(start)) => learned.push((*key, *cf, start)),
                Ok(None) => {}
                Err(why) if verdict.is_ok() => {
                    verdict = Err(format!("{} caller pid {pid}: {why}", label(*key, *cf)))
                }
                Err(_) => {}
            }
        }
        self.ops.push(text);
        verdict?;
        for (key, cf, start) in learned {
            let ent = self.ents.get_mut(&(key, cf)).unwrap();
            ent.has = true;
            ent.min_start = ent.min_start.max(start);
        }
        Ok(())
    }

    /// Miss coalescing: the plain callers of one entry in one group share
    /// one run. At most one of them runs the command itself; the others wait
    /// for its lock and serve what it stored (or hit, or serve a stale value
    /// while a refresher runs). Checked where that run is sure to be stored:
    /// the entry's command succeeds (mode `ok`), and the cache is not on the
    /// small disk.
    fn coalesced(
        &self,
        log: &Log,
        spawn_pos: usize,
        callers: &[(usize, bool, Flavor, u32)],
    ) -> Result<(), String> {
        if self.disk.is_some() {
            return Ok(());
        }
        for &(key, cf) in self.ents.keys() {
            let mode = fs::read_to_string(self.cache.work().join(format!("mode-k{key}")))
                .unwrap_or_default();
            if !mode.starts_with("ok ") {
                continue;
            }
            let plain: HashSet<u32> = callers
                .iter()
                .filter(|&&(k, c, flavor, _)| (k, c, flavor) == (key, cf, Flavor::Plain))
                .map(|&(_, _, _, pid)| pid)
                .collect();
            let ran: Vec<&str> = log
                .runs
                .iter()
                .filter(|run| run.start >= spawn_pos && plain.contains(&run.ppid))
                .map(|run| run.id.as_str())
                .collect();
            if plain.len() >= 2 {
                COALESCING_CHECKED.fetch_add(1, Ordering::Relaxed);
            }
            if ran.len() > 1 {
                return Err(format!(
                    "{} plain callers of {} on one miss ran the command {} times in the foreground (runs {ran:?}): a miss must be shared",
                    plain.len(),
                    label(key, cf),
                    ran.len()
                ));
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ settling and strict checks

    fn log(&self) -> Log {
        parse_log(&fs::read_to_string(self.cache.work().join("log")).unwrap_or_default())
    }

    /// Processes whose environment carries this sequence's `$W`: every cacheback
    /// it started, every refresher and every command they ran.
    fn leftovers(&self) -> Vec<u32> {
        let marker = format!("W={}", self.cache.work().display()).into_bytes();
        let mut pids = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if !alive(pid) {
                continue;
            }
            let Ok(environ) = fs::read(entry.path().join("environ")) else {
                continue;
            };
            if environ
                .split(|&b| b == 0)
                .any(|var| var == marker.as_slice())
            {
                pids.push(pid);
            }
        }
        pids
    }

    /// Waits until no process of this sequence is left and every logged run has
    /// ended (or was killed): then the store must be at rest.
    fn settle(&mut self) -> Result<(), String> {
        // The locks too: an exiting process has lost its environment (the
        // leftovers scan cannot see it) a moment before it closes its files.
        let quiet = wait_until(SETTLE_LIMIT, || {
            self.leftovers().is_empty()
                && !self.cache.files(".lock").iter().any(|p| lock_held(p))
                && self
                    .log()
                    .runs
                    .iter()
                    .all(|r| r.end.is_some() || self.killed.contains_key(&r.id))
        });
        if quiet {
            return Ok(());
        }
        let left: Vec<String> = self
            .leftovers()
            .iter()
            .map(|pid| {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                format!(
                    "{pid}: {}",
                    String::from_utf8_lossy(&cmdline).replace('\0', " ")
                )
            })
            .collect();
        Err(format!(
            "not settled after {SETTLE_LIMIT:?}: processes {left:?}, or a logged run never ended"
        ))
    }

    fn stats(&self) -> Result<serde_json::Value, String> {
        let out = self.cache.cacheback(&["stats", "--json"]);
        if !out.status.success() {
            return Err(format!("stats --json failed: {out:?}"));
        }
        serde_json::from_slice(&out.stdout).map_err(|err| format!("stats --json: {err}: {out:?}"))
    }

    fn entry_path(&self, key: usize, cf: bool) -> Option<std::path::PathBuf> {
        let stats = self.stats().ok()?;
        let name = label(key, cf);
        stats["entries"].as_array()?.iter().find_map(|e| {
            (e["name"].as_str() == Some(&name) && !e["finished_at"].is_null()).then(|| {
                self.cache
                    .dir()
                    .join(format!("{}.entry", e["key"].as_str().unwrap_or("")))
            })
        })
    }

    /// The checks that need the store at rest.
    fn strict(&mut self) -> Result<(), String> {
        let log = self.log();
        check_overlaps(&log, &self.invals, &self.killed)?;
        for (key, cf, begin, end) in std::mem::take(&mut self.owed) {
            let entry = |r: &&RunRec| r.key == key && r.cf == cf;
            // A run in flight through the invalidation stores its result
            // marked stale and must run again: the owed run comes after it.
            let in_flight: Vec<&RunRec> = log
                .runs
                .iter()
                .filter(entry)
                .filter(|r| r.start < begin && r.end.is_none_or(|(e, _)| e >= end))
                .collect();
            if in_flight.iter().any(|r| self.killed.contains_key(&r.id)) {
                continue;
            }
            let after = in_flight
                .iter()
                .filter_map(|r| r.end.map(|(e, _)| e))
                .max()
                .unwrap_or(begin);
            if !log.runs.iter().filter(entry).any(|r| r.start >= after) {
                return Err(format!(
                    "invalidate --refresh of {} (log lines {begin}..{end}) ran no refresh{}",
                    label(key, cf),
                    if in_flight.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " after the run in flight through it ({}), which must run again",
                            in_flight[0].id
                        )
                    }
                ));
            }
        }
        for path in self.cache.files(".lock") {
            if lock_held(&path) {
                return Err(format!(
                    "settled, yet {} is locked; processes with it open: {:?}",
                    path.display(),
                    holders(&path)
                ));
            }
        }
        let temps = self.temps();
        // Only a killed writer may leave its temp file behind (README, failure table).
        if temps.len() > self.kills {
            return Err(format!(
                "{} temp files left after {} kills: {temps:?}",
                temps.len(),
                self.kills
            ));
        }
        let stats = self.stats()?;
        let entries = stats["entries"].as_array().cloned().unwrap_or_default();
        let mut seen: BTreeMap<(usize, bool), serde_json::Value> = BTreeMap::new();
        for e in entries {
            let name = e["name"].as_str().unwrap_or("").to_owned();
            let Some(&(key, cf)) = self.ents.keys().find(|&&(key, cf)| label(key, cf) == name)
            else {
                return Err(format!("stats lists an entry nobody made: {e}"));
            };
            if seen.insert((key, cf), e.clone()).is_some() {
                return Err(format!("two entries carry the label {name}"));
            }
        }
        for (&(key, cf), ent) in self.ents.iter_mut() {
            let name = label(key, cf);
            let e = seen.get(&(key, cf));
            let state = e.and_then(|e| e["state"].as_str()).unwrap_or("-");
            if state == "refreshing" || state == "unreadable" {
                return Err(format!("{name}: state {state} with nothing running"));
            }
            let stored = e.filter(|e| !e["finished_at"].is_null()).map(|e| {
                self.cache
                    .dir()
                    .join(format!("{}.entry", e["key"].as_str().unwrap_or("")))
            });
            match stored {
                Some(path) => {
                    let (out, err, code) = read_entry(&path)
                        .ok_or_else(|| format!("{name}: stored entry {path:?} is not whole"))?;
                    let served = Served {
                        key,
                        cf,
                        flavor: Flavor::Plain,
                        spawn_pos: log.len,
                        pid: 0,
                        has: ent.has,
                        min_start: ent.min_start,
                    };
                    let output = Output {
                        status: exit_status(code),
                        stdout: out,
                        stderr: err,
                    };
                    let start = judge(&log, &self.killed, &served, &output)
                        .map_err(|why| format!("{name}: the stored entry: {why}"))?;
                    if let Some(start) = start {
                        ent.has = true;
                        ent.min_start = ent.min_start.max(start);
                    }
                }
                None if ent.has => {
                    return Err(format!("{name}: a stored value vanished (stats: {e:?})"));
                }
                None => {}
            }
            // Counters: every `run` call counts once as a fresh hit, stale hit or miss.
            let Some(e) = e else {
                continue;
            };
            let get = |field: &str| e[field].as_u64().unwrap_or(u64::MAX);
            let (hits, fresh, stale, misses) = (
                get("hits"),
                get("fresh_hits"),
                get("stale_hits"),
                get("misses"),
            );
            if hits != fresh.saturating_add(stale) {
                return Err(format!(
                    "{name}: hits {hits} != fresh {fresh} + stale {stale}"
                ));
            }
            let calls = hits.saturating_add(misses);
            let lo = if ent.exact { ent.calls_lo } else { 0 };
            if calls > ent.calls_hi || calls < lo || calls < ent.last_seen {
                return Err(format!(
                    "{name}: stats counts {calls} calls (hits {hits} + misses {misses}); the model made {} since the last reset, at least {lo} counted for sure, {} seen before{}",
                    ent.calls_hi,
                    ent.last_seen,
                    if ent.exact {
                        ""
                    } else {
                        " (inexact: an invalidation raced a refresh)"
                    }
                ));
            }
            ent.last_seen = calls;
            // Runs: every finished run since the reset counts as a refresh or
            // a failure; a full-disk run that stored nothing is a failure.
            let finished: Vec<&RunRec> = log
                .runs
                .iter()
                .filter(|r| r.key == key && r.cf == cf && r.start >= ent.reset_pos)
                .filter(|r| r.end.is_some() && !self.killed.contains_key(&r.id))
                .collect();
            let all = finished.len() as u64;
            let runs = get("refreshes").saturating_add(get("failures"));
            if runs > all || (ent.exact && runs < all) {
                return Err(format!(
                    "{name}: stats counts {runs} runs (refreshes + failures), the log {all} finished since the last reset"
                ));
            }
        }
        Ok(())
    }
}

/// What a caller (or the store itself, after settling) was served, and what
/// the model knew when it started.
struct Served {
    key: usize,
    cf: bool,
    flavor: Flavor,
    spawn_pos: usize,
    pid: u32,
    has: bool,
    min_start: usize,
}

/// Checks one output against the model. `Ok(Some(start))`: the output shows a
/// value stored for certain, whose run started at log position `start`.
fn judge(
    log: &Log,
    killed: &HashMap<String, usize>,
    s: &Served,
    out: &Output,
) -> Result<Option<usize>, String> {
    let code = out.status.code();
    let closed = match s.flavor {
        Flavor::Closed(fd) => Some(fd),
        _ => None,
    };
    if code.is_none() {
        return Err(format!("ended by a signal: {:?}", out.status));
    }
    // Without stdout nothing about the value can be seen.
    if closed == Some(1) {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    if s.flavor == Flavor::NoWait && text == PLACEHOLDER {
        if s.has {
            return Err(
                "--no-wait printed the placeholder (a miss) though a value was stored".into(),
            );
        }
        if code != Some(0) || !err.is_empty() {
            return Err(format!("--no-wait miss: exit {code:?}, stderr {err:?}"));
        }
        return Ok(None);
    }
    // A caller that waited for another caller's failed run gets its status
    // and stderr, never its stdout: a failure record keeps none.
    if text.is_empty() && code == Some(3) && !s.cf {
        if closed == Some(2) {
            return Ok(None);
        }
        let Some(run) = err
            .strip_prefix('e')
            .and_then(|rest| rest.strip_suffix('\n'))
            .and_then(|id| log.get(id))
        else {
            return Err(format!(
                "a failure's stderr {err:?} is the stderr of no logged run"
            ));
        };
        if run.key != s.key || run.cf || !run.fail || run.end.map(|(_, status)| status) != Some(3) {
            return Err(format!(
                "a failure replayed with stderr {err:?}, which is not a failed run of k{}",
                s.key
            ));
        }
        return Ok(None);
    }
    let Some(value) = text.strip_suffix('\n').filter(|v| !v.contains('\n')) else {
        return Err(format!("stdout is not one whole value: {text:?}"));
    };
    let (fail, id) = match value.split_at_checked(1) {
        Some(("v", id)) => (false, id),
        Some(("f", id)) => (true, id),
        _ => return Err(format!("stdout is not a value: {text:?}")),
    };
    if closed != Some(2) && err != format!("e{id}\n") {
        return Err(format!(
            "stderr {err:?} is not the stderr of the run that printed {value:?} (a mix, or a warning)"
        ));
    }
    let Some(run) = log.get(id) else {
        return Err(format!("{value:?} is the output of no logged run"));
    };
    if run.key != s.key {
        return Err(format!("{value:?} belongs to k{}", run.key));
    }
    if run.cf != s.cf {
        return Err(format!(
            "{value:?} comes from a run {} --cache-failures: the flag leaked across entries",
            if run.cf { "with" } else { "without" }
        ));
    }
    if killed.contains_key(id) {
        return Err(format!("{value:?} is the partial output of a killed run"));
    }
    let Some((_, status)) = run.end else {
        return Err(format!("{value:?} comes from a run that has not ended"));
    };
    let expected = if fail { 3 } else { 0 };
    if run.fail != fail || status != expected || code != Some(expected) {
        return Err(format!(
            "{value:?} with exit {code:?}: its run exited {status} (mode fail: {})",
            run.fail
        ));
    }
    let own = run.ppid == s.pid && run.start >= s.spawn_pos;
    if s.flavor == Flavor::Force {
        if !own {
            return Err(format!(
                "--force printed {value:?}, not the output of its own run"
            ));
        }
        return Ok((!fail || s.cf).then_some(run.start));
    }
    if own && (s.has || s.flavor == Flavor::NoWait) {
        return Err(format!(
            "ran the command in the foreground (a miss) though a value was stored: {value:?}"
        ));
    }
    if fail && !s.cf && s.has {
        return Err(format!(
            "a failure {value:?} reached a caller without --cache-failures though a good value was stored"
        ));
    }
    // A value stored by a run that was in flight through `invalidate --refresh`
    // may be served: the run stores it marked stale and runs again (see
    // `pending` in `Sequence::strict` for the rerun it owes).
    if !own && run.start < s.min_start {
        return Err(format!(
            "{value:?} (run started at log line {}) is older than a value already stored, or predates an invalidation (line {})",
            run.start, s.min_start
        ));
    }
    Ok((!fail || s.cf).then_some(run.start))
}

/// At most one execution per entry at a time, except across an invalidation
/// that forgets the entry, which lets a new run start while the discarded one
/// finishes. `invalidate --refresh` keeps the lock, so it excuses nothing.
fn check_overlaps(
    log: &Log,
    invals: &[Inval],
    killed: &HashMap<String, usize>,
) -> Result<(), String> {
    for (i, run) in log.runs.iter().enumerate() {
        for other in &log.runs[..i] {
            if other.key != run.key || other.cf != run.cf {
                continue;
            }
            let other_end = killed
                .get(&other.id)
                .copied()
                .or(other.end.map(|(end, _)| end))
                .unwrap_or(usize::MAX);
            // A kill is recorded at the log's length then, so a run logged at
            // that position started after it.
            if other_end <= run.start {
                continue;
            }
            let excused = invals.iter().any(|inval| {
                !inval.refresh
                    && inval.target.covers(run.key, run.cf)
                    && inval.begin <= run.start
                    && inval.end > other.start
            });
            if !excused {
                return Err(format!(
                    "runs {} (log line {}) and {} (log line {}) of {} overlapped: two executions of one entry at once",
                    other.id,
                    other.start,
                    run.id,
                    run.start,
                    label(run.key, run.cf)
                ));
            }
        }
    }
    Ok(())
}

fn parse_log(text: &str) -> Log {
    let mut runs: Vec<RunRec> = Vec::new();
    let mut by_id = HashMap::new();
    let mut len = 0;
    for (pos, line) in text.lines().enumerate() {
        len = pos + 1;
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["start", id, key, mode, cf, pid, ppid] => {
                by_id.insert((*id).to_owned(), runs.len());
                runs.push(RunRec {
                    id: (*id).to_owned(),
                    key: key.trim_start_matches('k').parse().unwrap_or(usize::MAX),
                    fail: *mode == "fail",
                    cf: *cf == "y",
                    pid: pid.parse().unwrap_or(0),
                    ppid: ppid.parse().unwrap_or(0),
                    start: pos,
                    end: None,
                });
            }
            ["end", id, code] => {
                if let Some(&i) = by_id.get(*id) {
                    let run: &mut RunRec = &mut runs[i];
                    run.end = Some((pos, code.parse().unwrap_or(-1)));
                }
            }
            _ => {}
        }
    }
    Log { runs, by_id, len }
}

/// Moves an entry's finish time by `delta_ms`; an entry replaced or removed meanwhile is left alone.
/// When the result stored at `path` (an entry or a failure record) finished.
fn finished_of(path: &Path) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let mut bytes = [0u8; 8];
    let file = fs::File::open(path).ok()?;
    file.read_exact_at(&mut bytes, FINISHED_OFFSET).ok()?;
    Some(u64::from_le_bytes(bytes))
}

fn shift_finished(path: &Path, delta_ms: i64) {
    use std::os::unix::fs::FileExt;
    let Ok(file) = fs::OpenOptions::new().read(true).write(true).open(path) else {
        return;
    };
    let mut bytes = [0u8; 8];
    if file.read_exact_at(&mut bytes, FINISHED_OFFSET).is_err() {
        return;
    }
    let finished = u64::from_le_bytes(bytes).saturating_add_signed(delta_ms);
    let _ = file.write_all_at(&finished.to_le_bytes(), FINISHED_OFFSET);
}

/// stdout, stderr and exit status stored in a whole entry file.
fn read_entry(path: &Path) -> Option<(Vec<u8>, Vec<u8>, i32)> {
    let bytes = fs::read(path).ok()?;
    let preamble = Preamble::decode(&bytes, bytes.len() as u64).ok()?;
    let out = preamble.stdout_start() as usize;
    let err = preamble.stderr_start() as usize;
    Some((
        bytes[out..out + preamble.stdout_len as usize].to_vec(),
        bytes[err..err + preamble.stderr_len as usize].to_vec(),
        preamble.exit_code,
    ))
}

fn exit_status(code: i32) -> std::process::ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    std::process::ExitStatus::from_raw((code & 0xff) << 8)
}

/// Whether some process holds the flock on `path` (tried with a shared lock, which a held one refuses).
fn lock_held(path: &Path) -> bool {
    let Ok(file) = fs::File::open(path) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
    !taken
}

/// Processes with `path` open, with their command lines: who holds a lock nobody should.
fn holders(path: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target == path))
        {
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push(format!(
                "{}: {}",
                entry.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}
