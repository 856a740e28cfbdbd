//! The binary's code layout: the hit path's functions sit together in
//! `.text.hit` (see src/hit_path.ld). The script's patterns name functions by
//! path, and a pattern that matches nothing is silently ignored, so a rename
//! or a moved module quietly drops a function out of the section (it has
//! happened). The released binary is stripped, so the test reads the link map
//! build.rs asks the linker for, and names the functions that must be there.
//! build.rs passes the script on Linux only (glibc and musl), so the test is
//! Linux's.
#![cfg(all(target_os = "linux", target_endian = "little"))]

use crate::harness::BIN;

/// The section's size when the patterns were written was 47 KiB (release).
const MIN_HIT_SECTION: u64 = 40 * 1024;

/// Functions a fresh or stale hit runs, which must be in `.text.hit`. When
/// one is missing, either its pattern in src/hit_path.ld stopped matching
/// (fix the pattern) or the optimiser now inlines it (drop it from here).
const HIT_FUNCTIONS: &[&str] = &[
    "main",
    "cacheback::main",
    "cacheback::fast_args::Partial::finish",
    "cacheback::env_defaults::apply_to_run",
    "cacheback::key::KeyInputs::key",
    "cacheback::units::parse_duration",
    "cacheback::cmd::run::run",
    "cacheback::cmd::run::replay",
    "cacheback::store::fs::FsStore::open",
    "cacheback::store::fs::events::record",
    "cacheback::output::write_all",
    "sha2::sha256::compress256",
    "cacheback::refresh::start",
    "cacheback::store::fs::FsStore::try_lock",
    "cacheback::store::fs::lock::EntryLock::try_acquire",
];

/// The Linux fast path's copy to stdout (`--cfg cacheback_portable` builds
/// the portable one, which inlines).
#[cfg(not(cacheback_portable))]
const FAST_PATH_FUNCTIONS: &[&str] = &["cacheback::store::fs::StoredEntry::copy_range"];
#[cfg(cacheback_portable)]
const FAST_PATH_FUNCTIONS: &[&str] = &[];

/// glibc's start-up, allocator and system call wrappers, when glibc is
/// linked in statically (the tuned build; musl's are small and its archive
/// members have other names).
#[cfg(all(target_env = "gnu", cacheback_tuned))]
const LIBC_HIT_FUNCTIONS: &[&str] = &["__libc_start_main", "malloc", "free", "getenv", "read"];
#[cfg(not(all(target_env = "gnu", cacheback_tuned)))]
const LIBC_HIT_FUNCTIONS: &[&str] = &[];

/// Size of the named section in an ELF64 little-endian file, from its section headers.
fn section_size(elf: &[u8], wanted: &str) -> Option<u64> {
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
    assert_eq!(&elf[..5], b"\x7fELF\x02", "not an ELF64 file");
    let table = u64_at(0x28) as usize;
    let (entry_size, count, names_index) = (u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| table + i * entry_size;
    let names = u64_at(header(names_index) + 0x18) as usize;
    (0..count).find_map(|i| {
        let start = names + u32_at(header(i));
        let len = elf[start..].iter().position(|&b| b == 0)?;
        (&elf[start..start + len] == wanted.as_bytes()).then(|| u64_at(header(i) + 0x20))
    })
}

#[test]
fn hit_path_code_is_grouped() {
    if std::env::var_os("CACHEBACK_DEFAULT_LAYOUT").is_some_and(|v| v != "0") {
        return; // built without the script, on purpose
    }
    let elf = std::fs::read(BIN).unwrap();
    let size = section_size(&elf, ".text.hit")
        .expect("no .text.hit section: src/hit_path.ld was not linked in");
    assert!(
        size >= MIN_HIT_SECTION,
        ".text.hit holds {size} bytes, expected at least {MIN_HIT_SECTION}: patterns in src/hit_path.ld stopped matching"
    );
    let map_path = concat!(env!("OUT_DIR"), "/cacheback.map");
    let map = std::fs::read_to_string(map_path)
        .unwrap_or_else(|err| panic!("reading the link map {map_path}: {err}"));
    let grouped = symbols_in(&map, ".text.hit");
    let missing: Vec<&str> = HIT_FUNCTIONS
        .iter()
        .chain(FAST_PATH_FUNCTIONS)
        .chain(LIBC_HIT_FUNCTIONS)
        .copied()
        .filter(|name| !grouped.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "not in .text.hit: {missing:?}. Its pattern in src/hit_path.ld stopped matching \
         (fix it), or it is now inlined (take it out of this test's list)"
    );
}

/// The names (hash suffixes dropped) of the symbols the link map places in
/// output section `wanted`. Reads lld's map (fixed columns: VMA, LMA, Size,
/// Align, then the output section at column 49, inputs and symbols indented
/// further) and GNU ld's (output sections at column 0, mangled names), which
/// the musl target links with.
fn symbols_in(map: &str, wanted: &str) -> std::collections::HashSet<String> {
    const LLD_OUT_COLUMN: usize = 49;
    let output_section = |line: &str| -> Option<String> {
        if line.starts_with('.') {
            return line.split_whitespace().next().map(str::to_owned);
        }
        let bytes = line.as_bytes();
        let numbers = line.get(..LLD_OUT_COLUMN)?;
        let is_lld_row = numbers.split_whitespace().count() == 4
            && numbers
                .split_whitespace()
                .all(|f| f.bytes().all(|b| b.is_ascii_hexdigit()));
        (is_lld_row
            && bytes
                .get(LLD_OUT_COLUMN)
                .is_some_and(|b| !b.is_ascii_whitespace()))
        .then(|| line[LLD_OUT_COLUMN..].trim().to_owned())
    };
    let mut inside = false;
    let mut names = std::collections::HashSet::new();
    for line in map.lines() {
        if let Some(section) = output_section(line) {
            inside = section == wanted;
        } else if inside {
            // A symbol's row ends with its name; with function sections an
            // input section is named after its function too, and GNU ld
            // lists only global symbols, so take both.
            for field in line.split_whitespace() {
                let section = field.rsplit_once(":(").map_or(field, |(_, s)| s);
                if let Some(function) = section.strip_prefix(".text.") {
                    names.insert(plain_name(function.trim_end_matches(')')));
                }
            }
            if let Some(last) = line.split_whitespace().last() {
                names.insert(plain_name(last));
            }
        }
    }
    names
}

/// `a::b::c` for a legacy-mangled `_ZN1a1b1c17h<hash>E` or a demangled
/// `a::b::c::h<hash>`; other names unchanged.
fn plain_name(symbol: &str) -> String {
    let is_hash = |part: &str| {
        part.len() == 17
            && part.starts_with('h')
            && part[1..].bytes().all(|b| b.is_ascii_hexdigit())
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(mut rest) = symbol.strip_prefix("_ZN") {
        while let Some(digits) = rest.find(|c: char| !c.is_ascii_digit()).filter(|&n| n > 0) {
            let Ok(len) = rest[..digits].parse::<usize>() else {
                break;
            };
            let Some(part) = rest.get(digits..digits + len) else {
                break;
            };
            parts.push(part.to_owned());
            rest = &rest[digits + len..];
        }
    } else {
        parts = symbol.split("::").map(str::to_owned).collect();
    }
    if parts.len() > 1 && parts.last().is_some_and(|last| is_hash(last)) {
        parts.pop();
    }
    if parts.is_empty() {
        symbol.to_owned()
    } else {
        parts.join("::")
    }
}

/// The tuned Linux build (build.rs sets `cacheback_tuned` when the flags of
/// .cargo/config.toml reached the compiler) is static and not
/// position-independent: no dynamic loader, no self-relocation at start-up.
#[test]
#[cfg(cacheback_tuned)]
fn tuned_binary_is_static_and_not_position_independent() {
    const ET_EXEC: u16 = 2;
    const PT_INTERP: u32 = 3;
    let elf = std::fs::read(BIN).unwrap();
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap());
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
    assert_eq!(&elf[..5], b"\x7fELF\x02", "not an ELF64 file");
    assert_eq!(u16_at(0x10), ET_EXEC, "{BIN} is position-independent");
    let (table, size, count) = (u64_at(0x20) as usize, u16_at(0x36), u16_at(0x38));
    let interp =
        (0..usize::from(count)).any(|i| u32_at(table + i * usize::from(size)) == PT_INTERP);
    assert!(!interp, "{BIN} names a dynamic loader: not static");
}

/// A shipped binary never takes its clock from the environment: only a
/// build with `--cfg cacheback_test_clock` (the test suites that play hosts
/// whose clocks are wrong, tests/tiers_model.rs) reads
/// `CACHEBACK_TEST_CLOCK_OFFSET_MS`. The test crate is compiled with the
/// binary's flags, so its own cfg says which build this is; with the cfg the
/// name must be there, which shows the search would find it.
#[test]
fn only_a_test_clock_build_reads_a_clock_offset() {
    let elf = std::fs::read(BIN).unwrap();
    let needle = b"CACHEBACK_TEST_CLOCK_OFFSET_MS";
    let found = elf.windows(needle.len()).any(|window| window == needle);
    assert_eq!(
        found,
        cfg!(cacheback_test_clock),
        "{BIN} {} the clock offset variable, and was built {} --cfg cacheback_test_clock",
        if found { "names" } else { "does not name" },
        if cfg!(cacheback_test_clock) {
            "with"
        } else {
            "without"
        }
    );
}
