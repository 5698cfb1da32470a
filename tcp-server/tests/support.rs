//! A real server on 127.0.0.1:0 over the real database, and a blocking protocol client.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use proto::{Request, Response};
use service::Shutdown;
use tcp_server::ops::Context;
use tcp_server::password::PasswordParams;
use tcp_server::server::{self, Listeners, ServerConfig};
pub use testkit::{FAST, PEPPER, database_url, unique_name};

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

    pub fn start_config(config: ServerConfig, ctx: Context) -> Self {
        let listeners = Listeners {
            protocol: TcpListener::bind("127.0.0.1:0").unwrap(),
            admin: TcpListener::bind("127.0.0.1:0").unwrap(),
        };
        let addr = listeners.protocol.local_addr().unwrap();
        let admin = listeners.admin.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let thread = thread::spawn(move || server::run(listeners, &config, Arc::new(ctx), stop));
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
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !thread.is_finished() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the server did not stop"
                );
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

/// A protocol client over one connection.
pub struct Client {
    pub stream: TcpStream,
    next_id: u32,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            stream,
            next_id: 1,
            read_buf: Vec::new(),
            write_buf: Vec::new(),
        }
    }

    /// Sends a request and reads its response, checking the echoed request id.
    pub fn call(&mut self, request: Request) -> Response {
        let id = self.next_id;
        self.next_id += 1;
        proto::write_frame(&mut self.stream, id, &request, &mut self.write_buf).unwrap();
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

    /// Whether the server has closed the connection (reads end of stream).
    pub fn is_closed_by_server(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            std::io::Read::read(&mut self.stream, &mut byte),
            Ok(0) | Err(_)
        )
    }
}
