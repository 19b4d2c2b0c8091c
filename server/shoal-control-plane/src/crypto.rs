//! Secrets handling: tokens shown once, stored hashed. S3 secrets are sealed with
//! `shoal_model::seal_secret`, next to the opening the data plane uses.

use rand::RngCore as _;
use sha2::{Digest, Sha256};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_alphanumeric_ids_are_alphanumeric() {
        assert_ne!(random_token(32), random_token(32));
        let id = random_alnum(20);
        assert_eq!(id.len(), 20);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
