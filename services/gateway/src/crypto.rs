//! Sealing store credentials and webhook secrets at rest: ChaCha20-Poly1305 with a key from
//! config, a random nonce per value, and the brand id as associated data so a sealed value copied
//! to another brand's row does not open.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const VERSION: u8 = 1;

/// The label of the key that hashes customers' emails in orders (webhooks and adapters alike).
pub const CUSTOMER_KEY_LABEL: &str = "tracking/customer-hash/v1";
const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    /// The key itself, only to derive the suite's other keys from it (never used directly).
    key: [u8; 32],
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
        let key: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKey)?;
        Ok(Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
            key,
        })
    }

    /// A new random key, base64-encoded (trackd's local state, tests).
    pub fn generate_key() -> Result<String, SealError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|_| SealError::Random)?;
        Ok(STANDARD.encode(key))
    }

    /// A key for another purpose, derived from this one (HMAC-SHA256 of `label`): stable for as
    /// long as the credentials key is, and unrelated to it for whoever holds only the derived
    /// key. The gateway keys its customer hashes with `derive_key(CUSTOMER_KEY_LABEL)`.
    pub fn derive_key(&self, label: &str) -> Vec<u8> {
        use hmac::{Hmac, Mac};
        let Ok(mut mac) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key) else {
            unreachable!("HMAC takes keys of any length")
        };
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().to_vec()
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
        let derived = sealer.derive_key(CUSTOMER_KEY_LABEL);
        assert_eq!(derived.len(), 32);
        assert_eq!(derived, sealer.derive_key(CUSTOMER_KEY_LABEL));
        assert_ne!(derived, sealer.derive_key("another purpose"));
        assert_eq!(
            Sealer::from_base64("c2hvcnQ=").err(),
            Some(SealError::BadKey)
        );
    }
}
