//! The fleet tier on a real three-node Redis Cluster on loopback
//! ([`RedisCluster`]: three `redis-server`s the test forms into a cluster
//! with `CLUSTER ADDSLOTSRANGE` and `CLUSTER MEET`, stopped by PID).
//!
//! "Hosts" are cache directories of their own; each is given the URL of one
//! node only, and must reach the others by following the cluster's
//! redirections. Every entry's command appends `I HOST.PID` to `$W/runs`
//! (shared by the whole fleet) and prints it, so every execution is counted
//! per entry and every printed value must be one of them. The argv holds
//! `$W` literally, so an entry's key, and so its slot and node, is the
//! same in every run of the tests.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{BIN, Bounded, BoundedChild, processes_with_env, wait_until};
use crate::redis_harness::{RedisCluster, STORE_VARIABLES};

/// Generous for 2 cores shared with other work: a node's first answer may
/// come late, and a late answer would read as a store that is down.
const PATIENT: &str = "2s";
/// Bound for background work (publishes, refreshes) to end.
const SETTLE: Duration = Duration::from_secs(30);
/// How long a node must be silent before the others declare it failed: long
/// enough that a busy machine does not fail a live node in the tests that
/// do not kill one.
const NODE_TIMEOUT_MS: u32 = 5000;

/// A cluster, a work directory shared by the fleet, hosts made on demand.
struct World {
    root: tempfile::TempDir,
    cluster: RedisCluster,
}

impl World {
    fn start(test: &str, node_timeout_ms: u32) -> Option<World> {
        let cluster = RedisCluster::start(test, node_timeout_ms)?;
        let root = tempfile::Builder::new()
            .prefix("cacheback-cluster-")
            .tempdir()
            .unwrap();
        fs::create_dir(root.path().join("work")).unwrap();
        Some(World { root, cluster })
    }

    fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    /// A host whose store URL names node `node` only.
    fn host(&self, name: &str, node: usize) -> Host {
        Host::new(self, name, &self.cluster.url(node))
    }

    /// Every execution so far: `I HOST.PID` lines.
    fn runs(&self) -> Vec<String> {
        fs::read_to_string(self.work().join("runs"))
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// The executions of entry `i`.
    fn runs_of(&self, i: usize) -> Vec<String> {
        let mark = format!("{i} ");
        self.runs()
            .into_iter()
            .filter(|run| run.starts_with(&mark))
            .collect()
    }

    /// Waits until every caller, refresher and command of the fleet ended.
    #[track_caller]
    fn settle(&self) {
        let var = format!("W={}", self.work().display());
        assert!(
            wait_until(SETTLE, || processes_with_env(var.as_bytes()).is_empty()),
            "background work never ended"
        );
    }

    /// The `meta` key names on node `i`.
    fn metas_on(&self, i: usize) -> Vec<String> {
        self.cluster.keys_on(i, "cacheback:*:meta")
    }

    /// Node of the entry whose meta key is `meta`.
    fn node_of(&self, meta: &str) -> usize {
        self.cluster.owner_of(self.cluster.slot_of(meta))
    }

    /// The meta key of entry `i`, found on whichever node holds it.
    #[track_caller]
    fn meta_of(&self, i: usize) -> String {
        for node in 0..3 {
            for meta in self.metas_on(node) {
                if self.is_entry(node, &meta, i) {
                    return meta;
                }
            }
        }
        panic!("no meta key for entry {i}")
    }

    /// Whether `meta` on `node` is entry `i`'s: its details hold its argv.
    fn is_entry(&self, node: usize, meta: &str, i: usize) -> bool {
        let details = self.cluster.nodes[node].cli(&["HGET", meta, "details"]);
        contains(&details.stdout, marker(i).as_bytes())
    }

    /// Waits until the fleet holds `count` values across the nodes (a
    /// publish may end after its caller exits).
    #[track_caller]
    fn wait_values(&self, count: usize) {
        let total = || (0..3).map(|node| self.metas_on(node).len()).sum::<usize>();
        assert!(
            wait_until(SETTLE, || total() == count),
            "expected {count} values in the cluster, found {}",
            total()
        );
    }
}

/// One host: its own cache directory, the fleet's work directory, a store URL.
struct Host {
    name: String,
    dir: PathBuf,
    work: PathBuf,
    env: Vec<(String, String)>,
}

impl Host {
    fn new(world: &World, name: &str, url: &str) -> Host {
        Host {
            name: name.to_owned(),
            dir: world.root.path().join("hosts").join(name),
            work: world.work(),
            env: vec![
                ("CACHEBACK_STORE".into(), url.to_owned()),
                ("CACHEBACK_STORE_TIMEOUT".into(), PATIENT.into()),
                ("CACHEBACK_STORE_LEASE".into(), "5s".into()),
            ],
        }
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(BIN);
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

    /// `cacheback ARGS`, to completion.
    fn cb<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.cmd().args(args).bounded_output()
    }

    /// `cacheback ARGS`, which must succeed; its stdout.
    #[track_caller]
    fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let out = self.cb(args);
        assert!(
            out.status.success(),
            "host {}: {:?}\nstdout: {}\nstderr: {}",
            self.name,
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `cacheback run` of entry `i`.
    fn run(&self, i: usize) -> Output {
        self.cb(&entry(i, ""))
    }

    /// `stats --json`'s fleet entries, by key.
    #[track_caller]
    fn fleet_keys(&self) -> Vec<String> {
        let json: serde_json::Value = serde_json::from_str(&self.ok(&["stats", "--json"])).unwrap();
        assert_eq!(json["fleet"]["error"], serde_json::Value::Null, "{json:#}");
        let mut keys: Vec<String> = json["fleet"]["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("no fleet entries: {json:#}"))
            .iter()
            .map(|entry| entry["key"].as_str().unwrap().to_owned())
            .collect();
        keys.sort();
        keys
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// What makes entry `i`'s argv its own.
fn marker(i: usize) -> String {
    format!("# entry {i}.")
}

/// `run --ttl 1h --name eI -- sh -c BODY`: BODY appends `I HOST.PID` to
/// `$W/runs` (after `before`, shell code) and prints it.
fn entry(i: usize, before: &str) -> Vec<String> {
    let body = format!(
        r#"{before} t="{i} $H.$$"; echo "$t" >> "$W/runs"; echo "$t" {}"#,
        marker(i)
    );
    [
        "run",
        "--ttl",
        "1h",
        "--name",
        &format!("e{i}"),
        "--",
        "sh",
        "-c",
        &body,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Asserts `output` printed exactly `value`, in silence, with status 0.
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

/// Host `a` runs entries `0..count` (each once, printing its own run),
/// then waits until the cluster holds all their values.
#[track_caller]
fn produce(world: &World, a: &Host, count: usize) -> Vec<String> {
    let mut values = Vec::new();
    for i in 0..count {
        let out = a.run(i);
        let runs = world.runs_of(i);
        assert_eq!(runs.len(), 1, "entry {i}: {runs:?}");
        assert_prints(&out, &runs[0], &format!("entry {i}'s first run"));
        values.push(runs[0].clone());
    }
    world.settle();
    world.wait_values(count);
    values
}

// ---------------------------------------------------------------------------

#[test]
fn cluster_a_miss_on_one_host_fills_others_whatever_node_their_url_names() {
    let Some(world) = World::start("cluster_a_miss_fills", NODE_TIMEOUT_MS) else {
        return;
    };
    // Each host knows one node; 30 entries land on all three (checked
    // below), so every host reaches nodes its URL does not name.
    let hosts: Vec<Host> = (0..3)
        .map(|node| world.host(&format!("h{node}"), node))
        .collect();
    let values = produce(&world, &hosts[0], 30);
    let per_node: Vec<usize> = (0..3).map(|node| world.metas_on(node).len()).collect();
    assert!(
        per_node.iter().all(|&n| n > 0),
        "every node holds entries: {per_node:?}"
    );
    // Each node holds exactly the keys of its slots, as the server hashes them.
    for node in 0..3 {
        for meta in world.metas_on(node) {
            assert_eq!(world.node_of(&meta), node, "{meta} on node {node}");
            let base = meta.strip_suffix(":meta").unwrap();
            let slot = world.cluster.slot_of(&meta);
            assert_eq!(world.cluster.slot_of(&format!("{base}:counts")), slot);
            let in_slot = world.cluster.nodes[node].cli_text(&[
                "CLUSTER",
                "COUNTKEYSINSLOT",
                &slot.to_string(),
            ]);
            assert!(
                in_slot.trim().parse::<u32>().unwrap() >= 2,
                "{meta}: {in_slot}"
            );
        }
    }
    for host in &hosts[1..] {
        for (i, value) in values.iter().enumerate() {
            assert_prints(
                &host.run(i),
                value,
                &format!("host {} fills entry {i} from the cluster", host.name),
            );
        }
    }
    world.settle();
    assert_eq!(world.runs().len(), 30, "a fill runs nothing");
}

#[test]
fn cluster_two_hosts_of_many_callers_on_cold_misses_run_each_entry_once() {
    let Some(world) = World::start("cluster_two_hosts_of_many_callers", NODE_TIMEOUT_MS) else {
        return;
    };
    let (a, b) = (world.host("a", 0), world.host("b", 2));
    const ENTRIES: usize = 4;
    const PER_HOST: usize = 15;
    let mut callers = Vec::new();
    for _ in 0..PER_HOST {
        for i in 0..ENTRIES {
            for host in [&a, &b] {
                let child = host
                    .cmd()
                    .args(entry(i, "sleep 0.5;"))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                callers.push((i, host.name.clone(), child));
            }
        }
    }
    let outputs: Vec<(usize, String, Output)> = callers
        .into_iter()
        .map(|(i, host, child)| (i, host, child.bounded_wait_with_output()))
        .collect();
    world.settle();
    for i in 0..ENTRIES {
        let runs = world.runs_of(i);
        assert_eq!(
            runs.len(),
            1,
            "entry {i}: one execution fleet-wide: {runs:?}"
        );
    }
    for (i, host, output) in &outputs {
        assert_prints(
            output,
            &world.runs_of(*i)[0],
            &format!("entry {i} on {host}"),
        );
    }
    let nodes: Vec<usize> = (0..ENTRIES)
        .map(|i| world.node_of(&world.meta_of(i)))
        .collect();
    let mut distinct = nodes.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() >= 2, "the entries span nodes: {nodes:?}");
}

#[test]
fn cluster_management_commands_cover_every_master() {
    let Some(world) = World::start("cluster_management_commands", NODE_TIMEOUT_MS) else {
        return;
    };
    let (a, b, c) = (world.host("a", 0), world.host("b", 1), world.host("c", 2));
    produce(&world, &a, 12);
    let on_nodes = |world: &World| {
        let mut keys: Vec<String> = (0..3)
            .flat_map(|node| world.metas_on(node))
            .map(|meta| meta["cacheback:{".len()..meta.len() - "}:meta".len()].to_owned())
            .collect();
        keys.sort();
        keys
    };
    assert!((0..3).all(|node| !world.metas_on(node).is_empty()));
    // stats: every entry of every master, through any node.
    for host in [&a, &b, &c] {
        assert_eq!(
            host.fleet_keys(),
            on_nodes(&world),
            "stats on {}",
            host.name
        );
    }
    // show, by label, of an entry on a node the host's URL does not name.
    let far = (0..12)
        .find(|&i| world.node_of(&world.meta_of(i)) != 1)
        .unwrap();
    let shown = b.ok(&["show", "--name", &format!("e{far}")]);
    assert!(shown.contains("fleet:        fresh, produced"), "{shown}");
    assert!(shown.contains("not in this host's cache"), "{shown}");
    // invalidate: gone from its node, and from the listing.
    let gone = world.meta_of(far);
    c.ok(&["invalidate", "--name", &format!("e{far}")]);
    assert!(
        !world.metas_on(world.node_of(&gone)).contains(&gone),
        "invalidate forgot {gone}"
    );
    assert_eq!(a.fleet_keys(), on_nodes(&world));
    assert_eq!(a.fleet_keys().len(), 11);
    // warm: runs and publishes; another host copies without running.
    let warmed = entry(40, "");
    let warm_args: Vec<&str> = std::iter::once("warm")
        .chain(warmed[1..].iter().map(String::as_str))
        .collect();
    c.ok(&warm_args);
    world.settle();
    world.wait_values(12);
    let value = world.runs_of(40);
    assert_eq!(value.len(), 1, "one warm run");
    assert_prints(&b.run(40), &value[0], "b copies the warmed value");
    // gc: forgets the values produced too long ago, on every node.
    let mut aged = Vec::new();
    for node in 0..3 {
        if let Some(meta) = world.metas_on(node).first() {
            let server = &world.cluster.nodes[node];
            let finished: u64 = server
                .cli_text(&["HGET", meta, "finished_ms"])
                .trim()
                .parse()
                .unwrap();
            let earlier = (finished - 3 * 86_400_000).to_string();
            server.cli(&["HSET", meta, "finished_ms", &earlier]);
            aged.push(meta.clone());
        }
    }
    assert_eq!(aged.len(), 3);
    let done = a.ok(&["gc", "--older-than", "1d"]);
    assert!(done.contains("forgot 3 values"), "{done}");
    for meta in &aged {
        assert!(
            !world.metas_on(world.node_of(meta)).contains(meta),
            "gc forgot {meta}"
        );
    }
    assert_eq!(b.fleet_keys().len(), 9);
}

#[test]
fn cluster_a_slot_in_migration_is_read_through_ask() {
    let Some(world) = World::start("cluster_a_slot_in_migration", NODE_TIMEOUT_MS) else {
        return;
    };
    let (a, b, c) = (world.host("a", 0), world.host("b", 1), world.host("c", 2));
    let values = produce(&world, &a, 1);
    let meta = world.meta_of(0);
    let slot = world.cluster.slot_of(&meta);
    let source = world.node_of(&meta);
    let target = (source + 1) % 3;
    let (src, dst) = (&world.cluster.nodes[source], &world.cluster.nodes[target]);
    let slot_text = slot.to_string();
    let said = dst.cli_text(&[
        "CLUSTER",
        "SETSLOT",
        &slot_text,
        "IMPORTING",
        &world.cluster.id(source),
    ]);
    assert_eq!(said.trim(), "OK");
    let said = src.cli_text(&[
        "CLUSTER",
        "SETSLOT",
        &slot_text,
        "MIGRATING",
        &world.cluster.id(target),
    ]);
    assert_eq!(said.trim(), "OK");
    // The value (header and chunks) moves; its counters stay behind.
    let in_slot = src.cli_text(&["CLUSTER", "GETKEYSINSLOT", &slot_text, "100"]);
    let moving: Vec<&str> = in_slot
        .lines()
        .filter(|key| !key.ends_with(":counts"))
        .collect();
    assert!(moving.len() >= 2, "header and a chunk: {in_slot}");
    let port = dst.port.to_string();
    let mut migrate = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
    migrate.extend(&moving);
    let said = src.cli_text(&migrate);
    assert_eq!(said.trim(), "OK", "{migrate:?}");
    // The source now answers ASK for the header: the test exercises it.
    let asked = src.cli_text(&["HGETALL", &meta]);
    assert!(asked.starts_with("ASK "), "{asked}");

    assert_prints(&b.run(0), &values[0], "b fills through ASK");
    let shown = c.ok(&["show", "--name", "e0"]);
    assert!(shown.contains("fleet:        fresh, produced"), "{shown}");
    assert!(
        shown.contains("1 copy"),
        "the counters stayed on the source: {shown}"
    );
    assert_eq!(c.fleet_keys().len(), 1, "listed once mid-migration");

    // The migration ends: MOVED to the target for everyone.
    let rest: Vec<String> = src
        .cli_text(&["CLUSTER", "GETKEYSINSLOT", &slot_text, "100"])
        .lines()
        .map(str::to_owned)
        .collect();
    if !rest.is_empty() {
        let mut migrate = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        migrate.extend(rest.iter().map(String::as_str));
        assert_eq!(src.cli_text(&migrate).trim(), "OK");
    }
    let owner = world.cluster.id(target);
    for node in &world.cluster.nodes {
        node.cli(&["CLUSTER", "SETSLOT", &slot_text, "NODE", &owner]);
    }
    assert!(
        wait_until(SETTLE, || world.node_of(&meta) == target),
        "the slot moved"
    );
    let d = world.host("d", source);
    assert_prints(&d.run(0), &values[0], "d fills from the new owner");
    world.settle();
    assert_eq!(world.runs().len(), 1, "nothing ran again");
    assert_eq!(b.fleet_keys().len(), 1);
}

#[test]
fn cluster_a_killed_node_leaves_callers_local_with_one_warning() {
    // A node timeout short enough that the survivors declare the cluster
    // down soon, long enough that the first phase below runs before.
    let Some(mut world) = World::start("cluster_a_killed_node", 4000) else {
        return;
    };
    let a = world.host("a", 0);
    let values = produce(&world, &a, 12);
    let on = |node: usize| -> Vec<usize> {
        (0..12)
            .filter(|&i| world.node_of(&world.meta_of(i)) == node)
            .collect()
    };
    let (on_dead, on_live) = (on(2), on(0));
    assert!(!on_dead.is_empty() && !on_live.is_empty());
    world.cluster.nodes[2].kill();

    // At once: the dead node's entries cannot be reached.
    let b = world.host("b", 0);
    let out = b.run(on_dead[0]);
    assert_eq!(world.runs_of(on_dead[0]).len(), 2, "b ran it locally");
    assert_eq!(
        text(&out.stdout),
        format!("{}\n", world.runs_of(on_dead[0])[1])
    );
    let warning = text(&out.stderr);
    assert_eq!(warning.lines().count(), 1, "one warning: {warning}");
    assert!(warning.contains("fleet store unavailable"), "{warning}");
    assert!(
        warning.contains(&format!(":{}", world.cluster.nodes[2].port)),
        "it names the node: {warning}"
    );
    // Nothing local is lost: a's copies are served, fresh, without the store.
    for (i, value) in values.iter().enumerate() {
        assert_prints(&a.run(i), value, &format!("a's copy of entry {i}"));
    }

    // Later: the survivors declare the cluster down, and say CLUSTERDOWN.
    let live = &world.cluster.nodes[0];
    assert!(
        wait_until(Duration::from_secs(60), || live
            .cli_text(&["CLUSTER", "INFO"])
            .contains("cluster_state:fail")),
        "the cluster never noticed the dead node"
    );
    let c = world.host("c", 0);
    let out = c.run(on_live[0]);
    assert_eq!(world.runs_of(on_live[0]).len(), 2, "c ran it locally");
    let warning = text(&out.stderr);
    assert_eq!(warning.lines().count(), 1, "one warning: {warning}");
    assert!(warning.contains("the cluster is down"), "{warning}");
    assert!(out.status.success());
    // The next callers skip the store, in silence.
    let again = c.run(on_dead[0]);
    assert_eq!(text(&again.stderr), "", "the marker spares the warning");
    assert!(again.status.success());
    // A management command says so and fails (125), without a panic.
    let stats = a.cb(&["stats"]);
    assert_eq!(stats.status.code(), Some(125), "{stats:?}");
    assert!(!text(&stats.stderr).contains("panicked"), "{stats:?}");
}

/// A fake node that answers every command with `-MOVED 1 <itself>`: a
/// cluster misconfigured into a loop.
fn moved_loop_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut line = String::new();
                // Each command is `*N` then N pairs of `$LEN` and the bytes.
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let count: usize = line.trim().get(1..).unwrap_or("").parse().unwrap_or(0);
                    let mut args = Vec::new();
                    for _ in 0..count {
                        line.clear();
                        let _ = reader.read_line(&mut line);
                        line.clear();
                        let _ = reader.read_line(&mut line);
                        args.push(line.trim_end().to_ascii_uppercase());
                    }
                    line.clear();
                    let reply = if args.first().is_some_and(|name| name == "AUTH") {
                        "+OK\r\n".to_owned()
                    } else {
                        format!("-MOVED 1 127.0.0.1:{port}\r\n")
                    };
                    if writer.write_all(reply.as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn cluster_a_redirection_loop_ends_in_one_warning() {
    let port = moved_loop_server();
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("work")).unwrap();
    let host = Host {
        name: "a".into(),
        dir: root.path().join("cache"),
        work: root.path().join("work"),
        env: vec![
            (
                "CACHEBACK_STORE".into(),
                format!("redis://u:hunter2@127.0.0.1:{port}"),
            ),
            ("CACHEBACK_STORE_TIMEOUT".into(), PATIENT.into()),
        ],
    };
    let started = Instant::now();
    let out = host.run(0);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded: {:?}",
        started.elapsed()
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        text(&out.stdout).starts_with("0 a."),
        "ran locally: {out:?}"
    );
    let warning = text(&out.stderr);
    assert_eq!(warning.lines().count(), 1, "{warning}");
    assert!(
        warning.contains("still redirected after 5 redirections"),
        "{warning}"
    );
    assert!(warning.contains("MOVED 1 127.0.0.1"), "{warning}");
    assert!(!warning.contains("hunter2"), "{warning}");
    let stats = host.cb(&["stats"]);
    assert_eq!(stats.status.code(), Some(125), "{stats:?}");
    assert!(!text(&stats.stderr).contains("hunter2"), "{stats:?}");
}

/// Seeded random steps over three hosts, each given a different node's URL,
/// and six entries spread over the cluster's nodes: bursts of concurrent
/// callers on one to three hosts, invalidations, and listings. A model
/// holds each host's local copy and the cluster's value of every entry,
/// and after every step:
/// - a host with a local copy prints it; one without prints the cluster's
///   value; with neither anywhere, every caller of the burst prints the one
///   run the burst made;
/// - the command ran once for a burst on an entry nobody had, else never;
/// - `stats` through any node lists exactly the entries the model holds.
///
/// Replay a failure with `CACHEBACK_CLUSTER_SEED=<seed>`;
/// `CACHEBACK_CLUSTER_STEPS` sets the number of steps (default 24).
#[test]
fn cluster_random_operations_match_a_model_of_the_two_tiers() {
    let Some(world) = World::start("cluster_random_operations", NODE_TIMEOUT_MS) else {
        return;
    };
    const ENTRIES: usize = 6;
    let mut rng = crate::harness::Rng::seeded("CACHEBACK_CLUSTER_SEED", "cluster model");
    let steps: usize = std::env::var("CACHEBACK_CLUSTER_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let hosts: Vec<Host> = (0..3)
        .map(|node| world.host(&format!("h{node}"), node))
        .collect();
    // The model: each host's local copy, and the cluster's value.
    let mut local: Vec<Vec<Option<String>>> = vec![vec![None; ENTRIES]; hosts.len()];
    let mut shared: Vec<Option<String>> = vec![None; ENTRIES];
    let mut log: Vec<String> = Vec::new();
    for step in 0..steps {
        match rng.below(8) {
            0..=4 => {
                let i = rng.below(ENTRIES as u64) as usize;
                let mut chosen: Vec<usize> = (0..1 + rng.below(3))
                    .map(|_| rng.below(3) as usize)
                    .collect();
                chosen.sort();
                chosen.dedup();
                let per_host = 1 + rng.below(4) as usize;
                log.push(format!(
                    "step {step}: entry {i}, {per_host} callers on hosts {chosen:?}"
                ));
                let before = world.runs_of(i).len();
                let mut callers = Vec::new();
                for _ in 0..per_host {
                    for &h in &chosen {
                        let child = hosts[h]
                            .cmd()
                            .args(entry(i, ""))
                            .stdout(Stdio::piped())
                            .stderr(Stdio::piped())
                            .spawn()
                            .unwrap();
                        callers.push((h, child));
                    }
                }
                let outputs: Vec<(usize, Output)> = callers
                    .into_iter()
                    .map(|(h, child)| (h, child.bounded_wait_with_output()))
                    .collect();
                world.settle();
                let runs = world.runs_of(i);
                let cold = shared[i].is_none() && chosen.iter().any(|&h| local[h][i].is_none());
                let ran = runs.len() - before;
                assert_eq!(
                    ran,
                    usize::from(cold),
                    "step {step}: entry {i} ran {ran} times (cold: {cold}); runs {runs:?}; steps {log:#?}"
                );
                let fresh_run = runs.last().cloned();
                for (h, output) in &outputs {
                    let expected = local[*h][i]
                        .clone()
                        .or_else(|| shared[i].clone())
                        .or_else(|| fresh_run.clone())
                        .unwrap();
                    assert_prints(
                        output,
                        &expected,
                        &format!("step {step}: entry {i} on host h{h}; steps {log:#?}"),
                    );
                }
                // A host with a fresh copy serves it and publishes nothing:
                // the cluster gains a value only from a run.
                let produced = shared[i].clone().or(fresh_run.filter(|_| cold));
                for &h in &chosen {
                    if local[h][i].is_none() {
                        local[h][i] = produced.clone();
                    }
                }
                shared[i] = produced;
            }
            5 | 6 => {
                let (h, i) = (rng.below(3) as usize, rng.below(ENTRIES as u64) as usize);
                log.push(format!("step {step}: invalidate entry {i} on host h{h}"));
                let out = hosts[h].cb(&["invalidate", "--name", &format!("e{i}")]);
                // A name neither this host nor the cluster holds is an error (1).
                let known = local[h][i].is_some() || shared[i].is_some();
                assert_eq!(
                    out.status.code(),
                    Some(if known { 0 } else { 1 }),
                    "step {step}: invalidate of entry {i} (known: {known}) on h{h}: {}; steps {log:#?}",
                    text(&out.stderr)
                );
                local[h][i] = None;
                shared[i] = None;
            }
            _ => {
                let h = rng.below(3) as usize;
                log.push(format!("step {step}: stats on host h{h}"));
                let listed = hosts[h].fleet_keys().len();
                let held = shared.iter().filter(|value| value.is_some()).count();
                assert_eq!(
                    listed, held,
                    "step {step}: stats through node {h} lists {listed} entries, the model holds {held}; steps {log:#?}"
                );
            }
        }
    }
}
