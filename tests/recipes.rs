//! Every recipe in README.md, run as its client runs it.
//!
//! The README promises that each recipe was run as shown. These tests read
//! README.md itself (never a copy), take each fenced block marked
//! `<!-- recipe: NAME -->`, and run it: prompt snippets sourced by bash and
//! zsh, tmux lines in a tmux server, the i3blocks block in i3blocks, the
//! crontab line under cron's environment, and the commands of the clients
//! that need a display (waybar, polybar, starship) through `sh -c`, as those
//! clients run them. cacheback is found where `cargo install` puts it: a copy
//! of the built binary in `$HOME/.cargo/bin`, with `HOME` a temp directory, so
//! the cache is `$HOME/.cache/cacheback` as for a user who set nothing.
//!
//! Bounds are behavioural and generous ("within 20 s"), never timings. A
//! client that is not installed makes its test print SKIPPED and pass (fail,
//! under `.ci/run`'s `CACHEBACK_TESTS_NEED_ALL=1`); every
//! process a test starts carries a marker variable, and all of them are
//! killed when the test's world is dropped, whether it passed or not.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{BIN, BoundedChild, backdate_file, installed, processes_with_env, wait_until};

/// How long a recipe may take to show its value, on a busy 2-core machine.
const LIMIT: Duration = Duration::from_secs(20);

/// Stands in for `apt-get` on a session's PATH (not on cron's): three
/// pending updates, after a second, so the bars' counts are known (3) and a
/// recipe that waits for the command shows it.
const APT_GET: &str = "#!/bin/sh\nsleep 1\nprintf 'Inst a\\nInst b\\nConf a\\nInst c\\n'\n";

/// How long the real `apt-get -s upgrade` may take, on a busy machine.
const APT_LIMIT: Duration = Duration::from_secs(120);

/// The recipes this file runs; README.md must mark exactly these.
const RECIPES: &[&str] = &[
    "bash",
    "zsh",
    "starship",
    "tmux",
    "i3blocks",
    "waybar",
    "polybar",
    "cron",
    "scripts-json",
    "scripts-stdin",
    "scripts-env",
    "man",
];

fn readme() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The marked names in README.md, in order.
fn marked_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("<!-- recipe:"))
        .filter_map(|rest| rest.strip_suffix("-->"))
        .map(|name| name.trim().to_owned())
        .collect()
}

/// The body of the fenced block that follows `<!-- recipe: NAME -->`.
#[track_caller]
fn recipe(name: &str) -> String {
    let text = readme();
    let marker = format!("<!-- recipe: {name} -->");
    let mut lines = text
        .lines()
        .skip_while(|line| line.trim() != marker)
        .skip(1);
    let fence = lines
        .by_ref()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_else(|| panic!("README.md has no recipe marked {marker}"));
    assert!(
        fence.starts_with("```"),
        "{marker} is not followed by a fenced block"
    );
    let body: Vec<&str> = lines.take_while(|line| line.trim() != "```").collect();
    body.join("\n") + "\n"
}

/// One recipe's world: a home directory with cacheback installed in
/// `~/.cargo/bin`, a work directory, and every process started from it.
struct World {
    root: tempfile::TempDir,
    /// Marker variable `CACHEBACK_RECIPE_TEST=<root>` carried by every process.
    marker: String,
    /// tmux servers to kill (by socket) when dropped.
    tmux_sockets: Vec<PathBuf>,
}

impl World {
    fn new() -> World {
        let root = tempfile::Builder::new()
            .prefix("cacheback-recipe-")
            .tempdir()
            .unwrap();
        let bin = root.path().join("home/.cargo/bin");
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(root.path().join("work")).unwrap();
        // A link, not a copy: a copy's file is open for writing while it is
        // written, and a child another test thread forks meanwhile inherits
        // that descriptor until it execs, so running the copy could fail
        // with ETXTBSY ("text file busy"), as it once did.
        std::os::unix::fs::symlink(BIN, bin.join("cacheback")).unwrap();
        let stubs = root.path().join("stubs");
        fs::create_dir_all(&stubs).unwrap();
        fs::write(stubs.join("apt-get"), APT_GET).unwrap();
        fs::set_permissions(stubs.join("apt-get"), fs::Permissions::from_mode(0o755)).unwrap();
        let marker = root.path().display().to_string();
        World {
            root,
            marker,
            tmux_sockets: Vec::new(),
        }
    }

    fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    fn path(&self) -> String {
        let outer = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        let root = self.root.path().display();
        format!("{root}/home/.cargo/bin:{root}/stubs:{outer}")
    }

    /// A command with a session's environment and nothing else: HOME, PATH
    /// with `~/.cargo/bin` first, a terminal, and the marker. Nothing of the
    /// test runner's own CACHEBACK_* or XDG_* variables gets through.
    fn session(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("HOME", self.home())
            .env("PATH", self.path())
            .env("SHELL", "/bin/sh")
            .env("TERM", "xterm-256color")
            .env("LANG", "C.UTF-8")
            .env("CACHEBACK_RECIPE_TEST", &self.marker)
            .current_dir(self.work())
            .stdin(Stdio::null());
        cmd
    }

    /// `sh -c LINE` in the session's environment.
    fn sh(&self, line: &str) -> Command {
        let mut cmd = self.session("/bin/sh");
        cmd.arg("-c").arg(line);
        cmd
    }

    /// `cacheback ARGS` as the user would type it, to inspect the cache.
    #[track_caller]
    fn cacheback(&self, args: &[&str]) -> Output {
        let mut cmd = self.session(
            &self
                .home()
                .join(".cargo/bin/cacheback")
                .display()
                .to_string(),
        );
        cmd.args(args);
        finish(cmd)
    }

    /// `cacheback stats --json`, parsed.
    #[track_caller]
    fn stats(&self) -> serde_json::Value {
        let output = self.cacheback(&["stats", "--json"]);
        assert!(
            output.status.success(),
            "stats failed: {}",
            text(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn cache_dir(&self) -> PathBuf {
        self.home().join(".cache/cacheback")
    }

    /// Makes every stored value `secs` older.
    fn age_entries(&self, secs: u64) {
        for entry in fs::read_dir(self.cache_dir()).unwrap().flatten() {
            if entry.path().extension().is_some_and(|ext| ext == "entry") {
                backdate_file(&entry.path(), secs);
            }
        }
    }

    /// Waits until no background refresh of this world is running.
    fn settle(&self) {
        wait_until(LIMIT, || {
            self.processes()
                .iter()
                .all(|pid| !comm(*pid).starts_with("cacheback") && comm(*pid) != "apt-get")
        });
    }

    /// Live processes carrying this world's marker.
    fn processes(&self) -> Vec<u32> {
        processes_with_env(format!("CACHEBACK_RECIPE_TEST={}", self.marker).as_bytes())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for socket in &self.tmux_sockets {
            let _ = Command::new("tmux")
                .arg("-S")
                .arg(socket)
                .arg("kill-server")
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.processes();
            if left.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in left {
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A process's name, from /proc.
fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd` to completion, failing the test if it takes longer than [`LIMIT`].
#[track_caller]
fn finish(cmd: Command) -> Output {
    finish_within(cmd, LIMIT)
}

/// Runs `cmd` to completion, failing the test if it takes longer than `limit`.
#[track_caller]
fn finish_within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.bounded_wait_with_output()
}

/// What [`poll`] saw.
struct Polled {
    /// Every stdout (trimmed at the end), the last one good unless time ran out.
    seen: Vec<String>,
    /// The last stderr.
    stderr: String,
}

impl Polled {
    fn first(&self) -> &str {
        &self.seen[0]
    }

    fn last(&self) -> &str {
        self.seen.last().unwrap()
    }
}

impl std::fmt::Display for Polled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} calls, first {:?}, last {:?}, last stderr {:?}",
            self.seen.len(),
            self.first(),
            self.last(),
            self.stderr
        )
    }
}

/// Runs `make()` until its stdout (trimmed) satisfies `good`, for up to [`LIMIT`].
#[track_caller]
fn poll(mut make: impl FnMut() -> Command, good: impl Fn(&str) -> bool) -> Polled {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let output = finish(make());
        let out = text(&output.stdout).trim_end().to_owned();
        assert!(
            output.status.success(),
            "{:?} exited {}: {}",
            make(),
            output.status,
            text(&output.stderr)
        );
        let done = good(&out);
        seen.push(out);
        if done || start.elapsed() > LIMIT {
            let stderr = text(&output.stderr);
            return Polled { seen, stderr };
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A git repository in the world's work directory, on branch `trunk`, with
/// two untracked files: `git status --porcelain | wc -l` prints 2.
fn git_repo(world: &World) -> PathBuf {
    let repo = world.work().join("repo");
    fs::create_dir_all(&repo).unwrap();
    let mut init = world.session("git");
    init.args(["init", "-q", "-b", "trunk"]).current_dir(&repo);
    assert!(finish(init).status.success(), "git init failed");
    fs::write(repo.join("a"), "a\n").unwrap();
    fs::write(repo.join("b"), "b\n").unwrap();
    repo
}

fn is_count(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

// ---------------------------------------------------------------- the list

#[test]
fn readme_marks_exactly_the_tested_recipes() {
    let marked = marked_names(&readme());
    let unique: BTreeSet<&str> = marked.iter().map(String::as_str).collect();
    assert_eq!(
        unique.len(),
        marked.len(),
        "a recipe name is used twice: {marked:?}"
    );
    let tested: BTreeSet<&str> = RECIPES.iter().copied().collect();
    assert_eq!(
        unique, tested,
        "README.md's recipes and the tests here differ"
    );
    for name in RECIPES {
        assert!(!recipe(name).trim().is_empty(), "recipe {name} is empty");
    }
}

// ---------------------------------------------------------------- prompts

/// Sources a prompt snippet in `shell` and expands the prompt with
/// `expand` in `dir`, until the git count appears; then ages the entry and
/// expects the stale marker after the count.
fn prompt_recipe(name: &str, shell: &str, expand: &str) {
    if !installed(shell, name) || !installed("git", name) {
        return;
    }
    let world = World::new();
    let repo = git_repo(&world);
    let rc = world.home().join(format!(".{name}rc"));
    fs::write(&rc, recipe(name)).unwrap();
    let script = format!(". '{}'; {expand}", rc.display());
    let prompt = || {
        let mut cmd = world.session(shell);
        cmd.arg("-c").arg(&script).current_dir(&repo);
        cmd
    };
    // "DIR COUNT SIGIL": the count is empty on the first visit (--no-wait),
    // then 2, from the cache.
    let count = |out: &str| out.split_whitespace().nth(1).map(str::to_owned);
    let polled = poll(prompt, |out| count(out).as_deref() == Some("2"));
    assert_eq!(
        count(polled.last()).as_deref(),
        Some("2"),
        "the {name} prompt never showed the count of changed files: {polled}"
    );
    let first = polled.first();
    assert!(
        first.split_whitespace().count() == 2 || count(first).as_deref() == Some("2"),
        "the first {name} prompt showed something other than nothing or the count: {polled}"
    );
    world.settle();

    world.age_entries(3600);
    let out = finish(prompt());
    assert_eq!(
        count(&text(&out.stdout)).as_deref(),
        Some("2*"),
        "a stale count in the {name} prompt lacks its marker: {out:?}"
    );
    world.settle();

    // Outside a repository the function prints nothing: not on the first
    // visit, and not once its (empty) value is cached.
    let outside = world.work().join("notes");
    fs::create_dir_all(&outside).unwrap();
    let function = format!(". '{}'; git_changes", rc.display());
    for visit in ["first", "cached"] {
        let mut cmd = world.session(shell);
        cmd.arg("-c").arg(&function).current_dir(&outside);
        let out = finish(cmd);
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "the {name} prompt's function printed {:?} outside a git repository ({visit} \
             visit): {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        world.settle();
    }
}

#[test]
fn bash_prompt() {
    prompt_recipe("bash", "bash", r#"printf '%s\n' "${PS1@P}""#);
}

#[test]
fn zsh_prompt() {
    prompt_recipe("zsh", "zsh", r#"print -rP -- "$PROMPT""#);
}

// ---------------------------------------------------------------- starship

/// The string value of `key = "..."` in a TOML or INI snippet.
#[track_caller]
fn value(snippet: &str, key: &str, sep: &str) -> String {
    let line = snippet
        .lines()
        .find_map(|line| line.trim().strip_prefix(&format!("{key}{sep}")))
        .unwrap_or_else(|| panic!("no `{key}` in {snippet}"));
    let line = line.trim();
    match line.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        Some(quoted) => {
            assert!(!quoted.contains('\\'), "unexpected escape in {line}");
            quoted.to_owned()
        }
        None => line.to_owned(),
    }
}

#[test]
fn starship_module() {
    if !installed("cargo", "starship") {
        return;
    }
    let snippet = recipe("starship");
    assert!(snippet.contains("[custom.deps]"), "{snippet}");
    assert!(value(&snippet, "detect_files", " = ").contains("\"Cargo.lock\""));
    let command = value(&snippet, "command", " = ");

    let world = World::new();
    let project = world.work().join("demo");
    // Two direct dependencies (one of them also depends on the other), a
    // dev-dependency and a build-dependency: the module says "2 deps".
    let krate = |dir: &Path, name: &str, extra: &str| {
        fs::create_dir_all(dir.join("src")).unwrap();
        fs::write(
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n{extra}"
            ),
        )
        .unwrap();
        fs::write(dir.join("src/lib.rs"), "").unwrap();
    };
    krate(&project.join("one"), "one", "");
    krate(
        &project.join("two"),
        "two",
        "[dependencies]\none = { path = \"../one\" }\n",
    );
    krate(&project.join("tester"), "tester", "");
    krate(&project.join("builder"), "builder", "");
    krate(
        &project,
        "demo",
        "[dependencies]\none = { path = \"one\" }\ntwo = { path = \"two\" }\n\n\
         [dev-dependencies]\ntester = { path = \"tester\" }\n\n\
         [build-dependencies]\nbuilder = { path = \"builder\" }\n\n[workspace]\n",
    );
    // cargo and rustup live in the real home: point them there.
    let real_home = std::env::var("HOME").unwrap_or_default();
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or(format!("{real_home}/.cargo"));
    let rustup_home = std::env::var("RUSTUP_HOME").unwrap_or(format!("{real_home}/.rustup"));
    let starship = || {
        let mut cmd = world.sh(&command);
        cmd.current_dir(&project)
            .env("CARGO_HOME", &cargo_home)
            .env("RUSTUP_HOME", &rustup_home)
            .env("CARGO_NET_OFFLINE", "true");
        cmd
    };
    let mut lock = world.session("cargo");
    lock.args(["generate-lockfile", "--offline"])
        .current_dir(&project)
        .env("CARGO_HOME", &cargo_home)
        .env("RUSTUP_HOME", &rustup_home);
    let locked = finish(lock);
    assert!(
        locked.status.success(),
        "cargo generate-lockfile: {}",
        text(&locked.stderr)
    );

    let polled = poll(starship, is_count);
    assert_eq!(
        polled.last(),
        "2",
        "the module never showed the count of direct dependencies: {polled}"
    );
    world.settle();

    // A checkout that touches Cargo.lock without changing it keeps the entry
    // (--hash); new content makes a new one.
    let file = fs::File::options()
        .append(true)
        .open(project.join("Cargo.lock"))
        .unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    let out = finish(starship());
    assert!(
        is_count(text(&out.stdout).trim()),
        "touched Cargo.lock: {out:?}"
    );
    assert_eq!(
        world.stats()["entries"].as_array().unwrap().len(),
        1,
        "a touch made a new entry"
    );
    fs::write(
        project.join("Cargo.lock"),
        fs::read_to_string(project.join("Cargo.lock")).unwrap() + "\n",
    )
    .unwrap();
    finish(starship());
    world.settle();
    assert_eq!(
        world.stats()["entries"].as_array().unwrap().len(),
        2,
        "new content kept the entry"
    );
}

// ---------------------------------------------------------------- status bars

/// Runs a bar's command line through `sh -c` as the bar does: the
/// placeholder (or the count) at once, the count within the limit, and a
/// stale count with its age after it.
fn bar_command(world: &World, name: &str, line: &str) {
    let polled = poll(|| world.sh(line), |out| out == "3");
    assert_eq!(
        polled.last(),
        "3",
        "{name}: the count never appeared: {polled}"
    );
    assert_eq!(
        polled.first(),
        "…",
        "{name}: the first call should print the placeholder at once: {polled}"
    );
    world.settle();
    world.age_entries(2 * 3600);
    let out = text(&finish(world.sh(line)).stdout);
    let (count, marker) = out.trim_end().split_once(' ').unwrap_or((&out, ""));
    assert!(
        count == "3" && marker.starts_with("(2h") && marker.ends_with(" old)"),
        "{name}: a stale count should read `N (2h… old)`: {out:?}"
    );
    assert!(
        !out.contains('{'),
        "{name}: the marker was not expanded: {out:?}"
    );
    world.settle();
}

#[test]
fn waybar_module() {
    let snippet = recipe("waybar");
    let json: String = snippet
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let config: serde_json::Value = serde_json::from_str(&format!("{{{json}}}"))
        .unwrap_or_else(|e| panic!("the waybar snippet is not JSON with comments: {e}"));
    let module = &config["custom/updates"];
    assert_eq!(module["signal"], 8, "{snippet}");
    let exec = module["exec"].as_str().unwrap();
    assert!(exec.contains("pkill -RTMIN+8 waybar"), "{exec}");
    bar_command(&World::new(), "waybar", exec);
}

#[test]
fn polybar_module() {
    let snippet = recipe("polybar");
    assert_eq!(value(&snippet, "type", " = "), "custom/script");
    bar_command(&World::new(), "polybar", &value(&snippet, "exec", " = "));
}

#[test]
fn tmux_status_line() {
    if !installed("tmux", "tmux") || !installed("git", "tmux") {
        return;
    }
    let mut world = World::new();
    let repo = git_repo(&world);
    let conf = world.home().join(".tmux.conf");
    fs::write(&conf, recipe("tmux")).unwrap();
    // A client must be attached for tmux to run the status line's jobs: the
    // client runs in a pane of a second server, whose pane is then captured.
    let (inner, outer) = (world.work().join("in.sock"), world.work().join("out.sock"));
    world.tmux_sockets.extend([inner.clone(), outer.clone()]);
    let tmux = |socket: &Path, args: &[&str]| {
        let mut cmd = world.session("tmux");
        cmd.arg("-S").arg(socket).args(args);
        let output = finish(cmd);
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            text(&output.stderr)
        );
        text(&output.stdout)
    };
    let inner_arg = inner.display().to_string();
    let conf_arg = conf.display().to_string();
    let repo_arg = repo.display().to_string();
    tmux(
        &inner,
        &[
            "-f",
            &conf_arg,
            "new-session",
            "-d",
            "-s",
            "t",
            "-c",
            &repo_arg,
        ],
    );
    let attach = format!("env -u TMUX tmux -S '{inner_arg}' attach -t t");
    tmux(
        &outer,
        &[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "o",
            "-x",
            "120",
            "-y",
            "5",
            &attach,
        ],
    );
    let status = || {
        tmux(&outer, &["capture-pane", "-p", "-t", "o"])
            .lines()
            .last()
            .unwrap_or("")
            .trim_end()
            .to_owned()
    };
    let good = |line: &str| line.ends_with(" 3 updates | trunk");
    let mut last = String::new();
    let shown = wait_until(LIMIT, || {
        last = status();
        good(&last)
    });
    assert!(
        shown,
        "tmux's status line never showed `3 updates | trunk`: {last:?}"
    );
    world.settle();
}

#[test]
fn i3blocks_block() {
    if !installed("i3blocks", "i3blocks") || !installed("pkill", "i3blocks") {
        return;
    }
    let world = World::new();
    let conf = world.home().join("i3blocks.conf");
    let snippet = recipe("i3blocks");
    fs::write(&conf, &snippet).unwrap();
    let interval: u64 = value(&snippet, "interval", "=").parse().unwrap();
    // i3bar writes click events to i3blocks' stdin: give it an open pipe.
    let mut child = world
        .session("i3blocks")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if send.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    // Each status line is a JSON array of blocks (after a header and "[").
    let block = |line: &str| -> Option<String> {
        let blocks: serde_json::Value = serde_json::from_str(line.trim_start_matches(',')).ok()?;
        blocks
            .as_array()?
            .iter()
            .find(|b| b["name"] == "updates")
            .map(|b| b["full_text"].as_str().unwrap_or("").to_owned())
    };
    let start = Instant::now();
    let mut shown = Vec::new();
    while start.elapsed() < LIMIT {
        let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if let Some(full_text) = block(&line) {
            shown.push(full_text.clone());
            if full_text == "updates: 3" {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(!shown.is_empty(), "i3blocks never drew the block");
    assert_eq!(
        shown[0], "updates: …",
        "the block's first state should be the placeholder: {shown:?}"
    );
    assert!(
        shown.last().unwrap() == "updates: 3",
        "the count did not appear within {LIMIT:?} (the interval is {interval} s: \
         --on-refresh should have signalled i3blocks): {shown:?}"
    );
    world.settle();
}

// ---------------------------------------------------------------- cron

/// The crontab's variable lines and its jobs' commands.
fn crontab(snippet: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut vars = Vec::new();
    let mut jobs = Vec::new();
    for line in snippet.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap();
        // `NAME=value` alone on its line sets a variable for the jobs below.
        if let Some((name, value)) = first.split_once('=')
            && line.split_whitespace().count() == 1
        {
            vars.push((name.to_owned(), value.to_owned()));
            continue;
        }
        // Five time fields, then the command, spacing kept.
        let mut rest = line;
        for _ in 0..5 {
            rest = rest.trim_start();
            rest = &rest[rest
                .find(char::is_whitespace)
                .expect("a job needs a command")..];
        }
        let command = rest.trim().to_owned();
        assert!(
            !command.replace("\\%", "").contains('%'),
            "cron turns an unescaped % into a newline: {command}"
        );
        jobs.push(command);
    }
    (vars, jobs)
}

#[test]
fn cron_job_under_crons_environment() {
    let world = World::new();
    let (vars, jobs) = crontab(&recipe("cron"));
    assert!(!jobs.is_empty(), "the cron recipe has no job");
    for job in &jobs {
        // What cron gives a job: `env -i PATH=/usr/bin:/bin HOME=... SHELL=/bin/sh`,
        // plus the crontab's own variable lines.
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(job)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", world.home())
            .env("SHELL", "/bin/sh")
            .env("LOGNAME", "cron")
            .env("CACHEBACK_RECIPE_TEST", &world.marker)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .current_dir(world.home())
            .stdin(Stdio::null());
        // The system's own `apt-get -s upgrade` runs here (cron's PATH has
        // no stub): seconds on a quiet machine, much longer on a busy one.
        let output = finish_within(cmd, APT_LIMIT);
        assert!(
            output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
            "under cron's environment `{job}` exited {} and cron would mail: {}{}",
            output.status,
            text(&output.stdout),
            text(&output.stderr)
        );
    }
    world.settle();
    // It filled the entry the bars read: their next call is a fresh hit.
    let stats = world.stats();
    let entries = stats["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["name"] == "updates" && e["state"] == "fresh"),
        "cron stored no fresh `updates` entry: {stats}"
    );
    let totals = |stats: serde_json::Value| {
        let totals = &stats["totals"];
        (
            totals["hits"].as_u64().unwrap(),
            totals["misses"].as_u64().unwrap(),
        )
    };
    let (hits, misses) = totals(stats);
    let bar = value(&recipe("i3blocks"), "command", "=");
    let out = finish(world.sh(&bar));
    assert!(
        is_count(text(&out.stdout).trim_end()),
        "the bar did not get cron's value at once: {out:?}"
    );
    assert_eq!(
        totals(world.stats()),
        (hits + 1, misses),
        "the bar's call was not a hit on cron's entry"
    );
}

// ---------------------------------------------------------------- scripts

/// The recipe's lines that are commands (not comments or blank).
fn command_lines(snippet: &str) -> Vec<String> {
    snippet
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn scripts_on_stats_json() {
    if !installed("jq", "scripts-json") {
        return;
    }
    let world = World::new();
    for args in [
        &["run", "--ttl", "1h", "--name", "good", "--", "echo", "hi"][..],
        &["run", "--ttl", "1h", "--name", "good", "--", "echo", "hi"],
        &[
            "run",
            "--ttl",
            "1h",
            "--name",
            "bad",
            "--cache-failures",
            "--",
            "sh",
            "-c",
            "exit 3",
        ],
    ] {
        world.cacheback(args);
    }
    let lines = command_lines(&recipe("scripts-json"));
    assert_eq!(lines.len(), 2, "{lines:?}");
    let failing = finish(world.sh(&lines[0]));
    assert_eq!(
        text(&failing.stdout),
        "bad exited 3\n",
        "{}",
        text(&failing.stderr)
    );
    let rate = finish(world.sh(&lines[1]));
    assert_eq!(
        text(&rate.stdout),
        "hit rate 33%\n",
        "{}",
        text(&rate.stderr)
    );
}

#[test]
fn scripts_keyed_on_stdin() {
    let world = World::new();
    let lines = command_lines(&recipe("scripts-stdin"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    let book = world.work().join("book.txt");
    let words = |out: &Output| -> Vec<String> {
        text(&out.stdout)
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    fs::write(&book, "the cat and the dog, and the end\n").unwrap();
    let first = finish(world.sh(&lines[0]));
    assert_eq!(
        words(&first).get(..2),
        Some(&["3 the".to_owned(), "2 and".to_owned()][..]),
        "{first:?}"
    );
    let again = finish(world.sh(&lines[0]));
    assert_eq!(again.stdout, first.stdout);
    fs::write(&book, "fish, fish and more fish\n").unwrap();
    let other = finish(world.sh(&lines[0]));
    assert_eq!(
        words(&other).first().map(String::as_str),
        Some("3 fish"),
        "another text was not another entry: {other:?}"
    );
    let totals = &world.stats()["totals"];
    assert_eq!(
        (totals["entries"].as_u64(), totals["hits"].as_u64()),
        (Some(2), Some(1))
    );
}

#[test]
fn scripts_with_environment_defaults() {
    let world = World::new();
    let script = world.work().join("report.sh");
    fs::write(&script, recipe("scripts-env")).unwrap();
    let run = || {
        let mut cmd = world.session("/bin/sh");
        cmd.arg(&script);
        let output = finish(cmd);
        assert!(
            output.status.success(),
            "report.sh: {}",
            text(&output.stderr)
        );
        output.stdout
    };
    let first = run();
    assert_eq!(run(), first, "the second run was not served from the cache");
    let stats = world.stats();
    let mut ttls: Vec<u64> = stats["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ttl_secs"].as_u64().unwrap())
        .collect();
    ttls.sort();
    assert_eq!(
        ttls,
        [3600, 86400],
        "CACHEBACK_TTL or the --ttl that wins: {stats}"
    );
    assert_eq!(stats["totals"]["hits"], 2);
    // The scope is part of the key: the same command without it is a miss.
    world.cacheback(&["run", "--ttl", "1h", "--", "uname", "-sr"]);
    assert_eq!(
        world.stats()["totals"]["entries"],
        3,
        "CACHEBACK_SCOPE did not key the entries"
    );
}

// ---------------------------------------------------------------- man pages

#[test]
fn man_pages_where_the_readme_puts_them() {
    if !installed("man", "man") {
        return;
    }
    let world = World::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lines = command_lines(&recipe("man"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    let mut cmd = world.sh(&lines[0]);
    cmd.current_dir(repo);
    let output = finish(cmd);
    let page = world.home().join(".cargo/share/man/man1/cacheback.1");
    assert_eq!(
        text(&output.stdout).trim_end(),
        page.display().to_string(),
        "man did not find the page the README installs: {}",
        text(&output.stderr)
    );
}

// ---------------------------------------------------------------- links

/// GitHub's anchor for a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut found = BTreeSet::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            found.insert(slug(line.trim_start_matches('#')));
        }
    }
    found
}

/// Markdown without its fenced blocks and inline code, where `](` is not a link.
fn prose(markdown: &str) -> String {
    let mut fenced = false;
    let mut out = String::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            let outside: Vec<&str> = line.split('`').step_by(2).collect();
            out.push_str(&outside.join(" "));
            out.push('\n');
        }
    }
    out
}

#[test]
fn relative_links_resolve() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    if let Ok(docs) = fs::read_dir(root.join("docs")) {
        files.extend(
            docs.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "md")),
        );
    }
    let mut broken = Vec::new();
    for file in &files {
        let markdown = prose(&fs::read_to_string(file).unwrap());
        for target in markdown
            .split("](")
            .skip(1)
            .filter_map(|s| s.split(')').next())
        {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let linked = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !linked.exists() {
                broken.push(format!("{}: {target} (no such file)", file.display()));
            } else if !anchor.is_empty() && linked.extension().is_some_and(|e| e == "md") {
                let text = fs::read_to_string(&linked).unwrap();
                if !anchors(&text).contains(anchor) {
                    broken.push(format!("{}: {target} (no such heading)", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
