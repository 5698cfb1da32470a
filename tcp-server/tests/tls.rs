//! The tier link over TLS (`--tier-tls`), with certificates made by scripts/tier-ca: mutual
//! TLS 1.3, so a peer without a certificate, with one of another CA, or speaking plain TCP is
//! refused before a single frame is read, and a client that does not trust the server's CA
//! refuses the server; with the right certificates the tier handshake and every request run as
//! over plain TCP.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proto::{HandshakeError, Request, Response, Secret};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use service::link::{self, Link, TlsFiles};
use tcp_server::server::ServerConfig;

use testkit::tier_ca;

use crate::support::{FAST, TestServer, context, server_config, unique_name};

fn tls_server(ca: &Path) -> TestServer {
    let tls = link::server_config(&TlsFiles::in_dir(ca, "tcp-server")).unwrap();
    let config = ServerConfig {
        tls: Some(tls),
        ..server_config(8, Duration::from_secs(30), Duration::from_secs(2))
    };
    TestServer::start_config(config, context(FAST, Duration::from_secs(3600)))
}

/// A TLS connection to `addr` with `tls`, checking the server's certificate for 127.0.0.1.
fn connect(addr: SocketAddr, tls: &link::ClientTls) -> Link {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let name = link::server_name("127.0.0.1").unwrap();
    Link::connect(stream, Some((tls, &name))).unwrap()
}

fn handshake(link: &mut Link) -> Result<(), HandshakeError> {
    let mut buf = Vec::new();
    proto::handshake(
        link,
        &testkit::tier_key(),
        [7; proto::NONCE_LEN],
        &mut buf,
        proto::DEFAULT_MAX_FRAME_LEN,
    )
}

fn call(link: &mut Link, id: u32, request: &Request) -> Response {
    let mut buf = Vec::new();
    proto::write_frame(link, id, &proto::Trace::NONE, request, &mut buf).unwrap();
    let frame =
        proto::read_frame::<_, Response>(link, &mut buf, proto::DEFAULT_MAX_FRAME_LEN).unwrap();
    assert_eq!(frame.request_id, id);
    frame.message
}

/// Asserts that the handshake failed in TLS (not in the protocol above it).
fn assert_tls_refused(result: Result<(), HandshakeError>, case: &str) {
    let error = result.expect_err(case);
    let io = match &error {
        HandshakeError::Write(proto::WriteError::Io(io))
        | HandshakeError::Read(proto::ReadError::Io(io)) => io,
        other => panic!("{case}: not a TLS failure: {other:?}"),
    };
    assert!(
        link::tls_failure(io).is_some(),
        "{case}: not a TLS failure: {io}"
    );
}

fn unauthenticated(server: &TestServer) -> f64 {
    testkit::metric(
        &testkit::scrape(server.admin),
        "gatehouse_tcp_unauthenticated_total",
        &[],
    )
    .unwrap_or(0.0)
}

#[test]
fn with_the_right_certificates_the_link_carries_the_protocol() {
    let ca = tier_ca("right");
    let server = tls_server(&ca);
    let tls = link::client_config(&TlsFiles::in_dir(&ca, "http-server")).unwrap();
    let mut link = connect(server.addr, &tls);
    handshake(&mut link).unwrap();
    let name = unique_name("tls");
    let registered = call(
        &mut link,
        3,
        &Request::Register(proto::Register {
            username: name.clone(),
            password: Secret::new("correct horse battery staple"),
            nickname: None,
            client: Some("192.0.2.1".to_owned()),
        }),
    );
    assert!(
        matches!(registered, Response::Register(_)),
        "{registered:?}"
    );
    let login = call(
        &mut link,
        4,
        &Request::Login(proto::Login {
            username: name,
            password: Secret::new("correct horse battery staple"),
            client: Some("192.0.2.1".to_owned()),
            device: None,
        }),
    );
    assert!(matches!(login, Response::Login(_)), "{login:?}");
    assert_eq!(unauthenticated(&server), 0.0);
}

#[test]
fn peers_without_a_certificate_of_the_ca_or_without_tls_are_refused_before_any_frame() {
    let (ca, other) = (tier_ca("ca"), tier_ca("other"));
    let server = tls_server(&ca);

    // No client certificate at all.
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca.join("ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let anonymous = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    assert_tls_refused(
        handshake(&mut connect(server.addr, &anonymous)),
        "no certificate",
    );

    // A certificate of another CA (the client trusts the right CA for the server).
    let stranger = link::client_config(&TlsFiles {
        ca: ca.join("ca.crt"),
        ..TlsFiles::in_dir(&other, "http-server")
    })
    .unwrap();
    assert_tls_refused(
        handshake(&mut connect(server.addr, &stranger)),
        "another CA's certificate",
    );

    // Plain TCP: the Hello is not TLS, and no frame comes back, only the close (after
    // whatever TLS alert the server sends).
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let error = handshake(&mut Link::plain(plain.try_clone().unwrap())).unwrap_err();
    assert!(
        !matches!(error, HandshakeError::Refused(_)),
        "a plain peer got a protocol answer: {error:?}"
    );
    let mut rest = Vec::new();
    let _ = plain.read_to_end(&mut rest);
    assert!(
        !rest.starts_with(&proto::MAGIC),
        "a plain peer got a frame: {rest:?}"
    );

    // Each was counted as refused; none was served.
    assert!(
        testkit::eventually(Duration::from_secs(5), || unauthenticated(&server) >= 3.0),
        "refusals counted: {}",
        unauthenticated(&server)
    );
}

#[test]
fn a_client_that_does_not_trust_the_servers_ca_refuses_it() {
    let (ca, other) = (tier_ca("server"), tier_ca("client-trusts"));
    let server = tls_server(&ca);
    // Our certificate is good for the server, but we trust only the other CA.
    let suspicious = link::client_config(&TlsFiles {
        ca: other.join("ca.crt"),
        ..TlsFiles::in_dir(&ca, "http-server")
    })
    .unwrap();
    let mut link = connect(server.addr, &suspicious);
    assert_tls_refused(handshake(&mut link), "server of another CA");
    // And a server name the certificate does not carry is refused the same way.
    let tls = link::client_config(&TlsFiles::in_dir(&ca, "http-server")).unwrap();
    let stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let name = link::server_name("tcp.example.org").unwrap();
    let mut link = Link::connect(stream, Some((&tls, &name))).unwrap();
    assert_tls_refused(handshake(&mut link), "wrong server name");
}

#[test]
fn a_peer_trickling_its_tls_handshake_is_dropped_at_the_handshake_timeout() {
    let ca = tier_ca("trickle");
    let tls = link::server_config(&TlsFiles::in_dir(&ca, "tcp-server")).unwrap();
    let config = ServerConfig {
        tls: Some(tls),
        handshake_timeout: Duration::from_secs(1),
        ..server_config(8, Duration::from_secs(30), Duration::from_secs(10))
    };
    let server = TestServer::start_config(config, context(FAST, Duration::from_secs(3600)));
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    // A TLS record header announcing a 512-byte ClientHello, then its body a byte every
    // 100 ms: every read the server makes gets a byte well within any per-read timeout.
    let started = std::time::Instant::now();
    let mut sent = vec![0x16, 0x03, 0x01, 0x02, 0x00];
    sent.extend([0x01, 0x00, 0x01, 0xfc]);
    let mut closed = None;
    for byte in sent.into_iter().chain(std::iter::repeat(0)) {
        if started.elapsed() > Duration::from_secs(8) {
            break;
        }
        let written = std::io::Write::write_all(&mut stream, &[byte]);
        // Still open while a peek would wait; closed at end of stream (or any error: a reset).
        let open = written.is_ok()
            && matches!(stream.peek(&mut [0u8; 64]), Err(ref e)
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
        if !open {
            closed = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let closed = closed.expect("the server kept a trickling TLS handshake open for 8 s");
    assert!(
        closed < Duration::from_secs(3),
        "closed after {closed:?}, not at the 1 s handshake timeout"
    );
    assert!(
        testkit::eventually(Duration::from_secs(5), || unauthenticated(&server) >= 1.0),
        "the refusal is counted"
    );
}
