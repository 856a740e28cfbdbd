//! Arbitrary bytes as what a fleet store answers to a miss: an entry's
//! header (HGETALL), then its value's chunks (GET), then its failure record
//! and counters. The bytes are served by a fake server on a loopback port,
//! so the client's real path runs: the RESP reader, the connection and its
//! deadline, the header's decoding and checks, the chunks' lengths. It must
//! end in a value of exactly the header's length or an error, never a panic.

#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use cacheback::key::Key;
use cacheback::store::redis::{Connection, Fleet, StoreUrl};
use libfuzzer_sys::fuzz_target;

/// The fake server's URL and the channel that hands it each input's bytes.
fn server() -> &'static (StoreUrl, Mutex<Sender<Vec<u8>>>) {
    static SERVER: OnceLock<(StoreUrl, Mutex<Sender<Vec<u8>>>)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let (inputs, next) = mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                // One input per connection; a connection the input did not
                // ask for (none should be) gets nothing.
                let reply = next.try_recv().unwrap_or_default();
                let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = conn.write_all(&reply);
                let _ = conn.shutdown(Shutdown::Write);
                // Until the client has let go: its commands are not read.
                let mut sink = [0u8; 4096];
                while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
            }
        });
        let url = StoreUrl::parse(&format!("redis://127.0.0.1:{port}"), None).expect("a URL");
        (url, Mutex::new(inputs))
    })
}

fuzz_target!(|data: &[u8]| {
    // Redirections would send the client to the addresses the input names.
    if data.windows(5).any(|w| w == b"MOVED") || data.windows(3).any(|w| w == b"ASK") {
        return;
    }
    let (url, inputs) = server();
    inputs
        .lock()
        .expect("the channel")
        .send(data.to_vec())
        .expect("the server runs");
    let limit = Duration::from_secs(1);
    let Ok(conn) = Connection::open(url, limit, limit) else {
        return;
    };
    let mut fleet = Fleet::new(conn, "fuzz", Duration::from_secs(60));
    let key = Key::from_hex(&"cd".repeat(32)).expect("a valid key");
    if let Ok(Some(meta)) = fleet.meta(&key) {
        let mut value = Vec::new();
        if fleet.read_value(&key, &meta, &mut value).is_ok() {
            assert_eq!(
                meta.stdout_len.checked_add(meta.stderr_len),
                Some(value.len() as u64),
                "a value read whole has the header's length"
            );
        }
    }
    let _ = fleet.failure(&key);
    let _ = fleet.counts(&key);
});
