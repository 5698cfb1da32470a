//! The gatehouse client-facing tier: the public JSON API (API v1) on tiny_http, reaching
//! tcp-server over the gatehouse protocol through pooled sockets. No business rule lives here:
//! every decision about accounts, passwords and sessions is tcp-server's.
//!
//! # Layout
//! - `lib.rs` (this file): [`Config`], [`bind`] and [`run`], the worker loop.
//! - `route`: the routing table: every route, its path pattern, its methods and their
//!   handlers, its listener and its metrics label.
//! - `api`: the handlers, by resource (`api/users.rs`, `sessions.rs`, `me.rs`, `pictures.rs`),
//!   and how each maps to a proto request and back; the health checks, metrics and pages.
//! - `http`: what every handler shares: bounded and paced body reads, JSON replies, the error
//!   body and its codes ([`http::ApiCode`]), the cookies, the client address.
//! - `backend`: the per-backend socket pools and the choice of a backend for each request.
//! - `metrics`: counters and histograms, rendered in the Prometheus text format.
//! - `web`: the web pages and their assets (`http-server/web/`), embedded in the binary.
//!
//! # Threads
//! tiny_http (patched, see `vendor/tiny_http/PATCHES.md`) runs one thread per open connection
//! that parses request heads and reads small bodies; its requests queue for the fixed set of
//! worker threads started here, which hold at most one backend socket each at a time.

mod api;
mod backend;
mod http;
mod metrics;
mod route;
mod web;

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub use backend::{BackendConfig, BackendTls};
pub use http::BodyPace;
pub use service::Shutdown;
use socket2::{Domain, Socket, Type};

use crate::api::Api;
use crate::http::{ApiCode, ApiError};
use crate::route::{Listener, ROUTES};

/// How often an idle worker looks at the shutdown flag.
const TICK: Duration = Duration::from_millis(100);
/// How long a stop waits for busy keep-alive clients to send their last request before the
/// connections still open are treated as idle and ended.
const IDLE_CLIENTS_AFTER: Duration = Duration::from_secs(1);

/// Settings of the HTTP tier.
#[derive(Debug, Clone)]
pub struct Config {
    /// Worker threads answering requests (each holds at most one backend socket).
    pub workers: usize,
    /// The tcp-server instances, and how to reach them.
    pub backend: BackendConfig,
    /// The largest JSON request body accepted, in bytes.
    pub max_json_body: usize,
    /// The largest picture upload accepted, in bytes.
    pub max_picture_body: usize,
    /// The slowest a body may arrive (408 past it).
    pub body_pace: BodyPace,
    /// Workers that may read a body off the socket at once (a picture over 16 KiB); past it,
    /// 503 `uploads_busy`.
    pub body_slots: usize,
    /// The longest a request may wait for a worker: one that waited longer is answered 503
    /// `overloaded` at once (its work would only make the queue longer for the next ones). The
    /// health checks and the metrics are always answered.
    pub max_queue_wait: Duration,
    /// Proxies whose `X-Forwarded-For` names the client (the throttle counts per client
    /// address); from anyone else the header is ignored.
    pub trusted_proxies: Vec<IpAddr>,
    /// After a stop is requested, how long requests already received may still be answered.
    pub shutdown_grace: Duration,
    /// Mark the pages' session cookie `Secure` (browsers then send it over HTTPS only) and name
    /// it `__Host-gatehouse_session`: set it when clients reach the server through a TLS proxy.
    pub secure_cookies: bool,
    /// Where browsers reach the pages (`https://accounts.example.com`), when that is not
    /// `http://` (or `https://` with `secure_cookies`) and the `Host` header the server sees:
    /// the `Origin` that requests relying on the session cookie must carry.
    pub public_origin: Option<String>,
}

impl Config {
    /// The defaults, which the command line shares (with no backend; see
    /// [`BackendConfig::DEFAULT_ADDRESS`]). `body_slots` is a quarter of the workers.
    pub const DEFAULT: Config = Config {
        workers: 16,
        backend: BackendConfig::DEFAULT,
        max_json_body: tiny_http::PRE_READ_LIMIT,
        max_picture_body: 2 * 1024 * 1024,
        body_pace: BodyPace {
            grace: Duration::from_secs(1),
            min_rate: 32 * 1024,
        },
        body_slots: 4,
        max_queue_wait: Duration::from_secs(2),
        trusted_proxies: Vec::new(),
        shutdown_grace: Duration::from_secs(10),
        secure_cookies: false,
        public_origin: None,
    };
}

impl Default for Config {
    /// [`Config::DEFAULT`] with the default backend address.
    fn default() -> Self {
        let mut config = Config::DEFAULT;
        config.backend = BackendConfig::default();
        config
    }
}

/// The client-side settings of a listener, which the command line shares.
pub const LISTEN_DEFAULTS: ListenDefaults = ListenDefaults {
    backlog: 4096,
    idle_timeout: Duration::from_secs(10),
    write_timeout: Duration::from_secs(10),
};

/// The defaults of [`Listen`] but its address.
pub struct ListenDefaults {
    /// The accept backlog.
    pub backlog: i32,
    /// A client connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// The longest one write to a client may block.
    pub write_timeout: Duration,
}

/// Every API route the public listener answers, as (method, path template) pairs: what
/// `docs/openapi.yaml` must describe, no more and no less. (Not the web pages, nor the admin
/// listener's `/metrics`.)
pub fn routes() -> Vec<(String, &'static str)> {
    ROUTES
        .iter()
        .filter(|route| route.is_api())
        .flat_map(|route| {
            route
                .methods
                .iter()
                .map(move |(method, _)| (method.to_string(), route.label))
        })
        .collect()
}

/// Where and how to listen.
#[derive(Debug, Clone)]
pub struct Listen {
    /// The address.
    pub address: SocketAddr,
    /// The accept backlog (capped by `net.core.somaxconn`).
    pub backlog: i32,
    /// A client connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// The longest one write to a client may block.
    pub write_timeout: Duration,
}

/// The listener, with what tiny_http cannot set itself: a deep backlog, so a burst of clients
/// queues in the kernel instead of being refused, and receive and send timeouts that every
/// accepted socket inherits (Linux copies them on accept). They close idle keep-alive
/// connections and bound each read of a stalled client and each write to one that does not
/// read.
pub fn bind(listen: &Listen) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(listen.address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nodelay(true)?;
    socket.set_read_timeout(Some(listen.idle_timeout))?;
    socket.set_write_timeout(Some(listen.write_timeout))?;
    socket.bind(&listen.address.into())?;
    socket.listen(listen.backlog)?;
    Ok(socket.into())
}

/// The two listeners: the public one (the API and the pages) and the operator's (metrics and
/// health checks; keep it on loopback or a private network).
pub struct Listeners {
    /// The public listener.
    pub public: TcpListener,
    /// The admin listener.
    pub admin: TcpListener,
}

/// Serves HTTP on the listeners until `shutdown` is triggered. Build them with [`bind`]: their
/// socket options are how idle and stalled clients are bounded. Every socket to a backend
/// proves it holds `tier_key` before its first request.
pub fn run(
    listeners: Listeners,
    config: Config,
    tier_key: proto::TierKey,
    shutdown: Shutdown,
) -> io::Result<()> {
    let address = listeners.public.local_addr()?;
    let admin_address = listeners.admin.local_addr()?;
    // Kept to stop the accept loops: tiny_http owns the listeners and has no way to be told.
    let stopper = listeners.public.try_clone()?;
    let admin_stopper = listeners.admin.try_clone()?;
    let server = tiny_http::Server::from_listener(listeners.public, None)
        .map_err(|error| io::Error::other(error.to_string()))?;
    let server = Arc::new(server);
    let admin = tiny_http::Server::from_listener(listeners.admin, None)
        .map_err(|error| io::Error::other(error.to_string()))?;
    let api = Arc::new(Api::new(&config, tier_key)?);
    log::info!(
        "serving HTTP on {address} (admin: {admin_address}) with {} workers, backends {}",
        config.workers,
        api.backends_description()
    );
    // One thread answers the admin listener: a scrape or a health check at a time.
    let admin_worker = {
        let (api, shutdown) = (Arc::clone(&api), shutdown.clone());
        thread::Builder::new()
            .name("http-admin".to_owned())
            .spawn(move || {
                while !shutdown.requested() {
                    match admin.recv_timeout(TICK) {
                        Ok(Some(request)) => route::answer(&api, request, Listener::Admin),
                        Ok(None) => {}
                        Err(error) => {
                            log::error!("receiving an admin request failed: {error}");
                            thread::sleep(TICK);
                        }
                    }
                }
                admin.close_connections();
                admin.close_idle_connections();
            })?
    };

    let mut workers = Vec::with_capacity(config.workers);
    for index in 0..config.workers {
        let (server, api, shutdown) = (Arc::clone(&server), Arc::clone(&api), shutdown.clone());
        let grace = config.shutdown_grace;
        workers.push(
            thread::Builder::new()
                .name(format!("http-worker-{index}"))
                .spawn(move || work(&server, &api, &shutdown, grace))?,
        );
    }

    shutdown.wait();
    log::info!("stopping: no new connections; answering the requests already received");
    stop_accepting(&stopper, address);
    stop_accepting(&admin_stopper, admin_address);
    // Each connection ends after its next answer, which says `Connection: close`. Clients
    // that are busy send that request within moments; connections still open after that are
    // idle and are ended, since an idle client may wait longer than the grace.
    server.close_connections();
    let idle_after = Instant::now() + IDLE_CLIENTS_AFTER.min(config.shutdown_grace);
    while server.num_connections() > 0 && Instant::now() < idle_after {
        thread::sleep(TICK);
    }
    server.close_idle_connections();
    for worker in workers.into_iter().chain([admin_worker]) {
        if worker.join().is_err() {
            log::error!("a worker thread panicked");
        }
    }
    // A request that raced in after the workers stopped would be dropped with the server, which
    // tiny_http answers with a bare 500: tell it to retry instead.
    while let Ok(Some(request)) = server.try_recv() {
        let id = route::request_id(&request);
        let _request = service::logging::request_scope(&id);
        let reply = ApiError::new(ApiCode::ShuttingDown, "the server is stopping; retry")
            .retry_after(1)
            .reply()
            .with_header("X-Request-Id", &id);
        let _ = request.respond(reply.into_response());
    }
    log::info!("stopped");
    Ok(())
}

/// Shuts the listening socket down, which makes the (patched) accept loop end, and wakes it in
/// case it is blocked in `accept`.
fn stop_accepting(listener: &TcpListener, address: SocketAddr) {
    let socket = socket2::SockRef::from(listener);
    if let Err(error) = socket.shutdown(std::net::Shutdown::Both) {
        log::warn!("could not shut the listening socket down: {error}");
    }
    let _ = std::net::TcpStream::connect_timeout(&address, Duration::from_millis(100));
}

fn work(server: &tiny_http::Server, api: &Api, shutdown: &Shutdown, grace: Duration) {
    let mut stop_by: Option<Instant> = None;
    loop {
        if stop_by.is_none() && shutdown.requested() {
            stop_by = Some(Instant::now() + grace);
        }
        if stop_by.is_some_and(|deadline| Instant::now() >= deadline) {
            return;
        }
        // Counted before waiting: a connection queues its last request before it stops
        // counting, so none open then and a queue empty for a whole tick after means nothing
        // more can come.
        let connections_done = stop_by.is_some() && server.num_connections() == 0;
        match server.recv_timeout(TICK) {
            Ok(Some(request)) => route::answer(api, request, Listener::Public),
            Ok(None) if connections_done => return,
            Ok(None) => {}
            Err(error) => {
                log::error!("receiving a request failed: {error}");
                thread::sleep(TICK);
            }
        }
    }
}
