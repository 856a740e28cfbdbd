//! `floor-std FILE`: the floor as the benchmark issue first described it, a
//! minimal Rust program built static, with LTO and `panic = "abort"`, and
//! nothing more: std's own `main` and start-up, `io::copy` to a locked stdout.
//!
//! `floor` (src/main.rs) is stricter: it also skips std's start-up and copies
//! with sendfile(2), every trick cacheback itself uses. The benchmark reports
//! cacheback against both, so a reader can tell how much of the gap to the
//! strict floor is start-up work a plain Rust program does anyway.

use std::fs::File;
use std::io;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: floor-std FILE");
        return ExitCode::from(2);
    };
    let copied =
        File::open(&path).and_then(|mut file| io::copy(&mut file, &mut io::stdout().lock()));
    match copied {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("floor-std: {}: {err}", path.to_string_lossy());
            ExitCode::FAILURE
        }
    }
}
