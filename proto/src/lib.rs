//! The gatehouse wire protocol: how http-server and tcp-server talk over raw TCP.
//!
//! The byte-level specification is `PROTOCOL.md` beside this crate. Every message travels in a
//! frame: a 12-byte header (magic `GH`, version, message kind, request id, body length as a
//! big-endian u32) and a body of length-prefixed fields, ending with the [`Trace`] (the id of
//! the whole request, for both tiers' logs). Each [`Request`] gets exactly one
//! [`Response`]: its success variant or [`Response::Error`] with a typed [`ErrorCode`].
//!
//! # Layout
//! - `frame`: the header and the sans-IO codec, [`encode`] and [`decode`]. They work on byte
//!   slices and vectors only; "need more bytes" (`Ok(None)`) is distinct from "invalid" (`Err`).
//! - `message`: one module per operation (`message/login.rs`: the request type, its kind, its
//!   name, the layout of the request and of its answer), the thin [`Request`] and [`Response`]
//!   enums over them (made from the list of those files, see `build.rs` and
//!   [`for_each_operation!`]), and the shared types ([`Profile`], [`Secret`], [`ErrorCode`]).
//! - `handshake`: the tier key ([`TierKey`]) and the proofs of the tier handshake that opens
//!   every connection (`Hello`, `Authenticate`).
//! - `wire`: the field encodings (integers, strings, blobs, options).
//! - `error`: [`DecodeError`] and [`EncodeError`].
//! - `io`: [`read_frame`] and [`write_frame`], thin blocking helpers over `Read`/`Write`, and
//!   the client's side of the tier handshake ([`handshake`]): the only code here that performs
//!   I/O, on whatever stream it is given (the servers' link, with its deadlines, is
//!   `service::link`).
//!
//! # Example
//! ```
//! use proto::{Frame, Ping, Request, Response, Trace, decode, encode};
//!
//! let mut buf = Vec::new();
//! encode(7, &Trace::NONE, &Request::Ping(Ping), &mut buf).unwrap();
//! assert_eq!(decode::<Request>(&buf[..5]).unwrap(), None); // need more bytes
//! let (frame, used) = decode::<Request>(&buf).unwrap().unwrap();
//! let expected = Frame { request_id: 7, trace: Trace::NONE, message: Request::Ping(Ping) };
//! assert_eq!((frame, used), (expected, buf.len()));
//! assert!(decode::<Response>(&buf).is_err()); // a request is not a response
//! ```

mod error;
mod frame;
mod handshake;
mod io;
pub mod message;
mod wire;

pub use error::{DecodeError, DecodeErrorKind, EncodeError};
pub use frame::{
    DEFAULT_MAX_FRAME_LEN, Frame, HEADER_LEN, MAGIC, MAX_TRACE_LEN, Message, Trace, VERSION,
    decode, decode_with_limit, encode,
};
pub use handshake::{MIN_TIER_SECRET_LEN, NONCE_LEN, TierKey, TierKeyTooShort};
pub use io::{
    HandshakeError, RETAINED_BUFFER_CAPACITY, ReadError, WriteError, handshake, read_frame,
    write_frame,
};
pub use message::get_picture::Picture;
pub use message::hello::Challenge;
pub use message::login::Session;
pub use message::*;
pub use wire::MAX_STRING_LEN;
