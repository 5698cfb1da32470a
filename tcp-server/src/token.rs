//! Session tokens: stateless and signed with HMAC-SHA256, so logging in writes nothing to the
//! database. A token carries the user id, the account's session epoch when it was issued, a
//! random session id and the expiry. Logout revokes the session id (see `ops::logout`); ending
//! every session of an account moves its epoch on, which refuses every token carrying an older
//! one (see `ops::logout_all`).
//!
//! Layout before base64url (no padding): version (1 byte, 2) | user id (i64 BE) | session
//! epoch (i64 BE) | session id (16 random bytes) | expires at (i64 BE, Unix seconds) |
//! HMAC-SHA256 of all that (32 bytes). Version 1, without the epoch, was never released.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const VERSION: u8 = 2;
const CLAIMS_LEN: usize = 1 + 8 + 8 + 16 + 8;
const MAC_LEN: usize = 32;
const TOKEN_BYTES: usize = CLAIMS_LEN + MAC_LEN;
/// Length of an encoded token: 98 bytes in unpadded base64.
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
    /// The MAC does not match: forged or tampered with.
    #[error("token signature mismatch")]
    BadSignature,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
}

/// The key that signs and checks tokens. Every tcp-server instance sharing a database must use
/// the same key, so it is derived from the shared pepper (see `secrets`).
pub struct TokenKey {
    key: [u8; 32],
}

impl TokenKey {
    /// A key from 32 secret bytes.
    pub fn new(key: [u8; 32]) -> Self {
        TokenKey { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        Hmac::<Sha256>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!())
    }

    /// Signs `claims` into a token.
    pub fn issue(&self, claims: &Claims) -> String {
        let mut bytes = Vec::with_capacity(TOKEN_BYTES);
        bytes.push(VERSION);
        bytes.extend_from_slice(&claims.user_id.to_be_bytes());
        bytes.extend_from_slice(&claims.epoch.to_be_bytes());
        bytes.extend_from_slice(&claims.session_id);
        bytes.extend_from_slice(&claims.expires_at.to_be_bytes());
        let mut mac = self.mac();
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
        let mut mac = self.mac();
        mac.update(signed);
        mac.verify_slice(tag)
            .map_err(|_| TokenError::BadSignature)?;
        let claims = Claims {
            user_id: i64::from_be_bytes(array(&signed[1..9])),
            epoch: i64::from_be_bytes(array(&signed[9..17])),
            session_id: array(&signed[17..33]),
            expires_at: i64::from_be_bytes(array(&signed[33..41])),
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
        let key = TokenKey::new([1; 32]);
        let token = key.issue(&claims());
        assert_eq!(token.len(), TOKEN_LEN);
        assert_eq!(key.verify(&token, 999), Ok(claims()));
        assert_eq!(key.verify(&token, 1_000), Err(TokenError::Expired));
    }

    #[test]
    fn tampered_forged_and_malformed_tokens_are_refused() {
        let key = TokenKey::new([1; 32]);
        let token = key.issue(&claims());
        // Flip one bit in every byte position of the decoded token in turn.
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for index in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[index] ^= 1;
            let tampered = URL_SAFE_NO_PAD.encode(tampered);
            assert!(key.verify(&tampered, 0).is_err(), "byte {index}");
        }
        let other = TokenKey::new([2; 32]);
        assert_eq!(
            key.verify(&other.issue(&claims()), 0),
            Err(TokenError::BadSignature)
        );
        for malformed in ["", "abc", &"!".repeat(TOKEN_LEN), &token[1..]] {
            assert_eq!(key.verify(malformed, 0), Err(TokenError::Malformed));
        }
    }
}
