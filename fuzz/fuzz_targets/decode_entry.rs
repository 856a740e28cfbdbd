//! Arbitrary bytes as an entry: the decoders and the store's open path must
//! reject or accept them, never panic, and never read past what they validated.

#![no_main]

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use cacheback::key::Key;
use cacheback::store::entry::{Details, FORMAT_VERSION, FORMAT_VERSION_1, PREAMBLE_LEN, Preamble};
use cacheback::store::{FileKind, FsStore};
use libfuzzer_sys::fuzz_target;

/// One private directory per fuzzing process, reused for every input.
fn store() -> &'static (FsStore, Key) {
    static STORE: OnceLock<(FsStore, Key)> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cacheback-fuzz-{}", std::process::id()));
        let store = FsStore::new(dir);
        store.prepare().expect("fuzz cache dir");
        let key = Key::from_hex(&"ab".repeat(32)).expect("a valid key");
        (store, key)
    })
}

fn write_private(path: &PathBuf, data: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("writing the fuzz entry");
    file.write_all(data).expect("writing the fuzz entry");
}

fuzz_target!(|data: &[u8]| {
    for version in [FORMAT_VERSION, FORMAT_VERSION_1] {
        let _ = Details::decode(data, version);
    }
    if let Ok(preamble) = Preamble::decode(data, data.len() as u64) {
        let start = preamble.details_start() as usize;
        let end = start + preamble.details_len as usize;
        assert!(end <= data.len(), "validated lengths point past the file");
        assert!(preamble.total_len() == Some(data.len() as u64));
        let _ = Details::decode(&data[start..end], preamble.version);
    }
    // A short head (as the hit path reads it) must be handled like a long one.
    let _ = Preamble::decode(&data[..data.len().min(PREAMBLE_LEN)], data.len() as u64);

    let (store, key) = store();
    let path = store.path(key, FileKind::Entry);
    write_private(&path, data);
    let mut head = [std::mem::MaybeUninit::uninit(); 64];
    if let Ok(Some(entry)) = store.open(key, FileKind::Entry, &mut head) {
        let sink = File::options()
            .write(true)
            .open("/dev/null")
            .expect("/dev/null");
        entry
            .copy_stdout(&sink)
            .expect("replaying a validated entry");
        entry
            .copy_stderr(&sink)
            .expect("replaying a validated entry");
        let _ = entry.details();
        entry.stderr_tail(4096).expect("reading a validated stderr");
    }
});
