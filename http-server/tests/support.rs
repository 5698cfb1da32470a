//! The real stack in this process: tcp-server over the real test database, http-server in front
//! of it, and an HTTP client that treats every status as an answer.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use http_server::{BackendConfig, Config, Listen, Listeners, Shutdown};
use serde_json::Value;
use tcp_server::ops::Context;
use tcp_server::password::PasswordParams;
use tcp_server::server::{self, ServerConfig};
use tcp_server::throttle::ThrottleConfig;
pub use testkit::{eventually, unique_name};

/// The pepper of the backends' context: tests that forge tokens derive the signing key from
/// it. (A forged token that is accepted proves the two still agree.)
pub const TEST_PEPPER: &[u8] = testkit::PEPPER;

/// Argon2 parameters that make a verification cost milliseconds (the other tests' cost
/// microseconds), so one skipped for unknown users would stand out of the request's latency.
pub const REALISTIC: PasswordParams = PasswordParams {
    memory_kib: 8 * 1024,
    iterations: 2,
    parallelism: 1,
};

/// The longest a test waits for one answer.
pub const WAIT: Duration = Duration::from_secs(10);

/// A backend's context over the test database, with a pool of 4.
fn context() -> Context {
    let mut settings = testkit::settings();
    settings.db.pool_size = 4;
    testkit::context_with(&settings)
}

/// A context with another pepper, password cost and session lifetime: for a backend after a
/// pepper change, one whose hashing costs what production's does, or sessions that expire soon.
pub fn context_with(pepper: &[u8], params: PasswordParams, session_ttl: Duration) -> Context {
    let mut settings = testkit::settings();
    settings.db.pool_size = 4;
    settings.password = params;
    settings.session_ttl = session_ttl;
    Context::new(&settings, &testkit::secrets_with(pepper)).unwrap()
}

/// A tcp-server in this process; stopped on drop.
pub struct Backend {
    pub addr: SocketAddr,
    /// Its admin listener (its `/metrics`).
    pub admin: SocketAddr,
    shutdown: Shutdown,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Backend {
    pub fn start() -> Backend {
        Backend::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), 16)
    }

    /// A backend on `addr`, which must be free (for a backend that comes up late).
    pub fn start_at(addr: SocketAddr) -> Backend {
        Backend::start_on(TcpListener::bind(addr).unwrap(), 16)
    }

    /// A backend that serves at most `workers` connections at once.
    pub fn start_on(listener: TcpListener, workers: usize) -> Backend {
        Backend::start_serving(listener, workers, context())
    }

    /// A backend over `ctx` (see [`context_with`]).
    pub fn start_with_context(ctx: Context) -> Backend {
        Backend::start_serving(TcpListener::bind("127.0.0.1:0").unwrap(), 16, ctx)
    }

    /// A backend with these throttle limits (the others have `open_throttle()`).
    pub fn start_with_throttle(throttle: &ThrottleConfig) -> Backend {
        let mut settings = testkit::settings();
        settings.db.pool_size = 4;
        settings.throttle = throttle.clone();
        Backend::start_with_context(testkit::context_with(&settings))
    }

    /// A backend whose pepper is `pepper`: its password hashes and tokens are not the others'.
    pub fn start_with_pepper(pepper: &[u8]) -> Backend {
        let params = PasswordParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        Backend::start_with_context(context_with(pepper, params, Duration::from_secs(3600)))
    }

    /// A backend that speaks only TLS (`--tier-tls`), serving `workers` connections at most.
    pub fn start_tls(tls: service::link::ServerTls, workers: usize) -> Backend {
        Backend::start_configured(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            workers,
            context(),
            Some(tls),
        )
    }

    fn start_serving(listener: TcpListener, workers: usize, ctx: Context) -> Backend {
        Backend::start_configured(listener, workers, ctx, None)
    }

    fn start_configured(
        listener: TcpListener,
        workers: usize,
        ctx: Context,
        tls: Option<service::link::ServerTls>,
    ) -> Backend {
        let addr = listener.local_addr().unwrap();
        let listeners = server::Listeners {
            protocol: listener,
            admin: TcpListener::bind("127.0.0.1:0").unwrap(),
        };
        let admin = listeners.admin.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let config = ServerConfig {
            workers,
            idle_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(2),
            tls,
            ..ServerConfig::DEFAULT
        };
        let ctx = Arc::new(ctx);
        let thread =
            thread::spawn(move || server::run(listeners, &config, ctx, testkit::tier_key(), stop));
        Backend {
            addr,
            admin,
            shutdown,
            thread: Some(thread),
        }
    }

    /// Stops the backend and waits until it no longer accepts connections.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shutdown.trigger();
            join_within(thread, Duration::from_secs(10), "the backend");
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if !thread::panicking() {
            self.stop_and_join();
        }
    }
}

/// Waits for a server thread to return `Ok`, failing the test if it takes over `limit`.
fn join_within(thread: JoinHandle<std::io::Result<()>>, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    while !thread.is_finished() {
        assert!(
            Instant::now() < deadline,
            "{what} did not stop in {limit:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    thread.join().unwrap().unwrap();
}

/// A free loopback address (bound, then released).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Front-end settings for tests: short waits, so failure paths answer quickly.
pub fn config(backends: &[SocketAddr]) -> Config {
    Config {
        workers: 8,
        backend: BackendConfig {
            addresses: backends.to_vec(),
            pool_size: 8,
            pool_wait: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_secs(3),
            ..BackendConfig::default()
        },
        shutdown_grace: Duration::from_secs(5),
        ..Config::default()
    }
}

/// An http-server in this process; stopped on drop.
pub struct Front {
    pub addr: SocketAddr,
    pub base: String,
    /// The admin listener (`/metrics`).
    pub admin_base: String,
    shutdown: Shutdown,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Front {
    pub fn start(backends: &[SocketAddr]) -> Front {
        Front::start_with(config(backends), Duration::from_secs(5))
    }

    pub fn start_with(config: Config, idle_timeout: Duration) -> Front {
        Front::start_keyed(config, idle_timeout, testkit::tier_key())
    }

    /// A front that proves `tier_key` to its backends (the test backends hold
    /// `testkit::tier_key()`).
    pub fn start_keyed(config: Config, idle_timeout: Duration, tier_key: proto::TierKey) -> Front {
        let listen = || {
            http_server::bind(&Listen {
                address: "127.0.0.1:0".parse().unwrap(),
                backlog: 4096,
                idle_timeout,
                write_timeout: Duration::from_secs(5),
            })
            .unwrap()
        };
        let listeners = Listeners {
            public: listen(),
            admin: listen(),
        };
        let addr = listeners.public.local_addr().unwrap();
        let admin = listeners.admin.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let thread = thread::spawn(move || http_server::run(listeners, config, tier_key, stop));
        Front {
            addr,
            base: format!("http://{addr}"),
            admin_base: format!("http://{admin}"),
            shutdown,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.admin_base)
    }

    /// Stops the front end and waits for `run` to return.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shutdown.trigger();
            join_within(thread, Duration::from_secs(15), "http-server");
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if !thread::panicking() {
            self.stop_and_join();
        }
    }
}

/// Both tiers over the test database.
pub struct Stack {
    pub front: Front,
    pub backend: Backend,
}

impl Stack {
    pub fn start() -> Stack {
        let backend = Backend::start();
        let front = Front::start(&[backend.addr]);
        Stack { front, backend }
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "status {}: body is not JSON ({error}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the status and the error body `{"error": {"code", "message"}}`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("Content-Type"), Some("application/json"));
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
        // Every answer carries its request id, in the body and the header alike.
        let id = body["error"]["request_id"].as_str();
        assert!(id.is_some_and(|id| !id.is_empty()), "{body}");
        assert_eq!(self.header("X-Request-Id"), id, "{body}");
    }
}

/// Sends a request with `ureq`; every status is an answer, not an error.
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // A redirect is an answer to look at (the pages answer 303), not one to follow.
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(body.map(<[u8]>::to_vec).unwrap_or_default())
        .unwrap();
    let mut response = agent.run(request).expect("the request got an HTTP answer");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(16 * 1024 * 1024)
        .read_to_vec()
        .unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

pub fn get(url: &str) -> Answer {
    send("GET", url, &[], None)
}

/// A JSON request.
pub fn send_json(method: &str, url: &str, token: Option<&str>, body: &Value) -> Answer {
    let bytes = serde_json::to_vec(body).unwrap();
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    send(method, url, &headers, Some(&bytes))
}

/// A request with a bearer token and no body.
pub fn send_auth(method: &str, url: &str, token: &str) -> Answer {
    let auth = format!("Bearer {token}");
    send(method, url, &[("Authorization", &auth)], None)
}

/// Registers a fresh account and logs in; returns (username, password, token).
pub fn new_session(front: &Front) -> (String, String, String) {
    let username = unique_name("u");
    let password = "a long enough password".to_owned();
    let created = send_json(
        "POST",
        &front.url("/api/v1/users"),
        None,
        &serde_json::json!({"username": username, "password": password}),
    );
    assert_eq!(
        created.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&created.body)
    );
    let login = send_json(
        "POST",
        &front.url("/api/v1/sessions"),
        None,
        &serde_json::json!({"username": username, "password": password}),
    );
    assert_eq!(login.status, 200);
    let token = login.json()["token"].as_str().unwrap().to_owned();
    (username, password, token)
}

/// Raw bytes in, raw bytes out (until the server closes or `wait` passes): for requests no
/// client library would send.
pub fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Vec<u8> {
    raw_reply(addr, bytes, wait).bytes
}

/// What a server sent on a connection before it closed it or a deadline passed.
#[derive(Debug)]
pub struct Reply {
    /// Everything it sent.
    pub bytes: Vec<u8>,
    /// Whether it closed the connection (end of stream, or a reset); if not, the deadline passed
    /// with the connection open.
    pub closed: bool,
}

impl Reply {
    /// The whole answer at the start of what was sent, if one came.
    pub fn answer(&self) -> Option<Answer> {
        parse_answer(&self.bytes).map(|(answer, _)| answer)
    }
}

/// Raw bytes in on a connection of their own; what the server sends until it closes the
/// connection or `wait` passes, one deadline for all of it.
pub fn raw_reply(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Reply {
    let deadline = Instant::now() + wait;
    let mut stream = TcpStream::connect(addr).unwrap();
    // The server may refuse and close before it has taken every byte.
    let _ = stream.write_all(bytes);
    read_reply(
        &mut stream,
        deadline.saturating_duration_since(Instant::now()),
    )
}

/// Reads what the server sends on `stream` until it closes the connection or `wait` passes.
pub fn read_reply(stream: &mut TcpStream, wait: Duration) -> Reply {
    let deadline = Instant::now() + wait;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(error) => match error.kind() {
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => break true,
                // A timeout, or a signal: the loop looks at the deadline.
                ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted => {}
                _ => panic!("reading the server's reply: {error}"),
            },
        }
    };
    Reply { bytes, closed }
}

/// Sends a hostile request on a connection of its own and requires the server to refuse it
/// within `wait` ([`assert_refusal`]). Returns the answer, if there was one.
pub fn assert_refused(
    addr: SocketAddr,
    bytes: &[u8],
    wait: Duration,
    what: &str,
) -> Option<Answer> {
    assert_refusal(&raw_reply(addr, bytes, wait), what)
}

/// Requires `reply` to be a refusal: a whole JSON 4xx answer, or nothing, and in either case the
/// connection closed. Fails the test, saying `what` was sent, if the connection was still open
/// at the deadline (the server hangs), or the server sent anything other than a 4xx, or closed
/// part way through an answer. Returns the answer, if there was one.
pub fn assert_refusal(reply: &Reply, what: &str) -> Option<Answer> {
    let sent = String::from_utf8_lossy(&reply.bytes);
    assert!(
        reply.closed,
        "{what}: the connection was still open at the deadline, having sent {sent:?}"
    );
    let answer = reply.answer();
    match &answer {
        Some(answer) => {
            assert!(
                (400..500).contains(&answer.status),
                "{what}: answered {}: {sent:?}",
                answer.status
            );
            let code = answer.json()["error"]["code"].as_str().map(str::to_owned);
            answer.assert_error(answer.status, code.as_deref().unwrap_or("(none)"));
        }
        None => assert!(
            reply.bytes.is_empty(),
            "{what}: closed after sending what is no whole answer: {sent:?}"
        ),
    }
    answer
}

/// Asserts, through the API, that no account `username` exists: registering it now succeeds
/// (which takes the name). For tests whose hostile requests would have registered it.
pub fn assert_no_account(front: &Front, username: &str) {
    let created = send_json(
        "POST",
        &front.url("/api/v1/users"),
        None,
        &serde_json::json!({"username": username, "password": "a long enough password"}),
    );
    assert_eq!(
        created.status,
        201,
        "an account {username} exists, or registering it failed: {:?}",
        String::from_utf8_lossy(&created.body)
    );
}

/// A small valid PNG: 8x8, red.
pub fn png() -> Vec<u8> {
    include_bytes!("data/red8x8.png").to_vec()
}

/// Serialises the tests that hold thousands of sockets: each needs a good share of the
/// process's open-files limit (tiny_http holds two descriptors per connection), and two at once
/// would exceed it.
pub fn many_sockets() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Parses one HTTP/1.1 response at the start of `bytes` (httparse): the head, then a body of
/// its `Content-Length` (none for 1xx, 204 and 304). `None` until all of it is there.
///
/// # Panics
/// On bytes that are not an HTTP/1.1 response: the server under test never sends those.
pub fn parse_answer(bytes: &[u8]) -> Option<(Answer, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_end = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return None,
        Err(error) => panic!(
            "not an HTTP response ({error}): {:?}",
            String::from_utf8_lossy(bytes)
        ),
    };
    let status = response.code.expect("a complete response has a status");
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| {
            let value = std::str::from_utf8(h.value).expect("header values are ASCII");
            (h.name.to_owned(), value.to_owned())
        })
        .collect();
    let length = if matches!(status, 100..=199 | 204 | 304) {
        0
    } else {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
            .map_or(0, |(_, v)| {
                v.parse::<usize>().expect("a numeric Content-Length")
            })
    };
    let end = head_end + length;
    if bytes.len() < end {
        return None;
    }
    let answer = Answer {
        status,
        headers,
        body: bytes[head_end..end].to_vec(),
    };
    Some((answer, end))
}

/// Writes `bytes` on `stream` and reads one response, waiting up to `wait` for it. `None` if
/// the server closed the connection, or `wait` passed, before a whole response arrived.
pub fn exchange(stream: &mut TcpStream, bytes: &[u8], wait: Duration) -> Option<Answer> {
    let deadline = Instant::now() + wait;
    stream.write_all(bytes).ok()?;
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some((answer, _)) = parse_answer(&received) {
            return Some(answer);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Raw bytes in, one parsed response out: for requests no client library would send. Panics
/// if no whole response arrives within `wait`.
pub fn raw_answer(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Answer {
    let received = raw(addr, bytes, wait);
    match parse_answer(&received) {
        Some((answer, _)) => answer,
        None => panic!(
            "no whole HTTP response; got {:?}",
            String::from_utf8_lossy(&received)
        ),
    }
}

/// Registers `username` with `password` and asserts 201.
pub fn register(front: &Front, username: &str, password: &str) -> Value {
    let created = send_json(
        "POST",
        &front.url("/api/v1/users"),
        None,
        &serde_json::json!({"username": username, "password": password}),
    );
    assert_eq!(
        created.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&created.body)
    );
    created.json()
}

/// Logs in; returns the whole answer.
pub fn login(front: &Front, username: &str, password: &str) -> Answer {
    send_json(
        "POST",
        &front.url("/api/v1/sessions"),
        None,
        &serde_json::json!({"username": username, "password": password}),
    )
}

/// A "backend" that accepts connections and reads whatever arrives but never answers: the
/// shape of a hung tcp-server. Counts the bytes it received; closes everything on drop.
pub struct SilentBackend {
    pub addr: SocketAddr,
    received: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SilentBackend {
    pub fn start() -> SilentBackend {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopping) = (Arc::clone(&received), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let mut readers = Vec::new();
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let (count, stopping) = (Arc::clone(&count), Arc::clone(&stopping));
                readers.push(thread::spawn(move || {
                    stream
                        .set_read_timeout(Some(Duration::from_millis(50)))
                        .unwrap();
                    let mut buf = [0u8; 4096];
                    while !stopping.load(Ordering::SeqCst) {
                        match stream.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                count.fetch_add(n, Ordering::SeqCst);
                            }
                            Err(_) => {}
                        }
                    }
                }));
            }
            for reader in readers {
                let _ = reader.join();
            }
        });
        SilentBackend {
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// Bytes received so far, over all connections.
    pub fn received(&self) -> usize {
        self.received.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for SilentBackend {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Asserts the stack still serves: liveness, and a login that goes through to the database.
pub fn assert_still_serving(front: &Front, username: &str, password: &str) {
    assert_eq!(get(&front.url("/healthz")).status, 200);
    assert_eq!(login(front, username, password).status, 200);
}

/// Runs `f` and says how long it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let out = f();
    (out, started.elapsed())
}

/// The `Set-Cookie` headers of an answer.
pub fn set_cookies(answer: &Answer) -> Vec<&str> {
    answer
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, value)| value.as_str())
        .collect()
}

/// The median of some timings (sorts them).
pub fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The medians of `N` timed actions, for comparing them on a shared machine: `run(round,
/// action)` runs action `action` of round `round` and says how long it took. Each round runs
/// every action, each first in turn, so drifts in the machine's load hit all alike; the first
/// `warm_up` rounds are left out.
pub fn interleaved_medians<const N: usize>(
    rounds: usize,
    warm_up: usize,
    mut run: impl FnMut(usize, usize) -> Duration,
) -> [Duration; N] {
    let mut times: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::new());
    for round in 0..rounds {
        let mut took = [Duration::ZERO; N];
        for step in 0..N {
            let action = (round + step) % N;
            took[action] = run(round, action);
        }
        if round >= warm_up {
            for (all, one) in times.iter_mut().zip(took) {
                all.push(one);
            }
        }
    }
    times.map(|mut all| median(&mut all))
}

/// An error body without its `request_id` (each request has its own), for comparing answers.
pub fn without_request_id(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(error) = body.get_mut("error").and_then(Value::as_object_mut) {
        assert!(
            error.remove("request_id").is_some_and(|id| id.is_string()),
            "an error body carries the request's id: {error:?}"
        );
    }
    body
}
