//! The server: an acceptor hands each connection through a channel to one of a fixed set of
//! worker threads, which serves its requests one after another. The acceptor counts the
//! connections handed over and not yet finished; at the bound (one per worker) a new connection
//! gets a `Busy` error frame and is closed at once, so the process never grows threads and no
//! client hangs silently.

use std::io::{self, ErrorKind, Write};
use std::net::{Shutdown as SocketShutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TrySendError};
use proto::{Deadline, ErrorCode, ErrorReply, ReadError, Request, Response};

use crate::ops::{self, Context};

/// How often a worker waiting for the next request looks at the shutdown flag and the idle
/// clock.
const TICK: Duration = Duration::from_millis(200);

/// Settings of the server loop.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Worker threads, and so the most connections served at once.
    pub workers: usize,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// The longest a frame may take to arrive, or a response to be written.
    pub io_timeout: Duration,
    /// The largest frame accepted.
    pub max_frame_len: u32,
}

/// Asks a running server to stop: it stops accepting, lets every worker finish the request it
/// is serving, closes the connections and returns.
#[derive(Clone)]
pub struct Shutdown {
    requested: Arc<AtomicBool>,
    wake: SocketAddr,
}

impl Shutdown {
    /// A handle for the server listening on `listener`.
    pub fn new(listener: &TcpListener) -> io::Result<Self> {
        Ok(Shutdown {
            requested: Arc::new(AtomicBool::new(false)),
            wake: listener.local_addr()?,
        })
    }

    /// The flag a signal handler sets (see `signal_hook::flag::register`).
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.requested)
    }

    /// Requests the stop, and wakes the acceptor.
    pub fn trigger(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.wake_acceptor();
    }

    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// The acceptor blocks in `accept`; a connection to itself wakes it to see the flag.
    pub fn wake_acceptor(&self) {
        let _ = TcpStream::connect_timeout(&self.wake, Duration::from_secs(1));
    }
}

/// Serves until `shutdown` is triggered, then returns once every worker has finished.
pub fn run(
    listener: TcpListener,
    config: ServerConfig,
    ctx: Arc<Context>,
    shutdown: Shutdown,
) -> io::Result<()> {
    // Below the bound some worker is free or just finishing, so a queued connection waits
    // microseconds; the capacity equals the bound, so a send never blocks the acceptor.
    let (handoff, connections) = crossbeam_channel::bounded::<TcpStream>(config.workers);
    let mut workers = Vec::with_capacity(config.workers);
    for index in 0..config.workers {
        let (connections, config, ctx, shutdown) = (
            connections.clone(),
            config.clone(),
            Arc::clone(&ctx),
            shutdown.clone(),
        );
        workers.push(
            thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || work(&connections, &config, &ctx, &shutdown))?,
        );
    }
    log::info!(
        "serving on {} with {} workers",
        listener.local_addr()?,
        config.workers
    );
    accept(&listener, &handoff, &config, &ctx, &shutdown);
    // Closed before the drain, so a connection arriving now is refused by the kernel instead
    // of being completed and never served.
    drop(listener);
    drop(handoff);
    for worker in workers {
        if worker.join().is_err() {
            log::error!("a worker thread panicked");
        }
    }
    log::info!("stopped");
    Ok(())
}

fn accept(
    listener: &TcpListener,
    handoff: &crossbeam_channel::Sender<TcpStream>,
    config: &ServerConfig,
    ctx: &Context,
    shutdown: &Shutdown,
) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _peer)) => stream,
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
        let active = ctx.stats.connections_active.load(Ordering::SeqCst);
        if active >= config.workers as i64 {
            ctx.stats
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            refuse_busy(stream);
            continue;
        }
        ctx.stats.connections_active.fetch_add(1, Ordering::SeqCst);
        match handoff.try_send(stream) {
            Ok(()) => {
                ctx.stats
                    .connections_accepted
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(stream) | TrySendError::Disconnected(stream)) => {
                ctx.stats.connections_active.fetch_sub(1, Ordering::SeqCst);
                refuse_busy(stream);
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
/// acceptor: a fresh socket's send buffer takes the small frame at once.
fn refuse_busy(mut stream: TcpStream) {
    let reply = Response::Error(ErrorReply {
        code: ErrorCode::Busy,
        retry_after_ms: 100,
        message: "the server is at its connection limit".to_owned(),
    });
    let mut frame = Vec::new();
    if proto::encode(0, &reply, &mut frame).is_ok() {
        let _ = stream.set_nonblocking(true);
        let _ = stream.write_all(&frame);
    }
    let _ = stream.shutdown(SocketShutdown::Both);
}

fn work(
    connections: &Receiver<TcpStream>,
    config: &ServerConfig,
    ctx: &Context,
    shutdown: &Shutdown,
) {
    while let Ok(stream) = connections.recv() {
        // A panic outside `answer` would otherwise end this worker and leak its place in the
        // connection count; the connection is dropped instead.
        if catch_unwind(AssertUnwindSafe(|| serve(stream, config, ctx, shutdown))).is_err() {
            log::error!("a connection's handling panicked; the connection was closed");
        }
        // Counted up by the acceptor when it handed the connection over.
        ctx.stats.connections_active.fetch_sub(1, Ordering::SeqCst);
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
fn serve(stream: TcpStream, config: &ServerConfig, ctx: &Context, shutdown: &Shutdown) {
    let mut read_buf = Vec::new();
    let mut write_buf = Vec::new();
    let mut last_request = Instant::now();
    loop {
        // Wait for the first byte of the next request with the short tick timeout, so the stop
        // flag and the idle clock are looked at while nothing happens.
        match stream.peek(&mut [0u8]) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if shutdown.requested() || last_request.elapsed() >= config.idle_timeout {
                    return;
                }
                continue;
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        // A request is arriving: all of it must arrive within the I/O timeout.
        let mut reader = Deadline::after(&stream, config.io_timeout);
        let frame =
            proto::read_frame::<_, Request>(&mut reader, &mut read_buf, config.max_frame_len);
        let frame = match frame {
            Ok(frame) => frame,
            Err(ReadError::Decode(error)) => {
                ctx.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                log::debug!("closing a connection after an invalid frame: {error}");
                let reply = Response::Error(ErrorReply::new(error.reply_code(), error.to_string()));
                let _ = proto::write_frame(
                    &mut Deadline::after(&stream, config.io_timeout),
                    error.request_id().unwrap_or(0),
                    &reply,
                    &mut write_buf,
                );
                return;
            }
            Err(ReadError::Closed | ReadError::Idle | ReadError::Io(_)) => return,
            Err(error) => {
                log::debug!("closing a connection: {error}");
                return;
            }
        };
        let started = Instant::now();
        let kind = frame.message.kind();
        let response = answer(ctx, frame.message);
        let failed = matches!(response, Response::Error(_));
        ctx.stats.record(kind, started.elapsed(), failed);
        let mut writer = Deadline::after(&stream, config.io_timeout);
        if proto::write_frame(&mut writer, frame.request_id, &response, &mut write_buf).is_err() {
            return;
        }
        // The request in flight is answered; a connection that is never quiet must not keep a
        // stop waiting.
        if shutdown.requested() {
            return;
        }
        last_request = Instant::now();
        if stream.set_read_timeout(Some(TICK)).is_err() {
            return;
        }
    }
}
