//! Hello: the first request on every connection, opening the tier handshake (PROTOCOL.md, "The
//! tier handshake"). The client names its tier key and sends a fresh nonce; the server answers
//! with a [`Challenge`]: a nonce of its own and its proof that it holds the same key.

use crate::error::{DecodeErrorKind, EncodeError};
use crate::message::{Body, Operation};
use crate::wire::{self, Reader};

/// Opens the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The id of the tier key the client holds ([`crate::TierKey::id`]).
    pub key_id: String,
    /// [`crate::NONCE_LEN`] random bytes, fresh for this connection.
    pub nonce: Vec<u8>,
}

/// The server's half of the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// [`crate::NONCE_LEN`] random bytes, fresh for this connection.
    pub nonce: Vec<u8>,
    /// [`crate::TierKey::server_proof`] of both nonces: the server holds the key.
    pub proof: Vec<u8>,
}

impl Operation for Hello {
    const KIND: u8 = 0x0C;
    const NAME: &'static str = "hello";
    type Reply = Challenge;
}

impl Body for Hello {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::put_str(out, "key_id", &self.key_id)?;
        wire::put_blob(out, "nonce", &self.nonce)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(Hello {
            key_id: r.string("key_id")?,
            nonce: r.blob("nonce")?,
        })
    }
}

impl Body for Challenge {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::put_blob(out, "nonce", &self.nonce)?;
        wire::put_blob(out, "proof", &self.proof)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(Challenge {
            nonce: r.blob("nonce")?,
            proof: r.blob("proof")?,
        })
    }
}
