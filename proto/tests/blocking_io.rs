//! The blocking helpers against readers and writers that misbehave the way sockets do: short
//! reads, timeouts, interruptions, and peers that hang up or lie about a frame's length.

use std::collections::VecDeque;
use std::io::{self, Cursor, ErrorKind, Read, Write};

use proptest::collection::vec;
use proptest::prelude::*;
use proto::{
    DEFAULT_MAX_FRAME_LEN, DecodeErrorKind, EncodeError, ErrorCode, ErrorReply, Frame, HEADER_LEN,
    MAX_STRING_LEN, Message, Profile, RETAINED_BUFFER_CAPACITY, ReadError, Request, Response,
    Secret, Session, VERSION, WriteError, read_frame, write_frame,
};

use crate::support::{Body, encoded, frame, header, kind};

fn login() -> Request {
    Request::Login(proto::Login {
        username: "alice".into(),
        password: Secret::new("hunter2"),
        client: None,
        device: None,
    })
}

fn picture_upload(len: usize) -> Request {
    Request::SetPicture(proto::SetPicture {
        token: Secret::new("tok"),
        image: (0..len).map(|i| (i % 251) as u8).collect(),
    })
}

fn read<M: Message, R: Read>(reader: &mut R, buf: &mut Vec<u8>) -> Result<Frame<M>, ReadError> {
    read_frame(reader, buf, DEFAULT_MAX_FRAME_LEN)
}

fn is_eof(result: Result<Frame<Request>, ReadError>) -> bool {
    matches!(result, Err(ReadError::Io(e)) if e.kind() == ErrorKind::UnexpectedEof)
}

/// Hands out at most one byte per `read`, like a socket under heavy fragmentation.
struct OneByte<R>(R);

impl<R: Read> Read for OneByte<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(1);
        self.0.read(&mut buf[..n])
    }
}

/// Hands out bytes in chunks of the given sizes, in turn.
struct Chunked {
    data: Cursor<Vec<u8>>,
    sizes: Vec<usize>,
    next: usize,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes[self.next % self.sizes.len()];
        self.next += 1;
        let n = buf.len().min(size);
        self.data.read(&mut buf[..n])
    }
}

enum Step {
    Data(Vec<u8>),
    Fail(ErrorKind),
}

/// Plays a script of data and errors, then reports end of stream. With `strict`, reading past
/// the script fails the test instead: proof that the reader stopped where it should.
struct Scripted {
    steps: VecDeque<Step>,
    strict: bool,
}

impl Scripted {
    fn new(steps: Vec<Step>) -> Self {
        Scripted {
            steps: steps.into(),
            strict: false,
        }
    }

    fn strict(steps: Vec<Step>) -> Self {
        Scripted {
            strict: true,
            ..Scripted::new(steps)
        }
    }
}

impl Read for Scripted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.steps.pop_front() {
            None if self.strict => panic!("read past the end of the script"),
            None => Ok(0),
            Some(Step::Fail(kind)) => Err(kind.into()),
            Some(Step::Data(mut data)) => {
                let n = buf.len().min(data.len());
                buf[..n].copy_from_slice(&data[..n]);
                if n < data.len() {
                    self.steps.push_front(Step::Data(data.split_off(n)));
                }
                Ok(n)
            }
        }
    }
}

/// Records the length of every `write` call; accepts at most `max_write` bytes per call.
struct CountingWriter {
    written: Vec<u8>,
    calls: Vec<usize>,
    max_write: usize,
}

impl CountingWriter {
    fn new(max_write: usize) -> Self {
        CountingWriter {
            written: Vec::new(),
            calls: Vec::new(),
            max_write,
        }
    }
}

impl Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.max_write);
        self.calls.push(buf.len());
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct BrokenPipe;

impl Write for BrokenPipe {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(ErrorKind::BrokenPipe.into())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn write_then_read_round_trips() {
    let response = Response::Login(Session {
        token: Secret::new("t0k3n"),
        expires_at: 1_700_000_000,
        profile: Profile {
            id: 42,
            username: "alice".into(),
            nickname: "Alice".into(),
            picture: Some("p/42".into()),
        },
        device_token: Secret::new("d3v1c3"),
    });
    let mut stream = Vec::new();
    let mut buf = Vec::new();
    write_frame(&mut stream, 11, &proto::Trace::NONE, &login(), &mut buf).unwrap();
    let mut reader = Cursor::new(stream);
    let frame = read::<Request, _>(&mut reader, &mut buf).unwrap();
    assert_eq!((frame.request_id, frame.message), (11, login()));

    let mut stream = Vec::new();
    write_frame(
        &mut stream,
        u32::MAX,
        &proto::Trace::NONE,
        &response,
        &mut buf,
    )
    .unwrap();
    let frame = read::<Response, _>(&mut Cursor::new(stream), &mut buf).unwrap();
    assert_eq!((frame.request_id, frame.message), (u32::MAX, response));
}

#[test]
fn back_to_back_frames_are_read_one_at_a_time() {
    let first = encoded(1, &login());
    let second = encoded(2, &picture_upload(3000));
    let mut reader = Cursor::new([first.clone(), second.clone()].concat());
    let mut buf = Vec::new();

    let frame = read::<Request, _>(&mut reader, &mut buf).unwrap();
    assert_eq!((frame.request_id, frame.message), (1, login()));
    // Not a byte of the second frame may be taken while reading the first.
    assert_eq!(reader.position(), first.len() as u64);

    let frame = read::<Request, _>(&mut reader, &mut buf).unwrap();
    assert_eq!((frame.request_id, frame.message), (2, picture_upload(3000)));
    assert_eq!(reader.position(), (first.len() + second.len()) as u64);

    assert!(matches!(
        read::<Request, _>(&mut reader, &mut buf),
        Err(ReadError::Closed)
    ));
}

#[test]
fn read_frame_stops_at_the_frame_end_even_when_more_is_on_offer() {
    // A strict reader fails the test if asked for anything past the first frame.
    let frame_bytes = encoded(3, &login());
    let mut reader = Scripted::strict(vec![Step::Data(frame_bytes)]);
    let frame = read::<Request, _>(&mut reader, &mut Vec::new()).unwrap();
    assert_eq!(frame.message, login());
    assert!(reader.steps.is_empty());
}

#[test]
fn clean_eof_before_a_frame_is_closed() {
    let mut buf = Vec::new();
    assert!(matches!(
        read::<Request, _>(&mut Cursor::new(Vec::new()), &mut buf),
        Err(ReadError::Closed)
    ));
    assert!(matches!(
        read::<Response, _>(&mut io::empty(), &mut buf),
        Err(ReadError::Closed)
    ));
}

#[test]
fn eof_inside_the_header_is_unexpected_eof() {
    let bytes = encoded(4, &login());
    for cut in 1..HEADER_LEN {
        let result = read::<Request, _>(&mut Cursor::new(bytes[..cut].to_vec()), &mut Vec::new());
        assert!(is_eof(result), "cut after {cut} header bytes");
    }
}

#[test]
fn eof_inside_the_body_is_unexpected_eof() {
    let bytes = encoded(4, &picture_upload(100));
    for cut in [HEADER_LEN, HEADER_LEN + 1, HEADER_LEN + 50, bytes.len() - 1] {
        let result = read::<Request, _>(&mut Cursor::new(bytes[..cut].to_vec()), &mut Vec::new());
        assert!(is_eof(result), "cut after {cut} bytes");
    }
}

#[test]
fn a_timeout_before_the_first_byte_is_idle_and_consumes_nothing() {
    for kind in [ErrorKind::WouldBlock, ErrorKind::TimedOut] {
        let mut reader = Scripted::new(vec![Step::Fail(kind), Step::Data(encoded(5, &login()))]);
        let mut buf = Vec::new();
        assert!(
            matches!(
                read::<Request, _>(&mut reader, &mut buf),
                Err(ReadError::Idle)
            ),
            "{kind:?}"
        );
        // Idle is not fatal: the same connection yields the frame on the next call.
        let frame = read::<Request, _>(&mut reader, &mut buf).unwrap();
        assert_eq!((frame.request_id, frame.message), (5, login()));
    }
}

#[test]
fn a_timeout_inside_a_frame_is_an_io_error_not_idle() {
    let bytes = encoded(6, &login());
    for cut in [1, HEADER_LEN - 1, HEADER_LEN, bytes.len() - 1] {
        let mut reader = Scripted::new(vec![
            Step::Data(bytes[..cut].to_vec()),
            Step::Fail(ErrorKind::WouldBlock),
        ]);
        let result = read::<Request, _>(&mut reader, &mut Vec::new());
        assert!(
            matches!(&result, Err(ReadError::Io(e)) if e.kind() == ErrorKind::WouldBlock),
            "cut after {cut} bytes: {result:?}"
        );
    }
}

#[test]
fn interrupted_reads_are_retried() {
    let bytes = encoded(8, &login());
    let mut reader = Scripted::new(vec![
        Step::Fail(ErrorKind::Interrupted),
        Step::Data(bytes[..5].to_vec()),
        Step::Fail(ErrorKind::Interrupted),
        Step::Data(bytes[5..HEADER_LEN + 3].to_vec()),
        Step::Fail(ErrorKind::Interrupted),
        Step::Data(bytes[HEADER_LEN + 3..].to_vec()),
    ]);
    let frame = read::<Request, _>(&mut reader, &mut Vec::new()).unwrap();
    assert_eq!((frame.request_id, frame.message), (8, login()));
}

#[test]
fn other_io_errors_are_passed_through() {
    let mut reader = Scripted::new(vec![Step::Fail(ErrorKind::ConnectionReset)]);
    let result = read::<Request, _>(&mut reader, &mut Vec::new());
    assert!(matches!(result, Err(ReadError::Io(e)) if e.kind() == ErrorKind::ConnectionReset));
}

#[test]
fn one_byte_at_a_time_still_reads_whole_frames() {
    let stream = [
        encoded(1, &login()),
        encoded(2, &picture_upload(5000)),
        encoded(3, &Request::Ping(proto::Ping)),
    ]
    .concat();
    let mut reader = OneByte(Cursor::new(stream));
    let mut buf = Vec::new();
    let expected = [
        (1, login()),
        (2, picture_upload(5000)),
        (3, Request::Ping(proto::Ping)),
    ];
    for (id, message) in expected {
        let frame = read::<Request, _>(&mut reader, &mut buf).unwrap();
        assert_eq!((frame.request_id, frame.message), (id, message));
    }
    assert!(matches!(
        read::<Request, _>(&mut reader, &mut buf),
        Err(ReadError::Closed)
    ));
}

#[test]
fn garbage_is_rejected_at_its_first_byte() {
    // The strict reader would fail the test if a second byte were asked for.
    let mut reader = Scripted::strict(vec![Step::Data(b"X".to_vec())]);
    match read::<Request, _>(&mut reader, &mut Vec::new()) {
        Err(ReadError::Decode(e)) => {
            assert_eq!(e.kind(), &DecodeErrorKind::BadMagic);
            assert_eq!(e.request_id(), None);
        }
        other => panic!("expected BadMagic, got {other:?}"),
    }
    let mut reader = OneByte(Scripted::strict(vec![Step::Data(b"GET /".to_vec())]));
    assert!(matches!(
        read::<Request, _>(&mut reader, &mut Vec::new()),
        Err(ReadError::Decode(e)) if *e.kind() == DecodeErrorKind::BadMagic
    ));
    // "G" was fine, "E" was not; the rest of the request line is left unread.
    assert!(matches!(&reader.0.steps.front(), Some(Step::Data(rest)) if rest == b"T /"));
}

// `read_frame` swaps a buffer grown past `RETAINED_BUFFER_CAPACITY` for a fresh one of exactly
// that capacity before it returns, so "at most RETAINED_BUFFER_CAPACITY afterwards" holds
// however much was reserved on the way. The two tests below look for what that swap cannot
// hide: a buffer handed in with a capacity no implementation would choose is still the same
// allocation afterwards, or it grew no further than the bytes that arrived.

#[test]
fn a_declared_4gib_body_is_refused_after_the_header_without_allocating() {
    let mut reader = Cursor::new(header(VERSION, kind::SET_PICTURE, 9, u32::MAX));
    let mut buf = Vec::with_capacity(100);
    let untouched = (buf.as_ptr(), buf.capacity());
    match read::<Request, _>(&mut reader, &mut buf) {
        Err(ReadError::Decode(e)) => {
            let len = u64::from(u32::MAX) + HEADER_LEN as u64;
            let max = DEFAULT_MAX_FRAME_LEN;
            assert_eq!(e.kind(), &DecodeErrorKind::FrameTooLarge { len, max });
            assert_eq!(e.request_id(), Some(9));
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert_eq!(reader.position(), HEADER_LEN as u64);
    // Nothing was reserved for the body: the buffer is the very allocation handed in.
    assert_eq!(
        (buf.as_ptr(), buf.capacity()),
        untouched,
        "the buffer was reallocated for a frame refused by its header"
    );
}

#[test]
fn a_declared_body_that_never_arrives_costs_no_memory() {
    // Within the (largest possible) limit, so the body is really awaited; the peer then sends
    // 100 bytes of a promised 4 GiB and hangs up.
    const ARRIVED: usize = 100;
    let body_len = u32::MAX - HEADER_LEN as u32;
    let stream = [
        header(VERSION, kind::SET_PICTURE, 9, body_len),
        vec![0; ARRIVED],
    ]
    .concat();
    let mut buf = Vec::new();
    let result = read_frame::<_, Request>(&mut Cursor::new(stream), &mut buf, u32::MAX);
    assert!(is_eof(result));
    // Grown for the 100 bytes that came, with room to spare but nowhere near the declared
    // length: a reservation for the body, even one cut down to a few KiB, would show here as
    // that reservation, or as RETAINED_BUFFER_CAPACITY once swapped.
    assert!(
        buf.capacity() <= 1024,
        "{} bytes reserved for {ARRIVED} that arrived",
        buf.capacity()
    );
}

#[test]
fn a_buffer_grown_by_a_large_frame_is_shrunk_once_it_is_decoded() {
    let big = picture_upload(1024 * 1024);
    let stream = [encoded(1, &big), encoded(2, &Request::Ping(proto::Ping))].concat();
    let mut reader = Cursor::new(stream);
    let mut buf = Vec::new();

    let frame = read::<Request, _>(&mut reader, &mut buf).unwrap();
    assert_eq!(frame.message, big);
    // The picture went through `buf`, but an idle connection must not keep a megabyte.
    assert!(
        buf.capacity() <= RETAINED_BUFFER_CAPACITY,
        "{}",
        buf.capacity()
    );

    let frame = read::<Request, _>(&mut reader, &mut buf).unwrap();
    assert_eq!(frame.message, Request::Ping(proto::Ping));
}

#[test]
fn read_frame_reports_invalid_frames_with_the_request_id() {
    let mut reader = Cursor::new(frame(kind::LOGIN, 77, Body::new().str("alice")));
    match read::<Request, _>(&mut reader, &mut Vec::new()) {
        Err(ReadError::Decode(e)) => {
            assert_eq!(e.kind(), &DecodeErrorKind::Truncated { field: "password" });
            assert_eq!(e.request_id(), Some(77));
            assert_eq!(e.reply_code(), ErrorCode::Malformed);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }

    // A request arriving where a response is expected.
    let mut reader = Cursor::new(encoded(78, &Request::Ping(proto::Ping)));
    match read::<Response, _>(&mut reader, &mut Vec::new()) {
        Err(ReadError::Decode(e)) => {
            assert_eq!(e.kind(), &DecodeErrorKind::UnknownKind(kind::PING));
            assert_eq!(e.request_id(), Some(78));
        }
        other => panic!("expected UnknownKind, got {other:?}"),
    }

    let mut reader = Cursor::new(header(2, kind::PING, 79, 0));
    match read::<Request, _>(&mut reader, &mut Vec::new()) {
        Err(ReadError::Decode(e)) => {
            assert_eq!(e.kind(), &DecodeErrorKind::UnsupportedVersion(2));
            assert_eq!(e.reply_code(), ErrorCode::UnsupportedVersion);
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[test]
fn read_frame_applies_the_callers_limit() {
    let bytes = encoded(1, &login());
    let exact = bytes.len() as u32;
    let frame = read_frame::<_, Request>(&mut Cursor::new(bytes.clone()), &mut Vec::new(), exact);
    assert_eq!(frame.unwrap().message, login());

    let mut reader = Cursor::new(bytes);
    match read_frame::<_, Request>(&mut reader, &mut Vec::new(), exact - 1) {
        Err(ReadError::Decode(e)) => assert_eq!(
            e.kind(),
            &DecodeErrorKind::FrameTooLarge {
                len: u64::from(exact),
                max: exact - 1
            }
        ),
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert_eq!(
        reader.position(),
        HEADER_LEN as u64,
        "the body must not be read"
    );
}

#[test]
fn write_frame_sends_the_frame_in_a_single_write() {
    for message in [login(), picture_upload(1024 * 1024)] {
        let mut writer = CountingWriter::new(usize::MAX);
        // Left-over bytes in the scratch buffer must not leak onto the wire.
        let mut buf = b"stale bytes from an earlier frame".to_vec();
        write_frame(&mut writer, 12, &proto::Trace::NONE, &message, &mut buf).unwrap();
        let expected = encoded(12, &message);
        assert_eq!(writer.calls, vec![expected.len()]);
        assert_eq!(writer.written, expected);
        assert_eq!(buf, expected);
    }
}

#[test]
fn write_frame_finishes_a_frame_despite_short_writes() {
    let message = Response::Error(ErrorReply {
        code: ErrorCode::Busy,
        retry_after_ms: 250,
        message: "server busy".into(),
    });
    let mut writer = CountingWriter::new(3);
    write_frame(
        &mut writer,
        13,
        &proto::Trace::NONE,
        &message,
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(writer.written, encoded(13, &message));
}

#[test]
fn write_frame_writes_nothing_when_the_message_cannot_be_encoded() {
    let mut writer = CountingWriter::new(usize::MAX);
    let message = Request::GetPicture(proto::GetPicture {
        key: "k".repeat(MAX_STRING_LEN + 1),
    });
    match write_frame(
        &mut writer,
        14,
        &proto::Trace::NONE,
        &message,
        &mut Vec::new(),
    ) {
        Err(WriteError::Encode(e)) => assert_eq!(
            e,
            EncodeError::StringTooLong {
                field: "key",
                len: MAX_STRING_LEN + 1
            }
        ),
        other => panic!("expected an encode error, got {other:?}"),
    }
    assert!(writer.calls.is_empty());
}

#[test]
fn write_frame_reports_io_errors() {
    let result = write_frame(
        &mut BrokenPipe,
        15,
        &proto::Trace::NONE,
        &Response::Ping(()),
        &mut Vec::new(),
    );
    assert!(matches!(result, Err(WriteError::Io(e)) if e.kind() == ErrorKind::BrokenPipe));
}

fn small_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Ping(proto::Ping)),
        ".{0,12}".prop_map(|key| Request::GetPicture(proto::GetPicture { key })),
        (".{0,12}", ".{0,12}").prop_map(|(username, password)| Request::Login(proto::Login {
            username,
            password: Secret::new(password),
            client: None,
            device: None,
        })),
        vec(any::<u8>(), 0..2000).prop_map(|image| Request::SetPicture(proto::SetPicture {
            token: Secret::new("tok"),
            image,
        })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// However a stream of frames is cut into reads, the frames come out whole and in order.
    #[test]
    fn frames_survive_any_chunking(
        messages in vec((any::<u32>(), small_request()), 1..6),
        sizes in vec(1..64usize, 1..8),
    ) {
        let mut stream = Vec::new();
        let mut buf = Vec::new();
        for (id, message) in &messages {
            write_frame(&mut stream, *id, &proto::Trace::NONE, message, &mut buf).unwrap();
        }
        let mut reader = Chunked { data: Cursor::new(stream), sizes, next: 0 };
        for (id, message) in messages {
            let frame = read::<Request, _>(&mut reader, &mut buf).unwrap();
            prop_assert_eq!(frame, Frame { request_id: id, trace: proto::Trace::NONE, message });
        }
        prop_assert!(matches!(read::<Request, _>(&mut reader, &mut buf), Err(ReadError::Closed)));
    }
}

/// A server whose answers are written in advance; what the client sends is kept.
struct Peer {
    answers: Cursor<Vec<u8>>,
    sent: Vec<u8>,
}

impl Read for Peer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.answers.read(buf)
    }
}

impl Write for Peer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sent.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The client's handshake against a server that knows `server_key`, with the server nonce
/// fixed: the result, and the requests the client sent.
fn handshake_with(
    server_key: &proto::TierKey,
) -> (Result<(), proto::HandshakeError>, Vec<Request>) {
    let client_key = proto::TierKey::from_secret(b"the client's tier secret").unwrap();
    let (client_nonce, server_nonce) = ([1u8; proto::NONCE_LEN], [2u8; proto::NONCE_LEN]);
    let challenge = Response::Hello(proto::Challenge {
        nonce: server_nonce.to_vec(),
        proof: server_key.server_proof(&client_nonce, &server_nonce),
    });
    let mut answers = encoded(1, &challenge);
    answers.extend(encoded(2, &Response::Authenticate(())));
    let mut peer = Peer {
        answers: Cursor::new(answers),
        sent: Vec::new(),
    };
    let result = proto::handshake(
        &mut peer,
        &client_key,
        client_nonce,
        &mut Vec::new(),
        DEFAULT_MAX_FRAME_LEN,
    );
    let mut sent = Cursor::new(peer.sent);
    let mut requests = Vec::new();
    while let Ok(frame) =
        read_frame::<_, Request>(&mut sent, &mut Vec::new(), DEFAULT_MAX_FRAME_LEN)
    {
        requests.push(frame.message);
    }
    // The client's proof, when it sent one, is right for the nonces.
    if let Some(Request::Authenticate(authenticate)) = requests.get(1) {
        assert!(client_key.verify_client_proof(&client_nonce, &server_nonce, &authenticate.proof));
    }
    (result, requests)
}

#[test]
fn the_client_handshake_checks_the_servers_proof_before_giving_its_own() {
    let same = proto::TierKey::from_secret(b"the client's tier secret").unwrap();
    let (result, sent) = handshake_with(&same);
    result.unwrap();
    assert!(
        matches!(&sent[..], [Request::Hello(hello), Request::Authenticate(_)] if hello.key_id == same.id())
    );

    // A server with another key cannot make the proof: the client stops after Hello, so an
    // impostor never gets a proof it could replay.
    let other = proto::TierKey::from_secret(b"an impostor's tier secret").unwrap();
    let (result, sent) = handshake_with(&other);
    assert!(
        matches!(result, Err(proto::HandshakeError::BadServerProof)),
        "{result:?}"
    );
    assert!(matches!(&sent[..], [Request::Hello(_)]), "{sent:?}");
}
