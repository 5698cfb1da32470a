//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use client::ClientConnection;
use connection::Connection;
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use request::{ReadWrite, Request, PRE_READ_LIMIT};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;

mod client;
mod common;
mod connection;
mod request;
mod response;
mod test;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // gatehouse patch: the open connections, for a graceful stop (see `close_connections`).
    connections: Arc<Connections>,
}

/// gatehouse patch: every open connection's socket (a clone), so a graceful stop can end the
/// reading side of idle keep-alive connections at once instead of after their idle timeout.
#[derive(Default)]
struct Connections {
    closing: AtomicBool,
    open: std::sync::Mutex<(u64, std::collections::HashMap<u64, Connection>)>,
}

impl Connections {
    /// Registers a connection; `None` when the server is already closing.
    fn add(&self, socket: Connection) -> Option<u64> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if self.closing.load(Relaxed) {
            let _ = socket.shutdown(Shutdown::Read);
            return None;
        }
        open.0 += 1;
        let id = open.0;
        open.1.insert(id, socket);
        Some(id)
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .remove(&id);
    }
}

/// gatehouse patch: a registered connection, removed from the registry when dropped: after
/// its thread ends, if that thread panics, or if it never starts (a failed spawn).
struct Registered {
    id: u64,
    connections: Arc<Connections>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.connections.remove(self.id);
    }
}

enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// Makes sure that `Server` is `Send` and `Sync`; gatehouse patch: was an unused trait
// implemented for `Server`, which the compiler reported as dead code.
const _: () = {
    const fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Server>();
};

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// Must be `None`: gatehouse patch: this fork has no TLS support, and a server built with
    /// `Some` fails with an error. Kept so the API stays tiny_http 0.12's.
    pub ssl: Option<SslConfig>,
}

/// Configuration of the server for SSL: gatehouse patch: unused, this fork has no TLS support
/// (see [`ServerConfig::ssl`]).
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    ///
    /// `ssl_config` must be `None` (gatehouse patch: this fork has no TLS support).
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        // gatehouse patch: the TLS support (features `ssl-openssl`, `ssl-rustls`) is removed.
        if ssl_config.is_some() {
            return Err("this fork of tiny_http has no TLS support".into());
        }
        let listener = listener.into();
        // building the "close" variable
        let close_trigger = Arc::new(AtomicBool::new(false));

        // building the TcpListener
        let (server, local_addr) = {
            let local_addr = listener.local_addr()?;
            log::debug!("Server listening on {}", local_addr);
            (listener, local_addr)
        };

        // creating a task where server.accept() is continuously called
        // and ClientConnection objects are pushed in the messages queue
        let messages = MessagesQueue::with_capacity(8);

        let inside_close_trigger = close_trigger.clone();
        let inside_messages = messages.clone();
        let connections = Arc::new(Connections::default());
        let inside_connections = Arc::clone(&connections);
        thread::spawn(move || {
            // a tasks pool is used to dispatch the connections into threads
            let tasks_pool = util::TaskPool::new();

            log::debug!("Running accept thread");
            while !inside_close_trigger.load(Relaxed) {
                // gatehouse patch: an accept error (running out of file descriptors, a
                // connection reset before it was accepted) used to end this loop for good. Now
                // it is logged, the loop backs off briefly so it does not spin, and goes on.
                let sock = match server.accept() {
                    Ok((sock, _)) => sock,
                    // The listening socket was shut down (`shutdown(2)`): the owner has asked
                    // to stop accepting.
                    Err(e) if e.kind() == IoErrorKind::InvalidInput => break,
                    // The listening socket carries a receive timeout for the sockets it accepts
                    // to inherit (their idle timeout), and `accept` obeys it too: no client
                    // came within it, which on an idle server is no error at all.
                    Err(e)
                        if matches!(e.kind(), IoErrorKind::WouldBlock | IoErrorKind::TimedOut) =>
                    {
                        continue;
                    }
                    // A client that gave up before its connection was accepted.
                    Err(e) if e.kind() == IoErrorKind::ConnectionAborted => {
                        log::debug!("a client left before it was accepted: {}", e);
                        continue;
                    }
                    Err(e) => {
                        log::error!("Error accepting new client: {}", e);
                        thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                };
                use util::RefinedTcpStream;
                let registration = sock.try_clone().ok();
                let body_deadline = sock.read_timeout();
                let (read_closable, write_closable) = match RefinedTcpStream::new(sock) {
                    Ok(streams) => streams,
                    Err(e) => {
                        log::error!("Error setting up a new client: {}", e);
                        thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                };
                let mut client = ClientConnection::new(write_closable, read_closable);
                client.body_deadline = body_deadline;
                let messages = inside_messages.clone();
                // gatehouse patch: registered for a graceful stop; a clone that cannot be had
                // only means this connection closes at its idle timeout instead.
                let connections = Arc::clone(&inside_connections);
                let mut registered =
                    registration
                        .and_then(|socket| connections.add(socket))
                        .map(|id| Registered {
                            id,
                            connections: Arc::clone(&connections),
                        });
                let mut client = Some(client);
                tasks_pool.spawn(Box::new(move || {
                    if let Some(client) = client.take() {
                        // gatehouse patch: plain connections queued every pipelined request at
                        // once, and each worker's answer then waited for the earlier ones on
                        // that connection, so one client pipelining behind a slow request could
                        // park every worker. Now every connection has one request in flight.
                        // The wait for the previous answer comes after the next request head
                        // is read, so a client that waits for its answers (all but a
                        // pipelining one) finds it done and costs no extra wake-up.
                        let (sender, receiver) = mpsc::channel();
                        let mut in_flight = false;
                        for rq in client {
                            if in_flight && receiver.recv().is_err() {
                                break;
                            }
                            // gatehouse patch: once the server is closing, the request read
                            // last is answered with `Connection: close` and nothing more is
                            // read, so a client never sends into a connection about to close.
                            let closing = connections.closing.load(Relaxed);
                            let rq = rq.with_notify_sender(sender.clone());
                            let rq = if closing {
                                rq.with_connection_close()
                            } else {
                                rq
                            };
                            messages.push(rq.into());
                            in_flight = true;
                            if closing {
                                break;
                            }
                        }
                    }
                    drop(registered.take());
                }));
            }
            log::debug!("Terminating accept thread");
        });

        // result
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
            connections,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of connections still reading requests (gatehouse patch: was
    /// `unimplemented!()`). A connection whose last request is being answered no longer counts.
    pub fn num_connections(&self) -> usize {
        self.connections
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .len()
    }

    /// gatehouse patch: starts a graceful stop of the open connections: each request read
    /// from now on is its connection's last, answered with `Connection: close`. Connections
    /// accepted later are not read. Stop accepting first (shut the listening socket down),
    /// then give busy clients a moment to send their next request before
    /// [`Server::close_idle_connections`].
    pub fn close_connections(&self) {
        let _open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.connections.closing.store(true, Relaxed);
    }

    /// gatehouse patch: shuts the reading side of every connection still open, so idle
    /// keep-alive connections end now instead of at their idle timeout. A request already
    /// received in full (in the socket's buffer) is still read and answered.
    pub fn close_idle_connections(&self) {
        let open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.connections.closing.store(true, Relaxed);
        for socket in open.1.values() {
            let _ = socket.shutdown(Shutdown::Read);
        }
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::other("thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close.store(true, Relaxed);
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
