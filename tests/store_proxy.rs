//! A TCP proxy in front of a real `redis-server` that misbehaves on cue, as
//! a congested or failing network does: every connection passes its first
//! replies whole, then the proxy stalls, drops the connection or trickles
//! the rest. What a caller then does (how long it waits, what it says,
//! whether the next caller pays again) is what the fleet tests check.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the proxy does to the server's replies once a connection has passed
/// its first `pass` bytes of them.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Forwards nothing more, and keeps the connection open.
    Stall,
    /// Closes the connection.
    Drop,
    /// Forwards this many bytes a second.
    Trickle(usize),
    /// Forwards each reply to a `GET` (a value's chunk) this long after the
    /// server sent it, as a slow link does with a large reply; the rest
    /// passes at once. `pass` does not apply.
    SlowGets(Duration),
    /// Holds every client command holding these bytes (`$2\r\nNX\r\n`: a
    /// lease request) until [`Proxy::let_go`], then lets all pass; replies
    /// pass at once. `pass` does not apply.
    Hold(&'static [u8]),
}

/// Where a [`Fault::Hold`] stands: a command held, and let go.
#[derive(Default)]
struct Held {
    holding: AtomicBool,
    let_go: AtomicBool,
}

/// A proxy on a loopback port; it stops, and lets go of every connection,
/// when dropped.
pub struct Proxy {
    port: u16,
    stop: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
    held: Arc<Held>,
}

impl Proxy {
    /// Proxies to `127.0.0.1:upstream`, passing the first `pass` bytes of
    /// the server's side of each connection before `fault`.
    pub fn start(upstream: u16, pass: usize, fault: Fault) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let (stop_accepting, kept) = (Arc::clone(&stop), Arc::clone(&sockets));
        let held = Arc::new(Held::default());
        let hold = Arc::clone(&held);
        thread::spawn(move || {
            while !stop_accepting.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                            continue;
                        };
                        let mut kept = kept.lock().unwrap();
                        kept.push(client.try_clone().unwrap());
                        kept.push(server.try_clone().unwrap());
                        let (from_client, to_server) =
                            (client.try_clone().unwrap(), server.try_clone().unwrap());
                        let asked_get = Arc::new(AtomicBool::new(false));
                        let get_sent = Arc::clone(&asked_get);
                        let (hold, stop) = (Arc::clone(&hold), Arc::clone(&stop_accepting));
                        thread::spawn(move || {
                            forward(from_client, to_server, &get_sent, fault, &hold, &stop)
                        });
                        let stop = Arc::clone(&stop_accepting);
                        thread::spawn(move || {
                            misbehave(server, client, pass, fault, &stop, &asked_get)
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy {
            port,
            stop,
            sockets,
            held,
        }
    }

    /// Whether a command of a [`Fault::Hold`] is being held.
    pub fn holding(&self) -> bool {
        self.held.holding.load(Ordering::SeqCst)
    }

    /// Forwards the held command, and every later one at once.
    pub fn let_go(&self) {
        self.held.let_go.store(true, Ordering::SeqCst);
    }

    /// `redis://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for socket in self.sockets.lock().unwrap().iter() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// Copies the client's commands to the server as they come, noting in
/// `asked_get` a `GET` before the server can answer it, and holding one
/// that matches a [`Fault::Hold`] until it is let go.
fn forward(
    mut from: TcpStream,
    mut to: TcpStream,
    asked_get: &AtomicBool,
    fault: Fault,
    held: &Held,
    stop: &AtomicBool,
) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        if buf[..n].windows(9).any(|w| w == b"$3\r\nGET\r\n") {
            asked_get.store(true, Ordering::SeqCst);
        }
        if let Fault::Hold(bytes) = fault
            && !held.let_go.load(Ordering::SeqCst)
            && buf[..n].windows(bytes.len()).any(|w| w == bytes)
        {
            held.holding.store(true, Ordering::SeqCst);
            while !held.let_go.load(Ordering::SeqCst) && !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(10));
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Copies the server's replies to the client: `pass` bytes whole, then
/// as `fault` says.
fn misbehave(
    mut from: TcpStream,
    mut to: TcpStream,
    pass: usize,
    fault: Fault,
    stop: &AtomicBool,
    asked_get: &AtomicBool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut passed = 0usize;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Fault::SlowGets(_) | Fault::Hold(_) = fault {
            // The first bytes of the reply to a GET wait; what follows of
            // it is read on as it comes.
            if let Fault::SlowGets(delay) = fault
                && asked_get.swap(false, Ordering::SeqCst)
            {
                thread::sleep(delay);
            }
            if to.write_all(&buf[..n]).is_err() {
                return;
            }
            continue;
        }
        let whole = n.min(pass.saturating_sub(passed));
        if whole > 0 && to.write_all(&buf[..whole]).is_err() {
            return;
        }
        passed += whole;
        if whole == n {
            continue;
        }
        match fault {
            Fault::SlowGets(_) | Fault::Hold(_) => unreachable!("forwarded above"),
            Fault::Stall => {} // read on, forward nothing
            Fault::Drop => {
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
                return;
            }
            Fault::Trickle(per_second) => {
                pending.extend_from_slice(&buf[whole..n]);
                // A tenth of a second's worth at a time, until this read's
                // bytes are through (the server waits for the client).
                let step = (per_second / 10).max(1);
                while !pending.is_empty() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let take = step.min(pending.len());
                    if to.write_all(&pending[..take]).is_err() {
                        return;
                    }
                    pending.drain(..take);
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}
