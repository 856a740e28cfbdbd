//! Passes `src/hit_path.ld` to the linker for the cacheback binary on
//! Linux/glibc, so the code a cache hit runs sits together (see that file).
//! `CACHEBACK_DEFAULT_LAYOUT=1` skips it, for linkers that do not take
//! `INSERT` scripts (mold, gold).

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=src/hit_path.ld");
    println!("cargo:rerun-if-env-changed=CACHEBACK_DEFAULT_LAYOUT");
    let linux_gnu = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    let opted_out = env::var_os("CACHEBACK_DEFAULT_LAYOUT").is_some_and(|v| v != "0");
    if linux_gnu && !opted_out {
        let script = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("src/hit_path.ld");
        // `-T` and the path as two arguments: a path holding a comma or a
        // space would not survive `-Wl,`.
        println!("cargo:rustc-link-arg-bin=cacheback=-T");
        println!("cargo:rustc-link-arg-bin=cacheback={}", script.display());
    }
}
