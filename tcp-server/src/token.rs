//! Session tokens: stateless and signed with HMAC-SHA256, so logging in writes nothing to the
//! database. A token carries the user id, the account's session epoch when it was issued, a
//! random session id and the expiry. Logout revokes the session id (see `ops::logout`); ending
//! every session of an account moves its epoch on, which refuses every token carrying an older
//! one (see `ops::logout_all`).
//!
//! Layout before base64url (no padding): version (1 byte, 3) | key id (1 byte) | user id (i64
//! BE) | session epoch (i64 BE) | session id (16 random bytes) | expires at (i64 BE, Unix
//! seconds) | HMAC-SHA256 of all that (32 bytes) under the key named. Version 2 had no key id
//! (its tokens are refused: an upgrade to 3 ends the sessions open then); version 1, without
//! the epoch, was never released.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secrets::{DerivedKeys, Keyring, Live};

const VERSION: u8 = 3;
/// What each token key's secret is turned into session-token keys with.
const LABEL: &[u8] = b"gatehouse session token key v1";
const CLAIMS_LEN: usize = 2 + 8 + 8 + 16 + 8;
const MAC_LEN: usize = 32;
const TOKEN_BYTES: usize = CLAIMS_LEN + MAC_LEN;
/// Length of an encoded token: 99 bytes in unpadded base64.
pub const TOKEN_LEN: usize = (TOKEN_BYTES * 4).div_ceil(3);

/// What a valid token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    /// The account the session belongs to.
    pub user_id: i64,
    /// The account's session epoch when the token was issued: the token is valid only while
    /// the account's epoch is still this one.
    pub epoch: i64,
    /// 128 random bits naming the session, for revocation.
    pub session_id: [u8; 16],
    /// Unix seconds after which the token is refused.
    pub expires_at: i64,
}

/// Why a token was refused. Callers answer all of them the same way (`Unauthorized`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not base64, wrong length or unknown version.
    #[error("malformed token")]
    Malformed,
    /// Signed with a key that is no longer in the ring (retired).
    #[error("token key retired")]
    Retired,
    /// The MAC does not match: forged or tampered with.
    #[error("token signature mismatch")]
    BadSignature,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
}

/// The keys that sign and check tokens, derived from the token keyring (see `secrets`): the
/// current one signs, every one in the ring checks. Every tcp-server sharing a database holds
/// the same ring.
pub struct TokenKey {
    keys: Live<DerivedKeys>,
}

impl TokenKey {
    /// The keys of `ring`.
    pub fn new(ring: &Keyring) -> Self {
        TokenKey {
            keys: Live::new(ring.derive(LABEL)),
        }
    }

    /// Takes the keys of `ring` from now on: tokens of keys no longer in it are refused.
    pub fn set(&self, ring: &Keyring) {
        self.keys.set(ring.derive(LABEL));
    }

    fn mac(key: &[u8; 32]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
    }

    /// Signs `claims` into a token.
    pub fn issue(&self, claims: &Claims) -> String {
        let keys = self.keys.get();
        let (id, key) = keys.current();
        let mut bytes = Vec::with_capacity(TOKEN_BYTES);
        bytes.extend_from_slice(&[VERSION, id]);
        bytes.extend_from_slice(&claims.user_id.to_be_bytes());
        bytes.extend_from_slice(&claims.epoch.to_be_bytes());
        bytes.extend_from_slice(&claims.session_id);
        bytes.extend_from_slice(&claims.expires_at.to_be_bytes());
        let mut mac = Self::mac(key);
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Checks a token's form, signature (in constant time) and expiry against `now` (Unix
    /// seconds). Revocation is the caller's job.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() != TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Malformed)?;
        if bytes.len() != TOKEN_BYTES || bytes[0] != VERSION {
            return Err(TokenError::Malformed);
        }
        let (signed, tag) = bytes.split_at(CLAIMS_LEN);
        let keys = self.keys.get();
        let key = keys.get(signed[1]).ok_or(TokenError::Retired)?;
        let mut mac = Self::mac(key);
        mac.update(signed);
        mac.verify_slice(tag)
            .map_err(|_| TokenError::BadSignature)?;
        let claims = Claims {
            user_id: i64::from_be_bytes(array(&signed[2..10])),
            epoch: i64::from_be_bytes(array(&signed[10..18])),
            session_id: array(&signed[18..34]),
            expires_at: i64::from_be_bytes(array(&signed[34..42])),
        };
        if now >= claims.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

fn array<const N: usize>(slice: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(slice);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(text: &str) -> Keyring {
        Keyring::parse(text).unwrap()
    }

    fn claims() -> Claims {
        Claims {
            user_id: 42,
            epoch: 3,
            session_id: [7; 16],
            expires_at: 1_000,
        }
    }

    #[test]
    fn a_token_round_trips_until_it_expires() {
        let key = TokenKey::new(&ring("0123456789abcdef"));
        let token = key.issue(&claims());
        assert_eq!(token.len(), TOKEN_LEN);
        assert_eq!(key.verify(&token, 999), Ok(claims()));
        assert_eq!(key.verify(&token, 1_000), Err(TokenError::Expired));
    }

    #[test]
    fn tampered_forged_and_malformed_tokens_are_refused() {
        let key = TokenKey::new(&ring("0123456789abcdef"));
        let token = key.issue(&claims());
        // Flip one bit in every byte position of the decoded token in turn.
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for index in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[index] ^= 1;
            let tampered = URL_SAFE_NO_PAD.encode(tampered);
            assert!(key.verify(&tampered, 0).is_err(), "byte {index}");
        }
        let other = TokenKey::new(&ring("fedcba9876543210"));
        assert_eq!(
            key.verify(&other.issue(&claims()), 0),
            Err(TokenError::BadSignature)
        );
        for malformed in ["", "abc", &"!".repeat(TOKEN_LEN), &token[1..]] {
            assert_eq!(key.verify(malformed, 0), Err(TokenError::Malformed));
        }
    }

    #[test]
    fn old_keys_check_until_retired_and_the_current_one_signs() {
        let key = TokenKey::new(&ring("0123456789abcdef"));
        let old = key.issue(&claims());
        // Key 1 added and made current: new tokens name it, old ones still pass.
        key.set(&ring("0 0123456789abcdef\n1 fedcba9876543210 current"));
        let new = key.issue(&claims());
        assert_eq!(URL_SAFE_NO_PAD.decode(&new).unwrap()[1], 1);
        assert_eq!(key.verify(&old, 0), Ok(claims()));
        assert_eq!(key.verify(&new, 0), Ok(claims()));
        // Key 0 retired: its tokens are refused, key 1's are not.
        key.set(&ring("1 fedcba9876543210"));
        assert_eq!(key.verify(&old, 0), Err(TokenError::Retired));
        assert_eq!(key.verify(&new, 0), Ok(claims()));
        // A token that names a key it was not signed with is a forgery.
        key.set(&ring("0 fedcba9876543210\n1 fedcba9876543210 current"));
        assert_eq!(key.verify(&old, 0), Err(TokenError::BadSignature));
    }
}
