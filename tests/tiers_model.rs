//! One seeded operation sequence, run against one host and against fleets of
//! hosts sharing a store, checked by one invariant checker.
//!
//! `tests/model.rs` checks the local cache alone and `fleet.rs`'s CLI model
//! checks a fleet with one entry; this model draws one sequence of operations
//! (misses, hits, stale hits by ageing or by a short `--ttl`, `--no-wait`,
//! `--force`, failing runs, `invalidate`, a host that loses its cache,
//! concurrent callers on one or several hosts, sequential calls, and for a
//! fleet forged leases and headers and values stamped far ahead) and runs it
//! on every topology:
//!
//! 1. `local`: one host, no store (every logical host is that host);
//! 2. `pair`: two hosts sharing a `redis-server`;
//! 3. `skewed`: three hosts sharing it, one clock 10 min ahead, one 10 min
//!    behind (a build with `--cfg cacheback_test_clock` only, which shifts
//!    `clock::now_ms()` by `CACHEBACK_TEST_CLOCK_OFFSET_MS`; without it this
//!    topology is left out with one note);
//! 4. `proxied`: two hosts reaching the store through a TCP proxy
//!    (tests/store_proxy.rs), which for the "fault" operations delays,
//!    trickles, stalls or drops the store's replies.
//!
//! The fixture command logs `start ID KEY MODE HOST PID PPID` and `end ID
//! STATUS` lines to the shared `$W/log` (one short append is atomic, so the
//! log's order is the real order) and prints `vID` (or `fID`, exit 3) and
//! `eID` on stderr: every output names the run that made it. The sequence
//! settles (every process gone) after each operation, so the runs an
//! operation caused are the runs logged since it began.
//!
//! The invariants, for every topology (weaker forms where noted, and why
//! beside each check):
//! - every caller's stdout, stderr and status are one whole, ended run's of
//!   its key (at most one `cacheback:` warning line where the store was
//!   faulty or forged, none otherwise); `--force` prints its own run;
//! - while its host holds a value (or, with a healthy store, the fleet does),
//!   no caller gets a failure, none runs the command in the foreground, and
//!   `--no-wait` prints no placeholder (for `--no-wait`, the host's value
//!   only: it never waits for the store's round trip);
//! - a host never serves a run that ended before one it served earlier, nor
//!   one that ended before its own `invalidate` (a host that lost its cache
//!   starts over), whatever its clock says;
//! - runs of one key never overlap on one host; with the store reachable
//!   they never overlap fleet-wide, except a `--force` run (which takes the
//!   lease only if it is free); a store fault sends hosts to their local
//!   rules, so there runs on different hosts may overlap;
//! - an operation runs a key's command at most once (plus once per `--force`
//!   caller) fleet-wide: concurrent callers share a miss or a stale period;
//!   a wrong clock or a forged value or lease may cost one more, never one
//!   per call; with a store fault, at most once per host; with a failing
//!   command (whose failure stores no value), at most once per caller;
//! - a caller through a faulty store finishes within [`FAULT_CALLER_LIMIT`];
//! - after settling no process lingers, every run ended, no local lock and
//!   no fleet lease is held, and a forged lease without expiry that a caller
//!   waited for was given one.
//!
//! `CACHEBACK_TIERS_MODEL_SEED` fixes the master seed (sequence 0 is the
//! master seed itself), `CACHEBACK_TIERS_MODEL_SEQUENCES` the number of
//! random sequences (instead of the time budget),
//! `CACHEBACK_TIERS_MODEL_SECS` the budget (default 20 s, or
//! `CACHEBACK_MODEL_SECS` when smaller, as the shorter CI suites set it) and
//! `CACHEBACK_TIERS_MODEL_TOPOLOGY` one topology by name. A failure prints
//! the command line that replays it.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use crate::harness::{
    BIN, SplitMix, backdate_file, finish_within, installed, processes_with_env, wait_until,
};
use crate::redis_harness::{RedisServer, STORE_VARIABLES};
use crate::store_proxy::{Fault, Proxy};

const KEYS: usize = 2;
const LOGICAL_HOSTS: u64 = 3;
/// The fleet lease the hosts use: short, so a forged or dead lease is cut
/// and gone within the settling deadline.
const LEASE: &str = "2s";
/// The store timeout of healthy steps: generous, so a busy 2-core machine is
/// not taken for a store that is down.
const PATIENT: &str = "5s";
/// The store timeout of fault steps: replies after the first then get 10x
/// this, at least 2 s (docs/fleet.md), which bounds what a stall costs.
const IMPATIENT: &str = "250ms";
/// How long a caller through a faulty store may take, all told: generous
/// (the docs' arithmetic gives about 3 s), for a loaded machine.
const FAULT_CALLER_LIMIT: Duration = Duration::from_secs(12);
/// Any other caller: a hang, not slowness, is what this catches.
const CALLER_LIMIT: Duration = Duration::from_secs(60);
/// Background work (refreshes, publishes, a forged lease cut to `LEASE` and
/// expiring) must be over within this.
const SETTLE_LIMIT: Duration = Duration::from_secs(40);
const PLACEHOLDER: &str = "P";
/// How far the skewed topology's clocks are off.
const SKEW_MS: i64 = 600_000;

/// Sequence seeds run on every test run, each in full (a sequence is a fixed
/// number of operations drawn from its seed, whatever the machine's speed).
/// Add a seed here when a random run finds a bug, with what it found.
const FIXED_SEEDS: &[(u64, &str)] = &[
    (
        14,
        "--force on two hosts at once, with clocks 10 min apart: the runs overlap (a forced run \
         takes the lease only if free), and a shifted host took the fleet's older value over \
         its own unpublished one while a run's finish time came from the system clock rather \
         than the (shifted) clock::now_ms",
    ),
    (
        22,
        "forged header, lease without expiry and a value stamped a year ahead, each under \
         stale callers on both hosts",
    ),
    (
        23,
        "the proxy trickles, stalls and delays replies under misses on every host",
    ),
    (
        1_796_435_139_460_321_873,
        "a lease forged without expiry under --force callers only, which ran beside it without \
         cutting it (run --force now cuts it)",
    ),
    (
        8_363_661_957_928_704_786,
        "a lease forged without expiry under callers that copied the fleet's fresh value: \
         none needed the lease, so none cut it (the check now asks that only of a caller \
         with no value on its host nor in the fleet)",
    ),
    (
        14_917_153_671_056_560_939,
        "(skewed) a plain miss waited on its host's lock for a --force run, which failed, and \
         printed that failure though the fleet held a value: a waiter whose run failed now \
         copies a usable fleet value first (two_tier::fill_if_usable)",
    ),
];

#[test]
fn tiers_model_fixed_sequences_keep_the_invariants() {
    let mut ops = 0;
    for &(seed, what) in FIXED_SEEDS {
        println!("tiers model: fixed sequence seed {seed} ({what})");
        ops += run_sequence(seed);
    }
    println!(
        "tiers model: {} fixed sequences, {ops} operations per topology",
        FIXED_SEEDS.len()
    );
}

#[test]
fn tiers_model_random_sequences_keep_the_invariants() {
    let master = env_u64("CACHEBACK_TIERS_MODEL_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let count = env_u64("CACHEBACK_TIERS_MODEL_SEQUENCES");
    let secs = env_u64("CACHEBACK_TIERS_MODEL_SECS")
        .unwrap_or_else(|| env_u64("CACHEBACK_MODEL_SECS").map_or(20, |s| s.min(20)));
    let budget = Duration::from_secs(secs);
    println!("tiers model: master seed {master} (CACHEBACK_TIERS_MODEL_SEED={master} to repeat)");
    let started = Instant::now();
    let (mut sequences, mut ops) = (0u64, 0usize);
    loop {
        match count {
            Some(count) if sequences >= count => break,
            None if sequences > 0 && started.elapsed() >= budget => break,
            _ => {}
        }
        ops += run_sequence(sequence_seed(master, sequences));
        sequences += 1;
    }
    println!(
        "tiers model: {sequences} random sequences, {ops} operations per topology in {:.1}s (master seed {master})",
        started.elapsed().as_secs_f64()
    );
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Sequence 0 is the master seed itself, so a failing sequence's seed as the
/// master seed with one sequence replays exactly it.
fn sequence_seed(master: u64, index: u64) -> u64 {
    if index == 0 {
        master
    } else {
        SplitMix(master ^ index.wrapping_mul(0xa076_1d64_78bd_642f)).next()
    }
}

/// Draws and runs one sequence on every topology this build and machine
/// offer; returns its number of operations.
fn run_sequence(seed: u64) -> usize {
    let ops = generate(seed);
    let only = std::env::var("CACHEBACK_TIERS_MODEL_TOPOLOGY").ok();
    for topology in Topology::ALL {
        if only.as_deref().is_some_and(|name| name != topology.name()) {
            continue;
        }
        if topology == Topology::Skewed && !cfg!(cacheback_test_clock) {
            static NOTE: std::sync::Once = std::sync::Once::new();
            NOTE.call_once(|| {
                println!(
                    "tiers model: note: the skewed-clock topology needs a build with --cfg cacheback_test_clock (the portable suite of .ci/run has it); left out"
                );
            });
            continue;
        }
        let Some(world) = World::new(topology) else {
            return ops.len(); // no redis-server: skipped, said so
        };
        Checker::new(seed, world).run(&ops);
    }
    ops.len()
}

// ---------------------------------------------------------------- operations

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Plain,
    NoWait,
    Force,
}

/// What is written into the store by hand (redis-cli), as a script, another
/// program or an older cacheback might.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forge {
    /// A lease with no expiry.
    Lease,
    /// A value header whose stdout length overflows.
    Header,
    /// The value stamped a year ahead.
    Future,
}

/// What the proxy does to the store's replies, after passing `pass` bytes of
/// each connection's replies whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreFault {
    /// Every reply held about 100 ms (a trickle too fast to matter otherwise).
    Delay,
    /// 50 bytes a second.
    Trickle,
    Stall,
    Drop,
}

/// What an operation does before its callers start.
#[derive(Debug, Clone, Copy)]
enum Prep {
    None,
    /// `$W/mode-kKEY`: the command fails or not, and sleeps or not.
    Mode {
        key: usize,
        fail: bool,
        slow: bool,
    },
    /// Every copy of the key, local and fleet, made two hours older.
    Age(usize),
    /// The local entry of the key removed from the logical host, or from
    /// every host (a host that lost or never had its cache): its callers
    /// miss, and go to the store.
    Wipe(Option<usize>, usize),
    /// `cacheback invalidate` on the logical host.
    Invalidate(usize, usize),
    /// Forged into the store, and every copy aged so callers go to the store.
    Forge(Forge, usize),
}

/// One operation: a preparation, then callers (logical host, key, flavor),
/// all at once or one after another.
#[derive(Debug, Clone)]
struct Op {
    prep: Prep,
    callers: Vec<(usize, usize, Flavor)>,
    sequential: bool,
    /// Wait past a 1 s TTL and call with `--ttl 1s`: a stale period by time.
    short_ttl: bool,
    /// For the proxied topology: the store's replies misbehave during this
    /// operation (the others run it through a healthy store).
    fault: Option<(StoreFault, usize)>,
}

fn generate(seed: u64) -> Vec<Op> {
    let mut rng = SplitMix(seed);
    let count = 8 + rng.below(6) as usize;
    let mut ops = Vec::new();
    for _ in 0..count {
        let key = rng.below(KEYS as u64) as usize;
        let host = rng.below(LOGICAL_HOSTS) as usize;
        let mut op = Op {
            prep: Prep::None,
            callers: Vec::new(),
            sequential: false,
            short_ttl: false,
            fault: None,
        };
        let group = |rng: &mut SplitMix| -> Vec<(usize, usize, Flavor)> {
            (0..1 + rng.below(5))
                .map(|_| {
                    let k = if rng.chance(80) {
                        key
                    } else {
                        rng.below(KEYS as u64) as usize
                    };
                    let flavor = match rng.below(100) {
                        0..=69 => Flavor::Plain,
                        70..=84 => Flavor::NoWait,
                        _ => Flavor::Force,
                    };
                    (rng.below(LOGICAL_HOSTS) as usize, k, flavor)
                })
                .collect()
        };
        match rng.below(100) {
            0..=11 => {
                op.prep = Prep::Mode {
                    key,
                    fail: rng.chance(35),
                    slow: rng.chance(50),
                };
            }
            12..=19 => {
                op.prep = Prep::Invalidate(host, key);
                op.callers = group(&mut rng);
            }
            20..=31 => {
                op.prep = Prep::Age(key);
                op.callers = group(&mut rng);
            }
            32..=39 => {
                op.prep = Prep::Wipe(Some(host), key);
                op.callers = group(&mut rng);
            }
            40..=49 => {
                let forge = [Forge::Lease, Forge::Header, Forge::Future][rng.below(3) as usize];
                op.prep = Prep::Forge(forge, key);
                op.callers = group(&mut rng);
            }
            50..=59 => {
                let fault = [
                    StoreFault::Delay,
                    StoreFault::Trickle,
                    StoreFault::Stall,
                    StoreFault::Drop,
                ][rng.below(4) as usize];
                let pass = [0, 40, 200, 1000][rng.below(4) as usize];
                op.fault = Some((fault, pass));
                op.prep = if rng.chance(50) {
                    Prep::Age(key)
                } else {
                    Prep::Wipe(None, key)
                };
                op.callers = group(&mut rng);
            }
            60..=67 => {
                // Calls one after another on every host: a run per call
                // (a clock or a stamp that never lets a value be fresh)
                // shows here, where concurrent callers would share one.
                op.sequential = true;
                op.callers = (0..2)
                    .flat_map(|_| (0..LOGICAL_HOSTS as usize).map(|h| (h, key, Flavor::Plain)))
                    .collect();
            }
            68..=73 => {
                op.short_ttl = true;
                op.callers = group(&mut rng);
            }
            _ => op.callers = group(&mut rng),
        }
        ops.push(op);
    }
    ops
}

// ---------------------------------------------------------------- the fixture

/// Key `key`'s command. Its argv never changes (so neither does its cache
/// key, on any host); what it does is read from `$W/mode-kKEY` ("ok|fail
/// SLEEP") when it starts.
fn script(key: usize) -> String {
    format!(
        "K=k{key}; read -r id < /proc/sys/kernel/random/uuid; id=${{id%%-*}}; \
         read -r m s < \"$W/mode-$K\"; \
         echo \"start $id $K $m $H $$ $PPID\" >> \"$W/log\"; \
         [ \"$s\" = 0 ] || sleep \"$s\"; \
         if [ \"$m\" = fail ]; then echo \"f$id\"; echo \"e$id\" >&2; echo \"end $id 3\" >> \"$W/log\"; exit 3; fi; \
         echo \"v$id\"; echo \"e$id\" >&2; echo \"end $id 0\" >> \"$W/log\""
    )
}

/// Each key's cache key in hex (the same on every host, and in the store's
/// key names), learned once from a scratch cache directory.
fn key_hex(key: usize) -> &'static str {
    static HEX: OnceLock<Vec<String>> = OnceLock::new();
    &HEX.get_or_init(|| {
        let scratch = tempfile::tempdir().unwrap();
        let host = Host::new("scratch", &scratch.path().join("cache"), scratch.path(), 0);
        (0..KEYS)
            .map(|key| {
                fs::write(scratch.path().join(format!("mode-k{key}")), "ok 0\n").unwrap();
                let out = host.call_args(key, Flavor::Plain, false).output().unwrap();
                assert!(out.status.success(), "scratch run: {out:?}");
                let found = fs::read_dir(scratch.path().join("cache"))
                    .unwrap()
                    .flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .strip_suffix(".entry")
                            .map(str::to_owned)
                    })
                    .find(|hex| !hex.is_empty() && hex.len() >= 32)
                    .expect("the scratch run stored an entry");
                fs::remove_file(scratch.path().join("cache").join(format!("{found}.entry")))
                    .unwrap();
                found
            })
            .collect()
    })[key]
}

// ---------------------------------------------------------------- topologies

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    Local,
    Pair,
    Skewed,
    Proxied,
}

impl Topology {
    const ALL: [Topology; 4] = [
        Topology::Local,
        Topology::Pair,
        Topology::Skewed,
        Topology::Proxied,
    ];

    fn name(self) -> &'static str {
        match self {
            Topology::Local => "local",
            Topology::Pair => "pair",
            Topology::Skewed => "skewed",
            Topology::Proxied => "proxied",
        }
    }
}

/// One host: a cache directory, a name (`$H`), the fleet's shared `$W`, and
/// its store settings.
struct Host {
    name: String,
    dir: PathBuf,
    work: PathBuf,
    env: Vec<(String, String)>,
}

impl Host {
    fn new(name: &str, dir: &Path, work: &Path, clock_offset_ms: i64) -> Host {
        let mut env = Vec::new();
        if clock_offset_ms != 0 {
            env.push((
                "CACHEBACK_TEST_CLOCK_OFFSET_MS".into(),
                clock_offset_ms.to_string(),
            ));
        }
        Host {
            name: name.into(),
            dir: dir.to_owned(),
            work: work.to_owned(),
            env,
        }
    }

    /// `cacheback` with this host's environment, and `overrides` on top.
    fn cmd(&self, overrides: &[(String, String)]) -> Command {
        let mut cmd = Command::new(BIN);
        for name in STORE_VARIABLES {
            cmd.env_remove(name);
        }
        cmd.env_remove("CACHEBACK_TEST_CLOCK_OFFSET_MS")
            .env("CACHEBACK_DIR", &self.dir)
            .env("W", &self.work)
            .env("H", &self.name)
            .envs(self.env.iter().map(|(n, v)| (n, v)))
            .envs(overrides.iter().map(|(n, v)| (n, v)))
            .current_dir(&self.work)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// `cacheback run` of key `key`'s command.
    fn call_args(&self, key: usize, flavor: Flavor, short_ttl: bool) -> Command {
        let mut cmd = self.cmd(&[]);
        cmd.args([
            "run",
            "--ttl",
            if short_ttl { "1s" } else { "1h" },
            "--name",
            &format!("k{key}"),
        ]);
        match flavor {
            Flavor::NoWait => {
                cmd.args(["--no-wait", "--placeholder", PLACEHOLDER]);
            }
            Flavor::Force => {
                cmd.arg("--force");
            }
            Flavor::Plain => {}
        }
        cmd.args([OsStr::new("--"), OsStr::new("sh"), OsStr::new("-c")])
            .arg(script(key));
        cmd
    }

    fn entry(&self, key: usize) -> PathBuf {
        self.dir.join(format!("{}.entry", key_hex(key)))
    }
}

/// A topology's hosts, store and proxy, and the shared work directory.
struct World {
    topology: Topology,
    root: tempfile::TempDir,
    hosts: Vec<Host>,
    /// The proxied topology's healthy proxy, which the hosts' URL names:
    /// kept here for as long as they use it (declared before the server, so
    /// it stops forwarding first).
    _proxy: Option<Proxy>,
    redis: Option<RedisServer>,
}

impl World {
    /// `None` when a fleet topology cannot have its redis-server (the
    /// harness says it skipped, or fails under `CACHEBACK_TESTS_NEED_ALL`).
    fn new(topology: Topology) -> Option<World> {
        let root = tempfile::Builder::new()
            .prefix("cacheback-tiers-")
            .tempdir()
            .unwrap();
        let work = root.path().join("work");
        fs::create_dir(&work).unwrap();
        let test = format!("tiers_model::{}", topology.name());
        let (redis, proxy) = if topology == Topology::Local {
            (None, None)
        } else {
            if !installed("redis-cli", &test) {
                return None;
            }
            let redis = RedisServer::start(&[], &test)?;
            // A proxy that passes everything: the proxied topology's healthy
            // steps go through a proxy too.
            let proxy = (topology == Topology::Proxied)
                .then(|| Proxy::start(redis.port, usize::MAX, Fault::Stall));
            (Some(redis), proxy)
        };
        let offsets: &[i64] = match topology {
            Topology::Local => &[0],
            Topology::Pair | Topology::Proxied => &[0, 0],
            Topology::Skewed => &[0, SKEW_MS, -SKEW_MS],
        };
        let url = proxy
            .as_ref()
            .map(Proxy::url)
            .or_else(|| redis.as_ref().map(RedisServer::url));
        let hosts = offsets
            .iter()
            .enumerate()
            .map(|(i, &offset)| {
                let name = format!("h{i}");
                let mut host = Host::new(&name, &root.path().join(&name), &work, offset);
                if let Some(url) = &url {
                    host.env.extend([
                        ("CACHEBACK_STORE".into(), url.clone()),
                        ("CACHEBACK_STORE_LEASE".into(), LEASE.into()),
                        ("CACHEBACK_STORE_TIMEOUT".into(), PATIENT.into()),
                    ]);
                }
                host
            })
            .collect();
        for key in 0..KEYS {
            fs::write(work.join(format!("mode-k{key}")), "ok 0\n").unwrap();
        }
        fs::write(work.join("log"), "").unwrap();
        Some(World {
            topology,
            root,
            hosts,
            _proxy: proxy,
            redis,
        })
    }

    fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    /// The real host a logical host maps to.
    fn real(&self, logical: usize) -> usize {
        logical % self.hosts.len()
    }

    fn fleet(&self) -> bool {
        self.redis.is_some()
    }

    /// Every live process of this world: callers, refreshers, commands.
    fn processes(&self) -> Vec<u32> {
        processes_with_env(format!("W={}", self.work().display()).as_bytes())
    }

    fn redis_key(key: usize, part: &str) -> String {
        format!("cacheback:{{{}}}:{part}", key_hex(key))
    }

    fn cli(&self, args: &[&str]) -> String {
        self.redis
            .as_ref()
            .map_or_else(String::new, |redis| redis.cli_text(args).trim().to_owned())
    }

    fn leases(&self) -> Vec<String> {
        self.redis
            .as_ref()
            .map_or_else(Vec::new, |redis| redis.scan_keys("cacheback:*:lease"))
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // A failed check leaves processes behind: end them by pid.
        for pid in self.processes() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
        }
    }
}

// ---------------------------------------------------------------- the log

/// One execution of a fixture command, as the log tells it.
#[derive(Debug, Clone)]
struct RunRec {
    id: String,
    key: usize,
    fail: bool,
    host: String,
    ppid: u32,
    start: usize,
    /// Log position of its `end` line, and its status.
    end: Option<(usize, i32)>,
}

struct Log {
    runs: Vec<RunRec>,
    by_id: HashMap<String, usize>,
    len: usize,
}

impl Log {
    fn read(world: &World) -> Log {
        let text = fs::read_to_string(world.work().join("log")).unwrap_or_default();
        let mut log = Log {
            runs: Vec::new(),
            by_id: HashMap::new(),
            len: 0,
        };
        for (pos, line) in text.lines().enumerate() {
            log.len = pos + 1;
            match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["start", id, key, mode, host, _pid, ppid] => {
                    log.by_id.insert((*id).to_owned(), log.runs.len());
                    log.runs.push(RunRec {
                        id: (*id).to_owned(),
                        key: key.trim_start_matches('k').parse().unwrap_or(usize::MAX),
                        fail: *mode == "fail",
                        host: (*host).to_owned(),
                        ppid: ppid.parse().unwrap_or(0),
                        start: pos,
                        end: None,
                    });
                }
                ["end", id, status] => {
                    if let Some(&i) = log.by_id.get(*id) {
                        log.runs[i].end = Some((pos, status.parse().unwrap_or(-1)));
                    }
                }
                _ => {}
            }
        }
        log
    }

    fn get(&self, id: &str) -> Option<&RunRec> {
        self.by_id.get(id).map(|&i| &self.runs[i])
    }
}

// ---------------------------------------------------------------- the checker

/// One finished caller, as the checker judges it.
struct Called {
    host: usize,
    key: usize,
    flavor: Flavor,
    pid: u32,
    took: Duration,
    out: Output,
    /// The model's state for its host and key when it started.
    has: bool,
    fleet_has: bool,
    served_end: usize,
}

/// What an operation's conditions allow.
#[derive(Debug, Clone, Copy)]
struct Allow {
    /// The store's replies misbehaved: hosts fall back to their local rules.
    fault: bool,
    /// A forged value or lease, or a wrong clock: one more run per key.
    extra_run: bool,
    /// Warning lines a caller may print (a store fault, a forged header).
    warnings: usize,
}

/// The model of one topology's run of a sequence, and its checks.
struct Checker {
    seed: u64,
    world: World,
    /// Per real host and key: a value is stored on that host for certain.
    has: Vec<[bool; KEYS]>,
    /// Per real host and key: the log position of the end of the newest run
    /// it served, or of its last `invalidate` (whichever is later).
    served_end: Vec<[usize; KEYS]>,
    done: Vec<String>,
}

impl Checker {
    fn new(seed: u64, world: World) -> Checker {
        let hosts = world.hosts.len();
        Checker {
            seed,
            world,
            has: vec![[false; KEYS]; hosts],
            served_end: vec![[0; KEYS]; hosts],
            done: Vec::new(),
        }
    }

    fn run(mut self, ops: &[Op]) {
        for (i, op) in ops.iter().enumerate() {
            if let Err(why) = self.op(op) {
                self.fail(i, &why);
            }
        }
        let log = Log::read(&self.world);
        println!(
            "tiers model: seed {} on {}: {} operations, {} runs",
            self.seed,
            self.world.topology.name(),
            ops.len(),
            log.runs.len()
        );
        if std::env::var_os("CACHEBACK_TIERS_MODEL_VERBOSE").is_some() {
            for (i, op) in self.done.iter().enumerate() {
                println!("  {i:2}. {op}");
            }
        }
    }

    fn fail(&mut self, at: usize, why: &str) -> ! {
        let topology = self.world.topology.name();
        let mut text = format!(
            "tiers model invariant broken on topology `{topology}` at operation {at}: {why}\n\nsequence seed {}; operations:\n",
            self.seed
        );
        for (i, op) in self.done.iter().enumerate() {
            let _ = writeln!(text, "  {i:2}. {op}");
        }
        let log = fs::read_to_string(self.world.work().join("log")).unwrap_or_default();
        let _ = write!(text, "\nthe runs log ($W/log):\n{log}");
        let flags = if cfg!(cacheback_portable) {
            "RUSTFLAGS=\"--cfg cacheback_portable --cfg cacheback_test_clock -D warnings\" CACHEBACK_REQUIRE_TUNED=0 CARGO_TARGET_DIR=target/portable "
        } else if cfg!(cacheback_test_clock) {
            "RUSTFLAGS=\"--cfg cacheback_test_clock\" "
        } else {
            ""
        };
        let _ = write!(
            text,
            "\nreplay: {flags}CACHEBACK_TIERS_MODEL_SEED={} CACHEBACK_TIERS_MODEL_SEQUENCES=1 CACHEBACK_TIERS_MODEL_TOPOLOGY={topology} cargo test --release tiers_model_random -- --nocapture\n",
            self.seed
        );
        panic!("{text}");
    }

    fn op(&mut self, op: &Op) -> Result<(), String> {
        let fleet = self.world.fleet();
        let proxied_fault = op
            .fault
            .filter(|_| self.world.topology == Topology::Proxied);
        let skewed = self.world.topology == Topology::Skewed;
        let mut allow = Allow {
            fault: proxied_fault.is_some(),
            extra_run: skewed,
            warnings: usize::from(proxied_fault.is_some()),
        };
        let mut text = String::new();
        let mut forged_lease = None;
        let mut forged_key = None;
        match op.prep {
            Prep::None => {}
            Prep::Mode { key, fail, slow } => {
                let mode = format!(
                    "{} {}\n",
                    if fail { "fail" } else { "ok" },
                    if slow { "0.3" } else { "0" }
                );
                fs::write(self.world.work().join(format!("mode-k{key}")), &mode).unwrap();
                let _ = write!(text, "mode k{key} = {}", mode.trim());
            }
            Prep::Age(key) => {
                self.age(key);
                let _ = write!(text, "age k{key} everywhere;");
            }
            Prep::Wipe(logical, key) => {
                let hosts: Vec<usize> = match logical {
                    Some(logical) => vec![self.world.real(logical)],
                    None => (0..self.world.hosts.len()).collect(),
                };
                for host in hosts {
                    let _ = fs::remove_file(self.world.hosts[host].entry(key));
                    self.has[host][key] = false;
                    // A host that lost its cache starts over: what it serves
                    // next may be older than what it served before the loss.
                    self.served_end[host][key] = 0;
                    let _ = write!(text, "wipe k{key} on h{host};");
                }
            }
            Prep::Invalidate(logical, key) => {
                let host = self.world.real(logical);
                let out = self.world.hosts[host]
                    .cmd(&[])
                    .args(["invalidate", "--", "sh", "-c", &script(key)])
                    .output()
                    .unwrap();
                let _ = write!(
                    text,
                    "invalidate k{key} on h{host} -> exit {:?} {:?};",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                );
                // Exit 1 with "no entry" when neither tier holds one.
                let nothing = out.status.code() == Some(1)
                    && String::from_utf8_lossy(&out.stderr).contains("no entry for");
                if !out.status.success() && !nothing {
                    return Err(format!("invalidate failed: {out:?}"));
                }
                self.has[host][key] = false;
                self.served_end[host][key] = Log::read(&self.world).len;
            }
            Prep::Forge(forge, key) => {
                let _ = write!(text, "forge {forge:?} for k{key}");
                if fleet {
                    // Aged first: the forged stamp must stay as written.
                    self.age(key);
                    let meta = World::redis_key(key, "meta");
                    let has_meta = self.world.cli(&["EXISTS", &meta]) == "1";
                    match forge {
                        Forge::Lease => {
                            let lease = World::redis_key(key, "lease");
                            self.world.cli(&["SET", &lease, "forged"]);
                            forged_lease = Some(lease);
                            forged_key = Some(key);
                            allow.extra_run = true;
                        }
                        Forge::Header if has_meta => {
                            self.world
                                .cli(&["HSET", &meta, "stdout_len", "18446744073709551615"]);
                            allow.extra_run = true;
                            allow.warnings = 1;
                        }
                        Forge::Future if has_meta => {
                            let ahead = now_ms() + 365 * 86_400_000;
                            self.world
                                .cli(&["HSET", &meta, "finished_ms", &ahead.to_string()]);
                            allow.extra_run = true;
                        }
                        Forge::Header | Forge::Future => text.push_str(" (no value to forge)"),
                    }
                }
                text.push(';');
            }
        }
        if op.short_ttl {
            // Past the 1 s TTL of this operation's callers.
            std::thread::sleep(Duration::from_millis(1100));
            text.push_str(" after 1.1 s, --ttl 1s;");
        }
        // Kept alive until the operation has settled: its refreshers use it.
        let fault_proxy = proxied_fault.map(|(fault, pass)| {
            let redis = self
                .world
                .redis
                .as_ref()
                .expect("a proxied topology has a store");
            let fault_of = match fault {
                StoreFault::Delay => Fault::Trickle(1_000_000),
                StoreFault::Trickle => Fault::Trickle(50),
                StoreFault::Stall => Fault::Stall,
                StoreFault::Drop => Fault::Drop,
            };
            let _ = write!(text, " store {fault:?} after {pass} bytes;");
            Proxy::start(redis.port, pass, fault_of)
        });
        let overrides: Vec<(String, String)> = fault_proxy
            .as_ref()
            .map(|proxy| {
                vec![
                    ("CACHEBACK_STORE".into(), proxy.url()),
                    ("CACHEBACK_STORE_TIMEOUT".into(), IMPATIENT.into()),
                ]
            })
            .unwrap_or_default();
        let fleet_has: [bool; KEYS] = std::array::from_fn(|key| {
            fleet
                && !allow.fault
                && self.world.cli(&["EXISTS", &World::redis_key(key, "meta")]) == "1"
        });
        let begin = Log::read(&self.world).len;
        let limit = if allow.fault {
            FAULT_CALLER_LIMIT
        } else {
            CALLER_LIMIT
        };
        let mut called = Vec::new();
        let mut verdict = Ok(());
        if op.sequential {
            for &(logical, key, flavor) in &op.callers {
                let checked = self
                    .call(
                        &[(logical, key, flavor)],
                        op.short_ttl,
                        &overrides,
                        &fleet_has,
                        limit,
                    )
                    .and_then(|mut one| {
                        let judged = self.judge_all(&one, allow);
                        called.append(&mut one);
                        judged
                    });
                if verdict.is_ok() {
                    verdict = checked;
                }
            }
        } else {
            verdict = self
                .call(&op.callers, op.short_ttl, &overrides, &fleet_has, limit)
                .and_then(|all| {
                    called = all;
                    self.judge_all(&called, allow)
                });
        }
        for c in &called {
            let _ = write!(
                text,
                " [h{} k{} {:?} pid {}{}{} {:.1}s -> exit {:?} out {:?} err {:?}]",
                c.host,
                c.key,
                c.flavor,
                c.pid,
                if c.has { " (has)" } else { "" },
                if c.fleet_has { " (fleet has)" } else { "" },
                c.took.as_secs_f64(),
                c.out.status.code(),
                String::from_utf8_lossy(&c.out.stdout),
                String::from_utf8_lossy(&c.out.stderr)
            );
        }
        self.done.push(text);
        verdict?;
        let settled = self.settle(forged_lease.as_deref());
        drop(fault_proxy);
        settled?;
        if let Some((lease, key)) = forged_lease.as_ref().zip(forged_key) {
            // A host that finds the lease taken cuts it to its own length
            // (finding 4 of issue 20): `--force` always asks for the lease
            // (it runs beside a taken one), any other caller only when it
            // has no value on its host nor in the fleet (a fresh copy, or a
            // fill from the fleet, never asks for it). A host backing off
            // from a failure takes none; then the forgery stays, and goes
            // by hand.
            let waited = called
                .iter()
                .any(|c| c.key == key && (c.flavor == Flavor::Force || (!c.has && !c.fleet_has)));
            let mode = fs::read_to_string(self.world.work().join(format!("mode-k{key}")))
                .unwrap_or_default();
            if self.world.cli(&["PTTL", lease]) == "-1" {
                if waited && mode.starts_with("ok ") {
                    return Err(format!(
                        "the forged lease {lease} still has no expiry after its callers and their refreshes"
                    ));
                }
                self.world.cli(&["DEL", lease]);
                if let Some(last) = self.done.last_mut() {
                    last.push_str(" (the forged lease, which no caller waited for, removed)");
                }
            }
            self.settle(None)?;
        }
        if allow.fault {
            // "30 s later": a store found down is tried again.
            for host in &self.world.hosts {
                if let Ok(marker) = fs::File::options()
                    .write(true)
                    .open(host.dir.join(".store-down"))
                {
                    let _ = marker.set_modified(SystemTime::now() - Duration::from_secs(31));
                }
            }
        }
        if fleet {
            self.repair_forgeries();
        }
        let log = Log::read(&self.world);
        let forcing: Vec<u32> = called
            .iter()
            .filter(|c| c.flavor == Flavor::Force)
            .map(|c| c.pid)
            .collect();
        self.check_runs(&log, begin, &op.callers, &forcing, allow)
    }

    /// Makes every copy of `key` two hours older: every host's local entry
    /// and the fleet's value.
    fn age(&mut self, key: usize) {
        for host in &self.world.hosts {
            if host.entry(key).exists() {
                backdate_file(&host.entry(key), 7200);
            }
        }
        let meta = World::redis_key(key, "meta");
        if self.world.fleet() {
            let finished = self.world.cli(&["HGET", &meta, "finished_ms"]);
            if let Ok(finished) = finished.parse::<u64>() {
                let aged = finished.saturating_sub(7_200_000).to_string();
                self.world.cli(&["HSET", &meta, "finished_ms", &aged]);
            }
        }
    }

    /// A forgery no caller replaced would weigh on the next operations,
    /// which expect a healthy store: it goes, as an operator would remove it.
    fn repair_forgeries(&mut self) {
        for key in 0..KEYS {
            let meta = World::redis_key(key, "meta");
            let stdout_len = self.world.cli(&["HGET", &meta, "stdout_len"]);
            let finished = self
                .world
                .cli(&["HGET", &meta, "finished_ms"])
                .parse::<u64>()
                .unwrap_or(0);
            if stdout_len.len() > 12 || finished > now_ms() + 60_000 {
                self.world.cli(&["DEL", &meta]);
            }
        }
    }

    /// Starts the callers at once and collects them, each within `limit`.
    fn call(
        &self,
        specs: &[(usize, usize, Flavor)],
        short_ttl: bool,
        overrides: &[(String, String)],
        fleet_has: &[bool; KEYS],
        limit: Duration,
    ) -> Result<Vec<Called>, String> {
        let started = Instant::now();
        let children: Vec<(usize, usize, Flavor, Child)> = specs
            .iter()
            .map(|&(logical, key, flavor)| {
                let host = self.world.real(logical);
                let mut cmd = self.world.hosts[host].call_args(key, flavor, short_ttl);
                cmd.envs(overrides.iter().map(|(n, v)| (n, v)));
                (host, key, flavor, cmd.spawn().unwrap())
            })
            .collect();
        // Each on its own thread: one caller's full pipe must not hold the
        // others (or the lock they wait on).
        let waits: Vec<_> = children
            .into_iter()
            .map(|(host, key, flavor, child)| {
                let pid = child.id();
                let what = format!("caller pid {pid} (h{host} k{key} {flavor:?})");
                // A caller past its deadline is killed and reported as a
                // broken invariant (with the replay line), not a bare panic.
                let waiting = std::thread::spawn(move || {
                    std::panic::catch_unwind(|| finish_within(child, limit, &what))
                        .map(|out| (out, started.elapsed()))
                        .map_err(|panic| {
                            panic
                                .downcast_ref::<String>()
                                .cloned()
                                .unwrap_or_else(|| "a caller's wait panicked".into())
                        })
                });
                (host, key, flavor, pid, waiting)
            })
            .collect();
        let finished: Vec<_> = waits
            .into_iter()
            .map(|(host, key, flavor, pid, waiting)| {
                let waited = waiting.join().unwrap_or_else(|panic| {
                    std::panic::resume_unwind(panic);
                });
                (host, key, flavor, pid, waited)
            })
            .collect();
        let mut called = Vec::new();
        for (host, key, flavor, pid, waited) in finished {
            let (out, took) = waited?;
            called.push(Called {
                host,
                key,
                flavor,
                pid,
                took,
                out,
                has: self.has[host][key],
                fleet_has: fleet_has[key],
                served_end: self.served_end[host][key],
            });
        }
        Ok(called)
    }

    /// Judges every caller of a group, then learns from them.
    fn judge_all(&mut self, called: &[Called], allow: Allow) -> Result<(), String> {
        let log = Log::read(&self.world);
        let mut learned = Vec::new();
        for c in called {
            let host = &self.world.hosts[c.host].name;
            match judge(&log, host, c, allow) {
                Ok(Some(end)) => learned.push((c.host, c.key, end)),
                Ok(None) => {}
                Err(why) => {
                    return Err(format!(
                        "caller pid {} on h{} (k{} {:?}): {why}",
                        c.pid, c.host, c.key, c.flavor
                    ));
                }
            }
        }
        for (host, key, end) in learned {
            self.has[host][key] = true;
            let floor = &mut self.served_end[host][key];
            *floor = (*floor).max(end);
        }
        Ok(())
    }

    /// Waits until no process of the world is left, every logged run has
    /// ended, no host's local lock and no fleet lease is held.
    fn settle(&self, forged_lease: Option<&str>) -> Result<(), String> {
        let quiet = || {
            self.world.processes().is_empty()
                && Log::read(&self.world).runs.iter().all(|r| r.end.is_some())
                && self
                    .world
                    .hosts
                    .iter()
                    .all(|h| !locks_in(&h.dir).iter().any(|p| lock_held(p)))
                && self
                    .world
                    .leases()
                    .iter()
                    .all(|lease| Some(lease.as_str()) == forged_lease)
        };
        if wait_until(SETTLE_LIMIT, quiet) {
            return Ok(());
        }
        let held: Vec<PathBuf> = self
            .world
            .hosts
            .iter()
            .flat_map(|h| locks_in(&h.dir))
            .filter(|p| lock_held(p))
            .collect();
        Err(format!(
            "not settled after {SETTLE_LIMIT:?}: processes {:?}, unended runs {:?}, local locks held {held:?}, fleet leases {:?}",
            self.world.processes(),
            Log::read(&self.world)
                .runs
                .iter()
                .filter(|r| r.end.is_none())
                .map(|r| &r.id)
                .collect::<Vec<_>>(),
            self.world
                .leases()
                .iter()
                .map(|l| format!("{l} (pttl {})", self.world.cli(&["PTTL", l])))
                .collect::<Vec<_>>()
        ))
    }

    /// The runs an operation caused (everything logged since it began: the
    /// sequence settled before it): how many, and whether any overlapped.
    fn check_runs(
        &self,
        log: &Log,
        begin: usize,
        callers: &[(usize, usize, Flavor)],
        forcing: &[u32],
        allow: Allow,
    ) -> Result<(), String> {
        let runs: Vec<&RunRec> = log.runs.iter().filter(|r| r.start >= begin).collect();
        for key in 0..KEYS {
            let of_key: Vec<&&RunRec> = runs.iter().filter(|r| r.key == key).collect();
            let forces = |host: Option<usize>| {
                callers
                    .iter()
                    .filter(|&&(l, k, f)| {
                        k == key
                            && f == Flavor::Force
                            && host.is_none_or(|h| self.world.real(l) == h)
                    })
                    .count()
            };
            let ids = |runs: &[&&RunRec]| {
                runs.iter()
                    .map(|r| format!("{}@{}", r.id, r.host))
                    .collect::<Vec<_>>()
            };
            if allow.fault {
                // The store misbehaved: each host falls back to its own
                // rules, one run per host (and per --force).
                for (h, host) in self.world.hosts.iter().enumerate() {
                    let here: Vec<&&RunRec> = of_key
                        .iter()
                        .filter(|r| r.host == host.name)
                        .copied()
                        .collect();
                    if here.len() > 1 + forces(Some(h)) {
                        return Err(format!(
                            "{} runs of k{key} on {} in one operation through a faulty store ({} --force callers there): {:?}",
                            here.len(),
                            host.name,
                            forces(Some(h)),
                            ids(&here)
                        ));
                    }
                }
            } else {
                // A failed run stores no value (no `--cache-failures` here),
                // so a caller that misses after it ended, rather than
                // waiting for it, runs the command again: with a failing
                // command only "at most one run per caller" holds (as
                // tests/model.rs checks coalescing for succeeding ones only).
                let failing = fs::read_to_string(self.world.work().join(format!("mode-k{key}")))
                    .unwrap_or_default()
                    .starts_with("fail");
                let callers_of_key = callers.iter().filter(|&&(_, k, _)| k == key).count();
                let most = if failing {
                    callers_of_key + 1
                } else {
                    1 + usize::from(allow.extra_run) + forces(None)
                };
                if of_key.len() > most {
                    return Err(format!(
                        "{} runs of k{key} fleet-wide in one operation, at most {most} allowed ({} --force callers{}): {:?}; concurrent callers must share a run",
                        of_key.len(),
                        forces(None),
                        if allow.extra_run {
                            ", one extra for a wrong clock or a forgery"
                        } else {
                            ""
                        },
                        ids(&of_key)
                    ));
                }
            }
            for (i, run) in of_key.iter().enumerate() {
                for other in &of_key[..i] {
                    let other_end = other.end.map_or(usize::MAX, |(end, _)| end);
                    if other_end < run.start {
                        continue;
                    }
                    // Runs on different hosts may overlap only where the
                    // store was unreachable (local rules on each host).
                    if other.host != run.host && allow.fault {
                        continue;
                    }
                    // `--force` takes the fleet lease only if it is free and
                    // runs either way (src/two_tier/miss.rs, `lease_if_free`;
                    // docs/reference.md: "after any running refresh", which
                    // is the host's own): it may overlap another host's run.
                    let forced = |r: &RunRec| forcing.contains(&r.ppid);
                    if other.host != run.host && (forced(run) || forced(other)) {
                        continue;
                    }
                    return Err(format!(
                        "runs {}@{} (log line {}) and {}@{} (log line {}) of k{key} overlapped{}",
                        other.id,
                        other.host,
                        other.start,
                        run.id,
                        run.host,
                        run.start,
                        if other.host == run.host {
                            " on one host"
                        } else {
                            " fleet-wide with the store healthy"
                        }
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The checks of one caller's output; returns the log position of the end
/// of the value's run when it served a value.
fn judge(log: &Log, host: &str, c: &Called, allow: Allow) -> Result<Option<usize>, String> {
    let code = c
        .out
        .status
        .code()
        .ok_or_else(|| format!("ended by a signal: {:?}", c.out.status))?;
    let text = String::from_utf8_lossy(&c.out.stdout);
    let all_err = String::from_utf8_lossy(&c.out.stderr);
    let warnings = all_err
        .lines()
        .filter(|l| l.starts_with("cacheback: "))
        .count();
    if warnings > allow.warnings {
        return Err(format!(
            "{warnings} warning lines, at most {} allowed here: {all_err:?}",
            allow.warnings
        ));
    }
    let err: String = all_err
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("cacheback: "))
        .collect();
    if allow.fault && c.took > FAULT_CALLER_LIMIT {
        return Err(format!("took {:?} through a faulty store", c.took));
    }
    // With a healthy store (and no forgery), a value the fleet holds counts
    // as stored for every host.
    let stored = c.has || (c.fleet_has && !allow.fault && allow.warnings == 0);
    if c.flavor == Flavor::NoWait && text == PLACEHOLDER {
        // A local miss only: `--no-wait` never waits, not even for the
        // store's round trip, so a value only the fleet holds reaches the
        // host in the background (docs/reference.md, `--no-wait`).
        if c.has {
            return Err(
                "--no-wait printed the placeholder (a miss) though the host held a value".into(),
            );
        }
        if code != 0 || !err.is_empty() {
            return Err(format!("--no-wait miss: exit {code}, stderr {all_err:?}"));
        }
        return Ok(None);
    }
    // A caller that waited for another caller's failed run gets its status
    // and stderr, never its stdout.
    if text.is_empty() && code == 3 && c.flavor != Flavor::Force {
        let run = err
            .strip_prefix('e')
            .and_then(|rest| rest.strip_suffix('\n'))
            .and_then(|id| log.get(id))
            .ok_or_else(|| {
                format!("a failure's stderr {all_err:?} is the stderr of no logged run")
            })?;
        if run.key != c.key || !run.fail || run.end.map(|(_, s)| s) != Some(3) {
            return Err(format!(
                "a failure replayed with stderr {all_err:?}, not a failed, ended run of k{}",
                c.key
            ));
        }
        if stored {
            return Err(format!(
                "a failure (run {}) reached a caller without --cache-failures though a value was stored",
                run.id
            ));
        }
        return Ok(None);
    }
    let value = text
        .strip_suffix('\n')
        .filter(|v| !v.contains('\n'))
        .ok_or_else(|| format!("stdout is not one whole value: {text:?} (stderr {all_err:?})"))?;
    let (fail, id) = match value.split_at_checked(1) {
        Some(("v", id)) => (false, id),
        Some(("f", id)) => (true, id),
        _ => return Err(format!("stdout is not a value: {text:?}")),
    };
    if err != format!("e{id}\n") {
        return Err(format!(
            "stderr {all_err:?} is not the stderr of the run that printed {value:?} (a mix)"
        ));
    }
    let run = log
        .get(id)
        .ok_or_else(|| format!("{value:?} is the output of no logged run"))?;
    if run.key != c.key {
        return Err(format!("{value:?} belongs to k{}", run.key));
    }
    let Some((end, status)) = run.end else {
        return Err(format!("{value:?} comes from a run that has not ended"));
    };
    let expected = if fail { 3 } else { 0 };
    if run.fail != fail || status != expected || code != expected {
        return Err(format!(
            "{value:?} with exit {code}: its run exited {status} (mode fail: {})",
            run.fail
        ));
    }
    let own = run.ppid == c.pid && run.host == host;
    if c.flavor == Flavor::Force {
        if !own {
            return Err(format!(
                "--force printed {value:?}, not its own run's output"
            ));
        }
        return Ok((!fail).then_some(end));
    }
    if own && (stored || c.flavor == Flavor::NoWait) {
        return Err(format!(
            "ran the command in the foreground (a miss) though a value was stored (on the host: {}, in the fleet: {}): {value:?}",
            c.has, c.fleet_has
        ));
    }
    if fail && stored {
        return Err(format!(
            "a failure {value:?} reached a caller without --cache-failures though a value was stored"
        ));
    }
    if !fail && end < c.served_end {
        return Err(format!(
            "{value:?} (run ended at log line {end}) is older than a value this host served before or predates its invalidate (line {})",
            c.served_end
        ));
    }
    Ok((!fail).then_some(end))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A host's lock files.
fn locks_in(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".lock"))
        .collect()
}

/// Whether some process holds the flock on `path` (a shared lock is refused).
fn lock_held(path: &Path) -> bool {
    let Ok(file) = fs::File::open(path) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
    !taken
}
