//! One synchronous connection to a Redis-protocol server, with one deadline
//! for each wait: a cache must never hang a prompt on a slow network.
//!
//! - Connecting (the host name's lookup, the TCP connection and, with
//!   `rediss://`, the TLS handshake) is one wait, bounded by the connect
//!   timeout.
//! - The replies to a command (or to the commands of one write) are one
//!   wait: they must be complete by the reply timeout, which grows by one
//!   second for each [`MIN_RATE`] bytes a bulk string announces, so a large
//!   value may take its time on a slow link but a link that trickles cannot
//!   hold a caller for ever. (A per-read timeout can: each byte restarts it.)
//! - A connection that failed once, mid-reply or not, is not used again:
//!   what is left of a reply on it would be read as the next one.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::resp::{self, Source, Value};
use super::tls::{TlsStream, Trust};
use super::url::{StoreUrl, Transport};

/// Default limit on connecting (and on each reply), short enough that a
/// caller whose store is down loses little before it falls back to the local
/// cache.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(200);

/// The slowest transfer a reply's deadline allows for, in bytes per second:
/// each bulk string's announced length adds its time at this rate. 512 KiB/s
/// (4 Mbit/s): a 1 MiB chunk of a value may take 2 s more than a short reply.
pub const MIN_RATE: u64 = 512 * 1024;

/// The options that set the store's time limits, named in timeout errors.
const TIMEOUT_OPTIONS: &str = "--store-timeout or CACHEBACK_STORE_TIMEOUT";

/// Why talking to the store failed. No variant carries the password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The server could not be reached within the time limit.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The address, without its password.
        url: String,
        /// Why.
        source: io::Error,
    },
    /// The connection broke, or a reply took too long.
    #[error("store {url}: {source}")]
    Io {
        /// The address, without its password.
        url: String,
        /// Why.
        source: io::Error,
    },
    /// The server answered with an error (wrong password, no permission...).
    #[error("store {url} refused {command}: {message}")]
    Refused {
        /// The address, without its password.
        url: String,
        /// The command's name (never its arguments, which may be a password).
        command: String,
        /// The server's message.
        message: String,
    },
    /// TLS could not be set up: the CA file cannot be read or holds no
    /// certificate, or no system CA bundle was found.
    #[error("store {url}: {what}")]
    Tls {
        /// The address, without its password.
        url: String,
        /// What, naming the file.
        what: String,
    },
    /// A Redis Cluster answered `CLUSTERDOWN`: it serves nobody until its
    /// slots are covered again. Callers treat it as a store that is down.
    #[error("store {url}: the cluster is down ({message})")]
    ClusterDown {
        /// The node that said so, without its password.
        url: String,
        /// The server's message.
        message: String,
    },
    /// A Redis Cluster could not serve a command: `TRYAGAIN` still after
    /// the retries (a slot in migration), `CROSSSLOT` (keys of several
    /// slots in one command, a bug of cacheback's), or more redirections
    /// (`MOVED`, `ASK`) than [`MAX_REDIRECTIONS`](super::cluster::MAX_REDIRECTIONS),
    /// which only a misconfigured or constantly resharding cluster sends.
    #[error("store {url}: the cluster could not serve {command}: {what}")]
    Cluster {
        /// The node that answered last, without its password.
        url: String,
        /// The command's name (never its arguments).
        command: String,
        /// What went wrong, in one line.
        what: String,
    },
}

/// The error for an error reply `message` of `url` to `command`: the
/// cluster's own refusals get variants of their own, so that a cluster that
/// is down reads as one.
pub fn refusal(url: &str, command: &[u8], message: &str) -> StoreError {
    let url = url.to_owned();
    let command = String::from_utf8_lossy(command).to_ascii_uppercase();
    let message = message.to_owned();
    if message.starts_with("CLUSTERDOWN") {
        StoreError::ClusterDown { url, message }
    } else if message.starts_with("TRYAGAIN") || message.starts_with("CROSSSLOT") {
        StoreError::Cluster {
            url,
            command,
            what: message,
        }
    } else {
        StoreError::Refused {
            url,
            command,
            message,
        }
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<TlsStream>),
}

impl Stream {
    fn set_read_timeout(&self, limit: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.set_read_timeout(Some(limit)),
            Stream::Unix(stream) => stream.set_read_timeout(Some(limit)),
            Stream::Tls(stream) => stream.sock.set_read_timeout(Some(limit)),
        }
    }

    fn set_timeouts(&self, limit: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => {
                stream.set_read_timeout(Some(limit))?;
                stream.set_write_timeout(Some(limit))
            }
            Stream::Unix(stream) => {
                stream.set_read_timeout(Some(limit))?;
                stream.set_write_timeout(Some(limit))
            }
            Stream::Tls(stream) => {
                stream.sock.set_read_timeout(Some(limit))?;
                stream.sock.set_write_timeout(Some(limit))
            }
        }
    }

    /// Sends the commands in one buffered write.
    fn send(&mut self, commands: &[&[&[u8]]]) -> io::Result<()> {
        let mut writer = io::BufWriter::new(self);
        let sent = commands
            .iter()
            .try_for_each(|args| resp::write_command(&mut writer, args))
            .and_then(|()| writer.flush());
        if sent.is_err() {
            // Drop what could not be sent rather than wait on it once more.
            let _ = writer.into_parts();
        }
        sent
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.read(buf),
            Stream::Unix(stream) => stream.read(buf),
            Stream::Tls(stream) => stream.read(buf).map_err(super::tls::explain),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.write(buf),
            Stream::Unix(stream) => stream.write(buf),
            Stream::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.flush(),
            Stream::Unix(stream) => stream.flush(),
            Stream::Tls(stream) => stream.flush(),
        }
    }
}

/// A stream whose reads end at a deadline rather than after a quiet time.
struct Link {
    stream: Stream,
    /// When the replies being read must be complete; `None` between them.
    deadline: Option<Instant>,
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(left)?;
        }
        self.stream.read(buf)
    }
}

impl Source for BufReader<Link> {
    fn expect(&mut self, bytes: usize) {
        let link = self.get_mut();
        if let Some(deadline) = link.deadline {
            let more = Duration::from_secs_f64(bytes as f64 / MIN_RATE as f64);
            link.deadline = Some(deadline + more);
        }
    }
}

/// An open, authenticated connection with its database selected.
pub struct Connection {
    /// Read through the buffer, written past it (see [`Stream::send`]).
    stream: BufReader<Link>,
    /// Set when a command failed on it: see the module's documentation.
    broken: bool,
    url: String,
    /// How it was opened, so that a Redis Cluster's other nodes can be
    /// reached alike (same user, password, TLS trust and time limits).
    origin: StoreUrl,
    connect_timeout: Duration,
    io_timeout: Duration,
}

impl Connection {
    /// Connects within `connect_timeout` (the host name's lookup and, with
    /// `rediss://`, the TLS handshake included), then authenticates and
    /// selects the database; the replies to each later command must be
    /// complete within `io_timeout` (more for long ones: see [`MIN_RATE`]).
    ///
    /// A URL that names a user authenticates as that user, with or without
    /// a password (an ACL user with `nopass` needs none), never as `default`.
    pub fn open(
        url: &StoreUrl,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> Result<Connection, StoreError> {
        let shown = url.to_string();
        let connect_error = |source: io::Error| StoreError::Connect {
            url: shown.clone(),
            source: if is_timeout(&source) {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} after {} ({TIMEOUT_OPTIONS} sets the limit)",
                        source,
                        crate::units::format_duration_brief(connect_timeout)
                    ),
                )
            } else {
                source
            },
        };
        let deadline = Instant::now() + connect_timeout;
        let stream = match &url.transport {
            Transport::Tcp { host, port } => {
                Stream::Tcp(connect_tcp(host, *port, deadline).map_err(connect_error)?)
            }
            Transport::Unix(path) => {
                Stream::Unix(UnixStream::connect(path).map_err(connect_error)?)
            }
            Transport::Tls { host, port } => {
                // The CA file first: its errors need no network.
                let trust =
                    Trust::load(url.ca_file.as_deref()).map_err(|what| StoreError::Tls {
                        url: shown.clone(),
                        what,
                    })?;
                let tcp = connect_tcp(host, *port, deadline).map_err(connect_error)?;
                let tls = trust
                    .handshake(tcp, host, deadline)
                    .map_err(connect_error)?;
                Stream::Tls(Box::new(tls))
            }
        };
        stream.set_timeouts(io_timeout).map_err(connect_error)?;
        let mut connection = Connection {
            stream: BufReader::new(Link {
                stream,
                deadline: None,
            }),
            broken: false,
            url: shown,
            origin: url.clone(),
            connect_timeout,
            io_timeout,
        };
        match (&url.user, &url.password) {
            (Some(user), Some(password)) => {
                connection.ok(&[b"AUTH", user.as_bytes(), password.expose().as_bytes()])?;
            }
            (None, Some(password)) => connection.ok(&[b"AUTH", password.expose().as_bytes()])?,
            // A `nopass` user accepts any password, the empty one included.
            (Some(user), None) => match connection.ok(&[b"AUTH", user.as_bytes(), b""]) {
                Err(StoreError::Refused {
                    url,
                    command,
                    message,
                }) => {
                    return Err(StoreError::Refused {
                        url,
                        command,
                        message: format!(
                            "{message} (user '{user}' was given no password: if it has one, \
                             put it in CACHEBACK_STORE_PASSWORD, or in the URL as \
                             {user}:PASSWORD@)",
                            user = crate::display::escape(user)
                        ),
                    });
                }
                other => other?,
            },
            (None, None) => {}
        }
        if url.db != 0 {
            connection.ok(&[b"SELECT", url.db.to_string().as_bytes()])?;
        }
        Ok(connection)
    }

    /// Sends one command and reads its reply; an error reply is [`StoreError::Refused`].
    pub fn command(&mut self, args: &[&[u8]]) -> Result<Value, StoreError> {
        let mut replies = self.pipeline(&[args])?;
        Ok(replies.pop().expect("one reply per command"))
    }

    /// Sends several commands in one write and reads their replies in order;
    /// the first error reply fails the whole batch.
    pub fn pipeline(&mut self, commands: &[&[&[u8]]]) -> Result<Vec<Value>, StoreError> {
        self.send(commands)?;
        let replies = self.receive(commands.len())?;
        for (args, reply) in commands.iter().zip(&replies) {
            if let Value::Error(message) = reply {
                let name = args.first().copied().unwrap_or_default();
                return Err(refusal(&self.url, name, message));
            }
        }
        Ok(replies)
    }

    /// Sends several commands in one write without reading their replies:
    /// [`Connection::receive`] reads them, so that the commands of several
    /// connections (a cluster's nodes) wait on the network together.
    pub fn send(&mut self, commands: &[&[&[u8]]]) -> Result<(), StoreError> {
        if self.broken {
            return Err(self.failed(io::Error::other(
                "the connection failed on an earlier command",
            )));
        }
        let sent = self.stream.get_mut().stream.send(commands);
        sent.map_err(|err| self.failed(err))
    }

    /// Reads `count` replies, error replies included (as [`Value::Error`]),
    /// all by one deadline (see the module's documentation).
    pub fn receive(&mut self, count: usize) -> Result<Vec<Value>, StoreError> {
        if self.broken {
            return Err(self.failed(io::Error::other(
                "the connection failed on an earlier command",
            )));
        }
        self.stream.get_mut().deadline = Some(Instant::now() + self.io_timeout);
        let replies: io::Result<Vec<Value>> = (0..count)
            .map(|_| resp::read_value(&mut self.stream))
            .collect();
        self.stream.get_mut().deadline = None;
        replies.map_err(|err| self.failed(err))
    }

    /// Marks the connection broken and says why, a timeout as a timeout.
    fn failed(&mut self, err: io::Error) -> StoreError {
        self.broken = true;
        // What is buffered belongs to a reply that will not be read.
        let buffered = self.stream.buffer().len();
        self.stream.consume(buffered);
        let source = if is_timeout(&err) {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "timed out waiting for the reply (limit {}, more for a large value; \
                     {TIMEOUT_OPTIONS} sets it)",
                    crate::units::format_duration_brief(self.io_timeout)
                ),
            )
        } else {
            err
        };
        StoreError::Io {
            url: self.url.clone(),
            source,
        }
    }

    /// Opens a connection to another node of the same Redis Cluster, at
    /// `host:port` as the cluster names it, with this one's credentials,
    /// database, TLS trust and time limits. A Unix-socket origin reaches
    /// its peers over TCP: a cluster names its nodes by address.
    pub fn open_peer(&self, host: &str, port: u16) -> Result<Connection, StoreError> {
        let mut url = self.origin.clone();
        let host = host.to_owned();
        url.transport = match url.transport {
            Transport::Tls { .. } => Transport::Tls { host, port },
            Transport::Tcp { .. } | Transport::Unix(_) => Transport::Tcp { host, port },
        };
        Connection::open(&url, self.connect_timeout, self.io_timeout)
    }

    /// The host of this connection's address (for a cluster's redirections
    /// that leave it out); `None` on a Unix socket.
    pub fn host(&self) -> Option<&str> {
        match &self.origin.transport {
            Transport::Tcp { host, .. } | Transport::Tls { host, .. } => Some(host),
            Transport::Unix(_) => None,
        }
    }

    /// `host:port` of this connection, as a cluster would name the node
    /// (`None` on a Unix socket).
    pub fn address(&self) -> Option<String> {
        match &self.origin.transport {
            Transport::Tcp { host, port } | Transport::Tls { host, port } => {
                Some(format!("{host}:{port}"))
            }
            Transport::Unix(_) => None,
        }
    }

    /// Changes how long each later reply may take (on this connection, and
    /// on the peers [`Connection::open_peer`] opens after).
    pub fn set_io_timeout(&mut self, limit: Duration) {
        self.io_timeout = limit;
        let _ = self.stream.get_ref().stream.set_timeouts(limit);
    }

    /// The server's address, without its password, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn ok(&mut self, args: &[&[u8]]) -> Result<(), StoreError> {
        self.command(args).map(drop)
    }
}

/// A read or write that ran out of time: a socket's timeout shows as
/// `WouldBlock` on Unix ("Resource temporarily unavailable").
fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The addresses of `host`, looked up by `deadline`. The system's resolver
/// has no time limit of ours, so the lookup runs on a thread of its own that
/// this one waits for until the deadline; one that takes longer is left to
/// finish on its own (the caller goes on without the store, and exits).
/// An address needs no lookup and no thread.
fn resolve(host: &str, port: u16, deadline: Instant) -> io::Result<Vec<SocketAddr>> {
    resolve_with(host, port, deadline, |name, port| {
        (name, port).to_socket_addrs().map(Iterator::collect)
    })
}

/// [`resolve`] with the system's lookup replaced (by the tests).
fn resolve_with(
    host: &str,
    port: u16,
    deadline: Instant,
    lookup: fn(&str, u16) -> io::Result<Vec<SocketAddr>>,
) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (found, answer) = std::sync::mpsc::channel();
    let name = host.to_owned();
    let thread = std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let _ = found.send(lookup(&name, port));
        })?;
    let left = deadline.saturating_duration_since(Instant::now());
    match answer.recv_timeout(left) {
        Ok(addresses) => {
            // Gone before we go on: a later fork must find one thread only.
            let _ = thread.join();
            addresses
        }
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("looking up the host name '{host}' took too long"),
        )),
    }
}

/// Connects to the first address of `host` that answers, all by `deadline`.
fn connect_tcp(host: &str, port: u16, deadline: Instant) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name has no address");
    for address in resolve(host, port, deadline)? {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connecting took too long",
            ));
        }
        match TcpStream::connect_timeout(&address, left) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(err) => last = err,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host name's lookup is inside the connect deadline: a resolver
    /// that hangs (an unreachable name server: 5 s a try by default) costs
    /// the deadline, not its own time.
    #[test]
    fn a_hanging_lookup_ends_at_the_deadline() {
        fn hangs(_: &str, _: u16) -> io::Result<Vec<SocketAddr>> {
            std::thread::sleep(Duration::from_secs(30));
            Ok(Vec::new())
        }
        let started = Instant::now();
        let err = resolve_with(
            "slow.example",
            6379,
            started + Duration::from_millis(100),
            hangs,
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("slow.example"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // An address needs no lookup at all.
        let found = resolve_with("::1", 7, started, hangs).unwrap();
        assert_eq!(
            found,
            vec![SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], 7))]
        );
        // A lookup that answers in time is waited for.
        fn answers(_: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
        }
        let found = resolve_with(
            "fine.example",
            9,
            Instant::now() + Duration::from_secs(30),
            answers,
        );
        assert_eq!(found.unwrap(), vec![SocketAddr::from(([127, 0, 0, 1], 9))]);
    }
}
