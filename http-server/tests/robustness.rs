//! http-server under hostile or heavy clients: thousands of idle or simultaneous connections,
//! malformed and oversized requests, stalled clients, and a graceful stop of the real binary
//! with requests in flight. Where the server answers, the answer is the JSON error body.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use proto::{Request, Response};
use serde_json::json;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(10);

/// A POST of `body` to a JSON endpoint, as raw bytes, closing after the answer.
fn raw_post(path: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

#[test]
fn two_thousand_idle_connections_do_not_starve_requests() {
    let _sockets = many_sockets();
    let backend = Backend::start();
    // An idle timeout longer than the test, so the connections stay open throughout.
    let front = Front::start_with(config(&[backend.addr]), Duration::from_secs(60));
    let (username, password, _) = new_session(&front);

    let idle: Vec<TcpStream> = (0..2000)
        .map(|i| {
            TcpStream::connect_timeout(&front.addr, WAIT)
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
        })
        .collect();

    for _ in 0..5 {
        let (health, took) = timed(|| get(&front.url("/healthz")));
        assert_eq!(health.status, 200);
        assert!(took < Duration::from_secs(3), "/healthz took {took:?}");
        let (session, took) = timed(|| login(&front, &username, &password));
        assert_eq!(session.status, 200);
        assert!(took < Duration::from_secs(3), "login took {took:?}");
    }
    // (Whether the idle connections themselves are served at once when they speak is
    // `every_connection_of_a_burst_is_read_while_the_others_stay_open`.)

    // Nor do they hold up a stop: it waits for requests, not for connections.
    let ((), took) = timed(|| front.stop());
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    drop(idle);
}

#[test]
fn five_thousand_clients_at_once_are_survived() {
    let _sockets = many_sockets();
    let stack = Stack::start();
    let front = &stack.front;
    let (username, password, _) = new_session(front);

    const THREADS: usize = 50;
    const PER_THREAD: usize = 100;
    let addr = front.addr;
    let start = Arc::new(Barrier::new(THREADS));
    let clients: Vec<JoinHandle<Vec<Result<u16, String>>>> = (0..THREADS)
        .map(|_| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                // Connect and send on every socket first, so all of them are open at once...
                let streams: Vec<Result<TcpStream, String>> = (0..PER_THREAD)
                    .map(|_| {
                        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(15))
                            .map_err(|e| format!("connect: {e}"))?;
                        stream
                            .write_all(
                                b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                            )
                            .map_err(|e| format!("write: {e}"))?;
                        Ok(stream)
                    })
                    .collect();
                // ...then collect the answers.
                streams
                    .into_iter()
                    .map(|stream| {
                        let mut stream = stream?;
                        stream
                            .set_read_timeout(Some(Duration::from_secs(30)))
                            .unwrap();
                        let mut received = Vec::new();
                        let _ = stream.read_to_end(&mut received);
                        match parse_answer(&received) {
                            Some((answer, _)) => Ok(answer.status),
                            None => Err(format!(
                                "no answer: {:?}",
                                String::from_utf8_lossy(&received)
                            )),
                        }
                    })
                    .collect()
            })
        })
        .collect();
    let outcomes: Vec<Result<u16, String>> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();

    let ok = outcomes.iter().filter(|o| matches!(o, Ok(200))).count();
    let other: Vec<_> = outcomes
        .iter()
        .filter(|o| !matches!(o, Ok(200)))
        .take(5)
        .collect();
    println!(
        "{ok} of {} simultaneous clients got 200; others: {other:?}",
        outcomes.len()
    );
    assert!(
        outcomes
            .iter()
            .all(|o| !matches!(o, Ok(status) if *status >= 500 && *status != 503)),
        "{other:?}"
    );
    // The listener's deep backlog queues a burst instead of refusing it.
    assert!(
        ok >= THREADS * PER_THREAD * 99 / 100,
        "only {ok} got 200; e.g. {other:?}"
    );
    assert_still_serving(front, &username, &password);
}

#[test]
fn a_huge_declared_content_length_gets_413_and_the_server_lives_on() {
    let stack = Stack::start();
    let front = &stack.front;
    let (username, password, token) = new_session(front);

    for (path, headers) in [
        (
            "/api/v1/users",
            "Content-Type: application/json\r\n".to_owned(),
        ),
        (
            "/api/v1/sessions",
            "Content-Type: application/json\r\n".to_owned(),
        ),
        (
            "/api/v1/me/picture",
            format!("Content-Type: image/png\r\nAuthorization: Bearer {token}\r\n"),
        ),
    ] {
        let method = if path.ends_with("picture") {
            "PUT"
        } else {
            "POST"
        };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\n{headers}Content-Length: 100000000000000\r\n\r\n{{}}"
        );
        let mut stream = TcpStream::connect(front.addr).unwrap();
        let answer = exchange(&mut stream, request.as_bytes(), WAIT)
            .expect("no answer to a huge Content-Length");
        answer.assert_error(413, "payload_too_large");
        assert_still_serving(front, &username, &password);
    }
    // Lengths that are not numbers a body can have are no 500 either: a 4xx and a close (RFC
    // 9112, 6.3), within the wait.
    for length in ["99999999999999999999999999", "-1", "abc", "1e3"] {
        let request = format!(
            "POST /api/v1/users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\nConnection: close\r\n\r\n{{}}"
        );
        let answer = assert_refused(front.addr, request.as_bytes(), WAIT, length)
            .unwrap_or_else(|| panic!("{length}: closed without an answer"));
        assert!(
            (400..500).contains(&answer.status),
            "{length}: {}",
            answer.status
        );
        assert!(answer.json()["error"]["code"].is_string(), "{length}");
    }
    // The upload declared too large changed nothing.
    let profile = send_auth("GET", &front.url("/api/v1/me"), &token);
    assert!(profile.json()["picture_url"].is_null(), "{profile:?}");
    assert_still_serving(front, &username, &password);
}

/// tiny_http drains the unread rest of a body (up to 1 MiB) when the request is dropped, and
/// the request is dropped by the worker that answered it: a client that declares a body and
/// sends nothing must not keep that worker reading until its idle timeout.
#[test]
fn a_client_that_declares_a_huge_body_and_stalls_holds_no_worker() {
    let backend = Backend::start();
    let mut config = config(&[backend.addr]);
    config.workers = 1;
    let idle = Duration::from_secs(10);
    let front = Front::start_with(config, idle);

    // The client declares a body it never sends, reads its 413, and stays connected.
    let mut hostile = TcpStream::connect(front.addr).unwrap();
    let answer = exchange(
        &mut hostile,
        b"POST /api/v1/users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 100000000000000\r\n\r\n{}",
        WAIT,
    )
    .expect("no answer to a huge Content-Length");
    answer.assert_error(413, "payload_too_large");

    // The one worker is free for everyone else, well before the idle timeout ends that client.
    let (health, took) = timed(|| get(&front.url("/healthz")));
    assert_eq!(health.status, 200);
    assert!(
        took < Duration::from_secs(3),
        "/healthz waited {took:?} behind a stalled client"
    );
    drop(hostile);
}

#[test]
fn oversized_request_heads_get_431() {
    let stack = Stack::start();
    let front = &stack.front;

    let long_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Long: {}\r\n\r\n",
        "a".repeat(9 * 1024)
    );
    let long_target = format!(
        "GET /healthz?{} HTTP/1.1\r\nHost: t\r\n\r\n",
        "a".repeat(9 * 1024)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\n{}\r\n",
        (0..101)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    for request in [&long_header, &long_target, &many_headers] {
        raw_answer(front.addr, request.as_bytes(), WAIT)
            .assert_error(431, "request_header_fields_too_large");
    }
    // Just under both limits is fine: 100 headers in all, and a line of almost 8 KiB.
    let hundred = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{}\r\n",
        (0..98)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let long_ok = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Long: {}\r\n\r\n",
        "a".repeat(8 * 1024 - 16)
    );
    for request in [&hundred, &long_ok] {
        assert_eq!(raw_answer(front.addr, request.as_bytes(), WAIT).status, 200);
    }
}

#[test]
fn garbage_request_lines_and_headers_get_400() {
    let stack = Stack::start();
    let front = &stack.front;
    let (username, password, _) = new_session(front);

    // (tiny_http lets two near misses through as if well-formed: a fourth word after the
    // version, and a header with an empty name. Neither reaches a handler any differently.)
    for request in [
        &b"GARBAGE\r\n\r\n"[..],
        b"HELLO WORLD\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /healthz\r\n\r\n",
        b"GET /healthz FTP/1.0\r\n\r\n",
        b"GET /healthz HTTP/1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost t\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n",
    ] {
        raw_answer(front.addr, request, WAIT).assert_error(400, "bad_request");
    }
    // Lines that are not text at all: a JSON 400 or a prompt close, never anything else.
    for request in [
        &b"\x00\x01\x02\x03\xff\xfe\r\n\r\n"[..],
        b"GET /\xff\xfe HTTP/1.1\r\n\r\n",
    ] {
        let what = String::from_utf8_lossy(request);
        let (answer, took) = timed(|| assert_refused(front.addr, request, WAIT, &what));
        assert!(took < WAIT / 2, "the connection was held for {took:?}");
        if let Some(answer) = answer {
            answer.assert_error(400, "bad_request");
        }
    }
    assert_still_serving(front, &username, &password);
}

#[test]
fn hostile_json_bodies_get_400_invalid_json() {
    let stack = Stack::start();
    let front = &stack.front;
    let (username, password, token) = new_session(front);
    // The name the bodies would register, were one of them taken for a valid registration.
    let name = unique_name("hostile");

    let deep_arrays = "[".repeat(10_000);
    let deep_objects = "{\"a\":".repeat(2_500);
    let deep_in_field = format!(r#"{{"username": {}"#, "[".repeat(10_000));
    let huge_number = format!(
        r#"{{"username": {}, "password": "12345678"}}"#,
        "9".repeat(10_000)
    );
    let named = |before: &[u8], after: &[u8]| [before, name.as_bytes(), after].concat();
    let bodies: Vec<Vec<u8>> = vec![
        b"{\"username\": \"\xff\xfe\xfd\", \"password\": \"12345678\"}".to_vec(),
        named(
            b"{\"username\": \"",
            b"\", \"password\": \"pass\xc3\x28word\"}",
        ),
        named(
            b"\xef\xbb\xbf{\"username\": \"",
            b"\", \"password\": \"12345678\"}",
        ),
        br#"{"username": "\ud800", "password": "12345678"}"#.to_vec(),
        deep_arrays.into_bytes(),
        deep_objects.into_bytes(),
        deep_in_field.into_bytes(),
        huge_number.into_bytes(),
        br#"{"username": 1e999999999, "password": "12345678"}"#.to_vec(),
        br#"{"username": -0.0e-99999, "password": "12345678"}"#.to_vec(),
        named(b"{\"username\": \"", b"\"\x00, \"password\": \"12345678\"}"),
    ];
    for path in ["/api/v1/users", "/api/v1/sessions"] {
        for body in &bodies {
            let answer = raw_answer(front.addr, &raw_post(path, "", body), WAIT);
            assert_eq!(
                answer.status,
                400,
                "{path} {:?}",
                String::from_utf8_lossy(&body[..body.len().min(60)])
            );
            answer.assert_error(400, "invalid_json");
        }
    }
    let auth = format!("Authorization: Bearer {token}\r\n");
    for body in [
        &b"{\"nickname\": \"\xff\""[..],
        "[".repeat(10_000).as_bytes(),
        b"{\"nickname\": 123456789012345678901234567890}",
    ] {
        let mut request = raw_post("/api/v1/me", &auth, body);
        request.splice(0..4, b"PATCH".iter().copied());
        raw_answer(front.addr, &request, WAIT).assert_error(400, "invalid_json");
    }
    // Nothing was registered or changed.
    let profile = send_auth("GET", &front.url("/api/v1/me"), &token);
    assert_eq!(profile.json()["nickname"], username.as_str());
    assert_no_account(front, &name);
    assert_still_serving(front, &username, &password);
}

#[test]
fn stalled_clients_are_closed_after_the_idle_timeout_without_holding_a_worker() {
    let backend = Backend::start();
    let mut config = config(&[backend.addr]);
    // One worker: if a stalled client held it, nothing else would be served.
    config.workers = 1;
    let idle = Duration::from_secs(3);
    let front = Front::start_with(config, idle);
    let (username, password, _) = new_session(&front);

    let stalls: [&[u8]; 3] = [
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n",
        b"POST /api/v1/users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
        b"GE",
    ];
    // A few of each, arriving one by one: each has its own connection thread at once (a burst
    // is `every_connection_of_a_burst_is_read_while_the_others_stay_open`).
    let stalled_at = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..6)
        .map(|i| {
            let mut stream = TcpStream::connect(front.addr).unwrap();
            stream.write_all(stalls[i % stalls.len()]).unwrap();
            thread::sleep(Duration::from_millis(50));
            stream
        })
        .collect();

    // Meanwhile everyone else is served at once.
    for _ in 0..5 {
        let (health, took) = timed(|| get(&front.url("/healthz")));
        assert_eq!(health.status, 200);
        assert!(
            took < idle / 2,
            "/healthz took {took:?} with stalled clients around"
        );
    }
    let (session, took) = timed(|| login(&front, &username, &password));
    assert_eq!(session.status, 200);
    assert!(
        took < idle / 2,
        "login took {took:?} with stalled clients around"
    );

    // Each stalled connection is closed once idle for the timeout: not before, not much after.
    for stream in &mut stalled {
        stream.set_read_timeout(Some(idle * 4)).unwrap();
        let mut received = Vec::new();
        let result = stream.read_to_end(&mut received);
        let closed_after = stalled_at.elapsed();
        assert!(
            result.is_ok()
                || matches!(
                    result.as_ref().map_err(|e| e.kind()),
                    Err(std::io::ErrorKind::ConnectionReset)
                ),
            "the stalled connection was not closed: {result:?}"
        );
        assert!(
            closed_after >= idle.mul_f64(0.8),
            "closed after only {closed_after:?}"
        );
        assert!(closed_after < idle * 3, "closed after {closed_after:?}");
        // If the server says anything on closing, it is the JSON timeout error.
        if !received.is_empty() {
            let (answer, _) = parse_answer(&received).expect("a whole response");
            answer.assert_error(408, "request_timeout");
        }
    }
    assert_still_serving(&front, &username, &password);
}

#[test]
fn a_picture_body_that_stops_arriving_gets_408() {
    let backend = Backend::start();
    let idle = Duration::from_secs(1);
    let front = Front::start_with(config(&[backend.addr]), idle);
    let (username, password, token) = new_session(&front);

    // Past 16 KiB a body is read by the worker as it arrives; this one stops half way.
    let mut request = format!(
        "PUT /api/v1/me/picture HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(&png());
    request.resize(request.len() + 40_000, 0);
    let mut stream = TcpStream::connect(front.addr).unwrap();
    let (answer, took) = timed(|| exchange(&mut stream, &request, WAIT));
    let answer = answer.expect("no answer to a body that stopped arriving");
    answer.assert_error(408, "request_timeout");
    assert!(took >= idle.mul_f64(0.8), "answered after only {took:?}");
    assert!(
        took < idle + Duration::from_secs(4),
        "answered after {took:?}"
    );
    drop(stream);
    // The half picture was not stored.
    let profile = send_auth("GET", &front.url("/api/v1/me"), &token);
    assert!(profile.json()["picture_url"].is_null(), "{profile:?}");
    assert_still_serving(&front, &username, &password);
}

/// A stand-in for tcp-server that relays frames to a real one but holds every request other
/// than Ping until [`GatedRelay::open`]: requests stay in flight for as long as a test needs.
struct GatedRelay {
    addr: SocketAddr,
    held: Arc<AtomicUsize>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl GatedRelay {
    fn start(backend: SocketAddr) -> GatedRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (count, shared_gate) = (Arc::clone(&held), Arc::clone(&gate));
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (count, gate) = (Arc::clone(&count), Arc::clone(&shared_gate));
                thread::spawn(move || relay(client, backend, &count, &gate));
            }
        });
        GatedRelay { addr, held, gate }
    }

    fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    fn open(&self) {
        let (open, changed) = &*self.gate;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }
}

fn relay(
    mut client: TcpStream,
    backend: SocketAddr,
    held: &AtomicUsize,
    gate: &(Mutex<bool>, Condvar),
) {
    let Ok(mut upstream) = TcpStream::connect(backend) else {
        return;
    };
    let (mut read_buf, mut write_buf) = (Vec::new(), Vec::new());
    let max = proto::DEFAULT_MAX_FRAME_LEN;
    while let Ok(frame) = proto::read_frame::<_, Request>(&mut client, &mut read_buf, max) {
        if frame.message != Request::Ping(proto::Ping) {
            held.fetch_add(1, Ordering::SeqCst);
            let (open, changed) = gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = changed.wait(open).unwrap();
            }
        }
        if proto::write_frame(
            &mut upstream,
            frame.request_id,
            &proto::Trace::NONE,
            &frame.message,
            &mut write_buf,
        )
        .is_err()
        {
            return;
        }
        let Ok(response) = proto::read_frame::<_, Response>(&mut upstream, &mut read_buf, max)
        else {
            return;
        };
        if proto::write_frame(
            &mut client,
            response.request_id,
            &proto::Trace::NONE,
            &response.message,
            &mut write_buf,
        )
        .is_err()
        {
            return;
        }
    }
}

/// The real http-server binary, killed on drop if it is still running.
struct Binary {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Binary {
    fn start(args: &[&str]) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_http-server"))
            .args(args)
            .env("RUST_LOG", "info")
            .env(
                "GATEHOUSE_TIER_KEY",
                std::str::from_utf8(testkit::TIER_SECRET).unwrap(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the http-server binary");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Binary { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM with kill(1): our code may not use `unsafe`, so not libc::kill.
    fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success());
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[test]
fn sigterm_answers_the_requests_in_flight_then_exits_0() {
    let backend = Backend::start();
    let relay = GatedRelay::start(backend.addr);
    let listen = free_addr();
    let (listen_arg, backend_arg) = (listen.to_string(), relay.addr.to_string());
    let mut binary = Binary::start(&[
        "--listen",
        &listen_arg,
        "--backend",
        &backend_arg,
        "--workers",
        "8",
        "--request-timeout",
        "30s",
    ]);
    let base = format!("http://{listen}");
    assert!(
        eventually(WAIT, || TcpStream::connect(listen).is_ok()),
        "the binary never listened:\n{}",
        binary.log()
    );
    assert_eq!(get(&format!("{base}/healthz")).status, 200);

    // Registrations that the relay holds at the backend's door. They are sent one by one, each
    // once the previous is held, so that each connection is read at once (a burst of
    // connections may not be: `every_connection_of_a_burst_is_read_while_the_others_stay_open`).
    const IN_FLIGHT: usize = 5;
    let names: Vec<String> = (0..IN_FLIGHT).map(|_| unique_name("term")).collect();
    let mut requests: Vec<JoinHandle<Answer>> = Vec::new();
    for name in &names {
        let (url, body) = (
            format!("{base}/api/v1/users"),
            json!({"username": name, "password": "a long enough password"}),
        );
        requests.push(thread::spawn(move || send_json("POST", &url, None, &body)));
        let want = requests.len();
        assert!(
            eventually(WAIT, || relay.held() == want),
            "request {want} never reached the backend:\n{}",
            binary.log()
        );
    }

    binary.terminate();
    let signalled = Instant::now();
    // New connections are refused while the requests in flight are still being answered.
    assert!(
        eventually(Duration::from_secs(5), || refused(listen)),
        "still accepting after SIGTERM:\n{}",
        binary.log()
    );
    assert!(
        requests.iter().all(|r| !r.is_finished()),
        "a held request finished early"
    );
    assert!(
        binary.child.try_wait().unwrap().is_none(),
        "exited with requests in flight"
    );

    relay.open();
    for (request, name) in requests.into_iter().zip(&names) {
        let answer = request.join().unwrap();
        assert_eq!(
            answer.status,
            201,
            "{name}: {:?}",
            String::from_utf8_lossy(&answer.body)
        );
        assert_eq!(answer.json()["username"], name.as_str());
    }
    let exited = loop {
        if let Some(status) = binary.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM:\n{}",
            binary.log()
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exited.code(), Some(0), "{}", binary.log());
    assert!(refused(listen));
}

#[test]
fn the_binary_describes_itself() {
    let output = Command::new(env!("CARGO_BIN_EXE_http-server"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for option in [
        "--backend",
        "--listen",
        "--pool-wait",
        "--request-timeout",
        "--shutdown-grace",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    // A bad argument is refused with a non-zero status, not served.
    let status = Command::new(env!("CARGO_BIN_EXE_http-server"))
        .args(["--backend", "not an address"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
}

/// tiny_http gives each connection its own thread for its whole life. A connection accepted in
/// a burst must still be read at once, not wait until some other connection ends. A fresh
/// server (a few idle connection threads) is where a burst is most at risk; whether a given
/// burst shows a fault depends on thread timing, so three fresh servers are tried.
#[test]
fn every_connection_of_a_burst_is_read_while_the_others_stay_open() {
    let _sockets = many_sockets();
    // Generous for a request that needs no backend and normally takes well under a millisecond.
    let answer_within = Duration::from_secs(5);
    for round in 1..=3 {
        // Only /healthz is asked for, which needs no backend.
        let front = Front::start_with(config(&[free_addr()]), Duration::from_secs(60));
        // Connected from several threads at once, so the connections arrive faster than they
        // are accepted, as in any burst.
        let addr = front.addr;
        let connectors: Vec<JoinHandle<Vec<TcpStream>>> = (0..10)
            .map(|_| {
                thread::spawn(move || {
                    (0..100)
                        .map(|_| TcpStream::connect_timeout(&addr, WAIT).unwrap())
                        .collect()
                })
            })
            .collect();
        let mut streams: Vec<TcpStream> = connectors
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        // Every connection sends a request and stays open (keep-alive), as browsers do.
        for stream in &mut streams {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
        }
        let deadline = Instant::now() + answer_within;
        let unanswered: Vec<usize> = streams
            .iter_mut()
            .enumerate()
            .filter_map(|(i, stream)| {
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                stream.set_read_timeout(Some(left)).unwrap();
                let mut received = Vec::new();
                let mut buf = [0u8; 1024];
                while parse_answer(&received).is_none() {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return Some(i),
                        Ok(n) => received.extend_from_slice(&buf[..n]),
                    }
                }
                let (answer, _) = parse_answer(&received).unwrap();
                assert_eq!(answer.status, 200);
                None
            })
            .collect();
        assert!(
            unanswered.is_empty(),
            "round {round}: {} of {} open connections were not read within {answer_within:?}: \
             {:?}",
            unanswered.len(),
            streams.len(),
            &unanswered[..unanswered.len().min(20)]
        );
        // The server stops with all those connections still open; then they close.
        front.stop();
        drop(streams);
    }
}

#[test]
fn an_http2_request_line_gets_505_and_the_connection_closes() {
    let stack = Stack::start();
    // The h2c preface: tiny_http used to deadlock this connection's thread.
    let (bytes, took) = timed(|| {
        raw(
            stack.front.addr,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            Duration::from_secs(5),
        )
    });
    let (answer, _) = parse_answer(&bytes).expect("an answer to an HTTP/2 request line");
    answer.assert_error(505, "http_version_not_supported");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    assert_eq!(get(&stack.front.url("/healthz")).status, 200);
}

#[test]
fn a_get_that_declares_an_unsent_body_holds_no_worker() {
    let backend = Backend::start();
    let mut config = config(&[backend.addr]);
    config.workers = 1;
    let front = Front::start_with(config, Duration::from_secs(10));
    // A 200 route, with a body declared and never sent: its drain must not run on the worker.
    let mut hostile = TcpStream::connect(front.addr).unwrap();
    let answer = exchange(
        &mut hostile,
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n",
        WAIT,
    )
    .expect("an answer");
    assert_eq!(answer.status, 200);
    let (health, took) = timed(|| get(&front.url("/healthz")));
    assert_eq!(health.status, 200);
    assert!(took < Duration::from_secs(3), "/healthz waited {took:?}");
    drop(hostile);
}

#[test]
fn connection_upgrade_does_not_make_the_body_unbounded() {
    let stack = Stack::start();
    let body = format!(
        r#"{{"username":"{}","password":"correct horse battery"}}"#,
        unique_name("up")
    );
    let request = format!(
        "POST /api/v1/users HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (answer, took) = timed(|| raw_answer(stack.front.addr, request.as_bytes(), WAIT));
    assert_eq!(
        answer.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
}

#[test]
fn pipelined_requests_are_answered_in_order_without_parking_workers() {
    let backend = Backend::start();
    let mut config = config(&[backend.addr]);
    config.workers = 2;
    let front = Front::start_with(config, Duration::from_secs(10));
    // Twenty requests in one write on one connection, while the client reads nothing yet.
    let mut pipelined = TcpStream::connect(front.addr).unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n".repeat(20);
    pipelined.write_all(&request).unwrap();
    // Other clients are served meanwhile.
    let (health, took) = timed(|| get(&front.url("/readyz")));
    assert_eq!(health.status, 200);
    assert!(took < Duration::from_secs(3), "/readyz waited {took:?}");
    // And the pipelined client gets its twenty answers, in order.
    pipelined
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut bytes = Vec::new();
    let mut answers = 0;
    let mut buf = [0u8; 4096];
    while answers < 20 {
        let n = pipelined
            .read(&mut buf)
            .expect("the pipelined answers arrive");
        assert!(n > 0, "closed after {answers} answers");
        bytes.extend_from_slice(&buf[..n]);
        while let Some((answer, used)) = parse_answer(&bytes) {
            assert_eq!(answer.status, 200);
            bytes.drain(..used);
            answers += 1;
        }
    }
}

/// What one keep-alive client saw while the server stopped under it.
#[derive(Default, Debug)]
struct Seen {
    answered: usize,
    not_ok: usize,
    /// Requests written whose connection ended without an answer: dropped by the server.
    dropped: usize,
    /// Answers that said `Connection: close`.
    closes: usize,
}

/// Sends profile reads over one keep-alive connection, reconnecting after `Connection: close`,
/// until a connection is refused (the server stopped accepting). Counts the answers in
/// `answered` as they come.
fn keep_alive_client(addr: SocketAddr, token: &str, answered: &AtomicUsize) -> Seen {
    let mut seen = Seen::default();
    let request =
        format!("GET /api/v1/me HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n");
    'connections: loop {
        let Ok(stream) = TcpStream::connect(addr) else {
            return seen;
        };
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut stream = stream;
        loop {
            if stream.write_all(request.as_bytes()).is_err() {
                seen.dropped += 1;
                continue 'connections;
            }
            let (mut status_line, mut length, mut close) = (String::new(), 0usize, false);
            if reader.read_line(&mut status_line).unwrap_or(0) == 0 {
                seen.dropped += 1;
                continue 'connections;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    seen.dropped += 1;
                    continue 'connections;
                }
                let lower = line.trim().to_ascii_lowercase();
                if lower.is_empty() {
                    break;
                }
                if let Some(value) = lower.strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                close |= lower == "connection: close";
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                seen.dropped += 1;
                continue 'connections;
            }
            seen.answered += 1;
            answered.fetch_add(1, Ordering::SeqCst);
            if !status_line.starts_with("HTTP/1.1 200") {
                seen.not_ok += 1;
            }
            if close {
                seen.closes += 1;
                continue 'connections;
            }
        }
    }
}

#[test]
fn a_stop_under_load_answers_every_request_it_read_and_closes_each_connection_cleanly() {
    const CLIENTS: usize = 24;
    let backend = Backend::start();
    let front = Front::start(&[backend.addr]);
    let (_, _, token) = new_session(&front);
    let addr = front.addr;
    let answered: Arc<Vec<AtomicUsize>> =
        Arc::new((0..CLIENTS).map(|_| AtomicUsize::new(0)).collect());
    let clients: Vec<JoinHandle<Seen>> = (0..CLIENTS)
        .map(|i| {
            let (token, answered) = (token.clone(), Arc::clone(&answered));
            thread::spawn(move || keep_alive_client(addr, &token, &answered[i]))
        })
        .collect();
    // The stop comes once every client is in full swing.
    let all_served = || {
        answered
            .iter()
            .all(|count| count.load(Ordering::SeqCst) > 10)
    };
    assert!(
        eventually(WAIT, all_served),
        "not every client was being served"
    );
    let stopping = Instant::now();
    front.stop();
    let stopped_in = stopping.elapsed();
    let seen: Vec<Seen> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let total = |f: fn(&Seen) -> usize| seen.iter().map(f).sum::<usize>();
    assert!(total(|s| s.answered) > CLIENTS * 10, "{seen:?}");
    assert_eq!(total(|s| s.dropped), 0, "requests dropped: {seen:?}");
    assert_eq!(total(|s| s.not_ok), 0, "every answer is 200: {seen:?}");
    // Every busy connection ended with an answer saying so, not a reset.
    assert_eq!(total(|s| s.closes), CLIENTS, "{seen:?}");
    // Busy clients do not hold the stop until the grace runs out.
    assert!(stopped_in < Duration::from_secs(3), "{stopped_in:?}");
}
