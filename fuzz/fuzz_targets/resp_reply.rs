//! Arbitrary bytes as a server's replies: the RESP reader must return
//! replies or an error, never panic, and keep its bounds (nesting depth,
//! lengths) whatever a hostile server, or anyone in the middle of a plain
//! link, sends.

#![no_main]

use cacheback::store::redis::Value;
use cacheback::store::redis::resp::{MAX_ARRAY, MAX_BULK, MAX_DEPTH, read_value};
use libfuzzer_sys::fuzz_target;

/// Checks the reader's promises on one reply; returns its nesting depth.
fn check(value: &Value) -> usize {
    match value {
        Value::Bulk(Some(bytes)) => {
            assert!(bytes.len() <= MAX_BULK);
            1
        }
        Value::Array(Some(items)) => {
            assert!(items.len() <= MAX_ARRAY);
            1 + items.iter().map(check).max().unwrap_or(0)
        }
        _ => 1,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    // Replies one after another, as a pipeline reads them.
    while let Ok(value) = read_value(&mut input) {
        // MAX_DEPTH arrays and the value inside the deepest.
        assert!(check(&value) <= MAX_DEPTH + 1, "nested past the cap");
    }
});
