//! http-server and its tcp-server backends: requests spread over several, a backend that stops
//! or restarts, one that is down at start or unreachable, and the ways a backend fails to answer
//! (busy, unavailable, timeout), each with the status and error body the contract names.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use http_server::{BackendConfig, Config};
use proto::{Request, Response};
use serde_json::json;

use crate::support::*;

const PASSWORD: &str = "a long enough password";

/// The contract's bound for answering when no backend can be reached.
const UNAVAILABLE_WITHIN: Duration = Duration::from_secs(1);

fn metrics_text(front: &Front) -> String {
    let answer = get(&front.admin_url("/metrics"));
    assert_eq!(answer.status, 200);
    String::from_utf8(answer.body).unwrap()
}

/// Requests of `kind` a backend served, from its own admin listener.
fn tcp_requests(backend: &Backend, kind: &str) -> f64 {
    let metrics = testkit::scrape(backend.admin);
    testkit::metric(&metrics, "gatehouse_tcp_requests_total", &[("kind", kind)])
        .unwrap_or_else(|| panic!("no {kind} count for {}", backend.addr))
}

fn pool(text: &str, series: &str, backend: SocketAddr) -> f64 {
    let name = format!("gatehouse_backend_pool_{series}");
    let parsed = testkit::parse_metrics(text);
    testkit::metric(&parsed, &name, &[("backend", &backend.to_string())])
        .unwrap_or_else(|| panic!("no pool {series} for {backend}:\n{text}"))
}

/// Asserts a 503 `code` with a positive whole `Retry-After`.
fn assert_retry_later(answer: &Answer, code: &str) {
    answer.assert_error(503, code);
    let retry = answer
        .header("Retry-After")
        .expect("a 503 carries Retry-After");
    assert!(
        retry.parse::<u32>().is_ok_and(|s| s >= 1),
        "Retry-After: {retry}"
    );
}

/// One request of each kind a client makes all day: register, log in, read the profile.
/// Returns the first unexpected status, with its body.
fn one_of_each(front: &Front) -> Result<(), String> {
    let username = unique_name("each");
    let created = send_json(
        "POST",
        &front.url("/api/v1/users"),
        None,
        &json!({"username": username, "password": PASSWORD}),
    );
    let check = |what: &str, answer: &Answer, want: u16| {
        if answer.status == want {
            Ok(())
        } else {
            Err(format!(
                "{what}: {} {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ))
        }
    };
    check("register", &created, 201)?;
    let session = login(front, &username, PASSWORD);
    check("login", &session, 200)?;
    let token = session.json()["token"].as_str().unwrap().to_owned();
    check(
        "me",
        &send_auth("GET", &front.url("/api/v1/me"), &token),
        200,
    )
}

#[test]
fn requests_spread_over_both_backends() {
    let (a, b) = (Backend::start(), Backend::start());
    let front = Front::start(&[a.addr, b.addr]);
    for _ in 0..20 {
        register(&front, &unique_name("spread"), PASSWORD);
    }
    // Each backend counts what it served itself, on its own admin listener.
    let text = metrics_text(&front);
    let (on_a, on_b) = (tcp_requests(&a, "register"), tcp_requests(&b, "register"));
    assert_eq!(on_a + on_b, 20.0);
    assert!(
        on_a >= 5.0 && on_b >= 5.0,
        "a served {on_a}, b served {on_b}"
    );
    for backend in [a.addr, b.addr] {
        assert!(pool(&text, "size", backend) >= 1.0);
    }
}

#[test]
fn a_stopped_backend_is_routed_around() {
    let (a, b) = (Backend::start(), Backend::start());
    let mut config = config(&[a.addr, b.addr]);
    // Enough workers for several sockets to each backend at once, as under real load.
    config.workers = 16;
    let front = Arc::new(Front::start_with(config, Duration::from_secs(5)));

    // Clients keep going while B stops; each outcome is kept with its start time.
    const CLIENTS: usize = 12;
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (front, stop, rounds) =
                (Arc::clone(&front), Arc::clone(&stop), Arc::clone(&rounds));
            thread::spawn(move || {
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    outcomes.push((started, one_of_each(&front)));
                    rounds.fetch_add(1, Ordering::SeqCst);
                }
                outcomes
            })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(10), || tcp_requests(&b, "login") >= 5.0),
        "B served nothing before its stop"
    );
    b.stop();
    let stopped = Instant::now();
    // The rounds under way at the stop (one per client at most) end after it too; past
    // those, four rounds per client that began after the stop.
    let at_stop = rounds.load(Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(20), || {
            rounds.load(Ordering::SeqCst) >= at_stop + 5 * CLIENTS
        }),
        "the clients stalled after the stop"
    );
    stop.store(true, Ordering::SeqCst);
    let outcomes: Vec<_> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();

    let failed_at_stop: Vec<_> = outcomes
        .iter()
        .filter(|(started, outcome)| *started < stopped && outcome.is_err())
        .collect();
    let failed_after: Vec<_> = outcomes
        .iter()
        .filter(|(started, outcome)| *started >= stopped && outcome.is_err())
        .map(|(_, outcome)| outcome)
        .collect();
    let after = outcomes
        .iter()
        .filter(|(started, _)| *started >= stopped)
        .count();
    assert!(
        after >= 12,
        "only {after} request rounds ran after the stop"
    );
    assert!(
        failed_at_stop.len() <= 5,
        "{} failures around the stop: {failed_at_stop:?}",
        failed_at_stop.len()
    );
    assert!(
        failed_after.is_empty(),
        "{} of {after} rounds failed after the stop: {failed_after:?}",
        failed_after.len()
    );

    // And from now on all of it goes to A, with no failure.
    let on_a = tcp_requests(&a, "login");
    for _ in 0..20 {
        one_of_each(&front).unwrap();
    }
    assert!(tcp_requests(&a, "login") >= on_a + 20.0);
    assert_eq!(get(&front.url("/readyz")).status, 200);
    drop(a);
}

/// A front with 16 workers, after a burst of concurrent clients: several sockets are open and
/// idle to each backend, as after any busy moment.
fn front_after_a_burst(backends: &[SocketAddr]) -> Arc<Front> {
    let mut config = config(backends);
    config.workers = 16;
    let front = Arc::new(Front::start_with(config, Duration::from_secs(5)));
    let burst: Vec<_> = (0..16)
        .map(|_| {
            let front = Arc::clone(&front);
            thread::spawn(move || (0..5).try_for_each(|_| one_of_each(&front)))
        })
        .collect();
    for client in burst {
        client.join().unwrap().unwrap();
    }
    front
}

#[test]
fn a_backend_stopped_while_its_sockets_are_idle_is_routed_around() {
    let (a, b) = (Backend::start(), Backend::start());
    let front = front_after_a_burst(&[a.addr, b.addr]);
    let open = pool(&metrics_text(&front), "idle", b.addr);
    assert!(open >= 5.0, "the burst left only {open} sockets open to B");

    // B stops during a quiet moment: the sockets to it are closed while idle in the pool.
    b.stop();
    for round in 0..10 {
        if let Err(error) = one_of_each(&front) {
            panic!("round {round} after B stopped ({open} sockets to B were open): {error}");
        }
    }
    drop(a);
}

#[test]
fn a_restarted_backend_is_used_again_at_once() {
    let backend = Backend::start();
    let addr = backend.addr;
    let front = front_after_a_burst(&[addr]);
    let open = pool(&metrics_text(&front), "idle", addr);
    assert!(open >= 5.0, "the burst left only {open} sockets open");

    // A restart (a deploy): every one of those sockets is closed by the old process.
    backend.stop();
    let _backend = Backend::start_at(addr);
    for round in 0..10 {
        if let Err(error) = one_of_each(&front) {
            panic!("round {round} after the restart ({open} sockets were open): {error}");
        }
    }
}

#[test]
fn a_backend_down_at_start_is_used_once_it_is_up() {
    let addr = free_addr();
    let front = Front::start(&[addr]);

    // Liveness does not depend on a backend; readiness does.
    assert_eq!(get(&front.url("/healthz")).status, 200);
    let (ready, took) = timed(|| get(&front.url("/readyz")));
    assert_retry_later(&ready, "backend_unavailable");
    assert!(took < UNAVAILABLE_WITHIN, "/readyz took {took:?}");
    for _ in 0..5 {
        let (answer, took) = timed(|| {
            send_json(
                "POST",
                &front.url("/api/v1/users"),
                None,
                &json!({"username": unique_name("down"), "password": PASSWORD}),
            )
        });
        assert_retry_later(&answer, "backend_unavailable");
        assert!(took < UNAVAILABLE_WITHIN, "took {took:?}");
        let (answer, took) = timed(|| send_auth("GET", &front.url("/api/v1/me"), "token"));
        assert_retry_later(&answer, "backend_unavailable");
        assert!(took < UNAVAILABLE_WITHIN, "took {took:?}");
    }

    // The backend comes up late; the same front finds it.
    let _backend = Backend::start_at(addr);
    let came_up = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || get(&front.url("/readyz"))
            .status
            == 200),
        "/readyz never became 200"
    );
    assert!(
        eventually(Duration::from_secs(10), || one_of_each(&front).is_ok()),
        "requests never succeeded"
    );
    assert!(
        came_up.elapsed() < Duration::from_secs(5),
        "took {:?}",
        came_up.elapsed()
    );
    for _ in 0..5 {
        one_of_each(&front).unwrap();
    }
}

#[test]
fn the_only_backend_stopping_gets_503_within_a_second() {
    let stack = Stack::start();
    let (_, _, token) = new_session(&stack.front);
    let Stack { front, backend } = stack;
    backend.stop();

    assert_eq!(get(&front.url("/healthz")).status, 200);
    for _ in 0..5 {
        let (answer, took) = timed(|| send_auth("GET", &front.url("/api/v1/me"), &token));
        assert_retry_later(&answer, "backend_unavailable");
        assert!(took < UNAVAILABLE_WITHIN, "took {took:?}");
        let (answer, took) = timed(|| login(&front, "nobody", PASSWORD));
        assert_retry_later(&answer, "backend_unavailable");
        assert!(took < UNAVAILABLE_WITHIN, "took {took:?}");
    }
    let (ready, took) = timed(|| get(&front.url("/readyz")));
    assert_retry_later(&ready, "backend_unavailable");
    assert!(took < UNAVAILABLE_WITHIN, "took {took:?}");
}

#[test]
fn an_unroutable_backend_gets_503_within_a_second() {
    // TEST-NET-1 (RFC 5737): connects either fail at once or are never answered. With the
    // shipped timeouts, either way must end in a 503 within the bound.
    let config = Config {
        workers: 8,
        backend: BackendConfig {
            addresses: vec!["192.0.2.1:7070".parse().unwrap()],
            ..BackendConfig::default()
        },
        ..Config::default()
    };
    let front = Front::start_with(config, Duration::from_secs(5));
    for _ in 0..3 {
        let (answer, took) = timed(|| login(&front, "nobody", PASSWORD));
        assert_retry_later(&answer, "backend_unavailable");
        assert!(took < UNAVAILABLE_WITHIN, "took {took:?}");
        let (answer, took) = timed(|| get(&front.url("/readyz")));
        assert_retry_later(&answer, "backend_unavailable");
        assert!(took < UNAVAILABLE_WITHIN, "took {took:?}");
    }
    assert_eq!(get(&front.url("/healthz")).status, 200);
}

#[test]
fn an_exhausted_pool_answers_backend_busy() {
    // One socket, held by a request the "backend" never answers.
    let silent = SilentBackend::start();
    let pool_wait = Duration::from_millis(400);
    let mut config = config(&[silent.addr]);
    config.backend.pool_size = 1;
    config.backend.pool_wait = pool_wait;
    config.backend.request_timeout = Duration::from_secs(5);
    let front = Arc::new(Front::start_with(config, Duration::from_secs(5)));

    let holder = {
        let front = Arc::clone(&front);
        thread::spawn(move || timed(|| login(&front, "holder", PASSWORD)))
    };
    assert!(
        eventually(Duration::from_secs(5), || silent.received() > 0),
        "the first request never reached the backend"
    );

    let (busy, took) = timed(|| login(&front, "second", PASSWORD));
    assert_retry_later(&busy, "backend_busy");
    assert!(
        took >= pool_wait.mul_f64(0.8),
        "answered before waiting for a socket: {took:?}"
    );
    assert!(took < pool_wait + Duration::from_secs(1), "took {took:?}");
    let (busy, _) = timed(|| send_auth("GET", &front.url("/api/v1/me"), "token"));
    assert_retry_later(&busy, "backend_busy");

    // The pool's own series show it: its one socket in use, and the waits that timed out.
    let text = metrics_text(&front);
    assert_eq!(pool(&text, "in_use", silent.addr), 1.0, "{text}");
    assert!(pool(&text, "timeouts_total", silent.addr) >= 2.0, "{text}");

    // The holder itself gets its timeout.
    let (first, took) = holder.join().unwrap();
    first.assert_error(504, "backend_timeout");
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

#[test]
fn a_front_with_another_tier_key_is_refused_and_gets_503_and_one_with_ours_shakes_hands_once_per_socket()
 {
    let backend = Backend::start();
    let other = proto::TierKey::from_secret(b"not the backends' tier secret").unwrap();
    let stranger = Front::start_keyed(config(&[backend.addr]), Duration::from_secs(5), other);
    for _ in 0..3 {
        let (answer, took) = timed(|| login(&stranger, "nobody", PASSWORD));
        assert_retry_later(&answer, "backend_unavailable");
        assert!(took < UNAVAILABLE_WITHIN, "took {took:?}");
    }
    assert_eq!(tcp_requests(&backend, "login"), 0.0, "nothing was served");
    assert!(tcp_requests(&backend, "hello") >= 3.0);
    assert_eq!(tcp_requests(&backend, "authenticate"), 0.0);

    let front = Front::start(&[backend.addr]);
    for _ in 0..40 {
        send_auth("GET", &front.url("/api/v1/me"), "v1.not-a-session")
            .assert_error(401, "unauthorized");
    }
    // One handshake per pooled socket, not per request (16 sockets at most).
    let handshakes = tcp_requests(&backend, "authenticate");
    assert!(
        (1.0..=16.0).contains(&handshakes),
        "{handshakes} handshakes for 40 requests"
    );
}

#[test]
fn a_backend_at_its_connection_bound_answers_backend_busy() {
    // tcp-server with one worker, whose one connection a client holds.
    let backend = Backend::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), 1);
    let mut holder = TcpStream::connect(backend.addr).unwrap();
    let mut buf = Vec::new();
    proto::handshake(
        &mut holder,
        &testkit::tier_key(),
        [7; proto::NONCE_LEN],
        &mut buf,
        proto::DEFAULT_MAX_FRAME_LEN,
    )
    .unwrap();
    proto::write_frame(
        &mut holder,
        7,
        &proto::Trace::NONE,
        &Request::Ping(proto::Ping),
        &mut buf,
    )
    .unwrap();
    holder
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let pong =
        proto::read_frame::<_, Response>(&mut holder, &mut buf, proto::DEFAULT_MAX_FRAME_LEN)
            .unwrap();
    assert_eq!(
        pong.message,
        Response::Ping(()),
        "the holder is being served"
    );

    let front = Front::start(&[backend.addr]);
    for _ in 0..3 {
        let (answer, took) = timed(|| login(&front, "nobody", PASSWORD));
        assert_retry_later(&answer, "backend_busy");
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }

    // Once the holder leaves, the backend serves the front again.
    drop(holder);
    assert!(
        eventually(Duration::from_secs(10), || one_of_each(&front).is_ok()),
        "the backend never served the front after the holder left"
    );
}

#[test]
fn a_backend_that_never_answers_gets_504_after_the_request_timeout() {
    let silent = SilentBackend::start();
    let timeout = Duration::from_secs(1);
    let mut config = config(&[silent.addr]);
    config.backend.request_timeout = timeout;
    let front = Front::start_with(config, Duration::from_secs(5));

    // Both a request that may be retried and one that may not: neither waits past the timeout.
    type Call = fn(&Front) -> Answer;
    let requests: [(&str, Call); 2] = [
        ("register", |front| {
            send_json(
                "POST",
                &front.url("/api/v1/users"),
                None,
                &json!({"username": unique_name("slow"), "password": PASSWORD}),
            )
        }),
        ("me", |front| {
            send_auth("GET", &front.url("/api/v1/me"), "token")
        }),
    ];
    for (name, request) in requests {
        let (answer, took) = timed(|| request(&front));
        answer.assert_error(504, "backend_timeout");
        assert!(
            took >= timeout.mul_f64(0.9),
            "{name}: answered before the timeout: {took:?}"
        );
        assert!(
            took < timeout + Duration::from_secs(2),
            "{name}: took {took:?}"
        );
    }
    assert!(silent.received() > 0);
}

#[test]
fn over_tls_the_api_works_with_one_handshake_per_pooled_socket_and_a_mismatch_is_503() {
    use service::link::{self, TlsFiles};
    let ca = testkit::tier_ca("front");
    let backend = Backend::start_tls(
        link::server_config(&TlsFiles::in_dir(&ca, "tcp-server")).expect("tcp-server's TLS"),
        16,
    );
    let mut tls_config = config(&[backend.addr]);
    tls_config.backend.tls = Some(http_server::BackendTls {
        config: link::client_config(&TlsFiles::in_dir(&ca, "http-server"))
            .expect("http-server's TLS"),
        server_name: None,
    });
    let pool_size = tls_config.backend.pool_size;
    let front = Front::start_with(tls_config, Duration::from_secs(5));
    let (_, _, token) = new_session(&front);
    for _ in 0..50 {
        assert_eq!(
            send_auth("GET", &front.url("/api/v1/me"), &token).status,
            200
        );
    }
    // Each socket shakes hands once: 52 requests, at most a pool's worth of handshakes.
    let hellos = tcp_requests(&backend, "hello");
    assert!(
        (1.0..=f64::from(pool_size)).contains(&hellos),
        "{hellos} handshakes for 52 requests"
    );

    // A front without TLS, or trusting another CA, is refused by TLS: 503, not a hang.
    let other = testkit::tier_ca("front-other");
    let mut suspicious = config(&[backend.addr]);
    suspicious.backend.tls = Some(http_server::BackendTls {
        config: link::client_config(&TlsFiles {
            ca: other.join("ca.crt"),
            ..TlsFiles::in_dir(&ca, "http-server")
        })
        .unwrap(),
        server_name: None,
    });
    for front in [
        Front::start(&[backend.addr]),
        Front::start_with(suspicious, Duration::from_secs(5)),
    ] {
        send_auth("GET", &front.url("/api/v1/me"), &token).assert_error(503, "backend_unavailable");
    }
}

#[test]
fn over_tls_a_backend_at_its_connection_bound_is_answered_busy_not_unavailable() {
    use service::link::{self, Link, TlsFiles};
    let ca = testkit::tier_ca("bound");
    let backend = Backend::start_tls(
        link::server_config(&TlsFiles::in_dir(&ca, "tcp-server")).unwrap(),
        1,
    );
    let client_tls = link::client_config(&TlsFiles::in_dir(&ca, "http-server")).unwrap();
    // Another peer holds the only worker, authenticated and idle.
    let stream = TcpStream::connect(backend.addr).unwrap();
    let name = link::server_name("127.0.0.1").unwrap();
    let mut holder = Link::connect(stream, Some((&client_tls, &name))).unwrap();
    let mut buf = Vec::new();
    proto::handshake(
        &mut holder,
        &testkit::tier_key(),
        [1; proto::NONCE_LEN],
        &mut buf,
        proto::DEFAULT_MAX_FRAME_LEN,
    )
    .unwrap();
    let mut config = config(&[backend.addr]);
    config.backend.tls = Some(http_server::BackendTls {
        config: client_tls,
        server_name: None,
    });
    let front = Front::start_with(config, Duration::from_secs(5));
    // tcp-server closes each new connection at once (a Busy frame would need TLS first):
    // http-server takes that for the refusal it is.
    let answer = send_json(
        "POST",
        &front.url("/api/v1/sessions"),
        None,
        &json!({"username": "nobody-here", "password": PASSWORD}),
    );
    answer.assert_error(503, "backend_busy");
    assert!(answer.header("Retry-After").is_some());
    drop(holder);
}
