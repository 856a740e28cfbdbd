//! `cargo xtask dist` and `cargo xtask deb`: the tarballs and the Debian
//! package. The Linux ones hold the static musl binary; `dist --target`
//! also packs the macOS and FreeBSD builds, cross-compiled with
//! cargo-zigbuild (zig is their C compiler and linker, for ring).
//!
//! Both build with `CACHEBACK_REQUIRE_TUNED=1`, so a `RUSTFLAGS` in the
//! environment that would drop the tuned flags of `.cargo/config.toml` stops
//! the build instead of shipping a slower binary (see build.rs).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target both packages ship by default: a static binary that runs on
/// any x86-64 Linux, whatever its libc.
pub const TARGET: &str = "x86_64-unknown-linux-musl";

/// The other targets `dist --target` packs, built with `cargo zigbuild`
/// (`pip install ziglang cargo-zigbuild`). CI builds them but cannot run them.
pub const CROSS_TARGETS: [&str; 3] = [
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
    "x86_64-unknown-freebsd",
];

/// Where the packages are written, relative to the repository root.
pub const DIST_DIR: &str = "target/dist";

/// Files of the repository that go into the tarball next to the binary:
/// the README and every file its links, and docs/'s links, reach.
const DOCS: [&str; 5] = [
    "README.md",
    "BENCHMARKS.md",
    "LICENSE-MIT",
    "LICENSE-APACHE",
    "bench/hit-latency.svg",
];

/// Directories copied whole into the tarball: the generated ones and docs/.
const DIRS: [&str; 3] = ["completions", "man", "docs"];

/// cacheback's version, as its `--version` prints it.
pub fn version() -> String {
    crate::cli()
        .get_version()
        .expect("the CLI declares its version")
        .to_owned()
}

/// Builds cacheback for `target` ([`TARGET`] or one of [`CROSS_TARGETS`])
/// and packs `target/dist/cacheback-<version>-<target>.tar.gz`: the binary,
/// completions/, man/, docs/, README.md, BENCHMARKS.md and the licences,
/// under one top directory of the same name. Returns its path.
pub fn dist(root: &Path, target: &str) -> Result<PathBuf, String> {
    let binary = if target == TARGET {
        build_static(root)?
    } else if CROSS_TARGETS.contains(&target) {
        build_cross(root, target)?
    } else {
        return Err(format!(
            "no tarball for {target}: the targets are {TARGET}, {}",
            CROSS_TARGETS.join(", ")
        ));
    };
    let name = format!("cacheback-{}-{target}", version());
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
    for dir in DIRS {
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
    run(cargo_command()
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
    run(cargo_command()
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

/// `cargo zigbuild --release` for a macOS or FreeBSD target; checks that the
/// result is an executable of that platform and returns its path.
fn build_cross(root: &Path, target: &str) -> Result<PathBuf, String> {
    run(cargo_command()
        .current_dir(root)
        .env("CACHEBACK_REQUIRE_TUNED", "1")
        .args([
            "zigbuild",
            "--release",
            "--locked",
            "--package",
            "cacheback",
            "--target",
            target,
            "--target-dir",
        ])
        .arg(cross_dir(root)))
    .map_err(|err| format!("{err} (cargo-zigbuild: pip install ziglang cargo-zigbuild)"))?;
    let binary = cross_dir(root).join(target).join("release/cacheback");
    let file = fs::read(&binary).map_err(|err| format!("reading {}: {err}", binary.display()))?;
    let kind = executable_kind(&file);
    if kind != Some(platform_of(target)) {
        return Err(format!(
            "{} is not a {} executable ({})",
            binary.display(),
            platform_of(target),
            kind.unwrap_or("unrecognised")
        ));
    }
    Ok(binary)
}

/// What [`executable_kind`] should say of a binary built for `target`.
fn platform_of(target: &str) -> &'static str {
    match target {
        "x86_64-apple-darwin" => "Mach-O x86-64",
        "aarch64-apple-darwin" => "Mach-O arm64",
        "x86_64-unknown-freebsd" => "FreeBSD ELF x86-64",
        _ => "Linux ELF x86-64",
    }
}

/// The platform and architecture of a 64-bit executable, from its header.
fn executable_kind(file: &[u8]) -> Option<&'static str> {
    const MH_MAGIC_64: &[u8] = &[0xcf, 0xfa, 0xed, 0xfe];
    const CPU_X86_64: u32 = 0x0100_0007;
    const CPU_ARM64: u32 = 0x0100_000c;
    const MH_EXECUTE: u32 = 2;
    const ELFOSABI_FREEBSD: u8 = 9;
    const EM_X86_64: u16 = 62;
    let u32_at = |at: usize| Some(u32::from_le_bytes(file.get(at..at + 4)?.try_into().ok()?));
    if file.starts_with(MH_MAGIC_64) {
        if u32_at(12)? != MH_EXECUTE {
            return None;
        }
        return match u32_at(4)? {
            CPU_X86_64 => Some("Mach-O x86-64"),
            CPU_ARM64 => Some("Mach-O arm64"),
            _ => None,
        };
    }
    if file.starts_with(b"\x7fELF\x02\x01") && file.get(18..20)? == EM_X86_64.to_le_bytes() {
        // FreeBSD's linkers leave the OS/ABI byte at 0 (System V); its
        // dynamic loader's path says which system the binary is for.
        let freebsd = file[7] == ELFOSABI_FREEBSD
            || interpreter(file).is_some_and(|path| path.starts_with(b"/libexec/ld-elf"));
        return Some(if freebsd {
            "FreeBSD ELF x86-64"
        } else {
            "Linux ELF x86-64"
        });
    }
    None
}

/// The path in an ELF64 little-endian file's `PT_INTERP` program header.
fn interpreter(elf: &[u8]) -> Option<&[u8]> {
    const PT_INTERP: u32 = 3;
    let u16_at =
        |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?) as usize);
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at =
        |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?) as usize);
    let (table, size, count) = (u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?);
    (0..count).find_map(|i| {
        let header = table + i * size;
        if u32_at(header)? != PT_INTERP {
            return None;
        }
        let (offset, length) = (u64_at(header + 8)?, u64_at(header + 32)?);
        let path = elf.get(offset..offset.checked_add(length)?)?;
        Some(path.strip_suffix(b"\0").unwrap_or(path))
    })
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

/// Where the cross builds go: a directory of their own, so one can run while
/// cargo holds `target/` for a host build or test run (CI overlaps them).
pub fn cross_dir(root: &Path) -> PathBuf {
    root.join("target/cross")
}

/// A cargo command without the variables `cargo run` set for this xtask
/// (`CARGO_PKG_NAME=xtask` and the like): build scripts that watch them
/// (ring's does) would otherwise rerun, and the crates above them rebuild,
/// when the same build was made by a plain `cargo` (CI builds first, then
/// packs).
fn cargo_command() -> Command {
    let mut command = Command::new(cargo());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let from_cargo_run = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&name.as_ref());
        if from_cargo_run {
            command.env_remove(name.as_ref());
        }
    }
    command
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
