//! Hostile clients against both tiers: nobody without a session can stall the service with a
//! trickled upload, and with a session only a bounded share of the workers; the login throttle
//! lets an owner with a device token in while an attacker floods the account, and refuses a
//! spray of usernames from one address; registrations are limited; account data is never
//! cached.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use http_server::Config;
use serde_json::json;
use socket2::{Domain, Socket, Type};
use tcp_server::throttle::ThrottleConfig;

use crate::support::*;

const PASSWORD: &str = "a long enough password";

/// A connection to `addr` from the loopback address `source` (Linux accepts all of 127/8), so
/// one test can be many clients.
fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let source: IpAddr = source.parse().unwrap();
    socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

/// A JSON request from `source`, on a connection of its own.
fn send_from(
    source: &str,
    front: &Front,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> Answer {
    let body = serde_json::to_vec(body).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    let mut stream = connect_from(source, front.addr);
    exchange(&mut stream, &bytes, Duration::from_secs(10)).expect("an answer")
}

fn login_from(source: &str, front: &Front, username: &str, password: &str) -> Answer {
    send_from(
        source,
        front,
        "POST",
        "/api/v1/sessions",
        &[],
        &json!({"username": username, "password": password}),
    )
}

fn register_from(source: &str, front: &Front, username: &str) -> Answer {
    send_from(
        source,
        front,
        "POST",
        "/api/v1/users",
        &[],
        &json!({"username": username, "password": PASSWORD}),
    )
}

fn retry_after(answer: &Answer) -> u64 {
    answer
        .header("Retry-After")
        .expect("a 429 says when to retry")
        .parse()
        .unwrap()
}

/// The 99th percentile of `latencies` (sorted here).
fn p99(latencies: &mut [Duration]) -> Duration {
    assert!(!latencies.is_empty(), "no normal request was answered");
    latencies.sort();
    latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)]
}

/// 20 normal clients: each reads its profile over a keep-alive connection, again and again,
/// for `duration`, while a probe asks `/healthz` every 50 ms. Returns the profile latencies, the
/// number of profile answers that were not 200 (or did not come), and the slowest `/healthz`
/// (`None` if one was not answered 200 within a second).
fn normal_clients(
    front: &Front,
    tokens: &[String],
    duration: Duration,
) -> (Vec<Duration>, usize, Option<Duration>) {
    let latencies = Mutex::new(Vec::new());
    let errors = AtomicUsize::new(0);
    let health = Mutex::new(Some(Duration::ZERO));
    thread::scope(|scope| {
        for token in tokens {
            let (latencies, errors) = (&latencies, &errors);
            scope.spawn(move || {
                let request = format!(
                    "GET /api/v1/me HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n"
                );
                let mut stream = TcpStream::connect(front.addr).unwrap();
                let mut mine = Vec::new();
                let until = Instant::now() + duration;
                while Instant::now() < until {
                    let started = Instant::now();
                    match exchange(&mut stream, request.as_bytes(), Duration::from_secs(5)) {
                        Some(answer) if answer.status == 200 => mine.push(started.elapsed()),
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            stream = TcpStream::connect(front.addr).unwrap();
                        }
                    }
                }
                latencies.lock().unwrap().extend(mine);
            });
        }
        let health = &health;
        scope.spawn(move || {
            let until = Instant::now() + duration;
            while Instant::now() < until {
                let mut stream = TcpStream::connect(front.addr).unwrap();
                let started = Instant::now();
                let answer = exchange(
                    &mut stream,
                    b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                    Duration::from_secs(1),
                );
                let mut slowest = health.lock().unwrap();
                *slowest = match (answer, *slowest) {
                    (Some(answer), Some(so_far)) if answer.status == 200 => {
                        Some(so_far.max(started.elapsed()))
                    }
                    _ => None,
                };
                drop(slowest);
                thread::sleep(Duration::from_millis(50));
            }
        });
    });
    let health = *health.lock().unwrap();
    (latencies.into_inner().unwrap(), errors.into_inner(), health)
}

/// What one trickled upload got: its status (`None`: the connection closed, or nothing came
/// within 20 s) and how long the answer took.
type Trickled = (Option<u16>, Duration);

/// An uploader that declares a 2 MB picture and sends it a byte a second, on one connection
/// after another (a new one each second at most), until `stop`: the attack that once froze
/// every worker.
fn trickler(addr: SocketAddr, token: String, stop: Arc<AtomicBool>) -> JoinHandle<Vec<Trickled>> {
    thread::spawn(move || {
        let head = format!(
            "PUT /api/v1/me/picture HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: image/png\r\nContent-Length: 2000000\r\n\r\n"
        );
        let mut results = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let started = Instant::now();
            let _ = stream.write_all(head.as_bytes());
            let mut received = Vec::new();
            let mut buf = [0u8; 4096];
            let mut next_byte = started;
            let status = loop {
                if let Some((answer, _)) = parse_answer(&received) {
                    break Some(answer.status);
                }
                if started.elapsed() > Duration::from_secs(20) {
                    break None;
                }
                if Instant::now() >= next_byte {
                    let _ = stream.write_all(b"x");
                    next_byte += Duration::from_secs(1);
                }
                match stream.read(&mut buf) {
                    Ok(0) => break None,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                    Err(error)
                        if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break None,
                }
            };
            results.push((status, started.elapsed()));
            drop(stream);
            // At the attack's own pace: a new connection when the next byte is due.
            thread::sleep(next_byte.saturating_duration_since(Instant::now()));
        }
        results
    })
}

/// Runs 64 tricklers with `token` beside the normal clients; returns what the tricklers got
/// and what the normal clients saw.
fn under_trickle(
    front: &Front,
    token: &str,
    tokens: &[String],
) -> (Vec<Trickled>, (Vec<Duration>, usize, Option<Duration>)) {
    let stop = Arc::new(AtomicBool::new(false));
    let tricklers: Vec<_> = (0..64)
        .map(|_| trickler(front.addr, token.to_owned(), Arc::clone(&stop)))
        .collect();
    let seen = normal_clients(front, tokens, Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let trickled = tricklers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    (trickled, seen)
}

#[test]
fn trickled_uploads_hold_no_worker_without_a_session_and_a_bounded_share_with_one() {
    let backend = Backend::start();
    let front = Front::start_with(
        Config {
            body_slots: 2,
            ..config(&[backend.addr])
        },
        Duration::from_secs(5),
    );
    let tokens: Vec<String> = (0..20).map(|_| new_session(&front).2).collect();
    let uploader = new_session(&front).2;

    let (mut alone, errors, health) = normal_clients(&front, &tokens, Duration::from_secs(4));
    assert_eq!(errors, 0);
    assert!(health.is_some());
    let alone = p99(&mut alone);
    // Tricklers holding the workers the normal clients need would make those wait until a
    // trickler is cut off for its pace, a second or more. The line is far below that, and
    // above what a small machine shared with the other tests adds to a p99 of a few
    // milliseconds between two 4-second windows (tens of milliseconds at worst): twice the
    // p99 alone, and 100 ms more.
    let allowed = 2 * alone + Duration::from_millis(100);

    for (token, expected) in [("x", &[401][..]), (uploader.as_str(), &[503, 408][..])] {
        let (trickled, (mut latencies, errors, health)) = under_trickle(&front, token, &tokens);
        let with = p99(&mut latencies);
        eprintln!(
            "token {}: {} trickled uploads answered; normal clients p99 {with:?} (alone {alone:?}), \
             {errors} errors, slowest /healthz {health:?}",
            if token == "x" { "garbage" } else { "valid" },
            trickled.len()
        );
        assert_eq!(errors, 0, "every normal request was answered 200");
        let health = health.expect("/healthz answered 200 within a second throughout");
        assert!(health < Duration::from_secs(1));
        assert!(
            with <= allowed,
            "normal p99 {with:?} with the tricklers, {alone:?} alone"
        );
        assert!(trickled.len() >= 64);
        for (status, took) in &trickled {
            let status =
                status.unwrap_or_else(|| panic!("a trickled upload got no answer in {took:?}"));
            assert!(expected.contains(&status), "{status} for token {token}");
            if status != 408 {
                // Refused before any of the body was read: at once.
                assert!(*took < Duration::from_secs(2), "{status} took {took:?}");
            }
        }
        if token != "x" {
            // The two slots' holders were cut off for arriving too slowly, the rest turned away.
            assert!(trickled.iter().any(|(status, _)| *status == Some(408)));
            assert!(trickled.iter().any(|(status, _)| *status == Some(503)));
        }
    }
}

#[test]
fn a_refused_upload_is_answered_before_its_body_and_the_connection_then_closes() {
    let stack = Stack::start();
    let front = &stack.front;
    let mut stream = TcpStream::connect(front.addr).unwrap();
    // A forged token and a body that will never come: answered at once, without a byte of it.
    let answer = exchange(
        &mut stream,
        b"PUT /api/v1/me/picture HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer forged\r\n\
          Content-Type: image/png\r\nContent-Length: 1000000\r\n\r\n",
        Duration::from_secs(2),
    )
    .expect("answered without the body");
    answer.assert_error(401, "unauthorized");
    assert_eq!(answer.header("Connection"), Some("close"));
    // The connection ends by itself soon after (what the client still sends is thrown away).
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = stream.read_to_end(&mut rest);
    assert!(read.is_ok() && rest.is_empty(), "{read:?} {rest:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_still_serving(front, &new_session(front).0, "a long enough password");
}

#[test]
fn a_large_upload_with_a_valid_session_is_read_and_the_connection_then_closes() {
    let stack = Stack::start();
    let front = &stack.front;
    let (_, _, token) = new_session(front);
    let picture = include_bytes!("data/noise128.png");
    assert!(
        picture.len() > tiny_http::PRE_READ_LIMIT,
        "over the pre-read"
    );
    let mut stream = TcpStream::connect(front.addr).unwrap();
    let mut request = format!(
        "PUT /api/v1/me/picture HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: image/png\r\nContent-Length: {}\r\n\r\n",
        picture.len()
    )
    .into_bytes();
    request.extend_from_slice(picture);
    let answer = exchange(&mut stream, &request, Duration::from_secs(10)).expect("an answer");
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.header("Connection"), Some("close"));
    let url = answer.json()["picture_url"].as_str().unwrap().to_owned();
    assert_eq!(get(&front.url(&url)).status, 200);
}

#[test]
fn an_owner_with_a_device_token_logs_in_at_once_while_an_attacker_floods_the_account() {
    let backend = Backend::start_with_throttle(&ThrottleConfig::DEFAULT);
    let front = Front::start(&[backend.addr]);
    let owner = unique_name("owner");
    register(&front, &owner, PASSWORD);
    // The owner logged in before from this device (API client), and from the pages (cookie).
    let device = login(&front, &owner, PASSWORD).json()["device_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let pages = send(
        "POST",
        &front.url("/api/v1/sessions?cookie=true"),
        &[
            ("Content-Type", "application/json"),
            ("Origin", &front.base),
        ],
        Some(&serde_json::to_vec(&json!({"username": owner, "password": PASSWORD})).unwrap()),
    );
    let device_cookie = pages
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
        .find_map(|(_, value)| value.strip_prefix("gatehouse_device="))
        .and_then(|rest| rest.split(';').next())
        .expect("the pages' login sets the device cookie")
        .to_owned();

    // The attacker guesses from four threads for as long as the owner needs.
    let stop = AtomicBool::new(false);
    let (judged, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    match login(&front, &owner, "a wrong guess").status {
                        401 => judged.fetch_add(1, Ordering::Relaxed),
                        429 => refused.fetch_add(1, Ordering::Relaxed),
                        other => panic!("the attacker got {other}"),
                    };
                }
            });
        }
        // Once the account is locked for unrecognised clients...
        assert!(eventually(Duration::from_secs(10), || refused
            .load(Ordering::Relaxed)
            > 0));
        login(&front, &owner, PASSWORD).assert_error(429, "too_many_requests");
        // ...the owner's devices get in at once with the right password.
        for _ in 0..5 {
            let (answer, took) = timed(|| {
                send(
                    "POST",
                    &front.url("/api/v1/sessions"),
                    &[
                        ("Content-Type", "application/json"),
                        ("Device-Token", &device),
                    ],
                    Some(
                        &serde_json::to_vec(&json!({"username": owner, "password": PASSWORD}))
                            .unwrap(),
                    ),
                )
            });
            assert_eq!(
                answer.status,
                200,
                "{}",
                String::from_utf8_lossy(&answer.body)
            );
            assert!(took < Duration::from_secs(1), "{took:?}");
        }
        let cookie = format!("gatehouse_device={device_cookie}");
        let (answer, took) = timed(|| {
            send(
                "POST",
                &front.url("/api/v1/sessions?cookie=true"),
                &[
                    ("Content-Type", "application/json"),
                    ("Origin", &front.base),
                    ("Cookie", &cookie),
                ],
                Some(
                    &serde_json::to_vec(&json!({"username": owner, "password": PASSWORD})).unwrap(),
                ),
            )
        });
        assert_eq!(answer.status, 200);
        assert!(took < Duration::from_secs(1), "{took:?}");
        stop.store(true, Ordering::Relaxed);
    });
    // However many guesses were sent at once, exactly the limit was judged.
    assert_eq!(judged.load(Ordering::Relaxed), 10);
    assert!(refused.load(Ordering::Relaxed) > 0);
}

/// The same wrong guesses at one account, through one http-server and one tcp-server, then
/// through two of each (taking turns): the second is refused exactly as the first, because
/// every login for one username goes to the same tcp-server, whose throttle sees them all.
/// Logins for other usernames still spread over both tcp-servers.
#[test]
fn guesses_through_two_fronts_and_two_backends_are_refused_as_through_one_of_each() {
    let guesses = |fronts: usize, backends: usize| -> Vec<u16> {
        let backends: Vec<Backend> = (0..backends)
            .map(|_| Backend::start_with_throttle(&ThrottleConfig::DEFAULT))
            .collect();
        let addresses: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
        let fronts: Vec<Front> = (0..fronts).map(|_| Front::start(&addresses)).collect();
        let name = unique_name("guessed");
        register(&fronts[0], &name, PASSWORD);
        (0..20)
            .map(|i| {
                // Case does not matter to the throttle, nor to the routing.
                let spelled = if i % 2 == 0 {
                    name.to_uppercase()
                } else {
                    name.clone()
                };
                login(&fronts[i % fronts.len()], &spelled, "a wrong guess").status
            })
            .collect()
    };
    let one = guesses(1, 1);
    assert!(one.contains(&401) && one.contains(&429), "{one:?}");
    assert_eq!(guesses(2, 2), one);

    // Different usernames land on both backends.
    let backends = [Backend::start(), Backend::start()];
    let front = Front::start(&[backends[0].addr, backends[1].addr]);
    for i in 0..20 {
        login(
            &front,
            &unique_name(&format!("spread{i}x")),
            "a wrong guess",
        );
    }
    for backend in &backends {
        let text = get(&format!("http://{}/metrics", backend.admin)).body;
        let scrape = testkit::parse_metrics(&String::from_utf8_lossy(&text));
        let logins = testkit::metric(
            &scrape,
            "gatehouse_tcp_requests_total",
            &[("kind", "login")],
        );
        assert!(
            logins.is_some_and(|n| n >= 2.0),
            "{} served {logins:?} logins",
            backend.addr
        );
    }
}

#[test]
fn one_address_spraying_usernames_gets_429_and_others_do_not() {
    let backend = Backend::start_with_throttle(&ThrottleConfig::DEFAULT);
    let front = Front::start(&[backend.addr]);
    let real = unique_name("sprayed");
    register(&front, &real, PASSWORD);
    // 100 failed logins over 100 names from one address: each name alone is far from its own
    // limit, but the address reaches its limit over all of them.
    for i in 0..100 {
        let answer = login_from(
            "127.0.0.21",
            &front,
            &unique_name(&format!("spray{i}x")),
            "123456",
        );
        answer.assert_error(401, "invalid_credentials");
    }
    let refused = login_from("127.0.0.21", &front, &real, PASSWORD);
    refused.assert_error(429, "too_many_requests");
    assert!(
        (1..=120).contains(&retry_after(&refused)),
        "{}",
        retry_after(&refused)
    );
    // Another address is not affected, nor the account itself.
    assert_eq!(
        login_from("127.0.0.22", &front, &real, PASSWORD).status,
        200
    );
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
    let backend = Backend::start_with_throttle(&ThrottleConfig::DEFAULT);
    let front = Front::start_with(
        Config {
            trusted_proxies: vec!["127.0.0.31".parse().unwrap()],
            ..config(&[backend.addr])
        },
        Duration::from_secs(5),
    );
    let real = unique_name("proxied");
    register(&front, &real, PASSWORD);
    // Through the proxy, a client spraying names is counted by its own address...
    let forwarded = |client: &str| format!("198.51.100.9, {client}");
    for i in 0..100 {
        let answer = send_from(
            "127.0.0.31",
            &front,
            "POST",
            "/api/v1/sessions",
            &[("X-Forwarded-For", &forwarded("203.0.113.5"))],
            &json!({"username": unique_name(&format!("p{i}x")), "password": "123456"}),
        );
        answer.assert_error(401, "invalid_credentials");
    }
    let through = |client: &str| {
        send_from(
            "127.0.0.31",
            &front,
            "POST",
            "/api/v1/sessions",
            &[("X-Forwarded-For", &forwarded(client))],
            &json!({"username": real, "password": PASSWORD}),
        )
    };
    through("203.0.113.5").assert_error(429, "too_many_requests");
    // ...so the proxy's other clients are not.
    assert_eq!(through("203.0.113.6").status, 200);
    // From a peer that is not a trusted proxy, the header proves nothing: that peer sprayed
    // nothing, and naming the locked address does not lock it.
    let direct = send_from(
        "127.0.0.32",
        &front,
        "POST",
        "/api/v1/sessions",
        &[("X-Forwarded-For", "203.0.113.5")],
        &json!({"username": real, "password": PASSWORD}),
    );
    assert_eq!(direct.status, 200);
}

#[test]
fn registrations_past_the_limit_of_an_address_get_429() {
    let backend = Backend::start_with_throttle(&ThrottleConfig::DEFAULT);
    let front = Front::start(&[backend.addr]);
    // 20 at once from one address, then one per 10 seconds.
    for _ in 0..20 {
        assert_eq!(
            register_from("127.0.0.41", &front, &unique_name("bulk")).status,
            201
        );
    }
    let refused = register_from("127.0.0.41", &front, &unique_name("bulk"));
    refused.assert_error(429, "too_many_requests");
    assert!(
        (9..=10).contains(&retry_after(&refused)),
        "{}",
        retry_after(&refused)
    );
    // Another address registers as usual.
    assert_eq!(
        register_from("127.0.0.42", &front, &unique_name("other")).status,
        201
    );
    // Listing taken usernames through 409s counts the same: 20 answers, then 429.
    let taken = unique_name("taken");
    assert_eq!(register_from("127.0.0.43", &front, &taken).status, 201);
    for _ in 0..19 {
        register_from("127.0.0.43", &front, &taken).assert_error(409, "username_taken");
    }
    register_from("127.0.0.43", &front, &taken).assert_error(429, "too_many_requests");
}

#[test]
fn registrations_past_the_global_limit_get_429_from_every_address() {
    let backend = Backend::start_with_throttle(&ThrottleConfig {
        register_global_rate: 1,
        register_global_burst: 5,
        ..ThrottleConfig::DEFAULT
    });
    let front = Front::start(&[backend.addr]);
    for i in 0..5 {
        let source = format!("127.0.1.{i}");
        assert_eq!(
            register_from(&source, &front, &unique_name("wave")).status,
            201
        );
    }
    for i in 5..10 {
        let source = format!("127.0.1.{i}");
        register_from(&source, &front, &unique_name("wave")).assert_error(429, "too_many_requests");
    }
}

#[test]
fn account_data_is_never_cached_and_pictures_for_an_hour() {
    let stack = Stack::start();
    let front = &stack.front;
    let username = unique_name("cache");
    let registered = send_json(
        "POST",
        &front.url("/api/v1/users"),
        None,
        &json!({"username": username, "password": PASSWORD}),
    );
    assert_eq!(registered.status, 201);
    let session = login(front, &username, PASSWORD);
    let token = session.json()["token"].as_str().unwrap().to_owned();
    let me = send_auth("GET", &front.url("/api/v1/me"), &token);
    let renamed = send_json(
        "PATCH",
        &front.url("/api/v1/me"),
        Some(&token),
        &json!({"nickname": "N"}),
    );
    let auth = format!("Bearer {token}");
    let picture = send(
        "PUT",
        &front.url("/api/v1/me/picture"),
        &[("Authorization", &auth), ("Content-Type", "image/png")],
        Some(&png()),
    );
    let unauthorized = send_auth("GET", &front.url("/api/v1/me"), "forged");
    let wrong = login(front, &username, "not the password");
    for (what, answer) in [
        ("register", &registered),
        ("login", &session),
        ("profile", &me),
        ("nickname", &renamed),
        ("picture upload", &picture),
        ("401", &unauthorized),
        ("failed login", &wrong),
    ] {
        assert_eq!(answer.header("Cache-Control"), Some("no-store"), "{what}");
    }
    let url = picture.json()["picture_url"].as_str().unwrap().to_owned();
    let served = get(&front.url(&url));
    assert_eq!(served.status, 200);
    assert_eq!(
        served.header("Cache-Control"),
        Some("public, max-age=3600, immutable")
    );
    // A revalidation is answered 304 while the picture exists, and 404 once it is replaced.
    let etag = served.header("ETag").unwrap().to_owned();
    let revalidate = || send("GET", &front.url(&url), &[("If-None-Match", &etag)], None);
    assert_eq!(revalidate().status, 304);
    let replaced = send(
        "PUT",
        &front.url("/api/v1/me/picture"),
        &[("Authorization", &auth), ("Content-Type", "image/png")],
        Some(include_bytes!("data/avatar.png")),
    );
    assert_eq!(replaced.status, 200);
    assert_ne!(replaced.json()["picture_url"].as_str(), Some(url.as_str()));
    revalidate().assert_error(404, "not_found");
}

/// More logins at once than one worker can verify at OWASP's strength within the queue bound:
/// those that waited past it get a quick 503 `overloaded` with `Retry-After` instead of a late
/// answer, the others log in, nothing times out, and `/healthz` is answered throughout.
#[test]
fn requests_that_waited_past_the_queue_bound_get_503_overloaded_and_health_checks_do_not() {
    let mut settings = testkit::settings();
    settings.password = tcp_server::password::PasswordParams::OWASP;
    let backend = Backend::start_with_context(testkit::context_with(&settings));
    let bound = Duration::from_millis(100);
    let config = Config {
        workers: 1,
        max_queue_wait: bound,
        ..config(&[backend.addr])
    };
    let front = Front::start_with(config, Duration::from_secs(5));
    let name = unique_name("queue");
    register(&front, &name, PASSWORD);
    let answers: Vec<(Answer, Duration)> = thread::scope(|scope| {
        let logins: Vec<_> = (0..48)
            .map(|_| scope.spawn(|| timed(|| login(&front, &name, PASSWORD))))
            .collect();
        // Sent while the logins queue: waits like them, and is answered all the same.
        thread::sleep(Duration::from_millis(20));
        let health = get(&front.url("/healthz"));
        assert_eq!(health.status, 200, "/healthz during the overload");
        logins.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut statuses = std::collections::BTreeMap::new();
    for (answer, _) in &answers {
        *statuses.entry(answer.status).or_insert(0) += 1;
        if answer.status == 503 {
            answer.assert_error(503, "overloaded");
            assert_eq!(answer.header("Retry-After"), Some("1"));
        } else {
            assert_eq!(
                answer.status,
                200,
                "{}",
                String::from_utf8_lossy(&answer.body)
            );
        }
    }
    println!("48 logins behind one worker, bound {bound:?}: {statuses:?}");
    assert!(statuses.get(&200).is_some_and(|n| *n >= 1), "{statuses:?}");
    assert!(statuses.get(&503).is_some_and(|n| *n >= 1), "{statuses:?}");
    // A refused request costs the worker nothing: the last answer comes about one bound plus
    // the logins answered after it; without the bound all 48 would wait their turn.
    let slowest = answers.iter().map(|(_, took)| *took).max().unwrap();
    let judged = statuses[&200] as u32;
    assert!(
        slowest < bound * 4 + Duration::from_millis(100) * judged,
        "slowest answer {slowest:?} with {judged} logins judged"
    );
}
