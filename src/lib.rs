//! cacheback: cache the output of slow commands, serve it at once, refresh it
//! in the background. See README.md for the user's view; each module says
//! which concern it owns.

#![warn(missing_docs)]

pub mod cache_dir;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod digest;
pub mod display;
pub mod env_defaults;
pub mod error;
pub mod exec;
pub mod exit_codes;
pub mod fast_args;
pub mod inspect;
pub mod key;
pub mod options;
pub mod output;
pub mod produce;
pub mod refresh;
pub mod refresher;
pub mod rules;
pub mod startup;
pub mod stdin_input;
pub mod store;
pub mod two_tier;
pub mod units;

use clap::Parser;

/// clap's parse, kept out of `main`: inlined, its temporaries made `main`'s
/// stack frame 2.5 KiB, which a hit (parsed by `fast_args`) paid for in page
/// faults without ever running it.
#[cold]
#[inline(never)]
fn parse_with_clap(args: &[std::ffi::OsString]) -> Result<cli::Cli, clap::Error> {
    cli::Cli::try_parse_from(args)
}

/// Options of `run` and `warm` that take a value (the others are switches).
const VALUE_OPTIONS: [&str; 13] = [
    "--ttl",
    "--max-age",
    "--timeout",
    "--jitter",
    "--stale-marker",
    "--on-refresh",
    "--hash",
    "--placeholder",
    "--name",
    "--scope",
    "--cache-dir",
    "--env",
    "--modtime",
];

/// A clearer message than clap's for three mistakes a new user makes with
/// `run` or `warm`, whose tips would mislead: a negative duration (clap
/// suggests `-- -5`, which would make `-5` the command), options written
/// after the command (clap says `--ttl` is missing), and `--placeholder`
/// without `--no-wait`. `None` leaves the error to clap.
#[cold]
#[inline(never)]
fn usage_hint(args: &[std::ffi::OsString]) -> Option<String> {
    let words: Vec<&str> = args
        .iter()
        .skip(1)
        .map(|arg| arg.to_str())
        .collect::<Option<_>>()?;
    let mut rest = words.iter().copied();
    let subcommand = loop {
        match rest.next()? {
            sub @ ("run" | "warm") => break sub,
            "--cache-dir" => {
                rest.next()?;
            }
            _ => return None,
        }
    };
    let (mut ttl, mut no_wait, mut placeholder) = (false, false, false);
    let mut command = Vec::new();
    while let Some(word) = rest.next() {
        if word == "--" || !word.starts_with('-') || word == "-" {
            command.extend((word != "--").then_some(word));
            command.extend(rest.by_ref());
            break;
        }
        let flag = word.split('=').next().unwrap_or(word);
        ttl |= flag == "--ttl";
        no_wait |= flag == "--no-wait";
        placeholder |= flag == "--placeholder";
        if VALUE_OPTIONS.contains(&flag) && !word.contains('=') {
            let value = rest.next()?;
            let negative = value.starts_with('-')
                && value[1..].starts_with(|c: char| c.is_ascii_digit() || c == '.');
            if negative && ["--ttl", "--max-age", "--timeout"].contains(&flag) {
                return Some(format!(
                    "{flag} {value}: a duration cannot be negative; give a length of time such \
                     as 90s, 15m, 1h30m or 1.5h"
                ));
            }
        }
    }
    if !ttl && let Some(at) = command.iter().position(|word| *word == "--ttl") {
        let value = command.get(at + 1).copied().unwrap_or("DURATION");
        return Some(format!(
            "options go before the command: `--ttl {value}` was taken as an argument of `{}`; \
             write `cacheback {subcommand} --ttl {value} -- {}`",
            command.join(" "),
            command[..at].join(" ")
        ));
    }
    if placeholder && !no_wait {
        return Some(
            "--placeholder only applies with --no-wait: it is what a miss prints instead of \
             waiting for the command (add --no-wait, or drop --placeholder)"
                .to_owned(),
        );
    }
    None
}

/// clap's message for an unknown option, without its tip "to pass '--bogus'
/// as a value, use '-- --bogus'": no option of ours takes such a value, and
/// after `--` it would become the command. A tip of a similar option stays.
#[cold]
fn without_value_tip(message: &str) -> String {
    let mut text = String::new();
    let mut lines = message.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with("tip: to pass '") {
            if lines.peek().is_some_and(|next| next.trim().is_empty()) {
                lines.next();
            }
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// Parses the command line (`args`, program name first), runs it, and turns
/// the outcome into an exit status. Errors print as one `cacheback: ...` line;
/// a closed stdout ends quietly.
pub fn main(args: Vec<std::ffi::OsString>) -> u8 {
    let parsed = match fast_args::parse(&args) {
        Some(cli) => Ok(cli),
        None => parse_with_clap(&args),
    };
    let mut cli = match parsed {
        Ok(cli) => cli,
        Err(err) => {
            if err.use_stderr()
                && let Some(hint) = usage_hint(&args)
            {
                output::warn(format_args!("{hint}"));
                return exit_codes::USAGE;
            }
            if err.kind() == clap::error::ErrorKind::UnknownArgument {
                let text = without_value_tip(&err.render().to_string());
                let _ = output::write_all(&output::stderr(), text.as_bytes());
                return exit_codes::USAGE;
            }
            let _ = err.print();
            // The only output that goes through std's buffered stdout.
            let _ = std::io::Write::flush(&mut std::io::stdout());
            return if err.use_stderr() {
                exit_codes::USAGE
            } else {
                exit_codes::SUCCESS
            };
        }
    };
    if let Err(message) = env_defaults::apply(&mut cli) {
        output::warn(format_args!("{}", usage_hint(&args).unwrap_or(message)));
        return exit_codes::USAGE;
    }
    match cmd::dispatch(cli) {
        Ok(code) => code,
        Err(err) if err.is_broken_pipe() => exit_codes::SUCCESS,
        Err(err) => {
            output::warn(format_args!("{err}"));
            err.exit_code()
        }
    }
}
