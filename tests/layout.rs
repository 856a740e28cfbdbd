//! The binary's code layout: the hit path's functions sit together in
//! `.text.hit` (see src/hit_path.ld). The script's patterns name functions by
//! path, so a rename can quietly stop one matching; this catches the loss of
//! any large part of the hit path. build.rs passes the script on Linux only
//! (glibc and musl), so the test is Linux's.
#![cfg(all(target_os = "linux", target_endian = "little"))]

use crate::harness::BIN;

/// The section's size when the patterns were written was 47 KiB (release).
const MIN_HIT_SECTION: u64 = 40 * 1024;

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
