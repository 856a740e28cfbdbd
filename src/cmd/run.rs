//! `cacheback run`: serve from the cache, refresh in the background.
//!
//! The fresh-hit path is the product: one open, one read of the head, one
//! write (or kernel copy) of the cached bytes, one append to the events log.
//! Nothing else happens before the user has their output.

use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt as _;
use std::time::Duration;

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::exec::{self, Invocation, Termination};
use crate::key::{Key, KeyInputs};
use crate::options::RunOptions;
use crate::output;
use crate::produce::{execute, record_failure};
use crate::refresh::{self, Counted};
use crate::rules;
use crate::store::entry::Preamble;
use crate::store::events::{self, Event};
use crate::store::lock::EntryLock;
use crate::store::{FileKind, FsStore, OpenError, StoredEntry, Turn};
use crate::two_tier::{self, FleetSettings, MissOutcome};

/// Bytes read with the preamble in one go: an entry this small comes along
/// whole and is written straight from memory (most cached outputs are a line
/// or a few); the rest of a larger one goes out by sendfile. One page, as
/// every further page the read fills costs a page fault.
pub const HEAD_LEN: usize = 4096;

/// A buffer for an entry's head, on the heap: a stack array made the compiler
/// probe each of its pages on entry (four page faults on every hit when it
/// was 16 KiB); from the heap only the pages `read` fills are touched.
fn head_buffer() -> Box<[MaybeUninit<u8>]> {
    Box::new_uninit_slice(HEAD_LEN)
}

/// Runs `cacheback run` and returns the exit status to report.
pub fn run(store: &FsStore, args: &RunOptions, fleet: &FleetSettings) -> Result<u8> {
    let inputs = match KeyInputs::gather(args, store) {
        Ok(inputs) => inputs,
        // `--hash` of a FIFO or a device: refused, it could hang the caller.
        Err(err) if err.kind() == std::io::ErrorKind::InvalidInput => {
            return Err(Error::Usage(err.to_string()));
        }
        // `--cwd` in a deleted directory, say: the command may still work there.
        Err(err) => return uncached_after(&format_args!("reading key inputs: {err}"), args),
    };
    let key = inputs.key();
    let now = now_ms();
    let mut damaged = None;
    // The version of a value found but not usable (past `--max-age`): a
    // `--no-wait` miss refreshes it unless another run lands meanwhile.
    let mut found = None;
    if !args.force {
        let mut head = head_buffer();
        match store.open(&key, FileKind::Entry, &mut head) {
            Ok(Some(entry)) if entry.preamble.is_usable(now, args.max_age.map(millis)) => {
                let stale = entry.preamble.is_stale(now, millis(args.ttl()));
                let marker = if stale || entry.preamble.failed_since_stored() {
                    crate::env_defaults::stale_marker(args.stale_marker.as_ref())
                } else {
                    None
                };
                let code = match &marker {
                    Some(marker) => replay_marked(&entry, marker, now),
                    None => replay(&entry),
                };
                if !stale {
                    events::record(store, &key, Event::Hit);
                    return Ok(code);
                }
                let seen = Some(entry.preamble.finished_ms);
                match refresh::start(store, &key, args, seen, Event::StaleHit, fleet) {
                    Ok(Counted::Yes) => exit_after_fork(code),
                    Ok(Counted::No) => events::record(store, &key, Event::StaleHit),
                    Err(err) => {
                        output::warn(format_args!("could not start a background refresh: {err}"));
                    }
                }
                return Ok(code);
            }
            Ok(Some(entry)) => found = Some(entry.preamble.finished_ms),
            Ok(None) => {}
            Err(err) => damaged = Some(err),
        }
    }
    if !args.key.stdin {
        crate::stdin_input::warn_if_ignored();
    }
    if !(args.key.modtime.is_empty() && args.key.hash.is_empty()) {
        inputs.warn_missing_files();
    }
    // `--max-age` equal to `--ttl` is a hard expiry (bkt's plain TTL: serve
    // for that long, then run in the foreground), a choice, not a slip.
    if let Some(max_age) = args.max_age
        && max_age < args.ttl()
    {
        output::warn(format_args!(
            "--max-age ({}) is shorter than --ttl ({}): an entry expires before it goes stale, \
             so it is never served stale and every refresh makes callers wait (for a hard \
             expiry, give --max-age the same value as --ttl)",
            crate::units::format_duration_brief(max_age),
            crate::units::format_duration_brief(args.ttl())
        ));
    }
    if args.no_wait {
        return start_in_background(store, &key, args, found, fleet);
    }
    run_in_foreground(store, &key, &inputs, args, found, damaged, fleet)
}

/// Ends the process once [`refresh::start`] has (most likely) forked the
/// refresher, without freeing memory or running libc's exit handlers: after a
/// `fork` every page this process writes is copied first, and that clean-up
/// wrote about eight of them, a page fault each, while the user waited.
/// Nothing is lost: all output went straight to the descriptors, unbuffered.
fn exit_after_fork(code: u8) -> ! {
    // SAFETY: _exit ends the process at once; no Rust state outlives it.
    unsafe { libc::_exit(i32::from(code)) }
}

/// `--no-wait` on a miss: the placeholder now, the command in the background.
/// Without a usable cache a background run could store nothing for anyone:
/// the command runs now, uncached, like any run whose cache cannot work.
fn start_in_background(
    store: &FsStore,
    key: &Key,
    args: &RunOptions,
    found: Option<u64>,
    fleet: &FleetSettings,
) -> Result<u8> {
    if let Err(err) = store.prepare() {
        return uncached_after(&err, args);
    }
    let mut code = crate::exit_codes::SUCCESS;
    if let Some(placeholder) = &args.placeholder {
        use std::os::unix::ffi::OsStrExt;
        if let Err(err) = output::write_all(&output::stdout(), placeholder.as_bytes())
            && !output::is_broken_pipe(&err)
        {
            code = stdout_failed(&err);
        }
    }
    match refresh::start(store, key, args, found, Event::Miss, fleet) {
        Ok(Counted::Yes) => exit_after_fork(code),
        Ok(Counted::No) => events::record(store, key, Event::Miss),
        Err(err) => return uncached_after(&err, args),
    }
    Ok(code)
}

/// Warns once that the cache cannot work, then runs the command without it.
/// A directory that cannot be written also gets what to do about it.
#[cold]
#[inline(never)]
fn uncached_after(why: &dyn std::fmt::Display, args: &RunOptions) -> Result<u8> {
    let text = why.to_string();
    let denied = [
        "Permission denied",
        "Read-only file system",
        "Not a directory",
    ]
    .iter()
    .any(|reason| text.contains(reason));
    let hint = if denied {
        "; set CACHEBACK_DIR (or pass --cache-dir) to a directory you can write"
    } else {
        ""
    };
    output::warn(format_args!(
        "cache unavailable, running uncached: {text}{hint}"
    ));
    run_uncached(args)
}

/// A miss (or `--force`): run the command now, streaming its output, and store it.
fn run_in_foreground(
    store: &FsStore,
    key: &Key,
    inputs: &KeyInputs,
    args: &RunOptions,
    found: Option<u64>,
    damaged: Option<OpenError>,
    fleet: &FleetSettings,
) -> Result<u8> {
    let locked = if args.force {
        store
            .prepare()
            .and_then(|()| store.lock(key))
            .map(|(lock, _)| lock)
    } else {
        // What the caller saw: the value it found unusable (or none), and
        // the failure record there is now. Another caller may run the
        // command meanwhile, while we wait for the lease or just before we
        // take it (a lease taken without waiting does not mean nobody ran
        // it since): its result is ours, failed or not, as if we had run it.
        let seen = rules::Holding {
            value_version: found,
            failure_version: rules::Store::holding(store, key)
                .ok()
                .and_then(|held| held.failure_version),
            ..rules::Holding::default()
        };
        let mut head = head_buffer();
        let usable = |value: &Preamble| value.is_usable(now_ms(), args.max_age.map(millis));
        match store.take_turn(key, &seen, usable, &mut head) {
            Ok(Turn::Hit { entry, lease }) => {
                events::record_held(&lease, Event::Miss);
                return Ok(replay(&entry));
            }
            Ok(Turn::Failed { record, lease }) => {
                events::record_held(&lease, Event::Miss);
                // The run we waited for may have been a `--force`, which
                // does not ask the fleet: its value beats that failure.
                if let Some(stale) = two_tier::fill_if_usable(fleet, store, &lease, key, args) {
                    return Ok(serve_filled(store, key, args, lease, stale, fleet));
                }
                return Ok(replay(&record));
            }
            Ok(Turn::Miss(lease)) => Ok(lease),
            Err(err) => Err(err),
        }
    };
    let lock = match locked {
        Ok(lock) => lock,
        Err(err) => return uncached_after(&err, args),
    };
    events::record_held(&lock, Event::Miss);
    let leased = if args.force {
        two_tier::lease_if_free(fleet, store, key, args.ttl())
    } else {
        match two_tier::on_miss(fleet, store, &lock, key, args) {
            MissOutcome::Local => None,
            MissOutcome::Run(leased) => Some(*leased),
            MissOutcome::Filled { stale } => {
                return Ok(serve_filled(store, key, args, lock, stale, fleet));
            }
            MissOutcome::FailedElsewhere {
                exit_code,
                stderr_tail,
            } => {
                // Recorded here too: this host's callers waiting on the lock
                // take it as theirs, as they would a local run's failure.
                let _ = record_failure(store, key, inputs, args, &lock, exit_code, &stderr_tail);
                let _ = output::write_all(&output::stderr(), &stderr_tail);
                return Ok(exit_status(exit_code));
            }
        }
    };
    if let Some(err) = damaged {
        output::warn(format_args!("replacing unreadable cache entry: {err}"));
    }
    let ran = execute(store, key, inputs, args, &lock, true);
    // Whatever became of the run: the fleet gets its value or its failure
    // (a command that could not start is one), and the lease goes back, so
    // other hosts' callers stop waiting now, not when the lease expires.
    if let Some(leased) = leased {
        leased.share(store, true, false);
    }
    let ran = match ran {
        Ok(ran) => ran,
        // The command itself could not start (its failure is recorded);
        // any other error is the cache's, and the command still runs.
        Err(err @ (Error::CommandNotFound { .. } | Error::CannotExecute { .. })) => {
            return Err(err);
        }
        Err(err) => {
            drop(lock);
            return uncached_after(&err, args);
        }
    };
    report_timeout(ran.termination, args);
    match &ran.stdout_error {
        Some(err) => Ok(stdout_failed(err)),
        None => Ok(exit_status(ran.termination.exit_code())),
    }
}

/// A miss the fleet tier answered: the copy it made is replayed, and a
/// stale one refreshed in the background, as a stale hit would be.
fn serve_filled(
    store: &FsStore,
    key: &Key,
    args: &RunOptions,
    lock: EntryLock,
    stale: bool,
    fleet: &FleetSettings,
) -> u8 {
    let mut head = head_buffer();
    let Ok(Some(entry)) = store.open(key, FileKind::Entry, &mut head) else {
        return crate::exit_codes::FAILURE;
    };
    let code = replay(&entry);
    if stale {
        // The refresher takes the lock itself.
        drop(lock);
        let seen = Some(entry.preamble.finished_ms);
        if let Ok(Counted::Yes) = refresh::start(store, key, args, seen, Event::StaleHit, fleet) {
            exit_after_fork(code);
        }
    }
    code
}

/// Says why a foreground run ended with status 124, which the command's own
/// output does not: it was killed at its `--timeout`.
fn report_timeout(termination: Termination, args: &RunOptions) {
    if let (Termination::TimedOut, Some(limit)) = (termination, args.timeout) {
        output::warn(format_args!(
            "{} was killed after the {} --timeout (exit status 124)",
            crate::key::command_line(args.command.iter().map(|arg| arg.as_bytes())),
            crate::units::format_duration_brief(limit)
        ));
    }
}

/// Runs the command without any cache, passing its output and status through.
pub fn run_uncached(args: &RunOptions) -> Result<u8> {
    let outcome = exec::run(uncached(args))?;
    report_timeout(outcome.termination, args);
    Ok(exit_status(outcome.termination.exit_code()))
}

fn uncached(args: &RunOptions) -> Invocation<'_> {
    Invocation {
        argv: &args.command,
        timeout: args.timeout,
        forward: true,
        stdout_capture: None,
        stderr_spill_dir: None,
    }
}

/// Writes a stored result to stdout and stderr and returns its exit status.
/// A reader that went away (`| head -1`) is not an error worth a word; any
/// other failure to deliver stdout (a full disk, an I/O error) is, and makes
/// the status [`FAILURE`](crate::exit_codes::FAILURE): the caller did not
/// get its output. Stderr failures cannot be reported anywhere.
fn replay(entry: &StoredEntry<'_>) -> u8 {
    let delivered = entry.copy_stdout(&output::stdout());
    let _ = entry.copy_stderr(&output::stderr());
    match delivered {
        Err(err) if !output::is_broken_pipe(&err) => stdout_failed(&err),
        _ => exit_status(entry.preamble.exit_code),
    }
}

/// [`replay`] for a hit with `--stale-marker` on a value that is stale or
/// has a failed run after it (a flag in the preamble already read): the marker
/// goes after the cached stdout, before its final newline, so a one-line
/// status stays one line. A fresh hit pays nothing for the option.
#[cold]
#[inline(never)]
fn replay_marked(entry: &StoredEntry<'_>, marker: &std::ffi::OsStr, now: u64) -> u8 {
    use std::os::unix::ffi::OsStrExt;
    let failing = entry.preamble.failed_since_stored();
    let age = entry.preamble.age_ms(now).map_or_else(
        || "?".to_owned(),
        |age| crate::units::format_age(Duration::from_millis(age)),
    );
    let text = String::from_utf8_lossy(marker.as_bytes())
        .replace("{age}", &age)
        .replace("{state}", if failing { "failing" } else { "stale" });
    let delivered = entry.copy_stdout_marked(&output::stdout(), text.as_bytes());
    let _ = entry.copy_stderr(&output::stderr());
    match delivered {
        Err(err) if !output::is_broken_pipe(&err) => stdout_failed(&err),
        _ => exit_status(entry.preamble.exit_code),
    }
}

/// Reports that stdout could not take the output and returns the status for it.
#[cold]
#[inline(never)]
pub fn stdout_failed(err: &std::io::Error) -> u8 {
    output::warn(format_args!("writing to stdout: {err}"));
    crate::exit_codes::FAILURE
}

fn exit_status(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(crate::exit_codes::FAILURE)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
