//! Device tokens: a signed note, given to a client at each successful login, that it logged in
//! to this username before (OWASP's "device cookie"). The login throttle judges a client that
//! shows one on its own failures, so an attacker flooding a username cannot lock its owner out
//! (see `throttle`).
//!
//! Layout before base64url (no padding): version (1 byte, 2) | key id (1 byte) | nonce (16
//! random bytes) | expires at (i64 BE, Unix seconds) | HMAC-SHA256 over all that and the
//! username key (32 bytes), under the key named (derived from the token keyring, see
//! `secrets`). Version 1 had no key id; its tokens are no longer recognised, which costs their
//! holders nothing but the lockout exemption until their next login. The username is not in the token: it is bound by the MAC, so a token is worth
//! nothing for any other account and tells nobody which account it is for.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secrets::{DerivedKeys, Keyring, Live};

const VERSION: u8 = 2;
/// What each token key's secret is turned into device-token keys with.
const LABEL: &[u8] = b"gatehouse device token key v1";
const SIGNED_LEN: usize = 2 + 16 + 8;
const TOKEN_BYTES: usize = SIGNED_LEN + 32;
/// Length of an encoded device token: 78 bytes in unpadded base64.
pub const DEVICE_TOKEN_LEN: usize = (TOKEN_BYTES * 4).div_ceil(3);

/// The keys that sign and check device tokens, derived from the token keyring: the current
/// one signs, every one in the ring checks.
pub struct DeviceKey {
    keys: Live<DerivedKeys>,
}

impl DeviceKey {
    /// The keys of `ring`.
    pub fn new(ring: &Keyring) -> Self {
        DeviceKey {
            keys: Live::new(ring.derive(LABEL)),
        }
    }

    /// Takes the keys of `ring` from now on.
    pub fn set(&self, ring: &Keyring) {
        self.keys.set(ring.derive(LABEL));
    }

    fn mac(key: &[u8; 32], signed: &[u8], username_key: &str) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        mac.update(signed);
        mac.update(username_key.as_bytes());
        mac
    }

    /// A token for `username_key` (the normalised username) with a fresh `nonce`, valid until
    /// `expires_at` (Unix seconds).
    pub fn issue(&self, username_key: &str, nonce: [u8; 16], expires_at: i64) -> String {
        let keys = self.keys.get();
        let (id, key) = keys.current();
        let mut bytes = Vec::with_capacity(TOKEN_BYTES);
        bytes.extend_from_slice(&[VERSION, id]);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&expires_at.to_be_bytes());
        let tag = Self::mac(key, &bytes, username_key).finalize().into_bytes();
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The nonce of a token issued for `username_key` and not expired at `now`; `None` for
    /// anything else (malformed, forged, another account's, expired), all alike: such a client
    /// is simply not recognised.
    pub fn verify(&self, token: &str, username_key: &str, now: i64) -> Option<[u8; 16]> {
        if token.len() != DEVICE_TOKEN_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() != TOKEN_BYTES || bytes[0] != VERSION {
            return None;
        }
        let (signed, tag) = bytes.split_at(SIGNED_LEN);
        let keys = self.keys.get();
        Self::mac(keys.get(signed[1])?, signed, username_key)
            .verify_slice(tag)
            .ok()?;
        let expires_at = i64::from_be_bytes(signed[18..26].try_into().ok()?);
        if now >= expires_at {
            return None;
        }
        signed[2..18].try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_good_for_its_own_username_until_it_expires() {
        let key = DeviceKey::new(&Keyring::single("0123456789abcdef").unwrap());
        let token = key.issue("alice", [9; 16], 1_000);
        assert_eq!(token.len(), DEVICE_TOKEN_LEN);
        assert_eq!(key.verify(&token, "alice", 999), Some([9; 16]));
        assert_eq!(key.verify(&token, "alice", 1_000), None);
        assert_eq!(key.verify(&token, "bob", 0), None);
        let other = DeviceKey::new(&Keyring::single("fedcba9876543210").unwrap());
        assert_eq!(other.verify(&token, "alice", 0), None);
        // Another key made current: the token is still good until its key leaves the ring.
        key.set(&Keyring::parse("0 0123456789abcdef\n1 fedcba9876543210 current").unwrap());
        assert_eq!(key.verify(&token, "alice", 0), Some([9; 16]));
        key.set(&Keyring::single("fedcba9876543210").unwrap());
        assert_eq!(key.verify(&token, "alice", 0), None);
    }

    #[test]
    fn tampered_and_malformed_tokens_are_not_recognised() {
        let key = DeviceKey::new(&Keyring::single("0123456789abcdef").unwrap());
        let token = key.issue("alice", [9; 16], 1_000);
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for index in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[index] ^= 1;
            assert_eq!(
                key.verify(&URL_SAFE_NO_PAD.encode(tampered), "alice", 0),
                None,
                "byte {index}"
            );
        }
        for malformed in ["", "abc", &"!".repeat(DEVICE_TOKEN_LEN), &token[1..]] {
            assert_eq!(key.verify(malformed, "alice", 0), None);
        }
    }
}
