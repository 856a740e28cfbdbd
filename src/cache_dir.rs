//! Where the cache lives.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Environment variable naming the cache directory.
pub const ENV_CACHE_DIR: &str = "CACHEBACK_DIR";

/// The cache directory: `--cache-dir`, else `$CACHEBACK_DIR`, else the
/// platform cache directory (`$XDG_CACHE_HOME/cacheback` on Linux).
///
/// An empty or relative `CACHEBACK_DIR` is ignored, as an empty or relative
/// `XDG_*` variable is: a relative path would name a different directory in
/// every working directory. The result is absolute, so a background refresher
/// started elsewhere finds the same place.
pub fn resolve(flag: Option<PathBuf>) -> Result<PathBuf> {
    let from_env = std::env::var_os(ENV_CACHE_DIR)
        .map(PathBuf::from)
        .filter(|path| path.is_absolute());
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
