//! `cargo xtask generate` rewrites `completions/` and `man/` from the clap
//! definition; `cargo xtask check` only reports whether they are current.

use std::process::ExitCode;

fn main() -> ExitCode {
    let root = xtask::repo_root();
    match std::env::args().nth(1).as_deref() {
        Some("generate") => match xtask::write(&root) {
            Ok(changed) if changed.is_empty() => {
                println!("completions/ and man/ are up to date");
                ExitCode::SUCCESS
            }
            Ok(changed) => {
                for path in changed {
                    println!("updated {}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("xtask: {err}");
                ExitCode::FAILURE
            }
        },
        Some("check") => match xtask::check(&root) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("xtask: {message}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!(
                "usage: cargo xtask generate   rewrite completions/ and man/ from the CLI\n       \
                 cargo xtask check      fail if they differ from what generate would write"
            );
            ExitCode::from(2)
        }
    }
}
