//! `cargo xtask generate` rewrites `completions/` and `man/` from the clap
//! definition; `cargo xtask check` only reports whether they are current.
//! `cargo xtask dist` packs the static musl tarball (`--target` another
//! platform's) and `cargo xtask deb` the Debian package, into target/dist/.

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
        Some(kind @ ("dist" | "deb")) => {
            let built = match (
                kind,
                std::env::args().nth(2).as_deref(),
                std::env::args().nth(3),
            ) {
                ("dist", None, None) => xtask::package::dist(&root, xtask::package::TARGET),
                ("dist", Some("--target"), Some(target)) => xtask::package::dist(&root, &target),
                ("deb", None, None) => xtask::package::deb(&root),
                _ => Err(format!(
                    "unexpected arguments after {kind}: see `cargo xtask`"
                )),
            };
            match built {
                Ok(path) => {
                    println!("{}", path.display());
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("xtask: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!(
                "usage: cargo xtask generate   rewrite completions/ and man/ from the CLI\n       \
                 cargo xtask check      fail if they differ from what generate would write\n       \
                 cargo xtask dist       static musl tarball in target/dist/\n       \
                 cargo xtask dist --target TRIPLE\n                        \
                 tarball for x86_64-apple-darwin, aarch64-apple-darwin or\n                        \
                 x86_64-unknown-freebsd (needs cargo-zigbuild)\n       \
                 cargo xtask deb        Debian package in target/dist/ (needs cargo-deb)"
            );
            ExitCode::from(2)
        }
    }
}
