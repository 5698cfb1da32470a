//! Password hashing: argon2id with a pepper as the Argon2 secret, PHC strings that name their
//! pepper (the `keyid` parameter; none for pepper 0), named strength presets, and a FIFO queue that bounds how many hashes run at once (so memory stays
//! bounded) and how long one may wait to start (so a burst gets fast refusals, not time-outs).

use std::fmt;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, KeyId, Params, ParamsBuilder, Version};
use parking_lot::Mutex;

use crate::limit::{Busy, FifoQueue};
use crate::secrets::{Keyring, Live};

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
    /// The `fast` preset and the default: the strongest setting that leaves two cores room for
    /// the rest of 10,000 logins a second (see the README's table).
    pub const DEFAULT: PasswordParams = PasswordParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    /// The `owasp` preset: OWASP's Password Storage Cheat Sheet's minimum for argon2id (19 MiB,
    /// two passes, one lane).
    pub const OWASP: PasswordParams = PasswordParams {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };
}

impl fmt::Display for PasswordParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "argon2id m={} KiB, t={}, p={}",
            self.memory_kib, self.iterations, self.parallelism
        )
    }
}

/// A named hashing strength (`--argon2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// m=64 KiB, t=1, p=1: over 10,000 logins a second on two cores (the default).
    Fast,
    /// m=19 MiB, t=2, p=1: OWASP's minimum, about 300 times the memory per guess.
    Owasp,
}

impl Preset {
    /// The preset's parameters.
    pub fn params(self) -> PasswordParams {
        match self {
            Preset::Fast => PasswordParams::DEFAULT,
            Preset::Owasp => PasswordParams::OWASP,
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Preset::Fast => "fast",
            Preset::Owasp => "owasp",
        })
    }
}

/// Why a hash was not made.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The hash queue's wait bound would be passed: try again shortly.
    #[error("too many password hashes waiting")]
    Busy,
    /// Argon2 itself failed (bad parameters; not expected once the hasher is built).
    #[error("hashing: {0}")]
    Argon2(argon2::password_hash::Error),
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
    /// configured ones, or a pepper other than the current one.
    Match {
        /// The stored hash should be replaced by a fresh one.
        needs_rehash: bool,
    },
    /// Wrong password (or an unreadable stored hash).
    Mismatch,
    /// Not checked: the hash queue's wait bound would be passed.
    Busy,
}

/// Hashes and verifies passwords.
pub struct Hasher {
    params: PasswordParams,
    peppers: Live<Keyring>,
    queue: FifoQueue,
    /// argon2's working memory (m KiB a hash), one buffer for each hash running at once,
    /// reused. Allocated and freed per hash, 19 MiB at `owasp`, it was kept by the allocator
    /// in every thread's arena: tcp-server's peak RSS reached 1.2 GB verifying 200 owasp hashes.
    /// A buffer grows to the largest hash it has served (an older preset's) and stays so.
    memory: Mutex<Vec<Vec<Block>>>,
    /// Verified against when the user does not exist, so that an unknown user and a wrong
    /// password take the same time.
    dummy_hash: String,
}

impl Hasher {
    /// A hasher with the given parameters and peppers, running at most `max_concurrent` hashes
    /// at once; the others wait their turn however long it takes.
    pub fn new(
        params: PasswordParams,
        peppers: Keyring,
        max_concurrent: usize,
    ) -> anyhow::Result<Self> {
        Self::with_max_wait(params, peppers, max_concurrent, None)
    }

    /// As [`Hasher::new`], but a hash that could not start within `max_wait` (expected, from
    /// the queue ahead of it and the measured hash time, or actual) is not made: `Busy`.
    pub fn with_max_wait(
        params: PasswordParams,
        peppers: Keyring,
        max_concurrent: usize,
        max_wait: Option<Duration>,
    ) -> anyhow::Result<Self> {
        argon2_params(params, 0).map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        let mut hasher = Hasher {
            params,
            peppers: Live::new(peppers),
            memory: Mutex::new(Vec::new()),
            queue: FifoQueue::new(max_concurrent, None, Duration::ZERO),
            dummy_hash: String::new(),
        };
        // The first hash also measures what one costs here, the queue's first estimate.
        let started = Instant::now();
        hasher.dummy_hash = hasher.hash("a password nobody has")?;
        hasher.queue = FifoQueue::new(max_concurrent, max_wait, started.elapsed());
        Ok(hasher)
    }

    /// Takes `peppers` from now on: new hashes use its current pepper, and hashes naming a
    /// pepper no longer in it no longer verify.
    pub fn set_peppers(&self, peppers: Keyring) {
        self.peppers.set(peppers);
    }

    /// A PHC string for `password` with a fresh random salt, under the current pepper.
    pub fn hash(&self, password: &str) -> Result<String, HashError> {
        let salt = SaltString::generate(&mut OsRng);
        let _ticket = self.queue.acquire().map_err(|Busy| HashError::Busy)?;
        // The ring of when the hash starts, not of when it queued: a pepper retired meanwhile
        // is not used.
        let peppers = self.peppers.get();
        let (id, pepper) = peppers.current();
        let params = argon2_params(self.params, id).map_err(|e| HashError::Argon2(e.into()))?;
        let argon2 = argon2(pepper, params.clone()).map_err(|e| HashError::Argon2(e.into()))?;
        let output = self
            .compute(
                &argon2,
                password,
                salt.as_salt(),
                Params::DEFAULT_OUTPUT_LEN,
            )
            .map_err(HashError::Argon2)?;
        let phc = PasswordHash {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(HashError::Argon2)?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }

    /// What `PasswordHasher::hash_password` computes (the same salt bytes, the same output),
    /// in a reused buffer of this hasher's instead of a fresh allocation.
    fn compute(
        &self,
        argon2: &Argon2<'_>,
        password: &str,
        salt: Salt<'_>,
        output_len: usize,
    ) -> argon2::password_hash::Result<Output> {
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
        let blocks = argon2.params().block_count();
        let mut memory = self.memory.lock().pop().unwrap_or_default();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        let output = Output::init_with(output_len, |out| {
            Ok(argon2.hash_password_into_with_memory(
                password.as_bytes(),
                salt_bytes,
                out,
                &mut memory[..blocks],
            )?)
        });
        self.memory.lock().push(memory);
        output
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
        let peppers = self.peppers.get();
        let (current, current_pepper) = peppers.current();
        let id = pepper_id(params.keyid());
        // A hash under a pepper no longer held cannot be checked; it still costs one
        // verification (under the current pepper), so its answer comes no faster than others.
        let (known, pepper) = match id.and_then(|id| peppers.get(id)) {
            Some(pepper) => (true, pepper),
            None => {
                log::debug!("a stored hash names pepper {id:?}, which is not in the ring");
                (false, current_pepper)
            }
        };
        // As `PasswordVerifier::verify_password`: the stored hash's algorithm and version, its
        // salt and output length, a constant-time comparison (`Output`'s).
        let algorithm = Algorithm::try_from(parsed.algorithm);
        let version = parsed.version.map(Version::try_from).transpose();
        let (Ok(algorithm), Ok(version), Some(salt), Some(expected)) =
            (algorithm, version, parsed.salt, parsed.hash)
        else {
            return Verified::Mismatch;
        };
        let argon2 = Argon2::new_with_secret(
            pepper,
            algorithm,
            version.unwrap_or_default(),
            params.clone(),
        );
        let Ok(argon2) = argon2 else {
            return Verified::Mismatch;
        };
        let ok = {
            let Ok(_ticket) = self.queue.acquire() else {
                return Verified::Busy;
            };
            self.compute(&argon2, password, salt, expected.len())
                .is_ok_and(|computed| computed == expected)
        };
        if !ok || !known {
            return Verified::Mismatch;
        }
        let wanted = &self.params;
        let needs_rehash = parsed.algorithm != argon2::ARGON2ID_IDENT
            || params.m_cost() != wanted.memory_kib
            || params.t_cost() != wanted.iterations
            || params.p_cost() != wanted.parallelism
            || id != Some(current);
        Verified::Match { needs_rehash }
    }

    /// Spends the time of one verification on a hash that matches nothing: the answer for an
    /// unknown user. `Mismatch`, or `Busy` when it could not start in time.
    pub fn verify_dummy(&self, password: &str) -> Verified {
        self.verify(password, &self.dummy_hash)
    }
}

/// Argon2id with `pepper` as its secret.
fn argon2(pepper: &[u8], params: Params) -> Result<Argon2<'_>, argon2::Error> {
    Argon2::new_with_secret(pepper, Algorithm::Argon2id, Version::V0x13, params)
}

/// `params` for hashes under pepper `id`: the PHC string names it (`keyid`, the id in decimal
/// digits, base64-encoded as PHC wants), except pepper 0, which hashes made before peppers had
/// ids name by saying nothing.
fn argon2_params(params: PasswordParams, id: u8) -> Result<Params, argon2::Error> {
    let mut builder = ParamsBuilder::new();
    builder
        .m_cost(params.memory_kib)
        .t_cost(params.iterations)
        .p_cost(params.parallelism);
    if id != 0 {
        builder.keyid(KeyId::new(id.to_string().as_bytes())?);
    }
    builder.build()
}

/// The pepper a stored hash's `keyid` names: 0 when it has none, `None` when it is not one of
/// ours.
pub fn pepper_id(keyid: &[u8]) -> Option<u8> {
    if keyid.is_empty() {
        return Some(0);
    }
    std::str::from_utf8(keyid).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: PasswordParams = PasswordParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn ring(text: &str) -> Keyring {
        Keyring::parse(text).unwrap()
    }

    #[test]
    fn hashes_verify_and_need_the_pepper() {
        let hasher = Hasher::new(FAST, ring("0 a_pepper_of_16+_bytes"), 2).unwrap();
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
        let other_pepper = Hasher::new(FAST, ring("0 another_pepper_16+_bytes"), 2).unwrap();
        assert_eq!(
            other_pepper.verify("correct horse", &stored),
            Verified::Mismatch
        );
        assert_eq!(hasher.verify("x", "not a phc string"), Verified::Mismatch);
    }

    #[test]
    fn presets_name_their_parameters() {
        assert_eq!(Preset::Fast.params(), PasswordParams::DEFAULT);
        assert_eq!(
            Preset::Owasp.params().to_string(),
            "argon2id m=19456 KiB, t=2, p=1"
        );
        let hasher =
            Hasher::new(Preset::Owasp.params(), ring("0 a_pepper_of_16+_bytes"), 1).unwrap();
        let stored = hasher.hash("correct horse").unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
    }

    #[test]
    fn a_hash_with_other_parameters_asks_for_a_rehash() {
        let old = Hasher::new(FAST, ring("0 a_pepper_of_16+_bytes"), 2).unwrap();
        let stored = old.hash("correct horse").unwrap();
        let stronger = PasswordParams {
            memory_kib: 128,
            ..FAST
        };
        let new = Hasher::new(stronger, ring("0 a_pepper_of_16+_bytes"), 2).unwrap();
        assert_eq!(
            new.verify("correct horse", &stored),
            Verified::Match { needs_rehash: true }
        );
    }

    #[test]
    fn hashes_name_their_pepper_and_an_old_one_asks_for_a_rehash_until_it_is_gone() {
        let hasher = Hasher::new(FAST, ring("0 the_first_pepper_here"), 2).unwrap();
        let under_0 = hasher.hash("correct horse").unwrap();
        assert!(
            !under_0.contains("keyid"),
            "pepper 0 is named by silence: {under_0}"
        );
        hasher.set_peppers(ring(
            "0 the_first_pepper_here\n12 the_second_pepper_here current",
        ));
        let under_12 = hasher.hash("correct horse").unwrap();
        // "12" in base64.
        assert!(under_12.contains(",keyid=MTI$"), "{under_12}");
        assert_eq!(
            hasher.verify("correct horse", &under_0),
            Verified::Match { needs_rehash: true }
        );
        assert_eq!(
            hasher.verify("correct horse", &under_12),
            Verified::Match {
                needs_rehash: false
            }
        );
        assert_eq!(hasher.verify("wrong horse", &under_0), Verified::Mismatch);
        // Pepper 0 removed: its hashes no longer verify, pepper 12's still do.
        hasher.set_peppers(ring("12 the_second_pepper_here"));
        assert_eq!(hasher.verify("correct horse", &under_0), Verified::Mismatch);
        assert_eq!(
            hasher.verify("correct horse", &under_12),
            Verified::Match {
                needs_rehash: false
            }
        );
        assert_eq!(hasher.verify_dummy("correct horse"), Verified::Mismatch);
        // A hash under a pepper no longer held still costs one verification at its own
        // parameters (its answer comes no sooner than a wrong password's): the argon2 run
        // leaves a working buffer of its size, which none of the fast hashes above needed.
        let heavier = PasswordParams {
            memory_kib: 256,
            ..FAST
        };
        let gone = Hasher::new(heavier, ring("0 the_first_pepper_here"), 1)
            .unwrap()
            .hash("correct horse")
            .unwrap();
        assert!(hasher.memory.lock().iter().all(|buffer| buffer.len() < 256));
        assert_eq!(hasher.verify("correct horse", &gone), Verified::Mismatch);
        assert!(
            hasher
                .memory
                .lock()
                .iter()
                .any(|buffer| buffer.len() == 256)
        );
        assert_eq!(pepper_id(b""), Some(0));
        assert_eq!(pepper_id(b"255"), Some(255));
        assert_eq!(pepper_id(b"256"), None);
        assert_eq!(pepper_id(&[0xff]), None);
    }

    #[test]
    fn hashes_are_what_the_argon2_crate_makes_and_checks_and_its_hashes_check_here() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let pepper = b"a_pepper_of_16+_bytes";
        let hasher = Hasher::new(FAST, ring("0 a_pepper_of_16+_bytes"), 2).unwrap();
        let ours = hasher.hash("correct horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        let params = Params::try_from(&parsed).unwrap();
        let standard =
            Argon2::new_with_secret(pepper, Algorithm::Argon2id, Version::V0x13, params).unwrap();
        assert!(standard.verify_password(b"correct horse", &parsed).is_ok());
        assert!(standard.verify_password(b"wrong horse", &parsed).is_err());
        for (algorithm, version) in [
            (Algorithm::Argon2id, Version::V0x13),
            (Algorithm::Argon2i, Version::V0x13),
            (Algorithm::Argon2d, Version::V0x10),
        ] {
            let params = Params::new(64, 1, 1, None).unwrap();
            let made = Argon2::new_with_secret(pepper, algorithm, version, params)
                .unwrap()
                .hash_password(b"correct horse", &SaltString::generate(&mut OsRng))
                .unwrap()
                .to_string();
            assert_eq!(
                hasher.verify("correct horse", &made),
                Verified::Match {
                    needs_rehash: algorithm != Algorithm::Argon2id
                },
                "{made}"
            );
            assert_eq!(hasher.verify("wrong horse", &made), Verified::Mismatch);
        }
        // An owasp hash checked here grows a buffer once; it is reused, not reallocated.
        let owasp = Hasher::new(PasswordParams::OWASP, ring("0 a_pepper_of_16+_bytes"), 1)
            .unwrap()
            .hash("correct horse")
            .unwrap();
        assert!(matches!(
            hasher.verify("correct horse", &owasp),
            Verified::Match { needs_rehash: true }
        ));
        let buffers = hasher.memory.lock();
        assert!(buffers.len() <= 2, "one buffer per hash at once");
        assert!(buffers.iter().any(|b| b.len() == 19 * 1024));
    }
}
