//! One module per subcommand, dispatched from one `match`.

pub mod gc;
pub mod invalidate;
pub mod run;
pub mod show;
pub mod stats;
pub mod warm;

use crate::cache_dir;
use crate::cli::{Cli, Command};
use crate::error::Result;
use crate::options::RunOptions;
use crate::store::FsStore;
use crate::two_tier::FleetSettings;

/// Runs the parsed command line and returns the exit status.
pub fn dispatch(cli: Cli) -> Result<u8> {
    let flag_given = cli.cache_dir.is_some();
    let dir = cache_dir::resolve(cli.cache_dir);
    let fleet = FleetSettings::from(cli.store);
    match (cli.command, dir) {
        (Command::Run(args), Ok(dir)) => {
            run::run(&FsStore::new(dir), &RunOptions::from(args), &fleet)
        }
        (Command::Run(args), Err(err)) => {
            // Without a cache the command must still do its job.
            crate::output::warn(format_args!("cache unavailable, running uncached: {err}"));
            run::run_uncached(&RunOptions::from(args))
        }
        (other, dir) => manage(&FsStore::new(dir?), &fleet, other, flag_given),
    }
}

/// Every subcommand but `run`, out of line so that their inlined bodies do
/// not grow the stack frame every cache hit passes through.
#[inline(never)]
/// `dir_flag_given`: the directory came from `--cache-dir`, which `stats`
/// says when the directory cannot serve.
fn manage(
    store: &FsStore,
    fleet: &FleetSettings,
    command: Command,
    dir_flag_given: bool,
) -> Result<u8> {
    match command {
        // Handled by `dispatch`; here only so the match needs no panic.
        Command::Run(args) => run::run(store, &RunOptions::from(args), fleet),
        Command::Stats(args) => stats::run(store, &args, cache_dir::origin(dir_flag_given), fleet),
        Command::Show(args) => show::run(store, &args, fleet),
        Command::Invalidate(args) => invalidate::run(store, &args, fleet),
        Command::Warm(args) => warm::run(store, &RunOptions::from(args.run), fleet),
        Command::Gc(args) => gc::run(store, &args, fleet),
    }
}
