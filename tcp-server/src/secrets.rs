//! tcp-server's two secrets, each a keyring of numbered keys so that it can change without a
//! lockout: the peppers (the Argon2 secret; each stored hash names the pepper it was made with)
//! and the token keys (from which the session-token and device-token keys are derived; each
//! token names its key). One key of each ring is current and makes new hashes and tokens; the
//! others still verify until they are removed. Every tcp-server sharing a database must hold
//! the same rings. docs/OPERATIONS.md gives the rotation procedure.
//!
//! A keyring's text (a file, or the variable that stands for it) has one key per line:
//!
//! ```text
//! # comments and blank lines are ignored
//! 0c4f...e1              a lone secret is key 0 (what --dev writes, and earlier versions read)
//! 1 9a7b...03            key 1
//! 2 5d20...8f current    key 2, the one that makes new hashes or tokens
//! ```
//!
//! Ids are 0 to 255. A ring of one key needs no `current`; a ring of several names exactly one.

use std::fmt;
use std::sync::Arc;

use anyhow::Context as _;
use hmac::{Hmac, Mac};
use parking_lot::RwLock;
use service::secret::Source;
use sha2::Sha256;

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// What is wrong with a keyring's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// No key at all.
    #[error("no key in it")]
    Empty,
    /// A line that is not `<secret>`, `<id> <secret>` or `<id> <secret> current`.
    #[error(
        "line {line}: expected \"<secret>\", \"<id> <secret>\" or \"<id> <secret> current\" \
         (a secret holds no spaces)"
    )]
    Syntax {
        /// The line, from 1.
        line: usize,
    },
    /// An id that is not a number from 0 to 255.
    #[error(
        "line {line}: the key id must be a number from 0 to 255 (a secret holds no spaces, so a \
         line of several words is \"<id> <secret>\")"
    )]
    BadId {
        /// The line, from 1.
        line: usize,
    },
    /// A secret shorter than [`MIN_SECRET_LEN`].
    #[error("key {id}: the secret must be at least {MIN_SECRET_LEN} bytes")]
    Short {
        /// The key.
        id: u8,
    },
    /// Two keys with one id.
    #[error("key {id} is listed twice")]
    Duplicate {
        /// The key.
        id: u8,
    },
    /// Several keys, and not exactly one marked `current`.
    #[error("{marked} keys are marked current: mark exactly one")]
    Current {
        /// How many are.
        marked: usize,
    },
}

/// Numbered secrets, one of them current.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    /// By id, ascending.
    keys: Vec<(u8, Vec<u8>)>,
    current: u8,
}

impl Keyring {
    /// A ring holding `secret` alone, as key 0.
    pub fn single(secret: impl Into<Vec<u8>>) -> Result<Keyring, KeyringError> {
        Keyring::new(vec![(0, secret.into())], 0)
    }

    /// A ring of `keys`, `current` among them.
    pub fn new(mut keys: Vec<(u8, Vec<u8>)>, current: u8) -> Result<Keyring, KeyringError> {
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        keys.sort_by_key(|(id, _)| *id);
        for pair in keys.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(KeyringError::Duplicate { id: pair[0].0 });
            }
        }
        if let Some((id, _)) = keys.iter().find(|(_, s)| s.len() < MIN_SECRET_LEN) {
            return Err(KeyringError::Short { id: *id });
        }
        if !keys.iter().any(|(id, _)| *id == current) {
            return Err(KeyringError::Current { marked: 0 });
        }
        Ok(Keyring { keys, current })
    }

    /// Reads a ring from its text (see the module's documentation).
    pub fn parse(text: &str) -> Result<Keyring, KeyringError> {
        let mut keys = Vec::new();
        let mut marked = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let id = |text: &str| {
                text.parse::<u8>()
                    .map_err(|_| KeyringError::BadId { line: line_no })
            };
            let (id, secret) = match fields[..] {
                [secret] => (0, secret),
                [id_text, secret] => (id(id_text)?, secret),
                [id_text, secret, "current"] => {
                    let id = id(id_text)?;
                    marked.push(id);
                    (id, secret)
                }
                _ => return Err(KeyringError::Syntax { line: line_no }),
            };
            keys.push((id, secret.as_bytes().to_vec()));
        }
        let current = match (&marked[..], &keys[..]) {
            ([current], _) => *current,
            ([], [(only, _)]) => *only,
            ([], []) => return Err(KeyringError::Empty),
            _ => {
                return Err(KeyringError::Current {
                    marked: marked.len(),
                });
            }
        };
        Keyring::new(keys, current)
    }

    /// The current key's id and secret.
    pub fn current(&self) -> (u8, &[u8]) {
        let secret = self
            .get(self.current)
            .unwrap_or_else(|| unreachable!("checked in new"));
        (self.current, secret)
    }

    /// The secret of key `id`, if the ring holds it.
    pub fn get(&self, id: u8) -> Option<&[u8]> {
        self.keys
            .iter()
            .find(|(key, _)| *key == id)
            .map(|(_, secret)| secret.as_slice())
    }

    /// The ids, ascending.
    pub fn ids(&self) -> impl Iterator<Item = u8> + '_ {
        self.keys.iter().map(|(id, _)| *id)
    }

    /// Each key's id and the 32-byte key HMAC-SHA256 derives from its secret for `label`: keys
    /// for different uses that share nothing a holder of one could learn the other from.
    pub fn derive(&self, label: &[u8]) -> DerivedKeys {
        let keys = self
            .keys
            .iter()
            .map(|(id, secret)| {
                // HMAC accepts keys of any length, so this cannot fail.
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
                mac.update(label);
                (*id, mac.finalize().into_bytes().into())
            })
            .collect();
        DerivedKeys {
            keys,
            current: self.current,
        }
    }
}

/// Lists the ids with the current one marked, never a secret: "0, 1 (current)".
impl fmt::Display for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, id) in self.ids().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{id}")?;
            if id == self.current {
                f.write_str(" (current)")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({self})")
    }
}

/// 32-byte keys derived from a keyring, with the same ids and the same current one.
#[derive(Clone)]
pub struct DerivedKeys {
    keys: Vec<(u8, [u8; 32])>,
    current: u8,
}

impl DerivedKeys {
    /// The current key's id and key.
    pub fn current(&self) -> (u8, &[u8; 32]) {
        let key = self
            .get(self.current)
            .unwrap_or_else(|| unreachable!("as in the ring"));
        (self.current, key)
    }

    /// Key `id`, unless it was retired (removed from the ring).
    pub fn get(&self, id: u8) -> Option<&[u8; 32]> {
        self.keys
            .iter()
            .find(|(key, _)| *key == id)
            .map(|(_, key)| key)
    }
}

/// A value that a reload replaces while requests read it: each reader takes the value of the
/// moment (an `Arc`), so a long password hash never holds up the swap.
pub struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    /// Holding `value`.
    pub fn new(value: T) -> Self {
        Live(RwLock::new(Arc::new(value)))
    }

    /// The value now.
    pub fn get(&self) -> Arc<T> {
        self.0.read().clone()
    }

    /// Replaces the value for every later reader.
    pub fn set(&self, value: T) {
        *self.0.write() = Arc::new(value);
    }
}

/// Both keyrings.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// The Argon2 secrets.
    pub peppers: Keyring,
    /// The roots of the session-token and device-token keys.
    pub token_keys: Keyring,
}

impl Secrets {
    /// Reads both rings, each from its variable when set, else from its file (mode 0600).
    /// With `create`, a missing file is created with one random key (development set-ups).
    pub fn load(peppers: Source<'_>, token_keys: Source<'_>) -> anyhow::Result<Secrets> {
        Ok(Secrets {
            peppers: load_ring(peppers)?,
            token_keys: load_ring(token_keys)?,
        })
    }
}

/// One keyring from its variable or file.
pub fn load_ring(source: Source<'_>) -> anyhow::Result<Keyring> {
    let text = service::secret::load(source)?;
    let text = String::from_utf8(text)
        .map_err(|_| anyhow::anyhow!("the {} is not UTF-8 text", source.what))?;
    Keyring::parse(&text).with_context(|| {
        format!(
            "the {} (from {} or {})",
            source.what,
            source.variable,
            source.file.display()
        )
    })
}

/// How many live accounts' password hashes use each pepper: `(pepper, accounts)`, by pepper,
/// with `None` for hashes whose `keyid` is not one of ours. One scan of the users table: an
/// operator's command (`tcp-server peppers`), not for serving.
pub fn accounts_by_pepper(database_url: &str) -> anyhow::Result<Vec<(Option<u8>, i64)>> {
    use base64::Engine as _;
    let mut client = postgres::Client::connect(database_url, postgres::NoTls)
        .context("connecting to the database")?;
    let rows = client
        .query(
            "SELECT substring(password_hash FROM ',keyid=([^,$]*)'), count(*) FROM users \
             WHERE deleted_at IS NULL GROUP BY 1",
            &[],
        )
        .context("counting accounts by pepper")?;
    let mut counts: Vec<(Option<u8>, i64)> = Vec::new();
    for row in rows {
        let keyid: Option<String> = row.get(0);
        let id = match keyid {
            None => Some(0),
            Some(b64) => base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(b64)
                .ok()
                .and_then(|bytes| crate::password::pepper_id(&bytes)),
        };
        match counts.iter_mut().find(|(known, _)| *known == id) {
            Some((_, count)) => *count += row.get::<_, i64>(1),
            None => counts.push((id, row.get(1))),
        }
    }
    counts.sort();
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef";
    const B: &str = "fedcba9876543210";

    #[test]
    fn a_lone_secret_is_key_zero_and_current() {
        let ring = Keyring::parse(&format!("# a comment\n\n  {A}  \n")).unwrap();
        assert_eq!(ring.current(), (0, A.as_bytes()));
        assert_eq!(ring.to_string(), "0 (current)");
        assert_eq!(ring, Keyring::single(A).unwrap());
    }

    #[test]
    fn several_keys_name_their_current_one() {
        let ring = Keyring::parse(&format!("{A}\n7 {B} current\n")).unwrap();
        assert_eq!(ring.current(), (7, B.as_bytes()));
        assert_eq!(ring.get(0), Some(A.as_bytes()));
        assert_eq!(ring.get(1), None);
        assert_eq!(ring.to_string(), "0, 7 (current)");
        assert!(!format!("{ring:?}").contains(A), "no secret in Debug");
    }

    #[test]
    fn bad_rings_say_what_is_wrong() {
        let cases = [
            ("", KeyringError::Empty),
            ("# nothing\n", KeyringError::Empty),
            ("short", KeyringError::Short { id: 0 }),
            (
                &format!("1 {A}\n2 {B}"),
                KeyringError::Current { marked: 0 },
            ),
            (
                &format!("1 {A} current\n2 {B} current"),
                KeyringError::Current { marked: 2 },
            ),
            (
                &format!("1 {A}\n1 {B} current"),
                KeyringError::Duplicate { id: 1 },
            ),
            (&format!("256 {A}"), KeyringError::BadId { line: 1 }),
            (&format!("{A} current"), KeyringError::BadId { line: 1 }),
            (&format!("\n1 {A} now"), KeyringError::Syntax { line: 2 }),
        ];
        for (text, error) in cases {
            assert_eq!(Keyring::parse(text), Err(error), "{text:?}");
        }
    }

    #[test]
    fn derived_keys_differ_by_label_and_by_key() {
        let ring = Keyring::parse(&format!("0 {A}\n1 {B} current")).unwrap();
        let (sessions, devices) = (ring.derive(b"one"), ring.derive(b"two"));
        assert_eq!(sessions.current().0, 1);
        assert_ne!(sessions.get(0), devices.get(0));
        assert_ne!(sessions.get(0), sessions.get(1));
        assert_ne!(sessions.get(1).unwrap().as_slice(), B.as_bytes());
        assert!(sessions.get(2).is_none());
    }
}
