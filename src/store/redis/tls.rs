//! TLS for `rediss://`: rustls with its ring provider (docs/internals.md
//! has the choice and its price).
//!
//! Trust is exactly the certificates of a CA file
//! ([`StoreUrl::ca_file`](super::url::StoreUrl::ca_file)), or else those
//! `SSL_CERT_FILE` and `SSL_CERT_DIR` name (as OpenSSL reads them), or else
//! the system's PEM bundle; the certificate must name the URL's host (a name
//! or an IP address). The handshake runs on the caller's connect deadline, one step
//! at a time, so a server that never answers costs one bounded wait.

use std::ffi::OsString;
use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// An open TLS connection.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Where systems keep their bundle of trusted roots, as one PEM file:
/// Debian and Alpine, Fedora and RHEL, openSUSE, then macOS and FreeBSD
/// (`/etc/ssl/cert.pem`), and FreeBSD's `ca_root_nss` package.
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/share/certs/ca-root-nss.crt",
];

/// The client settings, and what they trust in words for messages.
pub struct Trust {
    config: Arc<ClientConfig>,
    /// "the CA file /path", "SSL_CERT_FILE=/path" (and/or "SSL_CERT_DIR=...")
    /// or "the system's CA bundle /path".
    source: String,
}

impl Trust {
    /// Trusts exactly the certificates in `ca_file`; without one, those of
    /// `SSL_CERT_FILE` and `SSL_CERT_DIR` when either is set; else the first
    /// system bundle that holds any. The error is one line naming the file.
    pub fn load(ca_file: Option<&Path>) -> Result<Trust, String> {
        let file = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty());
        let dirs = std::env::var_os("SSL_CERT_DIR").filter(|v| !v.is_empty());
        let (roots, source) = match ca_file {
            Some(path) => (read_roots(path)?, format!("the CA file {}", path.display())),
            None if file.is_some() || dirs.is_some() => env_roots(file, dirs)?,
            None => SYSTEM_BUNDLES
                .iter()
                .find_map(|path| {
                    let roots = read_roots(Path::new(path)).ok()?;
                    Some((roots, format!("the system's CA bundle {path}")))
                })
                .ok_or_else(|| {
                    format!(
                        "no system CA bundle found (looked for {}); name the CA file to trust \
                         with --store-ca-file",
                        SYSTEM_BUNDLES.join(", ")
                    )
                })?,
        };
        let provider = rustls::crypto::ring::default_provider();
        let config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(|err| format!("TLS: {err}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Trust {
            config: Arc::new(config),
            source,
        })
    }

    /// Runs the handshake over `tcp` for `host` (the certificate must name
    /// it), each step waiting at most until `deadline`. The error is one
    /// line; a certificate that does not verify says "certificate not
    /// trusted" and what was trusted.
    pub fn handshake(
        &self,
        mut tcp: TcpStream,
        host: &str,
        deadline: Instant,
    ) -> io::Result<TlsStream> {
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("'{host}' is neither a host name nor an IP address a certificate can name"),
            )
        })?;
        let mut tls = ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(|err| io::Error::other(format!("TLS: {err}")))?;
        // The client's last handshake message is queued once the handshake
        // is done, hence `wants_write` too.
        while tls.is_handshaking() || tls.wants_write() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            tcp.set_read_timeout(Some(left))?;
            tcp.set_write_timeout(Some(left))?;
            if tls.wants_write() {
                tls.write_tls(&mut tcp).map_err(step_failed)?;
                continue;
            }
            if tls.read_tls(&mut tcp).map_err(step_failed)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during the TLS handshake",
                ));
            }
            if let Err(err) = tls.process_new_packets() {
                // Tell the server why, if it still listens.
                let _ = tls.write_tls(&mut tcp);
                return Err(self.rejected(err, host));
            }
        }
        Ok(StreamOwned::new(tls, tcp))
    }

    fn rejected(&self, err: rustls::Error, host: &str) -> io::Error {
        let why = match err {
            rustls::Error::InvalidCertificate(cert) => {
                let why = match cert {
                    CertificateError::UnknownIssuer => "not issued by a trusted authority".into(),
                    CertificateError::NotValidForName => format!("not valid for {host}"),
                    CertificateError::NotValidForNameContext { presented, .. } => {
                        format!("not valid for {host} (it is for {})", presented.join(", "))
                    }
                    cert => cert.to_string(),
                };
                format!("certificate not trusted: {why} (trusting {})", self.source)
            }
            err if wants_certificate(&err) => WANTS_CERTIFICATE.into(),
            err => format!("TLS handshake failed: {err}"),
        };
        io::Error::new(io::ErrorKind::InvalidData, why)
    }
}

/// The certificates of one PEM file; an error (naming the file) when it
/// cannot be read or holds none.
fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let problem = |why: String| format!("CA file {}: {why}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| match err {
            rustls::pki_types::pem::Error::Io(err) => problem(format!("cannot read it: {err}")),
            err => problem(format!("not a PEM file: {err}")),
        })?;
    let mut roots = RootCertStore::empty();
    let (_, unusable) = roots.add_parsable_certificates(certs);
    match (roots.is_empty(), unusable) {
        (false, _) => Ok(roots),
        (true, 0) => Err(problem("holds no certificate".into())),
        (true, n) => Err(problem(format!(
            "holds no usable certificate ({n} could not be parsed)"
        ))),
    }
}

/// The roots OpenSSL's variables name: every certificate of the file
/// `SSL_CERT_FILE`, and of every file in the directories `SSL_CERT_DIR`
/// lists (separated by `:`; files that hold no certificate, such as CRLs,
/// are passed over, as OpenSSL looks only for its hashed names there). The
/// system bundle is not added: whoever sets them chose what to trust.
fn env_roots(
    file: Option<OsString>,
    dirs: Option<OsString>,
) -> Result<(RootCertStore, String), String> {
    let mut roots = RootCertStore::empty();
    let mut named = Vec::new();
    if let Some(file) = file {
        let path = PathBuf::from(file);
        let found = read_roots(&path).map_err(|err| format!("SSL_CERT_FILE: {err}"))?;
        roots.roots.extend(found.roots);
        named.push(format!("SSL_CERT_FILE={}", path.display()));
    }
    if let Some(dirs) = dirs {
        for dir in std::env::split_paths(&dirs).filter(|d| !d.as_os_str().is_empty()) {
            // Unreadable or missing directories are skipped, as OpenSSL does.
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths.iter().filter(|path| path.is_file()) {
                if let Ok(found) = read_roots(path) {
                    roots.roots.extend(found.roots);
                }
            }
        }
        named.push(format!("SSL_CERT_DIR={}", dirs.to_string_lossy()));
    }
    let source = named.join(" and ");
    if roots.is_empty() {
        return Err(format!(
            "no certificate found in {source}; unset them to use the system's CA bundle, \
             or name the CA file to trust with --store-ca-file"
        ));
    }
    Ok((roots, source))
}

/// Explains a TLS error met after the handshake: a server that wants a
/// client certificate says so only then (TLS 1.3 checks it last).
pub fn explain(err: io::Error) -> io::Error {
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(inner) if wants_certificate(inner) => io::Error::new(err.kind(), WANTS_CERTIFICATE),
        _ => err,
    }
}

const WANTS_CERTIFICATE: &str = "the server wants a client certificate, which cacheback does \
                                 not send (Redis: tls-auth-clients no)";

fn wants_certificate(err: &rustls::Error) -> bool {
    matches!(
        err,
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)
    )
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the TLS handshake timed out")
}

/// A read or write of the handshake failed; a read timeout shows as
/// `WouldBlock` on Unix.
fn step_failed(err: io::Error) -> io::Error {
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => timed_out(),
        _ => err,
    }
}
