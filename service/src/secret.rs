//! Secrets from the environment or from a file only its owner can read, as both servers load
//! them (tcp-server its pepper, both the tier key). A development set-up (`--dev`) creates a
//! missing file with 32 random bytes as hex; production gives the file or the variable.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why a secret could not be loaded.
#[derive(Debug, Error)]
pub enum SecretError {
    /// Neither the variable nor the file is there, and creating it was not asked for.
    #[error("no {what}: set {variable} or write one to {} (or pass --dev to create it)", .file.display())]
    Missing {
        /// What the secret is.
        what: &'static str,
        /// The variable that could hold it.
        variable: &'static str,
        /// The file that could hold it.
        file: PathBuf,
    },
    /// The variable is set but not valid UTF-8. No fallback to the file: with `--dev` that
    /// would mint a new secret.
    #[error("{variable} is set but is not valid UTF-8")]
    Variable {
        /// The variable.
        variable: &'static str,
    },
    /// The file can be read by others than its owner.
    #[error("{} is open to other users (mode {mode:o}): chmod 600 it", .file.display())]
    OpenToOthers {
        /// The file.
        file: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading or creating the file failed.
    #[error("{}: {source}", .file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// No random bytes to create a secret with.
    #[error("no randomness to create the {what}: {reason}")]
    NoRandomness {
        /// What the secret is.
        what: &'static str,
        /// The system's error.
        reason: String,
    },
}

/// Where a secret comes from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// What it is, for messages: "pepper", "tier key".
    pub what: &'static str,
    /// The environment variable that holds it, which wins over the file.
    pub variable: &'static str,
    /// The file that holds it otherwise.
    pub file: &'a Path,
    /// Create a missing file (development set-ups).
    pub create: bool,
}

/// The secret's bytes (the variable's or the file's text, trimmed).
pub fn load(source: Source<'_>) -> Result<Vec<u8>, SecretError> {
    match std::env::var(source.variable) {
        Ok(value) => return Ok(value.trim().as_bytes().to_vec()),
        Err(std::env::VarError::NotPresent) => {}
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(SecretError::Variable {
                variable: source.variable,
            });
        }
    }
    let file = source.file;
    let io = |source: io::Error| SecretError::Io {
        file: file.to_owned(),
        source,
    };
    if !file.exists() {
        if !source.create {
            return Err(SecretError::Missing {
                what: source.what,
                variable: source.variable,
                file: file.to_owned(),
            });
        }
        if create(file, source.what)? {
            log::warn!("created a new {} in {}", source.what, file.display());
        }
    }
    let mode = fs::metadata(file).map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(SecretError::OpenToOthers {
            file: file.to_owned(),
            mode: mode & 0o777,
        });
    }
    let text = fs::read_to_string(file).map_err(io)?;
    Ok(text.trim().as_bytes().to_vec())
}

/// Creates `file` holding 32 random bytes as hex, mode 0600, all at once: written to a file of
/// its own first, then linked into place, so a server starting at the same moment (both tiers
/// with `--dev`) never reads it half written. `false` when another process created it first.
fn create(file: &Path, what: &'static str) -> Result<bool, SecretError> {
    let io = |source: io::Error| SecretError::Io {
        file: file.to_owned(),
        source,
    };
    // The secret, and a name for the staged file no other thread or process picks.
    let mut bytes = [0u8; 40];
    getrandom::fill(&mut bytes).map_err(|error| SecretError::NoRandomness {
        what,
        reason: error.to_string(),
    })?;
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    let (secret, tag) = (hex(&bytes[..32]), hex(&bytes[32..]));
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let mut staged = file.as_os_str().to_owned();
    staged.push(format!(".{tag}.new"));
    let staged = PathBuf::from(staged);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&staged)
        .and_then(|mut out| writeln!(out, "{secret}"));
    let linked = match written {
        Ok(()) => fs::hard_link(&staged, file)
            .map(|()| true)
            .or_else(|error| {
                // Another server created it first: theirs is the one.
                if error.kind() == io::ErrorKind::AlreadyExists {
                    Ok(false)
                } else {
                    Err(error)
                }
            }),
        Err(error) => Err(error),
    };
    let _ = fs::remove_file(&staged);
    linked.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(file: &Path, create: bool) -> Source<'_> {
        Source {
            what: "test secret",
            variable: "GATEHOUSE_SECRET_TEST_UNSET",
            file,
            create,
        }
    }

    #[test]
    fn a_missing_file_is_created_once_with_mode_0600_only_when_asked() {
        let dir = std::env::temp_dir().join(format!("gatehouse-secret-{}", std::process::id()));
        let file = dir.join("secret");
        let _ = fs::remove_dir_all(&dir);
        assert!(matches!(
            load(source(&file, false)),
            Err(SecretError::Missing { .. })
        ));
        let first = load(source(&file, true)).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load(source(&file, true)).unwrap(), first, "reused");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let error = load(source(&file, true)).unwrap_err();
        assert!(error.to_string().contains("chmod 600"), "{error}");
        // Nothing staged is left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn servers_starting_together_read_one_secret() {
        let dir = std::env::temp_dir().join(format!("gatehouse-race-{}", std::process::id()));
        let file = dir.join("secret");
        let _ = fs::remove_dir_all(&dir);
        let loads: Vec<_> = (0..8)
            .map(|_| {
                let file = file.clone();
                std::thread::spawn(move || load(source(&file, true)).unwrap())
            })
            .collect();
        let secrets: Vec<Vec<u8>> = loads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(secrets.iter().all(|s| s.len() == 64 && *s == secrets[0]));
        fs::remove_dir_all(&dir).unwrap();
    }
}
