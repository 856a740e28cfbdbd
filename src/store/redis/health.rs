//! Remembering, per host, that the fleet store is down.
//!
//! A caller whose store does not answer falls back to the local cache after
//! the connect timeout, warns once, and leaves a marker file in the local
//! cache directory; for [`DOWN_FOR`] after it, callers skip the store without
//! waiting or warning, so a prompt pays the timeout once, not on every line.
//! The first caller after that tries again, and a success removes the marker.
//!
//! The marker names the store it is about (its address as messages show it:
//! scheme, user, host, port or socket, database; never the password), and
//! only callers of that store skip it: after a mistyped address was found
//! down, the corrected one is used at once.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::conn::{Connection, StoreError};
use super::url::StoreUrl;

/// Name of the marker in the local cache directory.
pub const DOWN_MARKER: &str = ".store-down";
/// How long callers skip a store that did not answer.
pub const DOWN_FOR: Duration = Duration::from_secs(30);

fn marker(dir: &Path) -> PathBuf {
    dir.join(DOWN_MARKER)
}

/// What the marker holds for `url`: its printed form, which has no password.
fn address(url: &StoreUrl) -> String {
    url.to_string()
}

/// The marker's age and the address it names, if there is one.
fn read_marker(dir: &Path) -> Option<(Duration, String)> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(marker(dir))
        .ok()?;
    let marked = file.metadata().and_then(|meta| meta.modified()).ok()?;
    let age = SystemTime::now().duration_since(marked).ok()?;
    let mut named = String::new();
    // An address is short; a larger marker is not ours to trust.
    (&mut file).take(4096).read_to_string(&mut named).ok()?;
    Some((age, named))
}

/// True while a caller on this host found the store at `url` down less than
/// [`DOWN_FOR`] ago.
pub fn recently_down(dir: &Path, url: &StoreUrl) -> bool {
    read_marker(dir).is_some_and(|(age, named)| age < DOWN_FOR && named == address(url))
}

/// Records that the store at `url` did not answer; true when no other
/// caller had recorded it within [`DOWN_FOR`], so this caller is the one to warn.
pub fn note_down(dir: &Path, url: &StoreUrl) -> io::Result<bool> {
    let first = !recently_down(dir, url);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(marker(dir))?;
    file.write_all(address(url).as_bytes())?;
    file.set_modified(SystemTime::now())?;
    Ok(first)
}

/// Records that the store at `url` answers again: its marker goes, and so
/// does an expired one about another store.
pub fn note_up(dir: &Path, url: &StoreUrl) {
    if let Some((age, named)) = read_marker(dir)
        && (named == address(url) || age >= DOWN_FOR)
    {
        let _ = fs::remove_file(marker(dir));
    }
}

/// Connects to the fleet store unless it was found down recently. `None`
/// means "use the local cache alone"; the one caller that found the store
/// down gets `Some(Err)` to warn about, the others `None` in silence.
pub fn connect(
    dir: &Path,
    url: &StoreUrl,
    connect_timeout: Duration,
) -> Option<Result<Connection, StoreError>> {
    if recently_down(dir, url) {
        return None;
    }
    match Connection::open(url, connect_timeout, connect_timeout) {
        Ok(connection) => {
            note_up(dir, url);
            Some(Ok(connection))
        }
        Err(err) => match note_down(dir, url) {
            Ok(false) => None,
            _ => Some(Err(err)),
        },
    }
}
