//! `cargo xtask dist` and `cargo xtask deb`: the static tarball and the
//! Debian package, both around the static musl binary.
//!
//! Both build with `CACHEBACK_REQUIRE_TUNED=1`, so a `RUSTFLAGS` in the
//! environment that would drop the tuned flags of `.cargo/config.toml` stops
//! the build instead of shipping a slower binary (see build.rs).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target both packages ship: a static binary that runs on any x86-64
/// Linux, whatever its libc.
pub const TARGET: &str = "x86_64-unknown-linux-musl";

/// Where the packages are written, relative to the repository root.
pub const DIST_DIR: &str = "target/dist";

/// Files of the repository that go into the tarball next to the binary.
const DOCS: [&str; 4] = [
    "README.md",
    "LICENSE-MIT",
    "LICENSE-APACHE",
    "docs/platforms.md",
];

/// Generated directories copied whole into the tarball.
const GENERATED: [&str; 2] = ["completions", "man"];

/// cacheback's version, as its `--version` prints it.
pub fn version() -> String {
    crate::cli()
        .get_version()
        .expect("the CLI declares its version")
        .to_owned()
}

/// Builds the static musl binary and packs
/// `target/dist/cacheback-<version>-x86_64-unknown-linux-musl.tar.gz`:
/// the binary, completions/, man/, README.md, docs/platforms.md and the
/// licences, under one top directory of the same name. Returns its path.
pub fn dist(root: &Path) -> Result<PathBuf, String> {
    let binary = build_static(root)?;
    let name = format!("cacheback-{}-{TARGET}", version());
    let dist = root.join(DIST_DIR);
    let stage = dist.join(&name);
    if stage.exists() {
        fs::remove_dir_all(&stage).map_err(|err| format!("clearing {}: {err}", stage.display()))?;
    }
    let copy = |from: &Path, to: &Path| {
        fs::create_dir_all(to.parent().expect("staged paths have a parent"))
            .and_then(|()| fs::copy(from, to))
            .map_err(|err| format!("copying {} to {}: {err}", from.display(), to.display()))
    };
    copy(&binary, &stage.join("cacheback"))?;
    for doc in DOCS {
        copy(&root.join(doc), &stage.join(doc))?;
    }
    for dir in GENERATED {
        let entries =
            fs::read_dir(root.join(dir)).map_err(|err| format!("reading {dir}/: {err}"))?;
        for entry in entries {
            let entry = entry.map_err(|err| format!("reading {dir}/: {err}"))?;
            copy(&entry.path(), &stage.join(dir).join(entry.file_name()))?;
        }
    }
    let tarball = dist.join(format!("{name}.tar.gz"));
    // GNU tar: sorted names and root ownership, so the archive does not
    // depend on who built it or on directory order.
    run(Command::new("tar")
        .current_dir(&dist)
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-czf",
        ])
        .arg(&tarball)
        .arg(&name))?;
    fs::remove_dir_all(&stage).map_err(|err| format!("clearing {}: {err}", stage.display()))?;
    Ok(tarball)
}

/// Builds the Debian package with cargo-deb (`[package.metadata.deb]` in
/// Cargo.toml) from the static musl binary, into `target/dist/`. Returns
/// the package's path.
pub fn deb(root: &Path) -> Result<PathBuf, String> {
    let probe = Command::new(cargo()).args(["deb", "--version"]).output();
    if !probe.is_ok_and(|out| out.status.success()) {
        return Err("cargo-deb is not installed: run `cargo install --locked cargo-deb`".into());
    }
    let dist = root.join(DIST_DIR);
    fs::create_dir_all(&dist).map_err(|err| format!("creating {}: {err}", dist.display()))?;
    let deb = dist.join(format!("cacheback_{}-1_amd64.deb", version()));
    run(Command::new(cargo())
        .current_dir(root)
        .env("CACHEBACK_REQUIRE_TUNED", "1")
        .args([
            "deb",
            "--locked",
            "--package",
            "cacheback",
            "--target",
            TARGET,
            "--output",
        ])
        .arg(&deb))?;
    Ok(deb)
}

/// `cargo build --release` for [`TARGET`], tuned or failing; checks that the
/// result is static and returns its path.
fn build_static(root: &Path) -> Result<PathBuf, String> {
    run(Command::new(cargo())
        .current_dir(root)
        .env("CACHEBACK_REQUIRE_TUNED", "1")
        .args([
            "build",
            "--release",
            "--locked",
            "--package",
            "cacheback",
            "--target",
            TARGET,
        ]))?;
    let binary = root.join("target").join(TARGET).join("release/cacheback");
    let elf = fs::read(&binary).map_err(|err| format!("reading {}: {err}", binary.display()))?;
    if has_interpreter(&elf) {
        return Err(format!(
            "{} is not static: it names a dynamic loader",
            binary.display()
        ));
    }
    Ok(binary)
}

/// Whether an ELF64 little-endian file has a `PT_INTERP` program header,
/// that is, needs a dynamic loader.
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    if elf.len() < 64 || &elf[..5] != b"\x7fELF\x02" {
        return true; // not what we build: do not call it static
    }
    let (table, size, count) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| u32_at(table + i * size) == PT_INTERP)
}

/// The cargo that runs this xtask.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs `command` with its stdout sent to stderr: this program's stdout is
/// the path it made, for scripts (cargo-deb prints the path too).
fn run(command: &mut Command) -> Result<(), String> {
    let status = command
        .stdout(std::io::stderr())
        .status()
        .map_err(|err| format!("running {command:?}: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed ({status})"))
    }
}
