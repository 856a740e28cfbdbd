//! A clock that was wrong: entries and files dated in the future (the clock
//! was stepped back, a cache was copied from a machine whose clock ran
//! ahead). Time is judged alike everywhere: a value from the future is stale,
//! its failures still count, and its last read does not keep it for ever.

use std::fs;
use std::os::unix::fs::FileExt;
use std::time::{Duration, SystemTime};

use cacheback::store::entry::FINISHED_OFFSET;

use crate::harness::{Cache, sh, wait_until};

const DAY_MS: u64 = 86_400_000;

/// Moves the finish time in every entry's header `ms` into the future.
fn date_ahead(cache: &Cache, ms: u64) {
    for path in cache.files(".entry") {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut bytes = [0u8; 8];
        file.read_exact_at(&mut bytes, FINISHED_OFFSET).unwrap();
        let ahead = u64::from_le_bytes(bytes) + ms;
        file.write_all_at(&ahead.to_le_bytes(), FINISHED_OFFSET)
            .unwrap();
    }
}

/// `stats --json`'s state of the one entry.
fn state(cache: &Cache) -> String {
    let out = cache.cacheback(&["stats", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["entries"][0]["state"]
        .as_str()
        .unwrap_or("?")
        .to_owned()
}

#[test]
fn failures_after_an_entry_dated_in_the_future_count_and_back_off() {
    let cache = Cache::new();
    let body =
        r#"echo run >> "$W/runs"; if [ -e "$W/fail" ]; then echo broken >&2; exit 1; fi; echo ok"#;
    let args = [&["--ttl", "1h", "--"][..], &sh(body)].concat();
    assert!(cache.run(&args).status.success());
    date_ahead(&cache, DAY_MS);
    fs::write(cache.work().join("fail"), "").unwrap();
    // From the future: stale, so served and refreshed, and the refresh fails.
    let stale = cache.run(&args);
    assert_eq!(String::from_utf8_lossy(&stale.stdout), "ok\n");
    assert!(
        wait_until(Duration::from_secs(20), || cache.count("runs") == 2),
        "the stale entry was not refreshed"
    );
    assert!(cache.settled(Duration::from_secs(20)));
    assert_eq!(
        state(&cache),
        "failing",
        "the failure after the entry counts"
    );
    // The failure backs off (10 s): the next stale hits do not rerun it.
    for _ in 0..3 {
        assert_eq!(String::from_utf8_lossy(&cache.run(&args).stdout), "ok\n");
    }
    assert!(cache.settled(Duration::from_secs(20)));
    assert_eq!(
        cache.count("runs"),
        2,
        "a stale hit reran a failing command during its back-off"
    );
}

#[test]
fn gc_does_not_keep_an_entry_read_in_the_future_for_ever() {
    let cache = Cache::new();
    let args = [&["--ttl", "1h", "--"][..], &sh("echo value")].concat();
    assert!(cache.run(&args).status.success());
    assert!(cache.settled(Duration::from_secs(20)));
    let ahead = SystemTime::now() + Duration::from_secs(86_400);
    let files: Vec<_> = fs::read_dir(cache.dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| !path.to_string_lossy().ends_with(".lock"))
        .filter(|path| path.is_file())
        .collect();
    for path in &files {
        let file = fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_modified(ahead).unwrap();
    }
    let gc = cache.cacheback(&["gc", "--older-than", "1h"]);
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    assert_eq!(cache.files(".entry").len(), 1, "kept: its age starts now");
    for path in files.iter().filter(|path| path.exists()) {
        let modified = fs::metadata(path).unwrap().modified().unwrap();
        assert!(
            modified <= SystemTime::now(),
            "{} is still dated in the future: gc would keep it for ever",
            path.display()
        );
    }
    // Two hours on without a read: collected.
    let past = SystemTime::now() - Duration::from_secs(7200);
    for path in files.iter().filter(|path| path.exists()) {
        let file = fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_modified(past).unwrap();
    }
    assert!(
        cache
            .cacheback(&["gc", "--older-than", "1h"])
            .status
            .success()
    );
    assert!(
        cache.files(".entry").is_empty(),
        "not collected: {:?}",
        cache.files("")
    );
}
