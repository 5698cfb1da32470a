//! Why a frame could not be encoded or decoded.

use thiserror::Error;

/// A frame that cannot be decoded. The connection that sent it is out of step and should get an
/// error reply (see [`DecodeError::reply_code`]) and be closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind}")]
pub struct DecodeError {
    pub(crate) kind: DecodeErrorKind,
    pub(crate) request_id: Option<u32>,
}

impl DecodeError {
    /// What was wrong.
    pub fn kind(&self) -> &DecodeErrorKind {
        &self.kind
    }

    /// The request id from the frame header, when the header was readable, so that the error
    /// reply can carry it.
    pub fn request_id(&self) -> Option<u32> {
        self.request_id
    }
}

/// The ways a frame can be invalid. `field` names the field being read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The first two bytes are not the protocol's magic. Only the bytes received so far are
    /// checked, so garbage is rejected without waiting for a whole header.
    #[error("bad magic bytes: not a gatehouse frame")]
    BadMagic,
    /// The header names a protocol version this build does not speak.
    #[error("protocol version {0} is not supported")]
    UnsupportedVersion(u8),
    /// The message kind is unknown, or not one this side of the connection accepts.
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    /// The declared frame length exceeds the receiver's limit; nothing was allocated for it.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Header plus declared body length.
        len: u64,
        /// The receiver's limit.
        max: u32,
    },
    /// The body ended in the middle of a field.
    #[error("body ends inside field `{field}`")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A string longer than [`crate::MAX_STRING_LEN`].
    #[error("field `{field}` declares {len} bytes, more than the string limit")]
    StringTooLong {
        /// The field being read.
        field: &'static str,
        /// The declared length.
        len: usize,
    },
    /// A string that is not valid UTF-8.
    #[error("field `{field}` is not valid UTF-8")]
    InvalidUtf8 {
        /// The field being read.
        field: &'static str,
    },
    /// A presence byte, enum tag or error code outside its defined values.
    #[error("field `{field}` has undefined value {value}")]
    InvalidTag {
        /// The field being read.
        field: &'static str,
        /// The value found.
        value: u16,
    },
    /// The trace is longer than [`crate::MAX_TRACE_LEN`] or holds a byte other than printable
    /// ASCII (`!` to `~`).
    #[error("the trace is not 0 to 64 bytes of printable ASCII without spaces")]
    InvalidTrace,
    /// The message ended before the body did.
    #[error("{extra} unconsumed bytes after the message body")]
    TrailingBytes {
        /// How many bytes were left.
        extra: usize,
    },
}

/// A message that cannot be put in a frame. Nothing is appended to the output buffer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A string field longer than [`crate::MAX_STRING_LEN`] bytes.
    #[error("field `{field}` is {len} bytes, more than the string limit")]
    StringTooLong {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A blob whose length does not fit the u32 length prefix.
    #[error("field `{field}` is {len} bytes, too large for a frame")]
    BlobTooLarge {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The whole body does not fit the u32 length in the header.
    #[error("message body of {len} bytes does not fit a frame")]
    FrameTooLarge {
        /// The body length.
        len: usize,
    },
}
