//! `gc` next to live writers, and the events log: planted FIFOs, the bound on
//! its size, and the lock file's totals next to the fields that follow them.

use std::fs;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use cacheback::store::events::{FOLD_AT, TOTALS_LEN};
use serde_json::Value;

use crate::harness::{Cache, sh, stderr, stdout, wait_until};

const DAY: u64 = 86400;

/// Generous: a hang is what these tests look for, not speed.
const HANG: Duration = Duration::from_secs(10);

/// The temp files in the cache directory.
fn temps(cache: &Cache) -> Vec<PathBuf> {
    cache
        .files("")
        .into_iter()
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with(".tmp-"))
        })
        .collect()
}

/// The single entry's key, as its files name it.
fn key_of_entry(cache: &Cache) -> String {
    cache
        .entry()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".entry")
        .to_owned()
}

/// Makes a file look `secs` older without writing to it.
fn age_mtime(path: &Path, secs: u64) {
    let file = fs::File::options().append(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(secs))
        .unwrap();
}

/// Starts a `cacheback run` whose output nobody reads (a pipe nobody drains
/// would stop a multi-megabyte writer).
fn spawn_quiet(cache: &Cache, args: &[&str]) -> Child {
    cache
        .cmd()
        .arg("run")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `cmd` to completion, or kills it and fails the test when it has not
/// finished within [`HANG`].
#[track_caller]
fn finish_within(mut cmd: Command, what: &str) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(HANG) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            // SAFETY: plain kill(2) of the child we started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{what} hung (killed after {HANG:?})");
        }
    }
}

/// True while some process holds the flock on `path`.
fn lock_held(path: &Path) -> bool {
    let Ok(file) = fs::File::open(path) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own; a shared lock we get goes with it.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
}

fn json_stats(cache: &Cache) -> Value {
    let output = cache.cacheback(&["stats", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn gc_max_size_neither_counts_nor_removes_a_live_writers_temp_file() {
    let cache = Cache::new();
    for i in 0..10 {
        let out = cache.run(&["--ttl", "1h", "--", "echo", &format!("small {i}")]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let small = cache.files(".entry");
    assert_eq!(small.len(), 10);
    // A few MB of output, then silence until the test says go: to gc its temp
    // file looks like a killed writer's, save that it is still open.
    let body = "echo run >> \"$W/ran\"; head -c 3000000 /dev/zero; \
                while [ ! -e \"$W/go\" ] && [ -d \"$W\" ]; do sleep 0.05; done";
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    let mut writer = spawn_quiet(&cache, &args);
    assert!(
        wait_until(Duration::from_secs(20), || temps(&cache).iter().any(
            |temp| fs::metadata(temp).is_ok_and(|meta| meta.len() >= 2_000_000)
        )),
        "the writer's temp file never grew"
    );
    let temp = temps(&cache).pop().unwrap();

    // Larger than the ten small entries, smaller than the temp file.
    let out = cache.cacheback(&["gc", "--max-size", "1M"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains("least recently read"), "{text}");
    assert_eq!(cache.files(".entry"), small, "{text}");
    assert!(temp.exists(), "{text}");

    // Silent for two days, as far as its mtime tells: still open, so kept.
    age_mtime(&temp, 2 * DAY);
    let out = cache.cacheback(&["gc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("temp file"), "{}", stdout(&out));
    assert!(temp.exists(), "a live writer's temp file was removed");

    fs::write(cache.work().join("go"), "").unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || writer
            .try_wait()
            .unwrap()
            .is_some()),
        "the writer never finished"
    );
    let status = writer.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut writer.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success() && err.is_empty(), "{status}: {err}");
    assert_eq!(cache.files(".entry").len(), 11);
    assert!(temps(&cache).is_empty());
    let hit = cache.run(&args);
    assert!(hit.status.success(), "{}", stderr(&hit));
    assert_eq!(hit.stdout.len(), 3_000_000);
    assert!(hit.stdout.iter().all(|&b| b == 0));
    assert_eq!(cache.count("ran"), 1, "the big entry was not served");
}

#[test]
fn gc_still_removes_the_temp_file_of_a_killed_writer() {
    let cache = Cache::new();
    let body =
        "head -c 1000000 /dev/zero; while [ ! -e \"$W/go\" ] && [ -d \"$W\" ]; do sleep 0.05; done";
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    let mut writer = spawn_quiet(&cache, &args);
    assert!(
        wait_until(Duration::from_secs(20), || temps(&cache).iter().any(
            |temp| fs::metadata(temp).is_ok_and(|meta| meta.len() >= 500_000)
        )),
        "the writer's temp file never grew"
    );
    writer.kill().unwrap();
    writer.wait().unwrap();
    // The command outlives cacheback's kill -9; let it end.
    fs::write(cache.work().join("go"), "").unwrap();
    let temp = temps(&cache).pop().unwrap();

    // Young, it might be a live writer's on a filesystem that cannot tell.
    let out = cache.cacheback(&["gc"]);
    assert!(temp.exists(), "{}", stdout(&out));
    age_mtime(&temp, 2 * DAY);
    let out = cache.cacheback(&["gc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("removed 1 temp file left by killed writers"),
        "{}",
        stdout(&out)
    );
    assert!(!temp.exists());
}

#[test]
fn fifos_at_the_events_logs_hang_no_hit_stats_or_refresh() {
    let cache = Cache::new();
    let body = "echo run >> \"$W/ran\"; echo out";
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    cache.run(&args);
    let key = key_of_entry(&cache);
    let file = |suffix: &str| cache.dir().join(format!("{key}{suffix}"));
    for suffix in [".events", ".events.old"] {
        nix::unistd::mkfifo(
            &file(suffix),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
    }
    let run = || {
        let mut cmd = cache.cmd();
        cmd.arg("run").args(&args);
        cmd
    };

    let hit = finish_within(run(), "a hit");
    assert_eq!(stdout(&hit), "out\n", "{}", stderr(&hit));
    assert!(hit.status.success() && hit.stderr.is_empty(), "{hit:?}");

    let mut stats = cache.cmd();
    stats.args(["stats", "--json"]);
    let out = finish_within(stats, "stats");
    assert!(out.status.success(), "{}", stderr(&out));

    cache.backdate(7200);
    let stale = finish_within(run(), "a stale hit");
    assert_eq!(stdout(&stale), "out\n", "{}", stderr(&stale));
    assert!(
        wait_until(HANG, || cache.count("ran") == 2),
        "the refresh never ran"
    );
    // The refresher folds the logs after storing its result, then lets go of the lock.
    assert!(
        wait_until(HANG, || !lock_held(&file(".lock"))),
        "the refresher hung"
    );
    let hit = finish_within(run(), "a hit after the refresh");
    assert_eq!(stdout(&hit), "out\n", "{}", stderr(&hit));
    let mut stats = cache.cmd();
    stats.args(["stats", "--json"]);
    let out = finish_within(stats, "stats after the refresh");
    assert!(out.status.success(), "{}", stderr(&out));
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        stats["entries"][0]["fresh_hits"].as_u64() >= Some(1),
        "{stats}"
    );
}

#[test]
fn hits_fold_a_full_events_log_and_every_hit_stays_counted() {
    let cache = Cache::new();
    let body = "echo run >> \"$W/ran\"; echo out";
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    cache.run(&args);
    let key = key_of_entry(&cache);
    let file = |suffix: &str| cache.dir().join(format!("{key}{suffix}"));
    // Whatever follows the totals in the lock file (the stale generation) is
    // another field's: present here, kept byte for byte by every fold.
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file(".lock"))
        .unwrap();
    if lock.metadata().unwrap().len() == TOTALS_LEN as u64 {
        lock.write_all_at(&[0u8; 8], TOTALS_LEN as u64).unwrap();
    }
    let after_totals = || fs::read(file(".lock")).unwrap()[TOTALS_LEN..].to_vec();
    let trailer = after_totals();

    let logged = 70 * 1024;
    assert!(logged >= FOLD_AT as usize);
    let mut hits = 0;
    for round in 1..=3 {
        // 70k hits' worth of log, as if they had happened.
        fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(file(".events"))
            .unwrap()
            .write_all(&vec![b'h'; logged])
            .unwrap();
        hits += logged;
        for _ in 0..2 {
            let hit = cache.run(&args);
            assert_eq!(stdout(&hit), "out\n", "{}", stderr(&hit));
            hits += 1;
        }
        let log = fs::metadata(file(".events")).map_or(0, |meta| meta.len());
        assert!(log < 1024, "round {round}: the log is {log} bytes");
        let stats = json_stats(&cache);
        let entry = &stats["entries"][0];
        assert_eq!(
            entry["fresh_hits"].as_u64(),
            Some(hits as u64),
            "round {round}: {entry}"
        );
        assert_eq!(entry["misses"].as_u64(), Some(1), "round {round}: {entry}");
        assert_eq!(after_totals(), trailer, "round {round}");
    }
    assert_eq!(cache.count("ran"), 1);
}
