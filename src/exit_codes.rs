//! Every exit status cacheback itself can return, named once.
//!
//! The numbers follow the conventions of `env(1)` and `timeout(1)`, so a
//! script that already understands those tools understands cacheback. When the
//! wrapped command ran (or its result is replayed from the cache), its own
//! status is returned instead.

/// Success for cacheback's own subcommands, and `--no-wait` on a miss.
pub const SUCCESS: u8 = 0;
/// A subcommand found nothing to act on (for example `show` of an unknown entry).
pub const NOT_FOUND: u8 = 1;
/// The command line could not be parsed.
pub const USAGE: u8 = 2;
/// The command ran longer than `--timeout` and was killed.
pub const TIMED_OUT: u8 = 124;
/// cacheback itself failed.
pub const FAILURE: u8 = 125;
/// The command was found but could not be executed.
pub const CANNOT_EXECUTE: u8 = 126;
/// The command was not found.
pub const COMMAND_NOT_FOUND: u8 = 127;
/// Added to a signal number when cacheback or the command ended by that signal.
pub const SIGNAL_BASE: u8 = 128;
