//! cacheback's error type and its mapping to exit statuses.

use std::io;
use std::path::PathBuf;

use crate::exit_codes;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure cacheback reports itself. Each renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line made no sense in a way clap cannot check.
    #[error("{0}")]
    Usage(String),
    /// The wrapped command does not exist.
    #[error("{program}: command not found{hint}")]
    CommandNotFound {
        /// The program as given on the command line.
        program: String,
        /// What to do instead, when the name shows what went wrong (or empty).
        hint: String,
    },
    /// The wrapped command exists but cannot be executed.
    #[error("{program}: cannot execute: {source}")]
    CannotExecute {
        /// The program as given on the command line.
        program: String,
        /// Why the kernel refused.
        source: io::Error,
    },
    /// The cache directory may not be used safely.
    #[error("cache directory {}: {reason}", path.display())]
    UnsafeCacheDir {
        /// The directory that was refused.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No cache directory could be determined.
    #[error("no cache directory: set CACHEBACK_DIR or pass --cache-dir")]
    NoCacheDir,
    /// A management command found no entry matching what the user named.
    #[error("{0}")]
    NotFound(String),
    /// An I/O operation on a named path failed.
    #[error("{}: {source}", path.display())]
    Path {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Any other I/O failure, with what cacheback was doing.
    #[error("{context}: {source}")]
    Io {
        /// What cacheback was doing.
        context: &'static str,
        /// The underlying error.
        source: io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn path(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Path {
            path: path.into(),
            source,
        }
    }

    /// Wraps an I/O error with what cacheback was doing.
    pub fn io(context: &'static str, source: io::Error) -> Self {
        Error::Io { context, source }
    }

    /// The documented exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => exit_codes::USAGE,
            Error::CommandNotFound { .. } => exit_codes::COMMAND_NOT_FOUND,
            Error::CannotExecute { .. } => exit_codes::CANNOT_EXECUTE,
            Error::NotFound(_) => exit_codes::NOT_FOUND,
            _ => exit_codes::FAILURE,
        }
    }

    /// True when the error is a write to a closed pipe, which ends cacheback quietly.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Error::Path { source, .. } | Error::Io { source, .. } => {
                source.kind() == io::ErrorKind::BrokenPipe
            }
            _ => false,
        }
    }
}
