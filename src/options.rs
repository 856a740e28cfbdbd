//! The options of a run as the rest of the program sees them: plain
//! structs, filled from clap's (or the fast parser's) `cli` types once the
//! environment defaults are applied, so nothing below the subcommands
//! depends on the command-line definitions.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{EntrySelector, KeyArgs, RunArgs};
use crate::units::Jitter;

/// What an entry is keyed on besides its command (see `run`'s key options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyOptions {
    /// The working directory (`--cwd`).
    pub cwd: bool,
    /// Environment variables whose values count (`--env`).
    pub env: Vec<OsString>,
    /// Files whose modification times count (`--modtime`).
    pub modtime: Vec<PathBuf>,
    /// Files whose contents count (`--hash`).
    pub hash: Vec<PathBuf>,
    /// The caller's input (`--stdin`).
    pub stdin: bool,
    /// A namespace (`--scope`).
    pub scope: Option<String>,
}

/// How to run and cache one command (`run`, `warm`, and the refreshes that
/// `invalidate --refresh` plans from a stored entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Age after which a value is refreshed.
    pub ttl: Duration,
    /// Age after which a value is not served at all.
    pub max_age: Option<Duration>,
    /// Time limit of the command.
    pub timeout: Option<Duration>,
    /// Random delay added to a stored value's TTL.
    pub jitter: Option<Jitter>,
    /// Text after a stale or failing value (the flag's; the environment's
    /// default is looked up only when it is printed).
    pub stale_marker: Option<OsString>,
    /// Command run after a background refresh changed the output.
    pub on_refresh: Option<OsString>,
    /// A miss prints the placeholder and runs in the background.
    pub no_wait: bool,
    /// What a `no_wait` miss prints.
    pub placeholder: Option<OsString>,
    /// Run whatever the cache holds: `run --force`, and `warm` and
    /// `invalidate --refresh`, which skip the back-off and a fresh fleet value.
    pub force: bool,
    /// Store failed results too.
    pub cache_failures: bool,
    /// The entry's label.
    pub name: Option<String>,
    /// What the key covers besides the command.
    pub key: KeyOptions,
    /// The command and its arguments.
    pub command: Vec<OsString>,
}

impl RunOptions {
    /// The TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// An entry named the way `run` names it: by label, or by command and key options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryName {
    /// The label (`--name`).
    pub name: Option<String>,
    /// The key options.
    pub key: KeyOptions,
    /// The command.
    pub command: Vec<OsString>,
}

impl From<KeyArgs> for KeyOptions {
    fn from(args: KeyArgs) -> KeyOptions {
        KeyOptions {
            cwd: args.cwd,
            env: args.env,
            modtime: args.modtime,
            hash: args.hash,
            stdin: args.stdin,
            scope: args.scope,
        }
    }
}

impl From<RunArgs> for RunOptions {
    /// After `env_defaults::apply`, which fills the TTL or refuses the line.
    fn from(args: RunArgs) -> RunOptions {
        RunOptions {
            ttl: args.ttl.unwrap_or_default(),
            max_age: args.max_age,
            timeout: args.timeout,
            jitter: args.jitter,
            stale_marker: args.stale_marker,
            on_refresh: args.on_refresh,
            no_wait: args.no_wait,
            placeholder: args.placeholder,
            force: args.force,
            cache_failures: args.cache_failures,
            name: args.name,
            key: args.key.into(),
            command: args.command,
        }
    }
}

impl From<EntrySelector> for EntryName {
    fn from(selector: EntrySelector) -> EntryName {
        EntryName {
            name: selector.name,
            key: selector.key.into(),
            command: selector.command,
        }
    }
}
