//! The `cacheback` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    cacheback::main()
}
