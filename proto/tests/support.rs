//! Hand-assembled frames. The tests build bytes here, independently of the crate's encoder, so
//! that a mistake shared by `encode` and `decode` (a swapped field, a wrong width) cannot hide
//! behind a round trip.

use proto::{HEADER_LEN, MAGIC, Message, Trace, VERSION, encode};

/// A message body, written field by field as PROTOCOL.md lays it out.
#[derive(Default)]
pub struct Body(Vec<u8>);

impl Body {
    pub fn new() -> Self {
        Body::default()
    }

    pub fn u8(mut self, value: u8) -> Self {
        self.0.push(value);
        self
    }

    pub fn u16(mut self, value: u16) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn u32(mut self, value: u32) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn i64(mut self, value: i64) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// Bytes with no length prefix: lets a test declare one length and supply another.
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// A well-formed string field: u16 byte length, then the bytes.
    pub fn str(self, value: &str) -> Self {
        let len = u16::try_from(value.len()).expect("test string fits a u16 length");
        self.u16(len).raw(value.as_bytes())
    }

    /// A well-formed blob field: u32 byte length, then the bytes.
    pub fn blob(self, value: &[u8]) -> Self {
        let len = u32::try_from(value.len()).expect("test blob fits a u32 length");
        self.u32(len).raw(value)
    }

    /// A profile as every profile-carrying response lays it out.
    pub fn profile(self, id: i64, username: &str, nickname: &str, picture: Option<&str>) -> Self {
        let body = self.i64(id).str(username).str(nickname);
        match picture {
            None => body.u8(0),
            Some(key) => body.u8(1).str(key),
        }
    }

    /// The trace field that ends every valid body, empty.
    pub fn no_trace(self) -> Self {
        self.str("")
    }

    pub fn bytes(self) -> Vec<u8> {
        self.0
    }
}

/// A 12-byte header with every field chosen by the caller, valid or not.
pub fn header(version: u8, kind: u8, request_id: u32, body_len: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(version);
    out.push(kind);
    out.extend_from_slice(&request_id.to_be_bytes());
    out.extend_from_slice(&body_len.to_be_bytes());
    out
}

/// A frame whose header declares exactly the body it carries, byte for byte: a valid frame's
/// body ends with the trace (see [`Body::no_trace`]), a malformed one may end anywhere.
pub fn frame(kind: u8, request_id: u32, body: Body) -> Vec<u8> {
    let body = body.bytes();
    let len = u32::try_from(body.len()).expect("test body fits a u32 length");
    let mut out = header(VERSION, kind, request_id, len);
    out.extend_from_slice(&body);
    out
}

/// The crate's own encoding of one message, for tests that feed a reader or compare bytes.
pub fn encoded<M: Message>(request_id: u32, message: &M) -> Vec<u8> {
    let mut out = Vec::new();
    encode(request_id, &Trace::NONE, message, &mut out).expect("test message is encodable");
    out
}

/// Space-separated lowercase hex, the way PROTOCOL.md prints its examples.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The kind numbers of PROTOCOL.md, written out here: the layout tests check the crate's
/// operations against them.
pub mod kind {
    pub const PING: u8 = 0x01;
    pub const REGISTER: u8 = 0x02;
    pub const LOGIN: u8 = 0x03;
    pub const LOGOUT: u8 = 0x04;
    pub const GET_PROFILE: u8 = 0x05;
    pub const UPDATE_NICKNAME: u8 = 0x06;
    pub const SET_PICTURE: u8 = 0x07;
    pub const GET_PICTURE: u8 = 0x08;
    pub const CHANGE_PASSWORD: u8 = 0x09;
    pub const LOGOUT_ALL: u8 = 0x0A;
    pub const DELETE_ACCOUNT: u8 = 0x0B;
    pub const HELLO: u8 = 0x0C;
    pub const AUTHENTICATE: u8 = 0x0D;
    pub const PONG: u8 = 0x81;
    pub const REGISTERED: u8 = 0x82;
    pub const LOGGED_IN: u8 = 0x83;
    pub const LOGGED_OUT: u8 = 0x84;
    pub const PROFILE: u8 = 0x85;
    pub const NICKNAME_UPDATED: u8 = 0x86;
    pub const PICTURE_SET: u8 = 0x87;
    pub const PICTURE: u8 = 0x88;
    pub const PASSWORD_CHANGED: u8 = 0x89;
    pub const LOGGED_OUT_ALL: u8 = 0x8A;
    pub const ACCOUNT_DELETED: u8 = 0x8B;
    pub const CHALLENGE: u8 = 0x8C;
    pub const AUTHENTICATED: u8 = 0x8D;
    pub const ERROR: u8 = 0xFF;
}
