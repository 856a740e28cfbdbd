//! Guards: what a user or an operator relies on, each pinned by a test that
//! fails on a realistic slip a maintainer could make (issue 23 lists them;
//! docs/testing.md says how each was seen to fail). They run the built
//! binary; the two races are made deterministic by holding one process
//! inside the window with `strace` (Debian's), the rest need nothing more
//! than files, clocks written into headers and a real redis-server.

use std::fs;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cacheback::store::entry::FINISHED_OFFSET;

use crate::harness::{
    BIN, Bounded, Cache, alive, gate, installed, processes_with_env, read_pid, sh, stderr, stdout,
    wait_until,
};
use crate::redis_harness::{RedisServer, STORE_VARIABLES};

/// Generous bound for background work on a busy 2-core machine.
const SETTLE: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Writes `finished_ms` into the header of every file of the cache ending in `suffix`.
fn set_finished(cache: &Cache, suffix: &str, finished_ms: u64) {
    let files = cache.files(suffix);
    assert!(!files.is_empty(), "no {suffix} file to set the time of");
    for path in files {
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&finished_ms.to_le_bytes(), FINISHED_OFFSET)
            .unwrap();
    }
}

/// Makes every entry and failure record `secs` older, keeping their order.
fn age_everything(cache: &Cache, secs: u64) {
    for suffix in [".entry", ".fail"] {
        for path in cache.files(suffix) {
            crate::harness::backdate_file(&path, secs);
        }
    }
}

/// Waits (with a deadline) until every caller, refresher and command of `cache` is done.
#[track_caller]
fn settle(cache: &Cache, what: &str) {
    assert!(
        cache.settled(SETTLE),
        "{what}: processes still running after {SETTLE:?}: {:?}",
        cache.processes()
    );
}

/// Waits (with a deadline) until the process `pid` has ended.
#[track_caller]
fn wait_gone(pid: u32, what: &str) {
    assert!(
        wait_until(SETTLE, || !alive(pid)),
        "{what} (pid {pid}) still running after {SETTLE:?}"
    );
}

// ------------------------------------------------------- failures and back-off

/// The command: counts its runs in `$W/count`, fails (exit 3) while `$W/fail` exists.
const FLAKY: &str =
    "echo run >> \"$W/count\"; [ -e \"$W/fail\" ] && { echo broken >&2; exit 3; }; echo ok";

fn flaky_args() -> Vec<&'static str> {
    [&["--ttl", "1h", "--name", "flaky", "--"][..], &sh(FLAKY)].concat()
}

/// One background refresh of the stale entry, succeeding or failing; waits
/// until it is over. Everything is aged past any back-off first.
fn refresh_once(cache: &Cache, fail: bool) {
    let flag = cache.work().join("fail");
    if fail {
        fs::write(&flag, "").unwrap();
    } else {
        let _ = fs::remove_file(&flag);
    }
    let before = cache.count("count");
    age_everything(cache, 7200);
    let out = cache.run(&flaky_args());
    assert_eq!(stdout(&out), "ok\n", "the stale value is served: {out:?}");
    assert!(
        wait_until(SETTLE, || cache.count("count") == before + 1),
        "the stale hit started no refresh"
    );
    settle(cache, "a refresh");
}

/// A stale hit whose failure record finished `secs_ago` seconds ago: returns
/// whether it started a refresh (the command ran), once everything settled.
fn stale_hit_refreshes(cache: &Cache, secs_ago: u64) -> bool {
    let before = cache.count("count");
    set_finished(cache, ".entry", now_ms() - 2 * 3600 * 1000);
    set_finished(cache, ".fail", now_ms() - secs_ago * 1000);
    let out = cache.run(&flaky_args());
    assert_eq!(stdout(&out), "ok\n", "the stale value is served: {out:?}");
    settle(cache, "a stale hit");
    cache.count("count") > before
}

/// `show`'s "last failure" line.
fn last_failure(cache: &Cache) -> String {
    let out = cache.cacheback(&["show", "--name", "flaky"]);
    assert!(out.status.success(), "{out:?}");
    stdout(&out)
        .lines()
        .find(|line| line.contains("last failure"))
        .unwrap_or_else(|| panic!("show has no last failure line: {}", stdout(&out)))
        .to_owned()
}

/// A success ends a streak of failures: after fail, fail, success, fail the
/// operator reads "1 in a row", and the back-off is the first step (10 s),
/// not the third (40 s).
#[test]
fn a_success_resets_the_count_of_failures_in_a_row() {
    let cache = Cache::new();
    assert_eq!(stdout(&cache.run(&flaky_args())), "ok\n");
    refresh_once(&cache, true);
    refresh_once(&cache, true);
    assert!(
        last_failure(&cache).contains(", 2 in a row"),
        "{}",
        last_failure(&cache)
    );
    refresh_once(&cache, false);
    refresh_once(&cache, true);
    let line = last_failure(&cache);
    assert!(
        line.contains(", 1 in a row"),
        "a success did not end the streak: {line}"
    );
    // One failure in a row: its back-off (10 s) is over after 13 s.
    assert!(
        stale_hit_refreshes(&cache, 13),
        "13 s after one failure the back-off still held (a streak that was not reset?)"
    );
}

/// How long a failure holds refreshes back, seen through the binary: the
/// first failure waits 10 s, the second 20 s (then doubling, up to the TTL).
/// Bounds leave three seconds either side for a slow machine.
#[test]
fn a_failed_refresh_backs_off_ten_seconds_then_twenty() {
    let cache = Cache::new();
    assert_eq!(stdout(&cache.run(&flaky_args())), "ok\n");
    refresh_once(&cache, true); // one failure in a row
    assert!(
        !stale_hit_refreshes(&cache, 7),
        "7 s after a failure a stale hit refreshed: the back-off is shorter than 10 s"
    );
    assert!(
        stale_hit_refreshes(&cache, 13),
        "13 s after one failure no refresh started: the back-off is longer than 10 s"
    );
    // That refresh failed too (the flag is still there): two in a row.
    settle(&cache, "the second failure");
    assert!(
        last_failure(&cache).contains(", 2 in a row"),
        "{}",
        last_failure(&cache)
    );
    assert!(
        !stale_hit_refreshes(&cache, 17),
        "17 s after a second failure a stale hit refreshed: the back-off is shorter than 20 s"
    );
    assert!(
        stale_hit_refreshes(&cache, 23),
        "23 s after a second failure no refresh started: the back-off is longer than 20 s"
    );
}

/// A stale hit that looked before a refresh failed, and took the lock only
/// once that refresh had let it go, backs off like any later caller. Judged
/// by the time it looked, the failure would be "from the future" (whose
/// back-off counts as over), and each caller that looked before it landed
/// would run the failing command again. strace holds the caller at its
/// `flock` while another caller's refresh fails; the same race in the
/// fleet is `fleet::a_failure_that_lands_before_a_refreshs_lease_backs_it_off`.
#[test]
fn a_stale_hit_that_looked_before_a_refresh_failed_backs_off() {
    if !strace("guards::a_stale_hit_that_looked_before_a_refresh_failed") {
        return;
    }
    let cache = Cache::new();
    assert_eq!(stdout(&cache.run(&flaky_args())), "ok\n");
    age_everything(&cache, 7200);
    fs::write(cache.work().join("fail"), "").unwrap();
    let run: Vec<&str> = ["run"].into_iter().chain(flaky_args()).collect();
    let late = spawn_under_strace(
        &cache,
        &[
            "-e",
            "trace=flock",
            "-e",
            "inject=flock:delay_enter=3000000:when=1",
        ],
        &run,
    );
    assert!(
        wait_until(SETTLE, || children(late.id())
            .first()
            .is_some_and(|&pid| held_in(pid, &[libc::SYS_flock]))),
        "the late caller never reached the lock"
    );
    assert_eq!(stdout(&cache.run(&flaky_args())), "ok\n", "the stale value");
    assert!(
        wait_until(SETTLE, || cache.count("count") == 2
            && !cache.files(".fail").is_empty()),
        "the other caller's refresh never failed"
    );
    let late = crate::harness::BoundedChild::bounded_wait_with_output(late);
    assert!(late.status.success(), "{late:?}");
    settle(&cache, "the late caller");
    assert_eq!(
        cache.count("count"),
        2,
        "the late caller ran the failing command again"
    );
}

// ------------------------------------------------------------ age == TTL

/// `strace` for the tests that need it (they skip, saying so, without it).
fn strace(test: &str) -> bool {
    installed("strace", test)
}

/// An entry is stale once its age reaches the TTL, not only past it: with
/// `--ttl 0` a value is never fresh. The caller's clock is pinned with
/// strace (its `clock_gettime` system call returns 0, the epoch) and the
/// entry's finish time is the epoch too, so its age is exactly the TTL.
#[test]
fn an_entry_whose_age_equals_the_ttl_is_stale() {
    if !strace("guards::an_entry_whose_age_equals_the_ttl_is_stale") {
        return;
    }
    let cache = Cache::new();
    let args = [
        &["--ttl", "0", "--"][..],
        &sh("echo run >> \"$W/count\"; echo v"),
    ]
    .concat();
    assert_eq!(stdout(&cache.run(&args)), "v\n");
    set_finished(&cache, ".entry", 0);
    let out = Command::new("strace")
        .args(["-qq", "-o", "/dev/null", "-e", "trace=clock_gettime"])
        .args(["-e", "inject=clock_gettime:retval=0", BIN, "run"])
        .args(&args)
        .env("CACHEBACK_DIR", cache.dir())
        .env("W", cache.work())
        .current_dir(cache.work())
        .stdin(Stdio::null())
        .bounded_output();
    assert_eq!(stdout(&out), "v\n", "{}", stderr(&out));
    assert!(
        wait_until(SETTLE, || cache.count("count") == 2),
        "an entry exactly as old as its TTL was served as fresh (no refresh started)"
    );
    settle(&cache, "the refresh");
}

// ------------------------------------------------- files others can write

/// The key hex of the cache's one entry.
fn entry_key(cache: &Cache) -> String {
    cache
        .entry()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".entry")
        .to_owned()
}

/// An entry file the group can write is never replayed, whatever else is
/// right about it (owner, format): its bytes could be anyone's in the group.
/// Planted as a valid entry whose output says `EVL`.
#[test]
fn a_group_writable_entry_is_never_served() {
    for mode in [0o620, 0o660, 0o622, 0o666] {
        let cache = Cache::new();
        let args = [
            &["--ttl", "1h", "--"][..],
            &sh("echo run >> \"$W/count\"; echo out"),
        ]
        .concat();
        assert_eq!(stdout(&cache.run(&args)), "out\n");
        let entry = cache.entry();
        let mut evil = fs::read(&entry).unwrap();
        let at = evil.len() - 4; // "out\n" ends the file: no stderr
        evil[at..].copy_from_slice(b"EVL\n");
        fs::remove_file(&entry).unwrap();
        fs::write(&entry, &evil).unwrap();
        fs::set_permissions(&entry, fs::Permissions::from_mode(mode)).unwrap();
        let out = cache.run(&args);
        assert_eq!(
            stdout(&out),
            "out\n",
            "an entry of mode {mode:o} was served: {}",
            stderr(&out)
        );
        assert_eq!(
            cache.count("count"),
            2,
            "mode {mode:o}: the command ran again"
        );
        settle(&cache, "the run");
    }
}

/// A lock file the group can write is never used: whoever can write it
/// could hold the lock for ever or feed the counters kept in it. The caller
/// still gets its output, with a warning that names the problem.
#[test]
fn a_group_writable_lock_file_is_refused_with_a_warning() {
    for mode in [0o620, 0o660] {
        let cache = Cache::new();
        let args = [
            &["--ttl", "1h", "--"][..],
            &sh("echo run >> \"$W/count\"; echo out"),
        ]
        .concat();
        assert_eq!(stdout(&cache.run(&args)), "out\n");
        settle(&cache, "the first run");
        let lock = cache.dir().join(format!("{}.lock", entry_key(&cache)));
        if !lock.exists() {
            fs::write(&lock, "").unwrap();
        }
        fs::set_permissions(&lock, fs::Permissions::from_mode(mode)).unwrap();
        cache.backdate(7200);
        let out = cache.run(&args);
        assert_eq!(stdout(&out), "out\n", "mode {mode:o}: {out:?}");
        assert!(
            stderr(&out).contains("private"),
            "a lock file of mode {mode:o} was used without a word: {out:?}"
        );
        settle(&cache, "the stale hit");
        assert_eq!(
            cache.count("count"),
            1,
            "mode {mode:o}: a refresh ran under a lock file others can write"
        );
    }
}

// ------------------------------------------------------------------- races

/// The system call `pid` is stopped in, from /proc/PID/syscall (its number).
fn current_syscall(pid: u32) -> Option<i64> {
    let text = fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// True while `pid` sits (held by strace) at the entry of one of `calls`.
fn held_in(pid: u32, calls: &[i64]) -> bool {
    let stopped = fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('t')
    });
    stopped && current_syscall(pid).is_some_and(|call| calls.contains(&call))
}

/// The children of `pid` (strace's traced command).
fn children(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `cacheback ARGS` under `strace STRACE_ARGS` (its own output thrown
/// away), with the cache's environment and no input.
fn under_strace(cache: &Cache, strace_args: &[&str], args: &[&str]) -> Command {
    let mut command = Command::new("strace");
    command
        .args(["-qq", "-o", "/dev/null"])
        .args(strace_args)
        .arg(BIN)
        .args(args)
        .env("CACHEBACK_DIR", cache.dir())
        .env("W", cache.work())
        .current_dir(cache.work())
        .stdin(Stdio::null());
    command
}

/// [`under_strace`], started with its output thrown away.
fn spawn_under_strace(cache: &Cache, strace_args: &[&str], args: &[&str]) -> Child {
    under_strace(cache, strace_args, args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Ends strace by SIGKILL: the kernel detaches its tracees, and one held in
/// an injected delay goes on at once with the call it was held at.
fn release(mut strace: Child) {
    let _ = strace.kill();
    let _ = strace.wait();
}

const UNLINKS: [i64; 2] = [libc::SYS_unlink, libc::SYS_unlinkat];
const RENAMES: [i64; 3] = [libc::SYS_rename, libc::SYS_renameat, libc::SYS_renameat2];

/// A fixture that holds its refresh at the gate `go` while `$W/slow` exists,
/// after writing the refresher's pid to `$W/refresher`; `$W/n` numbers its runs.
const NUMBERED: &str = "n=$(( $(cat \"$W/n\" 2>/dev/null || echo 0) + 1 )); echo $n > \"$W/n\"; \
                        echo run >> \"$W/count\"; if [ -e \"$W/slow\" ]; then echo $PPID > \"$W/refresher\"; ";

fn numbered_args() -> Vec<String> {
    let body = format!("{NUMBERED}{}; fi; echo \"v$n\"", gate("go"));
    ["--ttl", "1h", "--name", "e", "--", "sh", "-c", &body]
        .map(str::to_owned)
        .to_vec()
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Starts a refresh of the entry that holds at its gate; returns the refresher's pid.
fn start_held_refresh(cache: &Cache) -> u32 {
    let args = numbered_args();
    let args = as_strs(&args);
    assert_eq!(stdout(&cache.run(&args)), "v1\n");
    cache.stale_with_flag("slow");
    assert_eq!(
        stdout(&cache.run(&args)),
        "v1\n",
        "the stale value is served"
    );
    read_pid(cache, "refresher")
}

/// `invalidate` forgets an entry for good even when a refresh commits in the
/// middle of it: the refresh's result may predate the change the user
/// reacted to. The refresh is made to commit after `invalidate`'s first
/// removal and before its second (strace holds it at its second `unlink`).
#[test]
fn a_refresh_that_commits_during_an_invalidate_does_not_bring_the_entry_back() {
    if !strace("guards::a_refresh_that_commits_during_an_invalidate") {
        return;
    }
    let cache = Cache::new();
    let refresher = start_held_refresh(&cache);
    let key = entry_key(&cache);
    let tracer = spawn_under_strace(
        &cache,
        &[
            "-e",
            "trace=unlink,unlinkat",
            "-e",
            "inject=unlink,unlinkat:delay_enter=120000000:when=2+",
        ],
        &["invalidate", "--name", "e"],
    );
    let invalidate = {
        let mut found = None;
        assert!(
            wait_until(SETTLE, || {
                found = children(tracer.id()).first().copied();
                found.is_some_and(|pid| held_in(pid, &UNLINKS))
            }),
            "invalidate never reached its second removal"
        );
        found.unwrap()
    };
    // Its first removal is done, its second not: the refresh commits now.
    cache.open_gate("go");
    wait_gone(refresher, "the refresher");
    release(tracer);
    wait_gone(invalidate, "invalidate");
    let left: Vec<PathBuf> = cache
        .files(".entry")
        .into_iter()
        .filter(|path| path.to_string_lossy().contains(&key))
        .collect();
    assert!(
        left.is_empty(),
        "a refresh that committed while invalidate ran brought the entry back: {}",
        fs::read_to_string(cache.work().join("n")).unwrap_or_default()
    );
    fs::remove_file(cache.work().join("slow")).unwrap();
    let args = numbered_args();
    assert_eq!(
        stdout(&cache.run(&as_strs(&args))),
        "v3\n",
        "the next call is a miss"
    );
    settle(&cache, "the miss");
}

/// A commit that renamed its result into place after an `invalidate` took
/// its lease away removes it again. strace holds the refresher at the rename
/// (after it last saw its lease) while `invalidate` runs from start to end.
#[test]
fn a_refresh_whose_lease_is_invalidated_before_its_rename_stores_nothing() {
    if !strace("guards::a_refresh_whose_lease_is_invalidated_before_its_rename") {
        return;
    }
    let cache = Cache::new();
    let args = numbered_args();
    let args = as_strs(&args);
    assert_eq!(stdout(&cache.run(&args)), "v1\n");
    let key = entry_key(&cache);
    cache.stale_with_flag("slow");
    cache.open_gate("go");
    // The stale hit, and the refresher it forks, under strace: every rename waits.
    let run: Vec<&str> = ["run"].into_iter().chain(args.iter().copied()).collect();
    let tracer = spawn_under_strace(
        &cache,
        &[
            "-f",
            "-e",
            "trace=rename,renameat,renameat2",
            "-e",
            "inject=rename,renameat,renameat2:delay_enter=120000000",
        ],
        &run,
    );
    let refresher = read_pid(&cache, "refresher");
    assert!(
        wait_until(SETTLE, || held_in(refresher, &RENAMES)),
        "the refresher never reached its rename"
    );
    let out = cache.cacheback(&["invalidate", "--name", "e"]);
    assert!(out.status.success(), "{out:?}");
    release(tracer);
    wait_gone(refresher, "the refresher");
    let left: Vec<PathBuf> = cache
        .files(".entry")
        .into_iter()
        .filter(|path| path.to_string_lossy().contains(&key))
        .collect();
    assert!(
        left.is_empty(),
        "a result renamed into place after its lease was invalidated was kept"
    );
    fs::remove_file(cache.work().join("slow")).unwrap();
    assert_eq!(stdout(&cache.run(&args)), "v3\n", "the next call is a miss");
    settle(&cache, "the miss");
}

/// A refresh that outlived an `invalidate` stores nothing even when a new
/// caller has made a new lock file since (its miss ran and stored the value
/// after the invalidation): the late result must not replace that value.
#[test]
fn a_refresh_invalidated_and_overtaken_by_a_new_miss_stores_nothing() {
    let cache = Cache::new();
    let refresher = start_held_refresh(&cache); // run 2, held
    let out = cache.cacheback(&["invalidate", "--name", "e"]);
    assert!(out.status.success(), "{out:?}");
    fs::remove_file(cache.work().join("slow")).unwrap();
    let args = numbered_args();
    let args = as_strs(&args);
    assert_eq!(
        stdout(&cache.run(&args)),
        "v3\n",
        "the miss after the invalidation"
    );
    cache.open_gate("go");
    wait_gone(refresher, "the refresher");
    settle(&cache, "the refresh");
    assert_eq!(
        stdout(&cache.run(&args)),
        "v3\n",
        "the invalidated refresh's late result replaced the newer miss's value"
    );
}

/// `invalidate --refresh` landing between a commit's last look at the
/// stale generation and its rename still gets its rerun: the result renamed
/// in is marked stale, and the refresher runs the command again. strace
/// holds the refresher at the rename while `invalidate --refresh` runs.
#[test]
fn a_refresh_marked_stale_at_its_rename_still_reruns() {
    if !strace("guards::a_refresh_marked_stale_at_its_rename_still_reruns") {
        return;
    }
    let cache = Cache::new();
    let args = numbered_args();
    let args = as_strs(&args);
    assert_eq!(stdout(&cache.run(&args)), "v1\n");
    cache.stale_with_flag("slow");
    cache.open_gate("go");
    let run: Vec<&str> = ["run"].into_iter().chain(args.iter().copied()).collect();
    let tracer = spawn_under_strace(
        &cache,
        &[
            "-f",
            "-e",
            "trace=rename,renameat,renameat2",
            "-e",
            "inject=rename,renameat,renameat2:delay_enter=120000000",
        ],
        &run,
    );
    let refresher = read_pid(&cache, "refresher");
    assert!(
        wait_until(SETTLE, || held_in(refresher, &RENAMES)),
        "the refresher never reached its rename"
    );
    let out = cache.cacheback(&["invalidate", "--refresh", "--name", "e"]);
    assert!(out.status.success(), "{out:?}");
    release(tracer);
    wait_gone(refresher, "the refresher");
    settle(&cache, "the refresh");
    assert_eq!(
        cache.count("count"),
        3,
        "invalidate --refresh at the commit's rename got no rerun"
    );
    fs::remove_file(cache.work().join("slow")).unwrap();
    assert_eq!(
        stdout(&cache.run(&args)),
        "v3\n",
        "the rerun's value is served"
    );
    settle(&cache, "the hit");
    assert_eq!(cache.count("count"), 3, "the rerun's value is fresh");
}

/// `invalidate --refresh` during a refresh: the refresher runs the command
/// again on its own (its first result may predate what the user reacted
/// to), and that rerun's value is the fresh one. Nothing but the refresher
/// may start the rerun, so the test waits on processes, never with a `run`
/// (a stale hit would start a refresh itself).
#[test]
fn a_refresh_marked_stale_while_it_runs_reruns_by_itself() {
    let cache = Cache::new();
    let refresher = start_held_refresh(&cache);
    assert!(
        wait_until(SETTLE, || cache.count("count") == 2),
        "the refresh never started its command"
    );
    let out = cache.cacheback(&["invalidate", "--refresh", "--name", "e"]);
    assert!(out.status.success(), "{out:?}");
    cache.open_gate("go");
    wait_gone(refresher, "the refresher");
    settle(&cache, "the refresh");
    assert_eq!(
        cache.count("count"),
        3,
        "the refresher did not run again after invalidate --refresh landed during its run"
    );
    fs::remove_file(cache.work().join("slow")).unwrap();
    let args = numbered_args();
    assert_eq!(stdout(&cache.run(&as_strs(&args))), "v3\n");
    settle(&cache, "the hit");
    assert_eq!(cache.count("count"), 3, "the rerun's value is fresh");
}

// ------------------------------------------------------------ fleet lease

/// Two or three hosts (cache directories) sharing one real redis-server.
struct Fleet {
    root: tempfile::TempDir,
    redis: RedisServer,
}

impl Fleet {
    fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    /// `cacheback ARGS` as host `name`, to completion.
    fn on(&self, name: &str, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(BIN);
        for variable in STORE_VARIABLES {
            cmd.env_remove(variable);
        }
        cmd.env("CACHEBACK_DIR", self.root.path().join("hosts").join(name))
            .env("W", self.work())
            .env("H", name)
            .env("CACHEBACK_STORE", self.redis.url())
            .env("CACHEBACK_STORE_LEASE", "2s")
            .env("CACHEBACK_STORE_TIMEOUT", "2s")
            .current_dir(self.work())
            .stdin(Stdio::null())
            .args(args)
            .bounded_output()
    }

    /// Every execution fleet-wide: the tokens `HOST.PID` in `$W/runs`.
    fn runs(&self) -> Vec<String> {
        fs::read_to_string(self.work().join("runs"))
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// The one entry's Redis key for `part`.
    fn key(&self, part: &str) -> String {
        let metas = self.redis.scan_keys("cacheback:*:meta");
        assert_eq!(metas.len(), 1, "expected one value in the fleet: {metas:?}");
        format!("{}:{part}", metas[0].strip_suffix(":meta").unwrap())
    }

    /// Makes the value stale on every host and in the store.
    fn age(&self, hosts: &[&str], secs: u64) {
        for host in hosts {
            let dir = self.root.path().join("hosts").join(host);
            for entry in fs::read_dir(dir).unwrap().flatten() {
                if entry.path().to_string_lossy().ends_with(".entry") {
                    crate::harness::backdate_file(&entry.path(), secs);
                }
            }
        }
        let meta = self.key("meta");
        let finished: u64 = self
            .redis
            .cli_text(&["HGET", &meta, "finished_ms"])
            .trim()
            .parse()
            .unwrap();
        let aged = (finished - secs * 1000).to_string();
        self.redis.cli(&["HSET", &meta, "finished_ms", &aged]);
    }

    /// Reads a pid a command wrote to `$W/NAME`, with a deadline.
    #[track_caller]
    fn read_pid(&self, name: &str) -> u32 {
        let path = self.work().join(name);
        assert!(
            wait_until(SETTLE, || fs::read_to_string(&path)
                .is_ok_and(|t| t.ends_with('\n'))),
            "{name} never appeared"
        );
        fs::read_to_string(&path).unwrap().trim().parse().unwrap()
    }

    /// Waits until every caller, refresher and command of the fleet is done.
    #[track_caller]
    fn settle(&self) {
        let var = format!("W={}", self.work().display());
        assert!(
            wait_until(SETTLE, || processes_with_env(var.as_bytes()).is_empty()),
            "fleet processes still running after {SETTLE:?}"
        );
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // What a failed test left (gated commands, a stopped refresher) ends by pid.
        for pid in processes_with_env(format!("W={}", self.work().display()).as_bytes()) {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
        }
    }
}

/// The fleet's command: appends its token `HOST.PID` to `$W/runs` and prints
/// it; with `$W/slow-HOST` it writes its refresher's pid to
/// `$W/refresher-HOST` and holds at the gate `go-HOST` first.
fn fleet_args() -> Vec<String> {
    let body = format!(
        r#"t="$H.$$"; echo "$t" >> "$W/runs"; if [ -e "$W/slow-$H" ]; then echo $PPID > "$W/refresher-$H"; {}; fi; echo "$t""#,
        gate("go-$H")
    );
    ["run", "--ttl", "1h", "--name", "f", "--", "sh", "-c", &body]
        .map(str::to_owned)
        .to_vec()
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// A host whose refresh outlived its fleet lease gives back only its own
/// lease: after host A was stopped past its lease and host B took the lease
/// for its own refresh, A's late end leaves B's lease in place, and a third
/// host's stale hit waits for B's value instead of running the command again.
#[test]
fn a_late_holder_never_releases_the_fleet_lease_another_host_took() {
    let test = "guards::a_late_holder_never_releases_the_fleet_lease";
    if !installed("redis-cli", test) {
        return;
    }
    let Some(redis) = RedisServer::start(&[], test) else {
        return;
    };
    let root = tempfile::Builder::new()
        .prefix("cacheback-guards-")
        .tempdir()
        .unwrap();
    let fleet = Fleet { root, redis };
    fs::create_dir(fleet.work()).unwrap();
    let args = fleet_args();
    let args = as_strs(&args);
    let first = stdout(&fleet.on("a", &args));
    assert_eq!(fleet.runs().len(), 1, "{first}");
    assert!(
        wait_until(SETTLE, || !fleet
            .redis
            .scan_keys("cacheback:*:meta")
            .is_empty()),
        "A's value never reached the fleet"
    );
    for host in ["b", "c"] {
        assert_eq!(
            stdout(&fleet.on(host, &args)),
            first,
            "{host} fills from the fleet"
        );
    }
    assert_eq!(fleet.runs().len(), 1, "a fill runs nothing");
    fleet.age(&["a", "b", "c"], 7200);
    let lease = fleet.key("lease");

    // A's refresh takes the lease, then A stops until the lease has expired.
    fs::write(fleet.work().join("slow-a"), "").unwrap();
    assert_eq!(stdout(&fleet.on("a", &args)), first, "A's stale hit");
    let a = fleet.read_pid("refresher-a");
    signal(a, nix::sys::signal::Signal::SIGSTOP);
    assert!(
        wait_until(SETTLE, || fleet.redis.cli_text(&["EXISTS", &lease]).trim()
            == "0"),
        "the stopped refresher's lease never expired"
    );
    // B's refresh takes it next, and holds.
    fs::write(fleet.work().join("slow-b"), "").unwrap();
    assert_eq!(stdout(&fleet.on("b", &args)), first, "B's stale hit");
    let b = fleet.read_pid("refresher-b");
    let mut held_by_b = String::new();
    assert!(
        wait_until(SETTLE, || {
            held_by_b = fleet.redis.cli_text(&["GET", &lease]).trim().to_owned();
            !held_by_b.is_empty()
        }),
        "B's refresh never took the lease"
    );
    // A wakes up, its run ends, it gives back what it thinks is its lease.
    signal(a, nix::sys::signal::Signal::SIGCONT);
    fs::write(fleet.work().join("go-a"), "").unwrap();
    wait_gone(a, "A's refresher");
    assert_eq!(
        fleet.redis.cli_text(&["GET", &lease]).trim(),
        held_by_b,
        "A's late release freed the lease B holds"
    );
    // C's stale hit finds the lease held and waits for B's value.
    assert_eq!(stdout(&fleet.on("c", &args)), first, "C's stale hit");
    fs::write(fleet.work().join("go-b"), "").unwrap();
    wait_gone(b, "B's refresher");
    fleet.settle();
    let runs = fleet.runs();
    assert!(
        !runs.iter().any(|run| run.starts_with("c.")),
        "C ran the command while B's refresh held the lease: {runs:?}"
    );
    assert_eq!(
        runs.len(),
        3,
        "one run each for A's and B's refresh: {runs:?}"
    );
}

/// A value `invalidate --refresh` marked stale fleet-wide stays marked
/// stale on a host that copies it while the refresh runs: that host's
/// copy is marked stale too (`show` says so), not fresh.
#[test]
fn a_fleet_copy_of_a_value_marked_stale_is_stale_on_the_copying_host() {
    let test = "guards::a_fleet_copy_of_a_value_marked_stale";
    if !installed("redis-cli", test) {
        return;
    }
    let Some(redis) = RedisServer::start(&[], test) else {
        return;
    };
    let root = tempfile::Builder::new()
        .prefix("cacheback-guards-")
        .tempdir()
        .unwrap();
    let fleet = Fleet { root, redis };
    fs::create_dir(fleet.work()).unwrap();
    let args = fleet_args();
    let args = as_strs(&args);
    let first = stdout(&fleet.on("a", &args));
    assert!(
        wait_until(SETTLE, || !fleet
            .redis
            .scan_keys("cacheback:*:meta")
            .is_empty()),
        "A's value never reached the fleet"
    );
    // A's refresh after the invalidation holds at its gate.
    fs::write(fleet.work().join("slow-a"), "").unwrap();
    let out = fleet.on("a", &["invalidate", "--refresh", "--name", "f"]);
    assert!(out.status.success(), "{out:?}");
    let a = fleet.read_pid("refresher-a");
    assert_eq!(
        stdout(&fleet.on("c", &args)),
        first,
        "C copies the fleet's value"
    );
    let show = fleet.on("c", &["show", "--name", "f"]);
    fs::write(fleet.work().join("go-a"), "").unwrap();
    wait_gone(a, "A's refresher");
    fleet.settle();
    let text = stdout(&show);
    let local = text
        .lines()
        .find(|line| line.starts_with("finished:"))
        .unwrap_or_else(|| panic!("show has no finished line: {show:?}"));
    assert!(
        local.contains("marked stale"),
        "C's copy of a value marked stale is not marked stale on C:\n{text}"
    );
}

/// A caller waiting for another caller's miss keeps waiting when its wait
/// is interrupted (`flock` failing with EINTR, as a signal can make it),
/// and then serves that miss's value: strace makes the caller's second
/// `flock` (the blocking one, after the non-blocking try) fail so.
#[test]
fn a_caller_whose_wait_for_the_lock_is_interrupted_keeps_waiting() {
    if !strace("guards::a_caller_whose_wait_for_the_lock_is_interrupted") {
        return;
    }
    let cache = Cache::new();
    let body = format!(
        "echo run >> \"$W/count\"; echo $PPID > \"$W/first\"; {}; echo v",
        gate("go")
    );
    let args = ["--ttl", "1h", "--", "sh", "-c", &body];
    let first = cache.spawn_run(&args);
    read_pid(&cache, "first");
    let run: Vec<&str> = ["run"].into_iter().chain(args.iter().copied()).collect();
    let waiter = Command::new("strace")
        .args(["-qq", "-o", "/dev/null", "-e", "trace=flock"])
        .args(["-e", "inject=flock:error=EINTR:when=2", BIN])
        .args(&run)
        .env("CACHEBACK_DIR", cache.dir())
        .env("W", cache.work())
        .current_dir(cache.work())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its third flock, after the try and the interrupted wait, blocks.
    assert!(
        wait_until(SETTLE, || children(waiter.id()).first().is_some_and(
            |&pid| {
                current_syscall(pid) == Some(libc::SYS_flock)
                    && fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                        stat.rsplit(')')
                            .next()
                            .unwrap_or("")
                            .trim_start()
                            .starts_with('S')
                    })
            }
        )),
        "the second caller never waited for the lock"
    );
    cache.open_gate("go");
    let first = crate::harness::BoundedChild::bounded_wait_with_output(first);
    assert_eq!(stdout(&first), "v\n");
    let out = crate::harness::BoundedChild::bounded_wait_with_output(waiter);
    assert_eq!(stdout(&out), "v\n", "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "no warning");
    assert_eq!(
        cache.count("count"),
        1,
        "the interrupted waiter ran the command itself"
    );
}

/// A caller whose wait for the lock fails for a reason other than a signal
/// (`ENOLCK`, which strace gives its blocking `flock`) says the cache is
/// unavailable and runs the command uncached, rather than retrying the
/// wait without end (`acquire`'s `EINTR` guard taken for every error spun
/// on the failing call: a lock survivor of the first mutants run).
#[test]
fn a_caller_whose_wait_for_the_lock_fails_runs_the_command_uncached() {
    if !strace("guards::a_caller_whose_wait_for_the_lock_fails") {
        return;
    }
    let cache = Cache::new();
    let body = format!(
        "echo run >> \"$W/count\"; [ -e \"$W/first\" ] || {{ echo $PPID > \"$W/first\"; {}; }}; echo v",
        gate("go")
    );
    let args = ["--ttl", "1h", "--", "sh", "-c", &body];
    let first = cache.spawn_run(&args);
    read_pid(&cache, "first");
    let run: Vec<&str> = ["run"].into_iter().chain(args.iter().copied()).collect();
    // Its first flock, the try, finds the lock held; every later one fails.
    let out = under_strace(
        &cache,
        &[
            "-e",
            "trace=flock",
            "-e",
            "inject=flock:error=ENOLCK:when=2+",
        ],
        &run,
    )
    .bounded_output();
    cache.open_gate("go");
    assert_eq!(stdout(&out), "v\n", "its own run: {}", stderr(&out));
    assert!(out.status.success(), "{out:?}");
    assert!(
        stderr(&out).starts_with("cacheback: cache unavailable, running uncached")
            && stderr(&out).contains("No locks available"),
        "the failed wait went unsaid: {:?}",
        stderr(&out)
    );
    let first = crate::harness::BoundedChild::bounded_wait_with_output(first);
    assert_eq!(stdout(&first), "v\n");
    assert_eq!(cache.count("count"), 2, "each caller ran once");
}

/// A stale hit whose try for the lock fails for a reason other than "held"
/// (`ENOLCK`) serves the stale value and says its refresh could not start,
/// rather than taking the lock for held by a refresh that does not exist
/// (`try_acquire`'s contended guard taken for every error: a lock survivor
/// of the first mutants run); the next stale hit refreshes.
#[test]
fn a_stale_hit_whose_lock_fails_says_its_refresh_could_not_start() {
    a_stale_hit_that_cannot_start_its_refresh(
        "guards::a_stale_hit_whose_lock_fails",
        &["-e", "trace=flock", "-e", "inject=flock:error=ENOLCK"],
        "No locks available",
    );
}

/// A stale hit under `strace STRACE_ARGS`, which make its refresh fail to
/// start with an error `strerror` words as `says`: the stale value is served,
/// with one warning naming the error, and nothing runs; the next stale hit,
/// without the fault, refreshes.
fn a_stale_hit_that_cannot_start_its_refresh(test: &str, strace_args: &[&str], says: &str) {
    if !strace(test) {
        return;
    }
    let cache = Cache::new();
    let args = [
        &["--ttl", "1h", "--"][..],
        &sh("echo run >> \"$W/count\"; echo v"),
    ]
    .concat();
    assert_eq!(stdout(&cache.run(&args)), "v\n");
    cache.backdate(7200);
    let run: Vec<&str> = ["run"].into_iter().chain(args.iter().copied()).collect();
    let out = under_strace(&cache, strace_args, &run).bounded_output();
    assert_eq!(stdout(&out), "v\n", "the stale value: {}", stderr(&out));
    assert!(out.status.success(), "{out:?}");
    assert!(
        stderr(&out).contains("could not start a background refresh")
            && stderr(&out).contains(says),
        "the refresh that could not start ({says}) went unsaid: {:?}",
        stderr(&out)
    );
    settle(&cache, "the failed refresh");
    assert_eq!(cache.count("count"), 1, "nothing ran");
    assert_eq!(stdout(&cache.run(&args)), "v\n");
    settle(&cache, "the refresh");
    assert_eq!(cache.count("count"), 2, "the next stale hit refreshed");
}

// ------------------------------------------------------- crash consistency

/// A background refresh makes its file durable before it renames it over
/// the entry (and the directory after): a power loss can then leave the old
/// value or the new one, never a new name on output that never reached the
/// disk. Seen in the system calls of the stale hit's refresher.
#[test]
fn a_background_refresh_syncs_its_file_before_the_rename() {
    if !strace("guards::a_background_refresh_syncs_its_file_before_the_rename") {
        return;
    }
    let cache = Cache::new();
    let args = [
        &["--ttl", "1h", "--"][..],
        &sh("echo run >> \"$W/count\"; echo v"),
    ]
    .concat();
    assert_eq!(stdout(&cache.run(&args)), "v\n");
    cache.backdate(7200);
    let trace = cache.work().join("trace");
    let mut strace_args: Vec<&str> = vec!["-f", "-qq", "-o", trace.to_str().unwrap()];
    strace_args.extend([
        "-e",
        "trace=fdatasync,fsync,rename,renameat,renameat2",
        BIN,
        "run",
    ]);
    strace_args.extend(args.iter().copied());
    let out = Command::new("strace")
        .args(&strace_args)
        .env("CACHEBACK_DIR", cache.dir())
        .env("W", cache.work())
        .current_dir(cache.work())
        .stdin(Stdio::null())
        .bounded_output();
    assert_eq!(stdout(&out), "v\n", "{}", stderr(&out));
    settle(&cache, "the refresh");
    assert_eq!(cache.count("count"), 2, "the stale hit refreshed");
    let text = fs::read_to_string(&trace).unwrap();
    let calls: Vec<&str> = text.lines().collect();
    let rename = calls
        .iter()
        .position(|line| line.contains("rename") && line.contains(".entry\""))
        .unwrap_or_else(|| panic!("no rename onto the entry in the trace:\n{text}"));
    let pid = calls[rename].split_whitespace().next().unwrap();
    assert!(
        calls[..rename].iter().any(|line| line.starts_with(pid)
            && line.contains("fdatasync(")
            && line.contains("= 0")),
        "the refresher renamed its result into place without syncing it first:\n{text}"
    );
    assert!(
        calls[rename..]
            .iter()
            .any(|line| line.starts_with(pid) && line.contains("fsync(") && line.contains("= 0")),
        "the refresher did not sync the directory after the rename:\n{text}"
    );
}

/// A background refresh whose result cannot be stored at the last step
/// (here its `fdatasync` fails, as on a disk that fails or fills at that
/// moment) is a failed run: the old value stays, and `show` says why.
/// Without that record nothing would tell the operator, and every stale hit
/// would run the command again. (`produce::execute` recording the failure
/// when a failure's commit failed instead of a value's survived the
/// refresher group's mutants.)
#[test]
fn a_background_refresh_that_cannot_store_its_result_records_why() {
    if !strace("guards::a_background_refresh_that_cannot_store_its_result_records_why") {
        return;
    }
    let cache = Cache::new();
    let args = [
        &["--ttl", "1h", "--name", "sync", "--"][..],
        &sh("echo run >> \"$W/count\"; echo v"),
    ]
    .concat();
    assert_eq!(stdout(&cache.run(&args)), "v\n");
    cache.backdate(7200);
    let mut strace_args = vec![
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=fdatasync",
        "-e",
        "inject=fdatasync:error=EIO",
        BIN,
        "run",
    ];
    strace_args.extend(args.iter().copied());
    let out = Command::new("strace")
        .args(&strace_args)
        .env("CACHEBACK_DIR", cache.dir())
        .env("W", cache.work())
        .current_dir(cache.work())
        .stdin(Stdio::null())
        .bounded_output();
    assert_eq!(stdout(&out), "v\n", "the stale value: {}", stderr(&out));
    settle(&cache, "the refresh");
    assert_eq!(cache.count("count"), 2, "the stale hit refreshed");
    let shown = cache.cacheback(&["show", "--name", "sync"]);
    let text = format!("{}{}", stdout(&shown), stderr(&shown));
    assert!(
        // glibc's strerror says "Input/output error", musl's "I/O error".
        text.contains("could not store the result")
            && (text.contains("Input/output error") || text.contains("I/O error")),
        "show does not say why the refresh stored nothing:\n{text}"
    );
    assert_eq!(stdout(&cache.run(&args)), "v\n", "the old value stays");
}

/// A stale hit that cannot start its refresher (no process to spare: the
/// fork fails, here by strace with `EAGAIN`) still serves the value, and
/// says so once, instead of acting as if a refresh were under way; the next
/// hit, with processes to spare, refreshes. (`fork_detached` without its
/// failed-fork arm took the failure for the parent's side and said nothing:
/// it survived the refresher group.)
#[test]
fn a_stale_hit_that_cannot_fork_its_refresher_says_so_and_serves() {
    a_stale_hit_that_cannot_start_its_refresh(
        "guards::a_stale_hit_that_cannot_fork_its_refresher_says_so_and_serves",
        &[
            "-e",
            "trace=clone,clone3,fork,vfork",
            "-e",
            "inject=clone,clone3,fork,vfork:error=EAGAIN",
        ],
        "Resource temporarily unavailable",
    );
}

// ------------------------------------------------------------ other users

/// The ownership checks compare with the user cacheback runs as, whoever
/// that is: the suite runs as root, so this runs the binary as `nobody`
/// (uid 65534), with a cache directory that user creates, and its second
/// call must be a hit. (Only root can switch users; elsewhere the whole
/// suite runs as a user that is not root anyway.)
#[test]
fn a_user_other_than_root_trusts_its_own_cache() {
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIPPED guards::a_user_other_than_root_trusts_its_own_cache: not root (the suite itself runs as another user)"
        );
        return;
    }
    let root = tempfile::Builder::new()
        .prefix("cacheback-nobody-")
        .tempdir()
        .unwrap();
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let cache = root.path().join("cache");
    let count = root.path().join("count");
    let call = || {
        Command::new(BIN)
            .args(["run", "--ttl", "1h", "--", "sh", "-c"])
            .arg(format!("echo run >> {}; echo mine", count.display()))
            .env("CACHEBACK_DIR", &cache)
            .current_dir(root.path())
            .stdin(Stdio::null())
            .uid(65534)
            .gid(65534)
            .bounded_output()
    };
    for round in ["miss", "hit"] {
        let out = call();
        assert_eq!(stdout(&out), "mine\n", "{round}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{round}: no warning");
    }
    let runs = fs::read_to_string(&count).unwrap_or_default();
    assert_eq!(
        runs.lines().count(),
        1,
        "the second call ran the command again: nobody's own cache was not trusted"
    );
}

/// `invalidate` that cannot remove one of an entry's files says so, names
/// it and fails, rather than report the entry forgotten: here a directory
/// sits where the failure record would be (unlink fails with EISDIR).
#[test]
fn an_invalidate_that_cannot_remove_a_file_says_so_and_fails() {
    let cache = Cache::new();
    let args = [&["--ttl", "1h", "--name", "e", "--"][..], &sh("echo v")].concat();
    assert_eq!(stdout(&cache.run(&args)), "v\n");
    let blocker = cache.dir().join(format!("{}.fail", entry_key(&cache)));
    fs::create_dir(&blocker).unwrap();
    let out = cache.cacheback(&["invalidate", "--name", "e"]);
    assert!(
        !out.status.success(),
        "invalidate reported success with {} in the way: {out:?}",
        blocker.display()
    );
    assert!(
        stderr(&out).contains(".fail"),
        "the error does not name the file: {}",
        stderr(&out)
    );
}

// ------------------------------------------------------- --cache-failures entries

/// `--cache-failures` keeps a command that cannot start as it keeps any
/// failure: as the entry, which is then plainly fresh, not "failing" (that
/// state is for a failure that came after the entry's value). `produce::
/// execute` flagging the entry after any stored result (its `&&` made
/// `||`) survived the refresher group.
#[test]
fn a_cached_command_not_found_is_a_fresh_entry_not_a_failing_one() {
    let cache = Cache::new();
    let args = [
        "--ttl",
        "1h",
        "--cache-failures",
        "--stale-marker",
        " ({age} {state})",
        "--name",
        "gone",
        "--",
        "/nonexistent/cmd",
    ];
    for call in ["the miss", "the hit"] {
        let out = cache.run(&args);
        assert_eq!(out.status.code(), Some(127), "{call}: {out:?}");
        // The marker follows a stale or failing value only: not this one.
        assert_eq!(stdout(&out), "", "{call}: no marker");
        assert!(
            stderr(&out).contains("command not found"),
            "{call}: {out:?}"
        );
    }
    let stats = stdout(&cache.cacheback(&["stats", "--json", "gone"]));
    assert!(
        stats.contains("\"state\": \"fresh\""),
        "the entry is fresh: {stats}"
    );
}

/// `invalidate --refresh` refreshes a `--cache-failures` entry like any
/// other: the flag is part of the key, and the refresh is rebuilt from what
/// the entry recorded, so a refresh that lost the flag would compute another
/// key and give up, saying the inputs differ here (the entry's flag read as
/// unset survived the entry group's mutants). `show` lists the flag with the
/// key's other options.
#[test]
fn invalidate_refresh_reruns_a_cache_failures_entry() {
    let cache = Cache::new();
    let body = "echo run >> \"$W/count\"; echo \"v$(wc -l < \"$W/count\")\"";
    let args = [
        &["--ttl", "1h", "--cache-failures", "--name", "cf", "--"][..],
        &sh(body),
    ]
    .concat();
    assert_eq!(stdout(&cache.run(&args)), "v1\n");
    let shown = cache.cacheback(&["show", "--name", "cf"]);
    assert!(
        stdout(&shown).contains("--cache-failures"),
        "show does not list --cache-failures: {}",
        stdout(&shown)
    );
    let invalidated = cache.cacheback(&["invalidate", "--refresh", "--name", "cf"]);
    assert!(invalidated.status.success(), "{}", stderr(&invalidated));
    assert!(
        stdout(&invalidated).contains("refreshing in the background"),
        "{}",
        stdout(&invalidated)
    );
    assert!(
        wait_until(SETTLE, || cache.count("count") == 2),
        "the refresh never ran: {} runs",
        cache.count("count")
    );
    settle(&cache, "the refresh");
    assert_eq!(stdout(&cache.run(&args)), "v2\n");
    assert_eq!(cache.count("count"), 2, "the refreshed value is fresh");
}
