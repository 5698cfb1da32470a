//! Invalid frames, each with the exact error it must produce. The error is what the server's
//! reply and its logs are built from, so "some error" is not enough: the kind, the field it
//! names and the request id it keeps are all checked.

use std::fmt::Debug;

use proto::{
    DEFAULT_MAX_FRAME_LEN, DecodeErrorKind, EncodeError, ErrorCode, ErrorReply, HEADER_LEN,
    MAX_STRING_LEN, Message, Request, Response, Secret, VERSION, decode, decode_with_limit, encode,
};

use crate::support::{Body, encoded, frame, header, kind};

/// Every byte distinct, so a request id read from the wrong offset or in the wrong byte order
/// cannot pass for the right one.
const ID: u32 = 0x0102_0304;

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    limit: u32,
    expect: DecodeErrorKind,
    request_id: Option<u32>,
}

/// A case whose header is readable, so the error must carry [`ID`].
fn case(name: &'static str, bytes: Vec<u8>, expect: DecodeErrorKind) -> Case {
    Case {
        name,
        bytes,
        limit: DEFAULT_MAX_FRAME_LEN,
        expect,
        request_id: Some(ID),
    }
}

fn bad_magic(name: &'static str, bytes: &[u8]) -> Case {
    Case {
        request_id: None,
        ..case(name, bytes.to_vec(), DecodeErrorKind::BadMagic)
    }
}

fn with_limit(limit: u32, case: Case) -> Case {
    Case { limit, ..case }
}

fn truncated(field: &'static str) -> DecodeErrorKind {
    DecodeErrorKind::Truncated { field }
}

fn too_long(field: &'static str, len: usize) -> DecodeErrorKind {
    DecodeErrorKind::StringTooLong { field, len }
}

fn utf8(field: &'static str) -> DecodeErrorKind {
    DecodeErrorKind::InvalidUtf8 { field }
}

fn tag(field: &'static str, value: u16) -> DecodeErrorKind {
    DecodeErrorKind::InvalidTag { field, value }
}

fn trailing(extra: usize) -> DecodeErrorKind {
    DecodeErrorKind::TrailingBytes { extra }
}

fn too_large(len: u64, max: u32) -> DecodeErrorKind {
    DecodeErrorKind::FrameTooLarge { len, max }
}

fn f(kind: u8, body: Body) -> Vec<u8> {
    frame(kind, ID, body)
}

fn b() -> Body {
    Body::new()
}

/// A complete, valid profile body.
fn profile() -> Body {
    b().profile(7, "alice", "Alice", None)
}

fn run<M: Message + Debug>(cases: Vec<Case>) {
    for case in cases {
        let name = case.name;
        let error = decode_with_limit::<M>(&case.bytes, case.limit)
            .expect_err(&format!("{name}: must be rejected"));
        assert_eq!(error.kind(), &case.expect, "{name}: error kind");
        assert_eq!(error.request_id(), case.request_id, "{name}: request id");
        let reply = match case.expect {
            DecodeErrorKind::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            _ => ErrorCode::Malformed,
        };
        assert_eq!(error.reply_code(), reply, "{name}: reply code");
    }
}

// The tables keep one case per line (rustfmt would spread each over several lines).
#[rustfmt::skip]
#[test]
fn framing_errors_in_requests() {
    let big = u64::from(u32::MAX) + HEADER_LEN as u64;
    run::<Request>(vec![
        bad_magic("one wrong first byte is enough", b"X"),
        bad_magic("right first byte, wrong second", b"GX"),
        bad_magic("magic in the wrong case", &[b'g', b'h', VERSION, kind::PING, 0, 0, 0, 1, 0, 0, 0, 0]),
        bad_magic("magic byte-swapped", &[b'H', b'G', VERSION, kind::PING, 0, 0, 0, 1, 0, 0, 0, 0]),
        bad_magic("an HTTP request", b"GET / HTTP/1.1\r\n\r\n"),
        bad_magic("a TLS client hello", &[0x16, 0x03, 0x01, 0x02, 0x00]),
        case("version 0", header(0, kind::PING, ID, 0), DecodeErrorKind::UnsupportedVersion(0)),
        case("version 1, before the trace", header(1, kind::PING, ID, 0), DecodeErrorKind::UnsupportedVersion(1)),
        case("version 2, before the tier handshake", header(2, kind::PING, ID, 0), DecodeErrorKind::UnsupportedVersion(2)),
        case("version 4", header(4, kind::PING, ID, 0), DecodeErrorKind::UnsupportedVersion(4)),
        case("version 255", header(255, kind::LOGIN, ID, 100), DecodeErrorKind::UnsupportedVersion(255)),
        case("version is checked before kind", header(1, 0x00, ID, 0), DecodeErrorKind::UnsupportedVersion(1)),
        case("kind 0x00", header(VERSION, 0x00, ID, 0), DecodeErrorKind::UnknownKind(0x00)),
        case("kind 0x0e, one past the last request", header(VERSION, 0x0E, ID, 0), DecodeErrorKind::UnknownKind(0x0E)),
        case("kind 0x7f", header(VERSION, 0x7F, ID, 0), DecodeErrorKind::UnknownKind(0x7F)),
        case("kind 0x80", header(VERSION, 0x80, ID, 0), DecodeErrorKind::UnknownKind(0x80)),
        case("a Pong sent as a request", f(kind::PONG, b()), DecodeErrorKind::UnknownKind(kind::PONG)),
        case("a Picture sent as a request", f(kind::PICTURE, b().u8(1).blob(&[1])), DecodeErrorKind::UnknownKind(kind::PICTURE)),
        case("an Error sent as a request", f(kind::ERROR, b().u16(1).u32(0).str("")), DecodeErrorKind::UnknownKind(kind::ERROR)),
        case("kind is checked before length", header(VERSION, 0x00, ID, u32::MAX), DecodeErrorKind::UnknownKind(0x00)),
        case("a response kind is refused before its length", header(VERSION, kind::ERROR, ID, u32::MAX), DecodeErrorKind::UnknownKind(kind::ERROR)),
        case("4 GiB body, header only", header(VERSION, kind::SET_PICTURE, ID, u32::MAX), too_large(big, DEFAULT_MAX_FRAME_LEN)),
        case("one byte over the default limit, header only", header(VERSION, kind::SET_PICTURE, ID, DEFAULT_MAX_FRAME_LEN - HEADER_LEN as u32 + 1), too_large(u64::from(DEFAULT_MAX_FRAME_LEN) + 1, DEFAULT_MAX_FRAME_LEN)),
        with_limit(64, case("one byte over a small limit, header only", header(VERSION, kind::LOGIN, ID, 53), too_large(65, 64))),
        with_limit(64, case("4 GiB body against a small limit", header(VERSION, kind::LOGIN, ID, u32::MAX), too_large(big, 64))),
        // The sum must be computed without wrapping: 12 + (2^32 - 1) does not fit a u32.
        with_limit(u32::MAX, case("4 GiB body against the largest limit", header(VERSION, kind::SET_PICTURE, ID, u32::MAX), too_large(big, u32::MAX))),
        with_limit(HEADER_LEN as u32 - 1, case("a limit below the header size", f(kind::PING, b()), too_large(HEADER_LEN as u64, HEADER_LEN as u32 - 1))),
    ]);
}

#[rustfmt::skip]
#[test]
fn framing_errors_in_responses() {
    run::<Response>(vec![
        bad_magic("one wrong first byte is enough", &[0x00]),
        bad_magic("right first byte, wrong second", &[b'G', 0x00, VERSION]),
        case("version 1, before the trace", header(1, kind::PONG, ID, 0), DecodeErrorKind::UnsupportedVersion(1)),
        case("kind 0x00", header(VERSION, 0x00, ID, 0), DecodeErrorKind::UnknownKind(0x00)),
        case("a Ping sent as a response", f(kind::PING, b()), DecodeErrorKind::UnknownKind(kind::PING)),
        case("a GetPicture sent as a response", f(kind::GET_PICTURE, b().str("k")), DecodeErrorKind::UnknownKind(kind::GET_PICTURE)),
        case("a request kind is refused before its length", header(VERSION, kind::SET_PICTURE, ID, u32::MAX), DecodeErrorKind::UnknownKind(kind::SET_PICTURE)),
        case("kind 0x80", header(VERSION, 0x80, ID, 0), DecodeErrorKind::UnknownKind(0x80)),
        case("kind 0x8e, one past the last success reply", header(VERSION, 0x8E, ID, 0), DecodeErrorKind::UnknownKind(0x8E)),
        case("kind 0xfe", header(VERSION, 0xFE, ID, 0), DecodeErrorKind::UnknownKind(0xFE)),
        case("4 GiB body, header only", header(VERSION, kind::PICTURE, ID, u32::MAX), too_large(u64::from(u32::MAX) + 12, DEFAULT_MAX_FRAME_LEN)),
        with_limit(1024, case("over a small limit, header only", header(VERSION, kind::PICTURE, ID, 2000), too_large(2012, 1024))),
    ]);
}

#[rustfmt::skip]
#[test]
fn body_errors_in_requests() {
    let ok = |body: Body| body.str("alice").str("hunter2");
    run::<Request>(vec![
        case("login, empty body", f(kind::LOGIN, b()), truncated("username")),
        case("login, half a length", f(kind::LOGIN, b().u8(0)), truncated("username")),
        case("login, username shorter than declared", f(kind::LOGIN, b().u16(5).raw(b"ali")), truncated("username")),
        case("login, no password", f(kind::LOGIN, b().str("alice")), truncated("password")),
        case("login, password shorter than declared", f(kind::LOGIN, b().str("alice").u16(7).raw(b"hunt")), truncated("password")),
        case("register, no password", f(kind::REGISTER, b().str("alice")), truncated("password")),
        case("register, no presence byte", f(kind::REGISTER, ok(b())), truncated("nickname")),
        case("register, present but missing nickname", f(kind::REGISTER, ok(b()).u8(1)), truncated("nickname")),
        case("register, nickname shorter than declared", f(kind::REGISTER, ok(b()).u8(1).u16(3).raw(b"Al")), truncated("nickname")),
        case("logout, empty body", f(kind::LOGOUT, b()), truncated("token")),
        case("get profile, empty body", f(kind::GET_PROFILE, b()), truncated("token")),
        case("update nickname, no nickname", f(kind::UPDATE_NICKNAME, b().str("tok")), truncated("nickname")),
        case("set picture, empty body", f(kind::SET_PICTURE, b()), truncated("token")),
        case("set picture, half a blob length", f(kind::SET_PICTURE, b().str("tok").u16(0)), truncated("image")),
        case("set picture, image shorter than declared", f(kind::SET_PICTURE, b().str("tok").u32(10).raw(&[1, 2, 3, 4])), truncated("image")),
        case("get picture, empty body", f(kind::GET_PICTURE, b()), truncated("key")),
        case("change password, no current password", f(kind::CHANGE_PASSWORD, b().str("tok")), truncated("current_password")),
        case("change password, no new password", f(kind::CHANGE_PASSWORD, b().str("tok").str("old")), truncated("new_password")),
        case("change password, no client presence byte", f(kind::CHANGE_PASSWORD, b().str("tok").str("old").str("new")), truncated("client")),
        case("change password, device presence byte 3", f(kind::CHANGE_PASSWORD, b().str("tok").str("old").str("new").u8(0).u8(3)), tag("device", 3)),
        case("log out everywhere, empty body", f(kind::LOGOUT_ALL, b()), truncated("token")),
        case("delete account, no password", f(kind::DELETE_ACCOUNT, b().str("tok")), truncated("password")),
        case("delete account, no device presence byte", f(kind::DELETE_ACCOUNT, b().str("tok").str("pw").u8(0)), truncated("device")),
        case("delete account with a byte after the trace", f(kind::DELETE_ACCOUNT, b().str("tok").str("pw").u8(0).u8(0).no_trace().u8(7)), trailing(1)),
        // The length is refused as soon as it is read, whether or not the bytes follow.
        case("login, username one byte over the limit", f(kind::LOGIN, b().u16(MAX_STRING_LEN as u16 + 1)), too_long("username", MAX_STRING_LEN + 1)),
        case("login, password of 65535 bytes", f(kind::LOGIN, b().str("alice").u16(u16::MAX)), too_long("password", 65535)),
        case("register, nickname over the limit", f(kind::REGISTER, ok(b()).u8(1).u16(5000).raw(&[b'a'; 5000])), too_long("nickname", 5000)),
        case("get picture, key over the limit", f(kind::GET_PICTURE, b().u16(4097).raw(&[b'k'; 4097])), too_long("key", 4097)),
        case("login, username 0xff", f(kind::LOGIN, b().u16(1).raw(&[0xFF]).str("pw")), utf8("username")),
        case("login, password ends inside a sequence", f(kind::LOGIN, b().str("alice").u16(2).raw(&[b'a', 0xC3])), utf8("password")),
        case("logout, token with a lone continuation byte", f(kind::LOGOUT, b().u16(1).raw(&[0x80])), utf8("token")),
        case("update nickname, overlong NUL", f(kind::UPDATE_NICKNAME, b().str("tok").u16(2).raw(&[0xC0, 0x80])), utf8("nickname")),
        case("get picture, UTF-16 surrogate", f(kind::GET_PICTURE, b().u16(3).raw(&[0xED, 0xA0, 0x80])), utf8("key")),
        case("register, nickname with invalid UTF-8", f(kind::REGISTER, ok(b()).u8(1).u16(1).raw(&[0xFE])), utf8("nickname")),
        case("register, presence byte 2", f(kind::REGISTER, ok(b()).u8(2).str("Al")), tag("nickname", 2)),
        case("register, presence byte 0xff", f(kind::REGISTER, ok(b()).u8(0xFF)), tag("nickname", 0xFF)),
        case("ping with a byte after the trace", f(kind::PING, b().no_trace().u8(0)), trailing(1)),
        case("ping without its trace", f(kind::PING, b()), DecodeErrorKind::Truncated { field: "trace" }),
        case("a trace cut short", f(kind::PING, b().u16(5).raw(b"req")), DecodeErrorKind::Truncated { field: "trace" }),
        case("a trace of 65 bytes", f(kind::PING, b().str(&"a".repeat(65))), DecodeErrorKind::InvalidTrace),
        case("a trace with a space", f(kind::PING, b().str("req 1")), DecodeErrorKind::InvalidTrace),
        case("a trace with a line break", f(kind::PING, b().str("req\n1")), DecodeErrorKind::InvalidTrace),
        case("a trace that is not ASCII", f(kind::PING, b().str("réq")), DecodeErrorKind::InvalidTrace),
        case("a trace that is not UTF-8", f(kind::PING, b().u16(2).raw(&[0xC3, 0x28])), DecodeErrorKind::InvalidUtf8 { field: "trace" }),
        case("logout with a byte after the trace", f(kind::LOGOUT, b().str("tok").no_trace().u8(0)), trailing(1)),
        case("login with extra bytes", f(kind::LOGIN, ok(b()).u8(0).u8(0).no_trace().raw(&[1, 2, 3])), trailing(3)),
        case("login without the client's presence byte", f(kind::LOGIN, ok(b())), truncated("client")),
        case("login, client presence byte 2", f(kind::LOGIN, ok(b()).u8(2)), tag("client", 2)),
        case("login without the device's presence byte", f(kind::LOGIN, ok(b()).u8(0)), truncated("device")),
        case("login, device presence byte 2", f(kind::LOGIN, ok(b()).u8(0).u8(2)), tag("device", 2)),
        case("register without the client's presence byte", f(kind::REGISTER, ok(b()).u8(0)), truncated("client")),
        case("register with a byte after the trace", f(kind::REGISTER, ok(b()).u8(0).u8(0).no_trace().u8(0)), trailing(1)),
        case("set picture with a byte after the trace", f(kind::SET_PICTURE, b().str("tok").blob(&[9; 16]).no_trace().u8(0)), trailing(1)),
    ]);
}

#[rustfmt::skip]
#[test]
fn body_errors_in_responses() {
    run::<Response>(vec![
        case("registered, empty body", f(kind::REGISTERED, b()), truncated("id")),
        case("profile, half an id", f(kind::PROFILE, b().u32(0)), truncated("id")),
        case("profile, no username", f(kind::PROFILE, b().i64(7)), truncated("username")),
        case("profile, no nickname", f(kind::PROFILE, b().i64(7).str("alice")), truncated("nickname")),
        case("profile, no presence byte", f(kind::PROFILE, b().i64(7).str("alice").str("Alice")), truncated("picture")),
        case("nickname updated, present but missing key", f(kind::NICKNAME_UPDATED, b().i64(7).str("alice").str("Alice").u8(1)), truncated("picture")),
        case("picture set, key shorter than declared", f(kind::PICTURE_SET, b().i64(7).str("alice").str("Alice").u8(1).u16(9).raw(b"abc")), truncated("picture")),
        case("logged in, empty body", f(kind::LOGGED_IN, b()), truncated("token")),
        case("logged in, no expiry", f(kind::LOGGED_IN, b().str("tok")), truncated("expires_at")),
        case("logged in, half an expiry", f(kind::LOGGED_IN, b().str("tok").u32(1)), truncated("expires_at")),
        case("logged in, no profile", f(kind::LOGGED_IN, b().str("tok").i64(1_700_000_000)), truncated("id")),
        case("logged in, no device token", f(kind::LOGGED_IN, b().str("tok").i64(1_700_000_000).i64(7).str("alice").str("Alice").u8(0)), truncated("device_token")),
        case("picture, empty body", f(kind::PICTURE, b()), truncated("format")),
        case("picture, no data", f(kind::PICTURE, b().u8(1)), truncated("data")),
        case("picture, data shorter than declared", f(kind::PICTURE, b().u8(1).u32(100).raw(&[0; 10])), truncated("data")),
        case("error, empty body", f(kind::ERROR, b()), truncated("code")),
        case("error, half a code", f(kind::ERROR, b().u8(0)), truncated("code")),
        case("error, no retry hint", f(kind::ERROR, b().u16(3)), truncated("retry_after_ms")),
        case("error, no message", f(kind::ERROR, b().u16(3).u32(250)), truncated("message")),
        case("profile, username over the limit", f(kind::PROFILE, b().i64(7).u16(4097)), too_long("username", 4097)),
        case("error, message over the limit", f(kind::ERROR, b().u16(5).u32(0).u16(5000)), too_long("message", 5000)),
        case("error, message with invalid UTF-8", f(kind::ERROR, b().u16(5).u32(0).u16(2).raw(&[0xE2, 0x82])), utf8("message")),
        case("profile, picture key with invalid UTF-8", f(kind::PROFILE, b().i64(7).str("a").str("A").u8(1).u16(1).raw(&[0xFF])), utf8("picture")),
        case("logged in, token with invalid UTF-8", f(kind::LOGGED_IN, b().u16(1).raw(&[0xF8])), utf8("token")),
        case("profile, presence byte 2", f(kind::PROFILE, b().i64(7).str("a").str("A").u8(2)), tag("picture", 2)),
        case("error code 0", f(kind::ERROR, b().u16(0).u32(0).str("")), tag("code", 0)),
        case("error code 7, one past Unauthenticated", f(kind::ERROR, b().u16(7).u32(0).str("")), tag("code", 7)),
        case("error code 99, one before InvalidUsername", f(kind::ERROR, b().u16(99).u32(0).str("")), tag("code", 99)),
        case("error code 111, one past WeakPassword", f(kind::ERROR, b().u16(111).u32(0).str("")), tag("code", 111)),
        case("error code 0xffff", f(kind::ERROR, b().u16(0xFFFF).u32(0).str("")), tag("code", 0xFFFF)),
        // 0x0101 would read as Malformed if only the low byte were looked at.
        case("error code 0x0101", f(kind::ERROR, b().u16(0x0101).u32(0).str("")), tag("code", 0x0101)),
        case("image format 0", f(kind::PICTURE, b().u8(0).blob(&[1])), tag("format", 0)),
        case("image format 5", f(kind::PICTURE, b().u8(5).blob(&[1])), tag("format", 5)),
        case("image format 0xff", f(kind::PICTURE, b().u8(0xFF).blob(&[1])), tag("format", 0xFF)),
        case("pong with two bytes after the trace", f(kind::PONG, b().no_trace().u16(0)), trailing(2)),
        case("pong without its trace", f(kind::PONG, b()), DecodeErrorKind::Truncated { field: "trace" }),
        case("an answer's trace with a space", f(kind::PONG, b().str("req 1")), DecodeErrorKind::InvalidTrace),
        case("logged out with a byte after the trace", f(kind::LOGGED_OUT, b().no_trace().u8(0)), trailing(1)),
        case("profile with a byte after the trace", f(kind::PROFILE, profile().no_trace().u8(0)), trailing(1)),
        case("error with a byte after the trace", f(kind::ERROR, b().u16(1).u32(0).str("bad").no_trace().u8(b'!')), trailing(1)),
    ]);
}

#[test]
fn incomplete_but_valid_input_is_not_an_error() {
    assert_eq!(decode::<Request>(b""), Ok(None));
    assert_eq!(decode::<Request>(b"G"), Ok(None));
    assert_eq!(decode::<Response>(b"GH"), Ok(None));
    // Version and kind wait for the whole header; only the magic is judged early.
    assert_eq!(decode::<Request>(&[b'G', b'H', 9, 0xEE]), Ok(None));
    assert_eq!(
        decode::<Request>(&header(VERSION, kind::LOGIN, ID, 100)),
        Ok(None)
    );
    // The limit is inclusive: header plus body may equal it exactly.
    let at_limit = header(VERSION, kind::LOGIN, ID, 64 - HEADER_LEN as u32);
    assert_eq!(decode_with_limit::<Request>(&at_limit, 64), Ok(None));
    let at_default = header(
        VERSION,
        kind::SET_PICTURE,
        ID,
        DEFAULT_MAX_FRAME_LEN - HEADER_LEN as u32,
    );
    assert_eq!(decode::<Request>(&at_default), Ok(None));
}

#[test]
fn limits_are_inclusive() {
    let long_key = Request::GetPicture(proto::GetPicture {
        key: "k".repeat(MAX_STRING_LEN),
    });
    let (frame, _) = decode::<Request>(&encoded(1, &long_key)).unwrap().unwrap();
    assert_eq!(frame.message, long_key);
}

#[test]
fn reply_code_is_unsupported_version_only_for_a_version_mismatch() {
    let version = decode::<Request>(&header(7, kind::PING, 42, 0)).unwrap_err();
    assert_eq!(version.reply_code(), ErrorCode::UnsupportedVersion);
    assert_eq!(version.request_id(), Some(42));

    let others = [
        decode::<Request>(b"Z").unwrap_err(),
        decode::<Request>(&header(VERSION, 0x42, 42, 0)).unwrap_err(),
        decode_with_limit::<Request>(&header(VERSION, kind::LOGIN, 42, 999), 100).unwrap_err(),
        decode::<Request>(&frame(kind::LOGIN, 42, b())).unwrap_err(),
        decode::<Request>(&frame(kind::PING, 42, b().u8(0))).unwrap_err(),
    ];
    for error in others {
        assert_eq!(error.reply_code(), ErrorCode::Malformed, "{error}");
    }
}

/// Encodes `message` after an existing frame and checks the error and that the earlier frame is
/// exactly as it was: a failed encode must not leave half a frame for the writer to send.
fn encode_fails<M: Message>(message: &M, expect: EncodeError) {
    let mut out = encoded(5, &Request::Ping(proto::Ping));
    let before = out.clone();
    assert_eq!(
        encode(6, &proto::Trace::NONE, message, &mut out),
        Err(expect)
    );
    assert_eq!(out, before);
}

#[test]
fn encoding_an_over_long_string_fails_and_leaves_the_buffer_unchanged() {
    let over = "u".repeat(MAX_STRING_LEN + 1);
    // 2049 chars is well under the limit in chars but 4098 bytes: the limit is in bytes.
    let over_in_bytes = "é".repeat(MAX_STRING_LEN / 2 + 1);
    encode_fails(
        &Request::Login(proto::Login {
            username: over.clone(),
            password: Secret::new("pw"),
            client: None,
            device: None,
        }),
        EncodeError::StringTooLong {
            field: "username",
            len: MAX_STRING_LEN + 1,
        },
    );
    encode_fails(
        &Request::Login(proto::Login {
            username: "alice".into(),
            password: Secret::new(over_in_bytes.clone()),
            client: None,
            device: None,
        }),
        EncodeError::StringTooLong {
            field: "password",
            len: MAX_STRING_LEN + 2,
        },
    );
    // The last field fails after the others were written: those must be rolled back too.
    encode_fails(
        &Request::Register(proto::Register {
            username: "alice".into(),
            password: Secret::new("pw"),
            nickname: Some("Al".into()),
            client: Some(over_in_bytes),
        }),
        EncodeError::StringTooLong {
            field: "client",
            len: MAX_STRING_LEN + 2,
        },
    );
    encode_fails(
        &Response::Error(ErrorReply::new(ErrorCode::Internal, over.clone())),
        EncodeError::StringTooLong {
            field: "message",
            len: MAX_STRING_LEN + 1,
        },
    );
}
