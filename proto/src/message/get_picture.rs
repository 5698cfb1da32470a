//! Get picture: a picture by the key found in a profile; answered with the [`Picture`].

use crate::error::{DecodeErrorKind, EncodeError};
use crate::message::{Body, ImageFormat, Operation};
use crate::wire::{self, Reader};

/// Fetch a picture by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetPicture {
    /// The picture key.
    pub key: String,
}

/// A stored picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// Its format.
    pub format: ImageFormat,
    /// The encoded image.
    pub data: Vec<u8>,
}

impl Operation for GetPicture {
    const KIND: u8 = 0x08;
    const NAME: &'static str = "get_picture";
    type Reply = Picture;
}

impl Body for GetPicture {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::put_str(out, "key", &self.key)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(GetPicture {
            key: r.string("key")?,
        })
    }
}

impl Body for Picture {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::put_u8(out, self.format as u8);
        wire::put_blob(out, "data", &self.data)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        let tag = r.u8("format")?;
        let format = ImageFormat::from_tag(tag).ok_or(DecodeErrorKind::InvalidTag {
            field: "format",
            value: u16::from(tag),
        })?;
        Ok(Picture {
            format,
            data: r.blob("data")?,
        })
    }
}
