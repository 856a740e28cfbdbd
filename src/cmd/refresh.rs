//! The detached background run, in the child that `refresh::spawn` forked.

use crate::cli::RunArgs;
use crate::exit_codes;
use crate::key::{Key, KeyInputs};
use crate::lock::EntryLock;
use crate::store::events;
use crate::store::{Committed, FsStore};

/// Runs of one refresh at most: the first, and reruns after `invalidate
/// --refresh` marked the result stale while it ran. Bounded, so a loop of
/// invalidations cannot keep a refresher going for ever.
const MAX_RUNS: usize = 3;

/// Runs the command with the inherited lock and stores the result; returns
/// the refresher's own exit status (nobody waits for it, but it shows in traces).
pub fn run(store: &FsStore, key: &Key, args: &RunArgs, lock: &EntryLock) -> u8 {
    // A --modtime file or --env value may have changed since the caller
    // looked: then the entry it wanted refreshed has become unreachable.
    let current = KeyInputs::gather(args, store)
        .ok()
        .filter(|inputs| inputs.key() == *key);
    let Some(inputs) = current else {
        return exit_codes::SUCCESS;
    };
    let mut status = exit_codes::SUCCESS;
    for _ in 0..MAX_RUNS {
        match super::run::execute(store, key, &inputs, args, lock, false) {
            // Marked stale while it ran: the result may predate what the user
            // reacted to, so run again while we hold the lock.
            Ok(ran) if ran.committed == Some(Committed::StoredStale) => continue,
            Ok(_) => {}
            Err(err) => status = err.exit_code(),
        }
        break;
    }
    let _ = events::fold(store, key, lock);
    // This entry's lock stays held until we exit, so gc passes over it: fine,
    // it was just refreshed.
    super::gc::maybe_daily(store, super::run::now_ms());
    status
}
