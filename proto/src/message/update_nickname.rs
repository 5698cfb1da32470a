//! Update nickname: change the display name; answered with the [`Profile`] as it is now.

use crate::error::{DecodeErrorKind, EncodeError};
use crate::message::{Body, Operation, Profile, Secret};
use crate::wire::{self, Reader};

/// Change the display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateNickname {
    /// The session token.
    pub token: Secret,
    /// The new display name.
    pub nickname: String,
}

impl Operation for UpdateNickname {
    const KIND: u8 = 0x06;
    const NAME: &'static str = "update_nickname";
    type Reply = Profile;
}

impl Body for UpdateNickname {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::put_str(out, "token", self.token.expose())?;
        wire::put_str(out, "nickname", &self.nickname)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(UpdateNickname {
            token: Secret::new(r.string("token")?),
            nickname: r.string("nickname")?,
        })
    }
}
