//! The fleet tier through the binary: several "hosts" (each a cache
//! directory of its own) sharing one real `redis-server` on loopback, real
//! concurrent callers, real `kill -9`s and a server that is killed, stopped
//! and restarted under them. Written from the contract of `--store`
//! (README: the fleet store); every test skips where redis-server is missing.
//!
//! Every host runs the same argv, so the same entry; what differs between
//! hosts is the environment, which is not part of the key: `$H` names the
//! host, `$W` is a work directory shared by the whole fleet. The standard
//! command ([`body`]) appends a token `HOST.PID` to `$W/runs` and prints it,
//! so `$W/runs` lists every execution fleet-wide, and every value a caller
//! prints must be one of its lines.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::harness::{
    BIN, Bounded, BoundedChild, alive, backdate_file, gate, installed, processes_with_env,
    wait_until,
};
use crate::redis_harness::{RedisServer, STORE_VARIABLES};
use crate::store_proxy::{Fault, Proxy};

/// The fleet lease the tests give the hosts (`CACHEBACK_STORE_LEASE`).
const LEASE: &str = "2s";
/// Long enough for a dead lease to expire and its holder's waiters to notice.
const LEASE_GONE: Duration = Duration::from_secs(10);
/// The store's connect timeout in the tests that do not test it: generous,
/// so that 200 callers on a busy 2-core machine never fall back to the local
/// cache because the server was slow to be scheduled.
const PATIENT: &str = "2s";
/// Generous bound for background work (refreshes, fills) to be done.
const SETTLE: Duration = Duration::from_secs(20);

/// One fleet: a redis-server, a shared work dir, hosts made on demand.
struct Fleet {
    root: tempfile::TempDir,
    redis: RedisServer,
}

impl Fleet {
    /// `None` (the test skips, saying so) without redis-server or redis-cli.
    fn start(config: &[&str], test: &str) -> Option<Fleet> {
        if !installed("redis-cli", test) {
            return None;
        }
        let redis = RedisServer::start(config, test)?;
        let root = tempfile::Builder::new()
            .prefix("cacheback-fleet-")
            .tempdir()
            .unwrap();
        fs::create_dir(root.path().join("work")).unwrap();
        Some(Fleet { root, redis })
    }

    /// The work directory every host's commands share (`$W`).
    fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    /// A host: its own cache directory, the fleet's store.
    fn host(&self, name: &str) -> Host {
        Host {
            name: name.to_owned(),
            dir: self.root.path().join("hosts").join(name),
            work: self.work(),
            env: vec![
                ("CACHEBACK_STORE".into(), self.redis.url()),
                ("CACHEBACK_STORE_LEASE".into(), LEASE.into()),
                ("CACHEBACK_STORE_TIMEOUT".into(), PATIENT.into()),
            ],
        }
    }

    /// Every execution so far, fleet-wide: the tokens in `$W/runs`.
    fn runs(&self) -> Vec<String> {
        fs::read_to_string(self.work().join("runs"))
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Creates `$W/NAME` (a flag the command tests, or a gate it waits at).
    fn touch(&self, name: &str) {
        fs::write(self.work().join(name), "").unwrap();
    }

    fn remove(&self, name: &str) {
        let _ = fs::remove_file(self.work().join(name));
    }

    /// Reads a pid a command wrote to `$W/NAME`, waiting for it.
    #[track_caller]
    fn read_pid(&self, name: &str) -> u32 {
        let path = self.work().join(name);
        assert!(
            wait_until(Duration::from_secs(15), || fs::read_to_string(&path)
                .is_ok_and(|t| t.ends_with('\n'))),
            "{name} never appeared"
        );
        fs::read_to_string(&path).unwrap().trim().parse().unwrap()
    }

    /// Live processes of this fleet: callers, refreshers, commands.
    fn processes(&self) -> Vec<u32> {
        processes_with_env(format!("W={}", self.work().display()).as_bytes())
    }

    /// Waits until every caller, refresher and command has finished.
    fn settled(&self) -> bool {
        wait_until(SETTLE, || self.processes().is_empty())
    }

    /// The fleet's keys matching a pattern, in database 0.
    fn keys(&self, pattern: &str) -> Vec<String> {
        self.redis.scan_keys(pattern)
    }

    /// The one entry's Redis key for `part` (`lease`, `fail`, ...), from its
    /// `meta` key: `cacheback:{KEYHEX}:PART`.
    #[track_caller]
    fn key(&self, part: &str) -> String {
        let metas = self.keys("cacheback:*:meta");
        assert_eq!(metas.len(), 1, "expected one value in the fleet: {metas:?}");
        format!("{}:{part}", metas[0].strip_suffix(":meta").unwrap())
    }

    /// Waits until the fleet holds a value (a publish may finish after its
    /// caller has exited).
    #[track_caller]
    fn wait_published(&self) {
        assert!(
            wait_until(SETTLE, || !self.keys("cacheback:*:meta").is_empty()),
            "no value ever reached the fleet (no cacheback:*:meta key)"
        );
    }

    /// Makes the fleet's values `secs` older: every `finished_ms` in the
    /// `*:meta` hashes (or in `*:fail`, the failure records).
    fn age_in_store(&self, kind: &str, secs: u64) {
        for key in self.keys(&format!("cacheback:*:{kind}")) {
            let finished = self.redis.cli_text(&["HGET", &key, "finished_ms"]);
            let finished: u64 = finished
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{key} has no numeric finished_ms field: {finished:?}"));
            let aged = (finished - secs * 1000).to_string();
            self.redis.cli(&["HSET", &key, "finished_ms", &aged]);
        }
    }

    /// Makes the entry stale everywhere: on these hosts and in the fleet.
    fn age_all(&self, hosts: &[&Host], secs: u64) {
        for host in hosts {
            host.age(secs);
        }
        self.age_in_store("meta", secs);
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Whatever a failed test left running (gated commands, stopped
        // refreshers) is ours: end it by pid, woken first if stopped.
        for pid in self.processes() {
            signal(pid, nix::sys::signal::Signal::SIGKILL);
            signal(pid, nix::sys::signal::Signal::SIGCONT);
        }
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

fn signal_group(group: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group as i32), sig);
}

/// One host of a fleet: a cache directory and the store settings.
struct Host {
    name: String,
    dir: PathBuf,
    work: PathBuf,
    env: Vec<(String, String)>,
}

impl Host {
    /// The same host with one more (or a replaced) environment variable.
    fn with_env(mut self, name: &str, value: &str) -> Host {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.into(), value.into()));
        self
    }

    /// The same host without this variable.
    fn without_env(mut self, name: &str) -> Host {
        self.env.retain(|(n, _)| n != name);
        self
    }

    fn cmd(&self) -> Command {
        self.command(OsStr::new(BIN))
    }

    /// `program` with this host's environment (as `cacheback` would get it).
    fn command(&self, program: &OsStr) -> Command {
        let mut cmd = Command::new(program);
        for name in STORE_VARIABLES {
            cmd.env_remove(name);
        }
        cmd.env("CACHEBACK_DIR", &self.dir)
            .env("W", &self.work)
            .env("H", &self.name)
            .envs(self.env.iter().map(|(n, v)| (n, v)))
            .current_dir(&self.work)
            .stdin(Stdio::null());
        cmd
    }

    /// `cacheback run ARGS`, to completion.
    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.cmd().arg("run").args(args).bounded_output()
    }

    /// `cacheback run ARGS`, started with its output piped.
    fn spawn_run<S: AsRef<OsStr>>(&self, args: &[S]) -> Child {
        self.cmd()
            .arg("run")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `cacheback ARGS` (any subcommand), to completion.
    fn cacheback<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.cmd().args(args).bounded_output()
    }

    /// Makes this host's local entries `secs` older.
    fn age(&self, secs: u64) {
        for path in self.entries() {
            backdate_file(&path, secs);
        }
    }

    fn entries(&self) -> Vec<PathBuf> {
        let Ok(listing) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        listing
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_string_lossy().ends_with(".entry"))
            .collect()
    }

    /// The marker a caller leaves when it found the store down.
    fn down_marker(&self) -> PathBuf {
        self.dir.join(".store-down")
    }

    /// Whether this host's callers skip the store now: a marker younger than
    /// 30 s (an older one is retried, and removed, by the next caller).
    fn store_skipped(&self) -> bool {
        fs::metadata(self.down_marker())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < Duration::from_secs(30))
    }

    /// `stats --json`'s one entry.
    #[track_caller]
    fn stats_entry(&self) -> serde_json::Value {
        let out = self.cacheback(&["stats", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let entries = json["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{json}");
        entries[0].clone()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The standard command: appends its token (`HOST.PID`) to `$W/runs` and
/// prints it. With `$W/slow-HOST` it writes its pid (its process group) to
/// `$W/group-HOST` and its parent's (the refresher) to `$W/refresher-HOST`,
/// then holds at the gate `go-HOST`; with `$W/fail` it fails, exit 3.
fn body() -> String {
    format!(
        r#"t="$H.$$"; echo "$t" >> "$W/runs"; if [ -e "$W/slow-$H" ]; then echo $$ > "$W/group-$H"; echo $PPID > "$W/refresher-$H"; {}; fi; if [ -e "$W/fail" ]; then echo "boom $t" >&2; exit 3; fi; echo "$t""#,
        gate("go-$H")
    )
}

/// `OPTIONS -- sh -c BODY`.
fn call(options: &[&str], body: &str) -> Vec<String> {
    let mut args: Vec<String> = options.iter().map(|s| s.to_string()).collect();
    args.extend(["--", "sh", "-c", body].map(str::to_owned));
    args
}

/// `--ttl 1h -- sh -c BODY` with the standard body.
fn standard() -> Vec<String> {
    call(&["--ttl", "1h"], &body())
}

/// Asserts a caller printed exactly `value` (one line), quietly, exit 0.
#[track_caller]
fn assert_prints(output: &Output, value: &str, what: &str) {
    assert_eq!(
        text(&output.stdout),
        format!("{value}\n"),
        "{what}: stderr {:?}",
        text(&output.stderr)
    );
    assert!(output.status.success(), "{what}: {:?}", output.status);
    assert_eq!(text(&output.stderr), "", "{what}: no warning");
}

/// Primes the entry: host `first` runs it, and the others fill from the
/// fleet without running it. Returns the token.
#[track_caller]
fn prime(fleet: &Fleet, first: &Host, others: &[&Host]) -> String {
    let out = first.run(&standard());
    let runs = fleet.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_prints(&out, &runs[0], "the first run");
    fleet.wait_published();
    for host in others {
        assert_prints(
            &host.run(&standard()),
            &runs[0],
            &format!("host {} fills from the fleet", host.name),
        );
    }
    assert_eq!(fleet.runs().len(), 1, "a fill runs nothing");
    runs[0].clone()
}

/// Polls `host` (stale or fresh hits) until it prints `value`.
fn serves(host: &Host, value: &str) -> bool {
    wait_until(SETTLE, || {
        text(&host.run(&standard()).stdout) == format!("{value}\n")
    })
}

// ---------------------------------------------------------------------------
// 1. A fresh local copy never touches the store.
// ---------------------------------------------------------------------------

#[test]
fn a_fresh_local_copy_is_served_without_the_store_even_when_it_is_down() {
    let Some(mut fleet) = Fleet::start(&[], "fleet::a_fresh_local_copy") else {
        return;
    };
    // A hit that asked the store anything would wait out this timeout.
    let a = fleet.host("a").with_env("CACHEBACK_STORE_TIMEOUT", "5s");
    let value = prime(&fleet, &a, &[]);
    fleet.redis.pause();
    let started = Instant::now();
    let hit = a.run(&standard());
    let took = started.elapsed();
    fleet.redis.resume();
    assert_prints(&hit, &value, "a fresh hit with the store stopped");
    assert!(
        took < Duration::from_millis(2500),
        "a fresh hit took {took:?}: it waited for the stopped store (timeout 5 s)"
    );
    fleet.redis.kill();
    assert_prints(&a.run(&standard()), &value, "a fresh hit, store gone");
    assert!(
        !a.down_marker().exists(),
        "a fresh hit never tried the store"
    );
    assert_eq!(fleet.runs().len(), 1);
}

// ---------------------------------------------------------------------------
// 3. A local miss is filled from the fleet.
// ---------------------------------------------------------------------------

#[test]
fn a_local_miss_is_filled_from_the_fleet_with_its_output_status_and_age() {
    let Some(fleet) = Fleet::start(&[], "fleet::a_local_miss_is_filled") else {
        return;
    };
    let (a, b, c) = (fleet.host("a"), fleet.host("b"), fleet.host("c"));
    let script =
        r#"echo "$H.$$" >> "$W/runs"; printf 'out from %s\n' "$H"; echo "err from $H" >&2; exit 3"#;
    let failing = call(&["--ttl", "1h", "--cache-failures"], script);
    let first = a.run(&failing);
    assert_eq!(first.status.code(), Some(3));
    assert_eq!(text(&first.stdout), "out from a\n");
    assert_eq!(text(&first.stderr), "err from a\n");
    fleet.wait_published();
    // Produced two minutes ago: B judges it by that age, not by its fill.
    a.age(120);
    fleet.age_in_store("meta", 120);
    let filled = b.run(&failing);
    assert_eq!(fleet.runs().len(), 1, "B ran nothing");
    assert_eq!(text(&filled.stdout), "out from a\n", "A's stdout on B");
    assert_eq!(text(&filled.stderr), "err from a\n", "A's stderr on B");
    assert_eq!(filled.status.code(), Some(3), "A's exit status on B");
    let (on_a, on_b) = (a.stats_entry(), b.stats_entry());
    assert_eq!(on_a["finished_at"], on_b["finished_at"], "{on_a}\n{on_b}");
    let age = on_b["age_secs"].as_u64().unwrap();
    assert!((120..600).contains(&age), "B shows A's age: {on_b}");
    let show = b.cacheback(&[&["show", "--"][..], &["sh", "-c", script]].concat());
    assert!(show.status.success(), "{}", text(&show.stderr));
    let show = text(&show.stdout);
    assert!(
        show.contains("2m") || show.contains("120"),
        "show on B: {show}"
    );
    // The copy keeps what keyed it: B's entry is a --cache-failures one too
    // (its refresh and `invalidate --refresh` are rebuilt from that).
    assert!(show.contains("--cache-failures"), "show on B: {show}");
    // Older than C's --max-age: not usable, C runs it.
    let capped = call(
        &["--ttl", "1h", "--cache-failures", "--max-age", "1m"],
        script,
    );
    let own = c.run(&capped);
    assert_eq!(text(&own.stdout), "out from c\n");
    assert_eq!(fleet.runs().len(), 2, "C ran it itself");
    // B can refresh its copy: the key rebuilt from it is the one it has.
    let refresh = b.cacheback(&["invalidate", "--refresh", "--all"]);
    assert!(
        text(&refresh.stdout).contains("refreshing in the background"),
        "{}{}",
        text(&refresh.stdout),
        text(&refresh.stderr)
    );
    assert!(
        wait_until(Duration::from_secs(30), || fleet.settled()),
        "B's refresh still running after 30 s"
    );
}

// ---------------------------------------------------------------------------
// 2. A stale local copy: served at once, refreshed from the fleet.
// ---------------------------------------------------------------------------

#[test]
fn a_stale_hit_takes_a_newer_fleet_value_without_running_the_command() {
    let Some(fleet) = Fleet::start(&[], "fleet::a_stale_hit_takes") else {
        return;
    };
    let (a, b) = (fleet.host("a"), fleet.host("b"));
    let first = prime(&fleet, &a, &[&b]);
    fleet.age_all(&[&a, &b], 7200);
    // A refreshes: stale value at once, a new one in the fleet.
    assert_prints(&a.run(&standard()), &first, "A's stale hit");
    assert!(
        wait_until(SETTLE, || fleet.runs().len() == 2),
        "A refreshed"
    );
    let second = fleet.runs()[1].clone();
    assert!(serves(&a, &second), "A stores its refresh");
    assert!(fleet.settled(), "processes linger");
    // B's copy is stale, the fleet's is newer and fresh: B copies it.
    assert_prints(&b.run(&standard()), &first, "B's stale hit");
    assert!(serves(&b, &second), "B takes A's refresh from the fleet");
    assert!(fleet.settled(), "processes linger");
    assert_eq!(fleet.runs(), [first, second], "B ran nothing");
    assert!(
        fleet.keys("cacheback:*:lease").is_empty(),
        "a finished refresh released its lease"
    );
}

// ---------------------------------------------------------------------------
// 2 and 3 under load: one execution for the whole fleet.
// ---------------------------------------------------------------------------

/// Starts `per_host` callers on each host, interleaved.
fn spawn_fleet_callers<S: AsRef<OsStr>>(
    hosts: &[&Host],
    per_host: usize,
    args: &[S],
) -> Vec<(String, Child)> {
    let mut callers = Vec::new();
    for _ in 0..per_host {
        for host in hosts {
            callers.push((host.name.clone(), host.spawn_run(args)));
        }
    }
    callers
}

#[test]
fn two_hosts_of_100_callers_on_a_cold_miss_run_the_command_once() {
    let Some(fleet) = Fleet::start(&[], "fleet::two_hosts_of_100_callers_on_a_cold_miss") else {
        return;
    };
    let (a, b) = (fleet.host("a"), fleet.host("b"));
    let args = call(
        &["--ttl", "1h"],
        r#"t="$H.$$"; echo "$t" >> "$W/runs"; sleep 0.5; echo "$t""#,
    );
    let callers = spawn_fleet_callers(&[&a, &b], 100, &args);
    let outputs: Vec<(String, Output)> = callers
        .into_iter()
        .map(|(host, child)| (host, child.bounded_wait_with_output()))
        .collect();
    let runs = fleet.runs();
    assert_eq!(runs.len(), 1, "one execution for 200 callers: {runs:?}");
    for (host, output) in &outputs {
        assert_prints(output, &runs[0], &format!("a caller on {host}"));
    }
    assert!(fleet.settled(), "processes linger");
    assert_eq!(fleet.runs().len(), 1, "nothing ran afterwards");
}

#[test]
fn two_hosts_of_100_callers_on_a_stale_entry_refresh_it_once() {
    let Some(fleet) = Fleet::start(&[], "fleet::two_hosts_of_100_callers_on_a_stale") else {
        return;
    };
    let (a, b) = (fleet.host("a"), fleet.host("b"));
    let first = prime(&fleet, &a, &[&b]);
    fleet.age_all(&[&a, &b], 7200);
    // Whichever host refreshes holds its run at a gate until every caller
    // is back: a caller that waited for the refresh would not be back.
    fleet.touch("slow-a");
    fleet.touch("slow-b");
    let started = Instant::now();
    let callers = spawn_fleet_callers(&[&a, &b], 100, &standard());
    for (host, child) in callers {
        assert_prints(
            &child.bounded_wait_with_output(),
            &first,
            &format!("a stale caller on {host}"),
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the callers waited for the refresh (its gate opens by itself after 30 s)"
    );
    assert!(
        wait_until(SETTLE, || fleet.runs().len() == 2),
        "a refresh started"
    );
    fleet.touch("go-a");
    fleet.touch("go-b");
    let second = fleet.runs()[1].clone();
    assert!(serves(&a, &second), "A has the refresh");
    assert!(serves(&b, &second), "B has the refresh");
    assert!(fleet.settled(), "processes linger");
    let runs = fleet.runs();
    assert_eq!(runs.len(), 2, "one refresh for 200 stale callers: {runs:?}");
}

#[test]
fn a_failed_run_is_printed_to_the_callers_waiting_on_other_hosts() {
    let Some(fleet) = Fleet::start(&[], "fleet::a_failed_run_is_printed") else {
        return;
    };
    let (a, b) = (fleet.host("a"), fleet.host("b"));
    let args = call(
        &["--ttl", "1h"],
        r#"echo "$H.$$" >> "$W/runs"; sleep 1; echo partial; echo "broken on $H" >&2; exit 3"#,
    );
    let callers = spawn_fleet_callers(&[&a, &b], 20, &args);
    let outputs: Vec<(String, Output)> = callers
        .into_iter()
        .map(|(host, child)| (host, child.bounded_wait_with_output()))
        .collect();
    let runs = fleet.runs();
    assert_eq!(runs.len(), 1, "the waiters did not run it again: {runs:?}");
    let holder = runs[0].split('.').next().unwrap();
    for (host, output) in &outputs {
        assert_eq!(output.status.code(), Some(3), "a caller on {host}");
        assert!(
            text(&output.stderr).contains(&format!("broken on {holder}")),
            "a caller on {host} shows the holder's stderr: {:?}",
            text(&output.stderr)
        );
    }
}

#[test]
fn a_miss_that_waited_for_a_failed_forced_run_is_served_the_fleets_value() {
    let Some(fleet) = Fleet::start(&[], "fleet::a_miss_that_waited_for_a_failed_forced") else {
        return;
    };
    let (a, b) = (fleet.host("a"), fleet.host("b"));
    let first = prime(&fleet, &a, &[]);
    // B has no copy. Its `--force` run (which never asks the fleet for a
    // value) holds B's lock at the gate, and will fail.
    fleet.touch("slow-b");
    fleet.touch("fail");
    let forced = b.spawn_run(&call(&["--ttl", "1h", "--force"], &body()));
    let _ = fleet.read_pid("group-b");
    // A plain miss on B waits for that lock, and so for that run.
    let waiter = b.spawn_run(&standard());
    std::thread::sleep(Duration::from_secs(1));
    fleet.touch("go-b");
    let forced = forced.bounded_wait_with_output();
    assert_eq!(forced.status.code(), Some(3), "the forced run failed");
    let waiter = waiter.bounded_wait_with_output();
    // Its run failed, but the fleet holds a value: that is better than the
    // failure of a run it did not ask for.
    assert_prints(&waiter, &first, "the waiting miss");
    assert!(fleet.settled(), "processes linger");
    assert_eq!(
        fleet.runs().len(),
        2,
        "the waiter ran nothing of its own, nor refreshed the fresh copy: {:?}",
        fleet.runs()
    );
}

// ---------------------------------------------------------------------------
// 4. Back-off, fleet-wide.
// ---------------------------------------------------------------------------

#[test]
fn a_failed_refresh_on_one_host_backs_off_every_host() {
    let Some(fleet) = Fleet::start(&[], "fleet::a_failed_refresh_backs_off") else {
        return;
    };
    let (a, b, c) = (fleet.host("a"), fleet.host("b"), fleet.host("c"));
    let first = prime(&fleet, &a, &[&b, &c]);
    fleet.age_all(&[&a, &b, &c], 7200);
    fleet.touch("fail");
    assert_prints(&a.run(&standard()), &first, "A's stale hit");
    assert!(
        wait_until(SETTLE, || fleet.runs().len() == 2),
        "A refreshed"
    );
    assert!(fleet.settled(), "processes linger");
    assert!(
        !fleet.keys("cacheback:*:fail").is_empty(),
        "the failure is recorded in the fleet"
    );
    // Within the back-off, neither host tries again; both serve the old value.
    for host in [&b, &a, &b] {
        assert_prints(&host.run(&standard()), &first, "a stale hit in back-off");
        assert!(fleet.settled(), "processes linger");
        assert_eq!(
            fleet.runs().len(),
            2,
            "host {} ran it in back-off",
            host.name
        );
    }
    // Once the back-off is over (the first failure 11 s ago), B tries again,
    // and fails again: the next back-off is 20 s.
    fleet.age_in_store("fail", 11);
    assert_prints(&b.run(&standard()), &first, "B after the back-off");
    assert!(
        wait_until(SETTLE, || fleet.runs().len() == 3),
        "B refreshed after the first back-off"
    );
    assert!(fleet.settled(), "processes linger");
    fleet.age_in_store("fail", 11);
    for host in [&a, &b] {
        assert_prints(&host.run(&standard()), &first, "a stale hit, 11 s into 20");
        assert!(fleet.settled(), "processes linger");
        assert_eq!(
            fleet.runs().len(),
            3,
            "host {} ran it 11 s into a 20 s back-off",
            host.name
        );
    }
    // 21 s after the second failure, with the command mended, C refreshes.
    // (Not A or B: their own failures are recorded locally too, and only
    // the fleet's record was aged here, so their local back-off still runs.)
    fleet.age_in_store("fail", 10);
    fleet.remove("fail");
    assert_prints(&c.run(&standard()), &first, "C after the second back-off");
    assert!(
        wait_until(SETTLE, || fleet.runs().len() == 4),
        "C refreshed after the second back-off"
    );
    let fourth = fleet.runs()[3].clone();
    assert!(serves(&c, &fourth));
    assert!(fleet.settled(), "processes linger");
    assert_eq!(fleet.runs().len(), 4, "{:?}", fleet.runs());
}

/// `invalidate --refresh` is the user asking for a run now: it runs even
/// while the fleet backs off after another host's failure (a stale hit
/// would not). (The back-off check applied to forced refreshes only,
/// instead of to the others, survived the fleet group.)
#[test]
fn invalidate_refresh_runs_while_the_fleet_backs_off() {
    let Some(fleet) = Fleet::start(&[], "fleet::invalidate_refresh_runs_while") else {
        return;
    };
    let (a, b) = (fleet.host("a"), fleet.host("b"));
    let first = prime(&fleet, &a, &[&b]);
    fleet.age_all(&[&a, &b], 7200);
    fleet.touch("fail");
    assert_prints(&a.run(&standard()), &first, "A's stale hit");
    assert!(
        wait_until(SETTLE, || fleet.runs().len() == 2),
        "A refreshed"
    );
    assert!(wait_until(SETTLE, || fleet.settled()), "processes linger");
    let out = b.cacheback(&["invalidate", "--refresh", "--all"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        wait_until(SETTLE, || fleet.runs().len() == 3),
        "B's invalidate --refresh did not run it during the back-off: {}",
        text(&out.stdout)
    );
    assert!(wait_until(SETTLE, || fleet.settled()), "processes linger");
}

// ---------------------------------------------------------------------------
// 5. A killed refresher's lease expires.
// ---------------------------------------------------------------------------

#[test]
fn a_refresher_killed_with_kill_9_leaves_its_lease_to_expire() {
    let Some(fleet) = Fleet::start(&[], "fleet::a_refresher_killed") else {
        return;
    };
    let (a, b) = (fleet.host("a"), fleet.host("b"));
    let first = prime(&fleet, &a, &[&b]);
    let lease = fleet.key("lease");
    fleet.age_all(&[&a, &b], 7200);
    fleet.touch("slow-a");
    assert_prints(&a.run(&standard()), &first, "A's stale hit");
    let refresher = fleet.read_pid("refresher-a");
    let group = fleet.read_pid("group-a");
    assert_eq!(
        fleet.redis.cli_text(&["EXISTS", &lease]).trim(),
        "1",
        "A's refresher holds the fleet lease"
    );
    signal(refresher, nix::sys::signal::Signal::SIGKILL);
    assert!(wait_until(Duration::from_secs(5), || !alive(refresher)));
    signal_group(group, nix::sys::signal::Signal::SIGKILL);
    fleet.remove("slow-a");
    // While the dead lease lasts, B's stale hit serves the old value.
    assert_prints(&b.run(&standard()), &first, "B's stale hit");
    assert!(
        wait_until(LEASE_GONE, || fleet
            .redis
            .cli_text(&["EXISTS", &lease])
            .trim()
            == "0"),
        "the dead refresher's lease never expired"
    );
    assert!(fleet.settled(), "processes linger");
    // After it, a stale hit refreshes (B's may already have).
    if fleet.runs().len() == 2 {
        assert_prints(&b.run(&standard()), &first, "B's stale hit after expiry");
    }
    assert!(
        wait_until(SETTLE, || fleet.runs().len() == 3),
        "no refresh after the lease expired: {:?}",
        fleet.runs()
    );
    let third = fleet.runs()[2].clone();
    assert!(serves(&b, &third), "B serves the refresh");
    assert!(serves(&a, &third), "A copies it");
    assert!(fleet.settled(), "processes linger");
    assert_eq!(fleet.runs().len(), 3, "A copied it without running");
}

#[test]
fn a_refresh_longer_than_the_lease_keeps_it_renewed() {
    let Some(fleet) = Fleet::start(&[], "fleet::a_refresh_longer_than_the_lease") else {
        return;
    };
    let (a, b) = (fleet.host("a"), fleet.host("b"));
    let first = prime(&fleet, &a, &[&b]);
    let lease = fleet.key("lease");
    fleet.age_all(&[&a, &b], 7200);
    fleet.touch("slow-a");
    assert_prints(&a.run(&standard()), &first, "A's stale hit");
    fleet.read_pid("refresher-a");
    // Two and a half lease lengths: only renewals keep it.
    std::thread::sleep(Duration::from_millis(5000));
    assert_eq!(
        fleet.redis.cli_text(&["EXISTS", &lease]).trim(),
        "1",
        "A's lease lapsed while its refresh ran"
    );
    assert_prints(&b.run(&standard()), &first, "B's stale hit");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        fleet.runs().len(),
        2,
        "B ran it beside A: {:?}",
        fleet.runs()
    );
    fleet.touch("go-a");
    let second = fleet.runs()[1].clone();
    assert!(serves(&b, &second), "B waited for A's result and copied it");
    assert!(fleet.settled(), "processes linger");
    assert_eq!(fleet.runs().len(), 2, "{:?}", fleet.runs());
}

// ---------------------------------------------------------------------------
// 6. A refresher that lost its lease publishes nothing.
// ---------------------------------------------------------------------------

enum LeaseLoss {
    /// `redis-cli DEL` of the lease.
    Deleted,
    /// The refresher is stopped (SIGSTOP) until its lease has expired.
    Expired,
}

fn a_late_writer_cannot_overwrite(loss: LeaseLoss, test: &str) {
    let Some(fleet) = Fleet::start(&[], test) else {
        return;
    };
    let (a, b, c) = (fleet.host("a"), fleet.host("b"), fleet.host("c"));
    let first = prime(&fleet, &a, &[&b]);
    let lease = fleet.key("lease");
    fleet.age_all(&[&a, &b], 7200);
    fleet.touch("slow-a");
    assert_prints(&a.run(&standard()), &first, "A's stale hit");
    let refresher = fleet.read_pid("refresher-a");
    match loss {
        LeaseLoss::Deleted => {
            fleet.redis.cli(&["DEL", &lease]);
        }
        LeaseLoss::Expired => {
            signal(refresher, nix::sys::signal::Signal::SIGSTOP);
            assert!(
                wait_until(LEASE_GONE, || fleet
                    .redis
                    .cli_text(&["EXISTS", &lease])
                    .trim()
                    == "0"),
                "the stopped refresher's lease never expired"
            );
        }
    }
    // B refreshes meanwhile and publishes.
    assert_prints(&b.run(&standard()), &first, "B's stale hit");
    assert!(
        wait_until(SETTLE, || fleet.runs().iter().any(|t| t.starts_with("b."))),
        "B never ran its refresh (did A take its lease back?): {:?}",
        fleet.runs()
    );
    let from_b = fleet
        .runs()
        .into_iter()
        .find(|t| t.starts_with("b."))
        .unwrap();
    assert!(serves(&b, &from_b), "B stores its refresh");
    // Then A's run ends, later than B's: it must not replace B's value.
    signal(refresher, nix::sys::signal::Signal::SIGCONT);
    fleet.touch("go-a");
    assert!(fleet.settled(), "processes linger");
    assert_eq!(fleet.runs().len(), 3, "{:?}", fleet.runs());
    assert_prints(
        &c.run(&standard()),
        &from_b,
        "a new host gets B's value from the fleet, not A's late one",
    );
    assert_eq!(fleet.runs().len(), 3, "C ran nothing");
}

#[test]
fn a_refresher_whose_lease_was_deleted_does_not_overwrite_a_newer_value() {
    a_late_writer_cannot_overwrite(LeaseLoss::Deleted, "fleet::lease_deleted");
}

#[test]
fn a_refresher_stopped_past_its_lease_does_not_overwrite_a_newer_value() {
    a_late_writer_cannot_overwrite(LeaseLoss::Expired, "fleet::lease_expired");
}

// ---------------------------------------------------------------------------
// 7. The store down, stopped or restarted.
// ---------------------------------------------------------------------------

/// Asserts stderr is one warning line about the store.
#[track_caller]
fn assert_one_warning(output: &Output, what: &str) {
    let err = text(&output.stderr);
    assert_eq!(err.lines().count(), 1, "{what}: one warning line: {err:?}");
    assert!(
        err.to_lowercase().contains("store"),
        "{what}: the warning names the store: {err:?}"
    );
}

#[test]
fn a_dead_store_costs_one_warning_and_is_then_skipped() {
    let Some(mut fleet) = Fleet::start(&[], "fleet::a_dead_store") else {
        return;
    };
    let (a, b) = (fleet.host("a"), fleet.host("b"));
    let first = prime(&fleet, &a, &[]);
    fleet.redis.kill();
    let other = |n: usize| call(&["--ttl", "1h"], &format!("{} # {n}", body()));
    // A miss: the command runs locally, one warning, the marker.
    let miss = a.run(&other(1));
    assert_eq!(fleet.runs().len(), 2, "the miss ran locally");
    assert_eq!(text(&miss.stdout), format!("{}\n", fleet.runs()[1]));
    assert!(miss.status.success());
    assert_one_warning(&miss, "A's miss, store dead");
    assert!(a.down_marker().exists(), "A marked the store down");
    // Following callers: no warning. A second miss, a hit, a stale hit.
    let miss = a.run(&other(2));
    assert_prints(&miss, &fleet.runs()[2], "A's next miss");
    assert_prints(&a.run(&other(1)), &fleet.runs()[1], "A's hit");
    a.age(7200);
    assert_prints(&a.run(&standard()), &first, "A's stale hit");
    assert!(
        wait_until(SETTLE, || fleet.runs().len() >= 4),
        "A's stale hit refreshed locally"
    );
    assert!(fleet.settled(), "processes linger");
    let runs = fleet.runs();
    assert_eq!(runs.len(), 4, "{runs:?}");
    // (A's other entries were aged too: a hit on them would refresh them.)
    assert_prints(&a.run(&standard()), &runs[3], "A's refreshed value");
    // B has no marker yet: its first caller warns, once.
    let b_miss = b.run(&standard());
    assert_eq!(fleet.runs().len(), 5, "B ran it itself: {:?}", fleet.runs());
    assert_eq!(text(&b_miss.stdout), format!("{}\n", fleet.runs()[4]));
    assert_one_warning(&b_miss, "B's miss, store dead");
    assert_prints(&b.run(&standard()), &fleet.runs()[4], "B's hit");
    // Back up, and 30 s later (the marker aged): A uses the store again.
    fleet.redis.restart();
    let marker = fs::File::options()
        .write(true)
        .open(a.down_marker())
        .unwrap();
    marker
        .set_modified(SystemTime::now() - Duration::from_secs(31))
        .unwrap();
    let back = a.run(&other(3));
    assert_prints(&back, &fleet.runs()[5], "A's miss, store back");
    assert!(!a.down_marker().exists(), "the marker is cleared");
    fleet.wait_published();
}

#[test]
fn a_stopped_store_costs_at_most_the_timeout_once() {
    let Some(fleet) = Fleet::start(&[], "fleet::a_stopped_store") else {
        return;
    };
    let a = fleet.host("a").with_env("CACHEBACK_STORE_TIMEOUT", "3s");
    let first = prime(&fleet, &a, &[]);
    fleet.redis.pause();
    let other = |n: usize| call(&["--ttl", "1h"], &format!("{} # {n}", body()));
    let started = Instant::now();
    let miss = a.run(&other(0));
    let took = started.elapsed();
    let runs = fleet.runs();
    assert_eq!(runs.len(), 2, "the miss ran locally");
    assert_eq!(text(&miss.stdout), format!("{}\n", runs[1]));
    assert_one_warning(&miss, "the first miss with the store stopped");
    assert!(took < Duration::from_secs(10), "{took:?} for a 3 s timeout");
    assert!(a.down_marker().exists());
    // The callers after it skip the store: none waits the 3 s.
    for n in 1..=3 {
        let started = Instant::now();
        let miss = a.run(&other(n));
        let took = started.elapsed();
        assert_prints(&miss, fleet.runs().last().unwrap(), "a later miss");
        assert!(
            took < Duration::from_millis(2500),
            "{took:?}: it waited for the store"
        );
    }
    let started = Instant::now();
    assert_prints(&a.run(&standard()), &first, "a hit");
    assert!(started.elapsed() < Duration::from_millis(2500));
    fleet.redis.resume();
}

#[test]
fn a_store_restarted_during_a_refresh_loses_nothing_local() {
    let Some(mut fleet) = Fleet::start(&[], "fleet::a_store_restarted") else {
        return;
    };
    let (a, b) = (fleet.host("a"), fleet.host("b"));
    let first = prime(&fleet, &a, &[&b]);
    fleet.age_all(&[&a, &b], 7200);
    fleet.touch("slow-a");
    assert_prints(&a.run(&standard()), &first, "A's stale hit");
    fleet.read_pid("refresher-a");
    // The server restarts empty while A's refresh runs.
    fleet.redis.restart();
    fleet.touch("go-a");
    let second = fleet.runs()[1].clone();
    assert!(serves(&a, &second), "A's refresh is stored locally");
    assert!(fleet.settled(), "processes linger");
    // B: its stale value at once; the fleet is empty, so it refreshes itself.
    let b_hit = b.run(&standard());
    assert_eq!(text(&b_hit.stdout), format!("{first}\n"));
    assert!(
        wait_until(SETTLE, || fleet.runs().len() >= 3),
        "B refreshed"
    );
    let latest = fleet.runs().last().unwrap().clone();
    assert!(serves(&b, &latest));
    assert!(serves(&a, &second), "A kept its value");
}

#[test]
fn a_store_stopped_during_a_refresh_delays_nothing_and_loses_nothing_local() {
    let Some(fleet) = Fleet::start(&[], "fleet::a_store_stopped_during_a_refresh") else {
        return;
    };
    let (a, b) = (fleet.host("a"), fleet.host("b"));
    let first = prime(&fleet, &a, &[&b]);
    fleet.age_all(&[&a, &b], 7200);
    fleet.touch("slow-a");
    assert_prints(&a.run(&standard()), &first, "A's stale hit");
    fleet.read_pid("refresher-a");
    fleet.redis.pause();
    fleet.touch("go-a");
    // A stale hit on B, with the store stopped: at once, from B's copy.
    let started = Instant::now();
    let b_hit = b.run(&standard());
    let took = started.elapsed();
    assert_eq!(text(&b_hit.stdout), format!("{first}\n"), "B's stale hit");
    assert!(
        took < Duration::from_millis(1500),
        "B's stale hit took {took:?}"
    );
    // A's refresh ends while the store is stopped: stored locally all the same.
    let second = fleet.runs()[1].clone();
    let stored = serves(&a, &second);
    fleet.redis.resume();
    assert!(
        stored,
        "A's refresh was not stored locally while the store was stopped"
    );
    assert!(fleet.settled(), "processes linger");
}

// ---------------------------------------------------------------------------
// 8. Large values: streamed, byte-exact, flat memory; over the limit, local.
// ---------------------------------------------------------------------------

/// Writes `len` pseudo-random bytes to `path`.
fn write_payload(path: &Path, len: usize) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    fs::write(path, bytes).unwrap();
}

/// True when the two files hold the same bytes (read in 1 MiB pieces).
fn same_bytes(left: &Path, right: &Path) -> bool {
    let (mut l, mut r) = (
        fs::File::open(left).unwrap(),
        fs::File::open(right).unwrap(),
    );
    let (mut lb, mut rb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut l, &mut lb);
        let m = read_full(&mut r, &mut rb);
        if n != m || lb[..n] != rb[..m] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

fn read_full(file: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        match file.read(&mut buf[done..]).unwrap() {
            0 => break,
            n => done += n,
        }
    }
    done
}

/// Runs `cacheback run ARGS` on `host` with stdout to `out`; returns its
/// exit status and peak RSS in KiB: GNU time's `%M` where /usr/bin/time is
/// installed, else the last VmHWM read from /proc while it ran.
fn run_measured(host: &Host, args: &[String], out: &Path) -> (Option<i32>, u64) {
    let stdout = fs::File::create(out).unwrap();
    if Path::new("/usr/bin/time").is_file() {
        let report = out.with_extension("rss");
        let output = host
            .command(OsStr::new("/usr/bin/time"))
            .args(["-f", "%M", "-o"])
            .arg(&report)
            .arg(BIN)
            .arg("run")
            .args(args)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .bounded_output();
        let report = fs::read_to_string(&report).unwrap();
        let kib = report.lines().last().unwrap_or("").trim().parse();
        let kib = kib.unwrap_or_else(|_| panic!("/usr/bin/time said {report:?}"));
        (output.status.code(), kib)
    } else {
        let mut child = host
            .cmd()
            .arg("run")
            .args(args)
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut peak = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("cacheback run {args:?} was still running after 120 s (killed)");
            }
            if let Ok(status) = fs::read_to_string(format!("/proc/{}/status", child.id())) {
                for line in status.lines() {
                    if let Some(kib) = line.strip_prefix("VmHWM:") {
                        let kib = kib.trim().trim_end_matches("kB").trim().parse();
                        peak = peak.max(kib.unwrap_or(0));
                    }
                }
            }
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        (status.code(), peak)
    }
}

#[test]
fn a_100_mib_value_crosses_hosts_byte_exact_in_flat_memory() {
    let Some(fleet) = Fleet::start(&[], "fleet::a_100_mib_value") else {
        return;
    };
    let (a, b) = (fleet.host("a"), fleet.host("b"));
    let payload = fleet.work().join("payload");
    write_payload(&payload, 100 << 20);
    let args = call(
        &["--ttl", "1h"],
        r#"echo "$H.$$" >> "$W/runs"; cat "$W/payload""#,
    );
    let (out_a, out_b) = (fleet.work().join("out-a"), fleet.work().join("out-b"));
    let (status, peak_a) = run_measured(&a, &args, &out_a);
    assert_eq!(status, Some(0));
    assert!(same_bytes(&payload, &out_a), "A's own miss is byte-exact");
    fleet.wait_published();
    assert!(fleet.settled(), "processes linger");
    let (status, peak_b) = run_measured(&b, &args, &out_b);
    assert_eq!(status, Some(0));
    assert_eq!(fleet.runs().len(), 1, "B filled from the fleet");
    assert!(same_bytes(&payload, &out_b), "B's copy is byte-exact");
    eprintln!("100 MiB: peak RSS of A's miss {peak_a} KiB, of B's fill {peak_b} KiB");
    assert!(peak_b < 40 << 10, "B's fill peaked at {peak_b} KiB");
    assert!(
        peak_a < 40 << 10,
        "A's miss and publish peaked at {peak_a} KiB"
    );
}

#[test]
fn a_value_over_the_store_limit_stays_local_with_one_warning() {
    let Some(fleet) = Fleet::start(&[], "fleet::a_value_over_the_store_limit") else {
        return;
    };
    let a = fleet.host("a");
    let b = fleet
        .host("b")
        .with_env("CACHEBACK_STORE_MAX_VALUE", "1MiB");
    write_payload(&fleet.work().join("payload"), 2 << 20);
    let script = r#"echo "$H.$$" >> "$W/runs"; cat "$W/payload""#;
    let expected = fs::read(fleet.work().join("payload")).unwrap();
    let with_flag = [
        vec!["--store-max-value".to_owned(), "1MiB".to_owned()],
        call(&["--ttl", "1h"], script),
    ]
    .concat();
    let miss = a.run(&with_flag);
    assert!(miss.stdout == expected, "A's output is whole");
    assert_one_warning(&miss, "A's miss over the limit");
    assert!(fleet.settled(), "processes linger");
    let stored: Vec<String> = fleet
        .keys("cacheback:*")
        .into_iter()
        .filter(|k| !k.ends_with(":counts") && !k.ends_with(":lease"))
        .collect();
    assert!(stored.is_empty(), "the value stayed local: {stored:?}");
    let hit = a.run(&with_flag);
    assert!(hit.stdout == expected);
    assert_eq!(text(&hit.stderr), "", "a hit does not warn");
    // B (the limit from the environment) finds nothing in the fleet: runs it.
    let own = b.run(&call(&["--ttl", "1h"], script));
    assert!(own.stdout == expected);
    assert_eq!(fleet.runs().len(), 2, "B ran it itself");
    assert_one_warning(&own, "B's miss over the limit");
}

/// A host whose refresh finds another host's run in flight waits for it and
/// takes its value: the wait is bounded by the refresh's `--timeout` plus
/// the lease, whichever of the two is longer. Run with both orders: each
/// catches one sign of the deadline's sum turned into a difference (`now -
/// timeout + lease` survived the fleet group once, `now + timeout - lease`
/// another time), either of which makes B give up at once and keep its
/// stale copy.
fn a_refresh_waits_for_another_hosts_run(timeout: &str, lease: &str, test: &str) {
    let Some(fleet) = Fleet::start(&[], test) else {
        return;
    };
    let (a, b) = (
        fleet.host("a").with_env("CACHEBACK_STORE_LEASE", lease),
        fleet.host("b").with_env("CACHEBACK_STORE_LEASE", lease),
    );
    let args = call(&["--ttl", "1h", "--timeout", timeout], &body());
    let first = a.run(&args);
    let runs = fleet.runs();
    assert_prints(&first, &runs[0], "A's first run");
    fleet.wait_published();
    assert_prints(&b.run(&args), &runs[0], "B fills from the fleet");
    fleet.age_all(&[&a, &b], 7200);
    // A's refresh holds the fleet's lease, held at its gate.
    fleet.touch("slow-a");
    assert_prints(&a.run(&args), &runs[0], "A's stale hit");
    assert!(
        wait_until(SETTLE, || fleet.runs().len() == 2),
        "A's refresh never started"
    );
    // B's refresh finds A's run in flight and waits for it.
    assert_prints(&b.run(&args), &runs[0], "B's stale hit");
    std::thread::sleep(Duration::from_secs(1));
    fleet.touch("go-a");
    assert!(wait_until(SETTLE, || fleet.settled()), "processes linger");
    let second = fleet.runs()[1].clone();
    assert_eq!(fleet.runs().len(), 2, "B ran it too: {:?}", fleet.runs());
    assert_prints(&b.run(&args), &second, "B took A's value while it waited");
}

#[test]
fn a_refresh_waits_for_another_hosts_run_with_a_timeout_shorter_than_the_lease() {
    a_refresh_waits_for_another_hosts_run("3s", "30s", "fleet::timeout_shorter_than_the_lease");
}

#[test]
fn a_refresh_waits_for_another_hosts_run_with_a_lease_shorter_than_the_timeout() {
    a_refresh_waits_for_another_hosts_run("10s", LEASE, "fleet::lease_shorter_than_the_timeout");
}

/// A refresh that finds a fleet value newer than its own but stale too
/// copies it (the newest there is) and still runs the command: the entry
/// it was asked to refresh must end fresh, not one stale hit later.
#[test]
fn a_refresh_that_copies_a_stale_fleet_value_still_runs_the_command() {
    let Some(fleet) = Fleet::start(&[], "fleet::copies_a_stale_fleet_value") else {
        return;
    };
    let (a, b) = (fleet.host("a"), fleet.host("b"));
    let first = prime(&fleet, &a, &[&b]);
    fleet.age_all(&[&a, &b], 7200);
    // A refreshes: the fleet holds A's second value, newer than B's copy.
    assert_prints(&a.run(&standard()), &first, "A's stale hit");
    assert!(
        wait_until(SETTLE, || fleet.runs().len() == 2),
        "A refreshed"
    );
    assert!(fleet.settled(), "A's refresh lingers");
    let second = fleet.runs()[1].clone();
    // Both age again: the fleet's value is stale, and still B's newest.
    fleet.age_all(&[&a, &b], 7200);
    assert_prints(&b.run(&standard()), &first, "B's stale hit");
    assert!(
        wait_until(SETTLE, || fleet.runs().len() == 3),
        "B's refresh copied {second} and ran nothing: {:?}",
        fleet.runs()
    );
    assert!(fleet.settled(), "B's refresh lingers");
    let third = fleet.runs()[2].clone();
    assert_prints(&b.run(&standard()), &third, "B's entry, fresh");
}

/// A refresh never copies a fleet value older than the host's own over it:
/// B's newest value was made while the store was out of reach, so the
/// fleet's is older; while B's refresh runs, B keeps serving its own.
#[test]
fn a_refresh_never_copies_an_older_fleet_value_over_a_newer_local_one() {
    let Some(fleet) = Fleet::start(&[], "fleet::never_copies_an_older_value") else {
        return;
    };
    let (a, b) = (fleet.host("a"), fleet.host("b"));
    let first = prime(&fleet, &a, &[&b]);
    // B's forced run cannot reach the store (nothing listens on port 9).
    let forced = [vec!["--force".to_owned()], standard()].concat();
    let unreachable = fleet
        .host("b")
        .with_env("CACHEBACK_STORE", "redis://127.0.0.1:9");
    let own = unreachable.run(&forced);
    let runs = fleet.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(text(&own.stdout), format!("{}\n", runs[1]), "B's own run");
    fleet.age_all(&[&a, &b], 7200);
    // B's refresh is held at its gate.
    fleet.touch("slow-b");
    assert_prints(&b.run(&standard()), &runs[1], "B's stale hit");
    assert!(
        wait_until(SETTLE, || fleet.runs().len() == 3),
        "B's refresh never started"
    );
    let during = b.run(&standard());
    fleet.touch("go-b");
    assert_prints(
        &during,
        &runs[1],
        &format!("B during its refresh (the fleet's is {first})"),
    );
    assert!(fleet.settled(), "B's refresh lingers");
}

/// Every key of a published entry expires a week after its last write, or
/// after twice the TTL if that is longer (docs/fleet.md): an abandoned
/// cache empties itself, and a long-lived entry outlives its TTL.
#[test]
fn fleet_keys_expire_a_week_or_two_ttls_after_their_last_write() {
    let Some(fleet) = Fleet::start(&[], "fleet::keys_expire") else {
        return;
    };
    let week_ms: u64 = 7 * 86_400_000;
    for (ttl, expiry_ms) in [("1h", week_ms), ("30d", 60 * 86_400_000)] {
        let args = call(&["--ttl", ttl], &format!("{} # {ttl}", body()));
        assert!(fleet.host("a").run(&args).status.success());
        assert!(fleet.settled(), "the run lingers");
        let keys: Vec<String> = fleet
            .keys("cacheback:*")
            .into_iter()
            .filter(|key| !key.ends_with(":lease"))
            .collect();
        assert!(keys.len() >= 3, "meta, counts, a chunk: {keys:?}");
        for key in keys {
            let left: u64 = fleet
                .redis
                .cli_text(&["PTTL", &key])
                .trim()
                .parse()
                .unwrap();
            assert!(
                left > expiry_ms - 60_000 && left <= expiry_ms,
                "--ttl {ttl}: {key} expires in {left} ms, not {expiry_ms}"
            );
        }
        fleet.redis.cli(&["FLUSHALL"]);
    }
}

/// A failure that lands between a refresh's read and its lease starts the
/// back-off for that refresh too: B's lease request is held at a proxy
/// while A's refresh fails, and B then gives the lease back and runs
/// nothing (only `warm` and `invalidate --refresh` run through a back-off).
#[test]
fn a_failure_that_lands_before_a_refreshs_lease_backs_it_off() {
    let Some(fleet) = Fleet::start(&[], "fleet::fails_before_a_refreshs_lease") else {
        return;
    };
    let a = fleet.host("a");
    let first = prime(&fleet, &a, &[&fleet.host("b")]);
    fleet.age_all(&[&a, &fleet.host("b")], 7200);
    let proxy = Proxy::start(fleet.redis.port, 0, Fault::Hold(b"$2\r\nNX\r\n"));
    let b = fleet.host("b").with_env("CACHEBACK_STORE", &proxy.url());
    assert_prints(&b.run(&standard()), &first, "B's stale hit");
    assert!(
        wait_until(SETTLE, || proxy.holding()),
        "B's refresh never asked for the lease"
    );
    fleet.touch("fail");
    assert_prints(&a.run(&standard()), &first, "A's stale hit");
    assert!(
        wait_until(SETTLE, || !fleet.keys("cacheback:*:fail").is_empty()
            && fleet.keys("cacheback:*:lease").is_empty()),
        "A's refresh never failed"
    );
    proxy.let_go();
    assert!(fleet.settled(), "B's refresh lingers");
    assert_eq!(
        fleet.runs().len(),
        2,
        "B ran through the back-off: {:?}",
        fleet.runs()
    );
    assert!(
        fleet.keys("cacheback:*:lease").is_empty(),
        "B kept the lease it took"
    );
}

/// A value replaced by a refresh leaves its chunks to expire after a grace
/// minute (a reader may still be streaming them), not a week: the store
/// holds one value per entry, not one per refresh.
#[test]
fn a_replaced_value_leaves_its_chunks_to_expire_within_a_minute() {
    let Some(fleet) = Fleet::start(&[], "fleet::replaced_chunks_expire") else {
        return;
    };
    let a = fleet.host("a");
    prime(&fleet, &a, &[]);
    let chunks = || {
        let mut keys = fleet.keys("cacheback:*:*:0");
        keys.sort();
        keys
    };
    let old = chunks();
    assert_eq!(old.len(), 1, "one chunk: {old:?}");
    fleet.age_all(&[&a], 7200);
    assert!(a.run(&standard()).status.success());
    assert!(
        wait_until(SETTLE, || fleet.runs().len() == 2),
        "A refreshed"
    );
    assert!(fleet.settled(), "A's refresh lingers");
    let pttl = |key: &str| -> i64 { fleet.redis.cli_text(&["PTTL", key]).trim().parse().unwrap() };
    let both = chunks();
    assert_eq!(both.len(), 2, "the old chunk and the new: {both:?}");
    for key in both {
        let left = pttl(&key);
        if key == old[0] {
            assert!(
                (1..=60_000).contains(&left),
                "{key}, replaced: expires in {left} ms"
            );
        } else {
            assert!(left > 86_400_000, "{key}, the value: expires in {left} ms");
        }
    }
}

/// A refresh whose command cannot start (gone from the host) is the
/// command's failure, not the host's: the fleet records it, and every host
/// backs off (unlike a full disk, which stays the host's own).
/// (`refresher::run` taking a command that cannot start for this host's
/// failure, its `!` deleted, survived the refresher group.)
#[test]
fn a_refresh_whose_command_has_gone_records_the_failure_in_the_fleet() {
    let Some(fleet) = Fleet::start(&[], "fleet::command_has_gone") else {
        return;
    };
    let tool = fleet.work().join("tool");
    fs::write(&tool, "#!/bin/sh\necho \"$H.$$\" >> \"$W/runs\"; echo ok\n").unwrap();
    fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let args = ["--ttl", "1h", "--", tool.to_str().unwrap()];
    let a = fleet.host("a");
    assert_eq!(text(&a.run(&args).stdout), "ok\n");
    fleet.wait_published();
    fs::remove_file(&tool).unwrap();
    fleet.age_all(&[&a], 7200);
    assert_eq!(text(&a.run(&args).stdout), "ok\n", "A's stale hit");
    assert!(fleet.settled(), "A's refresh lingers");
    assert_eq!(
        fleet.keys("cacheback:*:fail").len(),
        1,
        "the fleet has no failure record"
    );
}

/// `run --force` runs the command whatever is stored, and still shares its
/// result: the fleet then holds the forced value, and another host's miss
/// prints it without running anything. (`lease_if_free` replaced with
/// `None`, a forced run that never takes the lease and so never publishes,
/// survived the fleet group.)
#[test]
fn a_forced_run_shares_its_result_with_the_fleet() {
    let Some(fleet) = Fleet::start(&[], "fleet::a_forced_run_shares") else {
        return;
    };
    let (a, b) = (fleet.host("a"), fleet.host("b"));
    let forced = [vec!["--force".to_owned()], standard()].concat();
    let first = a.run(&forced);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let value = text(&first.stdout);
    fleet.wait_published();
    let copied = b.run(&standard());
    assert_eq!(text(&copied.stdout), value, "B prints A's forced value");
    assert_eq!(fleet.runs().len(), 1, "B ran nothing");
}

/// The limit is inclusive: a value of exactly `--store-max-value` bytes is
/// shared without a warning, and another host with the same limit copies it.
#[test]
fn a_value_of_exactly_the_store_limit_is_shared_and_copied() {
    let Some(fleet) = Fleet::start(&[], "fleet::a_value_of_exactly_the_store_limit") else {
        return;
    };
    let (a, b) = (
        fleet
            .host("a")
            .with_env("CACHEBACK_STORE_MAX_VALUE", "1MiB"),
        fleet
            .host("b")
            .with_env("CACHEBACK_STORE_MAX_VALUE", "1MiB"),
    );
    write_payload(&fleet.work().join("payload"), 1 << 20);
    let script = r#"echo "$H.$$" >> "$W/runs"; cat "$W/payload""#;
    let expected = fs::read(fleet.work().join("payload")).unwrap();
    let args = call(&["--ttl", "1h"], script);
    let miss = a.run(&args);
    assert!(miss.stdout == expected, "A's output is whole");
    assert_eq!(text(&miss.stderr), "", "A's miss at the limit warned");
    fleet.wait_published();
    let fill = b.run(&args);
    assert!(fill.stdout == expected, "B's output is whole");
    assert_eq!(text(&fill.stderr), "", "B's fill at the limit warned");
    assert_eq!(fleet.runs().len(), 1, "B ran a value at its limit itself");
}

/// A host whose store user may take leases and read but not write a value's
/// chunks (an ACL that forgot them) still serves its run, and says once
/// that it could not share it; the next caller on that host hits locally.
#[test]
fn a_result_the_store_refuses_is_served_with_one_warning() {
    let acl = "user chunkless on >pw ~cacheback:*:meta ~cacheback:*:lease ~cacheback:*:fail \
               ~cacheback:*:counts +@all";
    let Some(fleet) = Fleet::start(&[acl], "fleet::a_result_the_store_refuses") else {
        return;
    };
    let url = format!("redis://chunkless:pw@127.0.0.1:{}", fleet.redis.port);
    let a = fleet.host("a").with_env("CACHEBACK_STORE", &url);
    let miss = a.run(&standard());
    let runs = fleet.runs();
    assert_eq!(text(&miss.stdout), format!("{}\n", runs[0]), "A's own run");
    assert!(miss.status.success(), "{miss:?}");
    assert!(
        text(&miss.stderr).starts_with("cacheback: could not share the result: ")
            && text(&miss.stderr).lines().count() == 1,
        "one warning: {:?}",
        text(&miss.stderr)
    );
    assert!(
        fleet.keys("cacheback:*:meta").is_empty(),
        "nothing published"
    );
    assert_prints(&a.run(&standard()), &runs[0], "A's next call, a local hit");
}

/// A host's `--store-max-value` bounds what it copies too: a value another
/// host (with a larger limit) published is no value to it, so it runs the
/// command itself rather than pulling more than its operator allowed.
#[test]
fn a_fleet_value_over_this_hosts_limit_is_not_copied() {
    let Some(fleet) = Fleet::start(&[], "fleet::a_fleet_value_over_this_hosts_limit") else {
        return;
    };
    let a = fleet.host("a");
    let b = fleet
        .host("b")
        .with_env("CACHEBACK_STORE_MAX_VALUE", "1MiB");
    write_payload(&fleet.work().join("payload"), 2 << 20);
    let script = r#"echo "$H.$$" >> "$W/runs"; cat "$W/payload""#;
    let expected = fs::read(fleet.work().join("payload")).unwrap();
    let args = call(&["--ttl", "1h"], script);
    assert!(a.run(&args).stdout == expected, "A's output is whole");
    fleet.wait_published();
    let own = b.run(&args);
    assert!(own.stdout == expected, "B's output is whole");
    assert_eq!(fleet.runs().len(), 2, "B copied a value over its limit");
    assert!(
        wait_until(Duration::from_secs(30), || fleet.settled()),
        "processes linger"
    );
}

// ---------------------------------------------------------------------------
// 9. The password shows nowhere.
// ---------------------------------------------------------------------------

/// Every file under `dir`, recursively, as bytes.
fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let Ok(listing) = fs::read_dir(dir) else {
        return found;
    };
    for entry in listing.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(all_files(&path));
        } else if let Ok(bytes) = fs::read(&path) {
            found.push((path, bytes));
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn the_store_password_appears_in_no_output_and_no_file() {
    const PW: &str = "s3cret-fleet-pw";
    const WRONG: &str = "wr0ng-fleet-pw";
    let Some(mut fleet) = Fleet::start(
        &["user cacheback on >s3cret-fleet-pw ~* +@all"],
        "fleet::the_store_password",
    ) else {
        return;
    };
    let port = fleet.redis.port;
    let a = fleet.host("a").with_env(
        "CACHEBACK_STORE",
        &format!("redis://cacheback:{PW}@127.0.0.1:{port}"),
    );
    let b = fleet
        .host("b")
        .with_env(
            "CACHEBACK_STORE",
            &format!("redis://cacheback@127.0.0.1:{port}"),
        )
        .with_env("CACHEBACK_STORE_PASSWORD", PW);
    let first = prime(&fleet, &a, &[&b]);
    let mut outputs = Vec::new();
    let script = body();
    let shown = [&["show", "--"][..], &["sh", "-c", &script]].concat();
    for host in [&a, &b] {
        outputs.push(host.run(&standard()));
        outputs.push(host.cacheback(&["stats"]));
        outputs.push(host.cacheback(&["stats", "--json"]));
        outputs.push(host.cacheback(&shown));
    }
    // A wrong password: a warning, the command runs, neither password shows.
    let c = fleet.host("c").with_env(
        "CACHEBACK_STORE",
        &format!("redis://cacheback:{WRONG}@127.0.0.1:{port}"),
    );
    let refused = c.run(&standard());
    assert_eq!(fleet.runs().len(), 2);
    assert_eq!(text(&refused.stdout), format!("{}\n", fleet.runs()[1]));
    assert_one_warning(&refused, "a wrong password");
    assert!(
        !contains(&refused.stderr, WRONG),
        "{}",
        text(&refused.stderr)
    );
    // The store gone: the warning names it without the password.
    fleet.redis.kill();
    let d = fleet.host("d").with_env(
        "CACHEBACK_STORE",
        &format!("redis://cacheback:{PW}@127.0.0.1:{port}"),
    );
    let down = d.run(&standard());
    assert_one_warning(&down, "the store down");
    outputs.push(down);
    let e = fleet
        .host("e")
        .with_env(
            "CACHEBACK_STORE",
            &format!("redis://cacheback@127.0.0.1:{port}"),
        )
        .with_env("CACHEBACK_STORE_PASSWORD", PW);
    let down = e.run(&standard());
    assert_one_warning(&down, "the store down, password from the environment");
    outputs.push(down);
    for output in &outputs {
        for stream in [&output.stdout, &output.stderr] {
            assert!(
                !contains(stream, PW),
                "the password shows: {}",
                text(stream)
            );
        }
    }
    for (path, bytes) in all_files(&fleet.root.path().join("hosts")) {
        assert!(
            !contains(&bytes, PW),
            "the password is in {}",
            path.display()
        );
    }
    let _ = first;
}

// ---------------------------------------------------------------------------
// Options: flags before or after the subcommand, their environment twins.
// ---------------------------------------------------------------------------

#[test]
fn store_options_work_as_flags_before_or_after_the_subcommand_and_from_the_environment() {
    let Some(fleet) = Fleet::start(&[], "fleet::store_options") else {
        return;
    };
    let url = fleet.redis.url();
    let a = fleet.host("a").without_env("CACHEBACK_STORE");
    let before = [
        vec![
            "--store".to_owned(),
            url.clone(),
            "--store-prefix".to_owned(),
            "team".to_owned(),
            "--store-timeout".to_owned(),
            "2s".to_owned(),
            "--store-max-value".to_owned(),
            "10MiB".to_owned(),
            "run".to_owned(),
        ],
        standard(),
    ]
    .concat();
    let out = a.cacheback(&before);
    let first = fleet.runs().first().cloned().unwrap_or_default();
    assert_prints(&out, &first, "flags before `run`");
    assert!(
        wait_until(SETTLE, || !fleet.keys("team:*:meta").is_empty()),
        "the value is under the prefix `team`: {:?}",
        fleet.keys("*")
    );
    assert!(
        fleet.keys("cacheback:*").is_empty(),
        "{:?}",
        fleet.keys("*")
    );
    // After the subcommand, on B: filled from `team`.
    let b = fleet.host("b").without_env("CACHEBACK_STORE");
    let after = [
        vec![
            "--store".to_owned(),
            url.clone(),
            "--store-prefix".to_owned(),
            "team".to_owned(),
            "--store-timeout".to_owned(),
            "2s".to_owned(),
        ],
        standard(),
    ]
    .concat();
    assert_prints(&b.run(&after), &first, "flags after `run`");
    assert_eq!(fleet.runs().len(), 1, "B filled from the fleet");
    // From the environment, over the Unix socket, database 5, another prefix.
    let c = fleet
        .host("c")
        .with_env(
            "CACHEBACK_STORE",
            &format!("unix://{}?db=5", fleet.redis.socket.display()),
        )
        .with_env("CACHEBACK_STORE_PREFIX", "other");
    let own = c.run(&standard());
    assert_eq!(fleet.runs().len(), 2, "nothing under `other` yet: C ran it");
    assert_prints(&own, &fleet.runs()[1], "C");
    let in_db5 = || {
        text(
            &fleet
                .redis
                .cli(&["-n", "5", "--scan", "--pattern", "other:*:meta"])
                .stdout,
        )
    };
    assert!(
        wait_until(SETTLE, || !in_db5().is_empty()),
        "C's value is in database 5 under `other`"
    );
    // A flag wins over its environment twin.
    let d = fleet
        .host("d")
        .with_env("CACHEBACK_STORE", "redis://127.0.0.1:1")
        .with_env("CACHEBACK_STORE_PREFIX", "nothing-here");
    assert_prints(&d.run(&after), &first, "the flags over the environment");
    assert_eq!(fleet.runs().len(), 2, "D filled from `team`");
}

// ---------------------------------------------------------------------------
// A seeded random model: several hosts, random operations, invariants.
// ---------------------------------------------------------------------------

/// The model's command: a token, a short run.
const MODEL_BODY: &str = r#"t="$H.$$"; echo "$t" >> "$W/runs"; sleep 0.3; echo "$t""#;

/// Seeded random steps over three hosts sharing one entry: concurrent calls
/// on fresh and stale copies, ageing, invalidations, the server paused or
/// restarted, refreshers killed. After every call every caller printed
/// exactly one token some execution produced (never a mix, never nothing);
/// and while the store stayed healthy, a stale period (from one ageing of
/// every copy to the next) ran the command at most once fleet-wide. Replay
/// a failure with `CACHEBACK_FLEET_CLI_SEED=<seed>`; `CACHEBACK_FLEET_CLI_STEPS`
/// sets the number of steps (default 18).
#[test]
fn random_fleet_operations_keep_every_caller_whole_and_one_run_per_stale_period() {
    let Some(mut fleet) = Fleet::start(&[], "fleet::random_fleet_operations") else {
        return;
    };
    let mut rng = crate::harness::Rng::seeded("CACHEBACK_FLEET_CLI_SEED", "fleet CLI model");
    let seed = rng.seed();
    let steps: usize = std::env::var("CACHEBACK_FLEET_CLI_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(18);
    let mut next = move |limit: u64| rng.below(limit);
    let hosts: Vec<Host> = ["a", "b", "c"].iter().map(|n| fleet.host(n)).collect();
    let args = call(&["--ttl", "1h"], MODEL_BODY);
    // The current stale period: runs when it began, and whether it is clean
    // (no fault, no invalidation, no host skipping the store).
    let mut period_start = 0usize;
    let mut clean = true;
    let mut log: Vec<String> = Vec::new();
    let check_period = |fleet: &Fleet, start: usize, clean: bool, log: &[String], at: &str| {
        assert!(
            fleet.settled(),
            "seed {seed}, {at}: processes linger; {log:?}"
        );
        let ran = fleet.runs().len() - start;
        if clean {
            assert!(
                ran <= 1,
                "seed {seed}, {at}: {ran} executions in one stale period with the store healthy; steps: {log:?}"
            );
        }
    };
    for step in 0..steps {
        let at = format!("step {step}");
        match next(10) {
            0..=4 => {
                // Concurrent callers on one or two hosts.
                let n = 1 + next(4) as usize;
                let chosen: Vec<&Host> =
                    (0..1 + next(2)).map(|_| &hosts[next(3) as usize]).collect();
                log.push(format!(
                    "{at}: {n} callers on {:?}",
                    chosen.iter().map(|h| &h.name).collect::<Vec<_>>()
                ));
                let callers = spawn_fleet_callers(&chosen, n, &args);
                for (host, child) in callers {
                    let output = child.bounded_wait_with_output();
                    let runs = fleet.runs();
                    let printed = text(&output.stdout);
                    let token = printed.strip_suffix('\n').unwrap_or("");
                    assert!(
                        output.status.success()
                            && runs.iter().any(|t| t == token)
                            && !token.contains('\n'),
                        "seed {seed}, {at}: a caller on {host} printed {printed:?} (status {:?}, stderr {:?}); runs {runs:?}; steps: {log:?}",
                        output.status,
                        text(&output.stderr)
                    );
                }
            }
            5 | 6 => {
                // A new stale period: every copy aged.
                check_period(&fleet, period_start, clean, &log, &at);
                let refs: Vec<&Host> = hosts.iter().collect();
                fleet.age_all(&refs, 7200);
                period_start = fleet.runs().len();
                clean = hosts.iter().all(|h| !h.store_skipped());
                log.push(format!("{at}: aged, clean {clean}"));
            }
            7 => {
                let host = &hosts[next(3) as usize];
                let inv = [&["invalidate", "--"][..], &["sh", "-c", MODEL_BODY]].concat();
                let out = host.cacheback(&inv);
                log.push(format!(
                    "{at}: invalidate on {} -> {:?}",
                    host.name,
                    out.status.code()
                ));
                clean = false;
            }
            8 => {
                clean = false;
                if next(2) == 0 {
                    log.push(format!("{at}: server paused for callers"));
                    fleet.redis.pause();
                    let host = &hosts[next(3) as usize];
                    let out = host.run(&args);
                    fleet.redis.resume();
                    let runs = fleet.runs();
                    let token = text(&out.stdout);
                    assert!(
                        out.status.success() && runs.iter().any(|t| format!("{t}\n") == token),
                        "seed {seed}, {at}: with the server paused, {} printed {token:?}; runs {runs:?}; steps: {log:?}",
                        host.name
                    );
                } else {
                    log.push(format!("{at}: server restarted"));
                    fleet.redis.restart();
                }
                // "30 s later": the hosts try the store again.
                assert!(fleet.settled(), "seed {seed}, {at}: processes linger");
                for host in &hosts {
                    if let Ok(marker) = fs::File::options().write(true).open(host.down_marker()) {
                        marker
                            .set_modified(SystemTime::now() - Duration::from_secs(31))
                            .unwrap();
                    }
                }
            }
            _ => {
                // A stale hit, and its refresher killed with kill -9.
                let host = &hosts[next(3) as usize];
                host.age(7200);
                let out = host.run(&args);
                let refreshers: Vec<u32> = fleet
                    .processes()
                    .into_iter()
                    .filter(|pid| {
                        fs::read_to_string(format!("/proc/{pid}/comm"))
                            .is_ok_and(|c| c.trim() == "cacheback")
                    })
                    .collect();
                for pid in &refreshers {
                    signal(*pid, nix::sys::signal::Signal::SIGKILL);
                }
                log.push(format!(
                    "{at}: stale hit on {} and {} refresher(s) killed",
                    host.name,
                    refreshers.len()
                ));
                clean = false;
                let runs = fleet.runs();
                let token = text(&out.stdout);
                assert!(
                    out.status.success() && runs.iter().any(|t| format!("{t}\n") == token),
                    "seed {seed}, {at}: {} printed {token:?}; runs {runs:?}; steps: {log:?}",
                    host.name
                );
                // Let the dead lease expire before the next step.
                std::thread::sleep(Duration::from_millis(2200));
            }
        }
    }
    check_period(&fleet, period_start, clean, &log, "the end");
    eprintln!(
        "fleet CLI model seed {seed}: {steps} steps, {} executions; {}",
        fleet.runs().len(),
        log.join("; ")
    );
}

// ---------------------------------------------------------------------------
// 9. What an outside test found: a value from the future, a store that
//    stalls or drops mid-reply, a lease without an expiry, forged headers and
//    values that do not match their digest.
// ---------------------------------------------------------------------------

/// Stamps the fleet's value `secs` in the future, as an older cacheback on a
/// host whose clock ran ahead did (this one has the store stamp values).
fn stamp_in_future(fleet: &Fleet, secs: u64) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let ahead = (now + secs * 1000).to_string();
    fleet
        .redis
        .cli(&["HSET", &fleet.key("meta"), "finished_ms", &ahead]);
}

/// The fleet's value's `finished_ms` as stored.
fn stored_finished_ms(fleet: &Fleet) -> u64 {
    let text = fleet
        .redis
        .cli_text(&["HGET", &fleet.key("meta"), "finished_ms"]);
    text.trim().parse().unwrap_or(0)
}

/// Three hosts with a 3 s TTL call for `secs` after the fleet's value was
/// stamped `ahead` seconds in the future: it is stale for every host,
/// replaced once, and the replacement stands, so the fleet runs the command
/// about once per TTL (not once per host per TTL, as when every host kept
/// copying the pinned value back over its own newer one).
fn a_value_from_the_future_is_replaced(ahead: u64, test: &str) {
    let Some(fleet) = Fleet::start(&[], test) else {
        return;
    };
    let hosts = [fleet.host("a"), fleet.host("b"), fleet.host("c")];
    let args = call(&["--ttl", "3s"], &body());
    assert!(hosts[0].run(&args).status.success());
    fleet.wait_published();
    stamp_in_future(&fleet, ahead);
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(10) {
        for host in &hosts {
            let out = host.run(&args);
            let value = text(&out.stdout);
            assert!(
                fleet.runs().iter().any(|run| format!("{run}\n") == value),
                "host {} printed {value:?}, which no run produced",
                host.name
            );
            calls += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(fleet.settled(), "processes linger");
    let runs = fleet.runs();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        stored_finished_ms(&fleet) <= now + 1000,
        "the value stamped {ahead} s ahead is still in the fleet: nothing replaced it"
    );
    // The first run, the replacement of the future value, then one per 3 s
    // TTL period of the 10 s (and a period's edge may see one more).
    assert!(
        (2..=7).contains(&runs.len()),
        "{} runs for 3 hosts x 10 s with a 3 s TTL ({calls} calls): {runs:?}",
        runs.len()
    );
}

#[test]
fn a_value_stamped_ten_minutes_ahead_is_replaced_once_not_pinned() {
    a_value_from_the_future_is_replaced(600, "fleet::ten_minutes_ahead");
}

#[test]
fn a_value_stamped_a_year_ahead_is_replaced_once_not_pinned() {
    a_value_from_the_future_is_replaced(365 * 86_400, "fleet::a_year_ahead");
}

/// Finding: a reply that stalls or drops mid-value. The caller runs the
/// command itself after the reply timeout, says so once, and marks the store
/// down, so the next caller does not pay the wait again.
fn a_store_failing_mid_reply_is_marked_down(fault: Fault, test: &str) {
    let Some(fleet) = Fleet::start(&[], test) else {
        return;
    };
    let big = r#"echo "$H.$$" >> "$W/runs"; echo "$H.$$"; head -c 3000000 /dev/zero | tr '\0' x"#;
    let args = call(&["--ttl", "1h"], big);
    assert!(fleet.host("a").run(&args).status.success());
    fleet.wait_published();
    // The header's reply passes; the value's first chunk (1 MiB) does not.
    let proxy = Proxy::start(fleet.redis.port, 16 * 1024, fault);
    let b = fleet
        .host("b")
        .with_env("CACHEBACK_STORE", &proxy.url())
        .with_env("CACHEBACK_STORE_TIMEOUT", "200ms");
    let started = Instant::now();
    let miss = b.run(&args);
    let took = started.elapsed();
    assert!(miss.status.success(), "{}", text(&miss.stderr));
    let runs = fleet.runs();
    assert_eq!(runs.len(), 2, "B ran the command itself: {runs:?}");
    assert!(text(&miss.stdout).starts_with(&format!("{}\n", runs[1])));
    assert_eq!(miss.stdout.len(), runs[1].len() + 1 + 3_000_000);
    assert_one_warning(&miss, "B's miss through a failing link");
    assert!(took < Duration::from_secs(15), "the miss took {took:?}");
    // The next caller skips the store: no wait, no warning.
    let other = call(&["--ttl", "1h"], &format!("{} # other", body()));
    let started = Instant::now();
    let next = b.run(&other);
    let took = started.elapsed();
    assert_prints(&next, fleet.runs().last().unwrap(), "B's next miss");
    assert!(
        took < Duration::from_millis(1500),
        "the next miss took {took:?}: it tried the failing store again"
    );
}

#[test]
fn a_store_that_stalls_mid_reply_costs_one_wait_and_one_warning() {
    a_store_failing_mid_reply_is_marked_down(Fault::Stall, "fleet::stalls_mid_reply");
}

#[test]
fn a_store_that_drops_mid_reply_costs_one_warning() {
    a_store_failing_mid_reply_is_marked_down(Fault::Drop, "fleet::drops_mid_reply");
}

/// Waits for children, all at once and reading their output as it comes
/// (a caller streaming a large value into a full pipe would stall, holding
/// the lock the others wait on), for at most `limit` in all; kills what is
/// left past that.
#[track_caller]
fn finish_within(children: Vec<Child>, limit: Duration, what: &str) -> Vec<Output> {
    let deadline = Instant::now() + limit;
    let waits: Vec<(u32, std::sync::mpsc::Receiver<std::io::Result<Output>>)> = children
        .into_iter()
        .map(|child| {
            let pid = child.id();
            let (done, finished) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = done.send(child.wait_with_output());
            });
            (pid, finished)
        })
        .collect();
    let mut outputs = Vec::new();
    let mut late = Vec::new();
    for (n, (_, finished)) in waits.iter().enumerate() {
        match finished.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(output) => outputs.push(output.unwrap()),
            Err(_) => late.push(n),
        }
    }
    for (pid, _) in &waits {
        signal(*pid, nix::sys::signal::Signal::SIGKILL);
    }
    assert!(
        late.is_empty(),
        "{what}: callers {late:?} still waiting after {limit:?}"
    );
    outputs
}

#[test]
fn a_lease_stored_without_an_expiry_holds_up_no_host() {
    let Some(fleet) = Fleet::start(&[], "fleet::a_lease_without_expiry") else {
        return;
    };
    let a = fleet.host("a");
    prime(&fleet, &a, &[]);
    // No value, and a lease nobody renews and nothing expires, as a script
    // or another program might leave.
    let (meta, lease) = (fleet.key("meta"), fleet.key("lease"));
    for (host, options) in [
        ("b", &["--ttl", "1h"][..]),
        ("c", &["--ttl", "1h", "--timeout", "2"][..]),
    ] {
        assert!(fleet.settled(), "processes linger");
        fleet.redis.cli(&["DEL", &meta]);
        fleet.redis.cli(&["SET", &lease, "forged"]);
        let caller = fleet.host(host).spawn_run(&call(options, &body()));
        let out = finish_within(
            vec![caller],
            Duration::from_secs(15),
            &format!("host {host}'s miss"),
        )
        .remove(0);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let runs = fleet.runs();
        assert_eq!(text(&out.stdout), format!("{}\n", runs.last().unwrap()));
    }
    let left = fleet.redis.cli_text(&["PTTL", &lease]);
    assert_ne!(left.trim(), "-1", "the lease still has no expiry");
}

/// A header a host cannot trust: the miss runs the command, says once why
/// it did not use the fleet's value (`reason`: the value is at fault, not
/// the store, which is not marked down), and the local entry it stores is
/// whole (the next call is a plain hit).
#[track_caller]
fn a_bad_fleet_value_is_a_miss(fleet: &Fleet, host: &str, what: &str, reason: &str) {
    let host = fleet.host(host);
    let before = fleet.runs().len();
    let miss = host.run(&standard());
    let runs = fleet.runs();
    assert_eq!(
        runs.len(),
        before + 1,
        "{what}: the host ran the command: {runs:?}"
    );
    assert_eq!(text(&miss.stdout), format!("{}\n", runs[before]), "{what}");
    assert!(miss.status.success(), "{what}: {:?}", miss.status);
    assert_one_warning(&miss, what);
    let said = "cacheback: not using the fleet store's value of this entry (";
    assert!(
        text(&miss.stderr).starts_with(said) && text(&miss.stderr).contains(reason),
        "{what}: {:?}",
        text(&miss.stderr)
    );
    assert!(!host.store_skipped(), "{what}: the store was marked down");
    assert_prints(
        &host.run(&standard()),
        &runs[before],
        &format!("{what}: the next call"),
    );
}

#[test]
fn a_forged_or_damaged_fleet_value_is_a_miss_with_one_warning() {
    let Some(fleet) = Fleet::start(&[], "fleet::a_forged_header") else {
        return;
    };
    prime(&fleet, &fleet.host("a"), &[]);
    let meta = fleet.key("meta");
    fleet
        .redis
        .cli(&["HSET", &meta, "stdout_len", "18446744073709551615"]);
    a_bad_fleet_value_is_a_miss(
        &fleet,
        "b",
        "lengths that overflow",
        "its header is not valid",
    );
    assert!(fleet.settled());
    fleet.redis.cli(&["HSET", &meta, "stderr_len", "-1"]);
    a_bad_fleet_value_is_a_miss(&fleet, "c", "a negative length", "its header is not valid");
    assert!(fleet.settled());
    fleet.redis.cli(&["HSET", &meta, "chunks", "7"]);
    a_bad_fleet_value_is_a_miss(
        &fleet,
        "d",
        "a chunk count that does not fit",
        "its header is not valid",
    );
    assert!(fleet.settled());
    // The right length, other bytes: the digest tells.
    let generation = fleet.redis.cli_text(&["HGET", &meta, "gen"]);
    let chunk = fleet.key(&format!("{}:0", generation.trim()));
    fleet.redis.cli(&["SETRANGE", &chunk, "0", "Z"]);
    a_bad_fleet_value_is_a_miss(
        &fleet,
        "e",
        "bytes that do not match the digest",
        "the value does not match its digest",
    );
    // Its length changed: the chunk check tells.
    assert!(fleet.settled());
    let generation = fleet.redis.cli_text(&["HGET", &meta, "gen"]);
    let chunk = fleet.key(&format!("{}:0", generation.trim()));
    fleet.redis.cli(&["APPEND", &chunk, "more"]);
    a_bad_fleet_value_is_a_miss(
        &fleet,
        "f",
        "a chunk of the wrong length",
        "a chunk of the value has the wrong length",
    );
}

#[test]
fn a_store_that_trickles_its_reply_holds_no_caller_for_long() {
    let Some(fleet) = Fleet::start(&[], "fleet::trickles") else {
        return;
    };
    let big = r#"echo "$H.$$" >> "$W/runs"; echo "$H.$$"; head -c 3000000 /dev/zero | tr '\0' x"#;
    let args = call(&["--ttl", "1h"], big);
    assert!(fleet.host("a").run(&args).status.success());
    fleet.wait_published();
    // 20 kB/s: the 3 MB value would take two and a half minutes.
    let proxy = Proxy::start(fleet.redis.port, 16 * 1024, Fault::Trickle(20_000));
    let b = fleet
        .host("b")
        .with_env("CACHEBACK_STORE", &proxy.url())
        .with_env("CACHEBACK_STORE_TIMEOUT", "100ms");
    let callers: Vec<Child> = (0..3).map(|_| b.spawn_run(&args)).collect();
    let outputs = finish_within(callers, Duration::from_secs(30), "host b's callers");
    for (n, out) in outputs.into_iter().enumerate() {
        assert!(out.status.success(), "caller {n}: {}", text(&out.stderr));
        let line = out.stdout.iter().position(|&c| c == b'\n').unwrap();
        assert_eq!(
            out.stdout.len(),
            line + 1 + 3_000_000,
            "caller {n}: the whole value"
        );
    }
    let runs = fleet.runs();
    assert!(
        runs.len() <= 2,
        "one local run served the host's callers: {runs:?}"
    );
}

/// A store whose value replies are slower than its first, short, round trip
/// (a large chunk over a slow link) is still copied from: once the store
/// has answered, a reply may take up to ten times the connect timeout
/// (docs/fleet.md, `--store-timeout`), not the connect timeout itself.
#[test]
fn a_store_slower_to_send_a_value_than_to_answer_is_still_copied_from() {
    let Some(fleet) = Fleet::start(&[], "fleet::slow_value_replies") else {
        return;
    };
    assert!(fleet.host("a").run(&standard()).status.success());
    fleet.wait_published();
    // Each chunk comes 1.5 s late: past the 300 ms connect timeout, well
    // inside the 3 s a reply may take after the first answer.
    let proxy = Proxy::start(
        fleet.redis.port,
        0,
        Fault::SlowGets(Duration::from_millis(1500)),
    );
    let b = fleet
        .host("b")
        .with_env("CACHEBACK_STORE", &proxy.url())
        .with_env("CACHEBACK_STORE_TIMEOUT", "300ms");
    let fill = b.run(&standard());
    // Exactly A's value, without a warning.
    assert_prints(&fill, &fleet.runs()[0], "B's miss, copied over a slow link");
    assert_eq!(fleet.runs().len(), 1, "B ran the command itself");
}

/// Host A's whole miss (lease, run, publish or failure record, release)
/// lands between host B's read of the entry and B's lease request, which
/// the proxy holds until then. Returns B's output and A's.
fn a_run_lands_between_a_read_and_the_lease(fleet: &Fleet) -> (Output, Output) {
    let proxy = Proxy::start(fleet.redis.port, 0, Fault::Hold(b"$2\r\nNX\r\n"));
    let b = fleet
        .host("b")
        .with_env("CACHEBACK_STORE", &proxy.url())
        .with_env("CACHEBACK_STORE_TIMEOUT", "1s");
    let late = b.spawn_run(&standard());
    assert!(
        wait_until(SETTLE, || proxy.holding()),
        "B never asked for the lease"
    );
    let a = fleet.host("a").run(&standard());
    assert!(
        wait_until(SETTLE, || fleet.keys("cacheback:*:lease").is_empty()),
        "A never released its lease"
    );
    proxy.let_go();
    (late.bounded_wait_with_output(), a)
}

/// A run on another host that lands after this host read the entry but
/// before it took the lease is this host's result, as if it had waited for
/// it: the value is copied, not produced again, and the lease taken to
/// find that out is given back at once, not left to expire.
#[test]
fn a_value_that_lands_before_the_lease_is_copied_and_the_lease_given_back() {
    let Some(fleet) = Fleet::start(&[], "fleet::lands_before_the_lease") else {
        return;
    };
    let (b, a) = a_run_lands_between_a_read_and_the_lease(&fleet);
    let runs = fleet.runs();
    assert_prints(&a, &runs[0], "A's miss");
    assert_prints(&b, &runs[0], "B's miss, answered by A's run");
    assert_eq!(runs.len(), 1, "B ran the command again");
    assert!(
        fleet.keys("cacheback:*:lease").is_empty(),
        "B kept the lease it took: {:?}",
        fleet.keys("cacheback:*:lease")
    );
}

/// The same with a run that fails: the host that waited reports that run's
/// failure, its status and its stderr, as its own.
#[test]
fn a_failure_that_lands_before_the_lease_is_reported_with_its_status_and_stderr() {
    let Some(fleet) = Fleet::start(&[], "fleet::fails_before_the_lease") else {
        return;
    };
    fleet.touch("fail");
    let (b, a) = a_run_lands_between_a_read_and_the_lease(&fleet);
    let runs = fleet.runs();
    assert_eq!(runs.len(), 1, "B ran the command again: {runs:?}");
    assert_eq!(a.status.code(), Some(3), "A's run failed");
    assert_eq!(b.status.code(), Some(3), "B's status: {b:?}");
    assert_eq!(text(&b.stderr), format!("boom {}\n", runs[0]), "B's stderr");
    assert!(b.stdout.is_empty());
    assert!(
        fleet.keys("cacheback:*:lease").is_empty(),
        "B kept the lease it took"
    );
    // B keeps the failure as its own first one, for its callers and `show`.
    let body = body();
    let show = [&["show", "--"][..], &["sh", "-c", &body]].concat();
    let shown = text(&fleet.host("b").cacheback(&show).stdout);
    assert!(
        shown.contains("exit 3, ") && shown.contains(", 1 in a row"),
        "{shown}"
    );
}

/// The ACL user docs/fleet.md recommends can do everything a fleet host
/// does: a miss that publishes, a fill, a stale refresh, a failure, `stats`
/// and `invalidate`, with no warning (a command the line forgot, even one a
/// script calls, would be refused with NOPERM).
#[test]
fn the_documented_acl_user_is_enough_for_a_fleet_host() {
    let docs =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/fleet.md")).unwrap();
    let line = docs
        .lines()
        .find(|line| line.starts_with("ACL SETUSER cacheback "))
        .expect("docs/fleet.md gives an ACL SETUSER line");
    let rules = line
        .trim_start_matches("ACL SETUSER ")
        .replace(">PASSWORD", ">doc-pw");
    let config = format!("user {rules}");
    let Some(fleet) = Fleet::start(&[&config], "fleet::the_documented_acl_user") else {
        return;
    };
    let url = format!("redis://cacheback:doc-pw@127.0.0.1:{}", fleet.redis.port);
    let (a, b) = (
        fleet.host("a").with_env("CACHEBACK_STORE", &url),
        fleet.host("b").with_env("CACHEBACK_STORE", &url),
    );
    let first = a.run(&standard());
    assert_prints(&first, &fleet.runs()[0], "A's miss");
    assert!(fleet.settled());
    assert_prints(&b.run(&standard()), &fleet.runs()[0], "B fills");
    fleet.age_all(&[&a, &b], 7200);
    assert_prints(&a.run(&standard()), &fleet.runs()[0], "A's stale hit");
    assert!(
        wait_until(SETTLE, || fleet.runs().len() == 2),
        "A refreshed"
    );
    assert!(fleet.settled());
    fleet.touch("fail");
    a.age(7200);
    fleet.age_in_store("meta", 7200);
    assert_prints(
        &a.run(&standard()),
        &fleet.runs()[1],
        "A's stale hit, failing",
    );
    assert!(
        wait_until(SETTLE, || fleet.runs().len() == 3),
        "A's refresh ran"
    );
    assert!(fleet.settled());
    assert_eq!(
        fleet.keys("cacheback:*:fail").len(),
        1,
        "the failure reached the store"
    );
    let stats = a.cacheback(&["stats"]);
    assert!(stats.status.success(), "{}", text(&stats.stderr));
    assert_eq!(text(&stats.stderr), "", "stats warned");
    let invalidate = a.cacheback(&[&["invalidate", "--"][..], &["sh", "-c", &body()]].concat());
    assert!(invalidate.status.success(), "{}", text(&invalidate.stderr));
    assert!(
        fleet.keys("cacheback:*:meta").is_empty(),
        "the fleet value is gone"
    );
}
