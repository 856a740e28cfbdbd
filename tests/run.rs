//! `cacheback run`: hits, misses, stale refreshes, failures, keys, limits.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::*;

const COUNTED: &str = "echo run >> \"$W/count\"; echo out; echo err >&2; exit 0";

#[test]
fn miss_runs_and_stores_then_hit_replays_without_running() {
    let cache = Cache::new();
    let first = cache.run(&[&["--ttl", "1h", "--"][..], &sh(COUNTED)].concat());
    assert!(first.status.success());
    assert_eq!(stdout(&first), "out\n");
    assert_eq!(stderr(&first), "err\n");
    for _ in 0..3 {
        let hit = cache.run(&[&["--ttl", "1h", "--"][..], &sh(COUNTED)].concat());
        assert_eq!(stdout(&hit), "out\n");
        assert_eq!(stderr(&hit), "err\n");
        assert!(hit.status.success());
    }
    assert_eq!(cache.count("count"), 1);
}

#[test]
fn exit_status_is_replayed_with_cache_failures() {
    let cache = Cache::new();
    let args = [
        &["--ttl", "1h", "--cache-failures", "--"][..],
        &sh("echo run >> \"$W/count\"; echo nope; exit 3"),
    ]
    .concat();
    assert_eq!(cache.run(&args).status.code(), Some(3));
    let hit = cache.run(&args);
    assert_eq!(hit.status.code(), Some(3));
    assert_eq!(stdout(&hit), "nope\n");
    assert_eq!(cache.count("count"), 1);
}

#[test]
fn failed_miss_is_passed_through_and_not_stored() {
    let cache = Cache::new();
    let args = [
        &["--ttl", "1h", "--"][..],
        &sh("echo run >> \"$W/count\"; echo partial; echo bad >&2; exit 7"),
    ]
    .concat();
    for round in 1..=2 {
        let output = cache.run(&args);
        assert_eq!(output.status.code(), Some(7));
        assert_eq!(stdout(&output), "partial\n");
        assert_eq!(stderr(&output), "bad\n");
        assert_eq!(cache.count("count"), round);
    }
    assert!(cache.files(".entry").is_empty());
}

#[test]
fn command_is_run_directly_with_argument_boundaries_kept() {
    let cache = Cache::new();
    let one = cache.run(&["--ttl", "1h", "--", "printf", "%s|", "a b"]);
    let two = cache.run(&["--ttl", "1h", "--", "printf", "%s|", "a", "b"]);
    assert_eq!(stdout(&one), "a b|");
    assert_eq!(stdout(&two), "a|b|");
    assert_eq!(cache.files(".entry").len(), 2);
    // No shell is involved: metacharacters are plain arguments.
    let literal = cache.run(&["--ttl", "1h", "echo", "$HOME", ";", "ls"]);
    assert_eq!(stdout(&literal), "$HOME ; ls\n");
}

#[test]
fn stale_hit_returns_at_once_and_refreshes_in_the_background() {
    let cache = Cache::new();
    // The refresh holds until the test opens the gate (at most about 30 s).
    let body = format!(
        "echo run >> \"$W/count\"; if [ -e \"$W/slow\" ]; then {}; fi; echo \"v$(cat \"$W/count\" | wc -l)\"",
        gate("go")
    );
    let args = [&["--ttl", "1h", "--"][..], &sh(&body)].concat();
    assert_eq!(stdout(&cache.run(&args)), "v1\n");
    cache.stale_with_flag("slow");
    let start = Instant::now();
    let stale = cache.run(&args);
    // A caller that waited for the refresh would take the gate's 30 s.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "stale hit waited {:?}",
        start.elapsed()
    );
    assert_eq!(stdout(&stale), "v1\n", "a stale hit serves the old value");
    cache.open_gate("go");
    assert!(wait_until(Duration::from_secs(15), || stdout(
        &cache.run(&args)
    ) == "v2\n"));
    assert_eq!(cache.count("count"), 2);
}

#[test]
fn command_substitution_does_not_wait_for_the_refresh() {
    let cache = Cache::new();
    // The refresh holds until the test opens the gate (at most about 30 s).
    let body = format!(
        "echo run >> \"$W/count\"; if [ -e \"$W/slow\" ]; then {}; fi; date +%s%N",
        gate("go")
    );
    let prime = cache.run(&[&["--ttl", "1h", "--"][..], &sh(&body)].concat());
    assert!(prime.status.success());
    cache.stale_with_flag("slow");
    let script = format!(
        "x=$(\"$CB\" run --ttl 1h -- sh -c '{}'); echo \"got $x\"",
        body.replace('\'', r"'\''")
    );
    let start = Instant::now();
    let captured = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("CACHEBACK_DIR", cache.dir())
        .env("W", cache.work())
        .env("CB", BIN)
        .stdin(Stdio::null())
        .bounded_output();
    let elapsed = start.elapsed();
    // Waiting on the refresher's stdout would take the gate's 30 s.
    assert!(
        elapsed < Duration::from_secs(10),
        "$(...) waited {elapsed:?} for the refresher"
    );
    assert!(stdout(&captured).starts_with("got "), "{captured:?}");
    cache.open_gate("go");
    assert!(
        cache.settled(Duration::from_secs(15)),
        "the refresh never ended"
    );
    assert_eq!(cache.count("count"), 2);
}

#[test]
fn refresher_is_detached_from_the_caller() {
    let cache = Cache::new();
    // The fixture records the refresher's pid, session, stdin and descriptors.
    let body = r#"echo run >> "$W/count"
if [ -e "$W/slow" ]; then
  p=$PPID
  cut -d' ' -f6 /proc/$p/stat > "$W/sid.tmp"; mv "$W/sid.tmp" "$W/sid"
  readlink /proc/$p/fd/0 > "$W/stdin"
  ls /proc/$p/fd > "$W/fds"
  echo $p > "$W/refresher"
  sleep 1
fi
echo ok"#;
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    cache.run(&args);
    cache.stale_with_flag("slow");
    // Hold an extra descriptor open across the call: the refresher must not inherit it.
    let caller = cache
        .cmd()
        .arg("run")
        .args(&args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let caller_pid = caller.id();
    let output = caller.bounded_wait_with_output();
    assert_eq!(stdout(&output), "ok\n");
    let refresher = read_pid(&cache, "refresher");
    let own_sid = fs::read_to_string(format!("/proc/{}/stat", std::process::id())).unwrap();
    let own_sid = own_sid
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .to_owned();
    let sid = fs::read_to_string(cache.work().join("sid")).unwrap();
    assert_eq!(
        sid.trim(),
        refresher.to_string(),
        "the refresher leads its own session"
    );
    assert_ne!(sid.trim(), own_sid);
    assert_ne!(refresher, caller_pid);
    assert_eq!(
        fs::read_to_string(cache.work().join("stdin"))
            .unwrap()
            .trim(),
        "/dev/null"
    );
    assert!(
        wait_until(Duration::from_secs(10), || !alive(refresher)),
        "refresher lingers (or is a zombie)"
    );
}

#[test]
fn max_age_turns_an_old_entry_into_a_miss() {
    let cache = Cache::new();
    let args = [&["--ttl", "1s", "--max-age", "1h", "--"][..], &sh(COUNTED)].concat();
    cache.run(&args);
    cache.backdate(3 * 3600);
    let output = cache.run(&args);
    assert_eq!(stdout(&output), "out\n");
    assert_eq!(
        cache.count("count"),
        2,
        "an expired entry is rerun in the foreground"
    );
}

#[test]
fn each_caller_judges_freshness_by_its_own_ttl() {
    let cache = Cache::new();
    let body = [&["--"][..], &sh(COUNTED)].concat();
    let with_ttl = |ttl: &'static str| [&["--ttl", ttl][..], &body].concat();
    cache.run(&with_ttl("1h"));
    cache.backdate(120);
    cache.run(&with_ttl("1h"));
    // A refresher, had one been started, is forked before its caller exits.
    assert!(cache.settled(Duration::from_secs(10)));
    assert_eq!(
        cache.count("count"),
        1,
        "two minutes old is fresh for a 1h TTL"
    );
    cache.run(&with_ttl("1m"));
    assert!(
        wait_until(Duration::from_secs(10), || cache.count("count") == 2),
        "stale for a 1m TTL"
    );
}

#[test]
fn age_counts_from_the_end_of_the_run() {
    let cache = Cache::new();
    // Counted from the start, the entry would be at least 3.5 s old, past its
    // TTL; counted from the end, the next call has 3 s to come.
    let args = [
        &["--ttl", "3s", "--"][..],
        &sh("echo run >> \"$W/count\"; sleep 3.5; echo done"),
    ]
    .concat();
    cache.run(&args);
    cache.run(&args);
    // A stale hit's refresher is forked before its caller exits: wait it out.
    assert!(cache.settled(Duration::from_secs(15)));
    assert_eq!(
        cache.count("count"),
        1,
        "the entry was fresh right after a 3.5 s run"
    );
}

#[test]
fn force_runs_now_even_when_fresh() {
    let cache = Cache::new();
    let args = [
        &["--ttl", "1h", "--"][..],
        &sh("echo run >> \"$W/count\"; wc -l < \"$W/count\""),
    ]
    .concat();
    cache.run(&args);
    let forced = cache.run(&[&["--force"][..], &args].concat());
    assert_eq!(stdout(&forced).trim(), "2");
    assert_eq!(
        stdout(&cache.run(&args)).trim(),
        "2",
        "the forced result was stored"
    );
}

#[test]
fn no_wait_prints_the_placeholder_and_fetches_in_the_background() {
    let cache = Cache::new();
    let body = format!("{}; echo real", gate("go"));
    let args = [
        &[
            "--ttl",
            "1h",
            "--no-wait",
            "--placeholder",
            "loading…",
            "--",
        ][..],
        &sh(&body),
    ]
    .concat();
    let start = Instant::now();
    let output = cache.run(&args);
    // The command holds until the gate opens (at most about 30 s).
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "--no-wait waited {:?}",
        start.elapsed()
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output), "loading…");
    cache.open_gate("go");
    assert!(wait_until(Duration::from_secs(15), || stdout(
        &cache.run(&args)
    ) == "real\n"));
}

#[test]
fn timeout_kills_the_whole_process_group_and_exits_124() {
    let cache = Cache::new();
    let body = "sleep 60 & echo $! > \"$W/grandchild\"; echo started; wait";
    let start = Instant::now();
    let output = cache.run(&[&["--ttl", "1h", "--timeout", "500ms", "--"][..], &sh(body)].concat());
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(output.status.code(), Some(124));
    assert_eq!(stdout(&output), "started\n");
    let grandchild = read_pid(&cache, "grandchild");
    assert!(
        wait_until(Duration::from_secs(5), || !alive(grandchild)),
        "grandchild survived the timeout"
    );
    assert!(
        cache.files(".entry").is_empty(),
        "a timed-out run is not stored"
    );
}

#[test]
fn background_refresh_has_a_default_time_limit() {
    let cache = Cache::new();
    let body = "echo run >> \"$W/count\"; if [ -e \"$W/hang\" ]; then sleep 60; fi; echo ok";
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    cache.run(&args);
    cache.stale_with_flag("hang");
    let stale = |cache: &Cache| {
        cache
            .cmd()
            .env("CACHEBACK_REFRESH_TIMEOUT", "1s")
            .arg("run")
            .args(&args)
            .bounded_output()
    };
    assert_eq!(stdout(&stale(&cache)), "ok\n");
    assert!(wait_until(Duration::from_secs(5), || cache.count("count") == 2));
    // The hung refresh is killed after 1 s and counts as a failure; the good entry stays.
    assert!(
        wait_until(Duration::from_secs(10), || !cache.files(".fail").is_empty()),
        "refresh was never given up"
    );
    assert_eq!(stdout(&stale(&cache)), "ok\n");
}

#[test]
fn failed_refresh_keeps_the_last_good_value_and_backs_off() {
    let cache = Cache::new();
    let body = "echo run >> \"$W/count\"; if [ -e \"$W/broken\" ]; then echo oops >&2; exit 9; fi; echo good";
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    cache.run(&args);
    cache.stale_with_flag("broken");
    let served = cache.run(&args);
    assert_eq!(stdout(&served), "good\n");
    assert!(wait_until(Duration::from_secs(10), || !cache
        .files(".fail")
        .is_empty()));
    for _ in 0..5 {
        let again = cache.run(&args);
        assert_eq!(stdout(&again), "good\n", "stale-if-error");
        assert_eq!(again.status.code(), Some(0));
    }
    // A retry's refresher would be forked before its caller exits: wait it out.
    assert!(cache.settled(Duration::from_secs(10)));
    assert_eq!(cache.count("count"), 2, "no retry while backing off");
}

#[test]
fn key_options_separate_entries_and_name_does_not() {
    let cache = Cache::new();
    let sub = cache.work().join("sub");
    fs::create_dir(&sub).unwrap();
    let in_dir = |dir: &std::path::Path, extra: &[&str]| {
        let args = [&["run", "--ttl", "1h"][..], extra, &["--", "pwd"]].concat();
        stdout(&cache.cmd().current_dir(dir).args(args).bounded_output())
    };
    assert_eq!(
        in_dir(&cache.work(), &["--cwd"]),
        format!("{}\n", cache.work().display())
    );
    assert_eq!(in_dir(&sub, &["--cwd"]), format!("{}\n", sub.display()));
    in_dir(&cache.work(), &[]);
    assert_eq!(
        in_dir(&sub, &[]),
        format!("{}\n", cache.work().display()),
        "without --cwd the entry is shared"
    );
    assert_eq!(
        in_dir(&sub, &["--scope", "other"]),
        format!("{}\n", sub.display())
    );
    let before = cache.files(".entry").len();
    in_dir(&sub, &["--name", "label"]);
    assert_eq!(
        cache.files(".entry").len(),
        before,
        "--name is not part of the key"
    );
}

#[test]
fn env_keys_are_hashed_and_never_stored_in_clear() {
    let cache = Cache::new();
    let secret = "hunter2-very-secret-value";
    let call = |value: &str| {
        let output = cache
            .cmd()
            .env("TOKEN", value)
            .args([
                "run",
                "--ttl",
                "1h",
                "--env",
                "TOKEN",
                "--",
                "sh",
                "-c",
                "echo \"$TOKEN\" | wc -c",
            ])
            .bounded_output();
        stdout(&output)
    };
    assert_eq!(call(secret).trim(), "26");
    assert_eq!(call("short").trim(), "6");
    assert_eq!(call(secret).trim(), "26");
    assert_eq!(cache.files(".entry").len(), 2);
    for path in fs::read_dir(cache.dir()).unwrap() {
        let bytes = fs::read(path.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "secret stored in clear"
        );
    }
}

#[test]
fn modtime_starts_a_new_entry_when_the_file_changes() {
    let cache = Cache::new();
    let file = cache.work().join("input");
    fs::write(&file, "one").unwrap();
    let args = ["--ttl", "1h", "--modtime", "input", "--", "cat", "input"];
    assert_eq!(stdout(&cache.run(&args)), "one");
    fs::write(&file, "two").unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert_eq!(stdout(&cache.run(&args)), "two");
}

#[test]
fn cache_files_are_private() {
    let cache = Cache::new();
    cache.run(&[&["--ttl", "1h", "--"][..], &sh(COUNTED)].concat());
    let mode = |path: &std::path::Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache.dir()), 0o700);
    for path in fs::read_dir(cache.dir()).unwrap() {
        let path = path.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[test]
fn binary_and_large_output_replays_byte_for_byte() {
    let cache = Cache::new();
    let mut payload: Vec<u8> = (0..=255u8).cycle().take(3 * 1024 * 1024 + 17).collect();
    payload.extend_from_slice(b"\xff\xfe\0no trailing newline");
    fs::write(cache.work().join("payload"), &payload).unwrap();
    let args = [
        "--ttl",
        "1h",
        "--",
        "sh",
        "-c",
        "cat payload; cat payload >&2",
    ];
    for _ in 0..2 {
        let output = cache.run(&args);
        assert!(
            output.stdout == payload,
            "stdout differs ({} bytes)",
            output.stdout.len()
        );
        assert!(
            output.stderr == payload,
            "stderr differs ({} bytes)",
            output.stderr.len()
        );
    }
    let empty = ["--ttl", "1h", "--", "true"];
    for _ in 0..2 {
        let output = cache.run(&empty);
        assert!(output.stdout.is_empty() && output.stderr.is_empty() && output.status.success());
    }
}

#[test]
fn outputs_around_the_head_sizes_replay_exactly() {
    // A hit writes what its first read (one page) brought from memory and
    // sends the rest with sendfile; a long command's details may not even
    // fit in that page.
    let cache = Cache::new();
    let payload: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(cache.work().join("payload"), &payload).unwrap();
    let long_arg = "x".repeat(6000);
    let sizes = [0, 1, 3900, 4096, 16_000, 16_384, 16_385, 20_000, 40_000];
    // Misses first; then the payload goes, so a rerun would print nothing.
    for call in ["miss", "hit"] {
        for size in sizes {
            for extra in ["short", long_arg.as_str()] {
                let script = format!("head -c {size} payload");
                let output = cache.run(&["--ttl", "1h", "--", "sh", "-c", &script, extra]);
                assert!(
                    output.status.success(),
                    "{size}/{call}: {}",
                    stderr(&output)
                );
                assert!(
                    output.stdout == payload[..size],
                    "{size} bytes, {}-byte argument, {call}: got {} bytes",
                    extra.len(),
                    output.stdout.len()
                );
            }
        }
        fs::remove_file(cache.work().join("payload")).ok();
    }
    assert_eq!(cache.files(".entry").len(), 18);
}

#[test]
fn closed_stdout_ends_quietly() {
    let cache = Cache::new();
    fs::write(cache.work().join("big"), "line\n".repeat(400_000)).unwrap();
    for round in ["miss", "hit"] {
        let output = std::process::Command::new("sh")
            .args([
                "-c",
                "\"$CB\" run --ttl 1h -- cat big | head -c 5; echo \" status=done\"",
            ])
            .env("CB", BIN)
            .env("CACHEBACK_DIR", cache.dir())
            .current_dir(cache.work())
            .bounded_output();
        assert_eq!(stdout(&output), "line\n status=done\n", "{round}");
        assert_eq!(stderr(&output), "", "{round}: nothing on stderr");
    }
    assert_eq!(
        cache.files(".entry").len(),
        1,
        "the miss still cached the whole output"
    );
    assert!(fs::metadata(cache.entry()).unwrap().len() > 2_000_000);
}

#[test]
fn exit_statuses_follow_env_and_timeout_conventions() {
    let cache = Cache::new();
    let missing = cache.run(&["--ttl", "1h", "--", "no-such-command-xyz"]);
    assert_eq!(missing.status.code(), Some(127));
    // One line, with the hint for a name that may be a shell alias.
    assert!(
        stderr(&missing).starts_with(
            "cacheback: no-such-command-xyz: command not found (if `no-such-command-xyz` is a \
             shell alias or function"
        ) && stderr(&missing).lines().count() == 1,
        "{}",
        stderr(&missing)
    );
    let script = cache.work().join("not-executable");
    fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let denied = cache.run(&["--ttl", "1h", "--", "./not-executable"]);
    assert_eq!(denied.status.code(), Some(126));
    assert!(
        stderr(&denied).starts_with("cacheback: ./not-executable: cannot execute"),
        "{}",
        stderr(&denied)
    );
    assert_eq!(
        cache.run(&["--ttl", "soon", "--", "true"]).status.code(),
        Some(2)
    );
    assert_eq!(
        cache.run(&["--", "true"]).status.code(),
        Some(2),
        "--ttl is required"
    );
    let gone = cache.work().join("gone");
    fs::create_dir(&gone).unwrap();
    let deleted_cwd = std::process::Command::new("sh")
        .args([
            "-c",
            "cd gone && rmdir ../gone && exec \"$CB\" run --ttl 1h --cwd -- true",
        ])
        .env("CB", BIN)
        .env("CACHEBACK_DIR", cache.dir())
        .current_dir(cache.work())
        .bounded_output();
    // The key cannot be derived, but the command works there: it runs uncached.
    assert_eq!(
        deleted_cwd.status.code(),
        Some(0),
        "{}",
        stderr(&deleted_cwd)
    );
    assert!(stderr(&deleted_cwd).starts_with("cacheback: cache unavailable, running uncached"));
    assert_eq!(stderr(&deleted_cwd).lines().count(), 1);
    let killed = cache.run(&["--ttl", "1h", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(killed.status.code(), Some(128 + 15));
}

#[test]
fn unusable_cache_dir_still_runs_the_command() {
    let cache = Cache::new();
    for dir in ["/dev/null/cache", "/proc/version/x"] {
        let output = cache
            .cmd()
            .env("CACHEBACK_DIR", dir)
            .args([
                "run",
                "--ttl",
                "1h",
                "--",
                "sh",
                "-c",
                "echo through; exit 4",
            ])
            .bounded_output();
        assert_eq!(stdout(&output), "through\n");
        assert_eq!(output.status.code(), Some(4));
        let warning = stderr(&output);
        assert_eq!(warning.lines().count(), 1, "{warning}");
        assert!(
            warning.starts_with("cacheback: cache unavailable"),
            "{warning}"
        );
    }
}

#[test]
fn corrupt_entries_are_misses_and_get_replaced() {
    let cache = Cache::new();
    let args = [&["--ttl", "1h", "--"][..], &sh(COUNTED)].concat();
    cache.run(&args);
    let entry = cache.entry();
    let whole = fs::read(&entry).unwrap();
    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated", whole[..whole.len() - 3].to_vec()),
        (
            "garbage",
            (0..200u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
        ("newer version", {
            let mut v = whole.clone();
            v[4] = 99;
            v
        }),
    ];
    for (round, (what, bytes)) in damages.into_iter().enumerate() {
        fs::write(&entry, bytes).unwrap();
        let output = cache.run(&args);
        assert_eq!(stdout(&output), "out\n", "{what}");
        assert_eq!(output.status.code(), Some(0), "{what}");
        let warnings = stderr(&output)
            .lines()
            .filter(|l| l.starts_with("cacheback:"))
            .count();
        assert_eq!(warnings, 1, "{what}: {}", stderr(&output));
        assert_eq!(cache.count("count"), round + 2, "{what}: ran again");
        let hit = cache.run(&args);
        assert_eq!(stderr(&hit), "err\n", "{what}: replaced by a good entry");
        assert_eq!(cache.count("count"), round + 2);
    }
}

#[test]
fn interrupt_is_forwarded_and_nothing_is_stored() {
    let cache = Cache::new();
    // A background job of a non-interactive shell ignores SIGINT: the trap
    // ends it, or it would keep the output pipe open for its 30 s.
    let body = "trap 'echo got-int >> \"$W/trapped\"; kill $!; exit 1' INT; echo $$ > \"$W/pid\"; sleep 30 & wait";
    let caller = cache
        .cmd()
        .args(["run", "--ttl", "1h", "--", "sh", "-c", body])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    read_pid(&cache, "pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(caller.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = finish_within(caller, Duration::from_secs(60), "the caller sent SIGINT").status;
    assert_eq!(status.code(), Some(130));
    assert!(
        wait_until(Duration::from_secs(5), || cache.count("trapped") == 1),
        "the command never saw SIGINT"
    );
    assert!(cache.files(".entry").is_empty());
}

#[test]
fn help_explains_the_three_cases() {
    let cache = Cache::new();
    let help = cache.cacheback(&["run", "--help"]);
    assert!(help.status.success());
    let text = stdout(&help);
    for needle in [
        "Fresh hit",
        "Stale hit",
        "Miss",
        "--ttl",
        "--no-wait",
        "Examples:",
    ] {
        assert!(text.contains(needle), "run --help lacks {needle:?}");
    }
    let version = cache.cacheback(&["--version"]);
    assert_eq!(
        stdout(&version),
        format!("cacheback {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn the_command_gets_default_sigpipe_handling() {
    // cacheback ignores SIGPIPE itself; the command must not inherit that, or
    // `yes | head` style pipelines inside it would never end.
    let cache = Cache::new();
    let output = cache.run(&[
        "--ttl",
        "1h",
        "--",
        "sh",
        "-c",
        "yes | head -n 2; grep SigIgn /proc/$$/status",
    ]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    let mask = text
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .unwrap()
        .trim();
    let mask = u64::from_str_radix(mask, 16).unwrap();
    assert_eq!(
        mask & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE ignored in the command: {text}"
    );
}

#[test]
fn durations_take_fractions_and_sums_and_what_show_prints() {
    let cache = Cache::new();
    let args = [
        "--ttl",
        "1.5h",
        "--name",
        "d",
        "--",
        "sh",
        "-c",
        "echo run >> \"$W/count\"; echo x",
    ];
    assert_eq!(stdout(&cache.run(&args)), "x\n");
    let shown = stdout(&cache.cacheback(&["show", "--name", "d"]));
    let ttl = shown
        .lines()
        .find_map(|line| line.strip_prefix("ttl:"))
        .map(str::trim)
        .expect("show prints the TTL");
    assert_eq!(ttl, "1h30m");
    // What `show` printed is a TTL `run` accepts, and the entry is fresh under it.
    let again = [
        "--ttl",
        ttl,
        "--name",
        "d",
        "--",
        "sh",
        "-c",
        "echo run >> \"$W/count\"; echo x",
    ];
    let output = cache.run(&again);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(cache.count("count"), 1);
    let bad = cache.run(&["--ttl", "1h30", "--", "true"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("1h30m"), "{}", stderr(&bad));
}

#[test]
fn common_command_line_mistakes_get_a_message_that_says_what_to_do() {
    let cache = Cache::new();
    let cases: [(&[&str], &str); 4] = [
        (&["run", "--ttl", "-5", "--", "date"], "cannot be negative"),
        (
            &["run", "date", "--ttl", "5m"],
            "options go before the command: `--ttl 5m` was taken as an argument of `date --ttl 5m`; write `cacheback run --ttl 5m -- date`",
        ),
        (
            &["run", "--placeholder", "x", "--ttl", "5m", "--", "date"],
            "--placeholder only applies with --no-wait",
        ),
        (
            &["warm", "date", "--ttl", "5m"],
            "write `cacheback warm --ttl 5m -- date`",
        ),
    ];
    for (args, expected) in cases {
        let output = cache.cacheback(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let dir = cache.run(&["--ttl", "1m", "--", "/tmp"]);
    assert_eq!(dir.status.code(), Some(126));
    assert!(
        stderr(&dir).contains("/tmp: cannot execute: it is a directory"),
        "{}",
        stderr(&dir)
    );
    // Anything else is still clap's to word.
    assert!(stderr(&cache.cacheback(&["run", "--bogus"])).contains("unexpected argument"));
}
