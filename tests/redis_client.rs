//! The fleet tier's protocol client against a real `redis-server` (Debian's
//! package; `.ci/run` installs it), started on loopback by each test and
//! stopped by PID (`tests/redis_harness.rs`).

use std::time::{Duration, Instant};

use cacheback::store::redis::{Connection, StoreError, StoreUrl, Value};

pub(crate) use crate::redis_harness::RedisServer;

fn connect(url: &str) -> Result<Connection, StoreError> {
    let url = StoreUrl::parse(url, None).unwrap();
    Connection::open(&url, Duration::from_secs(2), Duration::from_secs(2))
}

#[test]
fn values_go_and_come_back_byte_exact_over_tcp_and_a_unix_socket() {
    let Some(server) = RedisServer::start(&[], "values_go_and_come_back") else {
        return;
    };
    let mut tcp = connect(&format!("redis://127.0.0.1:{}/3", server.port)).unwrap();
    let value: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(
        tcp.command(&[b"SET", b"k", &value]).unwrap(),
        Value::Simple("OK".into())
    );
    assert_eq!(
        tcp.command(&[b"GET", b"k"]).unwrap(),
        Value::Bulk(Some(value.clone()))
    );
    let mut unix = connect(&format!("unix://{}?db=3", server.socket.display())).unwrap();
    assert_eq!(
        unix.command(&[b"GET", b"k"]).unwrap(),
        Value::Bulk(Some(value)),
        "the same database"
    );
    let mut other_db = connect(&format!("unix://{}", server.socket.display())).unwrap();
    assert_eq!(
        other_db.command(&[b"GET", b"k"]).unwrap(),
        Value::Bulk(None)
    );
    let replies = tcp
        .pipeline(&[&[b"INCR", b"n"], &[b"INCR", b"n"], &[b"GET", b"n"]])
        .unwrap();
    assert_eq!(replies[2], Value::Bulk(Some(b"2".to_vec())));
}

#[test]
fn an_acl_user_authenticates_and_no_error_shows_the_password() {
    let config = [
        "user default off",
        "user cacheback on >s3cret-pw ~cacheback:* +@all",
    ];
    let Some(server) = RedisServer::start(&config, "an_acl_user_authenticates") else {
        return;
    };
    let base = format!("127.0.0.1:{}", server.port);
    let mut good = connect(&format!("redis://cacheback:s3cret-pw@{base}")).unwrap();
    assert_eq!(
        good.command(&[b"SET", b"cacheback:x", b"1"]).unwrap(),
        Value::Simple("OK".into())
    );
    let denied = good.command(&[b"SET", b"elsewhere", b"1"]).unwrap_err();
    assert!(denied.to_string().contains("NOPERM"), "{denied}");

    let wrong = connect(&format!("redis://cacheback:wrong-pw@{base}"))
        .err()
        .expect("a wrong password is refused");
    let shown = format!("{wrong} {wrong:?}");
    assert!(shown.contains("WRONGPASS"), "{shown}");
    assert!(!shown.contains("wrong-pw"), "{shown}");
    assert!(shown.contains("cacheback:***@"), "{shown}");

    let from_env = StoreUrl::parse(
        &format!("redis://cacheback@{base}"),
        Some("s3cret-pw".into()),
    )
    .unwrap();
    Connection::open(&from_env, Duration::from_secs(2), Duration::from_secs(2))
        .expect("the password from CACHEBACK_STORE_PASSWORD");
}

#[test]
fn a_stopped_server_costs_a_bounded_wait_and_a_dead_one_fails_at_once() {
    let Some(server) = RedisServer::start(&[], "a_stopped_server") else {
        return;
    };
    let url = StoreUrl::parse(&format!("redis://127.0.0.1:{}", server.port), None).unwrap();
    let limit = Duration::from_millis(200);
    let mut conn = Connection::open(&url, limit, limit).unwrap();
    // SAFETY: stops our own child; Drop wakes and kills it.
    unsafe { libc::kill(server.pid(), libc::SIGSTOP) };
    let started = Instant::now();
    let err = conn.command(&[b"PING"]).unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    assert!(
        waited >= limit && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // SAFETY: as above.
    unsafe {
        libc::kill(server.pid(), libc::SIGKILL);
        libc::kill(server.pid(), libc::SIGCONT);
    }
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let err = Connection::open(&url, limit, limit).err().expect("refused");
    assert!(matches!(err, StoreError::Connect { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_store_found_down_is_skipped_for_a_while_by_every_caller_then_retried() {
    use cacheback::store::redis::health;
    let Some(server) = RedisServer::start(&[], "a_store_found_down") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = StoreUrl::parse(&format!("redis://127.0.0.1:{}", server.port), None).unwrap();
    let limit = Duration::from_millis(200);
    assert!(matches!(
        health::connect(dir.path(), &url, limit),
        Some(Ok(_))
    ));
    drop(server);
    let first = health::connect(dir.path(), &url, limit);
    assert!(
        matches!(first, Some(Err(_))),
        "the first caller hears of it"
    );
    let started = Instant::now();
    for _ in 0..5 {
        assert!(
            health::connect(dir.path(), &url, limit).is_none(),
            "skipped"
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "without waiting"
    );
    // Back up, and the marker is old: the next caller tries and clears it.
    let Some(again) = RedisServer::start(&[], "a_store_found_down") else {
        return;
    };
    let url = StoreUrl::parse(&format!("redis://127.0.0.1:{}", again.port), None).unwrap();
    let marker = dir.path().join(health::DOWN_MARKER);
    let old = std::time::SystemTime::now() - health::DOWN_FOR - Duration::from_secs(1);
    std::fs::File::options()
        .write(true)
        .open(&marker)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert!(matches!(
        health::connect(dir.path(), &url, limit),
        Some(Ok(_))
    ));
    assert!(!marker.exists());
}

mod fleet {
    use std::time::Duration;

    use cacheback::key::{Key, KeyInputs};
    use cacheback::store::redis::fleet::CHUNK_LEN;
    use cacheback::store::redis::{Connection, Fleet, FleetMeta, Published, StoreUrl};

    use super::RedisServer;

    fn fleet(server: &RedisServer) -> Fleet {
        let url = StoreUrl::parse(&format!("redis://127.0.0.1:{}", server.port), None).unwrap();
        let conn = Connection::open(&url, Duration::from_secs(2), Duration::from_secs(5)).unwrap();
        Fleet::new(conn, "cacheback", Duration::from_secs(3600))
    }

    fn key(name: &str) -> Key {
        KeyInputs {
            argv: vec![name.as_bytes().to_vec()],
            ..KeyInputs::default()
        }
        .key()
    }

    fn meta(finished_ms: u64, stdout_len: u64, stderr_len: u64) -> FleetMeta {
        FleetMeta {
            generation: 0,
            finished_ms,
            duration_ms: 5,
            exit_code: 0,
            jitter_ms: 7,
            flags: 0,
            stdout_len,
            stderr_len,
            details: b"\x00details\xff".to_vec(),
            digest: None,
        }
    }

    /// A time read back from the store: it keeps times on its own clock
    /// and carries them over to the reader's, which may move them by the
    /// round trips in between (well under a second on loopback).
    #[track_caller]
    fn assert_near(found: u64, expected: u64, what: &str) {
        assert!(
            found.abs_diff(expected) < 1000,
            "{what}: read back {found}, published {expected}"
        );
    }

    fn body(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn a_published_value_reads_back_whole_across_chunks() {
        let Some(server) = RedisServer::start(&[], "fleet::a_published_value") else {
            return;
        };
        let mut fleet = fleet(&server);
        let key = key("a");
        assert_eq!(fleet.meta(&key).unwrap(), None);
        let lease = fleet
            .try_lease(&key, Duration::from_secs(10))
            .unwrap()
            .unwrap();
        assert_eq!(lease.key(), &key);
        let value = body(2 * CHUNK_LEN + 123, 1);
        let outcome = fleet
            .publish(
                &lease,
                meta(1000, 2 * CHUNK_LEN as u64, 123),
                &mut &value[..],
            )
            .unwrap();
        assert_eq!(outcome, Published::Stored);
        let stored = fleet.meta(&key).unwrap().unwrap();
        assert_near(stored.finished_ms, 1000, "finished_ms");
        assert_eq!(stored.jitter_ms, 7);
        assert!(stored.digest.is_some(), "the publish adds a digest");
        assert_eq!(stored.details, b"\x00details\xff");
        let mut read = Vec::new();
        fleet.read_value(&key, &stored, &mut read).unwrap();
        assert!(read == value, "byte-exact");
        fleet.release(lease).unwrap();
    }

    #[test]
    fn one_lease_at_a_time_and_a_dead_holders_lease_expires() {
        let Some(server) = RedisServer::start(&[], "fleet::one_lease") else {
            return;
        };
        let (mut a, mut b) = (fleet(&server), fleet(&server));
        let key = key("lease");
        let held = a
            .try_lease(&key, Duration::from_millis(300))
            .unwrap()
            .unwrap();
        assert!(
            b.try_lease(&key, Duration::from_secs(10))
                .unwrap()
                .is_none()
        );
        assert!(a.renew(&held, Duration::from_millis(300)).unwrap());
        std::thread::sleep(Duration::from_millis(500));
        // The holder "died" without releasing: the lease expired.
        let taken = b.try_lease(&key, Duration::from_secs(10)).unwrap().unwrap();
        assert!(!a.renew(&held, Duration::from_secs(10)).unwrap(), "lost");
        a.release(held).unwrap(); // must not release b's lease
        assert!(
            a.try_lease(&key, Duration::from_secs(10))
                .unwrap()
                .is_none()
        );
        b.release(taken).unwrap();
        assert!(
            a.try_lease(&key, Duration::from_secs(10))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_writer_that_lost_its_lease_changes_nothing() {
        let Some(server) = RedisServer::start(&[], "fleet::a_writer_that_lost") else {
            return;
        };
        let (mut late, mut current) = (fleet(&server), fleet(&server));
        let key = key("late");
        let lost = late
            .try_lease(&key, Duration::from_millis(200))
            .unwrap()
            .unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let lease = current
            .try_lease(&key, Duration::from_secs(10))
            .unwrap()
            .unwrap();
        let value = body(100, 2);
        let stored = current.publish(&lease, meta(2000, 100, 0), &mut &value[..]);
        assert_eq!(stored.unwrap(), Published::Stored);
        // The late writer finishes after its lease expired: refused.
        let late_value = body(100, 3);
        let refused = late.publish(&lost, meta(3000, 100, 0), &mut &late_value[..]);
        assert_eq!(refused.unwrap(), Published::LeaseLost);
        let meta_now = current.meta(&key).unwrap().unwrap();
        assert_near(meta_now.finished_ms, 2000, "the current writer's value");
        let mut read = Vec::new();
        current.read_value(&key, &meta_now, &mut read).unwrap();
        assert_eq!(read, value);
    }

    #[test]
    fn failures_count_fleet_wide_and_restart_after_a_success() {
        let Some(server) = RedisServer::start(&[], "fleet::failures_count") else {
            return;
        };
        let (mut host_a, mut host_b) = (fleet(&server), fleet(&server));
        let key = key("failing");
        for n in 1..=3u64 {
            let host = if n == 2 { &mut host_b } else { &mut host_a };
            let lease = host
                .try_lease(&key, Duration::from_secs(10))
                .unwrap()
                .unwrap();
            let failures = host.record_failure(&lease, 1000 + n, 7, b"boom\n").unwrap();
            assert_eq!(failures, Some(n as u32), "seen from either host");
            host.release(lease).unwrap();
        }
        let failure = host_b.failure(&key).unwrap().unwrap();
        assert_eq!((failure.failures, failure.exit_code), (3, 7));
        assert_eq!(failure.stderr_tail, b"boom\n");
        let lease = host_b
            .try_lease(&key, Duration::from_secs(10))
            .unwrap()
            .unwrap();
        let value = body(10, 4);
        host_b
            .publish(&lease, meta(2000, 10, 0), &mut &value[..])
            .unwrap();
        assert_eq!(
            host_b.record_failure(&lease, 3000, 1, b"").unwrap(),
            Some(1)
        );
        host_b.release(lease).unwrap();
        let stranger = host_a
            .try_lease(&key, Duration::from_millis(1))
            .unwrap()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            host_a.record_failure(&stranger, 4000, 1, b"").unwrap(),
            None
        );
    }

    #[test]
    fn counters_marks_forgetting_and_listing_work_on_the_two_tier() {
        let Some(server) = RedisServer::start(&[], "fleet::counters_marks") else {
            return;
        };
        let mut fleet = fleet(&server);
        let managed = key("managed");
        fleet.count(&managed, "hits").unwrap();
        fleet.count(&managed, "hits").unwrap();
        fleet.count(&managed, "misses").unwrap();
        let mut counts = fleet.counts(&managed).unwrap();
        counts.sort();
        assert_eq!(counts, [("hits".to_owned(), 2), ("misses".to_owned(), 1)]);

        assert!(!fleet.mark_stale(&managed).unwrap(), "no value yet");
        let lease = fleet
            .try_lease(&managed, Duration::from_secs(10))
            .unwrap()
            .unwrap();
        fleet
            .publish(&lease, meta(1000, 3, 0), &mut &b"abc"[..])
            .unwrap();
        assert!(fleet.mark_stale(&managed).unwrap());
        assert!(fleet.mark_stale(&managed).unwrap(), "idempotent");
        assert_eq!(fleet.meta(&managed).unwrap().unwrap().flags, 1);

        // Forgetting takes the lease too: the refresh in flight cannot publish.
        assert!(fleet.forget(&managed).unwrap());
        assert_eq!(fleet.meta(&managed).unwrap(), None);
        let late = fleet.publish(&lease, meta(5000, 3, 0), &mut &b"new"[..]);
        assert_eq!(late.unwrap(), Published::LeaseLost);
        assert_eq!(fleet.meta(&managed).unwrap(), None);

        // Listing pages through SCAN's cursor (more keys than one COUNT).
        let url = StoreUrl::parse(&format!("redis://127.0.0.1:{}", server.port), None).unwrap();
        let mut raw =
            Connection::open(&url, Duration::from_secs(2), Duration::from_secs(5)).unwrap();
        let keys: Vec<Key> = (0..2500).map(|n| key(&format!("k{n}"))).collect();
        let names: Vec<String> = keys
            .iter()
            .map(|k| format!("cacheback:{{{}}}:meta", k.to_hex()))
            .collect();
        let commands: Vec<[&[u8]; 4]> = names
            .iter()
            .map(|name| [b"HSET".as_slice(), name.as_bytes(), b"gen", b"1"])
            .collect();
        let commands: Vec<&[&[u8]]> = commands.iter().map(|c| c.as_slice()).collect();
        raw.pipeline(&commands).unwrap();
        raw.command(&[b"SET", b"unrelated:{x}:meta", b"1"]).unwrap();
        // The forgotten entry's chunks are listed until they expire.
        let mut expected = keys;
        expected.push(managed);
        expected.sort();
        assert_eq!(fleet.keys().unwrap(), expected);
    }

    /// Seeded random interleavings of three hosts taking leases, publishing
    /// (some late, some older), failing, marking stale and forgetting, checked
    /// against a model after every step: the header always reads back whole as
    /// the newest accepted value, and a publish is accepted exactly when its
    /// lease is still held and its value is newer. Replay a failure with
    /// `CACHEBACK_FLEET_SEED=<seed>`.
    #[test]
    fn random_interleavings_keep_the_fleet_invariants() {
        let Some(server) = RedisServer::start(&[], "fleet::random_interleavings") else {
            return;
        };
        let mut rng = crate::harness::Rng::seeded("CACHEBACK_FLEET_SEED", "fleet model");
        let seed = rng.seed();
        let mut next = move |limit: u64| rng.below(limit);
        let mut hosts: Vec<Fleet> = (0..3).map(|_| fleet(&server)).collect();
        let key = key("model");
        // The model: which host holds the lease (by token identity), and the
        // newest accepted (finished_ms, body).
        let mut leases: Vec<Option<cacheback::store::redis::FleetLease>> = vec![None, None, None];
        let mut holder: Option<usize> = None;
        let mut stored: Option<(u64, Vec<u8>)> = None;
        let mut clock = 1000u64;
        for step in 0..400 {
            let host = next(3) as usize;
            let context = format!("seed {seed}, step {step}, host {host}");
            match next(6) {
                0 => {
                    let got = hosts[host]
                        .try_lease(&key, Duration::from_secs(30))
                        .unwrap();
                    assert_eq!(got.is_some(), holder.is_none(), "{context}: lease");
                    if let Some(lease) = got {
                        holder = Some(host);
                        leases[host] = Some(lease);
                    }
                }
                1 | 2 => {
                    let Some(lease) = &leases[host] else { continue };
                    // Seconds apart, so a time read back (see `assert_near`)
                    // tells one value from another.
                    clock += 10_000;
                    // Sometimes a value produced earlier than what is stored.
                    let finished = if next(4) == 0 { clock - 5_000 } else { clock };
                    let len = [0, 1, 5000, CHUNK_LEN + 7][next(4) as usize];
                    let value = body(len, next(250) as u8);
                    let outcome = hosts[host]
                        .publish(lease, meta(finished, len as u64, 0), &mut &value[..])
                        .unwrap();
                    // The lease alone decides: what the holder publishes is
                    // the newest value, whatever its producer's clock said.
                    let expected = if holder != Some(host) {
                        Published::LeaseLost
                    } else {
                        Published::Stored
                    };
                    assert_eq!(outcome, expected, "{context}: publish");
                    if outcome == Published::Stored {
                        stored = Some((finished, value));
                    }
                }
                3 => {
                    if let Some(lease) = leases[host].take() {
                        hosts[host].release(lease).unwrap();
                        if holder == Some(host) {
                            holder = None;
                        }
                    }
                }
                4 => {
                    if next(3) == 0 {
                        hosts[host].forget(&key).unwrap();
                        stored = None;
                        holder = None;
                    } else {
                        let marked = hosts[host].mark_stale(&key).unwrap();
                        assert_eq!(marked, stored.is_some(), "{context}: mark");
                    }
                }
                _ => {
                    let Some(lease) = &leases[host] else { continue };
                    let failed = hosts[host].record_failure(lease, clock, 1, b"x").unwrap();
                    assert_eq!(failed.is_some(), holder == Some(host), "{context}: failure");
                }
            }
            let reader = &mut hosts[next(3) as usize];
            match (reader.meta(&key).unwrap(), &stored) {
                (None, None) => {}
                (Some(header), Some((finished, value))) => {
                    assert_near(header.finished_ms, *finished, &format!("{context}: header"));
                    let mut read = Vec::new();
                    reader.read_value(&key, &header, &mut read).unwrap();
                    assert!(read == *value, "{context}: the value reads back whole");
                }
                (found, expected) => panic!(
                    "{context}: header {:?}, model {:?}",
                    found.map(|h| h.finished_ms),
                    expected.as_ref().map(|(at, _)| at)
                ),
            }
        }
    }

    /// Two hosts (two local cache dirs) and one fleet: a value produced on A
    /// is published, filled into B's local cache, and served there by the
    /// binary byte for byte with A's age, without running B's command.
    #[test]
    fn a_value_crosses_from_one_hosts_cache_to_anothers() {
        use cacheback::store::FsStore;
        use cacheback::store::transfer::{self, Shared};

        let Some(server) = RedisServer::start(&[], "fleet::a_value_crosses") else {
            return;
        };
        let (host_a, host_b) = (crate::harness::Cache::new(), crate::harness::Cache::new());
        let script = "head -c 3000000 $W/value; echo err >&2; echo run >> $W/runs";
        let args = ["--ttl", "1h", "--", "sh", "-c", script];
        let value: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(host_a.work().join("value"), &value).unwrap();
        std::fs::write(host_b.work().join("value"), b"B's own value").unwrap();
        assert!(host_a.run(&args).status.success());
        host_a.backdate(600);

        let key = KeyInputs {
            argv: ["sh", "-c", script]
                .iter()
                .map(|a| a.as_bytes().to_vec())
                .collect(),
            ..KeyInputs::default()
        }
        .key();
        let mut fleet = fleet(&server);
        let lease = fleet
            .try_lease(&key, Duration::from_secs(10))
            .unwrap()
            .unwrap();
        let store_a = FsStore::new(host_a.dir());
        let too_large = transfer::publish_local(&store_a, &mut fleet, &lease, 1000).unwrap();
        assert_eq!(too_large, Shared::TooLarge { len: 3_000_004 });
        let shared = transfer::publish_local(&store_a, &mut fleet, &lease, u64::MAX).unwrap();
        assert_eq!(shared, Shared::Fleet(Published::Stored));

        let store_b = FsStore::new(host_b.dir());
        store_b.prepare().unwrap();
        let (lock, _) = store_b.lock(&key).unwrap();
        let meta = fleet.meta(&key).unwrap().unwrap();
        transfer::fill_local(&store_b, &lock, &mut fleet, &meta).unwrap();
        drop(lock);

        let served = host_b.run(&args);
        assert!(served.stdout == value, "B serves A's value byte for byte");
        assert_eq!(served.stderr, b"err\n");
        assert_eq!(host_b.count("runs"), 0, "B ran nothing");
        let age = |cache: &crate::harness::Cache| {
            let json = cache.cacheback(&["stats", "--json"]).stdout;
            let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
            json["entries"][0]["finished_at"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(age(&host_a), age(&host_b), "one production time everywhere");
    }
}
