//! Field-level encoding: the integers, strings, blobs and options every message body is made of.
//!
//! Writers append to a `Vec<u8>`; the [`Reader`] walks a body slice and reports the first field
//! it cannot read, so the decoder never indexes past the end of its input.

use byteorder::{BigEndian, ByteOrder};

use crate::error::{DecodeErrorKind, EncodeError};

/// Longest string field, in bytes of UTF-8. Business rules (username length and so on) are far
/// tighter and live in tcp-server; this bound only keeps a frame's fields small and honest.
pub const MAX_STRING_LEN: usize = 4096;

pub(crate) fn put_u8(out: &mut Vec<u8>, value: u8) {
    out.push(value);
}

pub(crate) fn put_u16(out: &mut Vec<u8>, value: u16) {
    let mut bytes = [0; 2];
    BigEndian::write_u16(&mut bytes, value);
    out.extend_from_slice(&bytes);
}

pub(crate) fn put_u32(out: &mut Vec<u8>, value: u32) {
    let mut bytes = [0; 4];
    BigEndian::write_u32(&mut bytes, value);
    out.extend_from_slice(&bytes);
}

pub(crate) fn put_i64(out: &mut Vec<u8>, value: i64) {
    let mut bytes = [0; 8];
    BigEndian::write_i64(&mut bytes, value);
    out.extend_from_slice(&bytes);
}

/// A u16 length, then the UTF-8 bytes.
pub(crate) fn put_str(
    out: &mut Vec<u8>,
    field: &'static str,
    value: &str,
) -> Result<(), EncodeError> {
    if value.len() > MAX_STRING_LEN {
        return Err(EncodeError::StringTooLong {
            field,
            len: value.len(),
        });
    }
    put_u16(out, value.len() as u16);
    out.extend_from_slice(value.as_bytes());
    Ok(())
}

/// A u32 length, then the bytes. The frame's own length check bounds it on both sides.
pub(crate) fn put_blob(
    out: &mut Vec<u8>,
    field: &'static str,
    value: &[u8],
) -> Result<(), EncodeError> {
    let len = u32::try_from(value.len()).map_err(|_| EncodeError::BlobTooLarge {
        field,
        len: value.len(),
    })?;
    put_u32(out, len);
    out.extend_from_slice(value);
    Ok(())
}

/// An option is a presence byte (0 or 1) followed by the value when present.
pub(crate) fn put_opt_str(
    out: &mut Vec<u8>,
    field: &'static str,
    value: Option<&str>,
) -> Result<(), EncodeError> {
    match value {
        None => {
            put_u8(out, 0);
            Ok(())
        }
        Some(value) => {
            put_u8(out, 1);
            put_str(out, field, value)
        }
    }
}

/// A cursor over one frame body. Every getter names the field it reads so an error says which.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Reader { rest: body }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    fn take(&mut self, field: &'static str, len: usize) -> Result<&'a [u8], DecodeErrorKind> {
        if self.rest.len() < len {
            return Err(DecodeErrorKind::Truncated { field });
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeErrorKind> {
        Ok(self.take(field, 1)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeErrorKind> {
        Ok(BigEndian::read_u16(self.take(field, 2)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeErrorKind> {
        Ok(BigEndian::read_u32(self.take(field, 4)?))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeErrorKind> {
        Ok(BigEndian::read_i64(self.take(field, 8)?))
    }

    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, DecodeErrorKind> {
        let len = usize::from(self.u16(field)?);
        if len > MAX_STRING_LEN {
            return Err(DecodeErrorKind::StringTooLong { field, len });
        }
        let bytes = self.take(field, len)?;
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(DecodeErrorKind::InvalidUtf8 { field }),
        }
    }

    pub(crate) fn blob(&mut self, field: &'static str) -> Result<Vec<u8>, DecodeErrorKind> {
        let len = self.u32(field)? as usize;
        Ok(self.take(field, len)?.to_vec())
    }

    /// Reads a presence byte: `false` for 0, `true` for 1, an error for anything else.
    pub(crate) fn present(&mut self, field: &'static str) -> Result<bool, DecodeErrorKind> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeErrorKind::InvalidTag {
                field,
                value: u16::from(value),
            }),
        }
    }

    pub(crate) fn opt_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<String>, DecodeErrorKind> {
        if self.present(field)? {
            self.string(field).map(Some)
        } else {
            Ok(None)
        }
    }
}
