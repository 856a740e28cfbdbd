//! The hidden `__refresh` subcommand: the detached background run.

use crate::cli::RefreshArgs;
use crate::error::Result;
use crate::exit_codes;
use crate::key::KeyInputs;
use crate::lock::EntryLock;
use crate::refresh;
use crate::store::events;
use crate::store::{FileKind, FsStore};

/// Runs the command with the lock the caller handed over, and stores the result.
pub fn run(store: &FsStore, args: &RefreshArgs) -> Result<u8> {
    refresh::detach(args.lock_fd);
    let inputs = KeyInputs::gather(&args.run)
        .map_err(|err| crate::error::Error::io("reading key inputs", err))?;
    let key = inputs.key();
    // SAFETY: the caller passed this descriptor for exactly this purpose, and
    // nothing else in this fresh process has touched it.
    let lock =
        unsafe { EntryLock::from_inherited(args.lock_fd, store.path(&key, FileKind::Lock))? };
    if key.to_hex() != args.key {
        // A --modtime file or --env value changed since the caller looked: the
        // entry it wanted refreshed has become unreachable, so there is nothing to do.
        return Ok(exit_codes::SUCCESS);
    }
    super::run::execute(store, &key, &inputs, &args.run, &lock, false)?;
    let _ = events::fold(store, &key, &lock);
    drop(lock);
    super::gc::maybe_daily(store, super::run::now_ms());
    Ok(exit_codes::SUCCESS)
}
