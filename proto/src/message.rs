//! Every message of the protocol, and how each body is laid out (see `PROTOCOL.md`).
//!
//! Requests flow from http-server to tcp-server, responses back. Each request kind has exactly
//! one success response kind; any request may instead get [`Response::Error`].

use std::fmt;

use crate::error::{DecodeErrorKind, EncodeError};
use crate::wire::{self, Reader};

/// Message kinds as they appear in the frame header. Requests are below 0x80, responses above.
pub mod kind {
    /// [`crate::Request::Ping`].
    pub const PING: u8 = 0x01;
    /// [`crate::Request::Register`].
    pub const REGISTER: u8 = 0x02;
    /// [`crate::Request::Login`].
    pub const LOGIN: u8 = 0x03;
    /// [`crate::Request::Logout`].
    pub const LOGOUT: u8 = 0x04;
    /// [`crate::Request::GetProfile`].
    pub const GET_PROFILE: u8 = 0x05;
    /// [`crate::Request::UpdateNickname`].
    pub const UPDATE_NICKNAME: u8 = 0x06;
    /// [`crate::Request::SetPicture`].
    pub const SET_PICTURE: u8 = 0x07;
    /// [`crate::Request::GetPicture`].
    pub const GET_PICTURE: u8 = 0x08;
    /// [`crate::Request::Stats`].
    pub const STATS: u8 = 0x09;

    /// [`crate::Response::Pong`].
    pub const PONG: u8 = 0x81;
    /// [`crate::Response::Registered`].
    pub const REGISTERED: u8 = 0x82;
    /// [`crate::Response::LoggedIn`].
    pub const LOGGED_IN: u8 = 0x83;
    /// [`crate::Response::LoggedOut`].
    pub const LOGGED_OUT: u8 = 0x84;
    /// [`crate::Response::Profile`].
    pub const PROFILE: u8 = 0x85;
    /// [`crate::Response::NicknameUpdated`].
    pub const NICKNAME_UPDATED: u8 = 0x86;
    /// [`crate::Response::PictureSet`].
    pub const PICTURE_SET: u8 = 0x87;
    /// [`crate::Response::Picture`].
    pub const PICTURE: u8 = 0x88;
    /// [`crate::Response::Stats`].
    pub const STATS_REPLY: u8 = 0x89;
    /// [`crate::Response::Error`].
    pub const ERROR: u8 = 0xFF;
}

/// A password or session token. Its `Debug` output is redacted so that logging a message can
/// never leak one.
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

/// A request from http-server to tcp-server.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Liveness check; answered with [`Response::Pong`].
    Ping,
    /// Create an account; answered with [`Response::Registered`].
    Register {
        /// Requested username.
        username: String,
        /// Plain-text password (hashed by tcp-server).
        password: Secret,
        /// Display name; the username when absent.
        nickname: Option<String>,
        /// Who is registering, as http-server saw them (an IP address as text): registrations
        /// are limited per client; absent, the client counts as unknown.
        client: Option<String>,
    },
    /// Check a password and open a session; answered with [`Response::LoggedIn`].
    Login {
        /// The account's username.
        username: String,
        /// Plain-text password.
        password: Secret,
        /// Who is logging in, as http-server saw it (the peer's IP address as text). Failed
        /// logins are throttled per client address over all usernames; absent, the client
        /// counts as unknown.
        client: Option<String>,
        /// The device token the client was given at an earlier login to this username, if it
        /// sent one: such a client is judged on its own failures, so a flood of guesses at the
        /// account does not lock its owner out.
        device: Option<Secret>,
    },
    /// Revoke the session; answered with [`Response::LoggedOut`].
    Logout {
        /// The session token.
        token: Secret,
    },
    /// Read the caller's profile; answered with [`Response::Profile`].
    GetProfile {
        /// The session token.
        token: Secret,
    },
    /// Change the display name; answered with [`Response::NicknameUpdated`].
    UpdateNickname {
        /// The session token.
        token: Secret,
        /// The new display name.
        nickname: String,
    },
    /// Replace the profile picture; answered with [`Response::PictureSet`].
    SetPicture {
        /// The session token.
        token: Secret,
        /// The image file as uploaded; tcp-server recognises its format by content.
        image: Vec<u8>,
    },
    /// Fetch a picture by the key found in a profile; answered with [`Response::Picture`].
    GetPicture {
        /// The picture key.
        key: String,
    },
    /// Read the server's counters; answered with [`Response::Stats`].
    Stats,
}

/// A response from tcp-server to http-server.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// Answer to [`Request::Ping`].
    Pong,
    /// Answer to [`Request::Register`]: the new account.
    Registered(Profile),
    /// Answer to [`Request::Login`].
    LoggedIn(Session),
    /// Answer to [`Request::Logout`].
    LoggedOut,
    /// Answer to [`Request::GetProfile`].
    Profile(Profile),
    /// Answer to [`Request::UpdateNickname`]: the profile as it is now.
    NicknameUpdated(Profile),
    /// Answer to [`Request::SetPicture`]: the profile with its new picture key.
    PictureSet(Profile),
    /// Answer to [`Request::GetPicture`].
    Picture(Picture),
    /// Answer to [`Request::Stats`].
    Stats(Vec<Sample>),
    /// The request failed; answer to any request.
    Error(ErrorReply),
}

/// A user's public profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The account id.
    pub id: i64,
    /// The username as registered.
    pub username: String,
    /// The display name.
    pub nickname: String,
    /// The key of the current picture, for [`Request::GetPicture`].
    pub picture: Option<String>,
}

/// A session opened by [`Request::Login`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The bearer token.
    pub token: Secret,
    /// When the token stops being accepted, in seconds since the Unix epoch.
    pub expires_at: i64,
    /// The account logged in to.
    pub profile: Profile,
    /// A fresh device token for this username, for the client to send at its next login.
    pub device_token: Secret,
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

    fn from_tag(tag: u8) -> Option<Self> {
        ImageFormat::ALL.into_iter().find(|f| *f as u8 == tag)
    }
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

/// A stored picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// Its format.
    pub format: ImageFormat,
    /// The encoded image.
    pub data: Vec<u8>,
}

/// How a [`Sample`] is to be read, following Prometheus' metric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleKind {
    /// Only ever goes up (until the process restarts).
    Counter = 1,
    /// Goes up and down.
    Gauge = 2,
    /// One series of a histogram family: `<name>_bucket` (with an `le` label), `<name>_sum` or
    /// `<name>_count`.
    Histogram = 3,
}

impl SampleKind {
    /// Every kind, in tag order.
    pub const ALL: [SampleKind; 3] = [
        SampleKind::Counter,
        SampleKind::Gauge,
        SampleKind::Histogram,
    ];

    fn from_tag(tag: u8) -> Option<Self> {
        SampleKind::ALL.into_iter().find(|k| *k as u8 == tag)
    }
}

/// One value of the server's stats, ready to export as a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name, for example `gatehouse_requests_total`.
    pub name: String,
    /// Label pairs, for example `("kind", "login")`.
    pub labels: Vec<(String, String)>,
    /// How to read the value.
    pub kind: SampleKind,
    /// The value.
    pub value: f64,
}

/// What went wrong with a request, in a form the HTTP tier maps to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
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
    /// Too many failed logins for this account; retry after `retry_after_ms`.
    TooManyRequests = 109,
}

impl ErrorCode {
    /// Every code, in tag order.
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::Malformed,
        ErrorCode::UnsupportedVersion,
        ErrorCode::Busy,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
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
    ];

    /// The code for a tag, if it is defined.
    pub fn from_u16(tag: u16) -> Option<Self> {
        ErrorCode::ALL.into_iter().find(|c| *c as u16 == tag)
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

impl Request {
    /// The kind byte for the frame header.
    pub fn kind(&self) -> u8 {
        match self {
            Request::Ping => kind::PING,
            Request::Register { .. } => kind::REGISTER,
            Request::Login { .. } => kind::LOGIN,
            Request::Logout { .. } => kind::LOGOUT,
            Request::GetProfile { .. } => kind::GET_PROFILE,
            Request::UpdateNickname { .. } => kind::UPDATE_NICKNAME,
            Request::SetPicture { .. } => kind::SET_PICTURE,
            Request::GetPicture { .. } => kind::GET_PICTURE,
            Request::Stats => kind::STATS,
        }
    }

    /// A short lowercase name for logs and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Register { .. } => "register",
            Request::Login { .. } => "login",
            Request::Logout { .. } => "logout",
            Request::GetProfile { .. } => "get_profile",
            Request::UpdateNickname { .. } => "update_nickname",
            Request::SetPicture { .. } => "set_picture",
            Request::GetPicture { .. } => "get_picture",
            Request::Stats => "stats",
        }
    }

    pub(crate) fn accepts_kind(kind: u8) -> bool {
        (kind::PING..=kind::STATS).contains(&kind)
    }

    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Request::Ping | Request::Stats => Ok(()),
            Request::Register {
                username,
                password,
                nickname,
                client,
            } => {
                wire::put_str(out, "username", username)?;
                wire::put_str(out, "password", password.expose())?;
                wire::put_opt_str(out, "nickname", nickname.as_deref())?;
                wire::put_opt_str(out, "client", client.as_deref())
            }
            Request::Login {
                username,
                password,
                client,
                device,
            } => {
                wire::put_str(out, "username", username)?;
                wire::put_str(out, "password", password.expose())?;
                wire::put_opt_str(out, "client", client.as_deref())?;
                wire::put_opt_str(out, "device", device.as_ref().map(Secret::expose))
            }
            Request::Logout { token } | Request::GetProfile { token } => {
                wire::put_str(out, "token", token.expose())
            }
            Request::UpdateNickname { token, nickname } => {
                wire::put_str(out, "token", token.expose())?;
                wire::put_str(out, "nickname", nickname)
            }
            Request::SetPicture { token, image } => {
                wire::put_str(out, "token", token.expose())?;
                wire::put_blob(out, "image", image)
            }
            Request::GetPicture { key } => wire::put_str(out, "key", key),
        }
    }

    pub(crate) fn decode_body(kind: u8, r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(match kind {
            kind::PING => Request::Ping,
            kind::REGISTER => Request::Register {
                username: r.string("username")?,
                password: Secret(r.string("password")?),
                nickname: r.opt_string("nickname")?,
                client: r.opt_string("client")?,
            },
            kind::LOGIN => Request::Login {
                username: r.string("username")?,
                password: Secret(r.string("password")?),
                client: r.opt_string("client")?,
                device: r.opt_string("device")?.map(Secret),
            },
            kind::LOGOUT => Request::Logout {
                token: Secret(r.string("token")?),
            },
            kind::GET_PROFILE => Request::GetProfile {
                token: Secret(r.string("token")?),
            },
            kind::UPDATE_NICKNAME => Request::UpdateNickname {
                token: Secret(r.string("token")?),
                nickname: r.string("nickname")?,
            },
            kind::SET_PICTURE => Request::SetPicture {
                token: Secret(r.string("token")?),
                image: r.blob("image")?,
            },
            kind::GET_PICTURE => Request::GetPicture {
                key: r.string("key")?,
            },
            kind::STATS => Request::Stats,
            other => return Err(DecodeErrorKind::UnknownKind(other)),
        })
    }
}

impl Response {
    /// The kind byte for the frame header.
    pub fn kind(&self) -> u8 {
        match self {
            Response::Pong => kind::PONG,
            Response::Registered(_) => kind::REGISTERED,
            Response::LoggedIn(_) => kind::LOGGED_IN,
            Response::LoggedOut => kind::LOGGED_OUT,
            Response::Profile(_) => kind::PROFILE,
            Response::NicknameUpdated(_) => kind::NICKNAME_UPDATED,
            Response::PictureSet(_) => kind::PICTURE_SET,
            Response::Picture(_) => kind::PICTURE,
            Response::Stats(_) => kind::STATS_REPLY,
            Response::Error(_) => kind::ERROR,
        }
    }

    pub(crate) fn accepts_kind(kind: u8) -> bool {
        (kind::PONG..=kind::STATS_REPLY).contains(&kind) || kind == kind::ERROR
    }

    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Response::Pong | Response::LoggedOut => Ok(()),
            Response::Registered(profile)
            | Response::Profile(profile)
            | Response::NicknameUpdated(profile)
            | Response::PictureSet(profile) => put_profile(out, profile),
            Response::LoggedIn(session) => {
                wire::put_str(out, "token", session.token.expose())?;
                wire::put_i64(out, session.expires_at);
                put_profile(out, &session.profile)?;
                wire::put_str(out, "device_token", session.device_token.expose())
            }
            Response::Picture(picture) => {
                wire::put_u8(out, picture.format as u8);
                wire::put_blob(out, "data", &picture.data)
            }
            Response::Stats(samples) => {
                wire::put_list_len(out, "samples", samples.len())?;
                for sample in samples {
                    wire::put_str(out, "name", &sample.name)?;
                    wire::put_list_len(out, "labels", sample.labels.len())?;
                    for (key, value) in &sample.labels {
                        wire::put_str(out, "label_name", key)?;
                        wire::put_str(out, "label_value", value)?;
                    }
                    wire::put_u8(out, sample.kind as u8);
                    wire::put_f64(out, sample.value);
                }
                Ok(())
            }
            Response::Error(error) => {
                wire::put_u16(out, error.code as u16);
                wire::put_u32(out, error.retry_after_ms);
                wire::put_str(out, "message", &error.message)
            }
        }
    }

    pub(crate) fn decode_body(kind: u8, r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(match kind {
            kind::PONG => Response::Pong,
            kind::REGISTERED => Response::Registered(read_profile(r)?),
            kind::LOGGED_IN => Response::LoggedIn(Session {
                token: Secret(r.string("token")?),
                expires_at: r.i64("expires_at")?,
                profile: read_profile(r)?,
                device_token: Secret(r.string("device_token")?),
            }),
            kind::LOGGED_OUT => Response::LoggedOut,
            kind::PROFILE => Response::Profile(read_profile(r)?),
            kind::NICKNAME_UPDATED => Response::NicknameUpdated(read_profile(r)?),
            kind::PICTURE_SET => Response::PictureSet(read_profile(r)?),
            kind::PICTURE => {
                let tag = r.u8("format")?;
                let format = ImageFormat::from_tag(tag).ok_or(DecodeErrorKind::InvalidTag {
                    field: "format",
                    value: u16::from(tag),
                })?;
                Response::Picture(Picture {
                    format,
                    data: r.blob("data")?,
                })
            }
            kind::STATS_REPLY => {
                let count = r.list_len("samples")?;
                // No capacity hint from the wire: the count is untrusted until the items parse.
                let mut samples = Vec::new();
                for _ in 0..count {
                    let name = r.string("name")?;
                    let label_count = r.list_len("labels")?;
                    let mut labels = Vec::new();
                    for _ in 0..label_count {
                        labels.push((r.string("label_name")?, r.string("label_value")?));
                    }
                    let tag = r.u8("sample_kind")?;
                    let kind = SampleKind::from_tag(tag).ok_or(DecodeErrorKind::InvalidTag {
                        field: "sample_kind",
                        value: u16::from(tag),
                    })?;
                    samples.push(Sample {
                        name,
                        labels,
                        kind,
                        value: r.f64("value")?,
                    });
                }
                Response::Stats(samples)
            }
            kind::ERROR => {
                let tag = r.u16("code")?;
                let code = ErrorCode::from_u16(tag).ok_or(DecodeErrorKind::InvalidTag {
                    field: "code",
                    value: tag,
                })?;
                Response::Error(ErrorReply {
                    code,
                    retry_after_ms: r.u32("retry_after_ms")?,
                    message: r.string("message")?,
                })
            }
            other => return Err(DecodeErrorKind::UnknownKind(other)),
        })
    }
}

fn put_profile(out: &mut Vec<u8>, profile: &Profile) -> Result<(), EncodeError> {
    wire::put_i64(out, profile.id);
    wire::put_str(out, "username", &profile.username)?;
    wire::put_str(out, "nickname", &profile.nickname)?;
    wire::put_opt_str(out, "picture", profile.picture.as_deref())
}

fn read_profile(r: &mut Reader<'_>) -> Result<Profile, DecodeErrorKind> {
    Ok(Profile {
        id: r.i64("id")?,
        username: r.string("username")?,
        nickname: r.string("nickname")?,
        picture: r.opt_string("picture")?,
    })
}
