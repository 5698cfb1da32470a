//! The tcp-server backends: one pool of sockets per backend (our `pool` crate), and the choice
//! of a backend for each request: in rotation, or for a login by rendezvous hashing of its
//! username key, so that the throttle sees all attempts on one username in one place. One
//! request and its response per borrow; a socket that saw an I/O or protocol error is marked
//! broken and never reused.

use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pool::{Manager, Pool};
use proto::{ErrorCode, HandshakeError, NONCE_LEN, ReadError, Request, Response, TierKey, Trace};
use service::link::{self, ClientTls, Deadline, Link, TlsServerName};
use sha2::{Digest, Sha256};
use socket2::{SockRef, TcpKeepalive};

/// How to reach the backends.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// The tcp-server addresses; requests spread over those that answer.
    pub addresses: Vec<SocketAddr>,
    /// Sockets per backend at most.
    pub pool_size: u32,
    /// The longest wait for a free socket before `backend_busy`.
    pub pool_wait: Duration,
    /// The longest a TCP connect to a backend may take.
    pub connect_timeout: Duration,
    /// The longest a request may wait for its response before `backend_timeout`.
    pub request_timeout: Duration,
    /// A socket idle this long is checked with a Ping before it is used again.
    pub validate_after_idle: Duration,
    /// A socket idle this long is closed (keep it below tcp-server's `--idle-timeout`).
    pub idle_timeout: Duration,
    /// The largest response frame accepted, in bytes.
    pub max_frame_len: u32,
    /// TLS to every backend (`--tier-tls`), or none.
    pub tls: Option<BackendTls>,
}

/// TLS to the backends.
#[derive(Debug, Clone)]
pub struct BackendTls {
    /// Our certificate and the CA the backends' must be signed by.
    pub config: ClientTls,
    /// The name every backend's certificate must carry; `None`: its IP address.
    pub server_name: Option<String>,
}

impl BackendConfig {
    /// The defaults, which the command line shares (with one backend on 127.0.0.1:7070).
    pub const DEFAULT: BackendConfig = BackendConfig {
        addresses: Vec::new(),
        pool_size: 16,
        pool_wait: Duration::from_secs(1),
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(5),
        validate_after_idle: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(30),
        max_frame_len: proto::DEFAULT_MAX_FRAME_LEN,
        tls: None,
    };

    /// Where the one backend of the defaults listens: tcp-server's own default.
    pub const DEFAULT_ADDRESS: &str = "127.0.0.1:7070";
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            addresses: vec![
                BackendConfig::DEFAULT_ADDRESS
                    .parse()
                    .expect("the default backend address parses"),
            ],
            ..BackendConfig::DEFAULT
        }
    }
}

/// Why a request got no answer from any backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Every reachable backend is at its bound (our pool, or tcp-server's connection limit);
    /// retry after this many milliseconds.
    Busy { retry_after_ms: u32 },
    /// No backend could be reached, or the connection failed mid-request.
    Unavailable,
    /// A backend took the request and did not answer within the request timeout.
    Timeout,
}

/// One open socket to a backend, with its buffers.
pub struct Connection {
    link: Link,
    tier_key: Arc<TierKey>,
    /// Whether the tier handshake is done; it is made before the first request.
    authenticated: bool,
    broken: bool,
    next_request_id: u32,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
}

/// Why one exchange on one socket failed.
enum ExchangeError {
    /// Nothing of the request can have been processed: the socket was found closed before
    /// anything was sent, or the server refused the connection at its bound (Busy, id 0).
    NotSent { busy_retry_ms: Option<u32> },
    /// The request may have reached the backend; the connection failed.
    Failed,
    /// The deadline passed.
    TimedOut,
    /// The backend refused the tier handshake, or did not prove it holds our tier key: a
    /// deployment fault (the two tiers hold different key files), said in the message.
    Refused(String),
}

impl Connection {
    /// Sends `request` and reads its response, all within `timeout`.
    fn exchange(
        &mut self,
        request: &Request,
        timeout: Duration,
        max_frame_len: u32,
    ) -> Result<Response, ExchangeError> {
        let result = self.exchange_inner(request, timeout, max_frame_len);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    fn exchange_inner(
        &mut self,
        request: &Request,
        timeout: Duration,
        max_frame_len: u32,
    ) -> Result<Response, ExchangeError> {
        if self.peer_has_closed() {
            // A new TLS connection closed before its first exchange is tcp-server refusing it
            // at its bounds (see `handshake_error`); any other is a stale socket.
            let refused = !self.authenticated && self.link.tls_handshaking();
            return Err(ExchangeError::NotSent {
                busy_retry_ms: refused.then_some(100),
            });
        }
        let mut stream = Deadline::after(&mut self.link, timeout);
        if !self.authenticated {
            // Made within the request's own deadline; pooled sockets make it rare.
            let mut nonce = [0u8; NONCE_LEN];
            getrandom::fill(&mut nonce)
                .map_err(|error| ExchangeError::Refused(format!("no randomness: {error}")))?;
            let shaken = proto::handshake(
                &mut stream,
                &self.tier_key,
                nonce,
                &mut self.read_buf,
                max_frame_len,
            );
            if let Err(error) = shaken {
                drop(stream);
                return Err(handshake_error(error, self.link.tls_handshaking()));
            }
            self.authenticated = true;
            // The handshake used ids 1 and 2.
            self.next_request_id = 2;
        }
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        let id = self.next_request_id;
        // The request's id goes along, so that tcp-server's log lines about it carry it too.
        let trace = service::logging::request_id()
            .and_then(|id| Trace::new(&id))
            .unwrap_or_default();
        proto::write_frame(&mut stream, id, &trace, request, &mut self.write_buf).map_err(
            |error| match error {
                proto::WriteError::Io(error) if is_timeout(&error) => ExchangeError::TimedOut,
                _ => ExchangeError::Failed,
            },
        )?;
        let frame =
            proto::read_frame::<_, Response>(&mut stream, &mut self.read_buf, max_frame_len)
                .map_err(|error| match error {
                    ReadError::Idle => ExchangeError::TimedOut,
                    ReadError::Io(error) if is_timeout(&error) => ExchangeError::TimedOut,
                    _ => ExchangeError::Failed,
                })?;
        match frame.message {
            // The server refused this connection at its bound before reading anything.
            Response::Error(reply) if frame.request_id == 0 && reply.code == ErrorCode::Busy => {
                Err(ExchangeError::NotSent {
                    busy_retry_ms: Some(reply.retry_after_ms),
                })
            }
            message if frame.request_id == id => Ok(message),
            _ => Err(ExchangeError::Failed),
        }
    }

    /// Whether the backend has closed this socket (or sent something unasked, which only a
    /// refusal or a close would be): one non-blocking peek, so a stale socket is found before
    /// a request is spent on it.
    fn peer_has_closed(&mut self) -> bool {
        if self.link.buffered() {
            return true;
        }
        let mut byte = [MaybeUninit::<u8>::uninit()];
        match SockRef::from(self.link.socket())
            .recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT)
        {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) => error.kind() != io::ErrorKind::WouldBlock,
        }
    }
}

/// What a failed handshake means for the request: nothing of it was sent. `in_tls` says that
/// it failed inside the TLS handshake.
fn handshake_error(error: HandshakeError, in_tls: bool) -> ExchangeError {
    match error {
        // Refused at the connection bound before reading anything.
        HandshakeError::Refused(reply) if reply.code == ErrorCode::Busy => ExchangeError::NotSent {
            busy_retry_ms: Some(reply.retry_after_ms),
        },
        HandshakeError::Read(ReadError::Idle) => ExchangeError::TimedOut,
        // TLS refused: our certificate, theirs, or a backend without TLS. A deployment fault.
        HandshakeError::Read(ReadError::Io(ref error))
        | HandshakeError::Write(proto::WriteError::Io(ref error))
            if link::tls_failure(error).is_some() =>
        {
            ExchangeError::Refused(format!(
                "TLS: {}",
                link::tls_failure(error).unwrap_or_default()
            ))
        }
        HandshakeError::Read(ReadError::Io(error))
        | HandshakeError::Write(proto::WriteError::Io(error))
            if is_timeout(&error) =>
        {
            ExchangeError::TimedOut
        }
        // Over TLS, a tcp-server at its connection bounds closes a new connection instead of
        // answering Busy (which would need the TLS handshake first): a close inside the TLS
        // handshake is that refusal. Treated as Busy, it sends the request to another backend
        // or answers 503 with Retry-After, rather than opening more connections to this one.
        HandshakeError::Read(ReadError::Io(_) | ReadError::Closed)
        | HandshakeError::Write(proto::WriteError::Io(_))
            if in_tls =>
        {
            ExchangeError::NotSent {
                busy_retry_ms: Some(100),
            }
        }
        // A socket found closed or broken: as stale as one found closed before a request.
        HandshakeError::Read(ReadError::Io(_) | ReadError::Closed) | HandshakeError::Write(_) => {
            ExchangeError::NotSent {
                busy_retry_ms: None,
            }
        }
        // Another key, a backend that is not a tcp-server we trust, or one of another protocol
        // version (its answer does not decode): a deployment fault, logged as an error.
        error => ExchangeError::Refused(error.to_string()),
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Opens and checks sockets to one backend, for the pool.
pub struct BackendManager {
    address: SocketAddr,
    tls: Option<(ClientTls, TlsServerName)>,
    tier_key: Arc<TierKey>,
    connect_timeout: Duration,
    max_frame_len: u32,
}

impl Manager for BackendManager {
    type Connection = Connection;
    type Error = io::Error;

    fn connect(&self) -> io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&self.address, self.connect_timeout)?;
        stream.set_nodelay(true)?;
        // Keepalive finds a backend host that vanished without closing its sockets.
        SockRef::from(&stream).set_tcp_keepalive(
            &TcpKeepalive::new()
                .with_time(Duration::from_secs(10))
                .with_interval(Duration::from_secs(5)),
        )?;
        let tls = self.tls.as_ref().map(|(config, name)| (config, name));
        Ok(Connection {
            link: Link::connect(stream, tls)?,
            tier_key: Arc::clone(&self.tier_key),
            authenticated: false,
            broken: false,
            next_request_id: 0,
            read_buf: Vec::new(),
            write_buf: Vec::new(),
        })
    }

    fn is_valid(&self, conn: &mut Connection) -> io::Result<()> {
        match conn.exchange(
            &Request::Ping(proto::Ping),
            self.connect_timeout,
            self.max_frame_len,
        ) {
            // An error reply (the backend's database is down) still proves the socket works.
            Ok(Response::Ping(()) | Response::Error(_)) => Ok(()),
            Ok(_) => Err(io::Error::other("unexpected answer to Ping")),
            Err(_) => Err(io::Error::other("Ping failed")),
        }
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.broken
    }
}

/// A backend's rendezvous score for a username key: the first 8 bytes of
/// SHA-256(address, 0xFF, key), as `PROTOCOL.md` specifies, so that every http-server (of any
/// build) ranks the backends alike.
fn rendezvous_score(address: &str, key: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(address.as_bytes())
        .chain_update([0xFF])
        .chain_update(key.as_bytes())
        .finalize();
    u64::from_be_bytes(
        digest[..8]
            .try_into()
            .expect("a SHA-256 digest has 32 bytes"),
    )
}

struct Backend {
    address: SocketAddr,
    /// The address as text, which rendezvous scores hash.
    label: String,
    pool: Pool<BackendManager>,
}

/// The backends, and the choice of one for each request.
pub struct Backends {
    backends: Vec<Backend>,
    next: AtomicUsize,
    config: BackendConfig,
}

/// A pool's state, for `/metrics`.
pub struct BackendStats {
    pub address: SocketAddr,
    pub pool: pool::Stats,
}

impl Backends {
    /// A pool per address; no socket is opened yet. Every socket proves it holds `tier_key`
    /// before its first request.
    pub fn new(config: &BackendConfig, tier_key: TierKey) -> io::Result<Backends> {
        let tier_key = Arc::new(tier_key);
        let mut backends = Vec::with_capacity(config.addresses.len());
        for &address in &config.addresses {
            let tls = match &config.tls {
                None => None,
                Some(tls) => {
                    let name = match &tls.server_name {
                        Some(name) => name.clone(),
                        None => address.ip().to_string(),
                    };
                    let name = link::server_name(&name)
                        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
                    Some((Arc::clone(&tls.config), name))
                }
            };
            let pool = Pool::builder()
                .max_size(config.pool_size)
                .checkout_timeout(config.pool_wait)
                .idle_timeout(Some(config.idle_timeout))
                .validate_after_idle(Some(config.validate_after_idle))
                .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
                .thread_name(format!("backend-{address}"))
                .build(BackendManager {
                    address,
                    tls,
                    tier_key: Arc::clone(&tier_key),
                    connect_timeout: config.connect_timeout,
                    max_frame_len: config.max_frame_len,
                })?;
            backends.push(Backend {
                address,
                label: address.to_string(),
                pool,
            });
        }
        Ok(Backends {
            backends,
            next: AtomicUsize::new(0),
            config: config.clone(),
        })
    }

    /// The addresses, for logs.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.backends.iter().map(|b| b.address).collect()
    }

    /// Every pool's state.
    pub fn stats(&self) -> Vec<BackendStats> {
        self.backends
            .iter()
            .map(|b| BackendStats {
                address: b.address,
                pool: b.pool.stats(),
            })
            .collect()
    }

    /// Sends `request` to one backend and returns its response. Backends are tried in turn,
    /// starting with the next in rotation; one that cannot be reached is skipped. A request
    /// that may have reached a backend is sent again elsewhere only if `idempotent`.
    pub fn call(&self, request: &Request, idempotent: bool) -> Result<Response, CallError> {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.backends.len();
        let order: Vec<usize> = (0..count).map(|i| (first + i) % count).collect();
        self.call_in(&order, request, idempotent, false)
    }

    /// [`Backends::call`] for a request about the username key `key` (a login): every
    /// http-server sends it to the same backend, the live one first in rendezvous order (see
    /// `PROTOCOL.md`, "Routing"), so that the throttle sees all attempts on one username. A
    /// busy backend's answer stands: passing the request on would give a guesser a fresh
    /// allowance on each backend.
    pub fn call_for(
        &self,
        key: &str,
        request: &Request,
        idempotent: bool,
    ) -> Result<Response, CallError> {
        self.call_in(&self.rendezvous(key), request, idempotent, true)
    }

    /// The backends' indexes by rendezvous score for `key`, highest first.
    fn rendezvous(&self, key: &str) -> Vec<usize> {
        let mut scored: Vec<(u64, usize)> = self
            .backends
            .iter()
            .enumerate()
            .map(|(index, backend)| (rendezvous_score(&backend.label, key), index))
            .collect();
        scored.sort_unstable_by(|a, b| b.cmp(a));
        scored.into_iter().map(|(_, index)| index).collect()
    }

    fn call_in(
        &self,
        order: &[usize],
        request: &Request,
        idempotent: bool,
        keyed: bool,
    ) -> Result<Response, CallError> {
        let started = Instant::now();
        let count = order.len();
        let mut busy: Option<u32> = None;
        let mut index = 0;
        // Each backend gets a turn. A stale socket (closed by a backend that restarted) is found
        // before anything is sent and costs nothing but a retry on the same backend: a pool can
        // hold up to `pool_size` of them, and one more checkout then connects afresh.
        let mut stale = 0;
        while index < count {
            let backend = &self.backends[order[index]];
            let wait = self.config.pool_wait.saturating_sub(started.elapsed());
            let mut conn = match backend.pool.get_timeout(wait) {
                Ok(conn) => conn,
                Err(pool::Error::Timeout {
                    last_error: None, ..
                }) => {
                    if keyed {
                        return Err(CallError::Busy {
                            retry_after_ms: 1000,
                        });
                    }
                    busy = Some(busy.unwrap_or(1000));
                    index += 1;
                    continue;
                }
                Err(error) => {
                    log::debug!("backend {} unavailable: {error}", backend.address);
                    index += 1;
                    continue;
                }
            };
            let timeout = self
                .config
                .request_timeout
                .saturating_sub(started.elapsed());
            if timeout.is_zero() {
                return Err(CallError::Timeout);
            }
            match conn.exchange(request, timeout, self.config.max_frame_len) {
                Ok(response) => return Ok(response),
                Err(ExchangeError::NotSent {
                    busy_retry_ms: None,
                }) => {
                    stale += 1;
                    if stale > self.config.pool_size {
                        stale = 0;
                        index += 1;
                    }
                }
                Err(ExchangeError::NotSent {
                    busy_retry_ms: Some(ms),
                }) => {
                    if keyed {
                        return Err(CallError::Busy { retry_after_ms: ms });
                    }
                    busy = Some(ms);
                    index += 1;
                }
                Err(ExchangeError::TimedOut) => {
                    log::warn!("backend {} did not answer in time", backend.address);
                    return Err(CallError::Timeout);
                }
                Err(ExchangeError::Refused(why)) => {
                    log::error!(
                        "backend {}: tier handshake failed (the same tier key, and --tier-tls on both \
                         sides or neither?): {why}",
                        backend.address
                    );
                    index += 1;
                }
                Err(ExchangeError::Failed) if idempotent => {
                    log::debug!("backend {} failed a request; trying again", backend.address);
                    index += 1;
                }
                Err(ExchangeError::Failed) => {
                    log::warn!("backend {} failed mid-request", backend.address);
                    return Err(CallError::Unavailable);
                }
            }
        }
        match busy {
            Some(retry_after_ms) => Err(CallError::Busy { retry_after_ms }),
            None => Err(CallError::Unavailable),
        }
    }

    /// Pings each backend until one answers Pong (tcp-server answers Unavailable while its
    /// database is down). A backend whose sockets are all busy is ready: it is serving.
    pub fn any_ready(&self) -> bool {
        self.backends.iter().any(|backend| {
            let mut conn = match backend.pool.get_timeout(self.config.connect_timeout) {
                Ok(conn) => conn,
                Err(pool::Error::Timeout {
                    last_error: None, ..
                }) => return true,
                Err(_) => return false,
            };
            matches!(
                conn.exchange(
                    &Request::Ping(proto::Ping),
                    self.config.connect_timeout,
                    self.config.max_frame_len
                ),
                Ok(Response::Ping(()))
            )
        })
    }
}
