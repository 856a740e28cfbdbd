//! The first five minutes (issue 22), through the built binary: a hint for
//! every common slip, hard expiry without a warning, the stale marker's
//! refresh hook, and help that fits a screen.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{BIN, Bounded, BoundedChild, Cache, skipped, stderr, stdout, wait_until};

/// Runs `cmd` to completion within a generous deadline, killing it (and
/// failing the test) past it: some of these slips used to hang for ever.
#[track_caller]
fn within_deadline(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.bounded_wait_with_output()
}

/// `cacheback ARGS` in the cache's world, with its exit status and stderr checked.
#[track_caller]
fn expect(cache: &Cache, args: &[&str], status: i32, says: &str) -> String {
    let mut cmd = cache.cmd();
    cmd.args(args);
    let out = within_deadline(cmd);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(status), "{args:?}: {err}");
    assert!(
        err.contains(says),
        "{args:?} should say {says:?}; said: {err}"
    );
    err
}

#[test]
fn an_option_after_a_failed_command_gets_the_options_go_first_hint() {
    let cache = Cache::new();
    let err = expect(
        &cache,
        &["run", "--ttl", "5m", "--", "date", "--name", "foo"],
        1,
        "`--name foo` came after the command, so `date` got it; if it was meant for \
         cacheback, options go before the command: `cacheback run --ttl 5m --name foo -- date`",
    );
    // The command's own error comes first, the hint after it, on one line.
    assert!(err.starts_with("date: "), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("cacheback:")).count(),
        1
    );
    // A switch, and without `--`.
    expect(
        &cache,
        &["run", "--ttl", "5m", "ls", "/nonexistent-dir", "--no-wait"],
        2,
        "`cacheback run --ttl 5m --no-wait -- ls /nonexistent-dir`",
    );
    // A command that succeeds with such an argument is none of our business,
    // and a failing one without one gets no hint.
    let ok = cache.run(&["--ttl", "5m", "--", "echo", "--name", "x"]);
    assert_eq!(stdout(&ok), "--name x\n");
    assert_eq!(stderr(&ok), "");
    let failed = cache.run(&["--ttl", "5m", "--", "sh", "-c", "exit 3"]);
    assert_eq!(failed.status.code(), Some(3));
    assert_eq!(stderr(&failed), "");
    // A replayed failure (--cache-failures) is not rerun: no hint either.
    let args = [
        "--ttl",
        "5m",
        "--cache-failures",
        "--",
        "ls",
        "/nope",
        "--cwd",
    ];
    let first = cache.run(&args);
    assert!(stderr(&first).contains("came after the command"));
    let replayed = cache.run(&args);
    assert_eq!(replayed.status, first.status);
    assert!(!stderr(&replayed).contains("came after"), "{replayed:?}");
}

#[test]
fn a_forgotten_run_is_named() {
    let cache = Cache::new();
    let err = expect(
        &cache,
        &["--ttl", "5m", "--", "date"],
        2,
        "`--ttl` is an option of `cacheback run`, which is missing: write \
         `cacheback run --ttl 5m -- date`",
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    expect(
        &cache,
        &["--cache-dir", "/tmp/x", "--no-wait", "--", "date"],
        2,
        "write `cacheback --cache-dir /tmp/x run --no-wait -- date`",
    );
}

#[test]
fn a_duration_in_two_words_is_named() {
    let cache = Cache::new();
    let err = expect(
        &cache,
        &["run", "--ttl", "5", "minutes", "--", "date"],
        127,
        "minutes: command not found (a duration is one word: write `--ttl 5m` or \
         `--ttl 5minutes`; `minutes` was taken as the command)",
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    expect(
        &cache,
        &["run", "--ttl", "1m", "--timeout", "500", "ms", "--", "date"],
        127,
        "(a duration is one word: write `--timeout 500ms`; `ms` was taken as the command)",
    );
}

#[test]
fn long_unit_names_are_durations() {
    let cache = Cache::new();
    for (ttl, secs) in [
        ("5min", 300),
        ("1hour", 3600),
        ("2days", 172_800),
        ("90sec", 90),
        ("3weeks", 1_814_400),
        ("2 hours", 7200),
    ] {
        let out = cache.run(&["--ttl", ttl, "--name", ttl, "--", "echo", ttl]);
        assert!(out.status.success(), "--ttl {ttl}: {}", stderr(&out));
        let stats = cache.cacheback(&["stats", "--json", ttl]);
        let json: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
        assert_eq!(json["entries"][0]["ttl_secs"], secs, "--ttl {ttl}");
    }
    expect(
        &cache,
        &["run", "--ttl", "5fortnights", "--", "date"],
        2,
        "invalid duration unit 'fortnights'",
    );
}

#[test]
fn a_builtin_or_an_alias_as_the_command_is_named() {
    let cache = Cache::new();
    let err = expect(
        &cache,
        &["run", "--ttl", "1m", "--", "cd", "/tmp"],
        127,
        "cd: command not found (`cd` is a shell builtin, not a program, and cacheback runs \
         programs without a shell: run it through one, as in `-- sh -c 'cd /tmp'`)",
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    expect(
        &cache,
        &["run", "--ttl", "1m", "--", "ll"],
        127,
        "if `ll` is a shell alias or function: cacheback runs programs without a shell, so \
         write out what it stands for, through a shell if need be, as in `-- sh -c 'll'`",
    );
    // A path that does not exist is neither.
    let err = expect(&cache, &["run", "--ttl", "1m", "--", "./nope"], 127, "");
    assert_eq!(err, "cacheback: ./nope: command not found\n");
}

/// Runs `cacheback ARGS` as `nobody`, in `cache`'s world.
fn as_nobody(cache: &Cache, args: &[&str]) -> Output {
    let mut cmd = cache.cmd();
    cmd.args(args).uid(65534).gid(65534);
    within_deadline(cmd)
}

#[test]
fn an_unwritable_cache_directory_names_the_fix_and_stats_tells_the_truth() {
    if !nix::unistd::geteuid().is_root() {
        skipped("unwritable cache directory: needs root, to run cacheback as nobody");
        return;
    }
    let cache = Cache::new();
    // The world is root's and readable by all; nobody cannot create the cache in it.
    let root = cache.dir().parent().unwrap().to_owned();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    let out = as_nobody(&cache, &["run", "--ttl", "1m", "--", "echo", "hi"]);
    assert_eq!(stdout(&out), "hi\n", "the command still runs");
    assert!(
        stderr(&out).contains("Permission denied")
            && stderr(&out)
                .contains("; set CACHEBACK_DIR (or pass --cache-dir) to a directory you can write"),
        "{}",
        stderr(&out)
    );
    let stats = as_nobody(&cache, &["stats"]);
    let text = stdout(&stats);
    assert!(
        text.contains("does not exist, and cannot be created: ")
            && text.contains("is not writable (Permission denied")
            && text.contains("set CACHEBACK_DIR (or pass --cache-dir)")
            && !text.contains("first `run` creates it"),
        "{text}"
    );
    let json = as_nobody(&cache, &["stats", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        json["dir_problem"]
            .as_str()
            .unwrap()
            .contains("cannot be created"),
        "{json}"
    );

    // Nobody's own directory, but not writable: runs cannot store anything.
    fs::create_dir(cache.dir()).unwrap();
    nix::unistd::chown(
        &cache.dir(),
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .unwrap();
    fs::set_permissions(cache.dir(), fs::Permissions::from_mode(0o500)).unwrap();
    let out = as_nobody(&cache, &["run", "--ttl", "1m", "--", "echo", "hi"]);
    assert_eq!(stdout(&out), "hi\n");
    assert!(
        stderr(&out).contains("set CACHEBACK_DIR (or pass --cache-dir)"),
        "{}",
        stderr(&out)
    );
    let text = stdout(&as_nobody(&cache, &["stats"]));
    assert!(
        text.contains("not writable (Permission denied") && text.contains("set CACHEBACK_DIR"),
        "{text}"
    );
    // Root may write anywhere: the same directory is no problem for it.
    let text = stdout(&cache.cacheback(&["stats"]));
    assert!(!text.contains("not writable"), "{text}");
}

#[test]
fn a_missing_modtime_or_hash_file_is_named_once_on_a_miss() {
    let cache = Cache::new();
    for flag in ["--modtime", "--hash"] {
        let args = ["--ttl", "1h", flag, "nope.txt", "--", "echo", flag];
        let miss = cache.run(&args);
        assert_eq!(stdout(&miss), format!("{flag}\n"));
        assert_eq!(
            stderr(&miss),
            format!(
                "cacheback: {flag} nope.txt: no such file; the key takes it as missing, so the \
                 entry will not follow changes to it (check the path)\n"
            )
        );
        let hit = cache.run(&args);
        assert_eq!(stdout(&hit), format!("{flag}\n"));
        assert_eq!(stderr(&hit), "", "a hit stays quiet");
    }
    // A file that exists gets no word.
    fs::write(cache.work().join("there"), "x").unwrap();
    let out = cache.run(&["--ttl", "1h", "--hash", "there", "--", "echo", "ok"]);
    assert_eq!(stderr(&out), "");
    // A path that cannot be looked up says why, not "no such file": here a
    // regular file used as a directory, the slip of a wrong path prefix.
    let out = cache.run(&["--ttl", "1h", "--modtime", "there/x", "--", "echo", "ok"]);
    assert!(
        stderr(&out).starts_with("cacheback: --modtime there/x: Not a directory (os error 20);"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn hash_refuses_what_is_not_a_regular_file_at_once() {
    let cache = Cache::new();
    let fifo = cache.work().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for (path, kind) in [
        ("/dev/zero", "a character device"),
        ("fifo", "a FIFO"),
        (".", "a directory"),
    ] {
        let err = expect(
            &cache,
            &["run", "--ttl", "1m", "--hash", path, "--", "echo", "hi"],
            2,
            &format!("cacheback: --hash {path}: not a regular file ({kind})"),
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(cache.files(".entry").is_empty());
}

#[test]
fn show_of_an_unknown_name_points_at_stats() {
    let cache = Cache::new();
    cache.run(&["--ttl", "1h", "--name", "known", "--", "echo", "hi"]);
    expect(
        &cache,
        &["show", "--name", "nope"],
        1,
        "cacheback: no entry named 'nope'; `cacheback stats` lists the cached entries with \
         their names",
    );
}

#[test]
fn a_near_miss_of_an_option_or_subcommand_gets_the_nearest() {
    let cache = Cache::new();
    for (args, says) in [
        (
            &["run", "--TTL", "5m", "--", "date"][..],
            "unknown option '--TTL' for `cacheback run`: did you mean --ttl?",
        ),
        (
            &["run", "-t", "5m", "--", "date"],
            "unknown option '-t' for `cacheback run`: did you mean --ttl?",
        ),
        (
            &["run", "--ttl", "5m", "--max_age", "1h", "--", "date"],
            "did you mean --max-age?",
        ),
        (
            &["stat"],
            "unknown subcommand 'stat': did you mean `cacheback stats`?",
        ),
        (
            &["list"],
            "unknown subcommand 'list': did you mean `cacheback stats`?",
        ),
        (
            &["clear"],
            "unknown subcommand 'clear': did you mean `cacheback invalidate --all`?",
        ),
    ] {
        let err = expect(&cache, args, 2, says);
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn max_age_equal_to_ttl_is_a_silent_hard_expiry() {
    let cache = Cache::new();
    let args = [
        "--ttl",
        "1m",
        "--max-age",
        "1m",
        "--",
        "sh",
        "-c",
        "echo run >> $W/runs; echo v",
    ];
    let miss = cache.run(&args);
    assert_eq!(
        (stdout(&miss).as_str(), stderr(&miss).as_str()),
        ("v\n", "")
    );
    cache.backdate(120);
    // Past it: not served stale, run in the foreground, and still no word.
    let expired = cache.run(&args);
    assert_eq!(
        (stdout(&expired).as_str(), stderr(&expired).as_str()),
        ("v\n", "")
    );
    assert_eq!(cache.count("runs"), 2, "the expired entry was not rerun");
    // Shorter than the TTL is the slip that still warns.
    let short = cache.run(&["--ttl", "1m", "--max-age", "30s", "--", "echo", "x"]);
    assert!(
        stderr(&short).contains("--max-age (30s) is shorter than --ttl (1m)"),
        "{}",
        stderr(&short)
    );
}

#[test]
fn a_refresh_that_takes_the_stale_marker_away_wakes_the_bar() {
    let cache = Cache::new();
    let args = [
        "--ttl",
        "1m",
        "--stale-marker",
        " (old)",
        "--on-refresh",
        "echo woke >> $W/hook",
        "--",
        "echo",
        "136",
    ];
    assert_eq!(stdout(&cache.run(&args)), "136\n");
    cache.backdate(3600);
    assert_eq!(stdout(&cache.run(&args)), "136 (old)\n");
    assert!(
        wait_until(Duration::from_secs(20), || cache.count("hook") == 1),
        "the same value, without the marker it showed, ran no hook"
    );
    assert_eq!(stdout(&cache.run(&args)), "136\n");

    // Without a marker the bar showed no change: no hook.
    let quiet = Cache::new();
    let args = [&args[..2], &args[4..]].concat();
    assert!(!args.contains(&"--stale-marker"), "{args:?}");
    quiet.run(&args);
    quiet.backdate(3600);
    assert_eq!(stdout(&quiet.run(&args)), "136\n");
    assert!(quiet.settled(Duration::from_secs(20)));
    assert_eq!(quiet.count("hook"), 0, "an unchanged value ran the hook");
}

/// `cacheback ARGS` rendered for a terminal of `columns` columns.
fn help(args: &[&str], columns: usize) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env("COLUMNS", columns.to_string())
        .bounded_output();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// The lines of the `Examples:` block.
fn examples(text: &str) -> Vec<&str> {
    text.lines()
        .skip_while(|line| *line != "Examples:")
        .skip(1)
        .take_while(|line| line.is_empty() || line.starts_with(' '))
        .collect()
}

#[test]
fn run_short_help_fits_a_screen_with_one_line_per_option() {
    let short = help(&["run", "-h"], 100);
    let lines: Vec<&str> = short.lines().collect();
    assert!(
        lines.len() <= 60,
        "`run -h` is {} lines at 100 columns:\n{short}",
        lines.len()
    );
    let options: Vec<&str> = lines
        .iter()
        .copied()
        .skip_while(|line| *line != "Options:")
        .skip(1)
        .take_while(|line| !line.is_empty())
        .collect();
    assert!(options.len() >= 18, "{short}");
    for line in &options {
        assert!(
            line.trim_start().starts_with('-'),
            "an option's help wraps onto a second line: {line:?}\n{short}"
        );
    }
    assert!(!short.contains("--store"), "fleet options in -h:\n{short}");

    let long = help(&["run", "--help"], 100);
    let fleet: Vec<&str> = long
        .lines()
        .skip_while(|line| *line != "Fleet store:")
        .skip(1)
        .take_while(|line| line.is_empty() || line.starts_with(' '))
        .collect();
    for option in [
        "--store <URL>",
        "--store-timeout",
        "--store-ca-file",
        "--store-max-value",
        "--store-prefix",
    ] {
        assert!(
            fleet.iter().any(|line| line.contains(option)),
            "{option} is not under the Fleet store heading of --help:\n{long}"
        );
    }
    assert!(long.contains("hard expiry"), "{long}");
}

#[test]
fn help_examples_never_wrap_inside_a_command() {
    for args in [&["run", "-h"][..], &["run", "--help"], &["-h"], &["--help"]] {
        for columns in [80, 100, 120] {
            let text = help(args, columns);
            let block = examples(&text);
            assert!(!block.is_empty(), "{args:?} has no examples:\n{text}");
            let mut continued = false;
            for line in block {
                let body = line.trim_start();
                if !(body.is_empty() || body.starts_with('#')) {
                    assert!(
                        continued || body.starts_with("cacheback "),
                        "{args:?} at {columns} columns wraps an example: {line:?}\n{text}"
                    );
                }
                continued = body.ends_with('\\');
            }
        }
    }
    // The examples that wrapped once paste whole.
    let long = help(&["run", "--help"], 80);
    assert!(long.contains("--on-refresh 'pkill -RTMIN+8 i3blocks' -- ./battery-status"));
    assert!(long.contains("-- git status --short --branch"));
}

#[test]
fn skips_reach_the_terminal_past_the_capture() {
    // The test binary itself, asked to run one test that skips (a program
    // that does not exist), with its output captured as cargo captures it.
    let this = std::env::current_exe().unwrap();
    let out = Command::new(this)
        .args([
            "--exact",
            "hints::skipping_test_for_the_check_above",
            "--include-ignored",
        ])
        .env_remove("CACHEBACK_TESTS_NEED_ALL")
        .bounded_output();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "SKIPPED skipping_test_for_the_check_above: `no-such-program-cacheback` is not \
             installed"
        ),
        "the skip did not get past the capture: stdout {} stderr {}",
        stdout(&out),
        stderr(&out)
    );
}

/// Run only by [`skips_reach_the_terminal_past_the_capture`].
#[test]
#[ignore = "run by skips_reach_the_terminal_past_the_capture"]
fn skipping_test_for_the_check_above() {
    assert!(!crate::harness::installed(
        "no-such-program-cacheback",
        "skipping_test_for_the_check_above"
    ));
}
