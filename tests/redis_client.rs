//! The fleet tier's protocol client against a real `redis-server` (Debian's
//! package; `.ci/run` installs it), started on loopback by each test and
//! stopped by PID.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cacheback::store::redis::{Connection, StoreError, StoreUrl, Value};

/// A private `redis-server` on a loopback port and a Unix socket.
pub struct RedisServer {
    child: Child,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    /// Its Unix socket.
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server with these extra configuration lines and waits until
    /// it answers; `None` (the test skips) where redis-server is not installed.
    pub fn start(config: &[&str], test: &str) -> Option<RedisServer> {
        if !crate::harness::installed("redis-server", test) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("redis.conf");
        std::fs::write(&conf, config.join("\n")).unwrap();
        let socket = dir.path().join("redis.sock");
        // A free port: the kernel picks one, we let go of it, redis takes it.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .arg(&conf)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        let server = RedisServer {
            child,
            port,
            socket,
            _dir: dir,
        };
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(&server.socket).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    /// The server's process id, for SIGSTOP and kills.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SAFETY: signals our own child; a stopped one must be woken to die.
        unsafe {
            libc::kill(self.pid(), libc::SIGKILL);
            libc::kill(self.pid(), libc::SIGCONT);
        }
        let _ = self.child.wait();
    }
}

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
fn tls_addresses_say_they_are_not_supported_yet() {
    let err = connect("rediss://127.0.0.1:1").err().unwrap();
    assert!(err.to_string().contains("TLS"), "{err}");
}
