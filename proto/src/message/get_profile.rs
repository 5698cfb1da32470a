//! Get profile: the caller's profile; answered with its [`Profile`].

use crate::error::{DecodeErrorKind, EncodeError};
use crate::message::{Body, Operation, Profile, Secret};
use crate::wire::{self, Reader};

/// Read the caller's profile (also what http-server checks a session with before reading a
/// large body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetProfile {
    /// The session token.
    pub token: Secret,
}

impl Operation for GetProfile {
    const KIND: u8 = 0x05;
    const NAME: &'static str = "get_profile";
    type Reply = Profile;
}

impl Body for GetProfile {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::put_str(out, "token", self.token.expose())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(GetProfile {
            token: Secret::new(r.string("token")?),
        })
    }
}
