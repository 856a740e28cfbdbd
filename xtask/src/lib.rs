//! Generates cacheback's shell completions (`completions/`) and man pages
//! (`man/`) from its clap definition, and checks that the committed copies
//! are current.
//!
//! It lives outside the `cacheback` package so that clap_complete and
//! clap_mangen never reach the `cacheback` binary, whose start-up cost every
//! prompt and status bar pays. Run it as `cargo xtask generate`; the drift
//! test (`tests/generated.rs` in the main package) and `cargo xtask check`
//! compare without writing. `cargo xtask dist` and `cargo xtask deb` build
//! the static tarball and the Debian package (see [`package`]).

#![warn(missing_docs)]

mod completions;
mod man;
pub mod package;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

/// The command that rewrites every generated file; named in every drift message.
pub const REGENERATE: &str = "cargo xtask generate";

/// Directories whose generated files this crate owns entirely: a file there
/// that is no longer generated (a removed subcommand's page) is stale.
const OWNED_DIRS: [&str; 2] = ["completions", "man"];

/// One generated file: its path relative to the repository root, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// Path relative to the repository root, e.g. `man/cacheback-run.1`.
    pub path: PathBuf,
    /// The exact contents to commit.
    pub contents: Vec<u8>,
}

/// The clap definition the files are generated from.
pub fn cli() -> clap::Command {
    cacheback::cli::Cli::command()
}

/// Every completion script and man page, generated in memory.
pub fn generate() -> Vec<Generated> {
    let cmd = cli();
    let mut files = completions::generate(&cmd);
    files.extend(man::generate(&cmd));
    files
}

/// The repository root (the directory holding the `cacheback` package).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits one level below the repository root")
        .to_owned()
}

/// Writes the generated files under `root` and removes owned files that are
/// no longer generated. Returns the paths that changed.
pub fn write(root: &Path) -> io::Result<Vec<PathBuf>> {
    let files = generate();
    let mut changed = Vec::new();
    for file in &files {
        let path = root.join(&file.path);
        if fs::read(&path).ok().as_deref() == Some(file.contents.as_slice()) {
            continue;
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&path, &file.contents)?;
        changed.push(file.path.clone());
    }
    for extra in unexpected_files(root, &files)? {
        fs::remove_file(root.join(&extra))?;
        changed.push(extra);
    }
    Ok(changed)
}

/// Compares the files under `root` with freshly generated ones. The error
/// lists every difference and says how to fix it.
pub fn check(root: &Path) -> Result<(), String> {
    let files = generate();
    let mut problems = Vec::new();
    for file in &files {
        match fs::read(root.join(&file.path)) {
            Ok(on_disk) if on_disk == file.contents => {}
            Ok(_) => problems.push(format!("{} is out of date", file.path.display())),
            Err(_) => problems.push(format!("{} is missing", file.path.display())),
        }
    }
    match unexpected_files(root, &files) {
        Ok(extra) => problems.extend(
            extra
                .iter()
                .map(|path| format!("{} is no longer generated", path.display())),
        ),
        Err(err) => problems.push(format!("cannot list the generated directories: {err}")),
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the committed completions and man pages do not match the CLI:\n  {}\n\
         Run `{REGENERATE}` and commit the result.",
        problems.join("\n  ")
    ))
}

/// Files in the owned directories that the generator does not produce.
fn unexpected_files(root: &Path, files: &[Generated]) -> io::Result<Vec<PathBuf>> {
    let mut extra = Vec::new();
    for dir in OWNED_DIRS {
        let entries = match fs::read_dir(root.join(dir)) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        for entry in entries {
            let path = Path::new(dir).join(entry?.file_name());
            if !files.iter().any(|file| file.path == path) {
                extra.push(path);
            }
        }
    }
    extra.sort();
    Ok(extra)
}
