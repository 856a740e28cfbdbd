//! A private `redis-server` for the tests of the fleet tier (Debian's
//! package; `.ci/run` installs it): started on a loopback port and a Unix
//! socket in a temp dir, stopped by PID. Shared by `tests/redis_client.rs`
//! (the protocol client) and `tests/fleet.rs` (the binary); three of them
//! make the Redis Cluster of `tests/redis_cluster.rs` ([`RedisCluster`]).

use crate::harness::Bounded;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A private `redis-server` on a loopback port and a Unix socket.
pub struct RedisServer {
    child: Child,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    /// Its Unix socket.
    pub socket: PathBuf,
    /// Its TLS port on 127.0.0.1, when started with [`RedisServer::start_tls`].
    pub tls_port: Option<u16>,
    conf: PathBuf,
    tls: Option<Tls>,
    dir: tempfile::TempDir,
}

/// A TLS port and what it serves.
#[derive(Clone)]
struct Tls {
    port: u16,
    cert: PathBuf,
    key: PathBuf,
    ask_clients: bool,
}

/// A port the kernel says is free: it picks one, we let go of it, redis
/// takes it.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// Starts a server with these extra configuration lines and waits until
    /// it answers; `None` (the test skips) where redis-server is not installed.
    pub fn start(config: &[&str], test: &str) -> Option<RedisServer> {
        if !crate::harness::installed("redis-server", test) {
            return None;
        }
        Some(RedisServer::launch(config, None))
    }

    /// [`RedisServer::start`] with a TLS port besides the plain one, serving
    /// `cert` and `key` (PEM files) without asking clients for a certificate
    /// unless `config` has a `tls-auth-clients` line.
    pub fn start_tls(config: &[&str], cert: &Path, key: &Path, test: &str) -> Option<RedisServer> {
        if !crate::harness::installed("redis-server", test) {
            return None;
        }
        let tls = Tls {
            port: free_port(),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            ask_clients: config
                .iter()
                .any(|line| line.starts_with("tls-auth-clients")),
        };
        Some(RedisServer::launch(config, Some(tls)))
    }

    fn launch(config: &[&str], tls: Option<Tls>) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("redis.conf");
        std::fs::write(&conf, config.join("\n")).unwrap();
        let socket = dir.path().join("redis.sock");
        let port = free_port();
        let child = spawn(&conf, port, &socket, &dir, tls.as_ref());
        let server = RedisServer {
            child,
            port,
            socket,
            tls_port: tls.as_ref().map(|tls| tls.port),
            conf,
            tls,
            dir,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id, for SIGSTOP and kills.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGSTOP): connections are accepted by the kernel,
    /// nothing answers.
    pub fn pause(&self) {
        // SAFETY: signals our own child.
        unsafe { libc::kill(self.pid(), libc::SIGSTOP) };
    }

    /// Wakes a paused server (SIGCONT).
    pub fn resume(&self) {
        // SAFETY: signals our own child.
        unsafe { libc::kill(self.pid(), libc::SIGCONT) };
    }

    /// Kills the server (its data is gone: nothing is saved); the port and
    /// socket refuse connections until [`RedisServer::restart`].
    pub fn kill(&mut self) {
        // SAFETY: signals our own child; a stopped one must be woken to die.
        unsafe {
            libc::kill(self.pid(), libc::SIGKILL);
            libc::kill(self.pid(), libc::SIGCONT);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Kills the server if it runs and starts a new, empty one on the same
    /// port and socket.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(
            &self.conf,
            self.port,
            &self.socket,
            &self.dir,
            self.tls.as_ref(),
        );
        self.wait_ready();
    }

    /// Runs `redis-cli --raw ARGS` against the server's socket (database 0).
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new("redis-cli")
            .arg("-s")
            .arg(&self.socket)
            .arg("--raw")
            .args(args)
            .stdin(Stdio::null())
            .bounded_output()
    }

    /// `redis-cli --raw ARGS`, its stdout as text.
    pub fn cli_text(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.cli(args).stdout).into_owned()
    }

    /// The key names matching `pattern` in database 0, sorted (listed with
    /// SCAN, as cacheback lists them).
    pub fn scan_keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .cli_text(&["--scan", "--pattern", pattern])
            .lines()
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }
}

fn spawn(
    conf: &PathBuf,
    port: u16,
    socket: &PathBuf,
    dir: &tempfile::TempDir,
    tls: Option<&Tls>,
) -> Child {
    let mut command = Command::new("redis-server");
    command
        .arg(conf)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--unixsocket")
        .arg(socket)
        .args(["--unixsocketperm", "700", "--dir"])
        .arg(dir.path());
    if let Some(tls) = tls {
        command
            .args(["--tls-port", &tls.port.to_string()])
            .arg("--tls-cert-file")
            .arg(&tls.cert)
            .arg("--tls-key-file")
            .arg(&tls.key)
            // Redis wants a CA even when it asks clients for nothing.
            .arg("--tls-ca-cert-file")
            .arg(&tls.cert);
        if !tls.ask_clients {
            command.args(["--tls-auth-clients", "no"]);
        }
    }
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting redis-server")
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

/// Three `redis-server`s with cluster support on loopback, formed into one
/// Redis Cluster by the test itself (`CLUSTER ADDSLOTSRANGE` on each,
/// `CLUSTER MEET`, then `CLUSTER INFO` polled until every node says
/// `cluster_state:ok`), each stopped by PID when dropped.
pub struct RedisCluster {
    /// The nodes; node `i` was given the `i`-th third of the slots.
    pub nodes: Vec<RedisServer>,
}

/// The slots node `i` is given first.
pub const THIRDS: [(u16, u16); 3] = [(0, 5460), (5461, 10922), (10923, 16383)];

impl RedisCluster {
    /// Starts and forms the cluster; `None` (the test skips, saying so)
    /// without redis-server or redis-cli. A node declares another failed
    /// after `node_timeout_ms` without an answer.
    pub fn start(test: &str, node_timeout_ms: u32) -> Option<RedisCluster> {
        if !crate::harness::installed("redis-cli", test) {
            return None;
        }
        let mut nodes = Vec::new();
        let mut buses = Vec::new();
        for _ in 0..3 {
            // The bus port defaults to port + 10000, which a high free port
            // would push past 65535: give it a free port of its own (and
            // MEET must then be told it).
            buses.push(free_port());
            let bus = format!("cluster-port {}", buses[buses.len() - 1]);
            let timeout = format!("cluster-node-timeout {node_timeout_ms}");
            let config = [
                "cluster-enabled yes",
                "cluster-config-file nodes.conf",
                bus.as_str(),
                timeout.as_str(),
            ];
            nodes.push(RedisServer::start(&config, test)?);
        }
        let cluster = RedisCluster { nodes };
        for (node, (first, last)) in cluster.nodes.iter().zip(THIRDS) {
            let said = node.cli_text(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &first.to_string(),
                &last.to_string(),
            ]);
            assert_eq!(said.trim(), "OK", "ADDSLOTSRANGE on port {}", node.port);
        }
        for (other, bus) in cluster.nodes[1..].iter().zip(&buses[1..]) {
            let said = cluster.nodes[0].cli_text(&[
                "CLUSTER",
                "MEET",
                "127.0.0.1",
                &other.port.to_string(),
                &bus.to_string(),
            ]);
            assert_eq!(said.trim(), "OK", "MEET port {}", other.port);
        }
        cluster.wait_ok(Duration::from_secs(60));
        Some(cluster)
    }

    /// Waits until every node sees the whole cluster, every slot served.
    #[track_caller]
    pub fn wait_ok(&self, limit: Duration) {
        let started = Instant::now();
        loop {
            let infos: Vec<String> = self
                .nodes
                .iter()
                .map(|node| node.cli_text(&["CLUSTER", "INFO"]))
                .collect();
            let ok = infos.iter().all(|info| {
                info.contains("cluster_state:ok")
                    && info.contains("cluster_known_nodes:3")
                    && info.contains("cluster_slots_ok:16384")
            });
            if ok {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "the cluster did not form within {limit:?}: {infos:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis://127.0.0.1:PORT` of node `i`.
    pub fn url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// `CLUSTER KEYSLOT name`, as the server computes it.
    pub fn slot_of(&self, name: &str) -> u16 {
        let slot = self.nodes[0].cli_text(&["CLUSTER", "KEYSLOT", name]);
        slot.trim()
            .parse()
            .unwrap_or_else(|_| panic!("KEYSLOT {name}: {slot:?}"))
    }

    /// The node serving `slot` now, as node 0's `CLUSTER NODES` says.
    pub fn owner_of(&self, slot: u16) -> usize {
        let nodes = self.nodes[0].cli_text(&["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let owns = fields.iter().skip(8).any(|range| {
                let (first, last) = range.split_once('-').unwrap_or((range, range));
                matches!((first.parse::<u16>(), last.parse::<u16>()),
                    (Ok(first), Ok(last)) if (first..=last).contains(&slot))
            });
            if owns {
                let port: u16 = fields[1]
                    .split('@')
                    .next()
                    .and_then(|address| address.rsplit_once(':'))
                    .and_then(|(_, port)| port.parse().ok())
                    .unwrap();
                return self
                    .nodes
                    .iter()
                    .position(|node| node.port == port)
                    .unwrap();
            }
        }
        panic!("no node serves slot {slot}: {nodes}")
    }

    /// The key names on node `i` matching `pattern` (its own, as SCAN lists them).
    pub fn keys_on(&self, i: usize, pattern: &str) -> Vec<String> {
        self.nodes[i].scan_keys(pattern)
    }
}

impl RedisCluster {
    /// Node `i`'s id (`CLUSTER MYID`).
    pub fn id(&self, i: usize) -> String {
        self.nodes[i]
            .cli_text(&["CLUSTER", "MYID"])
            .trim()
            .to_owned()
    }
}

/// The variables that configure the fleet store, which a test host sets
/// itself: none may leak in from the environment the tests run in.
pub const STORE_VARIABLES: [&str; 6] = [
    "CACHEBACK_STORE",
    "CACHEBACK_STORE_PASSWORD",
    "CACHEBACK_STORE_TIMEOUT",
    "CACHEBACK_STORE_MAX_VALUE",
    "CACHEBACK_STORE_PREFIX",
    "CACHEBACK_STORE_LEASE",
];
