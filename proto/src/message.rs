//! Every message of the protocol (see `PROTOCOL.md`): one module per operation under
//! `message/` (for example `message/login.rs`), which owns the request type, its kind number,
//! its name and the layout of its request and answer; the two thin enums [`Request`] and
//! [`Response`] over them; and what the operations share: [`Secret`], [`Profile`],
//! [`ImageFormat`], [`ErrorCode`] and [`ErrorReply`].
//!
//! Requests flow from http-server to tcp-server, responses back. Each request kind has exactly
//! one success response, [`Operation::Reply`], whose kind is the request's with the high bit
//! set; any request may instead get [`Response::Error`].

use std::fmt;

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::wire::{self, Reader};

// The operations: `pub mod <operation>;` for each file of `message/`, and `for_each_operation!`
// (written by build.rs).
include!(concat!(env!("OUT_DIR"), "/operations.rs"));

/// How a message body is laid out: written with the `wire` encoders, read with a [`Reader`].
pub trait Body: Sized {
    /// Appends the body to `out`; on an error `out` may hold part of it (the frame encoder
    /// rolls back).
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;
    /// Reads the body; the caller checks that nothing is left over.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind>;
}

/// One operation of the protocol: a request type with its kind number, its name, and the type
/// of its successful answer.
pub trait Operation: Body {
    /// The request's kind byte, below `0x80`; the answer's is `KIND | 0x80`.
    const KIND: u8;
    /// A short lowercase name, for logs and metrics labels.
    const NAME: &'static str;
    /// The successful answer.
    type Reply: Body;
}

/// The kind byte of [`Response::Error`].
pub const ERROR_KIND: u8 = 0xFF;

macro_rules! messages {
    ($($module:ident $name:ident),* $(,)?) => {
        pub use self::{$($module::$name),*};

        /// A request from http-server to tcp-server: one variant per operation.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request {
            $(
                #[doc = concat!("See [`", stringify!($name), "`].")]
                $name($module::$name),
            )*
        }

        /// A response from tcp-server to http-server: the answer to each operation, or an
        /// error.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Response {
            $(
                #[doc = concat!("The answer to [`Request::", stringify!($name), "`].")]
                $name(<$module::$name as Operation>::Reply),
            )*
            /// The request failed; the answer to any request.
            Error(ErrorReply),
        }

        // Two operations with one kind number would make frames ambiguous.
        const _: () = {
            let kinds = [$(<$module::$name as Operation>::KIND),*];
            let mut i = 0;
            while i < kinds.len() {
                assert!(kinds[i] < 0x80, "a request kind is below 0x80");
                let mut j = i + 1;
                while j < kinds.len() {
                    assert!(kinds[i] != kinds[j], "two operations share a kind number");
                    j += 1;
                }
                i += 1;
            }
        };

        impl Request {
            /// The kind byte for the frame header.
            pub fn kind(&self) -> u8 {
                match self {
                    $(Request::$name(_) => <$module::$name as Operation>::KIND,)*
                }
            }

            /// The operation's name, for logs and metrics labels.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Request::$name(_) => <$module::$name as Operation>::NAME,)*
                }
            }

            /// Every operation's name, in kind order: what a metrics label can be.
            pub fn names() -> Vec<&'static str> {
                let mut kinds = vec![$((
                    <$module::$name as Operation>::KIND,
                    <$module::$name as Operation>::NAME,
                )),*];
                kinds.sort_unstable();
                kinds.into_iter().map(|(_, name)| name).collect()
            }

            pub(crate) fn accepts_kind(kind: u8) -> bool {
                false $(|| kind == <$module::$name as Operation>::KIND)*
            }

            pub(crate) fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
                match self {
                    $(Request::$name(message) => message.encode(out),)*
                }
            }

            pub(crate) fn decode_body(
                kind: u8,
                r: &mut Reader<'_>,
            ) -> Result<Self, DecodeErrorKind> {
                $(
                    if kind == <$module::$name as Operation>::KIND {
                        return Ok(Request::$name(Body::decode(r)?));
                    }
                )*
                Err(DecodeErrorKind::UnknownKind(kind))
            }
        }

        impl Response {
            /// The kind byte for the frame header.
            pub fn kind(&self) -> u8 {
                match self {
                    $(Response::$name(_) => <$module::$name as Operation>::KIND | 0x80,)*
                    Response::Error(_) => ERROR_KIND,
                }
            }

            pub(crate) fn accepts_kind(kind: u8) -> bool {
                kind == ERROR_KIND || (kind & 0x80 != 0 && Request::accepts_kind(kind & 0x7F))
            }

            pub(crate) fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
                match self {
                    $(Response::$name(reply) => reply.encode(out),)*
                    Response::Error(error) => error.encode(out),
                }
            }

            pub(crate) fn decode_body(
                kind: u8,
                r: &mut Reader<'_>,
            ) -> Result<Self, DecodeErrorKind> {
                if kind == ERROR_KIND {
                    return Ok(Response::Error(ErrorReply::decode(r)?));
                }
                $(
                    if kind == <$module::$name as Operation>::KIND | 0x80 {
                        return Ok(Response::$name(Body::decode(r)?));
                    }
                )*
                Err(DecodeErrorKind::UnknownKind(kind))
            }
        }
    };
}

for_each_operation!(messages);

/// A password or token. Its `Debug` output is redacted so that logging a message can never
/// leak one.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the code that must use it (hashing, token checks).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// A user's public profile: the answer to several operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The account id.
    pub id: i64,
    /// The username as registered.
    pub username: String,
    /// The display name.
    pub nickname: String,
    /// The key of the current picture, for [`GetPicture`].
    pub picture: Option<String>,
}

impl Body for Profile {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::put_i64(out, self.id);
        wire::put_str(out, "username", &self.username)?;
        wire::put_str(out, "nickname", &self.nickname)?;
        wire::put_opt_str(out, "picture", self.picture.as_deref())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(Profile {
            id: r.i64("id")?,
            username: r.string("username")?,
            nickname: r.string("nickname")?,
            picture: r.opt_string("picture")?,
        })
    }
}

/// The image formats a picture can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// `image/png`.
    Png = 1,
    /// `image/jpeg`.
    Jpeg = 2,
    /// `image/gif`.
    Gif = 3,
    /// `image/webp`.
    Webp = 4,
}

impl ImageFormat {
    /// Every format, in tag order.
    pub const ALL: [ImageFormat; 4] = [
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::Gif,
        ImageFormat::Webp,
    ];

    /// The media type, for `Content-Type`.
    pub fn media_type(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Gif => "image/gif",
            ImageFormat::Webp => "image/webp",
        }
    }

    /// The format of a tag, if it is one.
    pub fn from_tag(tag: u8) -> Option<Self> {
        ImageFormat::ALL.into_iter().find(|f| *f as u8 == tag)
    }
}

/// The form usernames are compared in: ASCII lowercase (valid usernames are ASCII). tcp-server
/// finds and throttles accounts by it, and http-server sends every login for one key to the
/// same tcp-server (see `PROTOCOL.md`, "Routing"), so the two must agree on it.
pub fn username_key(username: &str) -> String {
    username.to_ascii_lowercase()
}

/// Whether `key` has the form of a picture key, `<user id>-<16 lowercase hex digits>` (see
/// `PROTOCOL.md`). Anything else (a path, a traversal attempt) names no picture, so both tiers
/// refuse it without a lookup.
pub fn is_picture_key(key: &str) -> bool {
    let Some((id, hash)) = key.split_once('-') else {
        return false;
    };
    (1..=19).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_digit())
        && hash.len() == 16
        && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What went wrong with a request, in a form the HTTP tier maps to a status code. Not
/// `non_exhaustive`: both tiers ship together, and http-server's mapping must name every code
/// (a new one does not compile until it is mapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The frame could not be decoded; the server closes the connection after this reply.
    Malformed = 1,
    /// The frame's protocol version is not spoken by the server; the connection is closed.
    UnsupportedVersion = 2,
    /// The server is at its connection or work bound; retry after `retry_after_ms`.
    Busy = 3,
    /// A dependency (the database) is unavailable; retry later.
    Unavailable = 4,
    /// A bug or unexpected failure on the server.
    Internal = 5,
    /// The peer has not proved it holds the tier key (no handshake, an unknown key, a wrong
    /// proof); the server closes the connection after this reply.
    Unauthenticated = 6,
    /// The username breaks the username rules.
    InvalidUsername = 100,
    /// The password breaks the password rules.
    InvalidPassword = 101,
    /// The nickname breaks the nickname rules.
    InvalidNickname = 102,
    /// Another account has this username (compared without regard to case).
    UsernameTaken = 103,
    /// Unknown username or wrong password; the two are deliberately not told apart.
    InvalidCredentials = 104,
    /// The session token is missing, malformed, tampered with, expired or revoked.
    Unauthorized = 105,
    /// The picture is larger than the server accepts, in bytes or in pixels.
    PayloadTooLarge = 106,
    /// The picture is not an image of an accepted format.
    UnsupportedMediaType = 107,
    /// No such picture.
    NotFound = 108,
    /// Too many attempts (failed logins, registrations); retry after `retry_after_ms`.
    TooManyRequests = 109,
    /// The password is long enough but too easy to guess; the message says why.
    WeakPassword = 110,
}

impl ErrorCode {
    /// Every code, in tag order.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::Malformed,
        ErrorCode::UnsupportedVersion,
        ErrorCode::Busy,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::Unauthenticated,
        ErrorCode::InvalidUsername,
        ErrorCode::InvalidPassword,
        ErrorCode::InvalidNickname,
        ErrorCode::UsernameTaken,
        ErrorCode::InvalidCredentials,
        ErrorCode::Unauthorized,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::NotFound,
        ErrorCode::TooManyRequests,
        ErrorCode::WeakPassword,
    ];

    /// The code for a tag, if it is defined.
    pub fn from_u16(tag: u16) -> Option<Self> {
        ErrorCode::ALL.into_iter().find(|c| *c as u16 == tag)
    }
}

// Here, beside `ErrorCode`, so that `error` does not depend on `message`.
impl DecodeError {
    /// The error code a server answers with before closing the connection.
    pub fn reply_code(&self) -> ErrorCode {
        match self.kind() {
            DecodeErrorKind::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            _ => ErrorCode::Malformed,
        }
    }
}

/// The body of [`Response::Error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// What went wrong.
    pub code: ErrorCode,
    /// How long the client should wait before retrying, in milliseconds; 0 when it does not
    /// matter.
    pub retry_after_ms: u32,
    /// A sentence for people; never contains a password, hash or token.
    pub message: String,
}

impl ErrorReply {
    /// An error reply without a retry hint.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReply {
            code,
            retry_after_ms: 0,
            message: message.into(),
        }
    }
}

impl Body for ErrorReply {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::put_u16(out, self.code as u16);
        wire::put_u32(out, self.retry_after_ms);
        wire::put_str(out, "message", &self.message)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        let tag = r.u16("code")?;
        let code = ErrorCode::from_u16(tag).ok_or(DecodeErrorKind::InvalidTag {
            field: "code",
            value: tag,
        })?;
        Ok(ErrorReply {
            code,
            retry_after_ms: r.u32("retry_after_ms")?,
            message: r.string("message")?,
        })
    }
}

/// The body of an answer that carries nothing but its kind.
impl Body for () {
    fn encode(&self, _out: &mut Vec<u8>) -> Result<(), EncodeError> {
        Ok(())
    }

    fn decode(_r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(())
    }
}
