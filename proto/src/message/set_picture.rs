//! Set picture: replace the profile picture; answered with the [`Profile`] and its new key.

use crate::error::{DecodeErrorKind, EncodeError};
use crate::message::{Body, Operation, Profile, Secret};
use crate::wire::{self, Reader};

/// Replace the profile picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetPicture {
    /// The session token.
    pub token: Secret,
    /// The image file as uploaded; tcp-server recognises its format by content.
    pub image: Vec<u8>,
}

impl Operation for SetPicture {
    const KIND: u8 = 0x07;
    const NAME: &'static str = "set_picture";
    type Reply = Profile;
}

impl Body for SetPicture {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::put_str(out, "token", self.token.expose())?;
        wire::put_blob(out, "image", &self.image)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(SetPicture {
            token: Secret::new(r.string("token")?),
            image: r.blob("image")?,
        })
    }
}
