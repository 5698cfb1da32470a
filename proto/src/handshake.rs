//! The tier handshake's key and proofs (PROTOCOL.md, "The tier handshake"), without I/O: both
//! tiers hold one shared secret, each proves it holds it with an HMAC-SHA256 over both sides'
//! fresh nonces, and neither ever sends the secret itself.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// Bytes of each side's nonce.
pub const NONCE_LEN: usize = 32;

/// The shortest tier secret accepted, in bytes.
pub const MIN_TIER_SECRET_LEN: usize = 16;

/// A tier secret too short to be one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a tier key must be at least {MIN_TIER_SECRET_LEN} bytes")]
pub struct TierKeyTooShort;

/// The key both tiers share, derived from the tier secret, and its public id.
#[derive(Clone)]
pub struct TierKey {
    id: String,
    key: [u8; 32],
}

impl fmt::Debug for TierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TierKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Which side a proof is made by: the labels keep a server's proof from passing as a client's.
#[derive(Clone, Copy)]
enum Side {
    Server,
    Client,
}

impl TierKey {
    /// The key of a tier secret (the bytes of the tier key file, trimmed).
    pub fn from_secret(secret: &[u8]) -> Result<TierKey, TierKeyTooShort> {
        if secret.len() < MIN_TIER_SECRET_LEN {
            return Err(TierKeyTooShort);
        }
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
            mac.update(label);
            mac.finalize().into_bytes().into()
        };
        let id_bytes = derive(b"gatehouse tier key id v1");
        Ok(TierKey {
            id: id_bytes[..8].iter().map(|b| format!("{b:02x}")).collect(),
            key: derive(b"gatehouse tier key v1"),
        })
    }

    /// The key's id: 16 hex digits derived from the secret, which name the key in `Hello` and
    /// in logs without revealing it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The server's proof, in `Challenge`.
    pub fn server_proof(&self, client_nonce: &[u8], server_nonce: &[u8]) -> Vec<u8> {
        self.mac(Side::Server, client_nonce, server_nonce)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// The client's proof, in `Authenticate`.
    pub fn client_proof(&self, client_nonce: &[u8], server_nonce: &[u8]) -> Vec<u8> {
        self.mac(Side::Client, client_nonce, server_nonce)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// Whether `proof` is the server's proof for these nonces (compared in constant time).
    pub fn verify_server_proof(
        &self,
        client_nonce: &[u8],
        server_nonce: &[u8],
        proof: &[u8],
    ) -> bool {
        self.mac(Side::Server, client_nonce, server_nonce)
            .verify_slice(proof)
            .is_ok()
    }

    /// Whether `proof` is the client's proof for these nonces (compared in constant time).
    pub fn verify_client_proof(
        &self,
        client_nonce: &[u8],
        server_nonce: &[u8],
        proof: &[u8],
    ) -> bool {
        self.mac(Side::Client, client_nonce, server_nonce)
            .verify_slice(proof)
            .is_ok()
    }

    /// HMAC-SHA256 under the key of: the side's label, then the client's nonce, then the
    /// server's, each preceded by its length as a u32 (so no two inputs run together).
    fn mac(&self, side: Side, client_nonce: &[u8], server_nonce: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(match side {
            Side::Server => b"gatehouse tier handshake v1 server",
            Side::Client => b"gatehouse tier handshake v1 client",
        });
        for nonce in [client_nonce, server_nonce] {
            mac.update(&u32::try_from(nonce.len()).unwrap_or(u32::MAX).to_be_bytes());
            mac.update(nonce);
        }
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_need_the_same_secret_and_the_same_nonces_and_are_one_sided() {
        let key = TierKey::from_secret(b"a tier secret of some length").unwrap();
        let other = TierKey::from_secret(b"another tier secret, as long").unwrap();
        let (c, s) = ([1u8; NONCE_LEN], [2u8; NONCE_LEN]);
        let proof = key.client_proof(&c, &s);
        assert!(key.verify_client_proof(&c, &s, &proof));
        assert!(!other.verify_client_proof(&c, &s, &proof));
        assert!(!key.verify_client_proof(&s, &c, &proof));
        // A server's proof never passes as a client's: a peer cannot reflect it back.
        assert!(!key.verify_client_proof(&c, &s, &key.server_proof(&c, &s)));
        assert!(key.verify_server_proof(&c, &s, &key.server_proof(&c, &s)));
        assert_ne!(key.id(), other.id());
        assert_eq!(key.id().len(), 16);
        assert!(!format!("{key:?}").contains("key:"));
        assert_eq!(
            TierKey::from_secret(b"too short").unwrap_err(),
            TierKeyTooShort
        );
    }
}
