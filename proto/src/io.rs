//! Thin blocking helpers: the only code in this crate that touches a `Read` or a `Write`.

use std::io::{self, Read, Write};

use thiserror::Error;

use crate::error::{DecodeError, EncodeError};
use crate::frame::{self, Frame, HEADER_LEN, Message, Trace};
use crate::handshake::{NONCE_LEN, TierKey};
use crate::message::{Authenticate, ErrorCode, ErrorReply, Hello, Request, Response};

/// A read buffer grown past this by a large frame (a picture) is shrunk back after the frame is
/// decoded, so a connection that once carried a picture does not hold megabytes.
pub const RETAINED_BUFFER_CAPACITY: usize = 64 * 1024;

/// Why [`read_frame`] returned no frame.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The peer closed the connection cleanly, between frames.
    #[error("connection closed by peer")]
    Closed,
    /// The read timed out before the first byte of a frame arrived. Nothing was consumed, so the
    /// caller may read again (or close an idle connection).
    #[error("no frame arrived before the read timeout")]
    Idle,
    /// An I/O error, or the peer closed or stalled in the middle of a frame.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The bytes are not a valid frame.
    #[error("invalid frame: {0}")]
    Decode(#[from] DecodeError),
}

/// Why [`write_frame`] did not send a frame.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The message cannot be encoded; nothing was written.
    #[error("cannot encode message: {0}")]
    Encode(#[from] EncodeError),
    /// Writing failed; part of the frame may have been sent.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Encodes one frame into `buf` (cleared first) and writes it with a single `write_all`, so a
/// frame never leaves in pieces because of how it was built.
pub fn write_frame<W: Write + ?Sized, M: Message>(
    writer: &mut W,
    request_id: u32,
    trace: &Trace,
    message: &M,
    buf: &mut Vec<u8>,
) -> Result<(), WriteError> {
    buf.clear();
    frame::encode(request_id, trace, message, buf)?;
    writer.write_all(buf)?;
    Ok(())
}

/// Why [`handshake`] did not authenticate a connection.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Sending a handshake frame failed.
    #[error("sending the handshake: {0}")]
    Write(#[from] WriteError),
    /// Reading the server's answer failed.
    #[error("reading the handshake's answer: {0}")]
    Read(#[from] ReadError),
    /// The server answered with an error: `Unauthenticated` (it holds another tier key) or
    /// `Busy` (it refused the connection at its bound).
    #[error("refused: {} ({:?})", .0.message, .0.code)]
    Refused(ErrorReply),
    /// The server's proof was wrong: it does not hold our tier key.
    #[error("the server did not prove that it holds the tier key")]
    BadServerProof,
    /// The server answered with something that is not part of the handshake.
    #[error("unexpected answer during the handshake")]
    Unexpected,
}

impl HandshakeError {
    /// The refusal's code, when the server refused.
    pub fn refusal(&self) -> Option<ErrorCode> {
        match self {
            HandshakeError::Refused(reply) => Some(reply.code),
            _ => None,
        }
    }
}

/// The client's side of the tier handshake (PROTOCOL.md, "The tier handshake"): `Hello` with
/// `nonce` (fresh random bytes), checks the server's proof in its `Challenge`, then
/// `Authenticate` with ours. Uses request ids 1 and 2. On success the connection carries
/// requests; on any error it must be closed.
pub fn handshake<S: Read + Write + ?Sized>(
    stream: &mut S,
    key: &TierKey,
    nonce: [u8; NONCE_LEN],
    buf: &mut Vec<u8>,
    max_frame_len: u32,
) -> Result<(), HandshakeError> {
    let hello = Request::Hello(Hello {
        key_id: key.id().to_owned(),
        nonce: nonce.to_vec(),
    });
    write_frame(stream, 1, &Trace::NONE, &hello, buf)?;
    let challenge = match read_frame::<_, Response>(stream, buf, max_frame_len)? {
        Frame {
            message: Response::Error(reply),
            ..
        } => return Err(HandshakeError::Refused(reply)),
        Frame {
            request_id: 1,
            message: Response::Hello(challenge),
            ..
        } => challenge,
        _ => return Err(HandshakeError::Unexpected),
    };
    if challenge.nonce.len() != NONCE_LEN
        || !key.verify_server_proof(&nonce, &challenge.nonce, &challenge.proof)
    {
        return Err(HandshakeError::BadServerProof);
    }
    let authenticate = Request::Authenticate(Authenticate {
        proof: key.client_proof(&nonce, &challenge.nonce),
    });
    write_frame(stream, 2, &Trace::NONE, &authenticate, buf)?;
    match read_frame::<_, Response>(stream, buf, max_frame_len)? {
        Frame {
            message: Response::Error(reply),
            ..
        } => Err(HandshakeError::Refused(reply)),
        Frame {
            request_id: 2,
            message: Response::Authenticate(()),
            ..
        } => Ok(()),
        _ => Err(HandshakeError::Unexpected),
    }
}

/// Reads exactly one frame, reusing `buf` for its bytes. Never reads past the frame's end, so no
/// bytes of the next frame are lost.
///
/// The declared length is checked against `max_frame_len` before the body is read, and the body
/// buffer grows only as bytes actually arrive: a peer that declares a large frame and sends
/// nothing costs no memory.
pub fn read_frame<R: Read + ?Sized, M: Message>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max_frame_len: u32,
) -> Result<Frame<M>, ReadError> {
    let result = read_one(reader, buf, max_frame_len);
    // The decoded frame owns its fields, so the bytes are not needed any more: an idle
    // connection never sits on a picture-sized buffer, whatever the outcome.
    if buf.capacity() > RETAINED_BUFFER_CAPACITY {
        *buf = Vec::with_capacity(RETAINED_BUFFER_CAPACITY);
    }
    result
}

fn read_one<R: Read + ?Sized, M: Message>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max_frame_len: u32,
) -> Result<Frame<M>, ReadError> {
    let mut header_bytes = [0u8; HEADER_LEN];
    read_header(reader, &mut header_bytes)?;
    let header = frame::parse_header::<M>(&header_bytes, max_frame_len)?;

    buf.clear();
    let body_len = u64::from(header.body_len);
    let got = reader.take(body_len).read_to_end(buf)?;
    if (got as u64) < body_len {
        return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(frame::decode_body::<M>(&header, buf)?)
}

fn read_header<R: Read + ?Sized>(
    reader: &mut R,
    header: &mut [u8; HEADER_LEN],
) -> Result<(), ReadError> {
    let mut filled = 0;
    while filled < HEADER_LEN {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Err(ReadError::Closed),
            Ok(0) => return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => {
                filled += n;
                // Garbage is refused at its first bytes rather than after a whole header.
                frame::check_magic(&header[..filled])?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if filled == 0
                    && matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
            {
                return Err(ReadError::Idle);
            }
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    Ok(())
}
