//! cacheback: cache the output of slow commands, serve it at once, refresh it
//! in the background. See README.md for the user's view; each module says
//! which concern it owns.

#![warn(missing_docs)]

pub mod cache_dir;
pub mod cli;
pub mod cmd;
pub mod display;
pub mod error;
pub mod exec;
pub mod exit_codes;
pub mod fast_args;
pub mod inspect;
pub mod key;
pub mod lock;
pub mod output;
pub mod refresh;
pub mod startup;
pub mod store;
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

/// Parses the command line (`args`, program name first), runs it, and turns
/// the outcome into an exit status. Errors print as one `cacheback: ...` line;
/// a closed stdout ends quietly.
pub fn main(args: Vec<std::ffi::OsString>) -> u8 {
    let parsed = match fast_args::parse(&args) {
        Some(cli) => Ok(cli),
        None => parse_with_clap(&args),
    };
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => {
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
    match cmd::dispatch(cli) {
        Ok(code) => code,
        Err(err) if err.is_broken_pipe() => exit_codes::SUCCESS,
        Err(err) => {
            output::warn(format_args!("{err}"));
            err.exit_code()
        }
    }
}
