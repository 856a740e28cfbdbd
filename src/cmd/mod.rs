//! One module per subcommand, dispatched from one `match`.

pub mod refresh;
pub mod run;

use crate::cache_dir;
use crate::cli::{Cli, Command};
use crate::error::Result;
use crate::store::FsStore;

/// Runs the parsed command line and returns the exit status.
pub fn dispatch(cli: Cli) -> Result<u8> {
    let store = FsStore::new(cache_dir::resolve(cli.cache_dir)?);
    match cli.command {
        Command::Run(args) => run::run(&store, &args),
        Command::Refresh(args) => refresh::run(&store, &args),
    }
}
