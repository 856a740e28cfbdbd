//! Remembering, per host, that the fleet store is down.
//!
//! A caller whose store does not answer falls back to the local cache after
//! the connect timeout, warns once, and leaves a marker file in the local
//! cache directory; for [`DOWN_FOR`] after it, callers skip the store without
//! waiting or warning, so a prompt pays the timeout once, not on every line.
//! The first caller after that tries again, and a success removes the marker.

use std::fs::{self, OpenOptions};
use std::io;
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

/// True while a caller on this host found the store down less than
/// [`DOWN_FOR`] ago.
pub fn recently_down(dir: &Path) -> bool {
    fs::metadata(marker(dir))
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|marked| SystemTime::now().duration_since(marked).ok())
        .is_some_and(|since| since < DOWN_FOR)
}

/// Records that the store did not answer; true when no other caller had
/// recorded it within [`DOWN_FOR`], so this caller is the one to warn.
pub fn note_down(dir: &Path) -> io::Result<bool> {
    let first = !recently_down(dir);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(marker(dir))?;
    file.set_modified(SystemTime::now())?;
    Ok(first)
}

/// Records that the store answers again.
pub fn note_up(dir: &Path) {
    let _ = fs::remove_file(marker(dir));
}

/// Connects to the fleet store unless it was found down recently. `None`
/// means "use the local cache alone"; the one caller that found the store
/// down gets `Some(Err)` to warn about, the others `None` in silence.
pub fn connect(
    dir: &Path,
    url: &StoreUrl,
    connect_timeout: Duration,
) -> Option<Result<Connection, StoreError>> {
    if recently_down(dir) {
        return None;
    }
    match Connection::open(url, connect_timeout, connect_timeout) {
        Ok(connection) => {
            note_up(dir);
            Some(Ok(connection))
        }
        Err(err) => match note_down(dir) {
            Ok(false) => None,
            _ => Some(Err(err)),
        },
    }
}
