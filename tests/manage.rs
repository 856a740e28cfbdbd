//! `stats`, `show`, `invalidate`, `warm` and `gc` against real entries.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::harness::*;

const DAY: u64 = 86400;

fn json_stats(cache: &Cache, extra: &[&str]) -> Value {
    let output = cache.cacheback(&[&["stats", "--json"][..], extra].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).expect("stats --json is one JSON document")
}

/// The single JSON entry whose name (or else command) is `title`.
#[track_caller]
fn entry<'a>(stats: &'a Value, title: &str) -> &'a Value {
    let found: Vec<&Value> = stats["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["name"] == title
                || e["command"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(" ")
                    == title
        })
        .collect();
    assert_eq!(found.len(), 1, "entries titled {title:?} in {stats:#}");
    found[0]
}

fn state(cache: &Cache, title: &str) -> String {
    entry(&json_stats(cache, &[]), title)["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Makes a file look `secs` older to anything going by its modification time.
fn age_mtime(path: &Path, secs: u64) {
    let file = fs::File::options().append(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(secs))
        .unwrap();
}

/// Makes every file of the cache (and every entry's finish time) look `secs` older.
fn age_everything(cache: &Cache, secs: u64) {
    cache.backdate(secs);
    for item in fs::read_dir(cache.dir()).unwrap() {
        age_mtime(&item.unwrap().path(), secs);
    }
}

#[test]
fn stats_on_a_missing_cache_dir_is_empty() {
    let cache = Cache::new();
    let table = cache.cacheback(&["stats"]);
    assert!(table.status.success());
    assert!(
        stdout(&table).contains("no cached entries"),
        "{}",
        stdout(&table)
    );
    assert!(stdout(&table).contains("0 entries"));
    let stats = json_stats(&cache, &[]);
    assert_eq!(stats["entries"], Value::Array(vec![]));
    assert_eq!(stats["totals"]["entries"], 0);
    assert_eq!(stats["totals"]["hit_ratio"], Value::Null);
    assert!(!cache.dir().exists(), "stats must not create the cache");
}

#[test]
fn stats_reports_fresh_stale_expired_failing_and_unreadable() {
    let cache = Cache::new();
    cache.run(&["--ttl", "1h", "--name", "fresh", "--", "echo", "f"]);
    cache.run(&["--ttl", "1h", "--name", "stale", "--", "echo", "s"]);
    cache.run(&[
        "--ttl",
        "1h",
        "--max-age",
        "2h",
        "--name",
        "expired",
        "--",
        "echo",
        "e",
    ]);
    let failing = [
        &["--ttl", "1h", "--name", "failing", "--"][..],
        &sh("if [ -e \"$W/broken\" ]; then echo 'db down' >&2; exit 4; fi; echo ok"),
    ]
    .concat();
    cache.run(&failing);
    cache.run(&["--ttl", "1h", "--name", "damaged", "--", "echo", "b"]);
    // Age the entries, then bring "fresh" back by re-running it with --force.
    cache.backdate(90 * 60);
    for path in cache.files(".entry") {
        let bytes = fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        if text.contains("expired") {
            backdate_file(&path, 3600);
        }
    }
    cache.run(&[
        "--ttl", "1h", "--force", "--name", "fresh", "--", "echo", "f",
    ]);
    // A failed background refresh of "failing".
    fs::write(cache.work().join("broken"), "").unwrap();
    assert_eq!(stdout(&cache.run(&failing)), "ok\n", "stale-if-error");
    assert!(wait_until(Duration::from_secs(10), || !cache
        .files(".fail")
        .is_empty()));
    // A damaged entry file.
    let broken = cache
        .files(".entry")
        .into_iter()
        .find(|p| String::from_utf8_lossy(&fs::read(p).unwrap()).contains("damaged"))
        .unwrap();
    fs::write(&broken, b"garbage").unwrap();

    assert!(wait_until(Duration::from_secs(10), || state(
        &cache, "failing"
    ) == "failing"));
    let stats = json_stats(&cache, &[]);
    assert_eq!(entry(&stats, "fresh")["state"], "fresh");
    assert_eq!(entry(&stats, "stale")["state"], "stale");
    assert_eq!(entry(&stats, "expired")["state"], "expired");
    assert_eq!(entry(&stats, "failing")["state"], "failing");
    let failure = &entry(&stats, "failing")["last_failure"];
    assert_eq!(failure["exit_code"], 4);
    assert_eq!(failure["stderr_tail"], "db down\n");
    assert_eq!(failure["consecutive"], 1);
    assert!(failure["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(entry(&stats, "failing")["last_exit_code"], 4);
    let unreadable: Vec<&Value> = stats["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state"] == "unreadable")
        .collect();
    assert_eq!(unreadable.len(), 1, "{stats:#}");
    assert!(
        unreadable[0]["error"]
            .as_str()
            .unwrap()
            .contains("truncated"),
        "{stats:#}"
    );
    assert_eq!(stats["totals"]["states"]["unreadable"], 1);
    assert_eq!(stats["totals"]["entries"], 5);

    let table = stdout(&cache.cacheback(&["stats"]));
    let row = |title: &str| {
        table
            .lines()
            .find(|line| line.starts_with(title))
            .unwrap_or_else(|| panic!("no row {title} in\n{table}"))
            .to_owned()
    };
    assert!(row("fresh").contains(" fresh "), "{table}");
    assert!(row("stale").contains(" stale "), "{table}");
    assert!(row("expired").contains(" expired "), "{table}");
    assert!(
        row("failing").contains(" failing ") && row("failing").contains("exit 4: db down"),
        "{table}"
    );
    assert!(table.contains("unreadable"), "{table}");
    assert!(table.lines().next().unwrap().starts_with("NAME"), "{table}");
    assert!(table.contains("5 entries"), "{table}");
}

#[test]
fn stats_shows_refreshing_while_a_slow_refresh_holds_the_lock() {
    let cache = Cache::new();
    // The refresh holds until the test opens the gate (at most about 30 s).
    let body = format!(
        "if [ -e \"$W/slow\" ]; then echo $$ > \"$W/pid\"; {}; fi; echo v",
        gate("go")
    );
    let args = [&["--ttl", "1h", "--name", "slow", "--"][..], &sh(&body)].concat();
    cache.run(&args);
    cache.stale_with_flag("slow");
    assert_eq!(state(&cache, "slow"), "stale");
    cache.run(&args);
    read_pid(&cache, "pid");
    assert_eq!(state(&cache, "slow"), "refreshing");
    assert!(stdout(&cache.cacheback(&["stats"])).contains(" refreshing "));
    // A stale hit that finds the refresh running cannot count under the lock:
    // it goes to the log, and both stale hits count.
    cache.run(&args);
    assert_eq!(entry(&json_stats(&cache, &[]), "slow")["stale_hits"], 2);
    cache.open_gate("go");
    assert!(wait_until(Duration::from_secs(10), || state(
        &cache, "slow"
    ) == "fresh"));
    let slow = entry(&json_stats(&cache, &[]), "slow").clone();
    assert_eq!(
        (slow["stale_hits"].as_u64(), slow["refreshes"].as_u64()),
        (Some(2), Some(2))
    );
}

#[test]
fn a_miss_counts_in_the_lock_file_and_writes_only_entry_and_lock() {
    let cache = Cache::new();
    let args = ["--ttl", "1h", "--name", "m", "--", "echo", "x"];
    cache.run(&args);
    let mut names: Vec<String> = cache
        .files("")
        .iter()
        .map(|p| p.extension().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["entry", "lock"], "a miss creates no other file");
    let c = entry(&json_stats(&cache, &[]), "m").clone();
    assert_eq!(
        (c["misses"].as_u64(), c["refreshes"].as_u64()),
        (Some(1), Some(1))
    );
    cache.run(&args);
    let c = entry(&json_stats(&cache, &[]), "m").clone();
    assert_eq!(
        (
            c["misses"].as_u64(),
            c["hits"].as_u64(),
            c["refreshes"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "a hit adds to the log, the totals stay"
    );
}

#[test]
fn stats_counts_hits_misses_and_refreshes_up_to_date() {
    let cache = Cache::new();
    let args = ["--ttl", "1h", "--name", "c", "--", "echo", "x"];
    cache.run(&args); // miss (creates the cache dir)
    cache.run(&args);
    cache.run(&args);
    cache.backdate(7200);
    cache.run(&args); // stale hit, starts a refresh
    assert!(wait_until(Duration::from_secs(10), || entry(
        &json_stats(&cache, &[]),
        "c"
    )["refreshes"]
        == 2));
    cache.run(&args);
    let stats = json_stats(&cache, &[]);
    let c = entry(&stats, "c");
    assert_eq!(c["fresh_hits"], 3);
    assert_eq!(c["stale_hits"], 1);
    assert_eq!(c["hits"], 4, "hits are fresh plus stale hits");
    assert_eq!(c["refreshes"], 2);
    assert_eq!(c["failures"], 0);
    assert_eq!(c["command"], serde_json::json!(["echo", "x"]));
    assert_eq!(c["ttl_secs"], 3600);
    assert_eq!(c["stdout_bytes"], 2);
    assert_eq!(c["last_failure"], Value::Null);
    assert_eq!(c["misses"], 1);
    let ratio = stats["totals"]["hit_ratio"].as_f64().unwrap();
    assert!((ratio - 4.0 / 5.0).abs() < 1e-9, "{stats:#}");
    for field in [
        "key",
        "name",
        "state",
        "age_secs",
        "size_bytes",
        "last_exit_code",
        "last_duration_ms",
    ] {
        assert!(c.get(field).is_some(), "missing {field}");
    }
    for field in [
        "entries",
        "size_bytes",
        "disk_bytes",
        "hits",
        "misses",
        "refreshes",
        "failures",
    ] {
        assert!(
            stats["totals"].get(field).is_some(),
            "missing totals.{field}"
        );
    }
}

#[test]
fn stats_filters_and_sorts() {
    let cache = Cache::new();
    cache.run(&["--ttl", "1h", "--name", "alpha", "--", "echo", "a"]);
    cache.run(&[
        "--ttl",
        "1h",
        "--name",
        "beta",
        "--",
        "sh",
        "-c",
        "head -c 3000 /dev/zero",
    ]);
    cache.run(&["--ttl", "1h", "--", "echo", "gamma"]);
    for _ in 0..3 {
        cache.run(&["--ttl", "1h", "--", "echo", "gamma"]);
    }
    let titles = |args: &[&str]| -> Vec<String> {
        let stats = json_stats(&cache, args);
        stats["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["name"].as_str().map_or_else(
                    || e["command"][1].as_str().unwrap().to_owned(),
                    str::to_owned,
                )
            })
            .collect()
    };
    assert_eq!(titles(&[]), ["alpha", "beta", "gamma"]);
    assert_eq!(titles(&["--sort", "size"])[0], "beta");
    assert_eq!(titles(&["--sort", "hits"])[0], "gamma");
    assert_eq!(titles(&["--sort", "hits", "--reverse"])[2], "gamma");
    assert_eq!(
        titles(&["amm"]),
        ["gamma"],
        "filter matches the command line"
    );
    assert_eq!(titles(&["alp"]), ["alpha"], "filter matches the label");
    let table = stdout(&cache.cacheback(&["stats", "bet"]));
    assert!(
        table.contains("beta") && !table.contains("alpha"),
        "{table}"
    );
    assert!(table.contains("1 entry,"), "{table}");
}

#[test]
fn show_prints_metadata_and_cached_output() {
    let cache = Cache::new();
    cache.run(&[
        "--ttl",
        "15m",
        "--name",
        "w",
        "--scope",
        "s",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 0",
    ]);
    let shown = cache.cacheback(&["show", "--name", "w"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let text = stdout(&shown);
    for expected in [
        "name:         w",
        "command:      sh -c 'echo out; echo err >&2; exit 0'",
        "state:        fresh",
        "ttl:          15m",
        "--scope s",
        "exit status:  0",
        "4B stdout, 4B stderr",
        "misses:",
    ] {
        assert!(text.contains(expected), "{expected:?} not in\n{text}");
    }
    let out = cache.cacheback(&["show", "--name", "w", "--stdout"]);
    assert_eq!(out.stdout, b"out\n");
    let err = cache.cacheback(&["show", "--name", "w", "--stderr"]);
    assert_eq!(err.stdout, b"err\n");
    let by_command = cache.cacheback(&[
        "show",
        "--scope",
        "s",
        "--stdout",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 0",
    ]);
    assert_eq!(by_command.stdout, b"out\n");
    // The key options are part of the name: without --scope it is another entry.
    let other = cache.cacheback(&["show", "--", "sh", "-c", "echo out; echo err >&2; exit 0"]);
    assert_eq!(other.status.code(), Some(1));
    assert!(
        stderr(&other).starts_with("cacheback: no entry for sh -c"),
        "{}",
        stderr(&other)
    );
    let unknown = cache.cacheback(&["show", "--name", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        stderr(&unknown),
        "cacheback: no entry named 'nope'; `cacheback stats` lists the cached entries with \
         their names\n"
    );
    assert_eq!(
        cache.cacheback(&["show"]).status.code(),
        Some(2),
        "a target is required"
    );
}

#[test]
fn show_by_name_picks_the_most_recently_used_of_several() {
    let cache = Cache::new();
    let one = cache.work().join("one");
    let two = cache.work().join("two");
    fs::create_dir(&one).unwrap();
    fs::create_dir(&two).unwrap();
    let args = ["run", "--ttl", "1h", "--cwd", "--name", "here", "--", "pwd"];
    cache.cmd().args(args).current_dir(&one).bounded_output();
    std::thread::sleep(Duration::from_millis(20));
    cache.cmd().args(args).current_dir(&two).bounded_output();
    let out = cache.cacheback(&["show", "--name", "here", "--stdout"]);
    assert_eq!(stdout(&out).trim(), two.to_str().unwrap());
    let meta = stdout(&cache.cacheback(&["show", "--name", "here"]));
    assert!(meta.contains("1 more entry is labelled 'here'"), "{meta}");
    assert!(meta.contains(&format!("--cwd {}", two.display())), "{meta}");
}

#[test]
fn show_of_a_failure_only_entry_has_metadata_but_no_output() {
    let cache = Cache::new();
    cache.run(&[
        "--ttl",
        "1h",
        "--name",
        "bad",
        "--",
        "sh",
        "-c",
        "echo nope >&2; exit 5",
    ]);
    let meta = stdout(&cache.cacheback(&["show", "--name", "bad"]));
    assert!(meta.contains("state:        failing"), "{meta}");
    assert!(meta.contains("exit 5") && meta.contains("| nope"), "{meta}");
    let out = cache.cacheback(&["show", "--name", "bad", "--stdout"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no cached output"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn invalidate_by_name_command_and_all_makes_the_next_run_a_miss() {
    let cache = Cache::new();
    let a = [
        &["--ttl", "1h", "--name", "a", "--"][..],
        &sh("echo run >> \"$W/a\"; echo a"),
    ]
    .concat();
    let b = [
        &["--ttl", "1h", "--"][..],
        &sh("echo run >> \"$W/b\"; echo b"),
    ]
    .concat();
    let c = [
        &["--ttl", "1h", "--"][..],
        &sh("echo run >> \"$W/c\"; echo c"),
    ]
    .concat();
    for args in [&a, &b, &c] {
        cache.run(args);
        cache.run(args);
    }
    assert_eq!(
        (cache.count("a"), cache.count("b"), cache.count("c")),
        (1, 1, 1)
    );

    let out = cache.cacheback(&["invalidate", "--name", "a"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).starts_with("invalidated a"),
        "{}",
        stdout(&out)
    );
    cache.run(&a);
    assert_eq!(cache.count("a"), 2);
    assert_eq!(
        entry(&json_stats(&cache, &[]), "a")["hits"],
        0,
        "counters start over"
    );

    let out = cache.cacheback(&[&["invalidate", "--"][..], &b[3..]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    cache.run(&b);
    assert_eq!(cache.count("b"), 2);

    let out = cache.cacheback(&["invalidate", "--all"]);
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));
    assert!(cache.files(".entry").is_empty() && cache.files(".events").is_empty());
    cache.run(&c);
    assert_eq!(cache.count("c"), 2);

    let unknown = cache.cacheback(&["invalidate", "--name", "zzz"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(stderr(&unknown), "cacheback: no entry named 'zzz'\n");
    assert_eq!(cache.cacheback(&["invalidate"]).status.code(), Some(2));
}

#[test]
fn invalidate_by_name_removes_every_entry_with_that_label() {
    let cache = Cache::new();
    cache.run(&[
        "--ttl", "1h", "--name", "same", "--scope", "x", "--", "echo", "1",
    ]);
    cache.run(&[
        "--ttl", "1h", "--name", "same", "--scope", "y", "--", "echo", "1",
    ]);
    cache.run(&["--ttl", "1h", "--name", "other", "--", "echo", "1"]);
    let out = cache.cacheback(&["invalidate", "--name", "same"]);
    assert_eq!(stdout(&out).lines().count(), 2);
    assert_eq!(cache.files(".entry").len(), 1);
}

#[test]
fn invalidate_wins_over_a_refresh_already_running() {
    let cache = Cache::new();
    // The refresh holds until the test opens the gate (at most about 30 s).
    let body = format!(
        "echo run >> \"$W/count\"; if [ -e \"$W/slow\" ]; then echo $PPID > \"$W/pid\"; {}; fi; echo \"v$(wc -l < \"$W/count\")\"",
        gate("go")
    );
    let args = [&["--ttl", "1h", "--name", "race", "--"][..], &sh(&body)].concat();
    assert_eq!(stdout(&cache.run(&args)), "v1\n");
    cache.stale_with_flag("slow");
    cache.run(&args); // stale: a slow refresh starts
    let pid = read_pid(&cache, "pid");
    let out = cache.cacheback(&["invalidate", "--name", "race"]);
    assert!(
        stdout(&out).contains("will not be stored"),
        "{}",
        stdout(&out)
    );
    cache.open_gate("go");
    // The refresher (the command's parent) commits after the command ends, then exits.
    assert!(wait_until(Duration::from_secs(10), || !alive(pid)));
    assert!(
        cache.files(".entry").is_empty(),
        "the running refresh's result was stored"
    );
    fs::remove_file(cache.work().join("slow")).unwrap();
    assert_eq!(stdout(&cache.run(&args)), "v3\n", "next run is a miss");
}

#[test]
fn invalidate_refresh_keeps_serving_the_old_value_until_the_new_one_lands() {
    let cache = Cache::new();
    // Once `$W/slow` exists, a run holds until the test opens the gate (at most about 30 s).
    let body = format!(
        "echo run >> \"$W/count\"; if [ -e \"$W/broken\" ]; then exit 1; fi; if [ -e \"$W/slow\" ]; then {}; fi; echo \"v$(wc -l < \"$W/count\") $(pwd)\"",
        gate("go")
    );
    let dir = cache.work().join("sub");
    fs::create_dir(&dir).unwrap();
    let args = [
        &["run", "--ttl", "1h", "--cwd", "--name", "r", "--"][..],
        &sh(&body),
    ]
    .concat();
    let run = || stdout(&cache.cmd().args(&args).current_dir(&dir).bounded_output());
    let first = run();
    assert_eq!(first, format!("v1 {}\n", dir.display()));
    // A failed refresh puts the entry in back-off; an explicit request must not wait for it.
    cache.stale_with_flag("broken");
    run();
    assert!(wait_until(Duration::from_secs(10), || state(&cache, "r") == "failing"));
    fs::remove_file(cache.work().join("broken")).unwrap();
    fs::write(cache.work().join("slow"), "").unwrap();
    // From another directory: the refresher must run where the entry was keyed.
    let start = Instant::now();
    let out = cache.cacheback(&["invalidate", "--refresh", "--name", "r"]);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "invalidate --refresh waited {:?} (the refresh takes about 30 s)",
        start.elapsed()
    );
    assert!(
        stdout(&out).contains("refreshing in the background"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(run(), first, "the old value is served meanwhile");
    cache.open_gate("go");
    assert!(wait_until(Duration::from_secs(10), || run()
        == format!("v3 {}\n", dir.display())));
    assert_eq!(state(&cache, "r"), "fresh");
}

#[test]
fn invalidate_refresh_keeps_the_counters() {
    // `--refresh` keeps the entry, so it keeps its counts, although it replaces
    // the lock file that holds them (to void a refresh already running).
    let cache = Cache::new();
    let args = ["--ttl", "1h", "--name", "kept", "--", "echo", "x"];
    cache.run(&args);
    cache.run(&args);
    let out = cache.cacheback(&["invalidate", "--refresh", "--name", "kept"]);
    assert!(
        stdout(&out).contains("refreshing in the background"),
        "{}",
        stderr(&out)
    );
    assert!(wait_until(Duration::from_secs(10), || entry(
        &json_stats(&cache, &[]),
        "kept"
    )["refreshes"]
        == 2));
    let kept = entry(&json_stats(&cache, &[]), "kept").clone();
    assert_eq!(
        (kept["misses"].as_u64(), kept["hits"].as_u64()),
        (Some(1), Some(1)),
        "{kept:#}"
    );
}

#[test]
fn invalidate_refresh_marks_stale_when_the_key_inputs_differ_here() {
    let cache = Cache::new();
    let args = [
        "--ttl", "1h", "--env", "FLAVOUR", "--name", "env", "--", "echo", "x",
    ];
    cache
        .cmd()
        .arg("run")
        .args(args)
        .env("FLAVOUR", "a")
        .bounded_output();
    let out = cache
        .cmd()
        .args(["invalidate", "--refresh", "--name", "env"])
        .env("FLAVOUR", "b")
        .bounded_output();
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("not refreshed now"),
        "{}",
        stdout(&out)
    );
    assert_eq!(state(&cache, "env"), "stale");
    // The next caller with the original environment gets the old value and refreshes it.
    let hit = cache
        .cmd()
        .arg("run")
        .args(args)
        .env("FLAVOUR", "a")
        .bounded_output();
    assert_eq!(stdout(&hit), "x\n");
    assert!(wait_until(Duration::from_secs(10), || state(&cache, "env") == "fresh"));
}

#[test]
fn warm_fills_the_cache_in_the_background_and_returns_at_once() {
    let cache = Cache::new();
    // The run holds until the test opens the gate (at most about 30 s).
    let body = format!(
        "echo run >> \"$W/count\"; echo $$ > \"$W/pid\"; {}; echo warm",
        gate("go")
    );
    let args = [
        &["warm", "--ttl", "1h", "--name", "w", "--"][..],
        &sh(&body),
    ]
    .concat();
    let start = Instant::now();
    let out = cache.cacheback(&args);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "warm waited {:?}",
        start.elapsed()
    );
    assert!(out.status.success());
    assert_eq!(out.stdout, b"");
    read_pid(&cache, "pid");
    let stats = json_stats(&cache, &[]);
    assert_eq!(
        stats["totals"]["states"]["refreshing"], 1,
        "a first run in flight is listed: {stats:#}"
    );
    let again = cache.cacheback(&args);
    assert!(again.status.success());
    assert!(
        stderr(&again).contains("already in progress"),
        "{}",
        stderr(&again)
    );
    let run_args = [&["--ttl", "1h", "--name", "w", "--"][..], &sh(&body)].concat();
    cache.open_gate("go");
    assert!(wait_until(Duration::from_secs(10), || !cache
        .files(".entry")
        .is_empty()));
    assert_eq!(stdout(&cache.run(&run_args)), "warm\n");
    assert_eq!(
        cache.count("count"),
        1,
        "single-flight: the second warm started nothing"
    );
}

#[test]
fn gc_removes_entries_not_read_for_a_while() {
    let cache = Cache::new();
    cache.run(&["--ttl", "1h", "--name", "old", "--", "echo", "old"]);
    cache.run(&["--ttl", "1h", "--name", "old", "--", "echo", "old"]);
    age_everything(&cache, 40 * DAY);
    cache.run(&["--ttl", "1h", "--name", "new", "--", "echo", "new"]);
    // A read counts as use even when the entry itself is old.
    cache.run(&["--ttl", "1h", "--name", "read", "--", "echo", "read"]);
    for path in cache.files(".entry") {
        if String::from_utf8_lossy(&fs::read(&path).unwrap()).contains("read") {
            backdate_file(&path, 40 * DAY);
        }
    }
    let dry = cache.cacheback(&["gc", "--dry-run"]);
    assert!(
        stdout(&dry).contains("would remove 1 entry not read for 30d"),
        "{}",
        stdout(&dry)
    );
    assert_eq!(cache.files(".entry").len(), 3);
    let out = cache.cacheback(&["gc"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("removed 1 entry not read for 30d"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("2 entries"), "{}", stdout(&out));
    let stats = json_stats(&cache, &[]);
    let names: Vec<&str> = stats["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["new", "read"]);
    assert!(
        cache.files(".events").len() <= 2,
        "the old entry's counters went with it"
    );
    let out = cache.cacheback(&["gc", "--older-than", "1ms"]);
    assert!(
        stdout(&out).contains("removed 2 entries"),
        "{}",
        stdout(&out)
    );
    assert!(cache.files("").is_empty(), "{:?}", cache.files(""));
}

#[test]
fn gc_max_size_evicts_the_least_recently_read_first() {
    let cache = Cache::new();
    // Four entries of ~10 KB; "c" is the least recently read, then "a".
    for (name, days) in [("c", 5), ("a", 4), ("d", 3), ("b", 2)] {
        cache.run(&[
            "--ttl",
            "1h",
            "--name",
            name,
            "--scope",
            name,
            "--",
            "head",
            "-c",
            "10000",
            "/dev/zero",
        ]);
        for path in cache.files("") {
            let modified = fs::metadata(&path).unwrap().modified().unwrap();
            if modified.elapsed().unwrap() < Duration::from_secs(60) {
                if path.to_string_lossy().ends_with(".entry") {
                    backdate_file(&path, days * DAY);
                }
                age_mtime(&path, days * DAY);
            }
        }
    }
    let out = cache.cacheback(&["gc", "--max-size", "25K"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("removed 2 entries least recently read, to fit 25.0KiB"),
        "{}",
        stdout(&out)
    );
    let stats = json_stats(&cache, &[]);
    let mut names: Vec<&str> = stats["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["b", "d"]);
    assert!(stats["totals"]["disk_bytes"].as_u64().unwrap() <= 25 * 1024);
}

#[test]
fn gc_removes_leftover_temp_files_and_orphans_but_never_a_held_lock() {
    let cache = Cache::new();
    cache.run(&["--ttl", "1h", "--", "echo", "keep"]);
    let dir = cache.dir();
    let old_temp = dir.join(".tmp-killed");
    let young_temp = dir.join(".tmp-live");
    fs::write(&old_temp, vec![0u8; 100]).unwrap();
    fs::write(&young_temp, b"x").unwrap();
    age_mtime(&old_temp, 2 * DAY);
    let orphan = "ab".repeat(32);
    for suffix in [".lock", ".events"] {
        let path = dir.join(format!("{orphan}{suffix}"));
        fs::write(&path, b"m").unwrap();
        age_mtime(&path, 2 * DAY);
    }
    // A slow first run holds its lock and has no entry yet, until the gate opens.
    let body = format!("echo $$ > \"$W/pid\"; {}; echo slow", gate("go"));
    let slow = [&["warm", "--ttl", "1h", "--"][..], &sh(&body)].concat();
    cache.cacheback(&slow);
    read_pid(&cache, "pid");
    let held: Vec<_> = cache
        .files(".lock")
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains(&orphan))
        .collect();
    for path in &held {
        age_mtime(path, 2 * DAY);
    }
    let out = cache.cacheback(&["gc"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("removed 1 temp file left by killed writers (100B)"),
        "{text}"
    );
    assert!(text.contains("removed 2 lock/events files"), "{text}");
    assert!(!old_temp.exists() && young_temp.exists());
    assert!(!dir.join(format!("{orphan}.lock")).exists());
    assert_eq!(
        cache.files(".lock").len(),
        2,
        "the held lock stays (and the entry's own)"
    );
    cache.open_gate("go");
    assert!(
        wait_until(Duration::from_secs(10), || cache.files(".entry").len() == 2),
        "the slow run still stored its result"
    );
}

#[test]
fn refreshers_run_a_daily_gc() {
    let cache = Cache::new();
    cache.run(&["--ttl", "1h", "--name", "ancient", "--", "echo", "a"]);
    age_everything(&cache, 40 * DAY);
    let live = sh("echo $PPID > \"$W/refresher\"; echo l");
    let run = [&["--ttl", "1h", "--name", "live", "--"][..], &live].concat();
    let warm = [&["warm", "--ttl", "1h", "--name", "live", "--"][..], &live].concat();
    // Runs `warm` and waits for its refresher to finish, gc included.
    let warm_and_wait = || {
        let _ = fs::remove_file(cache.work().join("refresher"));
        assert!(cache.cacheback(&warm).status.success());
        let refresher = read_pid(&cache, "refresher");
        assert!(wait_until(Duration::from_secs(10), || !alive(refresher)));
    };
    cache.run(&run);
    // A fresh stamp: no gc yet.
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    fs::write(cache.dir().join(".gc-stamp"), format!("{now_ms}\n")).unwrap();
    warm_and_wait();
    assert_eq!(
        cache.files(".entry").len(),
        2,
        "gc ran although it ran less than a day ago"
    );
    // A day-old stamp: the next refresher collects.
    fs::write(cache.dir().join(".gc-stamp"), "0\n").unwrap();
    warm_and_wait();
    assert_eq!(
        cache.files(".entry").len(),
        1,
        "the ancient entry was not collected"
    );
    let stamp: u64 = fs::read_to_string(cache.dir().join(".gc-stamp"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(stamp > 0);
}

#[test]
fn each_subcommand_has_its_own_help() {
    let cache = Cache::new();
    for (sub, summary) in [
        ("stats", "List cached entries"),
        ("show", "Show one entry's metadata"),
        ("invalidate", "Remove entries"),
        ("warm", "Start a background run now"),
        ("gc", "Remove entries not read"),
    ] {
        let help = stdout(&cache.cacheback(&[sub, "--help"]));
        assert!(help.starts_with(summary), "{sub} --help:\n{help}");
    }
    let warm = stdout(&cache.cacheback(&["warm", "--help"]));
    assert!(
        !warm.contains("--no-wait") && warm.contains("--ttl"),
        "{warm}"
    );
}

#[test]
fn stats_colours_states_only_on_a_terminal_and_never_with_no_color() {
    let cache = Cache::new();
    cache.run(&["--ttl", "1h", "--name", "green", "--", "true"]);
    // script(1) gives cacheback a real terminal as stdout.
    let on_terminal = |no_color: Option<&str>| {
        let mut cmd = std::process::Command::new("script");
        cmd.args(["-qec", &format!("{BIN} stats"), "/dev/null"])
            .env("CACHEBACK_DIR", cache.dir())
            .env_remove("NO_COLOR");
        if let Some(value) = no_color {
            cmd.env("NO_COLOR", value);
        }
        match cmd.output() {
            Ok(output) => stdout(&output),
            Err(err) => panic!("script(1) is needed for this test: {err}"),
        }
    };
    assert!(
        on_terminal(None).contains("\x1b[32mfresh\x1b[0m"),
        "{:?}",
        on_terminal(None)
    );
    assert!(!on_terminal(Some("1")).contains('\x1b'));
    assert!(
        on_terminal(Some("")).contains('\x1b'),
        "an empty NO_COLOR does not opt out"
    );
    let piped = cache.cacheback(&["stats"]);
    assert!(!stdout(&piped).contains('\x1b'));
    assert!(stdout(&piped).contains("fresh"));
}

#[test]
fn stats_names_the_cache_directory_and_says_why_it_is_empty() {
    let cache = Cache::new();
    let missing = stdout(&cache.cacheback(&["stats"]));
    assert!(
        missing.starts_with("no cached entries: cache directory "),
        "{missing}"
    );
    assert!(missing.contains("does not exist yet"), "{missing}");
    let json: serde_json::Value =
        serde_json::from_slice(&cache.cacheback(&["stats", "--json"]).stdout).unwrap();
    assert_eq!(json["dir"], cache.dir().to_str().unwrap());
    assert!(
        json["dir_problem"]
            .as_str()
            .unwrap()
            .starts_with("does not exist yet")
    );
    cache.run(&["--ttl", "1h", "--", "true"]);
    let table = stdout(&cache.cacheback(&["stats"]));
    let last = table.lines().last().unwrap();
    assert_eq!(last, format!("cache directory: {}", cache.dir().display()));
    let json: serde_json::Value =
        serde_json::from_slice(&cache.cacheback(&["stats", "--json"]).stdout).unwrap();
    assert!(json["dir_problem"].is_null());
    // A file where the directory should be is named, not an I/O error.
    let file = cache.work().join("not-a-dir");
    fs::write(&file, "").unwrap();
    let output = cache
        .cmd()
        .env("CACHEBACK_DIR", &file)
        .arg("stats")
        .bounded_output();
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout(&output).contains("not a directory"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn a_relative_cacheback_dir_is_taken_from_the_working_directory() {
    let cache = Cache::new();
    let run = || {
        cache
            .cmd()
            .env("CACHEBACK_DIR", "rel-cache")
            .args([
                "run",
                "--ttl",
                "1h",
                "--",
                "sh",
                "-c",
                "echo run >> \"$W/count\"; echo x",
            ])
            .bounded_output()
    };
    assert_eq!(stdout(&run()), "x\n");
    assert_eq!(stdout(&run()), "x\n");
    assert_eq!(cache.count("count"), 1, "the second call was a hit");
    let dir = cache.work().join("rel-cache");
    assert!(
        fs::read_dir(&dir)
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_string_lossy().ends_with(".entry") })
    );
    let shown = cache
        .cmd()
        .env("CACHEBACK_DIR", "rel-cache")
        .arg("stats")
        .bounded_output();
    assert!(stdout(&shown).contains(&format!("cache directory: {}", dir.display())));
}
