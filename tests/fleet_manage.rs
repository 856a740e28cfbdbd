//! The management commands (`stats`, `show`, `invalidate`, `warm`, `gc`) on
//! the fleet tier: a real `redis-server` on loopback (see
//! [`RedisServer`]), and "hosts" that are separate cache directories sharing
//! it through `CACHEBACK_STORE`.
//!
//! Commands count their executions by appending what they print to
//! `$W/produced` of the host that ran them (`$W` stays literal in the argv, so
//! every host has the same key), and print a value no other execution prints.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::redis_client::RedisServer;

/// A command that prints a value of its own and records it in `$W/produced`.
const PRODUCE: &str = r#"v="$(date +%s%N)-$$"; echo "$v" >> "$W/produced"; echo "$v""#;

/// [`PRODUCE`] for the entry labelled `name`: a label is not part of the
/// key, so each label gets a script of its own (a comment makes it differ).
fn script(name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{PRODUCE} # {name}"),
        None => PRODUCE.to_owned(),
    }
}

/// How long anything background (a refresh, a warm run) may take on a busy machine.
const SETTLE: Duration = Duration::from_secs(60);

/// One host: its own cache directory and scratch directory, the shared store.
struct Host {
    cache: Cache,
    env: Vec<(String, String)>,
}

impl Host {
    fn new(store: &str) -> Host {
        Host {
            cache: Cache::new(),
            env: vec![("CACHEBACK_STORE".into(), store.into())],
        }
    }

    /// Adds an environment variable to every command of this host.
    fn with(mut self, name: &str, value: &str) -> Host {
        self.env.push((name.into(), value.into()));
        self
    }

    fn cmd(&self) -> Command {
        let mut cmd = self.cache.cmd();
        for name in [
            "CACHEBACK_STORE_PASSWORD",
            "CACHEBACK_STORE_PREFIX",
            "CACHEBACK_STORE_TIMEOUT",
            "CACHEBACK_STORE_LEASE",
        ] {
            cmd.env_remove(name);
        }
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        cmd
    }

    /// `cacheback ARGS`.
    #[track_caller]
    fn cb(&self, args: &[&str]) -> Output {
        self.cmd().args(args).bounded_output()
    }

    /// `cacheback ARGS`, which must succeed; its stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let output = self.cb(args);
        assert!(
            output.status.success(),
            "cacheback {args:?}: {:?}\nstdout: {}\nstderr: {}",
            output.status,
            stdout(&output),
            stderr(&output)
        );
        stdout(&output)
    }

    /// `cacheback run --ttl 1h [--name NAME] -- sh -c SCRIPT`; its stdout.
    #[track_caller]
    fn produce(&self, name: Option<&str>) -> String {
        let mut args = vec!["run", "--ttl", "1h"];
        if let Some(name) = name {
            args.extend(["--name", name]);
        }
        let script = script(name);
        args.extend(["--", "sh", "-c", &script]);
        let out = self.ok(&args);
        self.settle();
        out.trim_end().to_owned()
    }

    /// The values this host's executions produced, in order.
    fn produced(&self) -> Vec<String> {
        fs::read_to_string(self.cache.work().join("produced"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits for every process this host started (refreshers included).
    #[track_caller]
    fn settle(&self) {
        assert!(self.cache.settled(SETTLE), "background work never ended");
    }

    /// `stats --json` (which must succeed).
    #[track_caller]
    fn stats(&self, extra: &[&str]) -> Value {
        let text = self.ok(&[&["stats", "--json"][..], extra].concat());
        serde_json::from_str(&text).expect("stats --json is one JSON document")
    }
}

/// The JSON of the fleet entry titled `name`.
#[track_caller]
fn fleet_entry<'a>(stats: &'a Value, name: &str) -> &'a Value {
    let found: Vec<&Value> = stats["fleet"]["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no fleet entries in {stats:#}"))
        .iter()
        .filter(|entry| entry["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "fleet entries named {name:?} in {stats:#}");
    found[0]
}

fn fleet_keys_in_json(stats: &Value) -> BTreeSet<String> {
    stats["fleet"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["key"].as_str().unwrap().to_owned())
        .collect()
}

fn start(test: &str, config: &[&str]) -> Option<(RedisServer, String)> {
    if !installed("redis-cli", test) {
        return None;
    }
    let server = RedisServer::start(config, test)?;
    let url = format!("redis://127.0.0.1:{}", server.port);
    Some((server, url))
}

/// `redis-cli` on the server's socket, as the default user.
fn redis_cli(server: &RedisServer, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .arg("-s")
        .arg(&server.socket)
        .args(args)
        .bounded_output();
    assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
    stdout(&output)
}

/// The keys (64 hex digits) of every `PREFIX:{KEY}:meta`, as `redis-cli --scan` lists them.
fn scanned_meta_keys(server: &RedisServer, prefix: &str) -> BTreeSet<String> {
    redis_cli(server, &["--scan", "--pattern", "*:meta"])
        .lines()
        .filter_map(|name| {
            let rest = name.strip_prefix(prefix)?.strip_prefix(":{")?;
            let (key, tail) = rest.split_once('}')?;
            (tail == ":meta").then(|| key.to_owned())
        })
        .collect()
}

/// Makes the fleet value of `key` look produced `secs` earlier.
fn backdate_fleet(server: &RedisServer, prefix: &str, key: &str, secs: u64) {
    let meta = format!("{prefix}:{{{key}}}:meta");
    let finished: u64 = redis_cli(server, &["HGET", &meta, "finished_ms"])
        .trim()
        .parse()
        .expect("a fleet value to backdate");
    let earlier = (finished - secs * 1000).to_string();
    redis_cli(server, &["HSET", &meta, "finished_ms", &earlier]);
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(listing) = fs::read_dir(dir) else {
        return found;
    };
    for item in listing.flatten() {
        let path = item.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[test]
fn fleet_manage_stats_lists_the_fleet_after_the_local_table() {
    let test = "fleet_manage_stats_lists_the_fleet";
    let Some((server, url)) = start(test, &[]) else {
        return;
    };
    let (a, b) = (Host::new(&url), Host::new(&url));
    let alpha = a.produce(Some("alpha"));
    a.produce(Some("beta"));
    assert_eq!(b.produce(Some("alpha")), alpha, "B copies A's value");
    assert!(b.produced().is_empty(), "B ran nothing");

    let table = b.ok(&["stats"]);
    let header = format!(
        "fleet store redis://127.0.0.1:{}/0 (keys cacheback:*): 2 entries",
        server.port
    );
    let at = table
        .find(&header)
        .unwrap_or_else(|| panic!("no {header:?} in\n{table}"));
    let (local, fleet) = table.split_at(at);
    assert!(local.contains("cache directory:"), "{table}");
    assert!(
        local.contains("alpha") && !local.contains("beta"),
        "{table}"
    );
    let rows: Vec<&str> = fleet.lines().skip(1).collect();
    let columns: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(
        columns,
        [
            "NAME", "STATE", "AGE", "TTL", "SIZE", "RUNS", "COPIES", "LAST", "FAILURE"
        ],
        "{table}"
    );
    let alpha_row: Vec<&str> = rows
        .iter()
        .find(|row| row.starts_with("alpha"))
        .unwrap_or_else(|| panic!("no alpha row in\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(alpha_row[1], "fresh", "{table}");
    assert_eq!(alpha_row[3], "1h", "{table}");
    assert_eq!(&alpha_row[5..7], ["1", "1"], "RUNS 1, COPIES 1:\n{table}");
    let beta_row: Vec<&str> = rows
        .iter()
        .find(|row| row.starts_with("beta"))
        .unwrap_or_else(|| panic!("no beta row in\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(&beta_row[5..7], ["1", "0"], "{table}");

    let stats = b.stats(&[]);
    let fleet = &stats["fleet"];
    assert_eq!(
        fleet["store"],
        format!("redis://127.0.0.1:{}/0", server.port)
    );
    assert_eq!(fleet["prefix"], "cacheback");
    assert_eq!(fleet["error"], Value::Null);
    assert_eq!(
        fleet_keys_in_json(&stats),
        scanned_meta_keys(&server, "cacheback")
    );
    let entry = fleet_entry(&stats, "alpha");
    for field in [
        "key",
        "name",
        "command",
        "state",
        "age_secs",
        "finished_at",
        "ttl_secs",
        "size_bytes",
        "exit_code",
        "duration_ms",
        "runs",
        "copies",
        "failures",
        "last_failure",
    ] {
        assert!(entry.get(field).is_some(), "no {field} in {entry:#}");
    }
    assert_eq!(
        entry["command"],
        serde_json::json!(["sh", "-c", script(Some("alpha"))])
    );
    assert_eq!(entry["state"], "fresh");
    assert_eq!(entry["ttl_secs"], 3600);
    assert_eq!(entry["size_bytes"], alpha.len() + 1);
    assert_eq!(entry["exit_code"], 0);
    assert_eq!(
        (&entry["runs"], &entry["copies"], &entry["failures"]),
        (&1.into(), &1.into(), &0.into())
    );
    assert_eq!(entry["last_failure"], Value::Null);
    // One production time, whichever host reads it.
    let local = stats["entries"][0]["finished_at"].clone();
    assert_eq!(entry["finished_at"], local);

    // The filter (`stats FILTER`) applies to the fleet rows too.
    let filtered = b.stats(&["bet"]);
    let names: Vec<&Value> = filtered["fleet"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| &entry["name"])
        .collect();
    assert_eq!(names, [&Value::from("beta")], "{filtered:#}");
    let table = b.ok(&["stats", "bet"]);
    assert!(table.contains("(keys cacheback:*): 1 entry"), "{table}");
    assert!(!table.contains("alpha"), "{table}");

    // Without a store: no fleet part at all.
    let mut alone = b.cmd();
    alone
        .env_remove("CACHEBACK_STORE")
        .args(["stats", "--json"]);
    let alone: Value = serde_json::from_slice(&alone.bounded_output().stdout).unwrap();
    assert!(alone.get("fleet").is_none(), "{alone:#}");
    let mut alone = b.cmd();
    alone.env_remove("CACHEBACK_STORE").arg("stats");
    let table = stdout(&alone.bounded_output());
    assert!(!table.contains("fleet"), "{table}");
}

#[test]
fn fleet_manage_stats_with_the_store_down_prints_the_local_part_and_fails() {
    let test = "fleet_manage_stats_with_the_store_down";
    let Some((server, url)) = start(test, &[]) else {
        return;
    };
    let host = Host::new(&url);
    host.produce(Some("alpha"));
    drop(server); // killed: its port refuses connections now

    let table = host.cb(&["stats"]);
    assert_eq!(table.status.code(), Some(125), "{table:?}");
    let text = stdout(&table);
    assert!(
        text.contains("alpha") && text.contains("cache directory:"),
        "the local part still prints:\n{text}"
    );
    assert!(
        stderr(&table).contains("fleet store") && stderr(&table).contains("connect"),
        "stderr says why: {}",
        stderr(&table)
    );
    assert!(!stderr(&table).contains("panicked"), "{}", stderr(&table));

    let json = host.cb(&["stats", "--json"]);
    assert_eq!(json.status.code(), Some(125), "{json:?}");
    let document: Value = serde_json::from_slice(&json.stdout).expect("still one JSON document");
    assert_eq!(document["entries"][0]["name"], "alpha");
    assert!(
        document["fleet"]["error"]
            .as_str()
            .is_some_and(|error| error.contains("connect")),
        "{document:#}"
    );
    assert_eq!(document["fleet"]["entries"], serde_json::json!([]));
}

#[test]
fn fleet_manage_show_describes_the_fleet_value_and_one_only_the_fleet_has() {
    let test = "fleet_manage_show_describes";
    let Some((server, url)) = start(test, &[]) else {
        return;
    };
    let (a, b) = (Host::new(&url), Host::new(&url));
    a.produce(Some("alpha"));

    let shown = a.ok(&["show", "--name", "alpha"]);
    assert!(shown.contains("\nstate:        fresh\n"), "{shown}");
    let fleet = shown
        .lines()
        .find(|line| line.starts_with("fleet:"))
        .unwrap_or_else(|| panic!("no fleet: line in\n{shown}"));
    assert!(fleet.contains("fresh, produced"), "{shown}");
    assert!(
        shown.contains("\nfleet counts: 1 run, 0 copies to hosts, 0 failures\n"),
        "{shown}"
    );

    // B never ran it: shown from the fleet alone, by label or by command.
    let alpha = script(Some("alpha"));
    for selector in [&["--name", "alpha"][..], &["--", "sh", "-c", &alpha]] {
        let only = b.ok(&[&["show"][..], selector].concat());
        assert!(only.contains("\nname:         alpha\n"), "{only}");
        assert!(only.starts_with("key:          "), "{only}");
        assert!(only.contains("fleet:        fresh, produced"), "{only}");
        assert!(only.contains("fleet counts: 1 run, "), "{only}");
        assert!(only.contains("not in this host's cache"), "{only}");
    }
    assert!(b.cache.files(".entry").is_empty(), "show copies nothing");
    // Neither tier has it.
    let missing = b.cb(&["show", "--name", "nobody"]);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");

    // Marked stale fleet-wide; then forgotten there (A keeps its copy).
    b.ok(&["invalidate", "--refresh", "--name", "alpha"]);
    let shown = a.ok(&["show", "--name", "alpha"]);
    assert!(shown.contains("marked stale"), "{shown}");
    redis_cli(&server, &["FLUSHALL"]);
    let shown = a.ok(&["show", "--name", "alpha"]);
    assert!(shown.contains("\nfleet:        no value\n"), "{shown}");
}

#[test]
fn fleet_manage_invalidate_forgets_the_fleet_value_too() {
    let test = "fleet_manage_invalidate_forgets";
    let Some((server, url)) = start(test, &[]) else {
        return;
    };
    let (a, b, c) = (Host::new(&url), Host::new(&url), Host::new(&url));
    let first = a.produce(Some("alpha"));
    let report = a.ok(&["invalidate", "--name", "alpha"]);
    assert!(report.contains("invalidated alpha\n"), "{report}");
    assert!(
        report.contains("invalidated alpha in the fleet store"),
        "{report}"
    );
    assert!(scanned_meta_keys(&server, "cacheback").is_empty());
    let second = b.produce(Some("alpha"));
    assert_ne!(second, first, "B's miss ran the command");
    assert_eq!(b.produced(), std::slice::from_ref(&second));

    // An entry only the fleet has, invalidated from a host that never ran it,
    // by label and then by command.
    let report = c.ok(&["invalidate", "--name", "alpha"]);
    assert!(
        report.contains("invalidated alpha in the fleet store"),
        "{report}"
    );
    assert!(scanned_meta_keys(&server, "cacheback").is_empty());
    let third = a.produce(Some("alpha"));
    assert!(third != first && third != second, "A ran it again");
    let report = c.ok(&["invalidate", "--", "sh", "-c", &script(Some("alpha"))]);
    assert!(report.contains("in the fleet store"), "{report}");
    assert!(scanned_meta_keys(&server, "cacheback").is_empty());
    let missing = c.cb(&["invalidate", "--name", "nobody"]);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    let fresh_host = Host::new(&url);
    let fourth = fresh_host.produce(Some("alpha"));
    assert_eq!(fresh_host.produced(), [fourth]);
}

#[test]
fn fleet_manage_invalidate_refresh_marks_the_fleet_stale_and_publishes_anew() {
    let test = "fleet_manage_invalidate_refresh";
    let Some((server, url)) = start(test, &[]) else {
        return;
    };
    let (a, b, c) = (Host::new(&url), Host::new(&url), Host::new(&url));
    let v1 = a.produce(Some("alpha"));
    assert_eq!(b.produce(Some("alpha")), v1);

    // C has no copy: it only marks the fleet value stale.
    let report = c.ok(&["invalidate", "--refresh", "--name", "alpha"]);
    assert!(
        report.contains("marked alpha stale in the fleet store"),
        "{report}"
    );
    c.settle();
    assert!(c.produced().is_empty(), "C has nothing to refresh");
    assert_eq!(fleet_entry(&c.stats(&[]), "alpha")["state"], "stale");

    // B's copy goes stale: its refresh runs rather than copy the stale value.
    b.cache.backdate(7200);
    assert_eq!(b.produce(Some("alpha")), v1, "the stale copy is served");
    let v2 = b.produced().last().cloned().expect("B's refresh ran");
    assert_eq!(b.produced().len(), 1);
    assert_eq!(b.produce(Some("alpha")), v2);
    let entry = fleet_entry(&b.stats(&[]), "alpha").clone();
    assert_eq!(entry["state"], "fresh", "{entry:#}");
    assert_eq!(entry["runs"], 2, "{entry:#}");

    // A refreshes its own copy and publishes it; B's next stale copy copies it.
    let report = a.ok(&["invalidate", "--refresh", "--name", "alpha"]);
    assert!(
        report.contains("marked alpha stale in the fleet store"),
        "{report}"
    );
    a.settle();
    let v3 = a.produced().last().cloned().unwrap();
    assert_eq!(a.produced().len(), 2, "A's background refresh ran");
    assert_eq!(a.produce(Some("alpha")), v3);
    let entry = fleet_entry(&a.stats(&[]), "alpha").clone();
    assert_eq!(
        entry["state"], "fresh",
        "the new value is not marked: {entry:#}"
    );
    b.cache.backdate(7200);
    assert_eq!(b.produce(Some("alpha")), v2, "B serves its stale copy once");
    assert_eq!(b.produce(Some("alpha")), v3, "then A's new value");
    assert_eq!(b.produced().len(), 1, "B copied it, ran nothing");
    assert_eq!(
        fleet_keys_in_json(&b.stats(&[])),
        scanned_meta_keys(&server, "cacheback")
    );
}

#[test]
fn fleet_manage_invalidate_all_covers_the_fleet_entries() {
    let test = "fleet_manage_invalidate_all";
    let Some((server, url)) = start(test, &[]) else {
        return;
    };
    let (a, b) = (Host::new(&url), Host::new(&url));
    a.produce(Some("alpha"));
    a.produce(Some("beta"));
    b.produce(Some("gamma"));
    assert_eq!(scanned_meta_keys(&server, "cacheback").len(), 3);
    let report = a.ok(&["invalidate", "--all"]);
    for name in ["alpha", "beta", "gamma"] {
        assert!(
            report.contains(&format!("invalidated {name} in the fleet store")),
            "{report}"
        );
    }
    assert!(scanned_meta_keys(&server, "cacheback").is_empty());
    assert!(a.cache.files(".entry").is_empty());
    assert_eq!(b.cache.files(".entry").len(), 1, "B's copy is not reached");
    let report = a.ok(&["invalidate", "--all"]);
    assert!(report.contains("nothing to invalidate"), "{report}");
}

#[test]
fn fleet_manage_warm_publishes_and_another_host_copies() {
    let test = "fleet_manage_warm_publishes";
    let Some((_server, url)) = start(test, &[]) else {
        return;
    };
    let (a, b) = (Host::new(&url), Host::new(&url));
    let warmed = a.cb(&[
        "warm",
        "--ttl",
        "1h",
        "--name",
        "w",
        "--",
        "sh",
        "-c",
        &script(Some("w")),
    ]);
    assert!(warmed.status.success(), "{warmed:?}");
    assert!(warmed.stdout.is_empty(), "{warmed:?}");
    a.settle();
    assert_eq!(a.produced().len(), 1, "the warm run");
    let value = a.produced()[0].clone();
    assert_eq!(b.produce(Some("w")), value, "B copies it");
    assert!(b.produced().is_empty(), "no execution on B");
    let entry = fleet_entry(&b.stats(&[]), "w").clone();
    assert_eq!((&entry["runs"], &entry["copies"]), (&1.into(), &1.into()));
}

#[test]
fn fleet_manage_gc_forgets_old_fleet_values() {
    let test = "fleet_manage_gc_forgets";
    let Some((server, url)) = start(test, &[]) else {
        return;
    };
    let (a, b) = (Host::new(&url), Host::new(&url));
    a.produce(Some("alpha"));
    a.produce(Some("beta"));
    let stats = a.stats(&[]);
    let old_key = fleet_entry(&stats, "alpha")["key"]
        .as_str()
        .unwrap()
        .to_owned();
    backdate_fleet(&server, "cacheback", &old_key, 2 * 86400);
    let before = scanned_meta_keys(&server, "cacheback");
    assert_eq!(before.len(), 2);

    let dry = b.ok(&["gc", "--older-than", "1d", "--dry-run"]);
    let line = format!(
        "fleet store redis://127.0.0.1:{}/0: would forget 1 value",
        server.port
    );
    assert!(dry.contains(&line), "{dry}");
    assert!(dry.contains("1 left"), "{dry}");
    assert_eq!(scanned_meta_keys(&server, "cacheback"), before, "dry run");

    let done = b.ok(&["gc", "--older-than", "1d"]);
    assert!(
        dry.contains("fleet store") && done.contains("forgot 1 value"),
        "{done}"
    );
    let after = scanned_meta_keys(&server, "cacheback");
    assert_eq!(after.len(), 1);
    assert!(!after.contains(&old_key));
    assert_eq!(
        a.cache.files(".entry").len(),
        2,
        "B's gc leaves A's cache alone"
    );
    let again = b.ok(&["gc", "--older-than", "1d"]);
    assert!(again.contains("forgot 0 values"), "{again}");
}

#[test]
fn fleet_manage_counters_count_runs_and_copies() {
    let test = "fleet_manage_counters";
    let Some((server, url)) = start(test, &[]) else {
        return;
    };
    let hosts: Vec<Host> = (0..3).map(|_| Host::new(&url)).collect();
    let value = hosts[0].produce(Some("n"));
    for host in &hosts[1..] {
        assert_eq!(host.produce(Some("n")), value);
        // A fresh local hit reaches no store, and counts nothing there.
        assert_eq!(host.produce(Some("n")), value);
    }
    let entry = fleet_entry(&hosts[0].stats(&[]), "n").clone();
    assert_eq!(
        (&entry["runs"], &entry["copies"]),
        (&1.into(), &2.into()),
        "{entry:#}"
    );

    // A's refresh of a value as old everywhere runs under the lease.
    let key = entry["key"].as_str().unwrap().to_owned();
    hosts[0].cache.backdate(7200);
    backdate_fleet(&server, "cacheback", &key, 7200);
    assert_eq!(hosts[0].produce(Some("n")), value, "stale, served");
    assert_eq!(hosts[0].produced().len(), 2, "refreshed by running");
    let entry = fleet_entry(&hosts[0].stats(&[]), "n").clone();
    assert_eq!(
        (&entry["runs"], &entry["copies"]),
        (&2.into(), &2.into()),
        "{entry:#}"
    );
    // B's stale copy then copies the new value: a copy, not a run.
    hosts[1].cache.backdate(7200);
    hosts[1].produce(Some("n"));
    assert!(hosts[1].produced().is_empty());
    let table = hosts[1].ok(&["stats"]);
    let row: Vec<&str> = table
        .lines()
        .skip_while(|line| !line.starts_with("fleet store"))
        .find(|line| line.starts_with("n "))
        .unwrap_or_else(|| panic!("no fleet row in\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(&row[5..7], ["2", "3"], "RUNS 2, COPIES 3:\n{table}");
    let shown = hosts[2].ok(&["show", "--name", "n"]);
    assert!(
        shown.contains("fleet counts: 2 runs, 3 copies to hosts, 0 failures"),
        "{shown}"
    );
}

const PASSWORD: &str = "Pw-7f3a9c-not-for-your-eyes";

/// Asserts that nothing this command printed holds the password.
#[track_caller]
fn no_password(what: &str, output: &Output) {
    for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        assert!(
            !contains(bytes, PASSWORD.as_bytes()),
            "{what}: the password is in {stream}: {}",
            String::from_utf8_lossy(bytes)
        );
    }
    assert!(
        !contains(&output.stderr, b"panicked"),
        "{what}: {}",
        stderr(output)
    );
}

#[test]
fn fleet_manage_an_acl_user_works_and_its_password_never_shows() {
    let test = "fleet_manage_an_acl_user";
    let user = format!("user cb on >{PASSWORD} ~cacheback:* +@all");
    let Some((server, _)) = start(test, &["user default on nopass ~* +@all", &user]) else {
        return;
    };
    let base = format!("127.0.0.1:{}", server.port);
    let in_url = Host::new(&format!("redis://cb:{PASSWORD}@{base}"));
    let from_env =
        Host::new(&format!("redis://cb@{base}")).with("CACHEBACK_STORE_PASSWORD", PASSWORD);
    let mut checked = 0;
    for (round, (host, other)) in [(&in_url, &from_env), (&from_env, &in_url)]
        .into_iter()
        .enumerate()
    {
        let warm_script = format!("{PRODUCE} # warm {round}");
        let secret = script(Some("secret"));
        redis_cli(&server, &["FLUSHALL"]);
        let mut check = |what: &str, args: &[&str], want: Option<i32>| {
            let output = host.cb(args);
            no_password(what, &output);
            if let Some(code) = want {
                assert_eq!(output.status.code(), Some(code), "{what}: {output:?}");
            }
            host.settle();
            checked += 1;
            output
        };
        let run = [
            "run", "--ttl", "1h", "--name", "secret", "--", "sh", "-c", &secret,
        ];
        check("run", &run, Some(0));
        let table = check("stats", &["stats"], Some(0));
        assert!(
            stdout(&table).contains("(keys cacheback:*): 1 entry"),
            "{table:?}"
        );
        assert!(stdout(&table).contains("cb:***@"), "{table:?}");
        let json = check("stats --json", &["stats", "--json"], Some(0));
        let json: Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(json["fleet"]["entries"].as_array().unwrap().len(), 1);
        check("show", &["show", "--name", "secret"], Some(0));
        check(
            "warm",
            &[
                "warm",
                "--ttl",
                "1h",
                "--name",
                "secret2",
                "--",
                "sh",
                "-c",
                &warm_script,
            ],
            Some(0),
        );
        check(
            "invalidate --refresh",
            &["invalidate", "--refresh", "--name", "secret"],
            Some(0),
        );
        check(
            "gc --dry-run",
            &["gc", "--older-than", "0", "--dry-run"],
            Some(0),
        );
        // The other host sees the same fleet, and its own copy comes from it.
        let only = other.cb(&["show", "--name", "secret2"]);
        no_password("show (fleet only)", &only);
        assert!(
            stdout(&only).contains("not in this host's cache"),
            "{only:?}"
        );
        let ran_before = other.produced().len();
        let copied = other.cb(&["run", "--ttl", "1h", "--", "sh", "-c", &warm_script]);
        let copied = stdout(&copied).trim_end().to_owned();
        assert!(host.produced().contains(&copied), "{copied:?}");
        assert_eq!(other.produced().len(), ran_before, "copied, not run");
        check("invalidate", &["invalidate", "--name", "secret"], Some(0));
        check("gc", &["gc", "--older-than", "0"], Some(0));
        assert!(scanned_meta_keys(&server, "cacheback").is_empty());
    }
    assert_eq!(checked, 18);

    // A wrong password, a malformed address: errors without the password.
    let wrong = Host::new(&format!("redis://cb:{PASSWORD}x@{base}"));
    let output = wrong.cb(&["stats"]);
    no_password("stats, wrong password", &output);
    assert_eq!(output.status.code(), Some(125));
    assert!(stderr(&output).contains("WRONGPASS"), "{output:?}");
    let malformed = Host::new(&format!("redis://cb:{PASSWORD}@127.0.0.1:port"));
    for args in [
        &["stats"][..],
        &["show", "--name", "secret"],
        &["gc"],
        &["invalidate", "--all"],
    ] {
        let output = malformed.cb(args);
        no_password(&format!("{args:?}, malformed address"), &output);
        assert_ne!(output.status.code(), Some(0), "{args:?}: {output:?}");
    }
    let output = malformed.cb(&["run", "--ttl", "1h", "--", "echo", "hi"]);
    no_password("run, malformed address", &output);
    assert_eq!(stdout(&output), "hi\n");

    // The store down: every command says so, without the password.
    let port = server.port;
    drop(server);
    let down = [
        Host::new(&format!("redis://cb:{PASSWORD}@127.0.0.1:{port}")),
        Host::new(&format!("redis://cb@127.0.0.1:{port}"))
            .with("CACHEBACK_STORE_PASSWORD", PASSWORD),
    ];
    for host in &down {
        let output = host.cb(&["run", "--ttl", "1h", "--name", "secret", "--", "echo", "hi"]);
        no_password("run, store down", &output);
        assert_eq!(stdout(&output), "hi\n");
        assert!(stderr(&output).contains("cb:***@"), "{output:?}");
        for args in [
            &["stats"][..],
            &["stats", "--json"],
            &["show", "--name", "secret"],
            &["invalidate", "--name", "secret"],
            &["invalidate", "--refresh", "--all"],
            &["gc"],
            &["gc", "--dry-run"],
            &["warm", "--ttl", "1h", "--", "echo", "hi"],
        ] {
            let output = host.cb(args);
            no_password(&format!("{args:?}, store down"), &output);
            host.settle();
        }
    }
    for host in [&in_url, &from_env, &wrong, &malformed, &down[0], &down[1]] {
        for path in files_under(&host.cache.dir()) {
            let bytes = fs::read(&path).unwrap();
            assert!(
                !contains(&bytes, PASSWORD.as_bytes()),
                "the password is in {}",
                path.display()
            );
        }
    }
}

#[test]
fn fleet_manage_a_user_confined_to_another_prefix_gets_noperm() {
    let test = "fleet_manage_a_user_confined";
    let config = ["user other on >pw2 ~elsewhere:* +@all"];
    let Some((server, url)) = start(test, &config) else {
        return;
    };
    Host::new(&url).produce(Some("alpha")); // as the default user
    let host = Host::new(&format!("redis://other:pw2@127.0.0.1:{}", server.port));
    host.produce(Some("mine"));
    let table = host.cb(&["stats"]);
    assert_eq!(table.status.code(), Some(125), "{table:?}");
    assert!(stderr(&table).contains("NOPERM"), "{}", stderr(&table));
    assert!(!stderr(&table).contains("panicked"), "{}", stderr(&table));
    assert!(stdout(&table).contains("mine"), "the local part: {table:?}");
    let json = host.cb(&["stats", "--json"]);
    assert_eq!(json.status.code(), Some(125), "{json:?}");
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        json["fleet"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("NOPERM")),
        "{json:#}"
    );
    // The other commands say so too, and go no further.
    for args in [
        &["show", "--name", "alpha"][..],
        &["invalidate", "--name", "alpha"],
        &["invalidate", "--all"],
        &["gc", "--dry-run"],
    ] {
        let output = host.cb(args);
        assert_eq!(output.status.code(), Some(125), "{args:?}: {output:?}");
        assert!(stderr(&output).contains("NOPERM"), "{args:?}: {output:?}");
        assert!(
            !stderr(&output).contains("panicked"),
            "{args:?}: {output:?}"
        );
    }
    assert_eq!(
        scanned_meta_keys(&server, "cacheback").len(),
        1,
        "the default user's entry is untouched"
    );
    // Under its own prefix it works.
    let stats = host.with("CACHEBACK_STORE_PREFIX", "elsewhere").stats(&[]);
    assert_eq!(stats["fleet"]["prefix"], "elsewhere");
    assert_eq!(stats["fleet"]["error"], Value::Null);
}

#[test]
fn fleet_manage_two_prefixes_on_one_server_are_separate_caches() {
    let test = "fleet_manage_two_prefixes";
    let Some((server, url)) = start(test, &[]) else {
        return;
    };
    let one = Host::new(&url).with("CACHEBACK_STORE_PREFIX", "team1");
    let two = Host::new(&url);
    fn two_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [&["--store-prefix", "team2"][..], args].concat()
    }
    let first = one.produce(Some("shared"));
    let second = two.ok(&two_args(&[
        "run",
        "--ttl",
        "1h",
        "--name",
        "shared",
        "--",
        "sh",
        "-c",
        &script(Some("shared")),
    ]));
    two.settle();
    assert_ne!(second.trim_end(), first, "team2 ran its own");
    assert_eq!(two.produced().len(), 1);
    assert_eq!(scanned_meta_keys(&server, "team1").len(), 1);
    assert_eq!(scanned_meta_keys(&server, "team2").len(), 1);
    let third = Host::new(&url).with("CACHEBACK_STORE_PREFIX", "team1");
    assert_eq!(third.produce(Some("shared")), first, "team1's value");

    let table = two.ok(&two_args(&["stats"]));
    assert!(table.contains("(keys team2:*): 1 entry"), "{table}");
    let stats: Value = serde_json::from_str(&two.ok(&two_args(&["stats", "--json"]))).unwrap();
    assert_eq!(stats["fleet"]["prefix"], "team2");
    assert_eq!(
        fleet_keys_in_json(&stats),
        scanned_meta_keys(&server, "team2")
    );
    let entry = fleet_entry(&stats, "shared");
    assert_eq!((&entry["runs"], &entry["copies"]), (&1.into(), &0.into()));

    two.ok(&two_args(&["invalidate", "--all"]));
    assert!(scanned_meta_keys(&server, "team2").is_empty());
    assert_eq!(
        scanned_meta_keys(&server, "team1").len(),
        1,
        "team1 untouched"
    );
    one.ok(&["gc", "--older-than", "0"]);
    assert!(scanned_meta_keys(&server, "team1").is_empty());
    // A default-prefix host sees neither.
    let stats = Host::new(&url).stats(&[]);
    assert_eq!(stats["fleet"]["entries"], serde_json::json!([]));
}

/// A prefix with SCAN glob characters (`\` escapes the next character in a
/// pattern) would publish values that no listing finds: it is refused, by
/// `run` with a warning (the local cache still works) and by the management
/// commands as a usage error.
#[test]
fn fleet_manage_a_prefix_with_glob_characters_is_refused() {
    let test = "fleet_manage_a_prefix_with_glob_characters";
    let Some((server, url)) = start(test, &[]) else {
        return;
    };
    for prefix in [r"a\b", "a]b", "a*"] {
        let host = Host::new(&url).with("CACHEBACK_STORE_PREFIX", prefix);
        let script = script(Some("escaped"));
        let run = host.cb(&["run", "--ttl", "1h", "--", "sh", "-c", &script]);
        assert!(run.status.success(), "{run:?}");
        assert!(
            stderr(&run).contains("not using the fleet store: store prefix"),
            "{run:?}"
        );
        assert!(
            scanned_meta_keys(&server, prefix).is_empty(),
            "nothing published"
        );
        let stats = host.cb(&["stats"]);
        assert_eq!(stats.status.code(), Some(2), "{stats:?}");
        assert!(stderr(&stats).contains("store prefix"), "{stats:?}");
    }
}

/// Random sequences of `run`, `invalidate` (by command, by label, `--all`),
/// `invalidate --refresh`, `warm`, `gc`, and local copies or fleet values
/// growing old, over three hosts and two commands, checked after every step:
/// `stats --json` lists exactly the fleet's `*:meta` keys (as `redis-cli
/// --scan` sees them), each with at least one run counted; every `run` prints
/// a value some execution produced; after an `invalidate`, the fleet has no
/// value for the entry, and no host gets a value produced before it unless
/// that host's own copy held it (it was not copied from the fleet). Replay a
/// failure with `CACHEBACK_FLEET_MANAGE_SEED=<seed>`.
#[test]
fn fleet_manage_random_sequences_keep_the_invariants() {
    let test = "fleet_manage_random_sequences";
    let Some((server, url)) = start(test, &[]) else {
        return;
    };
    let mut rng = crate::harness::Rng::seeded("CACHEBACK_FLEET_MANAGE_SEED", "fleet manage model");
    let seed = rng.seed();
    let mut next = move |limit: u64| rng.below(limit);
    let hosts: Vec<Host> = (0..3).map(|_| Host::new(&url)).collect();
    let names = ["one", "two"];
    let scripts = names.map(|name| script(Some(name)));
    // Values produced before the last plain invalidation of each command.
    let mut invalidated: [BTreeSet<String>; 2] = Default::default();
    let produced_all = |hosts: &[Host]| -> BTreeSet<String> {
        hosts.iter().flat_map(|host| host.produced()).collect()
    };
    let started = std::time::Instant::now();
    let mut steps = 0;
    let mut history = Vec::new();
    while steps < 120 && started.elapsed() < Duration::from_secs(40) {
        steps += 1;
        let h = next(3) as usize;
        let c = next(2) as usize;
        let host = &hosts[h];
        let name = names[c];
        let command = ["sh", "-c", scripts[c].as_str()];
        let with = |args: &[&'static str]| -> Vec<&str> { [args, &command[..]].concat() };
        let op = next(16);
        let what = match op {
            0..=5 => "run",
            6 => "invalidate",
            7 => "invalidate --name",
            8 if next(3) == 0 => "invalidate --all",
            8 | 9 => "invalidate --refresh",
            10 => "warm",
            11 => "gc --older-than 1h",
            12 => "gc --older-than 1s",
            13 => "the fleet's values grow old",
            _ => "this host's copies grow old",
        };
        history.push(format!("{steps}: host {h} {name}: {what}"));
        let context = format!("seed {seed}, step {steps} ({what}, host {h}, {name})");
        match what {
            "run" => {
                // What this host's own copy holds before the run.
                let own = host.cb(&with(&["show", "--stdout", "--"]));
                let own = own
                    .status
                    .success()
                    .then(|| stdout(&own).trim_end().to_owned());
                let out = host.ok(&with(&["run", "--ttl", "1h", "--name", name, "--"]));
                let out = out.trim_end().to_owned();
                host.settle();
                assert!(
                    produced_all(&hosts).contains(&out),
                    "{context}: run printed {out:?}, which no execution produced"
                );
                if invalidated[c].contains(&out) {
                    assert_eq!(
                        own.as_deref(),
                        Some(out.as_str()),
                        "{context}: a value from before the invalidation came from the fleet"
                    );
                }
            }
            "invalidate" | "invalidate --name" | "invalidate --all" => {
                let output = match what {
                    "invalidate" => host.cb(&with(&["invalidate", "--"])),
                    "invalidate --name" => host.cb(&["invalidate", "--name", name]),
                    _ => host.cb(&["invalidate", "--all"]),
                };
                assert!(
                    matches!(output.status.code(), Some(0 | 1)),
                    "{context}: {output:?}"
                );
                let everything = produced_all(&hosts);
                let gone: &[usize] = if what == "invalidate --all" {
                    &[0, 1]
                } else {
                    &[c]
                };
                for &gone in gone {
                    invalidated[gone] = everything.clone();
                    let stats = host.stats(&[]);
                    assert!(
                        stats["fleet"]["entries"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .all(|entry| entry["name"] != names[gone]),
                        "{context}: the fleet still has {}: {stats:#}",
                        names[gone]
                    );
                    let own = host.cb(&[
                        &["show", "--stdout", "--", "sh", "-c"][..],
                        &[&scripts[gone]],
                    ]
                    .concat());
                    assert_eq!(own.status.code(), Some(1), "{context}: {own:?}");
                }
            }
            "invalidate --refresh" => {
                let output = host.cb(&with(&["invalidate", "--refresh", "--"]));
                assert!(
                    matches!(output.status.code(), Some(0 | 1)),
                    "{context}: {output:?}"
                );
            }
            "warm" => {
                host.ok(&with(&["warm", "--ttl", "1h", "--name", name, "--"]));
            }
            "gc --older-than 1h" => {
                host.ok(&["gc", "--older-than", "1h"]);
            }
            "gc --older-than 1s" => {
                host.ok(&["gc", "--older-than", "1s"]);
            }
            "the fleet's values grow old" => {
                for key in scanned_meta_keys(&server, "cacheback") {
                    backdate_fleet(&server, "cacheback", &key, 7200);
                }
            }
            _ => host.cache.backdate(7200),
        }
        for host in &hosts {
            host.settle();
        }
        let stats = hosts[next(3) as usize].stats(&[]);
        assert_eq!(
            fleet_keys_in_json(&stats),
            scanned_meta_keys(&server, "cacheback"),
            "{context}: stats --json and the store differ; steps:\n{}",
            history.join("\n")
        );
        for entry in stats["fleet"]["entries"].as_array().unwrap() {
            assert!(
                ["fresh", "stale", "refreshing", "failing"]
                    .contains(&entry["state"].as_str().unwrap()),
                "{context}: {entry:#}"
            );
            assert!(
                entry["runs"].as_u64().unwrap() >= 1,
                "{context}: a value no run produced: {entry:#}\nsteps:\n{}",
                history.join("\n")
            );
        }
    }
    eprintln!("{test}: {steps} steps in {:?}", started.elapsed());
}

/// A command that fails (exit 3, `boom` on stderr) while `$W/fail` exists,
/// waits at a gate while `$W/hold` exists, and otherwise is [`PRODUCE`].
fn flaky() -> String {
    format!(
        r#"if [ -e "$W/fail" ]; then echo boom >&2; exit 3; fi; if [ -e "$W/hold" ]; then {}; fi; {PRODUCE}"#,
        gate("go")
    )
}

/// Makes host's copy and the fleet value both `secs` older, the same
/// amount, so the host's next refresh finds nothing newer to copy and runs.
fn backdate_both(server: &RedisServer, host: &Host, key: &str, secs: u64) {
    host.cache.backdate(secs);
    backdate_fleet(server, "cacheback", key, secs);
}

#[test]
fn fleet_manage_a_failed_refresh_shows_in_the_fleet_row() {
    let test = "fleet_manage_a_failed_refresh";
    let Some((server, url)) = start(test, &[]) else {
        return;
    };
    let (a, b) = (Host::new(&url), Host::new(&url));
    let script = flaky();
    let run = [
        "run", "--ttl", "1h", "--name", "flaky", "--", "sh", "-c", &script,
    ];
    let value = a.ok(&run);
    a.settle();
    let key = fleet_entry(&a.stats(&[]), "flaky")["key"]
        .as_str()
        .unwrap()
        .to_owned();
    fs::write(a.cache.work().join("fail"), "").unwrap();
    backdate_both(&server, &a, &key, 7200);
    assert_eq!(a.ok(&run), value, "the stale value, served");
    a.settle();

    let stats = b.stats(&[]);
    let entry = fleet_entry(&stats, "flaky");
    assert_eq!(entry["state"], "failing", "{entry:#}");
    assert_eq!(
        (&entry["runs"], &entry["failures"]),
        (&1.into(), &1.into()),
        "{entry:#}"
    );
    let failure = &entry["last_failure"];
    assert_eq!(failure["exit_code"], 3, "{entry:#}");
    assert_eq!(failure["consecutive"], 1, "{entry:#}");
    assert_eq!(failure["stderr_tail"], "boom\n", "{entry:#}");
    let table = b.ok(&["stats"]);
    let row = table
        .lines()
        .skip_while(|line| !line.starts_with("fleet store"))
        .find(|line| line.starts_with("flaky"))
        .unwrap_or_else(|| panic!("no fleet row in\n{table}"));
    assert!(row.contains("failing"), "{table}");
    assert!(row.contains("exit 3: boom"), "{table}");
    let shown = b.ok(&["show", "--name", "flaky"]);
    assert!(shown.contains("exit 3, 1 in a row"), "{shown}");
    assert!(shown.contains("1 failure\n"), "{shown}");
}

#[test]
fn fleet_manage_a_refresh_in_flight_shows_and_loses_to_an_invalidation() {
    let test = "fleet_manage_a_refresh_in_flight";
    let Some((server, url)) = start(test, &[]) else {
        return;
    };
    let (a, b, c) = (Host::new(&url), Host::new(&url), Host::new(&url));
    let script = flaky();
    let run = [
        "run", "--ttl", "1h", "--name", "slow", "--", "sh", "-c", &script,
    ];
    let old = a.ok(&run).trim_end().to_owned();
    a.settle();
    let key = fleet_entry(&a.stats(&[]), "slow")["key"]
        .as_str()
        .unwrap()
        .to_owned();
    fs::write(a.cache.work().join("hold"), "").unwrap();
    backdate_both(&server, &a, &key, 7200);
    assert_eq!(
        a.ok(&run).trim_end(),
        old,
        "stale, served; the refresh waits"
    );
    // The refresher holds the fleet lease while its command waits at the gate.
    let lease = format!("cacheback:{{{key}}}:lease");
    assert!(
        wait_until(SETTLE, || redis_cli(&server, &["EXISTS", &lease]).trim()
            == "1"),
        "the refresher never took the lease"
    );
    assert_eq!(fleet_entry(&b.stats(&[]), "slow")["state"], "refreshing");
    let table = b.ok(&["stats"]);
    assert!(
        table
            .lines()
            .skip_while(|line| !line.starts_with("fleet store"))
            .any(|line| line.starts_with("slow") && line.contains("refreshing")),
        "{table}"
    );

    // B invalidates meanwhile: A's refresh, which may predate the change,
    // must not reach the fleet.
    let report = b.ok(&["invalidate", "--name", "slow"]);
    assert!(report.contains("in the fleet store"), "{report}");
    a.cache.open_gate("go");
    a.settle();
    assert_eq!(a.produced().len(), 2, "A's refresh ran to its end");
    assert!(
        scanned_meta_keys(&server, "cacheback").is_empty(),
        "the refresh that lost its lease published nothing"
    );
    let fresh = c.ok(&run).trim_end().to_owned();
    assert_eq!(c.produced(), [fresh], "C ran it: nothing was copied");
}

/// `gc` with the store down: whatever it removed locally, it says so (or it
/// removes nothing), and it fails with the reason.
#[test]
fn fleet_manage_gc_with_the_store_down_reports_what_it_removed() {
    let test = "fleet_manage_gc_with_the_store_down";
    let Some((server, url)) = start(test, &[]) else {
        return;
    };
    let host = Host::new(&url);
    host.produce(Some("alpha"));
    drop(server);
    let output = host.cb(&["gc", "--older-than", "0"]);
    assert_eq!(output.status.code(), Some(125), "{output:?}");
    assert!(stderr(&output).contains("fleet store"), "{output:?}");
    let removed = host.cache.files(".entry").is_empty();
    assert!(
        !removed || stdout(&output).contains("removed 1 entry"),
        "gc removed the local entry and said nothing: {output:?}"
    );
}

/// `stats FILTER` matches a local row by label or command; a fleet row
/// should match the same way, so one filter shows both tiers of an entry.
#[test]
fn fleet_manage_the_filter_matches_a_fleet_row_by_command_as_a_local_row() {
    let test = "fleet_manage_the_filter_matches";
    let Some((_server, url)) = start(test, &[]) else {
        return;
    };
    let host = Host::new(&url);
    host.produce(Some("alpha"));
    // `produced` is in the command (`$W/produced`), not in the label.
    let stats = host.stats(&["produced"]);
    assert_eq!(stats["entries"].as_array().unwrap().len(), 1, "{stats:#}");
    assert_eq!(
        stats["fleet"]["entries"].as_array().unwrap().len(),
        1,
        "the local row matches, the fleet row does not: {stats:#}"
    );
}

#[test]
fn fleet_manage_a_unix_socket_store_and_its_database_are_named_in_the_header() {
    let test = "fleet_manage_a_unix_socket_store";
    let Some((server, url)) = start(test, &[]) else {
        return;
    };
    let socket = format!("unix://{}?db=2", server.socket.display());
    let host = Host::new(&socket);
    host.produce(Some("alpha"));
    let table = host.ok(&["stats"]);
    let header = format!("fleet store {socket} (keys cacheback:*): 1 entry");
    assert!(table.contains(&header), "no {header:?} in\n{table}");
    assert_eq!(host.stats(&[])["fleet"]["store"], socket);
    // Database 0 of the same server is another cache.
    let other = Host::new(&url);
    let table = other.ok(&["stats"]);
    assert!(table.contains("(keys cacheback:*): no entries"), "{table}");
    assert_ne!(other.produce(Some("alpha")), "", "ran");
    assert_eq!(other.produced().len(), 1, "nothing to copy in db 0");
}

/// Labels, commands and stderr that reach a terminal through the fleet rows
/// are escaped as the local ones are: a cached value cannot retitle it.
#[test]
fn fleet_manage_control_characters_in_fleet_rows_are_escaped() {
    let test = "fleet_manage_control_characters";
    let Some((server, url)) = start(test, &[]) else {
        return;
    };
    let (a, b) = (Host::new(&url), Host::new(&url));
    let label = "red\x1b[31m\x07";
    let script = format!(
        "if [ -e \"$W/fail\" ]; then printf 'bad\\033]0;pwned\\007\\n' >&2; exit 4; fi; {PRODUCE} # \x1b[2J"
    );
    let run = [
        "run", "--ttl", "1h", "--name", label, "--", "sh", "-c", &script,
    ];
    a.ok(&run);
    a.settle();
    let key = a.stats(&[])["fleet"]["entries"][0]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    fs::write(a.cache.work().join("fail"), "").unwrap();
    backdate_both(&server, &a, &key, 7200);
    a.ok(&run);
    a.settle();
    let by_label = b.cb(&["show", "--name", label]);
    let by_command = b.cb(&[&["show", "--"][..], &run[6..]].concat());
    for (what, output) in [
        ("stats", b.cb(&["stats"])),
        ("show --name", by_label),
        ("show -- COMMAND", by_command),
    ] {
        assert!(output.status.success(), "{what}: {output:?}");
        let text = stdout(&output);
        assert!(
            !text.contains('\x1b') && !text.contains('\x07'),
            "{what} prints raw control characters: {text:?}"
        );
    }
    let table = stdout(&b.cb(&["stats"]));
    let row = table
        .lines()
        .skip_while(|line| !line.starts_with("fleet store"))
        .nth(2)
        .unwrap_or_else(|| panic!("no fleet row in\n{table}"));
    assert!(row.contains("exit 4: bad"), "{table}");
}

/// The wrapped command (whose output is cached and shared with the whole
/// fleet) and the `--on-refresh` hook never see the store's password: not
/// `CACHEBACK_STORE_PASSWORD`, and not `CACHEBACK_STORE`: no store variable
/// reaches them, with a password in the URL or not (issue 21).
#[test]
fn fleet_manage_the_wrapped_command_never_sees_the_password() {
    let test = "fleet_manage_the_wrapped_command_never_sees_the_password";
    let password = "leak-me-Q7";
    let acl = format!("user cb on >{password} ~cacheback:* +@all");
    let Some((server, _)) = start(test, &[acl.as_str()]) else {
        return;
    };
    let plain = format!("redis://cb@127.0.0.1:{}", server.port);
    let inline = format!("redis://cb:{password}@127.0.0.1:{}", server.port);
    for (store, from_env) in [(&plain, true), (&inline, false)] {
        let mut host = Host::new(store);
        if from_env {
            host = host.with("CACHEBACK_STORE_PASSWORD", password);
        }
        let hook_out = host.cache.work().join("hook-env");
        let hook = format!("env > '{}'", hook_out.display());
        // Each round its own command: the second would otherwise copy the
        // first's value from the fleet.
        let command = format!("env; : {from_env}");
        let run = host.cb(&["run", "--ttl", "1h", "--", "sh", "-c", &command]);
        assert!(run.status.success(), "{run:?}");
        let seen = stdout(&run);
        assert!(
            !seen.contains(password),
            "the command saw the password:\n{seen}"
        );
        assert!(
            !seen.contains("CACHEBACK_STORE"),
            "no store variable reaches the command:\n{seen}"
        );
        // A refresh with a hook: the hook's environment is clean too.
        host.ok(&["invalidate", "--refresh", "--", "sh", "-c", &command]);
        let warmed = host.cb(&[
            "warm",
            "--ttl",
            "1h",
            "--on-refresh",
            &hook,
            "--",
            "sh",
            "-c",
            "env; date +%N",
        ]);
        assert!(warmed.status.success(), "{warmed:?}");
        host.settle();
        // The hook is detached and not waited for by anyone: wait for its
        // output (generously; a busy machine may take a while).
        let started = std::time::Instant::now();
        let mut hook_env = String::new();
        while started.elapsed() < std::time::Duration::from_secs(30) {
            hook_env = fs::read_to_string(&hook_out).unwrap_or_default();
            if hook_env.contains("CACHEBACK_KEY=") && hook_env.ends_with('\n') {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(
            hook_env.contains("CACHEBACK_KEY="),
            "the hook ran: {hook_env}"
        );
        assert!(
            !hook_env.contains(password),
            "the hook saw the password:\n{hook_env}"
        );
        let published = server.cli_text(&["--scan", "--pattern", "cacheback:*"]);
        assert!(!published.is_empty(), "values were published");
        for name in published.lines() {
            let kind = server.cli_text(&["type", name]);
            let content = match kind.trim() {
                "hash" => server.cli_text(&["hgetall", name]),
                _ => server.cli_text(&["get", name]),
            };
            assert!(!content.contains(password), "{name} holds the password");
        }
    }
}
