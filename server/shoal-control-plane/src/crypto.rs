//! Secrets handling: tokens shown once, stored hashed; SigV4 secrets sealed at rest.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use shoal_config::SecretKey;

use crate::ControlPlaneError;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

pub(crate) fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// A random token in URL-safe characters, `bytes` of entropy.
pub(crate) fn random_token(bytes: usize) -> String {
    use base64::Engine as _;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Random characters from `[A-Za-z0-9]` (access key ids must be alphanumeric for S3 clients).
pub(crate) fn random_alnum(len: usize) -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// Seals a secret with AES-256-GCM; the key id is bound as associated data so a ciphertext
/// copied onto another credential row does not decrypt.
pub(crate) fn seal(key: &SecretKey, key_id: &str, plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.expose().into());
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: key_id.as_bytes(),
            },
        )
        .expect("AES-GCM encryption of a short secret cannot fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    out
}

/// Opens a sealed secret; fails on a wrong key, a tampered ciphertext or a moved row.
pub fn open(key: &SecretKey, key_id: &str, sealed: &[u8]) -> Result<Vec<u8>, ControlPlaneError> {
    check_sealed_shape(sealed)?;
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    Aes256Gcm::new(key.expose().into())
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: body,
                aad: key_id.as_bytes(),
            },
        )
        .map_err(|_| {
            ControlPlaneError::Invalid(format!(
                "secret of credential {key_id:?} does not decrypt with the configured secrets key"
            ))
        })
}

pub(crate) fn check_sealed_shape(sealed: &[u8]) -> Result<(), ControlPlaneError> {
    if sealed.len() <= NONCE_LEN + TAG_LEN {
        return Err(ControlPlaneError::Invalid(format!(
            "sealed secret is {} bytes; expected nonce, ciphertext and tag (more than {})",
            sealed.len(),
            NONCE_LEN + TAG_LEN
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secret_opens_only_with_same_key_and_key_id() {
        let key = SecretKey::parse(&"07".repeat(32)).unwrap();
        let other = SecretKey::parse(&"08".repeat(32)).unwrap();
        let sealed = seal(&key, "AKIDEXAMPLE", b"wJalrXUtnFEMI");
        assert_eq!(
            open(&key, "AKIDEXAMPLE", &sealed).unwrap(),
            b"wJalrXUtnFEMI"
        );
        assert!(open(&other, "AKIDEXAMPLE", &sealed).is_err());
        assert!(open(&key, "AKIDOTHER", &sealed).is_err());
        assert!(open(&key, "AKIDEXAMPLE", &sealed[..20]).is_err());
    }

    #[test]
    fn tokens_are_random_and_alphanumeric_ids_are_alphanumeric() {
        assert_ne!(random_token(32), random_token(32));
        let id = random_alnum(20);
        assert_eq!(id.len(), 20);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
