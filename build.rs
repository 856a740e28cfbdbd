//! Build checks for the cacheback binary.
//!
//! - Passes `src/hit_path.ld` to the linker on Linux (glibc and musl), so the
//!   code a cache hit runs sits together (see that file).
//!   `CACHEBACK_DEFAULT_LAYOUT=1` skips it, for linkers that do not take
//!   `INSERT` scripts (mold, gold). With it goes a link map in `OUT_DIR`, which
//!   tests/layout.rs reads.
//! - Says loudly when the tuned flags of `.cargo/config.toml` are missing: a
//!   `RUSTFLAGS` from the environment replaces them without a word from
//!   cargo. The binary is still correct, only slower (docs/platforms.md has
//!   the numbers). `CACHEBACK_REQUIRE_TUNED=1` makes that an error, for the
//!   builds that must be tuned (CI, the benchmark, the packages).
//! - Stops a Windows build with one clear message.
//! - Declares the `cacheback_portable` cfg, which forces the portable
//!   fallback of every Linux-only fast path (for testing them on Linux), and
//!   sets `cacheback_tuned` when the tuned flags are all there (the tests
//!   then check that the binary is static and not position-independent).
//! - Declares the `cacheback_test_clock` cfg: a test build with it shifts
//!   `clock::now_ms()` by `CACHEBACK_TEST_CLOCK_OFFSET_MS` (tests/tiers_model.rs
//!   plays hosts whose clocks are wrong); a build without it has no such code.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(cacheback_portable)");
    println!("cargo::rustc-check-cfg=cfg(cacheback_test_clock)");
    println!("cargo::rustc-check-cfg=cfg(cacheback_tuned)");
    println!("cargo::rerun-if-changed=src/hit_path.ld");
    println!("cargo::rerun-if-env-changed=CACHEBACK_DEFAULT_LAYOUT");
    println!("cargo::rerun-if-env-changed=CACHEBACK_REQUIRE_TUNED");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if env::var_os("CARGO_CFG_UNIX").is_none() {
        // Here rather than only in the crate, so it is the one error a
        // Windows build prints.
        println!(
            "cargo::error=cacheback does not support {os}: its background refresh is a fork(2) \
             of the caller, which Windows does not have. Build it on Linux, macOS or FreeBSD."
        );
        return;
    }
    if os != "linux" {
        return;
    }
    let opted_out = env::var_os("CACHEBACK_DEFAULT_LAYOUT").is_some_and(|v| v != "0");
    if !opted_out {
        let script = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("src/hit_path.ld");
        // `-T` and the path as two arguments: a path holding a comma or a
        // space would not survive `-Wl,`.
        println!("cargo::rustc-link-arg-bin=cacheback=-T");
        println!("cargo::rustc-link-arg-bin=cacheback={}", script.display());
        // The link map, so tests/layout.rs can check by name that the hit's
        // functions landed in `.text.hit` (the released binary is stripped).
        let map = Path::new(&env::var("OUT_DIR").unwrap()).join("cacheback.map");
        for arg in ["-Xlinker", "-Map", "-Xlinker"] {
            println!("cargo::rustc-link-arg-bin=cacheback={arg}");
        }
        println!("cargo::rustc-link-arg-bin=cacheback={}", map.display());
    }
    check_tuned_flags(&target_env);
}

/// Warns (or with `CACHEBACK_REQUIRE_TUNED=1`, fails) when the flags
/// `.cargo/config.toml` sets for this Linux target did not reach rustc.
fn check_tuned_flags(target_env: &str) {
    if env::var_os("CARGO_CFG_FUZZING").is_some() {
        return; // cargo-fuzz sets its own flags, and speed is not the point
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let flags: Vec<&str> = flags.split('\x1f').collect();
    let has = |wanted: &str| {
        flags.contains(&wanted)
            || flags
                .windows(2)
                .any(|pair| pair[1] == wanted && pair[0].len() == 2)
    };
    let static_crt = env::var("CARGO_CFG_TARGET_FEATURE")
        .is_ok_and(|features| features.split(',').any(|f| f == "crt-static"));
    let mut missing = Vec::new();
    if !static_crt {
        missing.push("-C target-feature=+crt-static");
    }
    if !has("relocation-model=static") {
        missing.push("-C relocation-model=static");
    }
    if !has("sha2_backend=\"soft\"") {
        missing.push("--cfg sha2_backend=\"soft\"");
    }
    if missing.is_empty() {
        println!("cargo::rustc-cfg=cacheback_tuned");
        return;
    }
    let required = env::var_os("CACHEBACK_REQUIRE_TUNED").is_some_and(|v| v != "0");
    let kind = if required { "error" } else { "warning" };
    let libc = if target_env == "musl" {
        "musl"
    } else {
        "glibc"
    };
    println!(
        "cargo::{kind}=building cacheback for Linux/{libc} without {} (set in .cargo/config.toml; \
         a RUSTFLAGS from the environment replaces those). The binary works but a cache hit \
         costs more: see docs/platforms.md. Add them to RUSTFLAGS to keep them.",
        missing.join(", ")
    );
}
