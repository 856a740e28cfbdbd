//! A hand-written parser for the one command line that must start fast.
//!
//! Building clap's parser costs more instructions than everything else a
//! cache hit does (about 130,000 of a 276,000-instruction 1 KiB hit, measured
//! with callgrind), and a status bar pays it on every tick. So a plain
//! `cacheback [--cache-dir DIR] run OPTIONS COMMAND...` is parsed here.
//! Anything else — every error, `--help`, any form this parser does not know —
//! returns `None` and goes to clap, which stays the single source of truth for
//! messages. A test feeds both parsers the same command lines and requires
//! identical results wherever this one answers.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Cli, Command, KeyArgs, RunArgs, StoreArgs};
use crate::units::{Jitter, parse_duration, parse_jitter, parse_timeout};

/// Parses `args` (program name first) when it is a well-formed `run` command
/// line; `None` means "let clap decide".
pub fn parse(args: &[OsString]) -> Option<Cli> {
    let mut rest = args.get(1..)?.iter();
    let mut cache_dir = None;
    let mut store = None;
    loop {
        match rest.next()?.as_bytes() {
            b"run" => break,
            b"--cache-dir" => set_once(&mut cache_dir, PathBuf::from(plain(rest.next()?)?))?,
            b"--store" => set_once(&mut store, plain(rest.next()?)?.to_str()?.to_owned())?,
            _ => return None,
        }
    }
    let mut run = Partial::default();
    while let Some(arg) = rest.next() {
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            run.command.extend(rest.by_ref().cloned());
            break;
        }
        if !bytes.starts_with(b"-") || bytes == b"-" {
            run.command.push(arg.clone());
            run.command.extend(rest.by_ref().cloned());
            break;
        }
        let (flag, inline) = split_inline_value(bytes);
        let mut value = || match inline {
            Some(value) => Some(value),
            None => plain(rest.next()?),
        };
        match flag {
            b"--ttl" => set_once(&mut run.ttl, duration(value()?)?)?,
            b"--max-age" => set_once(&mut run.max_age, duration(value()?)?)?,
            b"--timeout" => set_once(&mut run.timeout, parse_timeout(value()?.to_str()?).ok()?)?,
            b"--jitter" => set_once(&mut run.jitter, jitter(value()?)?)?,
            b"--stale-marker" => set_once(&mut run.stale_marker, value()?.to_owned())?,
            b"--on-refresh" => set_once(&mut run.on_refresh, value()?.to_owned())?,
            b"--hash" => run.key.hash.push(PathBuf::from(value()?)),
            b"--stdin" if inline.is_none() => switch(&mut run.key.stdin)?,
            b"--placeholder" => set_once(&mut run.placeholder, value()?.to_owned())?,
            b"--name" => set_once(&mut run.name, value()?.to_str()?.to_owned())?,
            b"--scope" => set_once(&mut run.key.scope, value()?.to_str()?.to_owned())?,
            b"--cache-dir" => set_once(&mut cache_dir, PathBuf::from(value()?))?,
            b"--store" => set_once(&mut store, value()?.to_str()?.to_owned())?,
            b"--env" => run.key.env.push(env_name(value()?)?),
            b"--modtime" => run.key.modtime.push(PathBuf::from(value()?)),
            b"--cwd" if inline.is_none() => switch(&mut run.key.cwd)?,
            b"--no-wait" if inline.is_none() => switch(&mut run.no_wait)?,
            b"--force" if inline.is_none() => switch(&mut run.force)?,
            b"--cache-failures" if inline.is_none() => switch(&mut run.cache_failures)?,
            _ => return None,
        }
    }
    Some(Cli {
        cache_dir,
        store: StoreArgs {
            store,
            ..StoreArgs::default()
        },
        command: Command::Run(run.finish()?),
    })
}

/// The options seen so far.
#[derive(Default)]
struct Partial {
    ttl: Option<Duration>,
    max_age: Option<Duration>,
    timeout: Option<Duration>,
    jitter: Option<Jitter>,
    stale_marker: Option<OsString>,
    on_refresh: Option<OsString>,
    placeholder: Option<OsString>,
    name: Option<String>,
    no_wait: bool,
    force: bool,
    cache_failures: bool,
    key: KeyArgs,
    command: Vec<OsString>,
}

impl Partial {
    /// Checks what clap's definition requires; `None` lets clap word the error.
    fn finish(self) -> Option<RunArgs> {
        let consistent =
            (self.placeholder.is_none() || self.no_wait) && !(self.force && self.no_wait);
        if !consistent || self.command.is_empty() {
            return None;
        }
        Some(RunArgs {
            ttl: self.ttl,
            max_age: self.max_age,
            timeout: self.timeout,
            jitter: self.jitter,
            stale_marker: self.stale_marker,
            on_refresh: self.on_refresh,
            no_wait: self.no_wait,
            placeholder: self.placeholder,
            force: self.force,
            cache_failures: self.cache_failures,
            name: self.name,
            key: self.key,
            command: self.command,
        })
    }
}

/// `--flag=value` into the flag and its value.
fn split_inline_value(arg: &[u8]) -> (&[u8], Option<&OsStr>) {
    match arg.iter().position(|&b| b == b'=') {
        Some(at) => (&arg[..at], Some(OsStr::from_bytes(&arg[at + 1..]))),
        None => (arg, None),
    }
}

/// A separate value argument, unless it looks like a flag (clap would refuse it).
fn plain(arg: &OsString) -> Option<&OsStr> {
    (!arg.as_bytes().starts_with(b"-")).then_some(arg.as_os_str())
}

fn duration(value: &OsStr) -> Option<Duration> {
    parse_duration(value.to_str()?).ok()
}

/// An `--env` name as clap's parser accepts it (else clap words the error).
fn env_name(value: &OsStr) -> Option<OsString> {
    let name = value.to_str()?;
    (!name.is_empty() && !name.contains('=')).then(|| value.to_owned())
}

fn jitter(value: &OsStr) -> Option<Jitter> {
    parse_jitter(value.to_str()?).ok()
}

/// Options given twice are clap's to report.
fn set_once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

fn switch(slot: &mut bool) -> Option<()> {
    if *slot {
        return None;
    }
    *slot = true;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    const FRAGMENTS: &[&[&str]] = &[
        &["--ttl", "5"],
        &["--ttl=90s"],
        &["--ttl", "bad"],
        &["--max-age", "1h"],
        &["--max-age=2d"],
        &["--timeout", "500ms"],
        &["--timeout", "0"],
        &["--jitter", "10%"],
        &["--jitter=30s"],
        &["--jitter", "x"],
        &["--stale-marker", " ({age})"],
        &["--stale-marker="],
        &["--on-refresh", "pkill -RTMIN+8 i3blocks"],
        &["--hash", "Cargo.lock"],
        &["--stdin"],
        &["--stdin=1"],
        &["--no-wait"],
        &["--placeholder", "wait…"],
        &["--placeholder="],
        &["--force"],
        &["--cache-failures"],
        &["--name", "weather"],
        &["--name", "--weird"],
        &["--cwd"],
        &["--cwd=yes"],
        &["--env", "HOME"],
        &["--env=USER"],
        &["--env", "BAD=NAME"],
        &["--env="],
        &["--modtime", "a file"],
        &["--scope", "s"],
        &["--cache-dir", "/d"],
        &["--store", "redis://h"],
        &["--store=unix:///s"],
        &["--store", "-x"],
        &["--bogus"],
        &["-h"],
        &["--help"],
        &["--version"],
    ];

    const COMMANDS: &[&[&str]] = &[
        &[],
        &["--", "echo", "hi"],
        &["echo", "--ttl", "7"],
        &["--", "--ttl"],
        &["-"],
        &["-x"],
        &["--"],
    ];

    const PREFIXES: &[&[&str]] = &[
        &["run"],
        &["--cache-dir", "/g", "run"],
        &["--store", "redis://g", "run"],
        &["stats"],
        &[],
    ];

    fn clap_run(args: &[OsString]) -> Option<(Option<PathBuf>, StoreArgs, RunArgs)> {
        match Cli::try_parse_from(args) {
            Ok(Cli {
                cache_dir,
                store,
                command: Command::Run(run),
            }) => Some((cache_dir, store, run)),
            _ => None,
        }
    }

    /// Valid but odd lines the fast path deliberately leaves to clap: a
    /// repeated global `--cache-dir`, and `--placeholder` with `--force`
    /// (which clap accepts although the placeholder needs `--no-wait`).
    fn left_to_clap(args: &[OsString]) -> bool {
        let has = |flag: &str| {
            args.iter()
                .filter(|a| a.as_bytes().starts_with(flag.as_bytes()))
                .count()
        };
        has("--cache-dir") > 1
            || has("--store") > 1
            || (has("--placeholder") > 0 && has("--force") > 0)
    }

    #[test]
    fn agrees_with_clap_wherever_it_answers() {
        let mut answered = 0;
        let mut checked = 0;
        for prefix in PREFIXES {
            for first in 0..=FRAGMENTS.len() {
                for second in 0..=FRAGMENTS.len() {
                    for (command, ttl) in COMMANDS.iter().flat_map(|c| [(c, true), (c, false)]) {
                        let mut args: Vec<OsString> = vec!["cacheback".into()];
                        args.extend(prefix.iter().map(OsString::from));
                        for index in [first, second] {
                            if let Some(fragment) = FRAGMENTS.get(index) {
                                args.extend(fragment.iter().map(OsString::from));
                            }
                        }
                        if ttl {
                            args.extend(["--ttl".into(), "1".into()]);
                        }
                        args.extend(command.iter().map(OsString::from));
                        let clap = clap_run(&args);
                        checked += usize::from(clap.is_some() && !left_to_clap(&args));
                        let Some(fast) = parse(&args) else { continue };
                        answered += 1;
                        let Command::Run(fast_run) = fast.command else {
                            panic!("fast path produced another subcommand")
                        };
                        assert_eq!(
                            Some((fast.cache_dir, fast.store, fast_run)),
                            clap,
                            "{args:?}"
                        );
                    }
                }
            }
        }
        // Every valid `run` line in the corpus is one the fast path handles.
        assert_eq!(
            answered, checked,
            "fast path answered {answered} of {checked} valid lines"
        );
    }

    #[test]
    fn answers_the_common_forms() {
        for line in [
            "cacheback run --ttl 15m -- curl -s wttr.in",
            "cacheback run --ttl 30s --cwd --modtime .git/HEAD -- git status",
            "cacheback --cache-dir /tmp/c run --ttl=1h --name w --no-wait --placeholder … date",
        ] {
            let args: Vec<OsString> = line.split(' ').map(OsString::from).collect();
            assert!(parse(&args).is_some(), "{line}");
        }
    }
}
