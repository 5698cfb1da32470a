//! A real server on 127.0.0.1:0 over the real database, and a blocking protocol client.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use postgres::NoTls;
use proto::{Request, Response, Secret};
use service::Shutdown;
use tcp_server::ops::Context;
use tcp_server::password::PasswordParams;
use tcp_server::server::{self, Listeners, ServerConfig};
pub use testkit::{FAST, PEPPER, database_url, eventually, unique_name};

/// A frame header with any field, valid or not.
pub fn header(version: u8, kind: u8, request_id: u32, body_len: u32) -> Vec<u8> {
    let mut bytes = proto::MAGIC.to_vec();
    bytes.push(version);
    bytes.push(kind);
    bytes.extend_from_slice(&request_id.to_be_bytes());
    bytes.extend_from_slice(&body_len.to_be_bytes());
    assert_eq!(bytes.len(), proto::HEADER_LEN);
    bytes
}

/// A database of one test's own on the server of `DATABASE_URL`, migrated; dropped with the
/// guard, sessions still open on it and all.
pub struct FreshDatabase {
    pub url: String,
    name: String,
}

impl FreshDatabase {
    pub fn create() -> FreshDatabase {
        FreshDatabase::with_options("")
    }

    /// A database made with these `CREATE DATABASE` options (a locale, say).
    pub fn with_options(options: &str) -> FreshDatabase {
        let base = database_url();
        let name = unique_name("fresh_");
        postgres::Client::connect(&base, NoTls)
            .expect("connecting to the test database")
            .batch_execute(&format!("CREATE DATABASE {name} {options}"))
            .expect("creating a database for the test");
        let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
        tcp_server::db::migrate(&url).expect("migrating the fresh database");
        FreshDatabase { url, name }
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        // Best effort, also while a failing test unwinds: a database left over is only litter.
        if let Ok(mut admin) = postgres::Client::connect(&database_url(), NoTls) {
            let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            if let Err(error) = admin.batch_execute(&drop) {
                eprintln!("dropping the test database {}: {error}", self.name);
            }
        }
    }
}

/// A context over the test database with the given password parameters and session lifetime.
pub fn context(params: PasswordParams, session_ttl: Duration) -> Context {
    context_for(&database_url(), params, session_ttl)
}

pub fn context_for(url: &str, params: PasswordParams, session_ttl: Duration) -> Context {
    context_sized(url, params, session_ttl, 8)
}

/// A context whose database pool holds at most `pool_size` connections.
pub fn context_sized(
    url: &str,
    params: PasswordParams,
    session_ttl: Duration,
    pool_size: u32,
) -> Context {
    let mut settings = testkit::settings();
    settings.database_url = url.to_owned();
    settings.db.pool_size = pool_size;
    settings.password = params;
    settings.session_ttl = session_ttl;
    testkit::context_with(&settings)
}

/// Server settings for tests, with the default frame limit.
pub fn server_config(workers: usize, idle_timeout: Duration, io_timeout: Duration) -> ServerConfig {
    ServerConfig {
        workers,
        idle_timeout,
        io_timeout,
        ..ServerConfig::DEFAULT
    }
}

/// A server running in this process; stopped and joined on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The admin listener (`/metrics`).
    pub admin: SocketAddr,
    pub shutdown: Shutdown,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub fn start(workers: usize) -> Self {
        Self::start_with(workers, context(FAST, Duration::from_secs(3600)))
    }

    pub fn start_with(workers: usize, ctx: Context) -> Self {
        Self::start_config(
            server_config(workers, Duration::from_secs(30), Duration::from_secs(2)),
            ctx,
        )
    }

    /// A server over a context the test keeps a hand on (to change its secrets while it
    /// serves).
    pub fn start_shared(workers: usize, ctx: Arc<Context>) -> Self {
        Self::start_arc(
            server_config(workers, Duration::from_secs(30), Duration::from_secs(2)),
            ctx,
        )
    }

    pub fn start_config(config: ServerConfig, ctx: Context) -> Self {
        Self::start_arc(config, Arc::new(ctx))
    }

    fn start_arc(config: ServerConfig, ctx: Arc<Context>) -> Self {
        let listeners = Listeners {
            protocol: TcpListener::bind("127.0.0.1:0").unwrap(),
            admin: TcpListener::bind("127.0.0.1:0").unwrap(),
        };
        let addr = listeners.protocol.local_addr().unwrap();
        let admin = listeners.admin.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let thread =
            thread::spawn(move || server::run(listeners, &config, ctx, testkit::tier_key(), stop));
        TestServer {
            addr,
            admin,
            shutdown,
            thread: Some(thread),
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Stops the server and waits for it, failing the test if it does not stop in time.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shutdown.trigger();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !thread.is_finished() {
                assert!(Instant::now() < deadline, "the server did not stop");
                thread::sleep(Duration::from_millis(10));
            }
            thread.join().unwrap().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if !thread::panicking() {
            self.stop_and_join();
        }
    }
}

/// A raw stream to `addr` that has made the tier handshake with the test tier key, for tests
/// that write frames themselves.
pub fn authenticated_stream(addr: SocketAddr) -> TcpStream {
    Client::connect(addr).stream
}

/// A protocol client over one connection.
pub struct Client {
    pub stream: TcpStream,
    next_id: u32,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
}

impl Client {
    /// A connection that has made the tier handshake with the test tier key.
    pub fn connect(addr: SocketAddr) -> Self {
        let mut client = Client::connect_unauthenticated(addr);
        client.handshake(&testkit::tier_key()).unwrap();
        client
    }

    /// A connection that has not made the tier handshake.
    pub fn connect_unauthenticated(addr: SocketAddr) -> Self {
        Client::from_stream(TcpStream::connect(addr).unwrap())
    }

    /// A client over a connected stream that has not made the tier handshake.
    pub fn from_stream(stream: TcpStream) -> Self {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        Client {
            stream,
            next_id: 3,
            read_buf: Vec::new(),
            write_buf: Vec::new(),
        }
    }

    /// The tier handshake with `key` (request ids 1 and 2).
    pub fn handshake(&mut self, key: &proto::TierKey) -> Result<(), proto::HandshakeError> {
        let mut nonce = [0u8; proto::NONCE_LEN];
        nonce.fill_with(|| fastrand::u8(..));
        proto::handshake(
            &mut self.stream,
            key,
            nonce,
            &mut self.read_buf,
            proto::DEFAULT_MAX_FRAME_LEN,
        )
    }

    /// Sends a request and reads its response, checking the echoed request id.
    pub fn call(&mut self, request: Request) -> Response {
        let id = self.next_id;
        self.next_id += 1;
        proto::write_frame(
            &mut self.stream,
            id,
            &proto::Trace::NONE,
            &request,
            &mut self.write_buf,
        )
        .unwrap();
        let frame = self.read();
        assert_eq!(frame.request_id, id, "response out of step");
        frame.message
    }

    pub fn read(&mut self) -> proto::Frame<Response> {
        proto::read_frame(
            &mut self.stream,
            &mut self.read_buf,
            proto::DEFAULT_MAX_FRAME_LEN,
        )
        .unwrap()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Waits up to [`CLOSE_WITHIN`] for the server to close the connection, and fails the test
    /// with what it did instead: kept it open and silent (a hang), or sent more bytes.
    pub fn assert_closed_by_server(&mut self) {
        match self.ending(CLOSE_WITHIN) {
            Ending::Closed => {}
            Ending::Silent => panic!(
                "the server neither closed the connection nor sent anything within \
                 {CLOSE_WITHIN:?}: it hangs"
            ),
            Ending::Sent(bytes) => {
                panic!("the server sent more bytes instead of closing the connection: {bytes:02x?}")
            }
        }
    }

    /// What the server does with the connection within `within`: closes it (end of stream or a
    /// reset), sends bytes, or neither.
    pub fn ending(&mut self, within: Duration) -> Ending {
        let deadline = Instant::now() + within;
        let mut bytes = [0u8; 64];
        let ending = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Ending::Silent;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut bytes) {
                Ok(0) => break Ending::Closed,
                Ok(n) => break Ending::Sent(bytes[..n].to_vec()),
                Err(error) => match error.kind() {
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
                        break Ending::Closed;
                    }
                    // A timeout: the loop sees whether the deadline has passed.
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted => {}
                    _ => panic!("reading from the server: {error}"),
                },
            }
        };
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        ending
    }
}

/// How long [`Client::assert_closed_by_server`] waits: far past any close the server makes at
/// once, and far below the read timeout a hang would otherwise hide behind.
pub const CLOSE_WITHIN: Duration = Duration::from_secs(3);

/// A [`Client`]'s read timeout: the longest any answer may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What a server did with a connection a test watched ([`Client::ending`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// End of stream, or a reset.
    Closed,
    /// Nothing at all: the connection is open and the server silent.
    Silent,
    /// These bytes (the first of them).
    Sent(Vec<u8>),
}

/// A `Register` request.
pub fn register(name: &str, password: &str, nickname: Option<&str>) -> Request {
    Request::Register(proto::Register {
        username: name.to_owned(),
        password: Secret::new(password),
        nickname: nickname.map(str::to_owned),
        client: None,
    })
}

/// A `Login` request with no client address and no device token.
pub fn login(name: &str, password: &str) -> Request {
    Request::Login(proto::Login {
        username: name.to_owned(),
        password: Secret::new(password),
        client: None,
        device: None,
    })
}
