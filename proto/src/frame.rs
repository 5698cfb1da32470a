//! The frame: a fixed 12-byte header followed by the message body and the trace, and the sans-IO
//! codec.

use byteorder::{BigEndian, ByteOrder};

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::message::{Request, Response};
use crate::wire::Reader;

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"GH";

/// The protocol version this build speaks. Version 2 added the trace at the end of every body,
/// version 3 the tier handshake; a peer of another version gets `UnsupportedVersion` from this
/// one, and this one from it.
pub const VERSION: u8 = 3;

/// The longest trace, in bytes.
pub const MAX_TRACE_LEN: usize = 64;

/// Bytes in a frame header: magic (2), version (1), kind (1), request id (4), body length (4).
pub const HEADER_LEN: usize = 12;

/// Default limit on a whole frame (header plus body): 4 MiB, so a 2 MiB picture fits with room to
/// spare for a larger configured picture limit.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 4 * 1024 * 1024;

/// A decoded message with the request id from its header and the trace from the end of its
/// body. A response carries the id and the trace of the request it answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame<M> {
    /// Chosen by the client, echoed by the server.
    pub request_id: u32,
    /// The id of the whole request this frame serves (http-server's `X-Request-Id`), for the
    /// logs of both tiers; empty when there is none.
    pub trace: Trace,
    /// The message.
    pub message: M,
}

/// A request's id across the tiers: 0 to [`MAX_TRACE_LEN`] bytes of printable ASCII without
/// spaces (`!` to `~`), so that it can go into a log line or an HTTP header as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Trace(String);

impl Trace {
    /// No trace.
    pub const NONE: Trace = Trace(String::new());

    /// `text` as a trace, or `None` when it is too long or holds a byte a trace may not.
    pub fn new(text: &str) -> Option<Trace> {
        Trace::valid(text.as_bytes()).then(|| Trace(text.to_owned()))
    }

    fn valid(bytes: &[u8]) -> bool {
        bytes.len() <= MAX_TRACE_LEN && bytes.iter().all(|b| b.is_ascii_graphic())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether there is no trace.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message type that can travel in a frame: [`Request`] or [`Response`].
pub trait Message: sealed::Sealed {}

impl Message for Request {}
impl Message for Response {}

pub(crate) mod sealed {
    use crate::error::{DecodeErrorKind, EncodeError};
    use crate::wire::Reader;

    /// Keeps the set of message types closed and the body codec private to the crate.
    pub trait Sealed: Sized {
        fn kind_byte(&self) -> u8;
        fn accepts(kind: u8) -> bool;
        fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;
        fn decode_body(kind: u8, body: &mut Reader<'_>) -> Result<Self, DecodeErrorKind>;
    }

    impl Sealed for crate::Request {
        fn kind_byte(&self) -> u8 {
            self.kind()
        }
        fn accepts(kind: u8) -> bool {
            Self::accepts_kind(kind)
        }
        fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
            crate::Request::encode_body(self, out)
        }
        fn decode_body(kind: u8, body: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
            crate::Request::decode_body(kind, body)
        }
    }

    impl Sealed for crate::Response {
        fn kind_byte(&self) -> u8 {
            self.kind()
        }
        fn accepts(kind: u8) -> bool {
            Self::accepts_kind(kind)
        }
        fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
            crate::Response::encode_body(self, out)
        }
        fn decode_body(kind: u8, body: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
            crate::Response::decode_body(kind, body)
        }
    }
}

/// Appends one frame holding `message` and `trace` to `out`. On error `out` is left as it was.
pub fn encode<M: Message>(
    request_id: u32,
    trace: &Trace,
    message: &M,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    let body = message
        .encode_body(out)
        .and_then(|()| crate::wire::put_str(out, "trace", trace.as_str()));
    if let Err(error) = body {
        out.truncate(start);
        return Err(error);
    }
    let body_len = out.len() - start - HEADER_LEN;
    let Ok(body_len_u32) = u32::try_from(body_len) else {
        out.truncate(start);
        return Err(EncodeError::FrameTooLarge { len: body_len });
    };
    let header = &mut out[start..start + HEADER_LEN];
    header[..2].copy_from_slice(&MAGIC);
    header[2] = VERSION;
    header[3] = message.kind_byte();
    BigEndian::write_u32(&mut header[4..8], request_id);
    BigEndian::write_u32(&mut header[8..12], body_len_u32);
    Ok(())
}

/// Decodes the frame at the start of `buf` with the [`DEFAULT_MAX_FRAME_LEN`] limit.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame (read more and call again),
/// `Ok(Some((frame, used)))` when a whole frame was decoded from the first `used` bytes, and an
/// error when the bytes can never become a valid frame.
pub fn decode<M: Message>(buf: &[u8]) -> Result<Option<(Frame<M>, usize)>, DecodeError> {
    decode_with_limit(buf, DEFAULT_MAX_FRAME_LEN)
}

/// [`decode`] with a chosen limit on the frame length (header plus body). The declared length is
/// checked against the limit as soon as the header is complete, before any body byte is awaited.
pub fn decode_with_limit<M: Message>(
    buf: &[u8],
    max_frame_len: u32,
) -> Result<Option<(Frame<M>, usize)>, DecodeError> {
    check_magic(buf)?;
    let Some(header_bytes) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let header = parse_header::<M>(header_bytes, max_frame_len)?;
    let frame_len = HEADER_LEN + header.body_len as usize;
    let Some(body) = buf.get(HEADER_LEN..frame_len) else {
        return Ok(None);
    };
    let frame = decode_body::<M>(&header, body)?;
    Ok(Some((frame, frame_len)))
}

/// The parsed fields of a frame header.
pub(crate) struct Header {
    pub(crate) kind: u8,
    pub(crate) request_id: u32,
    pub(crate) body_len: u32,
}

/// Rejects garbage from its first byte on, before a whole header has arrived.
pub(crate) fn check_magic(buf: &[u8]) -> Result<(), DecodeError> {
    let seen = buf.len().min(MAGIC.len());
    if buf[..seen] != MAGIC[..seen] {
        return Err(DecodeError {
            kind: DecodeErrorKind::BadMagic,
            request_id: None,
        });
    }
    Ok(())
}

pub(crate) fn parse_header<M: Message>(
    bytes: &[u8; HEADER_LEN],
    max_frame_len: u32,
) -> Result<Header, DecodeError> {
    check_magic(bytes)?;
    let request_id = BigEndian::read_u32(&bytes[4..8]);
    let fail = |kind| DecodeError {
        kind,
        request_id: Some(request_id),
    };
    if bytes[2] != VERSION {
        return Err(fail(DecodeErrorKind::UnsupportedVersion(bytes[2])));
    }
    let kind = bytes[3];
    if !M::accepts(kind) {
        return Err(fail(DecodeErrorKind::UnknownKind(kind)));
    }
    let body_len = BigEndian::read_u32(&bytes[8..12]);
    let frame_len = HEADER_LEN as u64 + u64::from(body_len);
    if frame_len > u64::from(max_frame_len) {
        return Err(fail(DecodeErrorKind::FrameTooLarge {
            len: frame_len,
            max: max_frame_len,
        }));
    }
    Ok(Header {
        kind,
        request_id,
        body_len,
    })
}

/// Decodes a body whose length the header already declared; every byte must be consumed.
pub(crate) fn decode_body<M: Message>(
    header: &Header,
    body: &[u8],
) -> Result<Frame<M>, DecodeError> {
    let fail = |kind| DecodeError {
        kind,
        request_id: Some(header.request_id),
    };
    let mut reader = Reader::new(body);
    let message = M::decode_body(header.kind, &mut reader).map_err(fail)?;
    let trace = reader.string("trace").map_err(fail)?;
    if !Trace::valid(trace.as_bytes()) {
        return Err(fail(DecodeErrorKind::InvalidTrace));
    }
    if reader.remaining() > 0 {
        return Err(fail(DecodeErrorKind::TrailingBytes {
            extra: reader.remaining(),
        }));
    }
    Ok(Frame {
        request_id: header.request_id,
        trace: Trace(trace),
        message,
    })
}
