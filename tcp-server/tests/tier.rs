//! The tier link: only a peer that proves it holds the tier key is served, and no one peer
//! address holds more than its share of the workers.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use proto::{
    Authenticate, ErrorCode, HandshakeError, Hello, NONCE_LEN, Request, Response, Secret, TierKey,
};
use socket2::{Domain, Socket, Type};

use crate::support::{CLOSE_WITHIN, Client, FAST, TestServer, context, server_config, unique_name};

/// The operations a stranger would try first, each as the first frame of a connection.
fn strangers_requests(name: &str) -> Vec<Request> {
    vec![
        Request::Register(proto::Register {
            username: name.to_owned(),
            password: Secret::new("correct horse battery staple"),
            nickname: None,
            client: Some("203.0.113.9".to_owned()),
        }),
        Request::Login(proto::Login {
            username: name.to_owned(),
            password: Secret::new("correct horse battery staple"),
            client: Some("203.0.113.9".to_owned()),
            device: None,
        }),
        Request::GetPicture(proto::GetPicture {
            key: "1-0123456789abcdef".to_owned(),
        }),
        Request::GetProfile(proto::GetProfile {
            token: Secret::new("v1.forged"),
        }),
        Request::Ping(proto::Ping),
    ]
}

/// Asserts that the connection is served: a Ping gets its answer, Pong or, while this test's
/// fresh context has not yet reached PostgreSQL on a busy machine, `Unavailable` (Ping is the
/// readiness check). Either way an operation ran for this peer.
fn assert_served(client: &mut Client) {
    match client.call(Request::Ping(proto::Ping)) {
        Response::Ping(()) => {}
        Response::Error(reply) if reply.code == ErrorCode::Unavailable => {}
        other => panic!("a Ping on an authenticated connection was answered {other:?}"),
    }
}

/// Sends `request` first on a fresh connection: the answer must be `Unauthenticated`, then the
/// close.
fn assert_refused_before_the_handshake(server: &TestServer, request: Request) {
    let name = request.name();
    let mut client = Client::connect_unauthenticated(server.addr);
    match client.call(request) {
        Response::Error(reply) => assert_eq!(reply.code, ErrorCode::Unauthenticated, "{name}"),
        other => panic!("{name} before the handshake was answered {other:?}"),
    }
    client.assert_closed_by_server();
}

#[test]
fn a_peer_without_the_tier_key_gets_one_typed_refusal_and_the_close_and_nothing_is_done() {
    let server = TestServer::start(4);
    let name = unique_name("stranger");
    for request in strangers_requests(&name) {
        assert_refused_before_the_handshake(&server, request);
    }
    // The Register was not carried out: with the key, the name is still free.
    let mut client = server.client();
    match client.call(strangers_requests(&name).remove(0)) {
        Response::Register(profile) => assert_eq!(profile.username, name),
        other => panic!("registering the name afterwards: {other:?}"),
    }

    // Another key: refused at Hello, with our key's id named for the operator.
    let other = TierKey::from_secret(b"some other tier secret, long enough").unwrap();
    let mut client = Client::connect_unauthenticated(server.addr);
    let error = client.handshake(&other).unwrap_err();
    let HandshakeError::Refused(reply) = error else {
        panic!("another tier key: {error:?}");
    };
    assert_eq!(reply.code, ErrorCode::Unauthenticated);
    assert!(
        reply.message.contains(testkit::tier_key().id()),
        "{}",
        reply.message
    );
    client.assert_closed_by_server();

    // Our key's id, which is public, without the key: the proof fails.
    let mut client = Client::connect_unauthenticated(server.addr);
    let challenge = client.call(Request::Hello(Hello {
        key_id: testkit::tier_key().id().to_owned(),
        nonce: vec![7; NONCE_LEN],
    }));
    assert!(matches!(challenge, Response::Hello(_)), "{challenge:?}");
    let refused = client.call(Request::Authenticate(Authenticate {
        proof: other.client_proof(&[7; NONCE_LEN], &[0; NONCE_LEN]),
    }));
    assert!(
        matches!(&refused, Response::Error(reply) if reply.code == ErrorCode::Unauthenticated),
        "{refused:?}"
    );
    client.assert_closed_by_server();

    // A short nonce (a replay of a precomputed proof would need a chosen one) is refused.
    let mut client = Client::connect_unauthenticated(server.addr);
    let refused = client.call(Request::Hello(Hello {
        key_id: testkit::tier_key().id().to_owned(),
        nonce: vec![7; 4],
    }));
    assert!(
        matches!(&refused, Response::Error(reply) if reply.code == ErrorCode::Unauthenticated),
        "{refused:?}"
    );

    // The handshake comes once.
    let mut client = server.client();
    let again = client.call(Request::Hello(Hello {
        key_id: testkit::tier_key().id().to_owned(),
        nonce: vec![7; NONCE_LEN],
    }));
    assert!(
        matches!(&again, Response::Error(reply) if reply.code == ErrorCode::Malformed),
        "{again:?}"
    );
    assert_served(&mut client);

    let metrics = testkit::scrape(server.admin);
    assert!(
        testkit::metric(&metrics, "gatehouse_tcp_unauthenticated_total", &[]) >= Some(8.0),
        "the refusals are counted"
    );
}

#[test]
fn a_peer_that_does_not_finish_the_handshake_is_dropped_at_the_handshake_timeout() {
    let mut config = server_config(2, Duration::from_secs(60), Duration::from_secs(5));
    config.handshake_timeout = Duration::from_millis(500);
    let server = TestServer::start_config(config, context(FAST, Duration::from_secs(60)));
    let mut silent = Client::connect_unauthenticated(server.addr);
    let started = Instant::now();
    silent.assert_closed_by_server();
    assert!(
        started.elapsed() < Duration::from_millis(500) + CLOSE_WITHIN,
        "held {:?}",
        started.elapsed()
    );
    // An authenticated connection may idle up to the idle timeout.
    let mut client = server.client();
    std::thread::sleep(Duration::from_millis(900));
    assert_served(&mut client);
}

/// A connection to `to` from the loopback address `from`.
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

#[test]
fn a_peer_past_its_share_of_the_workers_gets_busy_while_another_peer_is_served() {
    let mut config = server_config(8, Duration::from_secs(60), Duration::from_secs(5));
    config.max_per_peer = 2;
    let server = TestServer::start_config(config, context(FAST, Duration::from_secs(60)));
    let mut held: Vec<Client> = (0..2).map(|_| server.client()).collect();
    for client in &mut held {
        assert_served(client);
    }
    // The third from 127.0.0.1 is refused at once, before any frame.
    let mut third = Client::connect_unauthenticated(server.addr);
    let frame = third.read();
    let Response::Error(reply) = frame.message else {
        panic!("past the share: {:?}", frame.message);
    };
    assert_eq!((reply.code, frame.request_id), (ErrorCode::Busy, 0));
    third.assert_closed_by_server();

    // Another address is served meanwhile.
    let mut other = Client::from_stream(connect_from([127, 0, 0, 2], server.addr));
    other.handshake(&testkit::tier_key()).unwrap();
    assert_served(&mut other);

    // A connection given back makes room for the peer again.
    drop(held.pop());
    assert!(
        testkit::eventually(Duration::from_secs(5), || {
            let mut client = Client::connect_unauthenticated(server.addr);
            client.handshake(&testkit::tier_key()).is_ok()
        }),
        "the peer's share never came back"
    );
}
