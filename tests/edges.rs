//! Promises at the edges: closed standard descriptors, write errors, clocks
//! stepped back, subcommands racing each other, resource limits. Each test
//! reproduces a defect an outside tester found.

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cacheback::store::entry::FINISHED_OFFSET;

use crate::harness::*;

/// Runs `cmd` with descriptor `fd` closed in the child, as cron and some
/// status bars start programs.
fn with_closed(mut cmd: Command, fd: i32) -> Output {
    // SAFETY: close(2) is async-signal-safe; it runs in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::close(fd);
            Ok(())
        });
    }
    cmd.bounded_output()
}

/// Makes `cmd` start with at most `count` open descriptors (`ulimit -n`).
fn limit_descriptors(cmd: &mut Command, count: libc::rlim_t) {
    // SAFETY: setrlimit is async-signal-safe; it runs in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: count,
                rlim_max: count,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            Ok(())
        });
    }
}

/// Moves every entry's finish time `secs` into the future (a clock stepped back).
fn postdate(cache: &Cache, suffix: &str, secs: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for path in cache.files(suffix) {
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&(now + secs * 1000).to_le_bytes(), FINISHED_OFFSET)
            .unwrap();
    }
}

/// The stdout a stored entry replays, read through a plain hit.
fn served(cache: &Cache, args: &[&str]) -> String {
    stdout(&cache.run(args))
}

/// Waits until no process has this cache's lock taken (all refreshes done),
/// asking `stats`, which takes no lock itself.
fn settle(cache: &Cache) {
    assert!(
        wait_until(Duration::from_secs(30), || {
            !stdout(&cache.cacheback(&["stats", "--json"])).contains("\"state\": \"refreshing\"")
        }),
        "refreshes never settled: {}",
        stdout(&cache.cacheback(&["stats"]))
    );
}

#[test]
fn closed_standard_descriptors_never_break_single_flight_or_entries() {
    let body = "echo run >> \"$W/count\"; sleep 1; echo value";
    for fd in 0..3 {
        let cache = Cache::new();
        let args = [&["--ttl", "1h", "--no-wait", "--"][..], &sh(body)].concat();
        // Five background runs started at once with the descriptor closed: one runs.
        for _ in 0..5 {
            let mut cmd = cache.cmd();
            cmd.arg("run").args(&args);
            let output = with_closed(cmd, fd);
            assert_eq!(output.status.code(), Some(0), "fd {fd}: {output:?}");
        }
        assert!(wait_until(Duration::from_secs(15), || cache.count("count") >= 1));
        settle(&cache);
        assert_eq!(
            cache.count("count"),
            1,
            "fd {fd} closed: single flight broke"
        );
        let plain = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
        assert_eq!(served(&cache, &plain), "value\n", "fd {fd}");

        // warm keeps a good entry and stores its new one.
        let keep = [
            "--ttl",
            "1h",
            "--name",
            "keep",
            "--",
            "sh",
            "-c",
            "echo kept",
        ];
        assert_eq!(served(&cache, &keep), "kept\n");
        let mut cmd = cache.cmd();
        cmd.arg("warm").args(keep);
        assert!(with_closed(cmd, fd).status.success(), "fd {fd}");
        settle(&cache);
        assert_eq!(
            served(&cache, &keep),
            "kept\n",
            "fd {fd}: warm lost the entry"
        );

        // A foreground miss stores exactly the command's output, and the lock
        // file never receives it.
        let miss = ["--ttl", "1h", "--", "sh", "-c", "echo out; echo err >&2"];
        let mut cmd = cache.cmd();
        cmd.arg("run").args(miss);
        let output = with_closed(cmd, fd);
        assert_eq!(output.status.code(), Some(0), "fd {fd}: {output:?}");
        let hit = cache.run(&miss);
        assert_eq!(stdout(&hit), "out\n", "fd {fd}");
        assert_eq!(stderr(&hit), "err\n", "fd {fd}");
        for lock in cache.files(".lock") {
            let bytes = fs::read(&lock).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains("out\n"),
                "fd {fd}: output went into {lock:?}"
            );
        }
        // Every management command copes too.
        for sub in [&["stats"][..], &["gc"], &["show", "--name", "keep"]] {
            let mut cmd = cache.cmd();
            cmd.args(sub);
            let output = with_closed(cmd, fd);
            assert!(output.status.success(), "fd {fd} {sub:?}: {output:?}");
        }
        let mut cmd = cache.cmd();
        cmd.args(["invalidate", "--refresh", "--name", "keep"]);
        assert!(with_closed(cmd, fd).status.success(), "fd {fd}");
        settle(&cache);
        assert_eq!(served(&cache, &keep), "kept\n", "fd {fd}");
    }
}

#[test]
fn stdout_and_stderr_both_closed_store_a_whole_entry() {
    let cache = Cache::new();
    let args = ["--ttl", "1h", "--", "sh", "-c", "echo out; echo err >&2"];
    let mut cmd = cache.cmd();
    cmd.arg("run").args(args);
    // SAFETY: close(2) in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(1);
            libc::close(2);
            Ok(())
        });
    }
    assert!(cmd.bounded_output().status.success());
    let hit = cache.run(&args);
    assert_eq!(stdout(&hit), "out\n");
    assert_eq!(stderr(&hit), "err\n");
}

#[test]
fn stdout_write_errors_fail_with_one_line_and_the_miss_is_still_stored() {
    let cache = Cache::new();
    let args = [
        "--ttl",
        "1h",
        "--",
        "sh",
        "-c",
        "echo run >> \"$W/count\"; echo hello",
    ];
    let full = || fs::File::create("/dev/full").unwrap();
    for round in ["miss", "hit"] {
        let output = cache
            .cmd()
            .arg("run")
            .args(args)
            .stdout(full())
            .bounded_output();
        assert_eq!(output.status.code(), Some(125), "{round}: {output:?}");
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "{round}: {err}");
        assert!(
            err.starts_with("cacheback: writing to stdout: "),
            "{round}: {err}"
        );
    }
    assert_eq!(served(&cache, &args), "hello\n");
    assert_eq!(cache.count("count"), 1, "the miss stored what it captured");
    // A placeholder that cannot be written is a failure too.
    let output = cache
        .cmd()
        .args([
            "run",
            "--ttl",
            "1h",
            "--no-wait",
            "--placeholder",
            "…",
            "--",
            "true",
        ])
        .stdout(full())
        .bounded_output();
    assert_eq!(output.status.code(), Some(125), "{output:?}");
}

#[test]
fn a_non_blocking_stdout_with_a_slow_reader_gets_every_byte() {
    let cache = Cache::new();
    let size = 300_000;
    let args = [
        "--ttl".to_owned(),
        "1h".to_owned(),
        "--".to_owned(),
        "head".to_owned(),
        "-c".to_owned(),
        size.to_string(),
        "/dev/urandom".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let expected = cache.run(&args).stdout;
    assert_eq!(expected.len(), size);
    for round in ["hit", "miss"] {
        if round == "miss" {
            // --force runs it again, forwarding as it goes.
            let _ = fs::remove_file(cache.work().join("unused"));
        }
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills two descriptors we then own.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: setting O_NONBLOCK on our own descriptor.
        unsafe {
            let flags = libc::fcntl(write_end.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(
                write_end.as_raw_fd(),
                libc::F_SETFL,
                flags | libc::O_NONBLOCK,
            );
        }
        let mut cmd = cache.cmd();
        cmd.arg("run");
        if round == "miss" {
            cmd.arg("--force");
        }
        let mut child = cmd
            .args(&args)
            .stdout(Stdio::from(write_end))
            .spawn()
            .unwrap();
        drop(cmd); // it holds a copy of the write end

        // The read end is non-blocking too, so that a caller that never
        // closes its stdout fails the test at the deadline instead of
        // holding this read for ever.
        // SAFETY: setting O_NONBLOCK on our own descriptor.
        unsafe {
            let flags = libc::fcntl(read_end.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(
                read_end.as_raw_fd(),
                libc::F_SETFL,
                flags | libc::O_NONBLOCK,
            );
        }
        let mut reader = fs::File::from(read_end);
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            std::thread::sleep(Duration::from_millis(2));
            match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        panic!(
                            "{round}: stdout still open after 60 s, {} bytes read",
                            got.len()
                        );
                    }
                }
                Err(err) => panic!("{err}"),
            }
        }
        let status = finish_within(child, Duration::from_secs(60), round).status;
        assert!(status.success(), "{round}");
        assert_eq!(got.len(), size, "{round}: bytes lost");
        if round == "hit" {
            assert_eq!(got, expected);
        }
    }
}

#[test]
fn invalidate_refresh_during_a_refresh_never_removes_the_entry() {
    let cache = Cache::new();
    let body = "n=$(( $(cat \"$W/n\" 2>/dev/null || echo 0) + 1 )); echo $n > \"$W/n\"; \
                echo run >> \"$W/count\"; [ -e \"$W/slow\" ] && sleep 2; echo \"v$n\"";
    let args = [&["--ttl", "1h", "--name", "e", "--"][..], &sh(body)].concat();
    assert_eq!(served(&cache, &args), "v1\n");
    cache.stale_with_flag("slow");
    // The stale hit starts the older refresh (v2, two seconds).
    assert_eq!(served(&cache, &args), "v1\n");
    assert!(wait_until(Duration::from_secs(10), || cache.count("count") == 2));
    let invalidated = cache.cacheback(&["invalidate", "--refresh", "--name", "e"]);
    assert!(invalidated.status.success(), "{invalidated:?}");
    assert!(
        stdout(&invalidated).contains("will run again"),
        "{}",
        stdout(&invalidated)
    );
    // Until everything settles, every caller is served at once from the
    // entry. Bounded: under a bug the rerun never comes (or never ends), and
    // the loop must fail, saying so, rather than spin.
    let entry = cache.entry();
    let deadline = Instant::now() + Duration::from_secs(60);
    while cache.count("count") < 3
        || stdout(&cache.cacheback(&["stats", "--json"])).contains("\"state\": \"refreshing\"")
    {
        assert!(
            Instant::now() < deadline,
            "after 60 s the refreshes had not settled with three runs: {} runs, {}",
            cache.count("count"),
            stdout(&cache.cacheback(&["stats"]))
        );
        assert!(entry.exists(), "the entry disappeared");
        let start = Instant::now();
        let output = cache.run(&args);
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "a caller waited {:?} while a refresh ran",
            start.elapsed()
        );
        assert!(stdout(&output).starts_with('v'), "{output:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    settle(&cache);
    // The older refresh's result was marked stale, so the refresher ran again.
    assert_eq!(cache.count("count"), 3);
    fs::remove_file(cache.work().join("slow")).unwrap();
    assert_eq!(served(&cache, &args), "v3\n");
    assert_eq!(cache.count("count"), 3, "the rerun's value is fresh");
}

#[test]
fn an_entry_from_the_future_is_stale_and_a_failure_from_the_future_does_not_block() {
    let cache = Cache::new();
    let args = [
        &["--ttl", "1h", "--"][..],
        &sh("echo run >> \"$W/count\"; [ -e \"$W/fail\" ] && exit 3; echo ok"),
    ]
    .concat();
    assert_eq!(served(&cache, &args), "ok\n");
    postdate(&cache, ".entry", 3600);
    assert_eq!(
        served(&cache, &args),
        "ok\n",
        "the old value is served at once"
    );
    assert!(
        wait_until(Duration::from_secs(10), || cache.count("count") == 2),
        "an entry from the future was treated as fresh"
    );
    settle(&cache);
    // A failed refresh, its record then moved into the future.
    fs::write(cache.work().join("fail"), "").unwrap();
    cache.backdate(7200);
    cache.run(&args);
    assert!(wait_until(Duration::from_secs(10), || cache.count("count") == 3));
    settle(&cache);
    assert_eq!(cache.files(".fail").len(), 1);
    postdate(&cache, ".fail", 30 * 24 * 3600);
    fs::remove_file(cache.work().join("fail")).unwrap();
    cache.run(&args);
    assert!(
        wait_until(Duration::from_secs(10), || cache.count("count") == 4),
        "a failure from the future blocked refreshes beyond the back-off cap"
    );
}

#[test]
fn max_age_treats_an_entry_from_the_future_as_too_old() {
    let cache = Cache::new();
    let args = [&["--ttl", "1h", "--max-age", "2h", "--"][..], &sh(COUNT_OK)].concat();
    cache.run(&args);
    postdate(&cache, ".entry", 3600);
    cache.run(&args);
    assert_eq!(
        cache.count("count"),
        2,
        "its age is unknown: rerun in the foreground"
    );
}

const COUNT_OK: &str = "echo run >> \"$W/count\"; echo ok";

#[test]
fn a_stored_failure_never_reaches_callers_without_cache_failures() {
    let cache = Cache::new();
    let body = "echo ran ${X:-0}; exit ${X:-0}";
    let plain = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    let flagged = [&["--ttl", "1h", "--cache-failures", "--"][..], &sh(body)].concat();
    assert_eq!(served(&cache, &plain), "ran 0\n");
    let failed = cache
        .cmd()
        .arg("run")
        .args(&flagged)
        .env("X", "14")
        .bounded_output();
    assert_eq!(failed.status.code(), Some(14));
    let forced = [
        &["--ttl", "1h", "--force", "--cache-failures", "--"][..],
        &sh(body),
    ]
    .concat();
    let output = cache
        .cmd()
        .arg("run")
        .args(&forced)
        .env("X", "14")
        .bounded_output();
    assert_eq!(output.status.code(), Some(14));
    let hit = cache.run(&plain);
    assert_eq!(stdout(&hit), "ran 0\n");
    assert_eq!(hit.status.code(), Some(0));
    // The flagged entry replays its failure to the callers that asked for it.
    let replay = cache.run(&flagged);
    assert_eq!(stdout(&replay), "ran 14\n");
    assert_eq!(replay.status.code(), Some(14));
    // invalidate --refresh rebuilds the flagged entry under its own key.
    let out = cache.cacheback(&["invalidate", "--all", "--refresh"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!stdout(&out).contains("differ"), "{}", stdout(&out));
}

#[test]
fn background_runs_that_cannot_start_or_time_out_are_recorded_and_backed_off() {
    let cache = Cache::new();
    let output = cache.run(&[
        "--ttl",
        "1h",
        "--no-wait",
        "--name",
        "gone",
        "--",
        "nosuch-command-xyz",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let shown = |name: &str| stdout(&cache.cacheback(&["stats", "--json", name]));
    assert!(
        wait_until(Duration::from_secs(10), || shown("gone")
            .contains("\"exit_code\": 127")),
        "no failure recorded: {}",
        shown("gone")
    );
    // A cached script that was deleted: stale hits must not start a doomed
    // run each; the first failure is recorded and backs the others off.
    let script = cache.work().join("job.sh");
    fs::write(&script, "#!/bin/sh\necho v\n").unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let args = [
        "--ttl",
        "1h",
        "--name",
        "job",
        "--",
        script.to_str().unwrap(),
    ];
    assert_eq!(served(&cache, &args), "v\n");
    fs::remove_file(&script).unwrap();
    cache.backdate(7200);
    for _ in 0..5 {
        assert_eq!(served(&cache, &args), "v\n", "the good value is kept");
        settle(&cache);
    }
    let json = shown("job");
    assert!(json.contains("\"exit_code\": 127"), "{json}");
    assert!(
        json.contains("\"failures\": 1,"),
        "backed off after one failure: {json}"
    );
    // A background run killed at its time limit.
    let slow = [
        "--ttl",
        "1h",
        "--timeout",
        "1s",
        "--name",
        "slow",
        "--no-wait",
        "--",
        "sleep",
        "30",
    ];
    assert!(cache.run(&slow).status.success());
    assert!(
        wait_until(Duration::from_secs(20), || shown("slow").contains("124")),
        "timeout not recorded: {}",
        shown("slow")
    );
}

#[test]
fn invalidate_all_refresh_runs_a_bounded_number_at_once_without_a_descriptor_each() {
    let cache = Cache::new();
    let body = "mkdir \"$W/slot-$$\"; ls -d \"$W\"/slot-* | wc -l >> \"$W/widths\"; \
                sleep 0.2; rmdir \"$W/slot-$$\"; echo run >> \"$W/count\"; echo ok";
    let entries = 24;
    for i in 0..entries {
        let name = format!("e{i}");
        let script = format!("{body} {i}");
        let args = [&["--ttl", "1h", "--name", &name, "--"][..], &sh(&script)].concat();
        assert_eq!(served(&cache, &args), format!("ok {i}\n"));
    }
    fs::remove_file(cache.work().join("widths")).unwrap();
    let mut cmd = cache.cmd();
    cmd.args(["invalidate", "--all", "--refresh", "--jobs", "3"]);
    limit_descriptors(&mut cmd, 20);
    let output = cmd.bounded_output();
    assert!(output.status.success(), "{output:?}");
    let report = stdout(&output);
    assert_eq!(report.matches("marked").count(), entries, "{report}");
    assert!(report.contains("3 at a time"), "{report}");
    assert!(
        wait_until(Duration::from_secs(60), || cache.count("count")
            == 2 * entries),
        "refreshed {} of {entries}",
        cache.count("count") - entries
    );
    settle(&cache);
    let widths = fs::read_to_string(cache.work().join("widths")).unwrap();
    let widest = widths
        .lines()
        .map(|l| l.trim().parse::<usize>().unwrap())
        .max()
        .unwrap();
    assert!(widest <= 3, "{widest} refreshes ran at once");
    // And the bound is used, not only kept: a batch that waited for every
    // running refresh before starting the next would run them one at a time
    // after the first three. Each run sleeps 0.2 s, so with 3 slots nearly
    // every start finds another still running; 6 of 24 is a loose floor.
    let beside_another = widths.lines().filter(|l| l.trim() != "1").count();
    assert!(
        beside_another >= 6,
        "only {beside_another} of {entries} refreshes started while another ran: {widths:?}"
    );
    assert_eq!(cache.files(".entry").len(), entries);
}

#[test]
fn stats_never_makes_a_writer_back_off() {
    let cache = Cache::new();
    cache.run(&["--ttl", "1h", "--", "true"]);
    let lock_path = cache.files(".lock").pop().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lock = fs::File::open(&lock_path).unwrap();
    let flag = done.clone();
    // The writer's side: try the exclusive lock as a refresh would, again and again.
    let writer = std::thread::spawn(move || {
        let mut refused = 0;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            // SAFETY: flock on our own descriptor.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_UN) };
            } else {
                refused += 1;
            }
        }
        refused
    });
    for _ in 0..60 {
        cache.cacheback(&["stats"]);
        cache.cacheback(&["show", "--", "true"]);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(writer.join().unwrap(), 0, "a reader took the lock");
}

#[test]
fn when_the_cache_cannot_work_the_command_still_runs() {
    // So few descriptors that a cached run cannot open its files (5), or
    // opens them but cannot then start the command (6, 7). musl's std needs
    // one descriptor more to start a command (a pipe that reports a failed
    // exec), so the uncached run itself needs 6 there.
    let fewest = if cfg!(target_env = "musl") { 6 } else { 5 };
    for limit in fewest..=7 {
        let cache = Cache::new();
        let mut cmd = cache.cmd();
        cmd.args(["run", "--ttl", "1h", "--", "echo", "still"]);
        limit_descriptors(&mut cmd, limit);
        let output = cmd.bounded_output();
        assert_eq!(
            stdout(&output),
            "still\n",
            "{limit} descriptors: {output:?}"
        );
        assert_eq!(output.status.code(), Some(0), "{limit} descriptors");
    }
    let cache = Cache::new();
    // --no-wait with a cache directory that may not be used.
    fs::create_dir_all(cache.dir()).unwrap();
    fs::set_permissions(
        cache.dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let output = cache.run(&["--ttl", "1h", "--no-wait", "--", "echo", "ran"]);
    assert_eq!(stdout(&output), "ran\n", "{output:?}");
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
}

#[test]
fn a_run_does_not_wait_for_background_processes_holding_only_stderr() {
    let cache = Cache::new();
    let start = Instant::now();
    let output = cache.run(&[
        "--ttl",
        "1h",
        "--",
        "sh",
        "-c",
        "echo hi; sleep 6 >/dev/null &",
    ]);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "waited {:?} for a stderr holder",
        start.elapsed()
    );
    assert_eq!(stdout(&output), "hi\n");
    assert_eq!(
        served(
            &cache,
            &[
                "--ttl",
                "1h",
                "--",
                "sh",
                "-c",
                "echo hi; sleep 6 >/dev/null &"
            ]
        ),
        "hi\n"
    );
    // A command that exits at once but leaves an escaped process holding
    // stdout: the time limit ends the run then, not after the kill's grace.
    let start = Instant::now();
    let output = cache.run(&[
        "--ttl",
        "1h",
        "--timeout",
        "1s",
        "--",
        "sh",
        "-c",
        "echo hi; setsid sleep 20 &",
    ]);
    assert_eq!(output.status.code(), Some(124));
    assert!(
        start.elapsed() < Duration::from_millis(3500),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn env_values_are_stored_only_as_a_keyed_hash() {
    use sha2::Digest;
    let cache = Cache::new();
    let args = [
        "--ttl",
        "1h",
        "--env",
        "PIN",
        "--",
        "sh",
        "-c",
        "echo run >> \"$W/count\"; echo ok",
    ];
    let run = || {
        cache
            .cmd()
            .arg("run")
            .args(args)
            .env("PIN", "1234")
            .bounded_output()
    };
    assert_eq!(stdout(&run()), "ok\n");
    assert_eq!(stdout(&run()), "ok\n");
    assert_eq!(cache.count("count"), 1, "the key is stable");
    let plain: [u8; 32] = sha2::Sha256::digest(b"1234").into();
    let entry = fs::read(cache.entry()).unwrap();
    assert!(
        !entry.windows(32).any(|w| w == plain),
        "the plain SHA-256 of the value is stored"
    );
    let secret = cache.dir().join(".secret");
    let meta = fs::metadata(&secret).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    assert_eq!(meta.len(), 32);
    // Another value is another entry; the table shows both apart.
    let other = cache
        .cmd()
        .arg("run")
        .args(args)
        .env("PIN", "9999")
        .bounded_output();
    assert_eq!(stdout(&other), "ok\n");
    assert_eq!(cache.count("count"), 2);
}
