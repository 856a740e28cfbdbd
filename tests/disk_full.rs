//! A cache directory on a filesystem that fills up: a 2 MiB tmpfs the test
//! mounts (as root; it skips, saying so, where mounting is not allowed).
//! A refresh that runs out of space must leave the old value served, no
//! temp file behind, and at most a small, readable failure record: never
//! the partial output, which would keep the filesystem full and fail every
//! other entry's miss.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{BIN, Bounded, Cache, sh, stderr, stdout, wait_until};

/// A tmpfs of `size` mounted on `dir`, unmounted when dropped.
struct Tmpfs<'d> {
    dir: &'d Path,
}

impl<'d> Tmpfs<'d> {
    fn mount(dir: &'d Path, size: &str, test: &str) -> Option<Tmpfs<'d>> {
        fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .is_ok_and(|out| out.status.success());
        if !mounted {
            let message = format!("{test}: skipped: cannot mount a tmpfs here (needs root)");
            assert!(
                std::env::var_os("CACHEBACK_TESTS_NEED_ALL").is_none(),
                "{message}"
            );
            eprintln!("{message}");
            return None;
        }
        Some(Tmpfs { dir })
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir).status();
    }
}

/// Whether a temp file (a result being written, or spilled stderr) is in the
/// cache directory.
fn has_temp_file(cache: &Cache) -> bool {
    cache.files("").iter().any(|path| {
        path.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".tmp")
    })
}

#[test]
fn a_refresh_that_fills_the_disk_keeps_the_old_value_and_frees_the_space() {
    let cache = Cache::new();
    let dir = cache.dir();
    let Some(_tmpfs) = Tmpfs::mount(&dir, "2m", "disk_full::a_refresh_that_fills") else {
        return;
    };
    // 1.2 MB the first time; 1.5 MB and a failure (exit 1) once `$W/big`
    // exists, which no longer fits beside the first value.
    let body = r#"if [ -e "$W/big" ]; then n=1500000; else n=1200000; fi
        echo run >> "$W/runs"; head -c $n /dev/zero | tr '\0' v; echo "done $n" >&2
        [ $n = 1200000 ]"#;
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    let first = cache.run(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(first.stdout.len(), 1_200_000);
    cache.stale_with_flag("big");
    // The stale hit serves the old value and refreshes in the background,
    // where the disk fills.
    let stale = cache.run(&args);
    assert_eq!(stale.stdout.len(), 1_200_000, "{}", stderr(&stale));
    assert!(
        wait_until(Duration::from_secs(20), || cache.count("runs") == 2),
        "the refresh never ran"
    );
    assert!(
        wait_until(Duration::from_secs(20), || !has_temp_file(&cache)),
        "a temp file stays behind: {:?}",
        cache.files("")
    );
    assert!(
        cache.settled(Duration::from_secs(20)),
        "the refresher lingers"
    );
    // The old value is still served, whole. (The refresh that ran out of
    // space is a failed run, so this stale hit, inside its back-off, starts
    // none: see the test below.)
    fs::remove_file(cache.work().join("big")).unwrap();
    let again = cache.run(&args);
    assert_eq!(again.stdout.len(), 1_200_000);
    assert!(again.stdout.iter().all(|&b| b == b'v'));
    assert!(
        cache.settled(Duration::from_secs(20)),
        "the second refresher lingers"
    );
    // The failure record is small: the status and the end of stderr, no stdout.
    assert_eq!(
        cache.files(".fail").len(),
        1,
        "the failed refresh is recorded"
    );
    for record in cache.files(".fail") {
        let len = fs::metadata(&record).unwrap().len();
        assert!(len < 70_000, "{} is {len} bytes", record.display());
    }
    // `show` reads the entry and its failure without calling it corrupt.
    let show = cache
        .cmd()
        .args([&["show", "--"][..], &sh(body)].concat())
        .bounded_output();
    let shown = format!("{}{}", stdout(&show), stderr(&show));
    assert!(show.status.success(), "{shown}");
    assert!(
        !shown.contains("corrupt") && !shown.contains("do not match"),
        "{shown}"
    );
    // The space is free again: another entry's miss is stored.
    let other = cache.run(&["--ttl", "1h", "--", "sh", "-c", "head -c 300000 /dev/zero"]);
    assert!(other.status.success(), "{}", stderr(&other));
    assert_eq!(
        stderr(&other),
        "",
        "the other entry was stored without a warning"
    );
    let _ = BIN;
}

#[test]
fn a_refresh_whose_output_does_not_fit_backs_off_like_a_failed_run() {
    let cache = Cache::new();
    let dir = cache.dir();
    let Some(_tmpfs) = Tmpfs::mount(&dir, "2m", "disk_full::a_refresh_whose_output") else {
        return;
    };
    // 1.2 MB the first time; once `$W/big` exists, 1.5 MB and success:
    // the command is fine, only this host's disk is not.
    let body = r#"if [ -e "$W/big" ]; then n=1500000; else n=1200000; fi
        echo run >> "$W/runs"; head -c $n /dev/zero | tr '\0' v"#;
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    let first = cache.run(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    cache.stale_with_flag("big");
    let stale = cache.run(&args);
    assert_eq!(stale.stdout.len(), 1_200_000, "{}", stderr(&stale));
    assert!(
        cache.settled(Duration::from_secs(30)),
        "the refresher lingers"
    );
    assert_eq!(cache.count("runs"), 2, "the refresh did not run");
    // Stale still (the refresh stored nothing): the next calls serve the old
    // value and, inside the back-off, start no refresh that would fill the
    // disk again.
    cache.backdate(7200);
    for _ in 0..3 {
        let again = cache.run(&args);
        assert_eq!(again.stdout.len(), 1_200_000, "{}", stderr(&again));
        assert!(
            cache.settled(Duration::from_secs(30)),
            "a refresher lingers"
        );
    }
    assert_eq!(
        cache.count("runs"),
        2,
        "a stale hit inside the back-off ran the command again"
    );
    // `show` says what went wrong, in a record that is small and readable.
    let show = cache
        .cmd()
        .args([&["show", "--"][..], &sh(body)].concat())
        .bounded_output();
    let shown = format!("{}{}", stdout(&show), stderr(&show));
    assert!(show.status.success(), "{shown}");
    // Counted as one failure in a row, as any first failure (the record's
    // count made `0 * 1` for `0 + 1` survived the refresher group).
    assert!(
        shown.contains("could not store the result")
            && shown.contains("No space left")
            && shown.contains(", 1 in a row"),
        "{shown}"
    );
    for record in cache.files(".fail") {
        let len = fs::metadata(&record).unwrap().len();
        assert!(len < 70_000, "{} is {len} bytes", record.display());
    }
    assert!(
        !has_temp_file(&cache),
        "a temp file stays behind: {:?}",
        cache.files("")
    );
}

/// A foreground run that fails while its output fills the disk is a failed
/// run of the command, nothing more: the caller gets all of its output and
/// its status without a word about the cache, and the failure is recorded
/// (a failure record keeps no stdout, so it fits), so `show` names it.
/// (`produce::execute` taking the full disk for the failure, its `ours`
/// guard's `&&` made `||`, survived the refresher group.)
#[test]
fn a_failing_foreground_run_that_fills_the_disk_is_recorded_as_its_own_failure() {
    let cache = Cache::new();
    let dir = cache.dir();
    let Some(_tmpfs) = Tmpfs::mount(&dir, "2m", "disk_full::a_failing_foreground_run") else {
        return;
    };
    let body = r#"head -c 3000000 /dev/zero | tr '\0' v; echo "gave up" >&2; exit 3"#;
    let args = [&["--ttl", "1h", "--name", "big", "--"][..], &sh(body)].concat();
    let out = cache.run(&args);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(out.stdout.len(), 3_000_000, "all of its output");
    assert_eq!(
        stderr(&out),
        "gave up\n",
        "its stderr, and nothing about the cache"
    );
    let shown = cache.cacheback(&["show", "--name", "big"]);
    assert!(
        stdout(&shown).contains("last failure") && stdout(&shown).contains("exit 3"),
        "the failure is recorded: {}",
        stdout(&shown)
    );
    assert!(!has_temp_file(&cache), "{:?}", cache.files(""));
}

/// A host whose disk is too full to store its refresh keeps that failure to
/// itself: it backs off locally, but the fleet store gets no failure record,
/// so the other hosts, whose disks are fine, do not back off for it.
/// (`produce::execute` telling its caller the result was stored, `unstored`
/// without its `!`, survived the refresher group.)
#[test]
fn a_refresh_that_cannot_store_its_result_tells_the_fleet_nothing() {
    let test = "disk_full::a_refresh_that_cannot_store_its_result_tells_the_fleet";
    let Some(redis) = crate::redis_harness::RedisServer::start(&[], test) else {
        return;
    };
    let cache = Cache::new();
    let dir = cache.dir();
    let Some(_tmpfs) = Tmpfs::mount(&dir, "2m", test) else {
        return;
    };
    let body = r#"if [ -e "$W/big" ]; then n=1500000; else n=1200000; fi
        echo run >> "$W/runs"; head -c $n /dev/zero | tr '\0' v"#;
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    let run = || {
        cache
            .cmd()
            .env("CACHEBACK_STORE", redis.url())
            .arg("run")
            .args(&args)
            .bounded_output()
    };
    let first = run();
    assert_eq!(first.stdout.len(), 1_200_000, "{}", stderr(&first));
    assert!(
        wait_until(Duration::from_secs(20), || !redis
            .scan_keys("cacheback:*:meta")
            .is_empty()),
        "the first value never reached the fleet"
    );
    // Stale everywhere: here, and in the fleet.
    cache.stale_with_flag("big");
    for key in redis.scan_keys("cacheback:*:meta") {
        redis.cli(&["HSET", &key, "finished_ms", "1"]);
    }
    let stale = run();
    assert_eq!(stale.stdout.len(), 1_200_000, "{}", stderr(&stale));
    assert!(
        wait_until(Duration::from_secs(20), || cache.count("runs") == 2),
        "the refresh never ran"
    );
    assert!(
        cache.settled(Duration::from_secs(20)),
        "the refresher lingers"
    );
    assert!(
        stdout(&cache.cacheback(&["show", "--", "sh", "-c", body]))
            .contains("could not store the result"),
        "the failure is recorded here"
    );
    assert_eq!(
        redis.scan_keys("cacheback:*:fail"),
        Vec::<String>::new(),
        "the fleet was told of this host's full disk"
    );
}
