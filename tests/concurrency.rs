//! Many real callers at once, and refreshers killed mid-run.

use std::fs;
use std::process::Child;
use std::time::Duration;

use crate::harness::*;

/// A process's group id, from `/proc` (`None` once it is gone).
fn process_group(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state, parent, group.
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

fn spawn_callers(cache: &Cache, n: usize, args: &[&str]) -> Vec<Child> {
    (0..n).map(|_| cache.spawn_run(args)).collect()
}

#[test]
fn fifty_callers_on_a_miss_run_the_command_once() {
    let cache = Cache::new();
    let args = [
        &["--ttl", "1h", "--"][..],
        &sh("echo run >> \"$W/count\"; sleep 1; echo value"),
    ]
    .concat();
    let callers = spawn_callers(&cache, 50, &args);
    for caller in callers {
        let output = caller.bounded_wait_with_output();
        assert_eq!(stdout(&output), "value\n");
        assert!(output.status.success());
    }
    assert_eq!(cache.count("count"), 1);
}

#[test]
fn fifty_callers_on_a_failing_miss_share_the_failure_and_later_callers_retry() {
    let cache = Cache::new();
    let body = "echo run >> \"$W/count\"; sleep 1; echo partial; echo broken >&2; exit 3";
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    let callers = spawn_callers(&cache, 50, &args);
    // The caller that ran it saw its output as it came; the others get what
    // a failure record keeps: the status and the end of stderr, never the
    // stdout of a failed run (which may be partial).
    let mut partial = 0;
    for caller in callers {
        let output = caller.bounded_wait_with_output();
        assert_eq!(output.status.code(), Some(3));
        match stdout(&output).as_str() {
            "partial\n" => partial += 1,
            "" => {}
            other => panic!("a caller printed {other:?}"),
        }
        assert_eq!(stderr(&output), "broken\n");
    }
    assert_eq!(partial, 1, "only the caller that ran it printed its stdout");
    assert_eq!(
        cache.count("count"),
        1,
        "waiters reuse the run they waited for"
    );
    let later = cache.run(&args);
    assert_eq!(later.status.code(), Some(3));
    assert_eq!(cache.count("count"), 2, "failures are not cached");
}

#[test]
fn fifty_callers_on_a_stale_entry_start_one_refresh() {
    let cache = Cache::new();
    let body = "echo run >> \"$W/count\"; if [ -e \"$W/slow\" ]; then sleep 2; fi; echo \"v$(wc -l < \"$W/count\")\"";
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    cache.run(&args);
    cache.stale_with_flag("slow");
    let callers = spawn_callers(&cache, 50, &args);
    for caller in callers {
        let output = caller.bounded_wait_with_output();
        assert!(output.status.success());
        let value = stdout(&output);
        assert!(value == "v1\n" || value == "v2\n", "{value:?}");
    }
    assert!(wait_until(Duration::from_secs(15), || stdout(
        &cache.run(&args)
    ) == "v2\n"));
    // Any second refresher was forked before its caller exited: wait them all out.
    assert!(cache.settled(Duration::from_secs(15)), "processes linger");
    assert_eq!(
        cache.count("count"),
        2,
        "exactly one refresh for fifty stale callers"
    );
}

#[test]
fn killed_refresher_releases_its_lock() {
    let cache = Cache::new();
    let body = "echo run >> \"$W/count\"; if [ -e \"$W/slow\" ]; then echo $$ > \"$W/group\"; echo $PPID > \"$W/refresher\"; sleep 30; fi; echo ok";
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    cache.run(&args);
    cache.stale_with_flag("slow");
    let before = fs::read(cache.entry()).unwrap();
    assert_eq!(stdout(&cache.run(&args)), "ok\n");
    let refresher = read_pid(&cache, "refresher");
    let group = read_pid(&cache, "group");
    // While it runs, more stale callers start nothing. A refresher they started
    // would exist once they have exited (it is forked first), in a session and
    // group of its own: so every process left must be the refresher or its command.
    cache.run(&args);
    let processes = cache.processes();
    assert!(processes.contains(&refresher), "{processes:?}");
    let strays: Vec<u32> = processes
        .into_iter()
        .filter(|&pid| pid != refresher && process_group(pid).is_some_and(|g| g != group))
        .collect();
    assert!(strays.is_empty(), "a second refresh started: {strays:?}");
    assert_eq!(cache.count("count"), 2);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(refresher as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(5), || !alive(refresher)));
    assert_eq!(
        fs::read(cache.entry()).unwrap(),
        before,
        "the entry is untouched"
    );
    fs::remove_file(cache.work().join("slow")).unwrap();
    assert_eq!(stdout(&cache.run(&args)), "ok\n");
    assert!(
        wait_until(Duration::from_secs(10), || cache.count("count") == 3),
        "the lock was not released"
    );
    // The killed refresher's command lives on in its own group; end it.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(group as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}
