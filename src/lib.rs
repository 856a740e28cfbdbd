//! cacheback: cache the output of slow commands, serve it at once, refresh it
//! in the background. See README.md for the user's view; each module says
//! which concern it owns.

#![warn(missing_docs)]

pub mod cache_dir;
pub mod cli;
pub mod cmd;
pub mod error;
pub mod exec;
pub mod exit_codes;
pub mod inspect;
pub mod key;
pub mod lock;
pub mod output;
pub mod refresh;
pub mod store;
pub mod units;

use std::process::ExitCode;

use clap::Parser;

/// Parses the command line, runs it, and turns the outcome into an exit status.
/// Errors print as one `cacheback: ...` line; a closed stdout ends quietly.
pub fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() {
                exit_codes::USAGE
            } else {
                exit_codes::SUCCESS
            });
        }
    };
    match cmd::dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) if err.is_broken_pipe() => ExitCode::SUCCESS,
        Err(err) => {
            output::warn(format_args!("{err}"));
            ExitCode::from(err.exit_code())
        }
    }
}
