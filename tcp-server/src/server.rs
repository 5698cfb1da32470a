//! The server: an acceptor hands each connection through a channel to one of a fixed set of
//! worker threads, which serves its requests one after another. The acceptor counts the
//! connections handed over and not yet finished, in all and per peer address; at either bound
//! (one per worker; `max_per_peer` for one address) a new connection gets a `Busy` error frame
//! and is closed at once, so the process never grows threads, no client hangs silently, and no
//! one peer can take every worker. A connection is served only after the tier handshake
//! (PROTOCOL.md): anything else first is answered `Unauthenticated` and the connection closed,
//! and a peer that does not finish the handshake within `handshake_timeout` is dropped. With
//! `tls` set, every connection is TLS with a client certificate (`service::link`) beneath
//! the same protocol.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Write};
use std::net::{IpAddr, Shutdown as SocketShutdown, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TrySendError};
use parking_lot::Mutex;
use proto::{
    Challenge, ErrorCode, ErrorReply, NONCE_LEN, ReadError, Request, Response, TierKey, Trace,
};
use service::Shutdown;
use service::link::{Deadline, Link, ServerTls};

use crate::admin;
use crate::ops::{self, Context};

/// How often a worker waiting for the next request looks at the shutdown flag and the idle
/// clock.
const TICK: Duration = Duration::from_millis(200);

/// Settings of the server loop.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Worker threads, and so the most connections served at once.
    pub workers: usize,
    /// The most connections one peer address may hold at once.
    pub max_per_peer: usize,
    /// The longest a new connection may take to finish the tier handshake.
    pub handshake_timeout: Duration,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// The longest a frame may take to arrive, or a response to be written.
    pub io_timeout: Duration,
    /// The largest frame accepted.
    pub max_frame_len: u32,
    /// TLS for every connection (`--tier-tls`), or none.
    pub tls: Option<ServerTls>,
}

impl ServerConfig {
    /// The defaults, which the command line shares.
    pub const DEFAULT: ServerConfig = ServerConfig {
        workers: 256,
        max_per_peer: 64,
        handshake_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        io_timeout: Duration::from_secs(10),
        max_frame_len: proto::DEFAULT_MAX_FRAME_LEN,
        tls: None,
    };
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig::DEFAULT
    }
}

/// The two listeners: the protocol's (http-server's connections) and the operator's (metrics
/// and health checks over HTTP; keep it on loopback or a private network).
pub struct Listeners {
    /// The protocol listener.
    pub protocol: TcpListener,
    /// The admin listener.
    pub admin: TcpListener,
}

/// How often the janitor forgets revocations of sessions that have expired anyway and removes
/// deleted accounts past their cooling-off period.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Serves until `shutdown` is triggered, then returns once every worker has finished: the
/// protocol on its listener, the metrics on the admin listener, and the janitor that keeps the
/// revocation table small and frees the names of deleted accounts.
pub fn run(
    listeners: Listeners,
    config: &ServerConfig,
    ctx: Arc<Context>,
    tier_key: TierKey,
    shutdown: Shutdown,
) -> io::Result<()> {
    let listener = listeners.protocol;
    let address = listener.local_addr()?;
    // Below the bound some worker is free or just finishing, so a queued connection waits
    // microseconds; the capacity equals the bound, so a send never blocks the acceptor.
    let (handoff, connections) = crossbeam_channel::bounded::<Accepted>(config.workers);
    let peers = Arc::new(Peers::default());
    let tier_key = Arc::new(tier_key);
    let mut threads = Vec::with_capacity(config.workers + 3);
    for index in 0..config.workers {
        let (peers, tier_key) = (Arc::clone(&peers), Arc::clone(&tier_key));
        let (connections, config, ctx, shutdown) = (
            connections.clone(),
            config.clone(),
            Arc::clone(&ctx),
            shutdown.clone(),
        );
        threads.push(
            thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || {
                    let worker = Worker {
                        config: &config,
                        ctx: &ctx,
                        tier_key: &tier_key,
                        peers: &peers,
                        shutdown: &shutdown,
                    };
                    work(&connections, &worker);
                })?,
        );
    }
    threads.push(admin::start(
        listeners.admin,
        Arc::clone(&ctx),
        shutdown.clone(),
    )?);
    let (janitor, stop) = (Arc::clone(&ctx), shutdown.clone());
    threads.push(
        thread::Builder::new()
            .name("janitor".to_owned())
            .spawn(move || {
                while !stop.wait_timeout(PRUNE_EVERY) {
                    match ops::prune_revocations(&janitor) {
                        Ok(0) => {}
                        Ok(pruned) => log::info!("pruned {pruned} expired session revocations"),
                        Err(error) => log::warn!("pruning session revocations: {error}"),
                    }
                    match ops::purge_deleted(&janitor) {
                        Ok(0) => {}
                        Ok(purged) => log::info!(
                            "removed {purged} deleted accounts past their cooling-off period"
                        ),
                        Err(error) => log::warn!("removing deleted accounts: {error}"),
                    }
                }
            })?,
    );
    // The acceptor blocks in `accept`: once the stop is requested, a connection to itself
    // wakes it to see that.
    let waker = shutdown.clone();
    threads.push(
        thread::Builder::new()
            .name("waker".to_owned())
            .spawn(move || {
                waker.wait();
                let _ = TcpStream::connect_timeout(&address, Duration::from_secs(1));
            })?,
    );
    log::info!("serving on {address} with {} workers", config.workers);
    accept(&listener, &handoff, config, &ctx, &peers, &shutdown);
    // Closed before the drain, so a connection arriving now is refused by the kernel instead
    // of being completed and never served.
    drop(listener);
    drop(handoff);
    for thread in threads {
        if thread.join().is_err() {
            log::error!("a server thread panicked");
        }
    }
    log::info!("stopped");
    Ok(())
}

/// A connection handed to a worker, with the peer address it counts against.
struct Accepted {
    stream: TcpStream,
    peer: IpAddr,
}

/// Connections held per peer address. Added to by the acceptor only, taken from by the worker
/// that finishes a connection.
#[derive(Default)]
struct Peers(Mutex<HashMap<IpAddr, usize>>);

impl Peers {
    /// Counts one more connection of `peer`, unless it holds `max` already.
    fn admit(&self, peer: IpAddr, max: usize) -> bool {
        let mut held = self.0.lock();
        let count = held.entry(peer).or_insert(0);
        if *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    fn release(&self, peer: IpAddr) {
        let mut held = self.0.lock();
        if let Some(count) = held.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                held.remove(&peer);
            }
        }
    }
}

/// What a worker serves connections with.
struct Worker<'a> {
    config: &'a ServerConfig,
    ctx: &'a Context,
    tier_key: &'a TierKey,
    peers: &'a Peers,
    shutdown: &'a Shutdown,
}

fn accept(
    listener: &TcpListener,
    handoff: &crossbeam_channel::Sender<Accepted>,
    config: &ServerConfig,
    ctx: &Context,
    peers: &Peers,
    shutdown: &Shutdown,
) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok((stream, peer)) => (stream, peer.ip()),
            // Out of file descriptors and the like: back off instead of spinning, keep serving.
            Err(error) => {
                log::warn!("accept failed: {error}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if shutdown.requested() {
            return;
        }
        if let Err(error) = configure(&stream, config) {
            log::debug!("dropping a connection that cannot be configured: {error}");
            continue;
        }
        // Only this thread adds to the count, so checking then adding cannot overshoot.
        let active = ctx.metrics.connections_active.get();
        if active >= config.workers as i64 {
            ctx.metrics.connections_refused.inc();
            refuse_busy(stream, config, "the server is at its connection limit");
            continue;
        }
        // One peer (a stray client, a misconfigured http-server) cannot take every worker.
        if !peers.admit(peer, config.max_per_peer) {
            ctx.metrics.connections_refused.inc();
            log::debug!("refused a connection from {peer}: at its share of the workers");
            refuse_busy(
                stream,
                config,
                "this peer holds its share of the server's connections",
            );
            continue;
        }
        ctx.metrics.connections_active.inc();
        match handoff.try_send(Accepted { stream, peer }) {
            Ok(()) => {
                ctx.metrics.connections_accepted.inc();
            }
            Err(TrySendError::Full(accepted) | TrySendError::Disconnected(accepted)) => {
                ctx.metrics.connections_active.dec();
                peers.release(peer);
                refuse_busy(
                    accepted.stream,
                    config,
                    "the server is at its connection limit",
                );
            }
        }
    }
}

fn configure(stream: &TcpStream, config: &ServerConfig) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(config.io_timeout))?;
    stream.set_read_timeout(Some(TICK))
}

/// Tells a client past the connection bound to come back later, without ever blocking the
/// acceptor: a fresh socket's send buffer takes the small frame at once. Over TLS the frame
/// would need a TLS handshake first, which the acceptor must not wait for: the connection is
/// just closed, and http-server takes a new connection closed inside its TLS handshake for
/// this refusal (503 `backend_busy`).
fn refuse_busy(mut stream: TcpStream, config: &ServerConfig, message: &str) {
    if config.tls.is_some() {
        let _ = stream.shutdown(SocketShutdown::Both);
        return;
    }
    let reply = Response::Error(ErrorReply {
        code: ErrorCode::Busy,
        retry_after_ms: 100,
        message: message.to_owned(),
    });
    let mut frame = Vec::new();
    if proto::encode(0, &Trace::NONE, &reply, &mut frame).is_ok() {
        let _ = stream.set_nonblocking(true);
        let _ = stream.write_all(&frame);
    }
    let _ = stream.shutdown(SocketShutdown::Both);
}

fn work(connections: &Receiver<Accepted>, worker: &Worker<'_>) {
    while let Ok(Accepted { stream, peer }) = connections.recv() {
        // A panic outside `answer` would otherwise end this worker and leak its place in the
        // connection count; the connection is dropped instead.
        if catch_unwind(AssertUnwindSafe(|| serve(stream, worker))).is_err() {
            log::error!("a connection's handling panicked; the connection was closed");
        }
        // Counted up by the acceptor when it handed the connection over.
        worker.ctx.metrics.connections_active.dec();
        worker.peers.release(peer);
    }
}

/// Where a connection stands in the tier handshake (PROTOCOL.md, "The tier handshake").
enum Handshake {
    /// Nothing yet: only `Hello` is answered.
    Start,
    /// `Hello` answered with these nonces: only `Authenticate` is answered.
    Challenged {
        client: Vec<u8>,
        server: [u8; NONCE_LEN],
    },
    /// Proven: requests are served.
    Done,
}

/// Answers one frame of the handshake, or refuses the connection (`Unauthenticated`).
fn handshake_step(
    tier_key: &TierKey,
    state: &mut Handshake,
    message: Request,
) -> Result<Response, ErrorReply> {
    let refuse = |message: String| ErrorReply::new(ErrorCode::Unauthenticated, message);
    match (std::mem::replace(state, Handshake::Start), message) {
        (Handshake::Start, Request::Hello(hello)) => {
            // The ids are derived from the keys and name them without revealing them; saying
            // ours tells an operator which side holds the wrong file.
            if hello.key_id != tier_key.id() {
                return Err(refuse(format!(
                    "tier key {:?} is not this server's ({})",
                    hello.key_id,
                    tier_key.id()
                )));
            }
            if hello.nonce.len() != NONCE_LEN {
                return Err(refuse(format!("a Hello's nonce is {NONCE_LEN} bytes")));
            }
            let mut server = [0u8; NONCE_LEN];
            getrandom::fill(&mut server)
                .map_err(|error| ErrorReply::new(ErrorCode::Internal, error.to_string()))?;
            let proof = tier_key.server_proof(&hello.nonce, &server);
            *state = Handshake::Challenged {
                client: hello.nonce,
                server,
            };
            Ok(Response::Hello(Challenge {
                nonce: server.to_vec(),
                proof,
            }))
        }
        (Handshake::Challenged { client, server }, Request::Authenticate(authenticate)) => {
            if tier_key.verify_client_proof(&client, &server, &authenticate.proof) {
                *state = Handshake::Done;
                Ok(Response::Authenticate(()))
            } else {
                Err(refuse(
                    "wrong proof: this peer does not hold the tier key".to_owned(),
                ))
            }
        }
        (_, message) => Err(refuse(format!(
            "{} before the tier handshake: send Hello, then Authenticate",
            message.name()
        ))),
    }
}

/// Answers a request. A panic in an operation (a bug, or an image codec meeting hostile bytes)
/// is answered with `Internal`, and the connection and the process carry on.
fn answer(ctx: &Context, request: Request) -> Response {
    catch_unwind(AssertUnwindSafe(|| ops::handle(ctx, request))).unwrap_or_else(|_| {
        log::error!("an operation panicked; answered Internal");
        Response::Error(ErrorReply::new(ErrorCode::Internal, "internal error"))
    })
}

/// Serves one connection's requests in order until it closes, idles out, breaks the protocol
/// or the server stops.
fn serve(stream: TcpStream, worker: &Worker<'_>) {
    let Worker {
        config,
        ctx,
        shutdown,
        ..
    } = *worker;
    let Ok(mut link) = Link::accept(stream, config.tls.as_ref()) else {
        return;
    };
    let mut read_buf = Vec::new();
    let mut write_buf = Vec::new();
    let accepted = Instant::now();
    let mut last_request = accepted;
    let mut handshake = Handshake::Start;
    loop {
        // Wait for the first bytes of the next request with the short tick timeout, so the stop
        // flag and the idle clock are looked at while nothing happens.
        match link.wait_for_bytes() {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                // A peer that has not authenticated holds a worker for a short while only.
                let unproven = !matches!(handshake, Handshake::Done)
                    && accepted.elapsed() >= config.handshake_timeout;
                if shutdown.requested() || unproven || last_request.elapsed() >= config.idle_timeout
                {
                    return;
                }
                continue;
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        // A request is arriving: all of it must arrive within the I/O timeout, and a TLS
        // handshake (which comes first) within the handshake timeout from the accept.
        let mut deadline = Instant::now() + config.io_timeout;
        if link.tls_handshaking() {
            deadline = deadline.min(accepted + config.handshake_timeout);
        }
        let mut reader = Deadline::until(&mut link, deadline);
        let frame =
            proto::read_frame::<_, Request>(&mut reader, &mut read_buf, config.max_frame_len);
        drop(reader);
        let frame = match frame {
            Ok(frame) => frame,
            Err(ReadError::Decode(error)) => {
                ctx.metrics.protocol_errors.inc();
                log::debug!("closing a connection after an invalid frame: {error}");
                let reply = Response::Error(ErrorReply::new(error.reply_code(), error.to_string()));
                let _ = proto::write_frame(
                    &mut Deadline::after(&mut link, config.io_timeout),
                    error.request_id().unwrap_or(0),
                    &Trace::NONE,
                    &reply,
                    &mut write_buf,
                );
                return;
            }
            Err(error) if link.tls_handshaking() => {
                // No certificate, one of another CA, not TLS at all, too slow: refused before
                // anything.
                ctx.metrics.unauthenticated.inc();
                log::debug!("closing a connection whose TLS handshake failed: {error}");
                return;
            }
            Err(ReadError::Closed | ReadError::Idle | ReadError::Io(_)) => return,
            Err(error) => {
                log::debug!("closing a connection: {error}");
                return;
            }
        };
        if !matches!(handshake, Handshake::Done) {
            let (name, started) = (frame.message.name(), Instant::now());
            // Only the handshake's own steps are counted as requests: an operation refused
            // before it is not one (it is counted in `unauthenticated`).
            let counted = matches!(frame.message, Request::Hello(_) | Request::Authenticate(_));
            let step = handshake_step(worker.tier_key, &mut handshake, frame.message);
            if counted {
                ctx.metrics.record(name, started.elapsed(), step.is_err());
            }
            let (reply, close) = match step {
                Ok(reply) => (reply, false),
                Err(refusal) => {
                    ctx.metrics.unauthenticated.inc();
                    log::debug!("closing an unauthenticated connection: {}", refusal.message);
                    (Response::Error(refusal), true)
                }
            };
            let sent = proto::write_frame(
                &mut Deadline::after(&mut link, config.io_timeout),
                frame.request_id,
                &Trace::NONE,
                &reply,
                &mut write_buf,
            );
            if close || sent.is_err() || link.set_idle_read_timeout(TICK).is_err() {
                return;
            }
            last_request = Instant::now();
            continue;
        }
        let started = Instant::now();
        let name = frame.message.name();
        // Every line logged while answering carries the request's id (http-server's
        // X-Request-Id), the one its log lines carry too.
        let _request = (!frame.trace.is_empty())
            .then(|| service::logging::request_scope(frame.trace.as_str()));
        let response = answer(ctx, frame.message);
        let took = started.elapsed();
        let failed = matches!(response, Response::Error(_));
        ctx.metrics.record(name, took, failed);
        match &response {
            Response::Error(reply) => log::debug!(
                "{name}: {:?} in {:.2} ms",
                reply.code,
                took.as_secs_f64() * 1000.0
            ),
            _ => log::debug!("{name}: ok in {:.2} ms", took.as_secs_f64() * 1000.0),
        }
        let sent = proto::write_frame(
            &mut Deadline::after(&mut link, config.io_timeout),
            frame.request_id,
            &frame.trace,
            &response,
            &mut write_buf,
        );
        if sent.is_err() {
            return;
        }
        // The request in flight is answered; a connection that is never quiet must not keep a
        // stop waiting.
        if shutdown.requested() {
            return;
        }
        last_request = Instant::now();
        if link.set_idle_read_timeout(TICK).is_err() {
            return;
        }
    }
}
