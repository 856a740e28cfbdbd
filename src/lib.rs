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

/// Switches of `run` (no value).
const RUN_SWITCHES: [&str; 5] = [
    "--no-wait",
    "--force",
    "--cache-failures",
    "--cwd",
    "--stdin",
];

/// Global options (before the subcommand) that take a value.
const GLOBAL_VALUE_OPTIONS: [&str; 6] = [
    "--cache-dir",
    "--store",
    "--store-timeout",
    "--store-ca-file",
    "--store-max-value",
    "--store-prefix",
];

/// Whether `flag` takes a value (the next word): an option of `run` or a
/// global one, which may also be written after the subcommand.
fn takes_value(flag: &str) -> bool {
    VALUE_OPTIONS.contains(&flag) || GLOBAL_VALUE_OPTIONS.contains(&flag)
}

/// The subcommands, for the "did you mean" of a word that is none of them.
const SUBCOMMANDS: [&str; 6] = ["run", "stats", "show", "invalidate", "warm", "gc"];

/// Words new users type for a subcommand, and the one they mean.
const SUBCOMMAND_GUESSES: [(&str, &str); 17] = [
    ("stat", "stats"),
    ("status", "stats"),
    ("list", "stats"),
    ("ls", "stats"),
    ("info", "show"),
    ("get", "show"),
    ("cat", "show"),
    ("inspect", "show"),
    ("clear", "invalidate --all"),
    ("flush", "invalidate --all"),
    ("purge", "invalidate --all"),
    ("delete", "invalidate"),
    ("rm", "invalidate"),
    ("remove", "invalidate"),
    ("refresh", "invalidate --refresh"),
    ("prune", "gc"),
    ("exec", "run"),
];

/// Short options users try, and the long option of `run` they mean.
const SHORT_GUESSES: [(&str, &str); 5] = [
    ("-t", "--ttl"),
    ("-n", "--name"),
    ("-f", "--force"),
    ("-w", "--no-wait"),
    ("-s", "--scope"),
];

/// A `run` or `warm` command line taken apart the way the parsers take it:
/// the subcommand, the words before it, its options, and the command.
struct RunLine<'a> {
    subcommand: &'a str,
    globals: Vec<&'a str>,
    options: Vec<&'a str>,
    command: Vec<&'a str>,
}

/// `args` as UTF-8 words without the program name, or `None`.
fn words(args: &[std::ffi::OsString]) -> Option<Vec<&str>> {
    args.iter().skip(1).map(|arg| arg.to_str()).collect()
}

/// Splits a `run`/`warm` line; `None` for another subcommand or none.
fn run_line<'a>(words: &[&'a str]) -> Option<RunLine<'a>> {
    let mut rest = words.iter().copied();
    let mut globals = Vec::new();
    let subcommand = loop {
        match rest.next()? {
            sub @ ("run" | "warm") => break sub,
            flag if GLOBAL_VALUE_OPTIONS.contains(&flag) => {
                globals.push(flag);
                globals.push(rest.next()?);
            }
            flag if flag.starts_with("--") && flag.contains('=') => globals.push(flag),
            _ => return None,
        }
    };
    let mut options = Vec::new();
    let mut command = Vec::new();
    while let Some(word) = rest.next() {
        if word == "--" || !word.starts_with('-') || word == "-" {
            command.extend((word != "--").then_some(word));
            command.extend(rest.by_ref());
            break;
        }
        options.push(word);
        if takes_value(word) {
            options.extend(rest.next());
        }
    }
    Some(RunLine {
        subcommand,
        globals,
        options,
        command,
    })
}

/// A clearer message than clap's for the mistakes a new user makes, whose
/// tips would mislead or are missing: a negative duration (clap suggests
/// `-- -5`, which would make `-5` the command), options written after the
/// command (clap says `--ttl` is missing), `--placeholder` without
/// `--no-wait`, a forgotten `run`, and a subcommand or option that does not
/// exist but is near one that does. `None` leaves the error to clap.
#[cold]
#[inline(never)]
fn usage_hint(args: &[std::ffi::OsString]) -> Option<String> {
    let words = words(args)?;
    let Some(line) = run_line(&words) else {
        return outside_run_hint(&words);
    };
    let RunLine {
        subcommand,
        options,
        command,
        ..
    } = &line;
    let (mut ttl, mut no_wait, mut placeholder) = (false, false, false);
    let mut at = 0;
    while let Some(&word) = options.get(at) {
        at += 1;
        let flag = word.split('=').next().unwrap_or(word);
        ttl |= flag == "--ttl";
        no_wait |= flag == "--no-wait";
        placeholder |= flag == "--placeholder";
        if takes_value(flag) && !word.contains('=') {
            let value = options.get(at).copied()?;
            at += 1;
            let negative = value.starts_with('-')
                && value[1..].starts_with(|c: char| c.is_ascii_digit() || c == '.');
            if negative && ["--ttl", "--max-age", "--timeout"].contains(&flag) {
                return Some(format!(
                    "{flag} {value}: a duration cannot be negative; give a length of time such \
                     as 90s, 15m, 1h30m or 1.5h"
                ));
            }
        } else if !takes_value(flag)
            && !RUN_SWITCHES.contains(&flag)
            && let Some(near) = nearest_option(flag)
        {
            return Some(format!(
                "unknown option '{flag}' for `cacheback {subcommand}`: did you mean {near}? \
                 (`cacheback {subcommand} -h` lists the options)"
            ));
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

/// The long option of `run` a mistyped one most likely means: another case
/// (`--TTL`), `_` for `-` (`--max_age`), or a short option we do not have (`-t`).
fn nearest_option(flag: &str) -> Option<&'static str> {
    if let Some((_, long)) = SHORT_GUESSES.iter().find(|(short, _)| *short == flag) {
        return Some(long);
    }
    let folded = flag.to_ascii_lowercase().replace('_', "-");
    VALUE_OPTIONS
        .iter()
        .chain(&RUN_SWITCHES)
        .copied()
        .find(|option| *option == folded)
}

/// Hints for a command line without `run` or `warm`: `run` forgotten
/// before its options (`cacheback --ttl 5m -- date`), or a subcommand that
/// does not exist (`stat`, `list`, `clear`).
fn outside_run_hint(words: &[&str]) -> Option<String> {
    let mut at = 0;
    while let Some(&word) = words.get(at) {
        if GLOBAL_VALUE_OPTIONS.contains(&word) {
            at += 2;
            continue;
        }
        let flag = word.split('=').next().unwrap_or(word);
        if GLOBAL_VALUE_OPTIONS.contains(&flag) {
            at += 1;
            continue;
        }
        break;
    }
    let first = *words.get(at)?;
    let flag = first.split('=').next().unwrap_or(first);
    let run_option = VALUE_OPTIONS.contains(&flag)
        || RUN_SWITCHES.contains(&flag)
        || nearest_option(flag).is_some();
    if run_option || first == "--" {
        let mut fixed: Vec<&str> = words[..at].to_vec();
        fixed.push("run");
        fixed.extend(&words[at..]);
        return Some(format!(
            "`{first}` is an option of `cacheback run`, which is missing: write `cacheback {}`",
            fixed.join(" ")
        ));
    }
    if first.starts_with('-') || SUBCOMMANDS.contains(&first) {
        return None;
    }
    let lower = first.to_ascii_lowercase();
    let meant = SUBCOMMAND_GUESSES
        .iter()
        .find(|(guess, _)| *guess == lower)
        .map(|(_, meant)| *meant)
        .or_else(|| SUBCOMMANDS.iter().copied().find(|sub| *sub == lower))?;
    Some(format!(
        "unknown subcommand '{first}': did you mean `cacheback {meant}`? (`cacheback -h` lists \
         them: {})",
        SUBCOMMANDS.join(", ")
    ))
}

/// What to add to a failed `run`'s report when the command line shows what
/// went wrong: `--ttl 5 minutes` made `minutes` the command (`hint` of a
/// command not found), or a cacheback option written after the command was
/// handed to it (a warning after the command's own error).
#[cold]
#[inline(never)]
fn after_failed_run(args: &[std::ffi::OsString], err: Option<&mut error::Error>) {
    let Some(words) = words(args) else { return };
    let Some(line) = run_line(&words) else { return };
    if let Some(error::Error::CommandNotFound { program, hint }) = err {
        let duration = line
            .options
            .iter()
            .rposition(|word| ["--ttl", "--max-age", "--timeout", "--jitter"].contains(word))
            .filter(|at| *at + 2 == line.options.len())
            .map(|at| (line.options[at], line.options[at + 1]));
        if let Some((flag, number)) = duration
            && let Some(short) = units::short_unit(program)
            && line.command.first() == Some(&program.as_str())
            && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        {
            let long = match program.as_str() {
                word if word == short => String::new(),
                word => format!(" or `{flag} {number}{word}`"),
            };
            *hint = format!(
                " (a duration is one word: write `{flag} {number}{short}`{long}; `{program}` \
                 was taken as the command)"
            );
        }
        return;
    }
    if !exec::ran_in_foreground() {
        return;
    }
    let Some((program, arguments)) = line.command.split_first() else {
        return;
    };
    let mut moved = Vec::new();
    let mut kept = Vec::new();
    let mut rest = arguments.iter().copied();
    while let Some(word) = rest.next() {
        let flag = word.split('=').next().unwrap_or(word);
        if takes_value(flag) && flag != "--cache-dir" {
            moved.push(word);
            if !word.contains('=') {
                moved.extend(rest.next());
            }
        } else if RUN_SWITCHES.contains(&word) {
            moved.push(word);
        } else {
            kept.push(word);
        }
    }
    if moved.is_empty() {
        return;
    }
    let mut fixed: Vec<&str> = line.globals.clone();
    fixed.push(line.subcommand);
    fixed.extend(&line.options);
    fixed.extend(&moved);
    fixed.push("--");
    fixed.push(program);
    fixed.extend(&kept);
    output::warn(format_args!(
        "`{}` came after the command, so `{program}` got it; if it was meant for cacheback, \
         options go before the command: `cacheback {}`",
        moved.join(" "),
        fixed.join(" ")
    ));
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
        Ok(code) => {
            if code != exit_codes::SUCCESS {
                after_failed_run(&args, None);
            }
            code
        }
        Err(err) if err.is_broken_pipe() => exit_codes::SUCCESS,
        Err(mut err) => {
            if let error::Error::CommandNotFound { .. } = err {
                after_failed_run(&args, Some(&mut err));
            }
            output::warn(format_args!("{err}"));
            err.exit_code()
        }
    }
}
