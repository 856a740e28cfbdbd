//! Links `floor_path.ld` into both floors on Linux/glibc, as cacheback's
//! build.rs does for cacheback (see there): the floor is not to be
//! handicapped against it.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=floor_path.ld");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        let script = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("floor_path.ld");
        println!("cargo:rustc-link-arg-bins=-T");
        println!("cargo:rustc-link-arg-bins={}", script.display());
    }
}
