//! Log out everywhere: end every session of the account, the caller's included; an empty
//! answer.

use crate::error::{DecodeErrorKind, EncodeError};
use crate::message::{Body, Operation, Secret};
use crate::wire::{self, Reader};

/// End every session of the token's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutAll {
    /// The session token.
    pub token: Secret,
}

impl Operation for LogoutAll {
    const KIND: u8 = 0x0A;
    const NAME: &'static str = "logout_all";
    type Reply = ();
}

impl Body for LogoutAll {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::put_str(out, "token", self.token.expose())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(LogoutAll {
            token: Secret::new(r.string("token")?),
        })
    }
}
