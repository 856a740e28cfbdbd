//! Many real callers at once, and refreshers killed mid-run.

use std::fs;
use std::process::Child;
use std::time::Duration;

use crate::harness::*;

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
        let output = caller.wait_with_output().unwrap();
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
    for caller in callers {
        let output = caller.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(stdout(&output), "partial\n");
        assert_eq!(stderr(&output), "broken\n");
    }
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
        let output = caller.wait_with_output().unwrap();
        assert!(output.status.success());
        let value = stdout(&output);
        assert!(value == "v1\n" || value == "v2\n", "{value:?}");
    }
    assert!(wait_until(Duration::from_secs(15), || stdout(
        &cache.run(&args)
    ) == "v2\n"));
    std::thread::sleep(Duration::from_millis(500));
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
    // While it runs, more stale callers start nothing.
    cache.run(&args);
    std::thread::sleep(Duration::from_millis(300));
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
    let group = read_pid(&cache, "group") as i32;
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(group),
        nix::sys::signal::Signal::SIGKILL,
    );
}
