//! Uploaded pictures: recognised by their content (never a declared type), decoded under
//! dimension and allocation limits so a decompression bomb is refused before it is expanded,
//! shrunk to a bounded size and re-encoded, which also drops all metadata (EXIF, GPS tags).

use std::io::Cursor;

use image::{DynamicImage, ImageFormat as Codec, ImageReader, Limits};
use proto::ImageFormat;

use crate::limit::Semaphore;

/// Limits on pictures.
#[derive(Debug, Clone)]
pub struct PictureConfig {
    /// Largest upload accepted, in bytes.
    pub max_bytes: usize,
    /// Widest or tallest image decoded, in pixels.
    pub max_dimension: u32,
    /// Stored pictures fit in a square of this side, in pixels.
    pub stored_dimension: u32,
}

impl PictureConfig {
    /// The defaults, which the command line shares.
    pub const DEFAULT: PictureConfig = PictureConfig {
        max_bytes: 2 * 1024 * 1024,
        max_dimension: 4096,
        stored_dimension: 512,
    };
}

impl Default for PictureConfig {
    fn default() -> Self {
        PictureConfig::DEFAULT
    }
}

/// Why an upload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PictureError {
    /// Too many bytes or pixels.
    #[error("{0}")]
    TooLarge(&'static str),
    /// Not a PNG, JPEG, GIF or WebP image, or a damaged one.
    #[error("{0}")]
    Unsupported(&'static str),
}

/// A picture ready to store.
pub struct Processed {
    /// The format it is stored in.
    pub format: ImageFormat,
    /// The re-encoded image.
    pub data: Vec<u8>,
}

/// Decodes and re-encodes pictures, a bounded number at once (a decode may use up to
/// `max_dimension`² × 4 bytes).
pub struct Pictures {
    config: PictureConfig,
    permits: Semaphore,
}

impl Pictures {
    /// A processor with these limits running at most `max_concurrent` decodes at once.
    pub fn new(config: PictureConfig, max_concurrent: usize) -> Self {
        Pictures {
            config,
            permits: Semaphore::new(max_concurrent),
        }
    }

    /// Checks, decodes, shrinks and re-encodes an upload. JPEGs stay JPEG; the other formats
    /// become PNG (lossless, and GIF animations keep their first frame).
    pub fn process(&self, upload: &[u8]) -> Result<Processed, PictureError> {
        if upload.len() > self.config.max_bytes {
            return Err(PictureError::TooLarge("the picture is larger than allowed"));
        }
        let codec = match image::guess_format(upload) {
            Ok(codec @ (Codec::Png | Codec::Jpeg | Codec::Gif | Codec::WebP)) => codec,
            _ => {
                return Err(PictureError::Unsupported(
                    "not a PNG, JPEG, GIF or WebP image",
                ));
            }
        };
        let _permit = self.permits.acquire();
        let image = self.decode(upload, codec)?;
        let side = self.config.stored_dimension;
        let image = if image.width() > side || image.height() > side {
            image.thumbnail(side, side)
        } else {
            image
        };
        let (format, codec) = match codec {
            Codec::Jpeg => (ImageFormat::Jpeg, Codec::Jpeg),
            _ => (ImageFormat::Png, Codec::Png),
        };
        // JPEG has no alpha channel.
        let image = if codec == Codec::Jpeg {
            DynamicImage::ImageRgb8(image.to_rgb8())
        } else {
            image
        };
        let mut data = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut data), codec)
            .map_err(|_| PictureError::Unsupported("the picture could not be re-encoded"))?;
        Ok(Processed { format, data })
    }

    fn decode(&self, upload: &[u8], codec: Codec) -> Result<DynamicImage, PictureError> {
        let mut reader = ImageReader::with_format(Cursor::new(upload), codec);
        let mut limits = Limits::default();
        limits.max_image_width = Some(self.config.max_dimension);
        limits.max_image_height = Some(self.config.max_dimension);
        // One RGBA frame at the largest dimensions, plus room for the decoder's own buffers.
        limits.max_alloc = Some(u64::from(self.config.max_dimension).pow(2) * 4 + (16 << 20));
        reader.limits(limits);
        reader.decode().map_err(|error| match error {
            image::ImageError::Limits(_) => {
                PictureError::TooLarge("the picture's dimensions are larger than allowed")
            }
            _ => PictureError::Unsupported("the picture is damaged or not a supported image"),
        })
    }
}
