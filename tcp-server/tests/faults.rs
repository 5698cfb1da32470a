//! Faults of the database seen from tcp-server: PostgreSQL down when the server starts, then up.
//! The database is reached through a relay the test opens late, so the shared test cluster
//! itself never stops.

use std::io;
use std::net::{Shutdown as NetShutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use proto::{ErrorCode, Request, Response, Secret};

use crate::support::{FAST, TestServer, context_for, database_url, unique_name};

/// Forwards every connection accepted on `listener` to `upstream`, byte for byte.
fn relay(listener: TcpListener, upstream: SocketAddr) {
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                thread::spawn(move || {
                    let _ = io::copy(&mut from, &mut to);
                    let _ = to.shutdown(NetShutdown::Write);
                });
            }
        }
    });
}

/// The test database's URL over TCP, and the server's address in it. scripts/postgres's URL
/// names the cluster's unix socket directory (a percent-encoded host) and its port; the cluster
/// also listens on 127.0.0.1 at that port, which a relay can stand in front of.
fn over_tcp(url: &str) -> (String, SocketAddr) {
    let (head, rest) = url.split_once('@').expect("a user in the test URL");
    let (host_port, tail) = rest.split_once('/').expect("a database in the test URL");
    let (host, port) = host_port.rsplit_once(':').expect("a port in the test URL");
    let host = if host.to_ascii_lowercase().starts_with("%2f") {
        "127.0.0.1"
    } else {
        host
    };
    let addr = format!("{host}:{port}")
        .parse()
        .expect("the test URL names an IP address or a socket directory, and a port");
    (format!("{head}@{addr}/{tail}"), addr)
}

#[test]
fn a_server_started_without_its_database_is_not_ready_and_serves_once_it_is_up() {
    let (real, real_addr) = over_tcp(&database_url());
    // A free port that nothing listens on yet: the database is "down".
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let via_relay = real.replacen(&real_addr.to_string(), &port.to_string(), 1);
    let server = TestServer::start_with(4, context_for(&via_relay, FAST, Duration::from_secs(60)));
    let mut client = server.client();

    let started = Instant::now();
    let Response::Error(not_ready) = client.call(Request::Ping(proto::Ping)) else {
        panic!("Ping answered Pong without a database");
    };
    assert_eq!(not_ready.code, ErrorCode::Unavailable);
    assert!(not_ready.retry_after_ms > 0);
    let name = unique_name("late");
    let register = || {
        Request::Register(proto::Register {
            username: name.clone(),
            password: Secret::new("correct horse"),
            nickname: None,
            client: None,
        })
    };
    let Response::Error(refused) = client.call(register()) else {
        panic!("registered without a database");
    };
    assert_eq!(refused.code, ErrorCode::Unavailable);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answers come at once while the database is down"
    );

    // The database comes up: the same server, same connection, serves without a restart.
    relay(TcpListener::bind(port).unwrap(), real_addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.call(Request::Ping(proto::Ping)) != Response::Ping(()) {
        assert!(Instant::now() < deadline, "never became ready");
        thread::sleep(Duration::from_millis(50));
    }
    assert!(matches!(client.call(register()), Response::Register(_)));
    let login = client.call(Request::Login(proto::Login {
        username: name,
        password: Secret::new("correct horse"),
        client: None,
        device: None,
    }));
    assert!(matches!(login, Response::Login(_)), "{login:?}");
}
