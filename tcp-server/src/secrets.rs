//! The server's one secret, the pepper: the Argon2 secret for password hashes, and the root from
//! which the session-token and device-token keys are derived. Every tcp-server sharing a
//! database must share it.

use std::path::Path;

use anyhow::{Context, bail};
use hmac::{Hmac, Mac};
use service::secret::Source;
use sha2::Sha256;

/// Shortest pepper accepted, in bytes.
const MIN_PEPPER_LEN: usize = 16;

/// The secrets derived from the pepper.
pub struct Secrets {
    /// The Argon2 secret.
    pub pepper: Vec<u8>,
    /// The key that signs session tokens.
    pub token_key: [u8; 32],
    /// The key that signs device tokens (see `device`).
    pub device_key: [u8; 32],
}

impl Secrets {
    /// Derives the secrets from a pepper. Domain separation keeps the token key unrelated to
    /// the Argon2 secret even though both come from one value.
    pub fn from_pepper(pepper: Vec<u8>) -> anyhow::Result<Self> {
        if pepper.len() < MIN_PEPPER_LEN {
            bail!("the pepper must be at least {MIN_PEPPER_LEN} bytes");
        }
        let derive = |label: &[u8]| -> anyhow::Result<[u8; 32]> {
            let mut mac = Hmac::<Sha256>::new_from_slice(&pepper).context("pepper as HMAC key")?;
            mac.update(label);
            Ok(mac.finalize().into_bytes().into())
        };
        Ok(Secrets {
            token_key: derive(b"gatehouse session token key v1")?,
            device_key: derive(b"gatehouse device token key v1")?,
            pepper,
        })
    }

    /// Reads the pepper from `GATEHOUSE_PEPPER` when set, else from `file` (mode 0600). With
    /// `create`, a missing file is created with a random pepper (development set-ups); without
    /// it a missing pepper is an error.
    pub fn load(file: &Path, create: bool) -> anyhow::Result<Self> {
        let pepper = service::secret::load(Source {
            what: "pepper",
            variable: "GATEHOUSE_PEPPER",
            file,
            create,
        })?;
        Self::from_pepper(pepper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_derived_apart_and_short_peppers_are_refused() {
        let secrets = Secrets::from_pepper(b"0123456789abcdef".to_vec()).unwrap();
        assert_eq!(secrets.pepper, b"0123456789abcdef");
        assert_ne!(secrets.token_key.as_slice(), secrets.pepper.as_slice());
        assert_ne!(secrets.token_key, secrets.device_key);
        assert!(Secrets::from_pepper(b"short".to_vec()).is_err());
    }
}
