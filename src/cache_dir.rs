//! Where the cache lives.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Environment variable naming the cache directory.
pub const ENV_CACHE_DIR: &str = "CACHEBACK_DIR";

/// The cache directory: `--cache-dir`, else `$CACHEBACK_DIR`, else the
/// platform cache directory (see [`platform_default`]).
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
        None => platform_default().ok_or(Error::NoCacheDir)?,
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

/// The platform's cache directory for cacheback: `$XDG_CACHE_HOME/cacheback`,
/// else `~/.cache/cacheback` on Linux and the BSDs; on macOS
/// `$XDG_CACHE_HOME/cacheback` when set (to an absolute path), else
/// `~/Library/Caches/cacheback`, Apple's place for caches.
///
/// macOS honours `XDG_CACHE_HOME` although Apple's convention does not know
/// it: nothing on macOS sets it, so a user who has it set chose it for their
/// command-line tools (often one dotfiles setup shared with Linux), and
/// neovim, fish and git honour the XDG variables there too. Without it the
/// cache goes where macOS expects caches, which backups skip and the system
/// may clear when the disk fills; either is safe for cacheback, whose entries
/// can always be rebuilt.
pub fn platform_default() -> Option<PathBuf> {
    #[cfg(target_os = "macos")]
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
    {
        return Some(xdg.join("cacheback"));
    }
    directories::ProjectDirs::from("", "", "cacheback").map(|dirs| dirs.cache_dir().to_owned())
}
