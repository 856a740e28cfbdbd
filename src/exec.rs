//! Running the wrapped command: capture, streaming, time limits and signals.
//!
//! The command gets its own process group, so a time limit or a forwarded
//! signal reaches its grandchildren too. One thread `poll`s its stdout and
//! stderr, forwards the bytes to the caller as they arrive (on a foreground
//! miss) and captures them for the entry; no helper threads, because starting
//! three of them was a third of a miss's overhead here. A pipe whose
//! destinations have all failed is closed, so a command writing into the void
//! gets EPIPE instead of running on.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::exit_codes;
use crate::output;
use crate::store::StderrSource;

/// Grace period between SIGTERM and SIGKILL when a time limit is reached.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for pipes to close after the group was killed, in case a
/// descendant escaped the group while holding them.
const PIPE_GRACE: Duration = Duration::from_secs(1);
/// Bytes moved per read from the command's pipes. Larger buffers bought no
/// throughput but cost a miss page faults for memory that is zeroed first.
const PUMP_CHUNK: usize = 16 * 1024;
/// How often to look for the command's exit once its pipes are closed but it
/// still runs (it closed them itself); only that rare case polls.
const EXIT_POLL: Duration = Duration::from_millis(10);
/// Reads of already-buffered stderr taken after a run has ended (a pipe
/// holds 64 KiB by default; this allows 1 MiB).
const DRAIN_READS: usize = 64;
/// Stderr kept in memory before it spills to an unnamed temp file.
const STDERR_MEMORY_LIMIT: usize = 1 << 20;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// The command exited with this status.
    Exited(i32),
    /// The command was killed by this signal.
    Signaled(i32),
    /// The time limit was reached and the process group killed.
    TimedOut,
    /// cacheback received this signal and forwarded it; the result is void.
    Interrupted(i32),
}

impl Termination {
    /// The shell-style exit status a caller sees for this ending.
    pub fn exit_code(self) -> i32 {
        match self {
            Termination::Exited(code) => code,
            Termination::Signaled(signal) | Termination::Interrupted(signal) => {
                i32::from(exit_codes::SIGNAL_BASE) + signal
            }
            Termination::TimedOut => i32::from(exit_codes::TIMED_OUT),
        }
    }

    /// True for a clean exit with status 0.
    pub fn succeeded(self) -> bool {
        self == Termination::Exited(0)
    }
}

/// The outcome of one run.
#[derive(Debug)]
pub struct Outcome {
    /// How it ended.
    pub termination: Termination,
    /// When it finished, in milliseconds since the epoch, on cacheback's one
    /// clock ([`crate::clock::now_ms`]), as every other time it stores.
    pub finished_ms: u64,
    /// How long it ran.
    pub duration: Duration,
    /// Bytes of stdout captured.
    pub stdout_len: u64,
    /// The captured stderr.
    pub stderr: Capture,
    /// The first error met while capturing, if any: the capture is then incomplete.
    pub capture_error: Option<io::Error>,
    /// Why forwarding stdout to the caller failed, if it did for a reason
    /// other than a reader that went away; the caller did not get everything.
    pub stdout_error: Option<io::Error>,
}

/// What to run and where its output goes.
pub struct Invocation<'a> {
    /// The command and its arguments.
    pub argv: &'a [OsString],
    /// Kill the run after this long.
    pub timeout: Option<Duration>,
    /// Stream output to our own stdout and stderr as it arrives.
    pub forward: bool,
    /// Where to capture stdout (the entry being written), if anywhere; it is
    /// flushed when the output ends.
    pub stdout_capture: Option<&'a mut dyn Write>,
    /// Capture stderr, spilling to this directory when it outgrows memory;
    /// `None` captures no stderr (the result will not be stored).
    pub stderr_spill_dir: Option<PathBuf>,
}

/// Set once a command was started here in the foreground, its output
/// going to the caller: its failure is then the caller's to read about, and
/// worth a hint when the command line shows what went wrong.
static RAN_IN_FOREGROUND: AtomicBool = AtomicBool::new(false);

/// Whether this process started a command in the foreground (see [`run`]).
pub fn ran_in_foreground() -> bool {
    RAN_IN_FOREGROUND.load(Ordering::Relaxed)
}

/// Process group of the running command, for the signal handler (0: none yet).
static CHILD_GROUP: AtomicI32 = AtomicI32::new(0);
/// The first terminating signal cacheback received during the run (0: none).
static RECEIVED_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(signal: libc::c_int) {
    let _ = RECEIVED_SIGNAL.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    let group = CHILD_GROUP.load(Ordering::SeqCst);
    if group > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(-group, signal) };
    }
}

/// Makes SIGINT, SIGTERM, SIGHUP and SIGQUIT reach the command's process group
/// instead of ending cacheback, so cacheback can clean up and report 128+N.
fn forward_terminating_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: installing a handler that only touches atomics and calls kill.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = forward_signal as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// One of the command's output pipes and where its bytes go.
struct Stream<'a> {
    pipe: Option<File>,
    forward: Option<&'a File>,
    capture: Option<&'a mut dyn Write>,
    bytes: u64,
    capture_error: Option<io::Error>,
    forward_error: Option<io::Error>,
}

impl Stream<'_> {
    /// Moves what one read brings; closes the pipe at its end, or when no
    /// destination is left.
    fn pump(&mut self, buf: &mut [u8]) {
        let Some(pipe) = &self.pipe else { return };
        let n = match (&*pipe).read(buf) {
            Ok(0) => return self.close(),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => return,
            Err(err) => {
                self.capture_error.get_or_insert(err);
                return self.close();
            }
        };
        let chunk = &buf[..n];
        if let Some(out) = self.forward
            && let Err(err) = output::write_all(out, chunk)
        {
            // Keep capturing for the cache either way. A reader that went
            // away (`| head -1`) chose to; anything else is reported at the end.
            if !output::is_broken_pipe(&err) {
                self.forward_error.get_or_insert(err);
            }
            self.forward = None;
        }
        if let Some(sink) = self.capture.as_mut() {
            match sink.write_all(chunk) {
                Ok(()) => self.bytes += n as u64,
                Err(err) => {
                    self.capture_error.get_or_insert(err);
                    self.capture = None;
                }
            }
        }
        if self.forward.is_none() && self.capture.is_none() {
            self.close();
        }
    }

    fn close(&mut self) {
        self.pipe = None;
    }
}

/// Where the time limit stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// Running normally (with or without a deadline).
    Running,
    /// SIGTERM sent at the deadline.
    Terminated,
    /// SIGKILL sent after the grace period.
    Killed,
    /// Pipes still open after the kill: a descendant escaped; stop reading.
    GaveUp,
}

/// Runs the command to completion (or its time limit) and reports how it went.
///
/// A run ends when the command itself has exited and its stdout is closed:
/// like `$(...)`, it waits for a background process that still holds stdout,
/// because what it prints belongs to the output. Stderr is read until then,
/// plus what is already in the pipe; a background process that holds only
/// stderr (`sleep 60 >/dev/null &`) is not waited for. A time limit covers
/// all of it: at the deadline the process group is sent SIGTERM, then SIGKILL
/// after a grace period if the command still runs; once the command itself
/// has exited there is nothing to wait for, and the run ends at once.
pub fn run(invocation: Invocation<'_>) -> Result<Outcome> {
    let program = &invocation.argv[0];
    forward_terminating_signals();
    let start = Instant::now();
    // With nothing to capture, the command writes to our stdout and stderr
    // itself: no pipes, no copies, and its own exit status tells of write errors.
    let pass_through = invocation.stdout_capture.is_none() && invocation.stderr_spill_dir.is_none();
    let output = || {
        if pass_through {
            Stdio::inherit()
        } else {
            Stdio::piped()
        }
    };
    let mut command = Command::new(program);
    command
        .args(&invocation.argv[1..])
        .stdin(command_stdin()?)
        .stdout(output())
        .stderr(output())
        .process_group(0);
    hide_store_credentials(&mut command);
    #[cfg(target_os = "linux")]
    if !invocation.forward {
        // A background run whose refresher is killed (`kill -9`) loses its
        // lock, and the next stale hit may start another: the command must
        // not outlive it and run twice at once. Only in the background: a
        // `pre_exec` hook makes std fork instead of posix_spawn, which costs
        // a foreground miss time the user waits for.
        let parent = std::process::id();
        // SAFETY: prctl and getppid are async-signal-safe and touch only the child.
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // Killed before the line above took effect: too late for it.
                if libc::getppid() as u32 != parent {
                    libc::_exit(i32::from(exit_codes::SIGNAL_BASE) + libc::SIGKILL);
                }
                Ok(())
            });
        }
    }
    if invocation.forward {
        RAN_IN_FOREGROUND.store(true, Ordering::Relaxed);
    }
    let mut child = command
        .spawn()
        .map_err(|err| spawn_error(invocation.argv, err))?;
    let group = child.id() as i32;
    CHILD_GROUP.store(group, Ordering::SeqCst);
    let early = RECEIVED_SIGNAL.load(Ordering::SeqCst);
    if early != 0 {
        // SAFETY: signalling the group we just created.
        unsafe { libc::kill(-group, early) };
    }

    let forward_out = invocation.forward.then(output::stdout);
    let forward_err = invocation.forward.then(output::stderr);
    let mut stdout_capture = invocation.stdout_capture;
    let mut stderr_capture = invocation.stderr_spill_dir.map(Capture::new);
    let mut streams = [
        Stream {
            pipe: child
                .stdout
                .take()
                .map(|pipe| File::from(std::os::fd::OwnedFd::from(pipe))),
            forward: forward_out.as_deref(),
            capture: stdout_capture
                .as_mut()
                .map(|sink| &mut **sink as &mut dyn Write),
            bytes: 0,
            capture_error: None,
            forward_error: None,
        },
        Stream {
            pipe: child
                .stderr
                .take()
                .map(|pipe| File::from(std::os::fd::OwnedFd::from(pipe))),
            forward: forward_err.as_deref(),
            capture: stderr_capture.as_mut().map(|c| c as &mut dyn Write),
            bytes: 0,
            capture_error: None,
            forward_error: None,
        },
    ];
    let mut deadline = invocation.timeout.map(|limit| start + limit);
    let mut limit = Limit::Running;
    let mut status: Option<ExitStatus> = None;
    let mut finished = None;
    let mut buf = vec![0u8; PUMP_CHUNK];
    loop {
        let stdout_open = streams[0].pipe.is_some();
        let stderr_open = streams[1].pipe.is_some();
        if status.is_none() && !stdout_open && limit != Limit::GaveUp {
            // Stdout is done: only the command's exit is missing. Block for it
            // when nothing else needs watching, else look between reads.
            status = if stderr_open {
                child.try_wait().map_err(wait_failed)?
            } else {
                reap(&mut child, deadline)?
            };
            if status.is_some() {
                finished = Some((crate::clock::now_ms(), start.elapsed()));
            }
        }
        if status.is_some() && !stdout_open {
            // Done: take what stderr already holds, but wait for nobody.
            drain(&mut streams[1], &mut buf);
            break;
        }
        if limit == Limit::GaveUp {
            break;
        }
        let open: Vec<usize> = (0..2).filter(|&i| streams[i].pipe.is_some()).collect();
        let mut wait = deadline.map(|at| at.saturating_duration_since(Instant::now()));
        if !stdout_open && status.is_none() {
            // Watching stderr while the command may exit any moment.
            wait = Some(wait.map_or(EXIT_POLL, |w| w.min(EXIT_POLL)));
        }
        let ready = wait_readable(&streams, &open, wait)?;
        for &i in &ready {
            streams[i].pump(&mut buf);
        }
        if ready.is_empty() && deadline.is_some_and(|at| Instant::now() >= at) {
            if status.is_none() {
                status = child.try_wait().map_err(wait_failed)?;
                if status.is_some() {
                    finished = Some((crate::clock::now_ms(), start.elapsed()));
                }
            }
            let (signal, next, grace) = match limit {
                // The command itself is gone; what holds its output escaped
                // or outlived it: signal what is left, wait no longer.
                _ if status.is_some() => (libc::SIGTERM, Limit::GaveUp, Duration::ZERO),
                Limit::Running => (libc::SIGTERM, Limit::Terminated, KILL_GRACE),
                Limit::Terminated => (libc::SIGKILL, Limit::Killed, PIPE_GRACE),
                Limit::Killed | Limit::GaveUp => (0, Limit::GaveUp, Duration::ZERO),
            };
            if signal != 0 {
                // SAFETY: signalling the command's own process group.
                unsafe { libc::kill(-group, signal) };
            }
            limit = next;
            deadline = Some(Instant::now() + grace);
        }
    }
    if status.is_none() {
        // Gave up after the kill: whatever still runs escaped it.
        status = child.try_wait().ok().flatten();
    }
    let timed_out = limit != Limit::Running;
    let [stdout, stderr] = streams;
    let stdout_len = stdout.bytes;
    let stdout_error = stdout.forward_error;
    let mut capture_error = stdout.capture_error.or(stderr.capture_error);
    if let Some(sink) = stdout.capture
        && let Err(err) = sink.flush()
    {
        capture_error.get_or_insert(err);
    }
    if stdout.pipe.is_some() {
        capture_error.get_or_insert(io::Error::other("output was still open at the time limit"));
    }
    CHILD_GROUP.store(0, Ordering::SeqCst);
    let (finished_ms, duration) =
        finished.unwrap_or_else(|| (crate::clock::now_ms(), start.elapsed()));
    let signal = RECEIVED_SIGNAL.load(Ordering::SeqCst);
    let termination = if signal != 0 {
        Termination::Interrupted(signal)
    } else if timed_out {
        Termination::TimedOut
    } else {
        match status {
            Some(status) => match (status.code(), status.signal()) {
                (Some(code), _) => Termination::Exited(code),
                (None, Some(signal)) => Termination::Signaled(signal),
                (None, None) => Termination::Exited(i32::from(exit_codes::FAILURE)),
            },
            None => Termination::TimedOut,
        }
    };
    Ok(Outcome {
        termination,
        finished_ms,
        duration,
        stdout_len,
        stderr: stderr_capture.unwrap_or_default(),
        capture_error,
        stdout_error,
    })
}

fn wait_failed(err: io::Error) -> Error {
    Error::io("waiting for the command", err)
}

/// Pumps what a stream's pipe already holds, without waiting for more; at
/// most a bounded amount, so a writer that never stops cannot keep us here.
fn drain(stream: &mut Stream<'_>, buf: &mut [u8]) {
    for _ in 0..DRAIN_READS {
        let Some(pipe) = &stream.pipe else { return };
        let mut fd = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; a zero timeout only checks.
        if unsafe { libc::poll(&mut fd, 1, 0) } <= 0 {
            break;
        }
        stream.pump(buf);
    }
    stream.close();
}

/// The command's stdin: the input captured by `--stdin`, from its start, or
/// else /dev/null, so a command never reads the caller's terminal or input
/// that is not part of its key.
fn command_stdin() -> Result<Stdio> {
    if !crate::stdin_input::is_captured() {
        return Ok(Stdio::null());
    }
    crate::stdin_input::rewind().map_err(|err| Error::io("rewinding the input", err))?;
    Ok(Stdio::inherit())
}

/// Keeps the fleet store's settings from the command (and from hooks): its
/// output may be cached and shared with the whole fleet, and a command that
/// prints its environment would publish the password. Every one of them goes,
/// whatever it holds: whether `CACHEBACK_STORE` carries a password cannot be
/// told reliably from a URL that may not even parse (an unencoded `/` in a
/// base64 password), and a command gets no use of the store's address
/// without its password. Checked first, so a run without a store does not
/// pay for a copy of the environment.
pub fn hide_store_credentials(command: &mut Command) {
    for name in crate::store::redis::url::STORE_VARIABLES {
        if std::env::var_os(name).is_some() {
            command.env_remove(name);
        }
    }
}

fn spawn_error(argv: &[OsString], err: io::Error) -> Error {
    let program = &argv[0];
    if matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
        // Out of descriptors is cacheback's trouble, not the command's: a
        // cached run then lets go of the cache's files and runs it uncached.
        return Error::io("starting the command", err);
    }
    let source = if err.kind() == io::ErrorKind::PermissionDenied && is_directory(program) {
        // The kernel says "Permission denied", which sends users to chmod.
        io::Error::other("it is a directory, not a program")
    } else {
        err
    };
    let name = program.to_string_lossy().into_owned();
    match source.kind() {
        io::ErrorKind::NotFound => Error::CommandNotFound {
            hint: not_found_hint(&name, argv),
            program: name,
        },
        _ => Error::CannotExecute {
            program: name,
            source,
        },
    }
}

/// Builtins of sh and bash that are no program of their own (`echo`,
/// `test`, `kill` and the like are both, and run as programs).
const SHELL_BUILTINS: &[&str] = &[
    ".", "alias", "bg", "bind", "builtin", "cd", "declare", "dirs", "disown", "eval", "exec",
    "exit", "export", "fc", "fg", "hash", "history", "jobs", "let", "local", "popd", "pushd",
    "read", "readonly", "return", "set", "setopt", "shift", "shopt", "source", "trap", "type",
    "typeset", "ulimit", "umask", "unalias", "unset", "wait",
];

/// Why a program was not found, when its name tells: shell syntax in one
/// argument (`-- "ls | wc -l"`), a shell builtin (`-- cd ~/src`), or a name
/// without a slash that may be an alias or function of the user's shell
/// (`-- ll`), none of which exist without a shell. Empty otherwise.
fn not_found_hint(name: &str, argv: &[OsString]) -> String {
    let shell_syntax = name.contains(|c: char| c.is_whitespace() || "|&;<>()$`*?'\"".contains(c));
    if shell_syntax {
        return " (no shell is used: for pipes, redirections or variables, run it through one, \
                as in `-- sh -c 'ls | wc -l'`)"
            .to_owned();
    }
    if name.contains('/') || name.is_empty() {
        return String::new();
    }
    let line = crate::key::command_line(argv.iter().map(|arg| arg.as_encoded_bytes()));
    let quoted = format!("'{}'", line.replace('\'', r"'\''"));
    if SHELL_BUILTINS.contains(&name) {
        return format!(
            " (`{name}` is a shell builtin, not a program, and cacheback runs programs without \
             a shell: run it through one, as in `-- sh -c {quoted}`)"
        );
    }
    format!(
        " (if `{name}` is a shell alias or function: cacheback runs programs without a shell, \
         so write out what it stands for, through a shell if need be, as in \
         `-- sh -c {quoted}`)"
    )
}

/// Whether `program` names a directory, where exec would look for it: the
/// path itself when it has a slash, else the first match in `PATH`.
fn is_directory(program: &OsString) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let path = std::path::Path::new(program);
    if program.as_bytes().contains(&b'/') {
        return path.is_dir();
    }
    std::env::var_os("PATH").is_some_and(|dirs| {
        std::env::split_paths(&dirs)
            .map(|dir| dir.join(path))
            .find(|candidate| candidate.exists())
            .is_some_and(|found| found.is_dir())
    })
}

/// Waits until one of the `open` streams has something to read (or has
/// closed), at most `wait`.
fn wait_readable(
    streams: &[Stream<'_>; 2],
    open: &[usize],
    wait: Option<Duration>,
) -> Result<Vec<usize>> {
    let mut fds: Vec<libc::pollfd> = open
        .iter()
        .map(|&i| libc::pollfd {
            fd: streams[i].pipe.as_ref().map_or(-1, |p| p.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let timeout = wait.map_or(-1, |w| {
        i32::try_from(w.as_millis().max(1)).unwrap_or(i32::MAX)
    });
    // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(Vec::new()); // a forwarded signal; look again
        }
        return Err(Error::io("waiting for the command's output", err));
    }
    Ok(open
        .iter()
        .zip(&fds)
        .filter(|(_, fd)| fd.revents != 0)
        .map(|(&i, _)| i)
        .collect())
}

/// Collects the exit status: blocking without a deadline, otherwise checking
/// until it passes (`None` then: the caller escalates and tries again).
fn reap(child: &mut Child, deadline: Option<Instant>) -> Result<Option<ExitStatus>> {
    let fail = |err| Error::io("waiting for the command", err);
    let Some(deadline) = deadline else {
        return child.wait().map(Some).map_err(fail);
    };
    loop {
        if let Some(status) = child.try_wait().map_err(fail)? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(EXIT_POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Captured stderr: in memory, spilling to an unnamed temp file past a limit.
#[derive(Debug, Default)]
pub struct Capture {
    memory: Vec<u8>,
    spill: Option<File>,
    spill_dir: PathBuf,
    len: u64,
}

impl Capture {
    fn new(spill_dir: PathBuf) -> Capture {
        Capture {
            spill_dir,
            ..Capture::default()
        }
    }
}

impl Write for Capture {
    fn write(&mut self, chunk: &[u8]) -> io::Result<usize> {
        if self.spill.is_none() && self.memory.len() + chunk.len() > STDERR_MEMORY_LIMIT {
            let mut file = tempfile::tempfile_in(&self.spill_dir)?;
            file.write_all(&self.memory)?;
            self.memory = Vec::new();
            self.spill = Some(file);
        }
        match &mut self.spill {
            Some(file) => file.write_all(chunk)?,
            None => self.memory.extend_from_slice(chunk),
        }
        self.len += chunk.len() as u64;
        Ok(chunk.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl StderrSource for Capture {
    fn copy_to(&mut self, mut out: &File) -> io::Result<u64> {
        match &mut self.spill {
            None => out.write_all(&self.memory)?,
            Some(file) => {
                file.seek(SeekFrom::Start(0))?;
                io::copy(file, &mut out)?;
            }
        }
        Ok(self.len)
    }

    fn copy_tail_to(&mut self, mut out: &File, limit: u64) -> io::Result<u64> {
        let tail = self.len.min(limit);
        match &mut self.spill {
            None => out.write_all(&self.memory[self.memory.len() - tail as usize..])?,
            Some(file) => {
                file.seek(SeekFrom::Start(self.len - tail))?;
                io::copy(&mut Read::take(&mut *file, tail), &mut out)?;
            }
        }
        Ok(tail)
    }
}
