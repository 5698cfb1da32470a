//! loadtest's integration tests: scenario parsing, and whole runs against a small tiny_http
//! server in this process that counts what it receives.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use loadtest::Config;
use loadtest::scenario::{Mix, Step};
use parking_lot::Mutex;

#[test]
fn scenarios_and_mixes_parse() {
    for step in Step::ALL {
        assert_eq!(step.name().parse::<Step>(), Ok(step));
    }
    assert!(
        "login"
            .parse::<Step>()
            .unwrap_err()
            .contains("login-random")
    );
    let mix = Mix::parse("login-random=3, profile=1,update=0").unwrap();
    assert_eq!(mix.total(), 4);
    assert_eq!(
        mix.steps().collect::<Vec<_>>(),
        [Step::LoginRandom, Step::Profile]
    );
    assert!(mix.needs_session());
    let picks: Vec<Step> = (0..4).map(|draw| mix.pick(draw)).collect();
    assert_eq!(
        picks,
        [
            Step::LoginRandom,
            Step::LoginRandom,
            Step::LoginRandom,
            Step::Profile
        ]
    );
    assert_eq!(mix.to_string(), "mixed(login-random=3,profile=1)");
    for bad in [
        "",
        "login-random",
        "login-random=x",
        "nope=1",
        "update=0",
        "health=1,health=2",
    ] {
        assert!(Mix::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(Mix::single(Step::Register).to_string(), "register");
}

/// A server answering every request with 200 and a login-shaped body, counting requests and
/// the distinct client ports (connections) it saw.
struct Target {
    address: SocketAddr,
    requests: Arc<AtomicU64>,
    peers: Arc<Mutex<HashSet<SocketAddr>>>,
    server: Arc<tiny_http::Server>,
}

impl Target {
    fn start() -> Target {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let address = server.server_addr().to_ip().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let peers = Arc::new(Mutex::new(HashSet::new()));
        for _ in 0..4 {
            let (server, requests, peers) = (
                Arc::clone(&server),
                Arc::clone(&requests),
                Arc::clone(&peers),
            );
            thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    requests.fetch_add(1, Ordering::Relaxed);
                    if let Some(peer) = request.remote_addr() {
                        peers.lock().insert(*peer);
                    }
                    let body = r#"{"token":"t","expires_at":"x","user":{}}"#;
                    let _ = request.respond(tiny_http::Response::from_string(body));
                }
            });
        }
        Target {
            address,
            requests,
            peers,
            server,
        }
    }

    fn config(&self, step: Step, connections: usize, rate: Option<f64>) -> Config {
        Config {
            url: format!("http://{}", self.address),
            address: self.address,
            host: self.address.to_string(),
            mix: Mix::single(step),
            users: 1000,
            connections,
            duration: Duration::from_secs(2),
            warmup: Duration::from_secs(1),
            rate,
            timeout: Duration::from_secs(5),
            live: false,
            spread_sources: None,
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

#[test]
fn a_closed_loop_run_uses_exactly_the_requested_connections() {
    let target = Target::start();
    let report = loadtest::run(&target.config(Step::LoginRandom, 20, None)).unwrap();
    assert_eq!(
        target.peers.lock().len(),
        20,
        "one keep-alive connection per thread"
    );
    assert_eq!(report.errors, 0);
    assert!(report.requests > 100, "{report:?}");
    // The warm-up's requests reached the server but are not in the report.
    assert!(target.requests.load(Ordering::Relaxed) > report.requests);
    assert_eq!(report.outcomes.get("200"), Some(&report.requests));
    assert_eq!(report.per_second.len(), 3);
    assert!(report.per_second[0].warmup && !report.per_second[1].warmup);
    assert!(report.latency_ms.p50 <= report.latency_ms.p99);
    assert!(report.latency_ms.p99 <= report.latency_ms.max);
}

#[test]
fn spread_sources_look_like_many_clients_each_sending_its_share() {
    let target = Target::start();
    let config = Config {
        spread_sources: Some(5),
        ..target.config(Step::Register, 4, None)
    };
    let report = loadtest::run(&config).unwrap();
    assert_eq!(report.errors, 0);
    let peers = target.peers.lock();
    let addresses: HashSet<_> = peers.iter().map(SocketAddr::ip).collect();
    let total = target.requests.load(Ordering::Relaxed);
    // Every connection is its own client address, each sending at most 5 requests.
    assert_eq!(addresses.len(), peers.len());
    assert!(
        addresses.len() as u64 >= total.div_ceil(5),
        "{} for {total}",
        addresses.len()
    );
    assert!(
        addresses
            .iter()
            .all(|ip| ip.is_loopback() && ip.to_string() != "127.0.0.1")
    );
}

#[test]
fn an_open_loop_run_sends_at_the_rate() {
    let target = Target::start();
    let report = loadtest::run(&target.config(Step::Health, 10, Some(200.0))).unwrap();
    // 2 measured seconds at 200/s.
    assert!(
        (380..=420).contains(&report.requests),
        "{}",
        report.requests
    );
    assert_eq!(report.errors, 0);
    assert_eq!(report.rate, Some(200.0));
    for second in &report.per_second {
        assert!((180..=220).contains(&second.requests), "{second:?}");
    }
}

#[test]
fn an_unreachable_server_is_counted_as_errors_not_a_hang() {
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let target = Target::start();
    let mut config = target.config(Step::LoginFixed, 4, None);
    config.address = address;
    let report = loadtest::run(&config).unwrap();
    assert!(report.requests > 0);
    assert_eq!(report.errors, report.requests);
    assert!(
        report.outcomes.contains_key("connect"),
        "{:?}",
        report.outcomes
    );
    assert_eq!(report.error_rate, 1.0);
}

#[test]
fn the_report_serialises_and_plots() {
    let target = Target::start();
    let report = loadtest::run(&target.config(Step::LoginFixed, 4, None)).unwrap();
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    for key in [
        "throughput",
        "latency_ms",
        "outcomes",
        "per_second",
        "late_sends",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
    let path = std::env::temp_dir().join(format!("loadtest-{}.svg", std::process::id()));
    loadtest::plot::svg(&report, &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("polyline"),
        "{}",
        &svg[..200.min(svg.len())]
    );
    assert!(report.table().contains("| requests |"));
}

#[test]
fn a_closed_loop_connection_waits_out_a_refusals_retry_after() {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let address = server.server_addr().to_ip().unwrap();
    let requests = Arc::new(AtomicU64::new(0));
    let (answering, counted) = (Arc::clone(&server), Arc::clone(&requests));
    thread::spawn(move || {
        while let Ok(request) = answering.recv() {
            counted.fetch_add(1, Ordering::Relaxed);
            let busy = tiny_http::Response::from_string("{}")
                .with_status_code(503)
                .with_header("Retry-After: 1".parse::<tiny_http::Header>().unwrap());
            let _ = request.respond(busy);
        }
    });
    let config = Config {
        url: format!("http://{address}"),
        address,
        host: address.to_string(),
        mix: Mix::single(Step::LoginRandom),
        users: 1000,
        connections: 2,
        duration: Duration::from_secs(2),
        warmup: Duration::from_secs(1),
        rate: None,
        timeout: Duration::from_secs(5),
        live: false,
        spread_sources: None,
    };
    let report = loadtest::run(&config).unwrap();
    server.unblock();
    // Two connections over three seconds, a second between tries: about six requests, not
    // the thousands an immediate retry makes.
    let sent = requests.load(Ordering::Relaxed);
    assert!((2..=8).contains(&sent), "{sent} requests");
    assert_eq!(report.outcomes.get("503"), Some(&report.requests));
}
