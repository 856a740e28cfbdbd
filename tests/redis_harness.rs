//! A private `redis-server` for the tests of the fleet tier (Debian's
//! package; `.ci/run` installs it): started on a loopback port and a Unix
//! socket in a temp dir, stopped by PID. Shared by `tests/redis_client.rs`
//! (the protocol client) and `tests/fleet.rs` (the binary).

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
            .output()
            .expect("running redis-cli")
    }

    /// `redis-cli --raw ARGS`, its stdout as text.
    pub fn cli_text(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.cli(args).stdout).into_owned()
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
