//! The byte layout promised by PROTOCOL.md, pinned down message by message. A round trip
//! cannot catch a mistake that encode and decode share; bytes assembled by hand from the
//! specification can, and they keep the document and the code from drifting apart.

use std::fmt::Debug;

use proto::{
    ErrorCode, ErrorReply, ImageFormat, Message, Operation, Picture, Profile, Request, Response,
    Secret, Session, decode,
};

use crate::support::{Body, encoded, frame, hex, kind};

/// `message` must encode to exactly `body` behind a header of `kind`, and those bytes must
/// decode back to it.
fn assert_layout<M: Message + Clone + PartialEq + Debug>(message: M, kind: u8, body: Body) {
    let id = 0xA1B2_C3D4;
    let expected = frame(kind, id, body.no_trace());
    assert_eq!(
        hex(&encoded(id, &message)),
        hex(&expected),
        "encoding of {message:?}"
    );
    let (decoded, used) = decode::<M>(&expected).unwrap().unwrap();
    assert_eq!(
        (decoded.request_id, decoded.message, used),
        (id, message, expected.len())
    );
}

fn token() -> Secret {
    Secret::new("tok")
}

fn profile(picture: Option<&str>) -> Profile {
    Profile {
        id: -2,
        username: "alice".into(),
        nickname: "Ålice".into(),
        picture: picture.map(String::from),
    }
}

fn profile_body(picture: Option<&str>) -> Body {
    Body::new().profile(-2, "alice", "Ålice", picture)
}

#[test]
fn request_bodies_follow_the_specification() {
    let b = Body::new;
    assert_layout(Request::Ping(proto::Ping), 0x01, b());
    assert_layout(
        Request::Register(proto::Register {
            username: "alice".into(),
            password: Secret::new("pw"),
            nickname: None,
            client: None,
        }),
        0x02,
        b().str("alice").str("pw").u8(0).u8(0),
    );
    assert_layout(
        Request::Register(proto::Register {
            username: "alice".into(),
            password: Secret::new("pw"),
            nickname: Some("Al".into()),
            client: Some("192.0.2.1".into()),
        }),
        0x02,
        b().str("alice")
            .str("pw")
            .u8(1)
            .str("Al")
            .u8(1)
            .str("192.0.2.1"),
    );
    assert_layout(
        Request::Login(proto::Login {
            username: "alice".into(),
            password: Secret::new("pw"),
            client: None,
            device: None,
        }),
        0x03,
        b().str("alice").str("pw").u8(0).u8(0),
    );
    assert_layout(
        Request::Login(proto::Login {
            username: "alice".into(),
            password: Secret::new("pw"),
            client: Some("192.0.2.1".into()),
            device: Some(Secret::new("dev")),
        }),
        0x03,
        b().str("alice")
            .str("pw")
            .u8(1)
            .str("192.0.2.1")
            .u8(1)
            .str("dev"),
    );
    assert_layout(
        Request::Logout(proto::Logout { token: token() }),
        0x04,
        b().str("tok"),
    );
    assert_layout(
        Request::GetProfile(proto::GetProfile { token: token() }),
        0x05,
        b().str("tok"),
    );
    assert_layout(
        Request::UpdateNickname(proto::UpdateNickname {
            token: token(),
            nickname: "Al".into(),
        }),
        0x06,
        b().str("tok").str("Al"),
    );
    assert_layout(
        Request::SetPicture(proto::SetPicture {
            token: token(),
            image: vec![0x89, b'P', b'N', b'G'],
        }),
        0x07,
        b().str("tok").blob(&[0x89, b'P', b'N', b'G']),
    );
    assert_layout(
        Request::GetPicture(proto::GetPicture { key: "k1".into() }),
        0x08,
        b().str("k1"),
    );
    assert_layout(
        Request::ChangePassword(proto::ChangePassword {
            token: token(),
            current_password: Secret::new("old"),
            new_password: Secret::new("new"),
            client: None,
            device: None,
        }),
        0x09,
        b().str("tok").str("old").str("new").u8(0).u8(0),
    );
    assert_layout(
        Request::ChangePassword(proto::ChangePassword {
            token: token(),
            current_password: Secret::new("old"),
            new_password: Secret::new("new"),
            client: Some("192.0.2.1".into()),
            device: Some(Secret::new("dev")),
        }),
        0x09,
        b().str("tok")
            .str("old")
            .str("new")
            .u8(1)
            .str("192.0.2.1")
            .u8(1)
            .str("dev"),
    );
    assert_layout(
        Request::LogoutAll(proto::LogoutAll { token: token() }),
        0x0A,
        b().str("tok"),
    );
    assert_layout(
        Request::DeleteAccount(proto::DeleteAccount {
            token: token(),
            password: Secret::new("pw"),
            client: Some("192.0.2.1".into()),
            device: None,
        }),
        0x0B,
        b().str("tok").str("pw").u8(1).str("192.0.2.1").u8(0),
    );
    assert_layout(
        Request::Hello(proto::Hello {
            key_id: "0123456789abcdef".into(),
            nonce: vec![9; 32],
        }),
        0x0C,
        b().str("0123456789abcdef").blob(&[9; 32]),
    );
    assert_layout(
        Request::Authenticate(proto::Authenticate { proof: vec![5; 32] }),
        0x0D,
        b().blob(&[5; 32]),
    );
}

#[test]
fn response_bodies_follow_the_specification() {
    let b = Body::new;
    assert_layout(Response::Ping(()), 0x81, b());
    assert_layout(Response::Register(profile(None)), 0x82, profile_body(None));
    assert_layout(
        Response::Login(Session {
            token: token(),
            expires_at: 1_700_000_000,
            profile: profile(Some("p1")),
            device_token: Secret::new("dev"),
        }),
        0x83,
        b().str("tok")
            .i64(1_700_000_000)
            .profile(-2, "alice", "Ålice", Some("p1"))
            .str("dev"),
    );
    assert_layout(Response::Logout(()), 0x84, b());
    assert_layout(
        Response::GetProfile(profile(Some("p1"))),
        0x85,
        profile_body(Some("p1")),
    );
    assert_layout(
        Response::UpdateNickname(profile(None)),
        0x86,
        profile_body(None),
    );
    assert_layout(
        Response::SetPicture(profile(Some("p2"))),
        0x87,
        profile_body(Some("p2")),
    );
    for (format, tag) in ImageFormat::ALL.into_iter().zip([1, 2, 3, 4]) {
        assert_layout(
            Response::GetPicture(Picture {
                format,
                data: vec![1, 2, 3],
            }),
            0x88,
            b().u8(tag).blob(&[1, 2, 3]),
        );
    }
    assert_layout(
        Response::ChangePassword(Session {
            token: token(),
            expires_at: 1_700_000_000,
            profile: profile(None),
            device_token: Secret::new("dev"),
        }),
        0x89,
        b().str("tok")
            .i64(1_700_000_000)
            .profile(-2, "alice", "Ålice", None)
            .str("dev"),
    );
    assert_layout(Response::LogoutAll(()), 0x8A, b());
    assert_layout(Response::DeleteAccount(()), 0x8B, b());
    assert_layout(
        Response::Hello(proto::Challenge {
            nonce: vec![8; 32],
            proof: vec![6; 32],
        }),
        kind::CHALLENGE,
        b().blob(&[8; 32]).blob(&[6; 32]),
    );
    assert_layout(Response::Authenticate(()), kind::AUTHENTICATED, b());
    assert_layout(
        Response::Error(ErrorReply {
            code: ErrorCode::WeakPassword,
            retry_after_ms: 0,
            message: "too easy to guess".into(),
        }),
        0xFF,
        b().u16(110).u32(0).str("too easy to guess"),
    );
    assert_layout(
        Response::Error(ErrorReply {
            code: ErrorCode::TooManyRequests,
            retry_after_ms: 30_000,
            message: "slow down".into(),
        }),
        0xFF,
        b().u16(109).u32(30_000).str("slow down"),
    );
}

#[test]
fn operations_have_the_kinds_and_names_of_the_specification() {
    let operations = [
        (proto::Ping::KIND, proto::Ping::NAME, kind::PING, "ping"),
        (
            proto::Register::KIND,
            proto::Register::NAME,
            kind::REGISTER,
            "register",
        ),
        (proto::Login::KIND, proto::Login::NAME, kind::LOGIN, "login"),
        (
            proto::Logout::KIND,
            proto::Logout::NAME,
            kind::LOGOUT,
            "logout",
        ),
        (
            proto::GetProfile::KIND,
            proto::GetProfile::NAME,
            kind::GET_PROFILE,
            "get_profile",
        ),
        (
            proto::UpdateNickname::KIND,
            proto::UpdateNickname::NAME,
            kind::UPDATE_NICKNAME,
            "update_nickname",
        ),
        (
            proto::SetPicture::KIND,
            proto::SetPicture::NAME,
            kind::SET_PICTURE,
            "set_picture",
        ),
        (
            proto::GetPicture::KIND,
            proto::GetPicture::NAME,
            kind::GET_PICTURE,
            "get_picture",
        ),
        (
            proto::ChangePassword::KIND,
            proto::ChangePassword::NAME,
            kind::CHANGE_PASSWORD,
            "change_password",
        ),
        (
            proto::LogoutAll::KIND,
            proto::LogoutAll::NAME,
            kind::LOGOUT_ALL,
            "logout_all",
        ),
        (
            proto::DeleteAccount::KIND,
            proto::DeleteAccount::NAME,
            kind::DELETE_ACCOUNT,
            "delete_account",
        ),
        (proto::Hello::KIND, proto::Hello::NAME, kind::HELLO, "hello"),
        (
            proto::Authenticate::KIND,
            proto::Authenticate::NAME,
            kind::AUTHENTICATE,
            "authenticate",
        ),
    ];
    for (actual, name, expected, expected_name) in operations {
        assert_eq!((actual, name), (expected, expected_name));
    }
    assert_eq!(
        Request::names(),
        operations.map(|(_, name, _, _)| name).to_vec(),
        "every operation, in kind order"
    );
    assert_eq!(proto::message::ERROR_KIND, kind::ERROR);
}

#[test]
fn error_code_values_match_the_specification() {
    let table = [
        (ErrorCode::Malformed, 1),
        (ErrorCode::UnsupportedVersion, 2),
        (ErrorCode::Busy, 3),
        (ErrorCode::Unavailable, 4),
        (ErrorCode::Internal, 5),
        (ErrorCode::Unauthenticated, 6),
        (ErrorCode::InvalidUsername, 100),
        (ErrorCode::InvalidPassword, 101),
        (ErrorCode::InvalidNickname, 102),
        (ErrorCode::UsernameTaken, 103),
        (ErrorCode::InvalidCredentials, 104),
        (ErrorCode::Unauthorized, 105),
        (ErrorCode::PayloadTooLarge, 106),
        (ErrorCode::UnsupportedMediaType, 107),
        (ErrorCode::NotFound, 108),
        (ErrorCode::TooManyRequests, 109),
        (ErrorCode::WeakPassword, 110),
    ];
    assert_eq!(table.len(), ErrorCode::ALL.len());
    for (code, value) in table {
        assert_eq!(code as u16, value, "{code:?}");
        assert_eq!(ErrorCode::from_u16(value), Some(code));
    }
}

/// The worked examples printed in PROTOCOL.md, byte for byte.
#[test]
fn worked_examples_in_the_specification_are_exact() {
    let login = Request::Login(proto::Login {
        username: "alice".into(),
        password: Secret::new("hunter2"),
        client: None,
        device: None,
    });
    let mut traced = Vec::new();
    let trace = proto::Trace::new("req-1").unwrap();
    proto::encode(42, &trace, &login, &mut traced).unwrap();
    assert_eq!(
        hex(&traced),
        "47 48 03 03 00 00 00 2a 00 00 00 19 \
         00 05 61 6c 69 63 65 00 07 68 75 6e 74 65 72 32 00 00 00 05 72 65 71 2d 31"
    );
    let (frame, _) = decode::<Request>(&traced).unwrap().unwrap();
    assert_eq!(frame.trace.as_str(), "req-1");
    assert_eq!(
        hex(&encoded(42, &Response::Ping(()))),
        "47 48 03 81 00 00 00 2a 00 00 00 02 00 00"
    );
    let busy = Response::Error(ErrorReply {
        code: ErrorCode::Busy,
        retry_after_ms: 1000,
        message: "busy".into(),
    });
    assert_eq!(
        hex(&encoded(43, &busy)),
        "47 48 03 ff 00 00 00 2b 00 00 00 0e \
         00 03 00 00 03 e8 00 04 62 75 73 79 00 00"
    );
}

/// A trace is 0 to 64 bytes of printable ASCII without spaces, so that it can go into a log
/// line or a header as it is; anything else is no trace.
#[test]
fn traces_are_short_printable_ascii() {
    for valid in [
        "",
        "a",
        "req-1",
        "0123456789abcdef0123456789abcdef",
        "!~",
        &"x".repeat(64),
    ] {
        assert_eq!(proto::Trace::new(valid).unwrap().as_str(), valid);
    }
    for invalid in [&"x".repeat(65), "a b", "tab\t", "new\nline", "é", "\u{7f}"] {
        assert_eq!(proto::Trace::new(invalid), None, "{invalid:?}");
    }
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let messages: [&dyn Debug; 4] = [
        &Request::Login(proto::Login {
            username: "alice".into(),
            password: Secret::new("hunter2"),
            client: None,
            device: Some(Secret::new("hunter2")),
        }),
        &Request::UpdateNickname(proto::UpdateNickname {
            token: Secret::new("hunter2"),
            nickname: "Al".into(),
        }),
        &Response::Login(Session {
            token: Secret::new("hunter2"),
            expires_at: 0,
            profile: profile(None),
            device_token: Secret::new("hunter2"),
        }),
        &proto::Frame {
            request_id: 1,
            trace: proto::Trace::NONE,
            message: Request::Logout(proto::Logout {
                token: Secret::new("hunter2"),
            }),
        },
    ];
    for message in messages {
        let debug = format!("{message:?} {message:#?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }
    assert_eq!(Secret::new("hunter2").expose(), "hunter2");
}

#[test]
fn picture_keys_have_the_documented_form() {
    assert!(proto::is_picture_key("42-0123456789abcdef"));
    assert!(proto::is_picture_key(
        "9223372036854775807-ffffffffffffffff"
    ));
    for bad in [
        "",
        "42",
        "42-0123456789ABCDEF",
        "42-0123456789abcde",
        "42-0123456789abcdef0",
        "../etc/passwd",
        "42-0123456789abcdef/..",
        "-0123456789abcdef",
        "4x-0123456789abcdef",
        "12345678901234567890-0123456789abcdef",
    ] {
        assert!(!proto::is_picture_key(bad), "{bad}");
    }
}
