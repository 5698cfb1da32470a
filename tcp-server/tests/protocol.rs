//! The server facing hostile or excess clients over a real socket: invalid frames get a typed
//! error and a close, the connection bound answers Busy, and other clients keep being served.

use std::io::Write;
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use proto::{ErrorCode, Operation, Request, Response, VERSION};
use socket2::SockRef;

use crate::support::{CLOSE_WITHIN, Client, Ending, TestServer, header};

/// Sends `bytes`, expects one error frame with `code` and `request_id`, then a close.
fn expect_error_and_close(server: &TestServer, bytes: &[u8], code: ErrorCode, request_id: u32) {
    let mut client = server.client();
    client.send_raw(bytes);
    let frame = client.read();
    let Response::Error(error) = frame.message else {
        panic!("expected an error, got {:?}", frame.message);
    };
    assert_eq!(
        (error.code, frame.request_id),
        (code, request_id),
        "{}",
        error.message
    );
    client.assert_closed_by_server();
}

#[test]
fn invalid_frames_get_a_typed_error_and_a_close_while_others_are_served() {
    let server = TestServer::start(8);
    let mut bystander = server.client();
    assert_eq!(
        bystander.call(Request::Ping(proto::Ping)),
        Response::Ping(())
    );

    expect_error_and_close(&server, b"GET / HTTP/1.1\r\n\r\n", ErrorCode::Malformed, 0);
    expect_error_and_close(
        &server,
        &header(VERSION, proto::Ping::KIND, 7, u32::MAX),
        ErrorCode::Malformed,
        7,
    );
    expect_error_and_close(
        &server,
        &header(VERSION + 1, proto::Ping::KIND, 8, 0),
        ErrorCode::UnsupportedVersion,
        8,
    );
    expect_error_and_close(
        &server,
        &header(VERSION, 0x7F, 9, 0),
        ErrorCode::Malformed,
        9,
    );
    let mut garbage_body = header(VERSION, proto::Login::KIND, 10, 3);
    garbage_body.extend_from_slice(&[0xFF, 0xFF, 0xFF]);
    expect_error_and_close(&server, &garbage_body, ErrorCode::Malformed, 10);

    assert_eq!(
        bystander.call(Request::Ping(proto::Ping)),
        Response::Ping(()),
        "others keep being served"
    );
}

#[test]
fn a_client_that_stops_mid_frame_does_not_disturb_the_server() {
    let server = TestServer::start(4);
    {
        let mut quitter = server.client();
        let mut partial = header(VERSION, proto::Login::KIND, 1, 100);
        partial.extend_from_slice(&[0; 10]);
        quitter.send_raw(&partial);
    }
    let mut client = server.client();
    assert_eq!(client.call(Request::Ping(proto::Ping)), Response::Ping(()));
}

#[test]
fn connections_past_the_bound_get_busy_at_once() {
    let server = TestServer::start(2);
    let mut held: Vec<Client> = (0..2).map(|_| server.client()).collect();
    for client in &mut held {
        assert_eq!(client.call(Request::Ping(proto::Ping)), Response::Ping(()));
    }
    // Refused before the handshake: the Busy frame comes unasked.
    let mut extra = Client::connect_unauthenticated(server.addr);
    let frame = extra.read();
    let Response::Error(error) = frame.message else {
        panic!("expected Busy, got {:?}", frame.message);
    };
    assert_eq!((error.code, frame.request_id), (ErrorCode::Busy, 0));
    assert!(error.retry_after_ms > 0);
    extra.assert_closed_by_server();

    // Once a worker is free again, new connections are served.
    held.pop();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut client = Client::connect_unauthenticated(server.addr);
        client
            .stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        match client.stream.peek(&mut [0u8]) {
            // Nothing sent by the server: it is waiting for our request, so we were served.
            Err(_) => {
                client
                    .stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                client.handshake(&testkit::tier_key()).unwrap();
                assert_eq!(client.call(Request::Ping(proto::Ping)), Response::Ping(()));
                break;
            }
            Ok(_) => {
                assert!(std::time::Instant::now() < deadline, "no worker came free");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn shutdown_stops_an_idle_server_promptly() {
    let server = TestServer::start(4);
    let mut idle = server.client();
    assert_eq!(idle.call(Request::Ping(proto::Ping)), Response::Ping(()));
    let started = std::time::Instant::now();
    server.stop();
    assert!(started.elapsed() < Duration::from_secs(3));
    idle.assert_closed_by_server();
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let config =
        crate::support::server_config(2, Duration::from_millis(500), Duration::from_secs(2));
    let server = TestServer::start_config(
        config,
        crate::support::context(crate::support::FAST, Duration::from_secs(60)),
    );
    let mut client = server.client();
    assert_eq!(client.call(Request::Ping(proto::Ping)), Response::Ping(()));
    let started = std::time::Instant::now();
    client.assert_closed_by_server();
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(400)..Duration::from_secs(3)).contains(&waited),
        "closed after {waited:?}"
    );
    // The worker is free again for someone else.
    let mut next = server.client();
    assert_eq!(next.call(Request::Ping(proto::Ping)), Response::Ping(()));
}

/// The check the tests above end with, against a peer that closes, resets, falls silent or
/// talks on: only the first two count as closed, so a server that hangs fails them.
#[test]
fn the_close_check_tells_a_close_from_a_hang_and_from_more_bytes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = thread::spawn(move || {
        let next = || listener.accept().unwrap().0;
        drop(next());
        let resetting = next();
        SockRef::from(&resetting)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(resetting);
        let silent = next();
        let mut talking = next();
        talking.write_all(b"more").unwrap();
        // Both stay open until the test is done with them.
        (silent, talking)
    });
    let mut clients: Vec<Client> = (0..4)
        .map(|_| Client::connect_unauthenticated(addr))
        .collect();
    assert_eq!(clients[0].ending(CLOSE_WITHIN), Ending::Closed);
    assert_eq!(clients[1].ending(CLOSE_WITHIN), Ending::Closed);
    assert_eq!(
        clients[2].ending(Duration::from_millis(300)),
        Ending::Silent
    );
    assert_eq!(
        clients[3].ending(CLOSE_WITHIN),
        Ending::Sent(b"more".to_vec())
    );
    drop(peer.join().unwrap());
}
