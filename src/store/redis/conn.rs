//! One synchronous connection to a Redis-protocol server, with a bounded
//! wait at every step: a cache must never hang a prompt on a slow network.

use std::io::{self, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::resp::{self, Value};
use super::tls::{TlsStream, Trust};
use super::url::{StoreUrl, Transport};

/// Default limit on connecting (and on each reply), short enough that a
/// caller whose store is down loses little before it falls back to the local
/// cache.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(200);

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

/// An open, authenticated connection with its database selected.
pub struct Connection {
    /// Read through the buffer, written past it (see [`Stream::send`]).
    stream: BufReader<Stream>,
    url: String,
    /// How it was opened, so that a Redis Cluster's other nodes can be
    /// reached alike (same user, password, TLS trust and time limits).
    origin: StoreUrl,
    connect_timeout: Duration,
    io_timeout: Duration,
}

impl Connection {
    /// Connects within `connect_timeout` (with `rediss://`, the TLS
    /// handshake included), then authenticates and selects the database;
    /// every later reply must come within `io_timeout`.
    pub fn open(
        url: &StoreUrl,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> Result<Connection, StoreError> {
        let shown = url.to_string();
        let connect_error = |source| StoreError::Connect {
            url: shown.clone(),
            source,
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
            stream: BufReader::new(stream),
            url: shown,
            origin: url.clone(),
            connect_timeout,
            io_timeout,
        };
        if let Some(password) = &url.password {
            let password = password.expose().as_bytes();
            match &url.user {
                Some(user) => connection.ok(&[b"AUTH", user.as_bytes(), password])?,
                None => connection.ok(&[b"AUTH", password])?,
            }
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
        self.stream
            .get_mut()
            .send(commands)
            .map_err(|source| StoreError::Io {
                url: self.url.clone(),
                source,
            })
    }

    /// Reads `count` replies, error replies included (as [`Value::Error`]).
    pub fn receive(&mut self, count: usize) -> Result<Vec<Value>, StoreError> {
        (0..count)
            .map(|_| {
                resp::read_value(&mut self.stream).map_err(|source| StoreError::Io {
                    url: self.url.clone(),
                    source,
                })
            })
            .collect()
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
        let _ = self.stream.get_ref().set_timeouts(limit);
    }

    /// The server's address, without its password, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn ok(&mut self, args: &[&[u8]]) -> Result<(), StoreError> {
        self.command(args).map(drop)
    }
}

/// Connects to the first address of `host` that answers, all by `deadline`.
fn connect_tcp(host: &str, port: u16, deadline: Instant) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name has no address");
    for address in (host, port).to_socket_addrs()? {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
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
