//! The command-line interface, and nothing else: clap types only.
//!
//! Kept free of behaviour so the man pages and shell completions can be
//! generated from exactly what users type.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum, ValueHint};

use crate::units::{Jitter, parse_duration, parse_jitter, parse_size, parse_timeout};

const ABOUT: &str =
    "Cache the output of slow commands; serve it at once, refresh it in the background";

const LONG_ABOUT: &str = "\
cacheback caches the output of slow commands on disk. A cached value is served \
at once; when it is older than its TTL it is still served at once, and one \
detached background process reruns the command and replaces the value. A file \
lock makes sure only one refresh runs at a time, however many callers arrive.";

const AFTER_HELP: &str = "\
Examples:
  cacheback run --ttl 15m -- curl -s 'wttr.in/?format=3'
  cacheback stats
  cacheback invalidate --name weather

`cacheback run -h` for its options; docs/reference.md and the man pages for the rest.";

/// Default of `invalidate --jobs`: refreshes run at once by one invalidation.
pub const DEFAULT_JOBS: u16 = 4;

/// Top-level command line.
#[derive(Debug, Parser)]
#[command(
    name = "cacheback",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Cache directory [default: $CACHEBACK_DIR, else ~/.cache/cacheback]
    ///
    /// Cache directory [default: $CACHEBACK_DIR, else $XDG_CACHE_HOME/cacheback, else
    /// ~/.cache/cacheback]. It must be yours and private (cacheback creates it 0700).
    #[arg(long, global = true, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub cache_dir: Option<PathBuf>,

    /// The fleet store shared by several hosts (see [`StoreArgs`]).
    #[command(flatten)]
    pub store: StoreArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The fleet tier: a Redis server (or one speaking its protocol) that
/// several hosts share, each keeping its cache directory as the near tier.
/// Every option has an environment twin, read only when the store is needed
/// (a fresh local hit never reads it). Shown under their own heading by
/// `--help` only: a newcomer's `-h` stays one screen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
#[command(next_help_heading = "Fleet store")]
pub struct StoreArgs {
    /// Share values between hosts through this Redis server [env: CACHEBACK_STORE]:
    /// redis://[USER[:PASSWORD]@]HOST[:PORT][/DB], rediss://... (TLS) or
    /// unix:///PATH[?db=N]; the password can come from CACHEBACK_STORE_PASSWORD
    #[arg(long, global = true, value_name = "URL", hide_short_help = true)]
    pub store: Option<String>,

    /// How long to wait for the store to accept a connection before going on
    /// without it [env: CACHEBACK_STORE_TIMEOUT] [default: 200ms]
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_timeout,
          hide_short_help = true)]
    pub store_timeout: Option<Duration>,

    /// Trust only the certificate authorities in this PEM file for rediss://
    /// [env: CACHEBACK_STORE_CA_FILE] [default: the system's]
    #[arg(long, global = true, value_name = "FILE", value_hint = ValueHint::FilePath,
          hide_short_help = true)]
    pub store_ca_file: Option<PathBuf>,

    /// Values larger than this stay in the local cache only, with a warning
    /// [env: CACHEBACK_STORE_MAX_VALUE] [default: 256MiB]
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size,
          hide_short_help = true)]
    pub store_max_value: Option<u64>,

    /// Prefix of the store's keys, so teams can share a server (and an ACL
    /// can confine cacheback to `PREFIX:*`) [env: CACHEBACK_STORE_PREFIX]
    /// [default: cacheback]
    #[arg(long, global = true, value_name = "PREFIX", hide_short_help = true)]
    pub store_prefix: Option<String>,
}

/// The subcommands.
///
/// Deferred: clap then builds the arguments of the one subcommand being run,
/// not of all of them, which keeps the management commands off the cost of a
/// cache hit.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// `cacheback run`, see [`RunArgs`].
    #[command(
        long_about = RUN_LONG_ABOUT,
        after_help = RUN_AFTER_HELP,
        after_long_help = RUN_AFTER_LONG_HELP,
        about = RUN_ABOUT
    )]
    Run(RunArgs),

    /// `cacheback stats`, see [`StatsArgs`].
    #[command(after_help = STATS_AFTER_HELP, about = STATS_ABOUT)]
    Stats(StatsArgs),

    /// `cacheback show`, see [`ShowArgs`].
    #[command(about = SHOW_ABOUT)]
    Show(ShowArgs),

    /// `cacheback invalidate`, see [`InvalidateArgs`].
    #[command(about = INVALIDATE_ABOUT)]
    Invalidate(InvalidateArgs),

    /// `cacheback warm`, see [`WarmArgs`].
    #[command(about = WARM_ABOUT)]
    Warm(WarmArgs),

    /// `cacheback gc`, see [`GcArgs`].
    #[command(about = GC_ABOUT)]
    Gc(GcArgs),
}

// Subcommand summaries, set on both the variant (for the list in `cacheback
// --help`) and the options struct: the subcommands are deferred, and a
// struct's doc comment, applied last, would otherwise become the summary.
const RUN_ABOUT: &str =
    "Print a command's cached output, refreshing it in the background when stale";
const STATS_ABOUT: &str = "List cached entries with their state, age, counters and last failure";
const SHOW_ABOUT: &str = "Show one entry's metadata, or with --stdout/--stderr its cached output";
const INVALIDATE_ABOUT: &str =
    "Remove entries, so the next `run` is a miss; --refresh marks them stale instead";
const WARM_ABOUT: &str = "Start a background run now and return at once, to pre-fill the cache";
const GC_ABOUT: &str =
    "Remove entries not read for a while, shrink the cache to a size, clean leftovers";

const RUN_LONG_ABOUT: &str = "\
Print a command's cached output, refreshing it in the background when stale.

The command is run directly (no shell) with the caller's environment and working \
directory, and stdin from /dev/null (with --stdin, the caller's input). Its stdout, \
stderr and exit status are cached together as one entry, keyed by the command's \
arguments (and by whatever --cwd, --env, --modtime, --hash, --stdin and --scope add).

  Fresh hit  the entry is younger than --ttl: its stdout, stderr and exit status \
are replayed; the command does not run.
  Stale hit  the entry is older than --ttl: it is replayed at once just the same, \
and one detached process reruns the command and replaces the entry. Callers never \
wait for it, and only one refresh runs at a time.
  Miss       there is no entry (or it is older than --max-age): the command runs \
now, its output streams through as it is produced, and a successful result is \
stored. Callers arriving meanwhile wait and get the same result. With --no-wait, \
the --placeholder is printed instead and the command runs in the background.

A run that fails (non-zero exit, killed, timed out) never replaces a stored entry: \
callers keep getting the last good value, the failure is recorded for `cacheback \
stats`, and refreshes back off (doubling from 10s, at most one TTL).

CACHEBACK_TTL, CACHEBACK_SCOPE and CACHEBACK_STALE_MARKER set defaults for --ttl, \
--scope and --stale-marker; the flags win, and an empty variable counts as unset.";

/// `run -h`'s examples: one line each, short enough not to wrap at 80
/// columns (a wrapped line cannot be pasted).
const RUN_AFTER_HELP: &str = "\
Examples:
  cacheback run --ttl 15m -- curl -s 'wttr.in/?format=3'
  cacheback run --ttl 10s --no-wait --cwd -- git status --short
  cacheback run --ttl 1h --max-age 1h -- ./report     # hard expiry, as bkt

`cacheback run --help` says more, with the fleet store's options and the exit statuses.";

/// `run --help`'s examples: long ones continue with a backslash, each line
/// short enough not to wrap at 80 columns, so every one pastes into a shell.
const RUN_AFTER_LONG_HELP: &str = "\
Examples:
  # Weather in a status bar: refresh every 15 minutes; --no-wait and the
  # placeholder keep even the very first call from blocking the bar.
  cacheback run --ttl 15m --no-wait --placeholder '…' --name weather \\
      -- curl -s 'wttr.in/?format=3'

  # Git status in a prompt, cached per directory and per HEAD (works from a
  # subdirectory and in a worktree, where .git/HEAD does not exist).
  cacheback run --ttl 30s --cwd \\
      --modtime \"$(git rev-parse --git-path HEAD)\" \\
      -- git status --short --branch

  # Say when the value shown is old, and wake i3blocks when it changes.
  cacheback run --ttl 5m --stale-marker ' ({age} ago)' \\
      --on-refresh 'pkill -RTMIN+8 i3blocks' -- ./battery-status

  # Hard expiry (bkt's TTL): serve for a minute, then run in the foreground.
  cacheback run --ttl 1m --max-age 1m -- ./report

Exit status: the command's own (also when replayed); 2 usage error; 124 timed out; \
125 cacheback failed; 126 command not executable; 127 command not found.";

/// What `run` keys an entry on, besides the command's arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct KeyArgs {
    /// Key on the working directory: each directory gets its own entry
    #[arg(long)]
    pub cwd: bool,

    /// Key on the value of environment variable NAME (repeatable)
    ///
    /// Key on the value of environment variable NAME (repeatable; a name, not NAME=VALUE). The
    /// value is stored only as a keyed hash.
    #[arg(long = "env", value_name = "NAME", value_parser = parse_env_name)]
    pub env: Vec<OsString>,

    /// Key on FILE's modification time (repeatable)
    ///
    /// Key on the modification time of FILE (repeatable), so editing it starts a new entry. A
    /// missing file keys as "missing", with a warning on a miss.
    #[arg(long = "modtime", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub modtime: Vec<PathBuf>,

    /// Key on FILE's content (repeatable; regular files only)
    ///
    /// Key on the content of FILE (repeatable): unlike --modtime, a checkout that rewrites the
    /// file with the same bytes keeps the entry. A FIFO or device is refused (reading it could
    /// hang the caller); a missing file keys as "missing", with a warning on a miss.
    #[arg(long = "hash", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub hash: Vec<PathBuf>,

    /// Key on stdin and give it to the command (else it gets /dev/null)
    ///
    /// Read stdin, key on its content, and give the same bytes to the command and its refreshes
    /// (without it the command's stdin is /dev/null).
    #[arg(long)]
    pub stdin: bool,

    /// Key on a namespace [env: CACHEBACK_SCOPE]
    ///
    /// Key on a namespace, to keep otherwise identical commands apart [env: CACHEBACK_SCOPE].
    #[arg(long, value_name = "NAME")]
    pub scope: Option<String>,
}

/// Options of `run`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(about = RUN_ABOUT, long_about = RUN_LONG_ABOUT)]
pub struct RunArgs {
    /// Serve without refreshing while younger than this: 90s, 15m, 1h, 2days
    ///
    /// Required (or CACHEBACK_TTL): serve the entry without refreshing while younger than this
    /// (e.g. 900, 90s, 15m, 1h30m, 1.5h, 7d, 1w; also 5min, 1hour, 2days, 90sec, 3weeks); 0
    /// refreshes after every call, which still gets the last value at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ttl: Option<Duration>,

    /// Never serve an entry older than this: run the command (hard expiry)
    ///
    /// Treat an entry older than this as missing: never serve it, run the command in the
    /// foreground [default: never]. Equal to --ttl, it is a hard expiry, bkt's TTL: served for
    /// that long, then rerun while the caller waits. Shorter than --ttl gets a warning on a miss.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_age: Option<Duration>,

    /// Kill the command after this long (a failure, exit status 124)
    ///
    /// Kill the command (its whole process group) after this long; counts as a failure, exit 124
    /// [default: none when run in the foreground, 10m for background refreshes].
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,

    /// Spread refreshes: go stale later by up to this (10%, 30s)
    ///
    /// Make each stored value go stale later by a random part of this (a percentage of the TTL
    /// such as 10%, or a duration), so entries stored together are not refreshed together.
    #[arg(long, value_name = "PCT|DURATION", value_parser = parse_jitter)]
    pub jitter: Option<Jitter>,

    /// Print TEXT after a stale or failing value: ' ({age} old)'
    ///
    /// Print TEXT after a value that is past its TTL or whose last refresh failed, before the
    /// output's final newline; {age} becomes its age (2h3m), {state} `stale` or `failing`
    /// [env: CACHEBACK_STALE_MARKER].
    #[arg(long, value_name = "TEXT")]
    pub stale_marker: Option<OsString>,

    /// Run CMD (sh -c) when a refresh changes what callers are shown
    ///
    /// After a background refresh stores output different from before, or takes away the
    /// --stale-marker a caller showed, run CMD with `sh -c`, detached, with CACHEBACK_NAME and
    /// CACHEBACK_KEY set (e.g. 'pkill -RTMIN+8 i3blocks').
    #[arg(long, value_name = "CMD")]
    pub on_refresh: Option<OsString>,

    /// On a miss, print the --placeholder and run in the background
    #[arg(long)]
    pub no_wait: bool,

    /// Text printed on a miss with --no-wait [default: nothing]
    #[arg(long, value_name = "TEXT", requires = "no_wait")]
    pub placeholder: Option<OsString>,

    /// Run the command now, store and print its result, whatever is cached
    #[arg(long, conflicts_with = "no_wait")]
    pub force: bool,

    /// Store results that exit non-zero too (by default only successes)
    #[arg(long)]
    pub cache_failures: bool,

    /// A label for `stats`, `show` and `invalidate` (not part of the key)
    #[arg(long, value_name = "LABEL")]
    pub name: Option<String>,

    /// What the entry is keyed on besides the command.
    #[command(flatten)]
    pub key: KeyArgs,

    /// The command and its arguments, after `--` (run without a shell)
    ///
    /// The command to run and its arguments (run directly, not through a shell: use `sh -c '...'`
    /// for pipes; put `--` before it, and every cacheback option before that).
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "COMMAND",
        value_hint = ValueHint::CommandWithArguments
    )]
    pub command: Vec<OsString>,
}

const STATS_AFTER_HELP: &str = "\
States: fresh, stale (older than its TTL, or marked by `invalidate --refresh`), \
expired (older than its --max-age), failing (the last run failed), refreshing (a run \
holds the lock now). The first of refreshing, failing, expired, stale that applies wins.";

/// How `stats` orders its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatsSort {
    /// By label, else command line.
    Name,
    /// Oldest entry first.
    Age,
    /// Most hits first.
    Hits,
    /// Largest first.
    Size,
}

impl RunArgs {
    /// The TTL: `--ttl`, else `CACHEBACK_TTL`, which [`crate::env_defaults::apply`]
    /// fills in (or refuses the command line) before any command runs.
    pub fn ttl(&self) -> Duration {
        self.ttl.unwrap_or_default()
    }
}

/// An `--env` argument: a variable's name, whose value the key takes from the
/// environment. `NAME=VALUE` is refused: the value would be silently ignored.
fn parse_env_name(text: &str) -> Result<OsString, String> {
    if let Some((name, _)) = text.split_once('=') {
        return Err(format!(
            "--env takes a variable's name, not an assignment: write `--env {name}`, and the key \
             uses ${name}'s value from the environment (set it as `{text} cacheback run ...`)"
        ));
    }
    if text.is_empty() {
        return Err("--env takes a variable's name, such as --env HOME".to_owned());
    }
    Ok(OsString::from(text))
}

/// Options of `stats`.
#[derive(Debug, Clone, Args)]
#[command(about = STATS_ABOUT, long_about = None)]
pub struct StatsArgs {
    /// Print one JSON document {"entries": [...], "totals": {...}} (schema in docs/reference.md)
    #[arg(long)]
    pub json: bool,

    /// Order of the rows
    #[arg(long, value_enum, default_value_t = StatsSort::Name)]
    pub sort: StatsSort,

    /// Reverse the order
    #[arg(long)]
    pub reverse: bool,

    /// Only entries whose label or command line contains this text
    #[arg(value_name = "FILTER")]
    pub filter: Option<String>,
}

/// Names an entry the way `run` does: by `--name LABEL`, or by the command and key options.
#[derive(Debug, Clone, Args)]
pub struct EntrySelector {
    /// The entries labelled LABEL with `run --name`
    #[arg(long, value_name = "LABEL", conflicts_with_all = ["command", "cwd", "env", "modtime", "scope"])]
    pub name: Option<String>,

    /// The key options the entry was stored with (as given to `run`).
    #[command(flatten)]
    pub key: KeyArgs,

    /// The command, exactly as given to `run`
    #[arg(
        trailing_var_arg = true,
        value_name = "COMMAND",
        value_hint = ValueHint::CommandWithArguments
    )]
    pub command: Vec<OsString>,
}

/// Options of `show`.
#[derive(Debug, Clone, Args)]
#[command(about = SHOW_ABOUT, long_about = None)]
#[command(group(ArgGroup::new("target").required(true).args(["name", "command"])))]
pub struct ShowArgs {
    /// Which entry.
    #[command(flatten)]
    pub entry: EntrySelector,

    /// Print the cached stdout instead of the metadata
    #[arg(long)]
    pub stdout: bool,

    /// Print the cached stderr instead of the metadata (after stdout with --stdout)
    #[arg(long)]
    pub stderr: bool,
}

/// Options of `invalidate`.
#[derive(Debug, Clone, Args)]
#[command(about = INVALIDATE_ABOUT, long_about = None)]
#[command(group(ArgGroup::new("target").required(true).args(["name", "command", "all"])))]
pub struct InvalidateArgs {
    /// Which entries.
    #[command(flatten)]
    pub entry: EntrySelector,

    /// Every entry in the cache
    #[arg(long, conflicts_with_all = ["name", "command"])]
    pub all: bool,

    /// Keep serving the entry, marked stale, and start a background refresh now
    #[arg(long)]
    pub refresh: bool,

    /// With --refresh: how many refreshes run at once (the rest wait their turn)
    #[arg(long, short = 'j', value_name = "N", default_value_t = DEFAULT_JOBS,
          value_parser = clap::value_parser!(u16).range(1..), requires = "refresh")]
    pub jobs: u16,
}

/// Options of `warm`: those of `run`, less the ones about a caller waiting.
#[derive(Debug, Clone, Args)]
#[command(about = WARM_ABOUT, long_about = None)]
#[command(
    mut_arg("no_wait", |arg| arg.hide(true)),
    mut_arg("placeholder", |arg| arg.hide(true)),
    mut_arg("force", |arg| arg.hide(true))
)]
pub struct WarmArgs {
    /// The `run` options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Options of `gc`.
#[derive(Debug, Clone, Args)]
#[command(about = GC_ABOUT, long_about = None)]
pub struct GcArgs {
    /// Remove entries not read for this long
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30d")]
    pub older_than: Duration,

    /// Then remove the least recently read entries until the cache fits this size (e.g. 100M)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,

    /// Report what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse_run(args: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(["cacheback", "run"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Run(run) => run,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn command_may_follow_without_double_dash_and_keeps_its_flags() {
        let run = parse_run(&["--ttl", "5", "ls", "-la", "--ttl"]);
        assert_eq!(run.command, ["ls", "-la", "--ttl"]);
        assert_eq!(run.ttl, Some(Duration::from_secs(5)));
    }
}
