//! Running the wrapped command: capture, streaming, time limits and signals.
//!
//! The command gets its own process group, so a time limit or a forwarded
//! signal reaches its grandchildren too. Its stdout and stderr are read by one
//! thread each, which forward the bytes to the caller as they arrive (on a
//! foreground miss) and capture them for the entry. A pipe whose destinations
//! have all failed is closed, so a command writing into the void gets EPIPE
//! instead of running on.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

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
/// Stack for the pump and wait threads, which need little; the default 2 MiB
/// is only reserved, but its guard page and mapping still cost a miss.
const THREAD_STACK: usize = 64 * 1024;
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
    /// When it finished.
    pub finished: SystemTime,
    /// How long it ran.
    pub duration: Duration,
    /// Bytes of stdout captured.
    pub stdout_len: u64,
    /// The captured stderr.
    pub stderr: Capture,
    /// The first error met while capturing, if any: the capture is then incomplete.
    pub capture_error: Option<io::Error>,
}

/// What to run and where its output goes.
pub struct Invocation<'a> {
    /// The command and its arguments.
    pub argv: &'a [OsString],
    /// Kill the run after this long.
    pub timeout: Option<Duration>,
    /// Stream output to our own stdout and stderr as it arrives.
    pub forward: bool,
    /// Where to capture stdout (the entry being written), if anywhere.
    pub stdout_capture: Option<File>,
    /// Capture stderr, spilling to this directory when it outgrows memory;
    /// `None` captures no stderr (the result will not be stored).
    pub stderr_spill_dir: Option<PathBuf>,
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

enum Event {
    Exited(io::Result<std::process::ExitStatus>),
    Stdout(Pumped),
    Stderr(Pumped, Capture),
}

struct Pumped {
    bytes: u64,
    capture_error: Option<io::Error>,
}

/// Runs the command to completion (or its time limit) and reports how it went.
pub fn run(invocation: Invocation<'_>) -> Result<Outcome> {
    let program = &invocation.argv[0];
    forward_terminating_signals();
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(&invocation.argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|err| spawn_error(program, err))?;
    let group = child.id() as i32;
    CHILD_GROUP.store(group, Ordering::SeqCst);
    let early = RECEIVED_SIGNAL.load(Ordering::SeqCst);
    if early != 0 {
        // SAFETY: signalling the group we just created.
        unsafe { libc::kill(-group, early) };
    }

    let (events, inbox) = mpsc::channel();
    let stdout_pipe = child.stdout.take().expect("stdout is piped");
    let stderr_pipe = child.stderr.take().expect("stderr is piped");
    let forward = invocation.forward;
    let stdout_sink = events.clone();
    let stdout_capture = invocation.stdout_capture;
    spawn_thread(move || {
        let mut capture = stdout_capture;
        let forward_to = forward.then(output::stdout);
        let pumped = pump(
            stdout_pipe,
            forward_to.as_deref(),
            capture.as_mut().map(|f| f as &mut dyn Write),
        );
        let _ = stdout_sink.send(Event::Stdout(pumped));
    });
    let stderr_sink = events.clone();
    let spill_dir = invocation.stderr_spill_dir;
    spawn_thread(move || {
        let mut capture = spill_dir.map(Capture::new);
        let forward_to = forward.then(output::stderr);
        let sink = capture.as_mut().map(|c| c as &mut dyn Write);
        let pumped = pump(stderr_pipe, forward_to.as_deref(), sink);
        let _ = stderr_sink.send(Event::Stderr(pumped, capture.unwrap_or_default()));
    });
    spawn_thread(move || {
        let _ = events.send(Event::Exited(child.wait()));
    });

    let mut deadline = invocation.timeout.map(|limit| start + limit);
    let mut timed_out = false;
    let mut killed = false;
    let mut status = None;
    let mut finished = None;
    let mut stdout: Option<Pumped> = None;
    let mut stderr: Option<(Pumped, Capture)> = None;
    while status.is_none() || stdout.is_none() || stderr.is_none() {
        let event = match deadline {
            None => inbox
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(at) => inbox.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        match event {
            Ok(Event::Exited(result)) => {
                finished = Some((SystemTime::now(), start.elapsed()));
                status = Some(result.map_err(|err| Error::io("waiting for the command", err))?);
            }
            Ok(Event::Stdout(pumped)) => stdout = Some(pumped),
            Ok(Event::Stderr(pumped, capture)) => stderr = Some((pumped, capture)),
            Err(mpsc::RecvTimeoutError::Timeout) if !timed_out => {
                timed_out = true;
                // SAFETY: signalling the command's own process group.
                unsafe { libc::kill(-group, libc::SIGTERM) };
                deadline = Some(Instant::now() + KILL_GRACE);
            }
            Err(mpsc::RecvTimeoutError::Timeout) if !killed => {
                killed = true;
                // SAFETY: as above.
                unsafe { libc::kill(-group, libc::SIGKILL) };
                deadline = Some(Instant::now() + PIPE_GRACE);
            }
            Err(_) => break,
        }
    }
    CHILD_GROUP.store(0, Ordering::SeqCst);
    let (finished, duration) = finished.unwrap_or_else(|| (SystemTime::now(), start.elapsed()));
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
    let (stdout_len, stdout_error) = match stdout {
        Some(pumped) => (pumped.bytes, pumped.capture_error),
        None => (
            0,
            Some(io::Error::other("stdout was still open at the time limit")),
        ),
    };
    let (stderr, stderr_error) = match stderr {
        Some((pumped, capture)) => (capture, pumped.capture_error),
        None => (
            Capture::default(),
            Some(io::Error::other("stderr was still open at the time limit")),
        ),
    };
    Ok(Outcome {
        termination,
        finished,
        duration,
        stdout_len,
        stderr,
        capture_error: stdout_error.or(stderr_error),
    })
}

fn spawn_thread(work: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(THREAD_STACK)
        .spawn(work)
        .expect("starting a thread for the command's output");
}

fn spawn_error(program: &OsString, err: io::Error) -> Error {
    let program = program.to_string_lossy().into_owned();
    match err.kind() {
        io::ErrorKind::NotFound => Error::CommandNotFound { program },
        _ => Error::CannotExecute {
            program,
            source: err,
        },
    }
}

/// Copies a pipe to its destinations until EOF, or until no destination is left.
fn pump(
    mut pipe: impl Read,
    forward: Option<&File>,
    mut capture: Option<&mut dyn Write>,
) -> Pumped {
    let mut buf = vec![0u8; PUMP_CHUNK];
    let mut forward = forward;
    let mut bytes = 0;
    let mut capture_error = None;
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                capture_error.get_or_insert(err);
                break;
            }
        };
        let chunk = &buf[..n];
        if let Some(mut out) = forward
            && out.write_all(chunk).is_err()
        {
            // The reader went away (`| head -1`): keep capturing for the cache.
            forward = None;
        }
        if let Some(sink) = capture.as_mut() {
            match sink.write_all(chunk) {
                Ok(()) => bytes += n as u64,
                Err(err) => {
                    capture_error.get_or_insert(err);
                    capture = None;
                }
            }
        }
        if forward.is_none() && capture.is_none() {
            break;
        }
    }
    Pumped {
        bytes,
        capture_error,
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

    /// The last `limit` bytes captured.
    pub fn tail(&mut self, limit: usize) -> Vec<u8> {
        match &mut self.spill {
            None => self.memory[self.memory.len().saturating_sub(limit)..].to_vec(),
            Some(file) => {
                let keep = self.len.min(limit as u64);
                let mut out = vec![0u8; keep as usize];
                let read = file
                    .seek(SeekFrom::Start(self.len - keep))
                    .and_then(|_| file.read_exact(&mut out));
                if read.is_err() {
                    out.clear();
                }
                out
            }
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
}
