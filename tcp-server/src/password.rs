//! Password hashing: argon2id with the server's pepper as the Argon2 secret, PHC strings, and a
//! bound on how many hashes run at once so memory stays bounded.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::limit::Semaphore;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory in KiB (`m`).
    pub memory_kib: u32,
    /// Passes (`t`).
    pub iterations: u32,
    /// Lanes (`p`).
    pub parallelism: u32,
}

impl PasswordParams {
    /// The defaults: the strongest setting that leaves two cores room for the rest of 10,000
    /// logins a second (see the README's table).
    pub const DEFAULT: PasswordParams = PasswordParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
}

impl Default for PasswordParams {
    fn default() -> Self {
        PasswordParams::DEFAULT
    }
}

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Right password; `needs_rehash` when the stored hash used other parameters than the
    /// configured ones.
    Match {
        /// The stored hash should be replaced by a fresh one.
        needs_rehash: bool,
    },
    /// Wrong password (or an unreadable stored hash).
    Mismatch,
}

/// Hashes and verifies passwords.
pub struct Hasher {
    params: Params,
    pepper: Vec<u8>,
    permits: Semaphore,
    /// Verified against when the user does not exist, so that an unknown user and a wrong
    /// password take the same time.
    dummy_hash: String,
}

impl Hasher {
    /// A hasher with the given parameters and pepper, running at most `max_concurrent` hashes
    /// at once.
    pub fn new(
        params: PasswordParams,
        pepper: Vec<u8>,
        max_concurrent: usize,
    ) -> anyhow::Result<Self> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        let mut hasher = Hasher {
            params,
            pepper,
            permits: Semaphore::new(max_concurrent),
            dummy_hash: String::new(),
        };
        hasher.dummy_hash = hasher.hash("a password nobody has")?;
        Ok(hasher)
    }

    fn argon2(&self, params: Params) -> anyhow::Result<Argon2<'_>> {
        Argon2::new_with_secret(&self.pepper, Algorithm::Argon2id, Version::V0x13, params)
            .map_err(|e| anyhow::anyhow!("argon2 setup: {e}"))
    }

    /// A PHC string for `password` with a fresh random salt.
    pub fn hash(&self, password: &str) -> anyhow::Result<String> {
        let salt = SaltString::generate(&mut OsRng);
        let _permit = self.permits.acquire();
        let hash = self
            .argon2(self.params.clone())?
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
        Ok(hash.to_string())
    }

    /// Checks `password` against a stored PHC string.
    pub fn verify(&self, password: &str, stored: &str) -> Verified {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return Verified::Mismatch;
        };
        // Verify with the parameters the hash was made with, which may be older ones.
        let Ok(params) = Params::try_from(&parsed) else {
            return Verified::Mismatch;
        };
        let Ok(argon2) = self.argon2(params.clone()) else {
            return Verified::Mismatch;
        };
        let ok = {
            let _permit = self.permits.acquire();
            argon2.verify_password(password.as_bytes(), &parsed).is_ok()
        };
        if !ok {
            return Verified::Mismatch;
        }
        let needs_rehash = parsed.algorithm != argon2::ARGON2ID_IDENT
            || params.m_cost() != self.params.m_cost()
            || params.t_cost() != self.params.t_cost()
            || params.p_cost() != self.params.p_cost();
        Verified::Match { needs_rehash }
    }

    /// Spends the time of one verification on a hash that matches nothing: the answer for an
    /// unknown user.
    pub fn verify_dummy(&self, password: &str) {
        let _ = self.verify(password, &self.dummy_hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: PasswordParams = PasswordParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn hashes_verify_and_need_the_pepper() {
        let hasher = Hasher::new(FAST, b"pepper".to_vec(), 2).unwrap();
        let stored = hasher.hash("correct horse").unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
            "{stored}"
        );
        assert_eq!(
            hasher.verify("correct horse", &stored),
            Verified::Match {
                needs_rehash: false
            }
        );
        assert_eq!(hasher.verify("wrong horse", &stored), Verified::Mismatch);
        let other_pepper = Hasher::new(FAST, b"other".to_vec(), 2).unwrap();
        assert_eq!(
            other_pepper.verify("correct horse", &stored),
            Verified::Mismatch
        );
        assert_eq!(hasher.verify("x", "not a phc string"), Verified::Mismatch);
    }

    #[test]
    fn a_hash_with_other_parameters_asks_for_a_rehash() {
        let old = Hasher::new(FAST, b"pepper".to_vec(), 2).unwrap();
        let stored = old.hash("correct horse").unwrap();
        let stronger = PasswordParams {
            memory_kib: 128,
            ..FAST
        };
        let new = Hasher::new(stronger, b"pepper".to_vec(), 2).unwrap();
        assert_eq!(
            new.verify("correct horse", &stored),
            Verified::Match { needs_rehash: true }
        );
    }
}
