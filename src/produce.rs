//! Producing a value: running the command under the entry's lock and
//! storing what it printed, as the entry (a success) or as the failure
//! record (a failure, which never replaces a good value). Used by a
//! foreground miss and by the detached refresher alike.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::exec::{self, Invocation, Termination};
use crate::key::{Key, KeyInputs};
use crate::options::RunOptions;
use crate::output;
use crate::store::entry::Details;
use crate::store::events::{self, Event};
use crate::store::lock::EntryLock;
use crate::store::{Committed, FileKind, FsStore, Record, RunRecord};

/// Environment variable overriding the time limit of background runs without `--timeout`.
pub const ENV_REFRESH_TIMEOUT: &str = "CACHEBACK_REFRESH_TIMEOUT";
/// Time limit of a background run without `--timeout`, so a hung command
/// cannot hold the lock forever.
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(600);

/// The time limit for a background run.
pub fn background_timeout(args: &RunOptions) -> Duration {
    if let Some(limit) = args.timeout {
        return limit;
    }
    std::env::var(ENV_REFRESH_TIMEOUT)
        .ok()
        .and_then(|text| crate::units::parse_duration(&text).ok())
        .unwrap_or(DEFAULT_REFRESH_TIMEOUT)
}

/// How a run under the lock went.
#[derive(Debug)]
pub struct Ran {
    /// How the command ended.
    pub termination: Termination,
    /// Why forwarding its stdout to the caller failed, if it did (the result
    /// is stored all the same).
    pub stdout_error: Option<std::io::Error>,
    /// What became of the result; `None` when nothing was stored.
    pub committed: Option<Committed>,
    /// A background run's result could not be stored here (a full disk):
    /// it is recorded as this host's failure ([`record_unstored`]), not the
    /// command's, so the fleet is not told of it.
    pub unstored: bool,
}

/// Runs the command with the lock held and stores the result: a success (or
/// any result with `--cache-failures`) replaces the entry; a failure only
/// updates the failure record, so callers keep the last good value. A
/// command that cannot start, or is killed at its time limit, is a failure
/// like any other: recorded (127, 126, 124), shown by `stats`, backed off.
pub fn execute(
    store: &FsStore,
    key: &Key,
    inputs: &KeyInputs,
    args: &RunOptions,
    lock: &EntryLock,
    foreground: bool,
) -> Result<Ran> {
    let details = details_of(inputs, args);
    let timeout = if foreground {
        args.timeout
    } else {
        Some(background_timeout(args))
    };
    let mut writer = store.writer(lock, &details)?;
    if !foreground {
        writer.make_durable(); // nobody waits for a background run
    }
    let mut capture = writer
        .stdout_sink()
        .map_err(|err| Error::io("preparing the capture", err))?;
    let run = exec::run(Invocation {
        argv: &args.command,
        timeout,
        forward: foreground,
        stdout_capture: Some(&mut capture),
        stderr_spill_dir: Some(store.dir().to_owned()),
    });
    drop(capture);
    let mut outcome = match run {
        Ok(outcome) => outcome,
        Err(err @ (Error::CommandNotFound { .. } | Error::CannotExecute { .. })) => {
            let (kind, failures) = destination(store, key, args.cache_failures);
            let record = RunRecord {
                exit_code: i32::from(err.exit_code()),
                finished_ms: now_ms(),
                duration_ms: 0,
                jitter_ms: 0,
                failures,
                stdout_len: 0,
            };
            let message = format!("cacheback: {err}\n");
            // Counted whether or not it could be stored, as any failed run.
            events::record_held(lock, Event::Failure);
            let committed = writer.commit(store, kind, record, &mut message.as_bytes());
            if kind == Record::Failure && matches!(committed, Ok(Committed::Stored)) {
                store.flag_entry_failed(key);
            }
            return Err(err);
        }
        Err(err) => return Err(err),
    };
    let termination = outcome.termination;
    let stdout_error = outcome.stdout_error.take();
    let success = termination.succeeded();
    // In the background nothing else reads the command's output, so a
    // capture that failed (a full disk) closes its pipe and the command dies
    // of it (SIGPIPE): that status is cacheback's doing, not the command's.
    let ours = success || (!foreground && termination != Termination::TimedOut);
    let incomplete = outcome.capture_error.as_ref().filter(|_| ours);
    if let Termination::Interrupted(_) = termination {
        // The user stopped it: nothing it produced is trusted.
        return Ok(Ran {
            termination,
            stdout_error,
            committed: None,
            unstored: false,
        });
    }
    if let Some(err) = incomplete {
        // Output that did not all reach the file must not be served. (A
        // failure is recorded all the same: its output is only a report.)
        // Counted as a failed run: it stored nothing.
        events::record_held(lock, Event::Failure);
        if foreground {
            output::warn(format_args!("could not cache the result: {err}"));
        } else {
            drop(writer); // its partial output: the space goes back first
            record_unstored(store, key, &details, lock, err);
        }
        return Ok(Ran {
            termination,
            stdout_error,
            committed: None,
            unstored: !foreground,
        });
    }
    let as_entry = success || (args.cache_failures && outcome.capture_error.is_none());
    let (kind, failures) = destination(store, key, as_entry);
    let record = RunRecord {
        exit_code: termination.exit_code(),
        finished_ms: outcome.finished_ms,
        duration_ms: millis(outcome.duration),
        jitter_ms: if as_entry { draw_jitter(args, key) } else { 0 },
        failures,
        stdout_len: outcome.stdout_len,
    };
    let committed = writer.commit(store, kind, record, &mut outcome.stderr);
    let committed = match committed {
        Ok(committed) => {
            if kind == Record::Failure && committed == Committed::Stored {
                store.flag_entry_failed(key);
            }
            events::record_held(
                lock,
                if success {
                    Event::Refresh
                } else {
                    Event::Failure
                },
            );
            Some(committed)
        }
        Err(err) => {
            events::record_held(lock, Event::Failure); // it stored nothing
            if !foreground {
                if kind == Record::Value {
                    record_unstored(store, key, &details, lock, &err);
                }
                return Err(err);
            }
            output::warn(format_args!("could not cache the result: {err}"));
            None
        }
    };
    Ok(Ran {
        termination,
        stdout_error,
        committed,
        unstored: false,
    })
}

/// Records a background run whose output could not be stored (a full disk,
/// an I/O error) as a failed run, status [`FAILURE`](crate::exit_codes::FAILURE)
/// (cacheback failed) and why: the refreshes after it back off as after any
/// failure, instead of filling the disk again at every stale hit while the
/// old value is served, and `stats` and `show` say what went wrong. Best
/// effort: a record too may not fit.
fn record_unstored(
    store: &FsStore,
    key: &Key,
    details: &Details,
    lock: &EntryLock,
    why: &dyn std::fmt::Display,
) {
    let Ok(writer) = store.writer(lock, details) else {
        return;
    };
    let record = RunRecord {
        exit_code: i32::from(crate::exit_codes::FAILURE),
        finished_ms: now_ms(),
        duration_ms: 0,
        jitter_ms: 0,
        failures: consecutive_failures(store, key) + 1,
        stdout_len: 0,
    };
    let message = format!("cacheback: could not store the result: {why}\n");
    let committed = writer.commit(store, Record::Failure, record, &mut message.as_bytes());
    if matches!(committed, Ok(Committed::Stored)) {
        store.flag_entry_failed(key);
    }
}

/// What an entry stored by this run records besides its output.
fn details_of(inputs: &KeyInputs, args: &RunOptions) -> Details {
    Details {
        inputs: inputs.clone(),
        name: args.name.clone(),
        ttl_ms: millis(args.ttl()),
        max_age_ms: args.max_age.map(millis),
    }
}

/// Stores the failure of a run another host made (its status and the end of
/// its stderr) as this host's failure record, stamped with this host's clock.
pub fn record_failure(
    store: &FsStore,
    key: &Key,
    inputs: &KeyInputs,
    args: &RunOptions,
    lock: &EntryLock,
    exit_code: i32,
    stderr: &[u8],
) -> Result<Committed> {
    let writer = store.writer(lock, &details_of(inputs, args))?;
    let record = RunRecord {
        exit_code,
        finished_ms: now_ms(),
        duration_ms: 0,
        jitter_ms: 0,
        failures: consecutive_failures(store, key) + 1,
        stdout_len: 0,
    };
    writer.commit(store, Record::Failure, record, &mut &*stderr)
}

/// A random delay up to `--jitter` for a value about to be stored. It needs
/// to differ between entries stored in the same instant and between hosts,
/// not to be unpredictable: the key, the clock's nanoseconds and the process
/// id, hashed, are enough.
fn draw_jitter(args: &RunOptions, key: &Key) -> u32 {
    let Some(jitter) = args.jitter else {
        return 0;
    };
    let limit = jitter.max_ms(args.ttl()).min(u64::from(u32::MAX));
    if limit == 0 {
        return 0;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let seed = crate::digest::sha256(&[
        key.to_hex().as_bytes(),
        &nanos.to_le_bytes(),
        &std::process::id().to_le_bytes(),
    ]);
    let draw = u64::from_le_bytes(seed[..8].try_into().expect("8 bytes"));
    (draw % (limit + 1)) as u32
}

/// What a result is stored as, and the consecutive-failure count its record
/// carries: the entry (count 0) when `as_entry`, else the failure record,
/// one more than the failures since the last success.
fn destination(store: &FsStore, key: &Key, as_entry: bool) -> (Record, u32) {
    if as_entry {
        (Record::Value, 0)
    } else {
        (Record::Failure, consecutive_failures(store, key) + 1)
    }
}

/// Failed runs since the last success, from the failure record.
pub fn consecutive_failures(store: &FsStore, key: &Key) -> u32 {
    let entry = store.peek(key, FileKind::Entry);
    match store.peek(key, FileKind::Failure) {
        Some(failure) if failure.failed_since(entry.as_ref()) => failure.failures,
        _ => 0,
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
