//! The tier link: one TCP connection between an http-server and a tcp-server, in the clear or
//! inside TLS 1.3 (rustls, blocking `StreamOwned`, each side proving a certificate of one
//! private CA: mutual TLS), and the deadline that bounds each exchange over it.
//!
//! Either way the protocol on top is the same, tier handshake included: TLS adds secrecy on the
//! wire and a second proof of the peer; the tier key still decides who is served.

use std::fs;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConnection, RootCertStore, ServerConnection, StreamOwned};
use thiserror::Error;

/// Why the TLS set-up could not be built from its files.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{}: {error}", .file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// What failed (not a `source`: the message says it already).
        error: io::Error,
    },
    /// A file holds no PEM item of the kind wanted, or a broken one.
    #[error("{}: no {what} in it (PEM expected): {reason}", .file.display())]
    Pem {
        /// The file.
        file: PathBuf,
        /// What was looked for.
        what: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// A private key file other users can read.
    #[error("{} is open to other users (mode {mode:o}): chmod 600 it", .file.display())]
    OpenToOthers {
        /// The file.
        file: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// rustls refused the certificates or the key (a key that does not match, a CA it
    /// cannot use).
    #[error("TLS set-up: {0}")]
    Rustls(String),
}

/// The read buffer of a link in the clear: a login's frames are a few hundred bytes; a larger
/// frame (a picture) is read past the buffer, straight into the frame's own.
const PLAIN_READ_BUFFER: usize = 8 * 1024;

/// Where scripts/tier-ca writes by default, and both servers look.
pub const DEFAULT_TLS_DIR: &str = ".data/tier-tls";

/// The command line's TLS options, the same on both servers (each flattens it).
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// Run the tier link over TLS 1.3 with certificates on both sides, signed by one private
    /// CA (the other tier needs --tier-tls too). scripts/tier-ca makes the CA and both
    /// certificates for local runs.
    #[arg(long)]
    pub tier_tls: bool,
    /// This server's certificate chain (PEM), leaf first [default:
    /// .data/tier-tls/<tcp-server|http-server>.crt, as scripts/tier-ca writes it].
    #[arg(long)]
    pub tier_tls_cert: Option<PathBuf>,
    /// Its private key (PEM), mode 0600 [default: .data/tier-tls/<server>.key].
    #[arg(long)]
    pub tier_tls_key: Option<PathBuf>,
    /// The CA (PEM) that must have signed the other tier's certificates [default:
    /// .data/tier-tls/ca.crt].
    #[arg(long)]
    pub tier_tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The files of `side` ("tcp-server" or "http-server"), when --tier-tls is on.
    pub fn files(&self, side: &str) -> Option<TlsFiles> {
        if !self.tier_tls {
            return None;
        }
        let defaults = TlsFiles::in_dir(Path::new(DEFAULT_TLS_DIR), side);
        Some(TlsFiles {
            cert: self.tier_tls_cert.clone().unwrap_or(defaults.cert),
            key: self.tier_tls_key.clone().unwrap_or(defaults.key),
            ca: self.tier_tls_ca.clone().unwrap_or(defaults.ca),
        })
    }
}

/// Where one side's certificate, its key and the CA it trusts for the other side are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// This side's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8 or SEC1), mode 0600.
    pub key: PathBuf,
    /// The CA (PEM) that must have signed the other side's certificate.
    pub ca: PathBuf,
}

impl TlsFiles {
    /// The files `scripts/tier-ca` writes for `side` ("tcp-server" or "http-server") in `dir`.
    pub fn in_dir(dir: &Path, side: &str) -> TlsFiles {
        TlsFiles {
            cert: dir.join(format!("{side}.crt")),
            key: dir.join(format!("{side}.key")),
            ca: dir.join("ca.crt"),
        }
    }

    /// What a server logs at start: "TLS 1.3 with <cert>, the other tier's certificates from
    /// <ca>".
    pub fn describe(&self) -> String {
        format!(
            "TLS 1.3 with {}, the other tier's certificates from {}",
            self.cert.display(),
            self.ca.display()
        )
    }

    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        pem_certificates(&self.cert, "certificate")
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in pem_certificates(&self.ca, "CA certificate")? {
            roots
                .add(ca)
                .map_err(|error| TlsError::Rustls(format!("{}: {error}", self.ca.display())))?;
        }
        Ok(Arc::new(roots))
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        let file = &self.key;
        let mode = fs::metadata(file)
            .map_err(|error| TlsError::Read {
                file: file.clone(),
                error,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(TlsError::OpenToOthers {
                file: file.clone(),
                mode: mode & 0o777,
            });
        }
        PrivateKeyDer::from_pem_file(file).map_err(|error| pem_error(file, "private key", error))
    }
}

fn pem_error(file: &Path, what: &'static str, error: rustls::pki_types::pem::Error) -> TlsError {
    match error {
        rustls::pki_types::pem::Error::Io(error) => TlsError::Read {
            file: file.to_owned(),
            error,
        },
        error => TlsError::Pem {
            file: file.to_owned(),
            what,
            reason: error.to_string(),
        },
    }
}

fn pem_certificates(
    file: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(file)
        .map_err(|error| pem_error(file, what, error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(file, what, error))?;
    if certificates.is_empty() {
        return Err(TlsError::Pem {
            file: file.to_owned(),
            what,
            reason: "the file is empty".to_owned(),
        });
    }
    Ok(certificates)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// tcp-server's side: TLS 1.3 only, its certificate, and a client certificate signed by the
/// CA required of every peer. No session resumption: pooled links live long, and a ticket
/// arriving unasked would look like data on an idle socket.
pub fn server_config(files: &TlsFiles) -> Result<ServerTls, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(files.roots()?, provider())
        .build()
        .map_err(|error| TlsError::Rustls(error.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| TlsError::Rustls(error.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(files.certificates()?, files.private_key()?)
        .map_err(|error| TlsError::Rustls(error.to_string()))?;
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// http-server's side: TLS 1.3 only, servers checked against the CA, and its own certificate
/// for the server to check.
pub fn client_config(files: &TlsFiles) -> Result<ClientTls, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| TlsError::Rustls(error.to_string()))?
        .with_root_certificates(files.roots()?)
        .with_client_auth_cert(files.certificates()?, files.private_key()?)
        .map_err(|error| TlsError::Rustls(error.to_string()))?;
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// The name a server's certificate must carry: a DNS name, or an IP address as text.
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(name.to_owned())
        .map_err(|error| TlsError::Rustls(format!("server name {name:?}: {error}")))
}

/// tcp-server's TLS set-up, as [`server_config`] builds it.
pub type ServerTls = Arc<rustls::ServerConfig>;
/// http-server's TLS set-up, as [`client_config`] builds it.
pub type ClientTls = Arc<rustls::ClientConfig>;

/// The name a server's certificate is checked against.
pub type TlsServerName = ServerName<'static>;

/// What a failed read or write says about TLS: the TLS error (a certificate refused, an alert
/// from the peer, bytes that are not TLS), or `None` for anything else (a timeout, a close).
pub fn tls_failure(error: &io::Error) -> Option<String> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(ToString::to_string)
}

/// A TCP socket under a deadline: no system call is made once it has passed, and none may
/// block much past it. It is the transport under TLS too, so that a peer trickling a handshake
/// or a record byte by byte cannot stretch an exchange: rustls reads and writes the socket as
/// often as it needs within one of our calls, and each of its system calls is bounded here, not
/// only ours.
///
/// The socket's timeout is re-armed only when it must be (a `setsockopt` per read and write
/// was a quarter of tcp-server's system calls per login): while the timeout last set exceeds
/// the time left by at most an eighth, it stays, so a call can overrun the deadline by at most
/// that eighth. A timeout shorter than the time left (the idle tick) also stays; when it
/// expires before the deadline, the call is made again with the exact time left.
pub struct TimedSocket {
    stream: TcpStream,
    deadline: Option<Instant>,
    /// The read and write timeouts set on the socket through this type; `None` until the
    /// first.
    read_armed: Option<Duration>,
    write_armed: Option<Duration>,
}

impl TimedSocket {
    fn new(stream: TcpStream) -> TimedSocket {
        TimedSocket {
            stream,
            deadline: None,
            read_armed: None,
            write_armed: None,
        }
    }

    /// Sets the read timeout for reads outside any deadline (the idle tick), with no system
    /// call when it is already set.
    fn set_idle_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        if self.read_armed != Some(timeout) {
            self.stream.set_read_timeout(Some(timeout))?;
            self.read_armed = Some(timeout);
        }
        Ok(())
    }
}

/// Runs one system call (`call`) on `stream` under `deadline`, first arming the timeout
/// `armed` records with `arm` when the one set would overrun the deadline by more than an
/// eighth of the time left, or after it expired early.
fn under_deadline<T>(
    stream: &mut TcpStream,
    deadline: Option<Instant>,
    armed: &mut Option<Duration>,
    arm: fn(&TcpStream, Option<Duration>) -> io::Result<()>,
    mut call: impl FnMut(&mut TcpStream) -> io::Result<T>,
) -> io::Result<T> {
    let Some(deadline) = deadline else {
        return call(stream);
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(ErrorKind::TimedOut, "i/o deadline passed"));
        }
        if armed.is_none_or(|set| set > left + left / 8) {
            arm(stream, Some(left))?;
            *armed = Some(left);
        }
        match call(stream) {
            // A socket timeout is EAGAIN (`WouldBlock`); `TimedOut` would be the connection
            // itself dead (keepalive, retransmissions), which no retry mends.
            Err(error) if error.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                // A shorter timeout than the time left expired: arm the rest.
                *armed = None;
            }
            result => return result,
        }
    }
}

impl Read for TimedSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        under_deadline(
            &mut self.stream,
            self.deadline,
            &mut self.read_armed,
            TcpStream::set_read_timeout,
            |stream| stream.read(buf),
        )
    }
}

impl Write for TimedSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        under_deadline(
            &mut self.stream,
            self.deadline,
            &mut self.write_armed,
            TcpStream::set_write_timeout,
            |stream| stream.write(buf),
        )
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// One connection of the tier link.
pub enum Link {
    /// In the clear, read through a buffer: one system call usually brings a whole frame and
    /// tells the idle wait that a request arrived, where a peek, a header read and a body read
    /// took three.
    Plain(BufReader<TimedSocket>),
    /// TLS, tcp-server's end.
    Server(Box<StreamOwned<ServerConnection, TimedSocket>>),
    /// TLS, http-server's end.
    Client(Box<StreamOwned<ClientConnection, TimedSocket>>),
}

impl Link {
    /// A link in the clear over `stream`.
    pub fn plain(stream: TcpStream) -> Link {
        Link::Plain(BufReader::with_capacity(
            PLAIN_READ_BUFFER,
            TimedSocket::new(stream),
        ))
    }

    /// tcp-server's end of an accepted connection: TLS when `tls` is given (the TLS handshake
    /// happens with the first read, under that read's deadline).
    pub fn accept(stream: TcpStream, tls: Option<&ServerTls>) -> io::Result<Link> {
        Ok(match tls {
            None => Link::plain(stream),
            Some(config) => {
                let connection =
                    ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
                let socket = TimedSocket::new(stream);
                Link::Server(Box::new(StreamOwned::new(connection, socket)))
            }
        })
    }

    /// http-server's end of a connection to a server named `name`: TLS when `tls` is given
    /// (the TLS handshake happens with the first write, under its deadline).
    pub fn connect(
        stream: TcpStream,
        tls: Option<(&ClientTls, &ServerName<'static>)>,
    ) -> io::Result<Link> {
        Ok(match tls {
            None => Link::plain(stream),
            Some((config, name)) => {
                let connection = ClientConnection::new(Arc::clone(config), name.clone())
                    .map_err(io::Error::other)?;
                let socket = TimedSocket::new(stream);
                Link::Client(Box::new(StreamOwned::new(connection, socket)))
            }
        })
    }

    fn timed(&mut self) -> &mut TimedSocket {
        match self {
            Link::Plain(reader) => reader.get_mut(),
            Link::Server(tls) => &mut tls.sock,
            Link::Client(tls) => &mut tls.sock,
        }
    }

    /// Sets the socket's read timeout for reads outside a [`Deadline`] (waiting for the next
    /// request), with no system call when it is already set.
    ///
    /// # Errors
    /// As `TcpStream::set_read_timeout`.
    pub fn set_idle_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.timed().set_idle_read_timeout(timeout)
    }

    /// The TCP socket underneath, for peeking and shutting down. Its timeouts are set through
    /// the link, which keeps track of them.
    pub fn socket(&self) -> &TcpStream {
        match self {
            Link::Plain(reader) => &reader.get_ref().stream,
            Link::Server(tls) => &tls.sock.stream,
            Link::Client(tls) => &tls.sock.stream,
        }
    }

    /// Waits, under the idle read timeout, for the next bytes to arrive: `Ok(0)` when the peer
    /// closed, a `WouldBlock` or `TimedOut` error when the timeout passed first. In the clear
    /// the bytes are read into the link's buffer (one system call, which usually brings the
    /// whole next frame); over TLS they are peeked at, unless decrypted bytes are waiting.
    ///
    /// # Errors
    /// As the read or peek.
    pub fn wait_for_bytes(&mut self) -> io::Result<usize> {
        match self {
            Link::Plain(reader) => reader.fill_buf().map(<[u8]>::len),
            tls => {
                if tls.buffered() {
                    Ok(1)
                } else {
                    tls.socket().peek(&mut [0u8])
                }
            }
        }
    }

    /// Whether this is TLS and its handshake is not done yet.
    pub fn tls_handshaking(&self) -> bool {
        match self {
            Link::Plain(_) => false,
            Link::Server(tls) => tls.conn.is_handshaking(),
            Link::Client(tls) => tls.conn.is_handshaking(),
        }
    }

    /// Whether received bytes are waiting, which a read returns without the socket: in the
    /// link's buffer, or decrypted by TLS (a peer may send two frames in one TLS record, and the
    /// socket then shows nothing for the second).
    pub fn buffered(&mut self) -> bool {
        let state = match self {
            Link::Plain(reader) => return !reader.buffer().is_empty(),
            Link::Server(tls) => tls.conn.process_new_packets(),
            Link::Client(tls) => tls.conn.process_new_packets(),
        };
        state.is_ok_and(|state| state.plaintext_bytes_to_read() > 0)
    }
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(reader) => reader.read(buf),
            Link::Server(tls) => tls.read(buf),
            Link::Client(tls) => tls.read(buf),
        }
    }
}

impl Write for Link {
    // TLS: each write is flushed to the socket at once, so a frame never waits in rustls's
    // buffer for a later write that will not come (the protocol writes whole frames, then
    // reads).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Link::Plain(reader) => reader.get_mut().write(buf),
            Link::Server(tls) => tls.write(buf).and_then(|n| tls.flush().map(|()| n)),
            Link::Client(tls) => tls.write(buf).and_then(|n| tls.flush().map(|()| n)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::Plain(reader) => reader.get_mut().flush(),
            Link::Server(tls) => tls.flush(),
            Link::Client(tls) => tls.flush(),
        }
    }
}

/// A link with one deadline for a whole exchange (a frame, or a request and its response):
/// every system call under it, ours or TLS's, gets only the time left (see [`TimedSocket`]).
/// The deadline ends with this guard.
pub struct Deadline<'a> {
    link: &'a mut Link,
}

impl<'a> Deadline<'a> {
    /// Wraps `link`; everything must be done `timeout` from now.
    pub fn after(link: &'a mut Link, timeout: Duration) -> Self {
        Deadline::until(link, Instant::now() + timeout)
    }

    /// Wraps `link`; everything must be done by `deadline`.
    pub fn until(link: &'a mut Link, deadline: Instant) -> Self {
        link.timed().deadline = Some(deadline);
        Deadline { link }
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        self.link.timed().deadline = None;
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.link.read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.link.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.link.flush()
    }
}
