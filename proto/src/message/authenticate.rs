//! Authenticate: the client's half of the tier handshake, its proof that it holds the tier key
//! the server's [`crate::Challenge`] was made with. Answered with an empty body; a wrong proof
//! is answered `Unauthenticated` and the connection closed.

use crate::error::{DecodeErrorKind, EncodeError};
use crate::message::{Body, Operation};
use crate::wire::{self, Reader};

/// Completes the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticate {
    /// [`crate::TierKey::client_proof`] of both nonces.
    pub proof: Vec<u8>,
}

impl Operation for Authenticate {
    const KIND: u8 = 0x0D;
    const NAME: &'static str = "authenticate";
    type Reply = ();
}

impl Body for Authenticate {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::put_blob(out, "proof", &self.proof)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(Authenticate {
            proof: r.blob("proof")?,
        })
    }
}
