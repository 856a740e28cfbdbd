//! Faults, hostile input and load, with real processes.
//!
//! Each scenario runs scaled down here, in CI. The `soak_*` tests are the same
//! scenarios at full size; they are `#[ignore]`d and run by `faults/run.sh`,
//! which sizes them through `CACHEBACK_SOAK_*` variables. Every scenario prints
//! one `FAULT-RESULT` line (fault, tries, what was lost) that the script
//! collects into its table.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cacheback::store::entry::{FAILED_SINCE_OFFSET, FORMAT_VERSION, Preamble};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::*;

/// uid and gid of `nobody`, the "other user" for ownership checks (we run as root).
const NOBODY: u32 = 65534;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One line the fault script turns into a row of its results table.
fn report(fault: &str, tries: u64, lost: u64, note: &str) {
    println!("FAULT-RESULT\t{fault}\t{tries}\t{lost}\t{note}");
}

fn sigkill(pid: u32) {
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// Processes whose environment carries this test's `$W`: every cacheback it
/// started, every refresher and every command they ran.
fn leftovers(cache: &Cache) -> Vec<u32> {
    cache.processes()
}

/// Waits for every process of this test to end; returns how many were still there.
fn settle(cache: &Cache, limit: Duration) -> usize {
    wait_until(limit, || leftovers(cache).is_empty());
    let left = leftovers(cache);
    for &pid in &left {
        sigkill(pid);
    }
    left.len()
}

/// The stdout stored in an entry file, if the file is a whole, valid entry.
fn stored_stdout(path: &Path) -> Option<Vec<u8>> {
    let bytes = fs::read(path).ok()?;
    let preamble = Preamble::decode(&bytes, bytes.len() as u64).ok()?;
    let start = preamble.stdout_start() as usize;
    Some(bytes[start..start + preamble.stdout_len as usize].to_vec())
}

fn lock_held(cache: &Cache) -> bool {
    cache
        .files(".lock")
        .iter()
        .any(|path| cacheback::store::lock::is_held(path))
}

fn warnings(text: &str) -> usize {
    text.lines()
        .filter(|line| line.starts_with("cacheback:"))
        .count()
}

// ---------------------------------------------------------------- crashes

/// Generation N of a large output: `yes` lines naming N, cut at a fixed size.
/// It pauses halfway, at a line boundary, so that a kill often lands while the
/// refresher holds a half-written temp file (without the pause the whole
/// write took a few milliseconds and most kills came after it).
const LARGE: &str = "g=$(cat \"$W/gen\"); echo $PPID > \"$W/refresher.tmp\"; mv \"$W/refresher.tmp\" \"$W/refresher\"; \
line=\"generation $g ................................................\"; \
half=$(( 4000000 / (${#line} + 1) * (${#line} + 1) )); \
yes \"$line\" | head -c $half; sleep 0.02; yes \"$line\" | head -c $((8000000 - half))";

fn whole_generation(stdout: &[u8], newest: u64) -> Option<u64> {
    if stdout.len() != 8_000_000 {
        return None;
    }
    let first = stdout.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(first).ok()?;
    let generation: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    let line = [first, b"\n"].concat();
    let whole = stdout
        .chunks(line.len())
        .all(|chunk| chunk == &line[..chunk.len()]);
    (whole && generation <= newest).then_some(generation)
}

fn refresher_kill_loop(kills: u64) {
    let cache = Cache::new();
    let mut rng = Rng::seeded("CACHEBACK_FAULT_SEED", "refresher kills");
    fs::write(cache.work().join("gen"), "0\n").unwrap();
    let args = [&["--ttl", "1h", "--"][..], &sh(LARGE)].concat();
    let start = Instant::now();
    assert!(cache.run(&args).status.success());
    // How long one whole refresh takes bounds the moments worth killing at.
    let mut span = start.elapsed().as_millis() as u64 + 20;
    let entry = cache.entry();
    let (mut torn, mut stuck, mut during) = (0, 0, 0);
    for round in 1..=kills {
        fs::write(cache.work().join("gen"), format!("{round}\n")).unwrap();
        let _ = fs::remove_file(cache.work().join("refresher"));
        cache.backdate(7200);
        let stale = cache.run(&args);
        assert!(
            whole_generation(&stale.stdout, round).is_some(),
            "round {round}: stale hit was not whole"
        );
        let refresher = read_pid(&cache, "refresher");
        std::thread::sleep(Duration::from_millis(rng.below(span)));
        let running = alive(refresher);
        during += u64::from(running);
        sigkill(refresher);
        // Keep most kills inside the run: shrink the window after a kill that came too late.
        span = if running {
            span + span / 16
        } else {
            (span * 3 / 4).max(5)
        };
        assert!(wait_until(Duration::from_secs(5), || !alive(refresher)));
        if stored_stdout(&entry)
            .and_then(|out| whole_generation(&out, round))
            .is_none()
        {
            torn += 1;
        }
        if !wait_until(Duration::from_secs(5), || !lock_held(&cache)) {
            stuck += 1;
        }
    }
    let temps = cache
        .files("")
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .count();
    let left = settle(&cache, Duration::from_secs(10));
    // The next refresh after all that still works.
    fs::write(cache.work().join("gen"), format!("{}\n", kills + 1)).unwrap();
    cache.backdate(7200);
    cache.run(&args);
    assert!(
        wait_until(Duration::from_secs(20), || stored_stdout(&entry)
            .and_then(|out| whole_generation(&out, kills + 1))
            == Some(kills + 1)),
        "no refresh succeeded after the kills"
    );
    let note = format!(
        "{during} killed while running, {} after finishing; {temps} temp files left for gc; {left} stray processes",
        kills - during
    );
    report("kill -9 refresher mid-write", kills, torn + stuck, &note);
    assert_eq!(torn, 0, "torn or empty entries");
    assert_eq!(stuck, 0, "locks still held after the refresher died");
    assert_eq!(left, 0, "processes left behind");
    assert!(temps as u64 <= kills, "more temp files than kills");
    // What the killed writers left is gc's to clean once it is old enough
    // that no live writer can own it.
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86400);
    let is_temp = |p: &std::path::PathBuf| {
        p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".tmp-")
    };
    for temp in cache.files("").into_iter().filter(is_temp) {
        let file = fs::File::options().write(true).open(&temp).unwrap();
        file.set_modified(two_days_ago).unwrap();
    }
    assert!(cache.cacheback(&["gc"]).status.success());
    assert_eq!(
        cache.files("").into_iter().filter(is_temp).count(),
        0,
        "gc left temp files"
    );
    assert!(stored_stdout(&entry).is_some(), "gc removed the live entry");
}

#[test]
fn refresher_killed_at_random_moments_never_tears_the_entry_or_the_lock() {
    refresher_kill_loop(env_or("CACHEBACK_FAULT_KILLS", 50));
}

#[test]
#[ignore = "soak: run by faults/run.sh"]
fn soak_refresher_kills() {
    refresher_kill_loop(env_or("CACHEBACK_SOAK_KILLS", 300));
}

#[test]
fn caller_killed_during_a_miss_leaves_no_entry_or_a_whole_one_and_blocks_no_one() {
    let cache = Cache::new();
    let mut rng = Rng::seeded("CACHEBACK_FAULT_SEED", "caller kills");
    let body = "i=0; while [ $i -lt 40 ]; do echo line $i; i=$((i+1)); sleep 0.01; done";
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    let whole: String = (0..40).map(|i| format!("line {i}\n")).collect();
    let tries = 12;
    let mut lost = 0;
    for _ in 0..tries {
        let _ = fs::remove_dir_all(cache.dir());
        let caller = cache.spawn_run(&args);
        std::thread::sleep(Duration::from_millis(rng.below(700)));
        sigkill(caller.id());
        let _ = caller.bounded_wait_with_output();
        if let Some(entry) = cache.files(".entry").first()
            && stored_stdout(entry).as_deref() != Some(whole.as_bytes())
        {
            lost += 1;
        }
        let start = Instant::now();
        let next = cache.run(&args);
        if stdout(&next) != whole || start.elapsed() > Duration::from_secs(10) {
            lost += 1;
        }
    }
    let left = settle(&cache, Duration::from_secs(5));
    report(
        "kill -9 caller during a miss",
        tries,
        lost,
        &format!("{left} stray processes"),
    );
    assert_eq!(lost, 0);
    assert_eq!(left, 0);
}

// ---------------------------------------------------------------- disk full

/// A 4 MB tmpfs, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: PathBuf) -> Option<SmallDisk> {
        fs::create_dir_all(&at).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m,mode=700", "tmpfs"])
            .arg(&at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(SmallDisk(at))
    }

    fn used_kb(&self) -> u64 {
        let out = Command::new("df")
            .args(["-k", "--output=used"])
            .arg(&self.0)
            .bounded_output();
        stdout(&out).lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_keeps_the_old_entry_and_the_caller_still_gets_output() {
    let cache = Cache::new();
    let Some(disk) = SmallDisk::mount(cache.dir()) else {
        crate::harness::skipped(
            "full_disk_*: cannot mount a tmpfs here (needs root and mount rights)",
        );
        return;
    };
    // The command's output grows past the disk once `$W/big` exists.
    let body = "echo run >> \"$W/count\"; if [ -e \"$W/big\" ]; then head -c 6000000 /dev/zero | tr '\\0' x; head -c 6000000 /dev/zero | tr '\\0' y >&2; echo >&2; fi; echo small";
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    assert_eq!(stdout(&cache.run(&args)), "small\n");
    let entry = cache.entry();
    let good = fs::read(&entry).unwrap();
    fs::write(cache.work().join("big"), "").unwrap();
    let before = disk.used_kb();
    let mut tries = 0;
    let mut lost = 0;

    // A foreground run that does not fit: whole output and status reach the caller.
    let forced = cache.run(&[&["--ttl", "1h", "--force", "--"][..], &sh(body)].concat());
    tries += 1;
    let ok = forced.status.success()
        && forced.stdout.len() == 6_000_006
        && forced.stderr.len() >= 6_000_000
        && warnings(&stderr(&forced)) == 1
        && fs::read(&entry).unwrap() == good;
    lost += u64::from(!ok);
    assert!(
        ok,
        "forced run on a full disk: status {:?}, {} bytes out, warnings {:?}",
        forced.status,
        forced.stdout.len(),
        warnings(&stderr(&forced))
    );

    // A background refresh that does not fit fails and leaves the old entry.
    cache.backdate(7200);
    let good = fs::read(&entry).unwrap();
    tries += 1;
    assert_eq!(
        stdout(&cache.run(&args)),
        "small\n",
        "the stale value is served"
    );
    assert!(
        wait_until(Duration::from_secs(20), || cache.count("count") == 3),
        "the refresh never ran"
    );
    assert_eq!(settle(&cache, Duration::from_secs(20)), 0);
    assert!(!lock_held(&cache));
    let ok = same_but_flagged_failed(&fs::read(&entry).unwrap(), &good)
        && stored_stdout(&entry).as_deref() == Some(b"small\n".as_slice());
    lost += u64::from(!ok);
    assert!(ok, "the old entry was damaged by a failed refresh");

    // Nothing is left taking the space.
    let temps = cache
        .files("")
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .count();
    let after = disk.used_kb();
    assert_eq!(temps, 0, "temp files of failed writes were left");
    // What may stay is the failure record: the end of the failed run's
    // stderr (64 KiB at most) and its header, never its output.
    let record_kb: u64 = cache
        .files(".fail")
        .iter()
        .map(|path| fs::metadata(path).unwrap().len().div_ceil(1024))
        .sum();
    assert!(record_kb <= 68, "the failure record takes {record_kb} KB");
    assert!(
        after <= before + 64 + record_kb,
        "space not given back: {before} KB before, {after} KB after ({record_kb} KB of failure record)"
    );
    // And once there is room again, the entry refreshes.
    fs::remove_file(cache.work().join("big")).unwrap();
    let fresh = cache.run(&[&["--ttl", "1h", "--force", "--"][..], &sh(body)].concat());
    assert_eq!(stdout(&fresh), "small\n");
    assert_eq!(stderr(&fresh), "");
    report(
        "disk full (4 MB tmpfs)",
        tries,
        lost,
        "foreground --force and background refresh of 12 MB",
    );
}

// ---------------------------------------------------------------- corruption and versions

/// An entry file with a different format version but otherwise consistent lengths.
fn with_version(good: &[u8], version: u32) -> Vec<u8> {
    let mut bytes = good.to_vec();
    bytes[4..8].copy_from_slice(&version.to_le_bytes());
    bytes
}

#[test]
fn damaged_and_other_version_entries_are_misses_with_one_warning() {
    let cache = Cache::new();
    let body = "echo run >> \"$W/count\"; echo out; echo err >&2";
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    cache.run(&args);
    let entry = cache.entry();
    let good = fs::read(&entry).unwrap();
    let mut rng = Rng::seeded("CACHEBACK_FAULT_SEED", "garbage entries");
    let mut damages: Vec<(String, Vec<u8>)> = vec![
        ("older version 0".into(), with_version(&good, 0)),
        (
            "newer version".into(),
            with_version(&good, FORMAT_VERSION + 1),
        ),
        ("version u32::MAX".into(), with_version(&good, u32::MAX)),
        ("magic only".into(), good[..4].to_vec()),
        ("preamble only".into(), good[..56].to_vec()),
        ("one byte longer".into(), [&good[..], b"x"].concat()),
        ("stdout length lies".into(), {
            let mut bytes = good.clone();
            bytes[40] ^= 0x40;
            bytes
        }),
    ];
    for n in 0..12 {
        let len = rng.below(300) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if n % 2 == 0 && len >= 8 {
            // Valid magic and version, garbage after: the preamble checks must catch it.
            bytes[..8].copy_from_slice(&good[..8]);
        }
        damages.push((format!("random garbage #{n} ({len} bytes)"), bytes));
    }
    let tries = damages.len() as u64;
    let mut lost = 0;
    for (round, (what, bytes)) in damages.into_iter().enumerate() {
        fs::write(&entry, bytes).unwrap();
        let output = cache.run(&args);
        let ok = stdout(&output) == "out\n"
            && output.status.success()
            && warnings(&stderr(&output)) <= 1
            && cache.count("count") == round + 2
            && fs::read(&entry).unwrap().len() == good.len();
        lost += u64::from(!ok);
        assert!(ok, "{what}: {output:?}, runs {}", cache.count("count"));
        let hit = cache.run(&args);
        assert_eq!(
            stderr(&hit),
            "err\n",
            "{what}: replaced by a good entry, hit is silent"
        );
    }
    report(
        "corrupt / other-version entry",
        tries,
        lost,
        "each a miss with at most one warning, then replaced",
    );
}

#[test]
fn lock_events_and_failure_files_of_another_version_are_ignored() {
    let cache = Cache::new();
    let body = "echo run >> \"$W/count\"; if [ -e \"$W/fail\" ]; then exit 3; fi; echo out";
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    cache.run(&args);
    let entry = cache.entry();
    let key = entry
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".entry")
        .to_owned();
    let file = |suffix: &str| cache.dir().join(format!("{key}{suffix}"));
    // What a future version might leave: other counters, other logs, an other-format failure record.
    fs::write(
        file(".lock"),
        b"CBKc\x02\0\0\0 totals from a newer format, not ours",
    )
    .unwrap();
    fs::write(file(".events"), b"hhhhZZZ\x00\xffsmr").unwrap();
    fs::write(file(".events.old"), b"\x01\x02\x03").unwrap();
    fs::write(
        file(".fail"),
        with_version(&fs::read(&entry).unwrap(), FORMAT_VERSION + 1),
    )
    .unwrap();
    for path in cache.files("") {
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    }
    let hit = cache.run(&args);
    assert_eq!(
        (stdout(&hit).as_str(), stderr(&hit).as_str()),
        ("out\n", "")
    );
    // A stale hit refreshes through the foreign lock and failure record, and folds the foreign logs.
    cache.stale_with_flag("fail");
    assert_eq!(stdout(&cache.run(&args)), "out\n");
    assert!(wait_until(Duration::from_secs(10), || cache.count("count")
        == 2
        && !lock_held(&cache)));
    fs::remove_file(cache.work().join("fail")).unwrap();
    let forced = cache.run(&[&["--ttl", "1h", "--force", "--"][..], &sh(body)].concat());
    assert_eq!(
        (stdout(&forced).as_str(), stderr(&forced).as_str()),
        ("out\n", "")
    );
    assert_eq!(settle(&cache, Duration::from_secs(5)), 0);
    report(
        "lock/events/fail files of another version",
        4,
        0,
        "served, refreshed, forced: no crash, no warning",
    );
}

// ---------------------------------------------------------------- hostile cache directory

/// Makes a cache directory unsafe in one way.
type Spoiler = Box<dyn Fn(&Path)>;

#[test]
fn foreign_or_shared_cache_dir_is_refused_and_the_command_still_runs() {
    let cache = Cache::new();
    let body = "echo run >> \"$W/count\"; echo out";
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    let cases: [(&str, Spoiler); 3] = [
        (
            "owned by nobody",
            Box::new(|dir| std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY)).unwrap()),
        ),
        (
            "group-writable",
            Box::new(|dir| fs::set_permissions(dir, fs::Permissions::from_mode(0o770)).unwrap()),
        ),
        (
            "world-writable",
            Box::new(|dir| fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap()),
        ),
    ];
    for (what, spoil) in &cases {
        let _ = fs::remove_dir_all(cache.dir());
        cache.run(&args);
        cache.backdate(7200);
        let runs = cache.count("count");
        spoil(&cache.dir());
        // A stale hit still serves the entry but refuses to refresh into the directory.
        let stale = cache.run(&args);
        assert_eq!(stdout(&stale), "out\n", "{what}");
        assert_eq!(warnings(&stderr(&stale)), 1, "{what}: {}", stderr(&stale));
        assert!(
            stderr(&stale).contains("cache directory"),
            "{what}: {}",
            stderr(&stale)
        );
        // A refresher, had one been started, is forked before its caller exits.
        assert_eq!(settle(&cache, Duration::from_secs(10)), 0, "{what}");
        assert_eq!(
            cache.count("count"),
            runs,
            "{what}: a refresh ran in an unsafe directory"
        );
        // A miss runs the command uncached, with one warning, writing nothing.
        fs::remove_file(cache.entry()).unwrap();
        let before: Vec<PathBuf> = cache.files("");
        let miss = cache.run(&args);
        assert_eq!(stdout(&miss), "out\n", "{what}");
        assert!(miss.status.success());
        assert_eq!(warnings(&stderr(&miss)), 1, "{what}: {}", stderr(&miss));
        assert_eq!(cache.files(".entry").len(), 0, "{what}: wrote an entry");
        let created: Vec<_> = cache
            .files("")
            .into_iter()
            .filter(|p| !before.contains(p) && !p.to_string_lossy().ends_with(".events"))
            .collect();
        assert!(created.is_empty(), "{what}: created {created:?}");
        assert_eq!(cache.count("count"), runs + 1);
    }
    report(
        "foreign / group- / world-writable cache dir",
        3,
        0,
        "refused with one warning; output still delivered",
    );
}

#[test]
fn planted_symlinks_fifos_and_foreign_files_are_never_followed_or_served() {
    let cache = Cache::new();
    let body = "echo run >> \"$W/count\"; echo out";
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    cache.run(&args);
    let entry = cache.entry();
    let good = fs::read(&entry).unwrap();
    let key = entry
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".entry")
        .to_owned();
    let file = |suffix: &str| cache.dir().join(format!("{key}{suffix}"));
    let outside = cache.work().join("outside");
    // A valid entry, but with output nobody of ours produced.
    let evil = {
        let mut bytes = good.clone();
        let at = bytes.len() - 4; // "out\n" is the last stdout and there is no stderr
        bytes[at..].copy_from_slice(b"EVL\n");
        bytes
    };
    let mut tries = 0;
    let mut lost = 0;
    let mut check = |what: &str, cache: &Cache, expect_replaced: bool| {
        tries += 1;
        let start = Instant::now();
        let mut child = cache.spawn_run(&args);
        let finished = wait_until(Duration::from_secs(10), || {
            child.try_wait().unwrap().is_some()
        });
        if !finished {
            sigkill(child.id());
        }
        let output = child.bounded_wait_with_output();
        let secret = fs::read(&outside).unwrap();
        let ok = finished
            && stdout(&output) == "out\n"
            && warnings(&stderr(&output)) <= 1
            && secret == b"secret\n"
            && (!expect_replaced
                || stored_stdout(&file(".entry")).as_deref() == Some(b"out\n".as_slice()));
        lost += u64::from(!ok);
        assert!(
            ok,
            "{what}: finished {finished} in {:?}, {output:?}, outside now {secret:?}",
            start.elapsed()
        );
    };
    let reset = |cache: &Cache| {
        fs::write(&outside, "secret\n").unwrap();
        for path in cache.files("") {
            fs::remove_file(path).unwrap();
        }
    };

    for suffix in [".entry", ".lock", ".events", ".events.old", ".fail"] {
        reset(&cache);
        symlink(&outside, file(suffix)).unwrap();
        check(&format!("symlink at {suffix}"), &cache, suffix != ".lock");
        assert!(fs::symlink_metadata(&outside).unwrap().is_file());
    }
    // A symlink to a valid entry elsewhere is not replayed either.
    reset(&cache);
    fs::write(cache.work().join("evil"), &evil).unwrap();
    symlink(cache.work().join("evil"), file(".entry")).unwrap();
    check("symlink to a valid entry", &cache, true);

    reset(&cache);
    fs::write(file(".entry"), &evil).unwrap();
    fs::set_permissions(file(".entry"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(file(".entry"), Some(NOBODY), Some(NOBODY)).unwrap();
    check("valid entry owned by nobody", &cache, true);
    assert_eq!(
        fs::metadata(file(".entry")).unwrap().uid(),
        nix::unistd::geteuid().as_raw()
    );

    reset(&cache);
    fs::write(file(".entry"), &evil).unwrap();
    fs::set_permissions(file(".entry"), fs::Permissions::from_mode(0o666)).unwrap();
    check("valid entry writable by others", &cache, true);

    for suffix in [".entry", ".lock", ".fail"] {
        reset(&cache);
        nix::unistd::mkfifo(
            &file(suffix),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        check(&format!("FIFO at {suffix}"), &cache, suffix == ".entry");
        if suffix == ".lock" {
            // The commands that only look (is a refresh running?) open the
            // lock file too, and must not block on the FIFO either.
            for look in [&["stats"][..], &["show", "--", "sh", "-c", body]] {
                let mut child = cache
                    .cmd()
                    .args(look)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let finished = wait_until(Duration::from_secs(10), || {
                    child.try_wait().unwrap().is_some()
                });
                if !finished {
                    sigkill(child.id());
                }
                let _ = child.bounded_wait_with_output();
                assert!(finished, "`{}` blocked on a FIFO at .lock", look[0]);
            }
        }
    }

    reset(&cache);
    fs::write(file(".lock"), "").unwrap();
    std::os::unix::fs::chown(file(".lock"), Some(NOBODY), Some(NOBODY)).unwrap();
    check("lock file owned by nobody", &cache, false);

    assert_eq!(settle(&cache, Duration::from_secs(5)), 0);
    report(
        "planted symlink / FIFO / foreign file",
        tries,
        lost,
        "never followed, never replayed, never hung",
    );
}

// ---------------------------------------------------------------- signals

#[test]
fn sigterm_on_a_miss_is_forwarded_exits_143_and_stores_nothing() {
    let cache = Cache::new();
    let body = "trap 'echo got-term >> \"$W/trapped\"; exit 1' TERM; echo $$ > \"$W/pid\"; echo partial; sleep 30 & wait";
    let caller = cache.spawn_run(&[&["--ttl", "1h", "--"][..], &sh(body)].concat());
    read_pid(&cache, "pid");
    kill(Pid::from_raw(caller.id() as i32), Signal::SIGTERM).unwrap();
    let output = caller.bounded_wait_with_output();
    assert_eq!(output.status.code(), Some(143));
    assert!(
        wait_until(Duration::from_secs(5), || cache.count("trapped") == 1),
        "the command never saw SIGTERM"
    );
    assert!(cache.files(".entry").is_empty());
    let temps = cache
        .files("")
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .count();
    assert_eq!(temps, 0, "an interrupted run left its temp file");
    settle(&cache, Duration::from_secs(5));
    report(
        "SIGTERM on a miss",
        1,
        0,
        "forwarded, exit 143, no entry, no temp file",
    );
}

#[test]
fn terminal_hangup_does_not_kill_a_detached_refresher() {
    let cache = Cache::new();
    if Command::new("script").arg("--version").output().is_err() {
        crate::harness::skipped(
            "terminal_hangup_*: script(1) is needed for a real pseudo-terminal",
        );
        return;
    }
    // The refresh holds until the test opens the gate, after the hangup.
    let body = format!(
        "echo run >> \"$W/count\"; if [ -e \"$W/slow\" ]; then echo $PPID > \"$W/refresher\"; {}; fi; echo v$(wc -l < \"$W/count\")",
        gate("go")
    );
    let args = [&["--ttl", "1h", "--"][..], &sh(&body)].concat();
    cache.run(&args);
    cache.stale_with_flag("slow");
    // A shell on a real terminal runs the stale call, then waits; closing the
    // terminal (killing script, which holds its master side) hangs it up.
    let quoted: Vec<String> = args
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let session = format!(
        "echo $$ > \"$W/shell\"\n\"$CB\" run {} > /dev/null\nsleep 30\n",
        quoted.join(" ")
    );
    fs::write(cache.work().join("session.sh"), session).unwrap();
    let mut terminal = Command::new("script");
    // A hangup must be able to end the shell: under `nohup` (a CI runner,
    // say) SIGHUP arrives ignored, and an ignored signal stays ignored
    // across exec.
    // SAFETY: signal is async-signal-safe; it runs in the child before exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut terminal, || {
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut terminal = terminal
        .args(["-qfec", "sh session.sh", "/dev/null"])
        .env("CB", BIN)
        .env("CACHEBACK_DIR", cache.dir())
        .env("W", cache.work())
        .current_dir(cache.work())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let shell = read_pid(&cache, "shell");
    let refresher = read_pid(&cache, "refresher");
    sigkill(terminal.id());
    terminal.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || !alive(shell)),
        "the hangup did not reach the shell"
    );
    cache.open_gate("go");
    assert!(
        wait_until(Duration::from_secs(10), || stored_stdout(&cache.entry())
            .as_deref()
            == Some(b"v2\n".as_slice())),
        "the refresher died with the terminal"
    );
    assert!(wait_until(Duration::from_secs(5), || !alive(refresher)));
    assert_eq!(settle(&cache, Duration::from_secs(5)), 0);
    report(
        "SIGHUP (terminal closed) during a refresh",
        1,
        0,
        "refresher finished and stored",
    );
}

// ---------------------------------------------------------------- runaway commands

#[test]
fn hung_refresh_is_killed_with_its_grandchildren_and_frees_the_lock() {
    let cache = Cache::new();
    let body = "echo run >> \"$W/count\"; if [ -e \"$W/hang\" ]; then sleep 60 & echo $! > \"$W/grandchild\"; sleep 60; fi; echo ok";
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    cache.run(&args);
    cache.stale_with_flag("hang");
    let good = fs::read(cache.entry()).unwrap();
    // Long enough that the refresh is surely still running when the lock is checked.
    let stale = cache
        .cmd()
        .env("CACHEBACK_REFRESH_TIMEOUT", "3s")
        .arg("run")
        .args(&args)
        .bounded_output();
    assert_eq!(stdout(&stale), "ok\n");
    let grandchild = read_pid(&cache, "grandchild");
    assert!(
        lock_held(&cache),
        "the refresh holds the lock while it runs"
    );
    assert!(
        wait_until(Duration::from_secs(10), || !alive(grandchild)),
        "the grandchild survived the time limit"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !lock_held(&cache)),
        "the lock is still held"
    );
    assert!(
        !cache.files(".fail").is_empty(),
        "the timeout is recorded as a failure"
    );
    // The value stays; only the byte marking a failed run since it changes.
    let mut kept = fs::read(cache.entry()).unwrap();
    let at = FAILED_SINCE_OFFSET as usize;
    assert_eq!(kept[at], 1, "the failure is not marked on the value");
    kept[at] = good[at];
    assert_eq!(kept, good);
    assert_eq!(settle(&cache, Duration::from_secs(5)), 0);
    report(
        "hung refresh without --timeout",
        1,
        0,
        "killed with grandchildren after the default limit; lock freed",
    );
}

// ---------------------------------------------------------------- huge output

/// Peak RSS in KiB of one `cacheback run`, with its stdout drained and checked against `pattern`.
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, for its rusage"
)]
fn peak_rss_kb(cache: &Cache, args: &[&str], pattern: &[u8], size: u64) -> (u64, bool) {
    let mut child = cache
        .cmd()
        .arg("run")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let check = |mut pipe: Box<dyn std::io::Read + Send>, pattern: Vec<u8>| {
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let expected: Vec<u8> = pattern
                .iter()
                .copied()
                .cycle()
                .take(buf.len() + pattern.len())
                .collect();
            let (mut seen, mut same) = (0u64, true);
            loop {
                let n = pipe.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                let at = seen as usize % pattern.len();
                same &= buf[..n] == expected[at..at + n];
                seen += n as u64;
            }
            (seen, same)
        })
    };
    let out = check(Box::new(child.stdout.take().unwrap()), pattern.to_vec());
    let err = check(Box::new(child.stderr.take().unwrap()), pattern.to_vec());
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // Polled (WNOHANG) so that a caller that never ends fails the test at a
    // deadline instead of holding it.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // SAFETY: waiting for our own child; std's Child is not waited on afterwards.
        let waited =
            unsafe { libc::wait4(child.id() as i32, &mut status, libc::WNOHANG, &mut usage) };
        if waited == child.id() as i32 {
            break;
        }
        assert_eq!(waited, 0, "wait4: {}", std::io::Error::last_os_error());
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a caller printing {size} bytes was still running after 120 s (killed)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let exact = libc::WIFEXITED(status)
        && libc::WEXITSTATUS(status) == 0
        && out == (size, true)
        && err == (size, true);
    (usage.ru_maxrss as u64, exact)
}

fn huge_output_rss(small_mb: u64, large_mb: u64) {
    let cache = Cache::new();
    let pattern = b"0123456789abcde\n";
    let mut rows = BTreeMap::new();
    let mut exact = true;
    for mb in [small_mb, large_mb] {
        let size = mb << 20;
        let body = format!("yes 0123456789abcde | head -c {size} | tee /dev/stderr");
        let args = ["--ttl", "1h", "--", "sh", "-c", body.as_str()];
        let (miss, miss_ok) = peak_rss_kb(&cache, &args, pattern, size);
        let (hit, hit_ok) = peak_rss_kb(&cache, &args, pattern, size);
        exact &= miss_ok && hit_ok;
        println!(
            "{mb} MB stdout + {mb} MB stderr: peak RSS miss {miss} KiB, hit {hit} KiB, byte-exact {}",
            miss_ok && hit_ok
        );
        rows.insert(mb, (miss, hit));
        for path in cache.files(".entry") {
            fs::remove_file(path).unwrap();
        }
    }
    let (small, large) = (rows[&small_mb], rows[&large_mb]);
    let growth = large
        .0
        .saturating_sub(small.0)
        .max(large.1.saturating_sub(small.1));
    report(
        &format!("{large_mb} MB stdout+stderr through miss and hit"),
        2,
        u64::from(!exact),
        &format!(
            "peak RSS miss {} -> {} KiB, hit {} -> {} KiB",
            small.0, large.0, small.1, large.1
        ),
    );
    assert!(exact, "output was not replayed byte for byte");
    assert!(
        growth < 8 * 1024,
        "memory grows with output: {small:?} KiB at {small_mb} MB, {large:?} KiB at {large_mb} MB"
    );
}

#[test]
fn memory_stays_flat_as_output_grows() {
    huge_output_rss(4, 100);
}

#[test]
#[ignore = "soak: run by faults/run.sh"]
fn soak_huge_output() {
    huge_output_rss(16, env_or("CACHEBACK_SOAK_OUTPUT_MB", 1024));
}

// ---------------------------------------------------------------- load

const ENTRIES: usize = 20;
const PAD: usize = 2000;

fn load(callers: usize, secs: u64) {
    let cache = Cache::new();
    fs::write(cache.work().join("pad"), "p".repeat(PAD)).unwrap();
    let ttl_short = 2u64;
    let body = "echo run >> \"$W/count-$1\"; g=$(wc -l < \"$W/count-$1\"); sleep 0.1; \
                printf 'entry %s gen %s\\n' \"$1\" \"$g\"; cat \"$W/pad\"; echo \"err $1\" >&2; exit $(($1 % 3))";
    let ttl_of = |i: usize| {
        if i < 7 {
            "1h".to_owned()
        } else {
            format!("{ttl_short}s")
        }
    };
    let args_of = |i: usize| -> Vec<String> {
        [
            "--ttl",
            &ttl_of(i),
            "--cache-failures",
            "--",
            "sh",
            "-c",
            body,
            "sh",
            &i.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // 0-6 fresh (ttl 1h), 7-13 stale (backdated, ttl 2 s), 14-19 missing at the start.
    for i in 0..14 {
        let args = args_of(i);
        cache.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    for path in cache.files(".entry") {
        backdate_file(&path, 3600 * 2);
    }
    let fresh_at_start: Vec<usize> = (0..7).collect();
    for i in &fresh_at_start {
        // The fresh group was backdated too; re-run it so it starts fresh.
        let args = args_of(*i);
        let mut forced = vec!["--force"];
        forced.extend(args.iter().map(String::as_str));
        cache.run(&forced);
    }
    let baseline: Vec<usize> = (0..ENTRIES)
        .map(|i| cache.count(&format!("count-{i}")))
        .collect();
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let calls = Arc::new(Mutex::new(0u64));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let threads: Vec<_> = (0..callers)
        .map(|t| {
            let (errors, calls) = (errors.clone(), calls.clone());
            let args: Vec<Vec<String>> = (0..ENTRIES).map(args_of).collect();
            let (dir, work) = (cache.dir(), cache.work());
            std::thread::spawn(move || {
                let mut n = 0;
                while Instant::now() < deadline {
                    let i = (t * 7 + n) % ENTRIES;
                    n += 1;
                    let output = Command::new(BIN)
                        .arg("run")
                        .args(&args[i])
                        .env("CACHEBACK_DIR", &dir)
                        .env("W", &work)
                        .current_dir(&work)
                        .stdin(Stdio::null())
                        .bounded_output();
                    *calls.lock().unwrap() += 1;
                    let text = stdout(&output);
                    let head = format!("entry {i} gen ");
                    let whole = text
                        .strip_prefix(&head)
                        .and_then(|rest| rest.split_once('\n'))
                        .is_some_and(|(generation, pad)| {
                            generation.parse::<u64>().is_ok_and(|g| g >= 1)
                                && pad == "p".repeat(PAD)
                        });
                    let code_ok = output.status.code() == Some((i % 3) as i32);
                    let err_ok = stderr(&output) == format!("err {i}\n");
                    if !(whole && code_ok && err_ok) {
                        errors.lock().unwrap().push(format!(
                            "entry {i}: status {:?}, stdout {:?}, stderr {:?}",
                            output.status.code(),
                            &text[..text.len().min(40)],
                            stderr(&output)
                        ));
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let left = settle(&cache, Duration::from_secs(15));
    let calls = *calls.lock().unwrap();
    let errors = errors.lock().unwrap().clone();
    let runs: Vec<usize> = (0..ENTRIES)
        .map(|i| cache.count(&format!("count-{i}")) - baseline[i])
        .collect();
    // An entry is fresh for ttl after each run finishes, so at most one run per
    // ttl period, plus the one that may start just before the end.
    let most = (elapsed / ttl_short as f64).floor() as usize + 2;
    let too_many: Vec<(usize, usize)> = runs
        .iter()
        .copied()
        .enumerate()
        .filter(|&(i, r)| if i < 7 { r != 0 } else { r > most })
        .collect();
    let never: Vec<usize> = (7..ENTRIES).filter(|&i| runs[i] == 0).collect();
    println!(
        "load: {callers} callers, {elapsed:.1} s, {calls} calls, runs per entry {runs:?} (at most {most} allowed for ttl {ttl_short} s)"
    );
    report(
        &format!("load: {callers} callers x {ENTRIES} entries, {secs} s"),
        calls,
        errors.len() as u64 + too_many.len() as u64 + left as u64,
        &format!(
            "{} wrong outputs/statuses, {} over-refreshed entries, {left} stray processes",
            errors.len(),
            too_many.len()
        ),
    );
    assert!(
        errors.is_empty(),
        "{} bad results, first: {:?}",
        errors.len(),
        errors.first()
    );
    assert!(
        too_many.is_empty(),
        "entries refreshed more than once per ttl: {too_many:?}"
    );
    assert!(
        never.is_empty(),
        "stale or missing entries never ran: {never:?}"
    );
    assert_eq!(left, 0, "processes left behind");
}

#[test]
fn mixed_load_serves_whole_values_and_refreshes_once_per_ttl() {
    load(
        env_or("CACHEBACK_FAULT_CALLERS", 24) as usize,
        env_or("CACHEBACK_FAULT_LOAD_SECS", 6),
    );
}

#[test]
#[ignore = "soak: run by faults/run.sh"]
fn soak_load() {
    load(
        env_or("CACHEBACK_SOAK_CALLERS", 200) as usize,
        env_or("CACHEBACK_SOAK_LOAD_SECS", 30),
    );
}

/// Whether an entry's bytes are `good`'s, but for the flag a failed run
/// after it may set (the failure record, which keeps no output, now fits on
/// a full disk, and the entry is flagged as failed since).
fn same_but_flagged_failed(now: &[u8], good: &[u8]) -> bool {
    let flag = cacheback::store::entry::FAILED_SINCE_OFFSET as usize;
    now.len() == good.len()
        && now
            .iter()
            .zip(good)
            .enumerate()
            .all(|(at, (a, b))| a == b || at == flag)
}
