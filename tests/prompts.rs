//! What prompt and status-bar users asked for (issue 14), through the binary:
//! the stale marker, the refresh hook, input as a key, jitter, content keys,
//! environment defaults, and the messages a new user meets.

use std::fs;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Bounded, BoundedChild, Cache, stderr, stdout, wait_until};

const MARKER: &str = " ({age} {state})";

#[test]
fn stale_marker_goes_before_the_final_newline_of_a_stale_value_only() {
    let cache = Cache::new();
    let run = |cache: &Cache| {
        cache.run(&[
            "--ttl",
            "1h",
            "--stale-marker",
            MARKER,
            "--",
            "sh",
            "-c",
            "echo line; echo run >> $W/runs",
        ])
    };
    assert_eq!(stdout(&run(&cache)), "line\n", "a miss is fresh: unmarked");
    assert_eq!(stdout(&run(&cache)), "line\n", "a fresh hit: unmarked");
    cache.backdate(2 * 3600 + 3 * 60);
    assert_eq!(stdout(&run(&cache)), "line (2h3m stale)\n");
    assert!(cache.settled(Duration::from_secs(20)));
    assert_eq!(cache.count("runs"), 2, "the stale hit refreshed it");
    assert_eq!(stdout(&run(&cache)), "line\n", "refreshed: fresh again");
}

/// A refresh whose command has gone (uninstalled, a moved script) is a
/// failed run like any other: the prompt says "failing", not just "stale",
/// so the user looks at the command rather than waiting for a refresh.
#[test]
fn stale_marker_says_failing_when_the_command_has_gone() {
    let cache = Cache::new();
    let tool = cache.work().join("tool");
    fs::write(&tool, "#!/bin/sh\nprintf ok\n").unwrap();
    fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let tool = tool.to_str().unwrap();
    let args = ["--ttl", "1m", "--stale-marker", MARKER, "--", tool];
    assert_eq!(stdout(&cache.run(&args)), "ok");
    fs::remove_file(tool).unwrap();
    cache.backdate(2 * 3600);
    // This stale hit starts the refresh that cannot find the command.
    assert_eq!(stdout(&cache.run(&args)), "ok (2h stale)");
    assert!(cache.settled(Duration::from_secs(20)));
    let marked = cache.run(&args);
    assert_eq!(stdout(&marked), "ok (2h failing)");
    assert_eq!(marked.status.code(), Some(0), "the value's own status");
}

#[test]
fn stale_marker_says_failing_when_the_last_refresh_failed() {
    let cache = Cache::new();
    let body = "if [ -e $W/broken ]; then echo down >&2; exit 3; fi; printf ok";
    let args = [
        "--ttl",
        "1m",
        "--stale-marker",
        MARKER,
        "--",
        "sh",
        "-c",
        body,
    ];
    cache.run(&args);
    cache.stale_with_flag("broken");
    // This stale hit starts the refresh that fails; the next one sees it.
    assert_eq!(stdout(&cache.run(&args)), "ok (2h stale)");
    assert!(cache.settled(Duration::from_secs(20)));
    let marked = cache.run(&args);
    assert_eq!(stdout(&marked), "ok (2h failing)", "no newline: at the end");
    assert_eq!(marked.status.code(), Some(0), "the value's own status");

    // A fresh value with a failed run after it (a `warm` from cron while
    // the value is fresh) is marked too; a success clears the mark.
    let cache = Cache::new();
    cache.run(&args);
    fs::write(cache.work().join("broken"), "").unwrap();
    let warm = ["warm", "--ttl", "1m", "--", "sh", "-c", body];
    cache.cacheback(&warm);
    assert!(cache.settled(Duration::from_secs(20)));
    let marked = stdout(&cache.run(&args));
    assert!(
        marked.starts_with("ok (") && marked.ends_with("s failing)"),
        "{marked}"
    );
    fs::remove_file(cache.work().join("broken")).unwrap();
    cache.cacheback(&warm);
    assert!(cache.settled(Duration::from_secs(20)));
    assert_eq!(stdout(&cache.run(&args)), "ok");
}

#[test]
fn stale_marker_comes_from_the_environment_and_the_flag_wins() {
    let cache = Cache::new();
    cache.run(&["--ttl", "1m", "--", "echo", "v"]);
    cache.backdate(600);
    let from_env = cache
        .cmd()
        .env("CACHEBACK_STALE_MARKER", " [{state}]")
        .args(["run", "--ttl", "1h", "--", "echo", "v"])
        .bounded_output();
    assert_eq!(stdout(&from_env), "v\n", "600s old under a 1h TTL is fresh");
    let stale = cache
        .cmd()
        .env("CACHEBACK_STALE_MARKER", " [{state}]")
        .args(["run", "--ttl", "1s", "--", "echo", "v"])
        .bounded_output();
    assert_eq!(stdout(&stale), "v [stale]\n");
    assert!(cache.settled(Duration::from_secs(20)));
    cache.backdate(600);
    let flag = cache
        .cmd()
        .env("CACHEBACK_STALE_MARKER", " [{state}]")
        .args([
            "run",
            "--ttl",
            "1s",
            "--stale-marker",
            "*",
            "--",
            "echo",
            "v",
        ])
        .bounded_output();
    assert_eq!(stdout(&flag), "v*\n");
}

#[test]
fn on_refresh_runs_after_a_background_refresh_that_changed_the_value() {
    let cache = Cache::new();
    let hook = "echo \"$CACHEBACK_NAME $CACHEBACK_KEY\" >> $W/hook";
    let args = [
        "--ttl",
        "1m",
        "--name",
        "bar",
        "--on-refresh",
        hook,
        "--",
        "sh",
        "-c",
        "cat $W/value",
    ];
    fs::write(cache.work().join("value"), "one").unwrap();
    cache.run(&args);
    assert!(cache.settled(Duration::from_secs(20)));
    assert_eq!(cache.count("hook"), 0, "a foreground miss wakes nobody");

    cache.backdate(3600);
    cache.run(&args);
    assert!(cache.settled(Duration::from_secs(20)));
    assert_eq!(cache.count("hook"), 0, "refreshed to the same value");

    fs::write(cache.work().join("value"), "two").unwrap();
    cache.backdate(3600);
    assert_eq!(stdout(&cache.run(&args)), "one");
    assert!(wait_until(Duration::from_secs(20), || cache.count("hook") == 1));
    let line = fs::read_to_string(cache.work().join("hook")).unwrap();
    let key = cache
        .entry()
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(line, format!("bar {key}\n"));
    assert_eq!(stdout(&cache.run(&args)), "two");
}

#[test]
fn on_refresh_wakes_the_bar_when_a_no_wait_miss_fills_the_entry() {
    let cache = Cache::new();
    let args = [
        "--ttl",
        "1m",
        "--no-wait",
        "--placeholder",
        "…",
        "--on-refresh",
        "echo woke >> $W/hook",
        "--",
        "echo",
        "value",
    ];
    assert_eq!(stdout(&cache.run(&args)), "…");
    assert!(wait_until(Duration::from_secs(20), || cache.count("hook") == 1));
    assert_eq!(stdout(&cache.run(&args)), "value\n");
}

fn run_with_input(cache: &Cache, input: &[u8], args: &[&str]) -> std::process::Output {
    with_input(cache, input, &[&["run"], args].concat())
}

fn with_input(cache: &Cache, input: &[u8], args: &[&str]) -> std::process::Output {
    let mut child = cache
        .cmd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    child.bounded_wait_with_output()
}

#[test]
fn stdin_is_keyed_on_and_given_to_the_command_and_its_refreshes() {
    let cache = Cache::new();
    let args = [
        "--ttl",
        "1m",
        "--stdin",
        "--",
        "sh",
        "-c",
        "wc -c; echo run >> $W/runs",
    ];
    let big = vec![b'x'; 3 << 20];
    assert_eq!(
        stdout(&run_with_input(&cache, &big, &args)).trim(),
        "3145728"
    );
    assert_eq!(stdout(&run_with_input(&cache, b"abc", &args)).trim(), "3");
    assert_eq!(
        stdout(&run_with_input(&cache, &big, &args)).trim(),
        "3145728"
    );
    assert_eq!(cache.count("runs"), 2, "the same input is a hit");
    cache.backdate(3600);
    run_with_input(&cache, b"abc", &args);
    assert!(cache.settled(Duration::from_secs(20)));
    assert_eq!(cache.count("runs"), 3, "the stale hit refreshed");
    let show = with_input(
        &cache,
        b"abc",
        &[
            "show",
            "--stdin",
            "--",
            "sh",
            "-c",
            "wc -c; echo run >> $W/runs",
        ],
    );
    assert!(stdout(&show).contains("--stdin #"), "{}", stderr(&show));
    let refreshed = run_with_input(&cache, b"abc", &args);
    assert_eq!(
        stdout(&refreshed).trim(),
        "3",
        "the refresh read the same input"
    );
}

#[test]
fn input_piped_without_stdin_is_pointed_out_but_dev_null_and_an_empty_pipe_are_not() {
    let cache = Cache::new();
    // Redirected from a file: the data is there when cacheback looks. (A
    // pipe's writer may not have written yet; that case stays quiet.)
    let input = cache.work().join("input");
    fs::write(&input, "data").unwrap();
    let redirected = cache
        .cmd()
        .args(["run", "--ttl", "1m", "--", "cat"])
        .stdin(fs::File::open(&input).unwrap())
        .bounded_output();
    assert!(
        stderr(&redirected).contains("add --stdin"),
        "{}",
        stderr(&redirected)
    );
    let mut piped = cache
        .cmd()
        .args(["run", "--ttl", "1m", "--", "sh", "-c", "exec cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(piped.stdin.take());
    let piped = piped.bounded_wait_with_output();
    assert_eq!(stderr(&piped), "", "an empty pipe");
    let quiet = cache.run(&["--ttl", "1m", "--", "echo", "x"]);
    assert_eq!(stderr(&quiet), "", "/dev/null");
    let empty = run_with_input(&cache, b"", &["--ttl", "1m", "--", "echo", "y"]);
    assert_eq!(stderr(&empty), "", "cron's stdin: an empty pipe");
}

#[test]
fn hash_keys_on_content_where_modtime_keys_on_time() {
    let cache = Cache::new();
    let file = cache.work().join("lock");
    fs::write(&file, "v1").unwrap();
    let args = [
        "--ttl",
        "1h",
        "--hash",
        "lock",
        "--",
        "sh",
        "-c",
        "cat lock; echo run >> $W/runs",
    ];
    assert_eq!(stdout(&cache.run(&args)), "v1");
    // A checkout rewrites it with the same bytes: same entry.
    fs::write(&file, "v1").unwrap();
    let times = fs::File::options().write(true).open(&file).unwrap();
    times
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    assert_eq!(stdout(&cache.run(&args)), "v1");
    assert_eq!(cache.count("runs"), 1);
    fs::write(&file, "v2").unwrap();
    assert_eq!(stdout(&cache.run(&args)), "v2");
    fs::remove_file(&file).unwrap();
    cache.run(&args);
    assert_eq!(cache.count("runs"), 3, "a missing file is a key of its own");
    let show = cache.cacheback(&["stats", "--json"]);
    assert!(
        stdout(&show).contains("--hash lock (missing)"),
        "{}",
        stdout(&show)
    );
}

/// The jitter is drawn up to its bound, the bound included: a 1 ms jitter
/// gives 0 or 1 ms (24 entries all drawing 0 has a chance of 1 in 16
/// million), and a bound that small stores like any other. (`% (limit + 1)`
/// made `* 1` or `- 1` survived the refresher group; `- 1` divides by zero.)
#[test]
fn a_one_millisecond_jitter_draws_zero_or_one() {
    let cache = Cache::new();
    for n in 0..24 {
        let name = format!("e{n}");
        let out = cache.run(&["--ttl", "1h", "--jitter", "1ms", "--", "echo", &name]);
        assert!(out.status.success(), "{out:?}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&cache.cacheback(&["stats", "--json"]).stdout).unwrap();
    let drawn: Vec<u64> = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["jitter_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(drawn.len(), 24);
    assert!(drawn.iter().all(|&ms| ms <= 1), "{drawn:?}");
    assert!(drawn.contains(&1), "the bound is never drawn: {drawn:?}");
}

#[test]
fn jitter_moves_the_stale_point_and_show_reports_it() {
    let cache = Cache::new();
    let mut seen = Vec::new();
    for n in 0..6 {
        let name = format!("e{n}");
        let out = cache.run(&["--ttl", "1h", "--jitter", "50%", "--", "echo", &name]);
        assert!(out.status.success());
    }
    let json: serde_json::Value =
        serde_json::from_slice(&cache.cacheback(&["stats", "--json"]).stdout).unwrap();
    for entry in json["entries"].as_array().unwrap() {
        let jitter = entry["jitter_ms"].as_u64().unwrap();
        assert!(jitter <= 1_800_000, "at most half the TTL: {jitter}");
        assert!(entry["stale_at"].is_string());
        seen.push(jitter);
    }
    seen.sort();
    seen.dedup();
    assert!(seen.len() > 1, "six entries drew one jitter: {seen:?}");

    // A value 70 minutes old under a 1h TTL with 30m of jitter is fresh.
    let cache = Cache::new();
    let args = [
        "--ttl",
        "1h",
        "--jitter",
        "30m",
        "--",
        "sh",
        "-c",
        "echo run >> $W/runs",
    ];
    cache.run(&args);
    let json: serde_json::Value =
        serde_json::from_slice(&cache.cacheback(&["stats", "--json"]).stdout).unwrap();
    let jitter = json["entries"][0]["jitter_ms"].as_u64().unwrap();
    let show = stdout(&cache.cacheback(&["show", "--", "sh", "-c", "echo run >> $W/runs"]));
    assert!(show.contains("stale at:"), "{show}");
    cache.backdate(3600 + jitter / 1000 - 5);
    cache.run(&args);
    assert!(cache.settled(Duration::from_secs(20)));
    assert_eq!(cache.count("runs"), 1, "still inside the jitter: fresh");
    cache.backdate(10);
    cache.run(&args);
    assert!(cache.settled(Duration::from_secs(20)));
    assert_eq!(cache.count("runs"), 2, "past TTL + jitter: refreshed");
}

#[test]
fn ttl_and_scope_come_from_the_environment() {
    let cache = Cache::new();
    let missing = cache.run(&["--", "echo", "x"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("CACHEBACK_TTL"),
        "{}",
        stderr(&missing)
    );
    let with_env = |scope: &str| {
        cache
            .cmd()
            .env("CACHEBACK_TTL", "1h")
            .env("CACHEBACK_SCOPE", scope)
            .args(["run", "--", "sh", "-c", "echo run >> $W/runs"])
            .bounded_output()
    };
    assert!(with_env("a").status.success());
    assert!(with_env("a").status.success());
    assert!(with_env("b").status.success());
    assert_eq!(cache.count("runs"), 2, "one entry per scope");
    let flag_wins = cache
        .cmd()
        .env("CACHEBACK_TTL", "1h")
        .env("CACHEBACK_SCOPE", "b")
        .args([
            "run",
            "--scope",
            "a",
            "--",
            "sh",
            "-c",
            "echo run >> $W/runs",
        ])
        .bounded_output();
    assert!(flag_wins.status.success());
    assert_eq!(cache.count("runs"), 2, "--scope a is the first entry");
    let stats = stdout(&cache.cacheback(&["stats"]));
    assert!(
        stats.contains("--scope a") && stats.contains("--scope b"),
        "{stats}"
    );
    let bad = cache
        .cmd()
        .env("CACHEBACK_TTL", "soon")
        .args(["run", "--", "true"])
        .bounded_output();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).starts_with("cacheback: CACHEBACK_TTL"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn a_new_users_mistakes_get_messages_that_say_what_to_do() {
    let cache = Cache::new();
    let check = |args: &[&str], code: i32, says: &str| {
        let out = cache.cacheback(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        err
    };
    check(&["run", "--ttl", "1m", "--", "ls | wc -l"], 127, "sh -c");
    check(
        &["run", "--ttl", "1m", "--timeout", "0", "--", "true"],
        2,
        "kill every run",
    );
    check(
        &["run", "--ttl", "1m", "--timeout", "1s", "--", "sleep", "5"],
        124,
        "killed after the 1s --timeout",
    );
    check(
        &["run", "--ttl", "1m", "--env", "A=B", "--", "true"],
        2,
        "write `--env A`",
    );
    let err = check(&["stats", "--bogus"], 2, "unexpected argument '--bogus'");
    assert!(!err.contains("-- --bogus"), "{err}");
    let err = check(&["stats", "-j"], 2, "unexpected argument '-j'");
    assert!(!err.contains("-- -j"), "{err}");
    check(
        &["run", "--ttl", "1m", "--max-age", "30s", "--", "true"],
        0,
        "never served stale",
    );
    let file = cache.work().join("a-file");
    fs::write(&file, "").unwrap();
    let out = cache
        .cmd()
        .env("CACHEBACK_DIR", &file)
        .arg("stats")
        .bounded_output();
    assert!(
        stdout(&out).contains("(from $CACHEBACK_DIR): not a directory"),
        "{}",
        stdout(&out)
    );
    // `--ttl 0` is defined: every call gets the last value, then refreshes.
    let zero = [
        "--ttl",
        "0",
        "--",
        "sh",
        "-c",
        "echo run >> $W/zero; echo v",
    ];
    assert_eq!(stdout(&cache.run(&zero)), "v\n");
    assert!(cache.settled(Duration::from_secs(20)));
    assert_eq!(stdout(&cache.run(&zero)), "v\n");
    assert!(cache.settled(Duration::from_secs(20)));
    assert_eq!(cache.count("zero"), 2, "the hit refreshed");
}
