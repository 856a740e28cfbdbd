//! Where the cache lives.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Environment variable naming the cache directory.
pub const ENV_CACHE_DIR: &str = "CACHEBACK_DIR";

/// The cache directory: `--cache-dir`, else `$CACHEBACK_DIR`, else the
/// platform cache directory (`$XDG_CACHE_HOME/cacheback` on Linux).
///
/// A relative `CACHEBACK_DIR` is taken from the working directory, as a
/// relative `--cache-dir` is: ignoring it silently sent a user's entries to
/// the default directory. An empty one is unset. The result is absolute, so a
/// background refresher that runs elsewhere finds the same place.
pub fn resolve(flag: Option<PathBuf>) -> Result<PathBuf> {
    let from_env = std::env::var_os(ENV_CACHE_DIR)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from);
    let dir = match flag.or(from_env) {
        Some(dir) => dir,
        None => directories::ProjectDirs::from("", "", "cacheback")
            .map(|dirs| dirs.cache_dir().to_owned())
            .ok_or(Error::NoCacheDir)?,
    };
    if dir.is_absolute() {
        return Ok(dir);
    }
    let cwd =
        std::env::current_dir().map_err(|err| Error::io("reading the working directory", err))?;
    Ok(cwd.join(dir))
}

/// Where the cache directory's name came from, for messages about it: a
/// directory that turns out unusable is easier to fix knowing who chose it.
pub fn origin(flag_given: bool) -> &'static str {
    if flag_given {
        "from --cache-dir"
    } else if std::env::var_os(ENV_CACHE_DIR).is_some_and(|value| !value.is_empty()) {
        "from $CACHEBACK_DIR"
    } else {
        "the default"
    }
}
