//! A small harness: a private cache dir, a scratch dir, and helpers to run
//! the real `cacheback` binary against them.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cacheback::store::entry::FINISHED_OFFSET;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cacheback");

/// One test's world: a cache directory and a scratch directory for fixtures.
pub struct Cache {
    root: tempfile::TempDir,
}

impl Cache {
    pub fn new() -> Cache {
        let root = tempfile::Builder::new()
            .prefix("cacheback-test-")
            .tempdir()
            .unwrap();
        fs::create_dir(root.path().join("work")).unwrap();
        Cache { root }
    }

    /// The cache directory (created by cacheback itself on first write).
    pub fn dir(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    /// The scratch directory; commands see it as `$W` and run in it.
    pub fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    /// A `cacheback` command with the cache dir and `$W` set.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env("CACHEBACK_DIR", self.dir())
            .env("W", self.work())
            .current_dir(self.work())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `cacheback run ARGS` to completion (at most [`CALL_LIMIT`]).
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().arg("run").args(args).bounded_output()
    }

    /// Starts `cacheback run ARGS` with stdout and stderr piped, without waiting.
    pub fn spawn_run(&self, args: &[&str]) -> Child {
        self.cmd()
            .arg("run")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs `cacheback ARGS` (any subcommand) to completion (at most [`CALL_LIMIT`]).
    #[track_caller]
    pub fn cacheback(&self, args: &[&str]) -> Output {
        self.cmd().args(args).bounded_output()
    }

    /// How many lines the command appended to `$W/NAME` (each run appends one).
    pub fn count(&self, name: &str) -> usize {
        fs::read_to_string(self.work().join(name))
            .map(|text| text.lines().count())
            .unwrap_or(0)
    }

    /// Files in the cache dir whose name ends with `suffix`.
    pub fn files(&self, suffix: &str) -> Vec<PathBuf> {
        let Ok(listing) = fs::read_dir(self.dir()) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = listing
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_string_lossy().ends_with(suffix))
            .collect();
        files.sort();
        files
    }

    /// The single entry file (panics unless exactly one exists).
    #[track_caller]
    pub fn entry(&self) -> PathBuf {
        let entries = self.files(".entry");
        assert_eq!(entries.len(), 1, "expected one entry, found {entries:?}");
        entries.into_iter().next().unwrap()
    }

    /// Makes the next run a stale hit whose refresh sees the fixture flag
    /// `$W/FLAG`: creates the flag file and makes every entry two hours old.
    pub fn stale_with_flag(&self, flag: &str) {
        fs::write(self.work().join(flag), "").unwrap();
        self.backdate(7200);
    }

    /// Makes every entry look `secs` older, by rewriting the finish time in its header.
    pub fn backdate(&self, secs: u64) {
        for path in self.files(".entry") {
            backdate_file(&path, secs);
        }
    }
}

/// Rewrites one entry's finish time `secs` into the past.
pub fn backdate_file(path: &Path, secs: u64) {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut bytes = [0u8; 8];
    file.read_exact_at(&mut bytes, FINISHED_OFFSET).unwrap();
    let finished = u64::from_le_bytes(bytes) - secs * 1000;
    file.write_all_at(&finished.to_le_bytes(), FINISHED_OFFSET)
        .unwrap();
}

/// The longest any one call of the binary may take in a test: far beyond
/// what a call needs on a busy machine, so reaching it means a hang, which
/// fails the test with the command line instead of stalling the suite.
pub const CALL_LIMIT: Duration = Duration::from_secs(120);

/// Deadlines for the standard library's waits on processes.
pub trait Bounded {
    /// `Command::output`, failing the test (after a kill) past [`CALL_LIMIT`].
    fn bounded_output(&mut self) -> Output;
}

impl Bounded for Command {
    /// Runs `Command::output` itself (so stdio set by the caller stays as
    /// set, and what is not set is piped) on a thread of its own, the command
    /// moved there and back; at the deadline the process (a child of ours
    /// with this command line) is killed and the test fails.
    #[track_caller]
    fn bounded_output(&mut self) -> Output {
        let what = format!("{self:?}");
        let mut argv: Vec<u8> = Vec::new();
        for part in std::iter::once(self.get_program()).chain(self.get_args()) {
            argv.extend_from_slice(part.as_encoded_bytes());
            argv.push(0);
        }
        let cmd = std::mem::replace(self, Command::new("true"));
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut cmd = cmd;
            let output = cmd.output();
            let _ = done.send((cmd, output));
        });
        match result.recv_timeout(CALL_LIMIT) {
            Ok((cmd, output)) => {
                *self = cmd;
                output.unwrap_or_else(|err| panic!("{what}: {err}"))
            }
            Err(_) => {
                for pid in children_running(&argv) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                panic!("{what} was still running after {CALL_LIMIT:?} (killed)")
            }
        }
    }
}

/// This process's children whose command line is `argv` (NUL-separated).
fn children_running(argv: &[u8]) -> Vec<u32> {
    let me = std::process::id().to_string();
    let Ok(listing) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    listing
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            let parent = fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .nth(1)
                    == Some(&me)
            });
            parent && fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|line| line == argv)
        })
        .collect()
}

/// Deadlines for waits on a started child.
pub trait BoundedChild {
    /// `Child::wait_with_output`, failing the test (after a kill) past [`CALL_LIMIT`].
    fn bounded_wait_with_output(self) -> Output;
}

impl BoundedChild for Child {
    #[track_caller]
    fn bounded_wait_with_output(self) -> Output {
        let what = format!("process {}", self.id());
        finish_within(self, CALL_LIMIT, &what)
    }
}

/// Waits for a started child and collects its output, as
/// `Child::wait_with_output` does, with a deadline: at `limit` it is killed
/// and the test fails, naming `what`.
#[track_caller]
pub fn finish_within(child: Child, limit: Duration, what: &str) -> Output {
    let pid = child.id();
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match result.recv_timeout(limit) {
        Ok(output) => output.unwrap_or_else(|err| panic!("{what}: {err}")),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("{what} was still running after {limit:?} (killed)")
        }
    }
}

/// `sh -c BODY` as arguments.
pub fn sh(body: &str) -> Vec<&str> {
    vec!["sh", "-c", body]
}

/// Polls `check` every 20 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// True while a process with this pid exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .chars()
                .next();
            state != Some('Z')
        }
        Err(_) => false,
    }
}

/// Reads a pid written by a fixture into `$W/NAME`, waiting for it to appear.
#[track_caller]
pub fn read_pid(cache: &Cache, name: &str) -> u32 {
    let path = cache.work().join(name);
    assert!(
        wait_until(Duration::from_secs(10), || fs::read_to_string(&path)
            .is_ok_and(|t| t.ends_with('\n'))),
        "{name} never appeared"
    );
    fs::read_to_string(&path).unwrap().trim().parse().unwrap()
}

/// A fixture's hold point: shell code that blocks until `$W/NAME` exists
/// (see [`Cache::open_gate`]), or about 30 s have passed, so that a run can be
/// kept in flight for exactly as long as a test needs, and a test that never
/// opens the gate still ends.
pub fn gate(name: &str) -> String {
    format!("i=0; while [ ! -e \"$W/{name}\" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done")
}

impl Cache {
    /// Lets every fixture blocked at [`gate`]`(name)` go on.
    pub fn open_gate(&self, name: &str) {
        fs::write(self.work().join(name), "").unwrap();
    }

    /// Live processes whose environment carries this cache's `$W`: every
    /// cacheback started through [`Cache::cmd`], every refresher it forked
    /// (a refresher exists before its caller exits) and every command they ran.
    pub fn processes(&self) -> Vec<u32> {
        processes_with_env(format!("W={}", self.work().display()).as_bytes())
    }

    /// Waits until no process of this cache is left (see [`Cache::processes`]),
    /// that is, every caller, refresher and command has finished; returns
    /// whether that happened within `limit`. After it, whatever was going to
    /// happen has happened, so "nothing else ran" can be asserted.
    pub fn settled(&self, limit: Duration) -> bool {
        wait_until(limit, || self.processes().is_empty())
    }
}

/// Whether `program` is installed. Without it a test that needs it is
/// skipped, saying so, so that `cargo test` works on a machine with only the
/// Rust toolchain; `.ci/run` installs every such program and sets
/// `CACHEBACK_TESTS_NEED_ALL=1`, which turns a missing one into a failure, so
/// CI can never pass by skipping.
pub fn installed(program: &str, test: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if !found {
        assert!(
            std::env::var_os("CACHEBACK_TESTS_NEED_ALL").is_none(),
            "{test}: `{program}` is not installed, and CACHEBACK_TESTS_NEED_ALL is set"
        );
        skipped(&format!(
            "{test}: `{program}` is not installed (.ci/run installs it)"
        ));
    }
    found
}

/// Says that a test skipped part or all of its work, where the user sees
/// it: on the real stderr, past the test runner's capture (which keeps the
/// output of a passing test to itself, `eprintln!` included), so the line
/// shows in `cargo test`'s output (`cargo test --release 2>&1 | grep SKIPPED`).
pub fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {why}");
}

/// Live processes whose environment holds the entry `var` (`NAME=value`),
/// however deep below the test they run: how a test finds every caller,
/// refresher and command it started.
pub fn processes_with_env(var: &[u8]) -> Vec<u32> {
    let Ok(listing) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    listing
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|&pid| alive(pid))
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|environ| environ.split(|&b| b == 0).any(|entry| entry == var))
        })
        .collect()
}

/// splitmix64: tiny, and good enough that consecutive seeds give unrelated
/// sequences. The model tests draw their operation sequences from it, so a
/// seed replays the same sequence in every one of them.
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..limit`.
    pub fn below(&mut self, limit: u64) -> u64 {
        self.next() % limit.max(1)
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A small xorshift generator for the randomized tests, reproducible from
/// the seed it prints.
pub struct Rng {
    state: u64,
    seed: u64,
}

impl Rng {
    /// Seeded from the environment variable `var` when set, else from the
    /// clock; prints the seed and how to replay it.
    pub fn seeded(var: &str, what: &str) -> Rng {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        println!("{what}: seed {seed} ({var}={seed} to repeat)");
        Rng { state: seed, seed }
    }

    /// The seed it started from, for failure messages.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    /// A number in `0..limit`.
    pub fn below(&mut self, limit: u64) -> u64 {
        self.next() % limit.max(1)
    }
}
