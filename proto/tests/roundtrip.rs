//! Property tests: every message survives encode then decode, partial input is never mistaken
//! for a frame or an error, and no input at all can make the decoder panic.

use std::fmt::Debug;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proto::{
    DEFAULT_MAX_FRAME_LEN, ErrorCode, ErrorReply, Frame, HEADER_LEN, ImageFormat, MAGIC,
    MAX_STRING_LEN, Message, Picture, Profile, Request, Response, Secret, Session, VERSION, decode,
    decode_with_limit, encode,
};

use crate::support::{encoded, kind};

/// Keeps blobs small enough that hundreds of cases stay fast in a debug build while still
/// crossing the 64 KiB read-buffer size the blocking helpers care about.
const MAX_BLOB: usize = 64 * 1024;

/// Appends chars while they fit, so the limit is honoured in UTF-8 bytes, not in chars.
fn fit(chars: Vec<char>) -> String {
    let mut text = String::new();
    for c in chars {
        if text.len() + c.len_utf8() > MAX_STRING_LEN {
            break;
        }
        text.push(c);
    }
    text
}

/// Any Unicode text the encoder must accept: mostly short, sometimes long, and sometimes exactly
/// `MAX_STRING_LEN` bytes built from multi-byte chars, where an off-by-one would show.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        6 => vec(any::<char>(), 0..=24).prop_map(String::from_iter),
        2 => vec(any::<char>(), 0..=MAX_STRING_LEN).prop_map(fit),
        1 => any::<char>().prop_map(|c| {
            let mut text = c.to_string().repeat(MAX_STRING_LEN / c.len_utf8());
            while text.len() < MAX_STRING_LEN {
                text.push('x');
            }
            text
        }),
    ]
    .boxed()
}

fn secret() -> impl Strategy<Value = Secret> {
    text().prop_map(Secret::from)
}

fn blob() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..=64),
        1 => vec(any::<u8>(), 0..=MAX_BLOB),
    ]
}

fn profile() -> impl Strategy<Value = Profile> {
    (any::<i64>(), text(), text(), option::of(text())).prop_map(
        |(id, username, nickname, picture)| Profile {
            id,
            username,
            nickname,
            picture,
        },
    )
}

fn error_reply() -> impl Strategy<Value = ErrorReply> {
    (select(ErrorCode::ALL.to_vec()), any::<u32>(), text()).prop_map(
        |(code, retry_after_ms, message)| ErrorReply {
            code,
            retry_after_ms,
            message,
        },
    )
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Ping(proto::Ping)),
        (text(), secret(), option::of(text()), option::of(text())).prop_map(
            |(username, password, nickname, client)| {
                Request::Register(proto::Register {
                    username,
                    password,
                    nickname,
                    client,
                })
            }
        ),
        (text(), secret(), option::of(text()), option::of(secret())).prop_map(
            |(username, password, client, device)| {
                Request::Login(proto::Login {
                    username,
                    password,
                    client,
                    device,
                })
            }
        ),
        secret().prop_map(|token| Request::Logout(proto::Logout { token })),
        secret().prop_map(|token| Request::GetProfile(proto::GetProfile { token })),
        (secret(), text()).prop_map(|(token, nickname)| Request::UpdateNickname(
            proto::UpdateNickname { token, nickname }
        )),
        (secret(), blob())
            .prop_map(|(token, image)| Request::SetPicture(proto::SetPicture { token, image })),
        text().prop_map(|key| Request::GetPicture(proto::GetPicture { key })),
        (
            secret(),
            secret(),
            secret(),
            option::of(text()),
            option::of(secret())
        )
            .prop_map(|(token, current_password, new_password, client, device)| {
                Request::ChangePassword(proto::ChangePassword {
                    token,
                    current_password,
                    new_password,
                    client,
                    device,
                })
            }),
        secret().prop_map(|token| Request::LogoutAll(proto::LogoutAll { token })),
        (secret(), secret(), option::of(text()), option::of(secret())).prop_map(
            |(token, password, client, device)| {
                Request::DeleteAccount(proto::DeleteAccount {
                    token,
                    password,
                    client,
                    device,
                })
            }
        ),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        Just(Response::Ping(())),
        profile().prop_map(Response::Register),
        (secret(), any::<i64>(), profile(), secret()).prop_map(
            |(token, expires_at, profile, device_token)| {
                Response::Login(Session {
                    token,
                    expires_at,
                    profile,
                    device_token,
                })
            }
        ),
        Just(Response::Logout(())),
        profile().prop_map(Response::GetProfile),
        profile().prop_map(Response::UpdateNickname),
        profile().prop_map(Response::SetPicture),
        (select(ImageFormat::ALL.to_vec()), blob())
            .prop_map(|(format, data)| Response::GetPicture(Picture { format, data })),
        (secret(), any::<i64>(), profile(), secret()).prop_map(
            |(token, expires_at, profile, device_token)| {
                Response::ChangePassword(Session {
                    token,
                    expires_at,
                    profile,
                    device_token,
                })
            }
        ),
        Just(Response::LogoutAll(())),
        Just(Response::DeleteAccount(())),
        error_reply().prop_map(Response::Error),
    ]
}

/// Prefix lengths worth trying: all of them for a small frame; for a large one, every header
/// prefix, a spread through the body, and the longest strict prefix.
fn prefix_lens(len: usize) -> Vec<usize> {
    if len <= 512 {
        return (0..len).collect();
    }
    let mut lens: Vec<usize> = (0..=HEADER_LEN + 8).collect();
    lens.extend((HEADER_LEN + 9..len).step_by(len / 61 + 1));
    lens.push(len - 1);
    lens
}

/// The whole contract of one frame: header fields as PROTOCOL.md states them, an exact round
/// trip that consumes every byte, a canonical re-encoding, and `Ok(None)` for every strict
/// prefix (a receiver must keep reading, never give up or decode early).
fn check_round_trip<M: Message + Clone + PartialEq + Debug>(
    request_id: u32,
    message: &M,
    kind_byte: u8,
) -> Result<(), TestCaseError> {
    let buf = encoded(request_id, message);
    prop_assert!(buf.len() >= HEADER_LEN);
    prop_assert_eq!(&buf[..2], &MAGIC[..]);
    prop_assert_eq!(buf[2], VERSION);
    prop_assert_eq!(buf[3], kind_byte);
    prop_assert_eq!(&buf[4..8], &request_id.to_be_bytes()[..]);
    let body_len = u32::from_be_bytes(buf[8..12].try_into().unwrap());
    prop_assert_eq!(body_len as usize, buf.len() - HEADER_LEN);

    let decoded = decode::<M>(&buf);
    let expected = Frame {
        request_id,
        trace: proto::Trace::NONE,
        message: message.clone(),
    };
    prop_assert_eq!(decoded, Ok(Some((expected.clone(), buf.len()))));

    // A frame is exactly as long as it needs to be: the tightest limit still accepts it.
    let exact_limit = u32::try_from(buf.len()).unwrap();
    prop_assert_eq!(
        decode_with_limit::<M>(&buf, exact_limit),
        Ok(Some((expected.clone(), buf.len())))
    );

    // Equality alone would let -0.0 pass for 0.0; identical bytes prove nothing was lost.
    prop_assert_eq!(encoded(request_id, &expected.message), buf.clone());

    for len in prefix_lens(buf.len()) {
        prop_assert_eq!(
            decode::<M>(&buf[..len]),
            Ok(None),
            "prefix of {} bytes",
            len
        );
    }
    Ok(())
}

/// Two frames sent back to back must come apart at exactly the boundary.
fn check_concatenated<M: Message + Clone + PartialEq + Debug>(
    first: (u32, &M),
    second: (u32, &M),
) -> Result<(), TestCaseError> {
    let mut buf = Vec::new();
    encode(first.0, &proto::Trace::NONE, first.1, &mut buf).unwrap();
    let boundary = buf.len();
    encode(second.0, &proto::Trace::NONE, second.1, &mut buf).unwrap();

    let (frame, used) = decode::<M>(&buf).unwrap().expect("first frame is complete");
    prop_assert_eq!(used, boundary);
    prop_assert_eq!(frame.request_id, first.0);
    prop_assert_eq!(&frame.message, first.1);

    let (frame, used) = decode::<M>(&buf[boundary..])
        .unwrap()
        .expect("second frame is complete");
    prop_assert_eq!(used, buf.len() - boundary);
    prop_assert_eq!(frame.request_id, second.0);
    prop_assert_eq!(&frame.message, second.1);
    Ok(())
}

/// What any decode of arbitrary bytes may return: no panic, never more bytes used than given,
/// and anything accepted re-encodes to exactly the bytes it came from (the encoding is
/// canonical, so no two byte strings decode to the same frame).
fn check_arbitrary<M: Message + Debug>(
    buf: &[u8],
    max_frame_len: u32,
) -> Result<(), TestCaseError> {
    match decode_with_limit::<M>(buf, max_frame_len) {
        Ok(None) => {}
        Ok(Some((frame, used))) => {
            prop_assert!(used <= buf.len());
            prop_assert_eq!(encoded(frame.request_id, &frame.message), &buf[..used]);
        }
        Err(error) => {
            // Past the magic bytes, the header is readable and its request id must be kept.
            if buf.len() >= HEADER_LEN && buf[..2] == MAGIC {
                let id = u32::from_be_bytes(buf[4..8].try_into().unwrap());
                prop_assert_eq!(error.request_id(), Some(id));
            }
        }
    }
    Ok(())
}

/// A header that passes every check, followed by random bytes, so the fuzzing reaches the body
/// decoders instead of stopping at the magic.
fn valid_header_then_noise(kinds: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    (select(kinds), any::<u32>(), vec(any::<u8>(), 0..=256)).prop_map(|(kind, id, body)| {
        let mut buf = crate::support::header(VERSION, kind, id, body.len() as u32);
        buf.extend_from_slice(&body);
        buf
    })
}

const REQUEST_KINDS: [u8; 11] = [
    kind::PING,
    kind::REGISTER,
    kind::LOGIN,
    kind::LOGOUT,
    kind::GET_PROFILE,
    kind::UPDATE_NICKNAME,
    kind::SET_PICTURE,
    kind::GET_PICTURE,
    kind::CHANGE_PASSWORD,
    kind::LOGOUT_ALL,
    kind::DELETE_ACCOUNT,
];

const RESPONSE_KINDS: [u8; 12] = [
    kind::PONG,
    kind::REGISTERED,
    kind::LOGGED_IN,
    kind::LOGGED_OUT,
    kind::PROFILE,
    kind::NICKNAME_UPDATED,
    kind::PICTURE_SET,
    kind::PICTURE,
    kind::PASSWORD_CHANGED,
    kind::LOGGED_OUT_ALL,
    kind::ACCOUNT_DELETED,
    kind::ERROR,
];

// One property per variant rather than one over all of them, so that no variant's coverage
// depends on how the random choice between variants happened to fall.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn ping_round_trips(id in any::<u32>()) {
        check_round_trip(id, &Request::Ping(proto::Ping), kind::PING)?;
    }

    #[test]
    fn every_trace_round_trips_after_any_message(
        id in any::<u32>(), trace in "[!-~]{0,64}", token in secret(),
    ) {
        let trace = proto::Trace::new(&trace).expect("the strategy makes valid traces");
        for message in [Request::Ping(proto::Ping), Request::Logout(proto::Logout { token })] {
            let mut buf = Vec::new();
            encode(id, &trace, &message, &mut buf).unwrap();
            let (frame, used) = decode::<Request>(&buf).unwrap().unwrap();
            prop_assert_eq!(used, buf.len());
            prop_assert_eq!(&frame.trace, &trace);
            prop_assert_eq!(frame.message, message);
        }
    }

    #[test]
    fn register_with_nickname_round_trips(
        id in any::<u32>(), username in text(), password in secret(), nickname in text(),
    ) {
        let message =
            Request::Register(proto::Register { username, password, nickname: Some(nickname), client: None });
        check_round_trip(id, &message, kind::REGISTER)?;
    }

    #[test]
    fn register_without_nickname_round_trips(
        id in any::<u32>(), username in text(), password in secret(),
    ) {
        let message = Request::Register(proto::Register { username, password, nickname: None, client: None });
        check_round_trip(id, &message, kind::REGISTER)?;
    }

    #[test]
    fn login_round_trips(id in any::<u32>(), username in text(), password in secret()) {
        let message = Request::Login(proto::Login { username, password, client: None, device: None });
        check_round_trip(id, &message, kind::LOGIN)?;
    }

    #[test]
    fn logout_round_trips(id in any::<u32>(), token in secret()) {
        check_round_trip(id, &Request::Logout(proto::Logout { token }), kind::LOGOUT)?;
    }

    #[test]
    fn get_profile_round_trips(id in any::<u32>(), token in secret()) {
        check_round_trip(id, &Request::GetProfile(proto::GetProfile { token }), kind::GET_PROFILE)?;
    }

    #[test]
    fn update_nickname_round_trips(id in any::<u32>(), token in secret(), nickname in text()) {
        let message = Request::UpdateNickname(proto::UpdateNickname { token, nickname });
        check_round_trip(id, &message, kind::UPDATE_NICKNAME)?;
    }

    #[test]
    fn set_picture_round_trips(id in any::<u32>(), token in secret(), image in blob()) {
        check_round_trip(id, &Request::SetPicture(proto::SetPicture { token, image }), kind::SET_PICTURE)?;
    }

    #[test]
    fn get_picture_round_trips(id in any::<u32>(), key in text()) {
        check_round_trip(id, &Request::GetPicture(proto::GetPicture { key }), kind::GET_PICTURE)?;
    }

    #[test]
    fn change_password_round_trips(
        id in any::<u32>(), token in secret(), current_password in secret(), new_password in secret(),
        client in option::of(text()), device in option::of(secret()),
    ) {
        let message = Request::ChangePassword(proto::ChangePassword {
            token, current_password, new_password, client, device,
        });
        check_round_trip(id, &message, kind::CHANGE_PASSWORD)?;
    }

    #[test]
    fn logout_all_round_trips(id in any::<u32>(), token in secret()) {
        check_round_trip(id, &Request::LogoutAll(proto::LogoutAll { token }), kind::LOGOUT_ALL)?;
    }

    #[test]
    fn delete_account_round_trips(
        id in any::<u32>(), token in secret(), password in secret(),
        client in option::of(text()), device in option::of(secret()),
    ) {
        let message = Request::DeleteAccount(proto::DeleteAccount { token, password, client, device });
        check_round_trip(id, &message, kind::DELETE_ACCOUNT)?;
    }

    #[test]
    fn password_changed_round_trips(
        id in any::<u32>(), token in secret(), expires_at in any::<i64>(), profile in profile(),
        device_token in secret(),
    ) {
        let message = Response::ChangePassword(Session { token, expires_at, profile, device_token });
        check_round_trip(id, &message, kind::PASSWORD_CHANGED)?;
    }

    #[test]
    fn logged_out_all_round_trips(id in any::<u32>()) {
        check_round_trip(id, &Response::LogoutAll(()), kind::LOGGED_OUT_ALL)?;
    }

    #[test]
    fn account_deleted_round_trips(id in any::<u32>()) {
        check_round_trip(id, &Response::DeleteAccount(()), kind::ACCOUNT_DELETED)?;
    }

    #[test]
    fn pong_round_trips(id in any::<u32>()) {
        check_round_trip(id, &Response::Ping(()), kind::PONG)?;
    }

    #[test]
    fn registered_round_trips(id in any::<u32>(), profile in profile()) {
        check_round_trip(id, &Response::Register(profile), kind::REGISTERED)?;
    }

    #[test]
    fn logged_in_round_trips(
        id in any::<u32>(), token in secret(), expires_at in any::<i64>(), profile in profile(),
        device_token in secret(),
    ) {
        let message = Response::Login(Session { token, expires_at, profile, device_token });
        check_round_trip(id, &message, kind::LOGGED_IN)?;
    }

    #[test]
    fn logged_out_round_trips(id in any::<u32>()) {
        check_round_trip(id, &Response::Logout(()), kind::LOGGED_OUT)?;
    }

    #[test]
    fn profile_round_trips(id in any::<u32>(), profile in profile()) {
        check_round_trip(id, &Response::GetProfile(profile), kind::PROFILE)?;
    }

    #[test]
    fn nickname_updated_round_trips(id in any::<u32>(), profile in profile()) {
        check_round_trip(id, &Response::UpdateNickname(profile), kind::NICKNAME_UPDATED)?;
    }

    #[test]
    fn picture_set_round_trips(id in any::<u32>(), profile in profile()) {
        check_round_trip(id, &Response::SetPicture(profile), kind::PICTURE_SET)?;
    }

    #[test]
    fn picture_round_trips_in_every_format(id in any::<u32>(), data in blob()) {
        for format in ImageFormat::ALL {
            let message = Response::GetPicture(Picture { format, data: data.clone() });
            check_round_trip(id, &message, kind::PICTURE)?;
        }
    }

    #[test]
    fn error_with_every_code_round_trips(id in any::<u32>(), reply in error_reply()) {
        for code in ErrorCode::ALL {
            let message = Response::Error(ErrorReply { code, ..reply.clone() });
            check_round_trip(id, &message, kind::ERROR)?;
        }
    }

    #[test]
    fn requests_back_to_back_split_at_the_boundary(
        a in (any::<u32>(), request()), b in (any::<u32>(), request()),
    ) {
        check_concatenated((a.0, &a.1), (b.0, &b.1))?;
    }

    #[test]
    fn responses_back_to_back_split_at_the_boundary(
        a in (any::<u32>(), response()), b in (any::<u32>(), response()),
    ) {
        check_concatenated((a.0, &a.1), (b.0, &b.1))?;
    }
}

// Cheap cases, so many of them: this is the closest the test suite comes to fuzzing.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn random_bytes_never_panic_the_request_decoder(
        buf in vec(any::<u8>(), 0..=64), limit in prop_oneof![Just(DEFAULT_MAX_FRAME_LEN), any::<u32>()],
    ) {
        check_arbitrary::<Request>(&buf, limit)?;
    }

    #[test]
    fn random_bytes_never_panic_the_response_decoder(
        buf in vec(any::<u8>(), 0..=64), limit in prop_oneof![Just(DEFAULT_MAX_FRAME_LEN), any::<u32>()],
    ) {
        check_arbitrary::<Response>(&buf, limit)?;
    }

    #[test]
    fn random_request_bodies_never_panic(buf in valid_header_then_noise(REQUEST_KINDS.to_vec())) {
        check_arbitrary::<Request>(&buf, DEFAULT_MAX_FRAME_LEN)?;
    }

    #[test]
    fn random_response_bodies_never_panic(buf in valid_header_then_noise(RESPONSE_KINDS.to_vec())) {
        check_arbitrary::<Response>(&buf, DEFAULT_MAX_FRAME_LEN)?;
    }

    #[test]
    fn random_bytes_after_the_magic_never_panic(
        rest in vec(any::<u8>(), 0..=64), as_request in any::<bool>(),
    ) {
        let mut buf = MAGIC.to_vec();
        buf.extend_from_slice(&rest);
        if as_request {
            check_arbitrary::<Request>(&buf, DEFAULT_MAX_FRAME_LEN)?;
        } else {
            check_arbitrary::<Response>(&buf, DEFAULT_MAX_FRAME_LEN)?;
        }
    }
}

/// The properties pick codes, formats and kinds at random; this pins that each one is covered
/// on every run, whatever the seed.
#[test]
fn every_tag_value_round_trips() {
    for code in ErrorCode::ALL {
        let message = Response::Error(ErrorReply::new(code, "x"));
        check_round_trip(9, &message, kind::ERROR).unwrap();
    }
    for format in ImageFormat::ALL {
        let message = Response::GetPicture(Picture {
            format,
            data: vec![1, 2, 3],
        });
        check_round_trip(9, &message, kind::PICTURE).unwrap();
    }
}

#[test]
fn strings_at_the_byte_limit_round_trip_in_every_utf8_width() {
    // 1-, 2-, 3- and 4-byte chars, each filling the limit exactly (4096 is not a multiple of
    // 3, so the euros end with one ASCII byte).
    for c in ['a', 'é', '€', '😀'] {
        let mut username = c.to_string().repeat(MAX_STRING_LEN / c.len_utf8());
        username.push_str(&"a".repeat(MAX_STRING_LEN % c.len_utf8()));
        assert_eq!(username.len(), MAX_STRING_LEN);
        let message = Request::Login(proto::Login {
            username,
            password: Secret::new("p"),
            client: None,
            device: None,
        });
        check_round_trip(1, &message, kind::LOGIN).unwrap();
    }
}
