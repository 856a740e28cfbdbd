//! The committed shell completions (`completions/`) and man pages (`man/`)
//! must be exactly what `cargo xtask generate` writes for the current CLI, so
//! a new flag or subcommand cannot ship without them.

use std::path::Path;

#[test]
fn completions_and_man_pages_match_the_cli() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Err(message) = xtask::check(root) {
        panic!("{message}");
    }
}
