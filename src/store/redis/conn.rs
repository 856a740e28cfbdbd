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
        let io_error = |url: &str, source| StoreError::Io {
            url: url.to_owned(),
            source,
        };
        self.stream
            .get_mut()
            .send(commands)
            .map_err(|err| io_error(&self.url, err))?;
        let mut replies = Vec::with_capacity(commands.len());
        let mut refused = None;
        for args in commands {
            let reply =
                resp::read_value(&mut self.stream).map_err(|err| io_error(&self.url, err))?;
            if let (Value::Error(message), None) = (&reply, &refused) {
                refused = Some(StoreError::Refused {
                    url: self.url.clone(),
                    command: String::from_utf8_lossy(args.first().copied().unwrap_or_default())
                        .to_ascii_uppercase(),
                    message: message.clone(),
                });
            }
            replies.push(reply);
        }
        match refused {
            Some(err) => Err(err),
            None => Ok(replies),
        }
    }

    /// Changes how long each later reply may take.
    pub fn set_io_timeout(&mut self, limit: Duration) {
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
