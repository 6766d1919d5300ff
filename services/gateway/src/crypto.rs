//! Sealing store credentials and webhook secrets at rest: ChaCha20-Poly1305 with a key from
//! config, a random nonce per value, and the brand id as associated data so a sealed value copied
//! to another brand's row does not open.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    /// Keys the customer hashes of orders, derived from the same key (so one secret to manage).
    customer_key: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("TRACKING_CREDENTIALS_KEY must be 32 bytes, base64-encoded")]
    BadKey,
    #[error("random number generator failed")]
    Random,
    #[error("sealed value is corrupt or was sealed with another key or brand")]
    Open,
}

impl Sealer {
    /// From the base64 text of a 32-byte key.
    pub fn from_base64(key: &str) -> Result<Sealer, SealError> {
        let bytes = STANDARD.decode(key.trim()).map_err(|_| SealError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey);
        }
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&bytes).map_err(|_| SealError::BadKey)?;
        mac.update(b"tracking customer hash v1");
        Ok(Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)),
            customer_key: mac.finalize().into_bytes().into(),
        })
    }

    /// A new random key, base64-encoded (trackd's local state, tests).
    pub fn generate_key() -> Result<String, SealError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|_| SealError::Random)?;
        Ok(STANDARD.encode(key))
    }

    /// The key of customer hashes (see [`crate::webhooks::customer_hash`]).
    pub fn customer_key(&self) -> &[u8] {
        &self.customer_key
    }

    pub fn seal(&self, brand_id: i64, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let aad = brand_id.to_be_bytes();
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Open)?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    pub fn open(&self, brand_id: i64, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(SealError::Open);
        }
        let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
        let aad = brand_id.to_be_bytes();
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_binds_to_brand() {
        let key = Sealer::generate_key().unwrap_or_default();
        let sealer = Sealer::from_base64(&key);
        assert!(sealer.is_ok());
        let Ok(sealer) = sealer else { return };
        let sealed = sealer.seal(1, b"shpat_secret").unwrap_or_default();
        assert!(!sealed.windows(6).any(|w| w == b"shpat_"));
        assert_eq!(sealer.open(1, &sealed), Ok(b"shpat_secret".to_vec()));
        assert_eq!(sealer.open(2, &sealed), Err(SealError::Open));
        assert_eq!(
            Sealer::from_base64("c2hvcnQ=").err(),
            Some(SealError::BadKey)
        );
    }
}
