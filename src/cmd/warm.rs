//! `cacheback warm`: start a background run now and return at once, so cron
//! jobs and login scripts can fill the cache before anyone asks.

use crate::error::{Error, Result};
use crate::exit_codes;
use crate::key::KeyInputs;
use crate::options::RunOptions;
use crate::output;
use crate::refresh;
use crate::store::FsStore;
use crate::two_tier::FleetSettings;

/// Runs `cacheback warm`. Back-off after failures does not apply, nor a
/// fresh fleet value: the user asked for a run (marked by `force`).
pub fn run(store: &FsStore, args: &RunOptions, fleet: &FleetSettings) -> Result<u8> {
    let args = &RunOptions {
        force: true,
        ..args.clone()
    };
    let inputs =
        KeyInputs::gather(args, store).map_err(|err| Error::io("reading key inputs", err))?;
    let key = inputs.key();
    store.prepare()?;
    match store.try_lock(&key)? {
        Some(lock) => refresh::spawn(store, &key, args, &lock, fleet)?,
        None => output::warn(format_args!(
            "a run for this entry is already in progress; not starting another"
        )),
    }
    Ok(exit_codes::SUCCESS)
}
