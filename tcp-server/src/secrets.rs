//! The server's one secret, the pepper: the Argon2 secret for password hashes, and the root from
//! which the session-token and device-token keys are derived. Every tcp-server sharing a
//! database must share it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use hmac::{Hmac, Mac};
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

    /// Reads the pepper from `env_value` when given, else from `file`. With `create`, a missing
    /// file is created with a random pepper and mode 0600 (development set-ups); without it a
    /// missing pepper is an error.
    pub fn load(env_value: Option<&str>, file: &Path, create: bool) -> anyhow::Result<Self> {
        if let Some(value) = env_value {
            return Self::from_pepper(value.trim().as_bytes().to_vec());
        }
        if !file.exists() {
            if !create {
                bail!(
                    "no pepper: set GATEHOUSE_PEPPER or write one to {} (or pass --dev to create it)",
                    file.display()
                );
            }
            create_pepper_file(file)?;
            log::warn!("created a new pepper in {}", file.display());
        }
        let mode = fs::metadata(file)
            .with_context(|| format!("reading {}", file.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "{} is open to other users (mode {:o}): chmod 600 it",
                file.display(),
                mode & 0o777
            );
        }
        let text =
            fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        Self::from_pepper(text.trim().as_bytes().to_vec())
    }
}

fn create_pepper_file(file: &Path) -> anyhow::Result<()> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("creating {}", file.display()))?;
    writeln!(out, "{hex}").with_context(|| format!("writing {}", file.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dev_pepper_is_created_once_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("gatehouse-secrets-{}", std::process::id()));
        let file = dir.join("pepper");
        let _ = fs::remove_dir_all(&dir);
        assert!(
            Secrets::load(None, &file, false).is_err(),
            "missing and not dev"
        );
        let first = Secrets::load(None, &file, true).unwrap();
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let second = Secrets::load(None, &file, true).unwrap();
        assert_eq!(first.pepper, second.pepper, "reused, not regenerated");
        assert_ne!(first.token_key.as_slice(), first.pepper.as_slice());
        assert_ne!(first.token_key, first.device_key);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_pepper_file_open_to_other_users_is_refused() {
        let dir = std::env::temp_dir().join(format!("gatehouse-open-{}", std::process::id()));
        let file = dir.join("pepper");
        let _ = fs::remove_dir_all(&dir);
        Secrets::load(None, &file, true).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let error = Secrets::load(None, &file, true).err().unwrap();
        assert!(error.to_string().contains("chmod 600"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_environment_wins_and_short_peppers_are_refused() {
        let missing = Path::new("/nonexistent/pepper");
        let secrets = Secrets::load(Some("0123456789abcdef"), missing, false).unwrap();
        assert_eq!(secrets.pepper, b"0123456789abcdef");
        assert!(Secrets::load(Some("short"), missing, false).is_err());
    }
}
