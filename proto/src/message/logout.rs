//! Logout: revoke the session; an empty answer.

use crate::error::{DecodeErrorKind, EncodeError};
use crate::message::{Body, Operation, Secret};
use crate::wire::{self, Reader};

/// Revoke the session the token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logout {
    /// The session token.
    pub token: Secret,
}

impl Operation for Logout {
    const KIND: u8 = 0x04;
    const NAME: &'static str = "logout";
    type Reply = ();
}

impl Body for Logout {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::put_str(out, "token", self.token.expose())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(Logout {
            token: Secret::new(r.string("token")?),
        })
    }
}
