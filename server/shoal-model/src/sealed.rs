//! Secrets sealed at rest: an S3 secret (a user's, or a resource's upstream key) is stored
//! encrypted with the node's secrets key, because verifying or making a SigV4 signature needs
//! the secret itself. The control plane seals when a secret is written; the data plane opens
//! when a revision arrives, so both read the one format defined here.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore as _;
use shoal_config::SecretKey;

use crate::ModelError;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Seals a secret with AES-256-GCM; the key id is bound as associated data so a ciphertext
/// copied onto another credential row does not decrypt.
pub fn seal(key: &SecretKey, key_id: &str, plaintext: &[u8]) -> Vec<u8> {
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
pub fn open(key: &SecretKey, key_id: &str, sealed: &[u8]) -> Result<Vec<u8>, ModelError> {
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
            ModelError::Invalid(format!(
                "secret of credential {key_id:?} does not decrypt with the configured secrets key"
            ))
        })
}

pub(crate) fn check_sealed_shape(sealed: &[u8]) -> Result<(), ModelError> {
    if sealed.len() <= NONCE_LEN + TAG_LEN {
        return Err(ModelError::Invalid(format!(
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
}
