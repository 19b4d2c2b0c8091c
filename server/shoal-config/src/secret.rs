use std::fmt;

/// A value that must never reach a log line or an error message.
///
/// `Debug` and `Display` print `[redacted]`; the only way to read the value is `expose`, which
/// makes every use greppable.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A 32-byte symmetric key (cluster PSK, secrets-at-rest key).
///
/// Accepted encodings are 64 hex characters or standard base64 of 32 bytes; surrounding
/// whitespace (a trailing newline in a key file) is ignored.
pub type SecretKey = Secret<[u8; 32]>;

impl SecretKey {
    /// Parses a key, describing the problem without echoing the key material.
    pub fn parse(text: &str) -> Result<Self, String> {
        use base64::Engine as _;
        let text = text.trim();
        if text.is_empty() {
            return Err("is empty; expected 32 bytes as 64 hex characters or base64".into());
        }
        let bytes = if text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|e| format!("is not valid hex: {e}"))?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| {
                    format!(
                        "is neither 64 hex characters nor base64 ({} characters); expected 32 bytes",
                        text.len()
                    )
                })?
        };
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "decodes to {} bytes; a key must be exactly 32 bytes (AES-256)",
                bytes.len()
            )
        })?;
        Ok(Secret(key))
    }

    /// A keyring: keys separated by newlines or commas, the first one primary; blank lines and
    /// `#` comments are skipped. Errors say which entry is wrong without echoing it.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        let entries: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries.is_empty() {
            return Err("list is empty; expected at least one 32-byte key".into());
        }
        let mut keys: Vec<Self> = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let key = Self::parse(entry).map_err(|e| format!("number {} {e}", i + 1))?;
            if keys.contains(&key) {
                return Err(format!("number {} is listed twice", i + 1));
            }
            keys.push(key);
        }
        Ok(keys)
    }

    /// A short, non-secret name for a key (first 8 hex digits of its SHA-256), so status
    /// pages and logs can say which keys a node holds.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        hex::encode(&sha2::Sha256::digest(self.0)[..4])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("postgres://u:hunter2@db/shoal".to_string());
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
    }

    #[test]
    fn key_accepts_hex_and_base64_of_32_bytes() {
        let hex_key = "11".repeat(32);
        assert_eq!(SecretKey::parse(&hex_key).unwrap().expose(), &[0x11; 32]);
        let b64 = "ERERERERERERERERERERERERERERERERERERERERERE=";
        assert_eq!(
            SecretKey::parse(&format!("{b64}\n")).unwrap().expose(),
            &[0x11; 32]
        );
    }

    #[test]
    fn keyring_lists_keep_order_and_name_the_bad_entry() {
        let a = "11".repeat(32);
        let b = "22".repeat(32);
        let keys = SecretKey::parse_list(&format!("# rotation, step 2\n{b}\n\n{a}\n")).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].expose(), &[0x22; 32]);
        assert_ne!(keys[0].fingerprint(), keys[1].fingerprint());
        assert_eq!(SecretKey::parse_list(&format!("{a},{b}")).unwrap().len(), 2);
        let err = SecretKey::parse_list(&format!("{a}\nabcd")).unwrap_err();
        assert!(err.starts_with("number 2 decodes to 2 bytes"), "{err}");
        assert!(
            SecretKey::parse_list(&format!("{a}\n{a}"))
                .unwrap_err()
                .contains("twice")
        );
        assert!(SecretKey::parse_list("# only a comment\n").is_err());
    }

    #[test]
    fn key_of_wrong_length_is_rejected_with_its_length() {
        let err = SecretKey::parse(&"ab".repeat(16)).unwrap_err();
        assert!(err.contains("16 bytes"), "{err}");
        let err = SecretKey::parse("").unwrap_err();
        assert!(err.contains("empty"), "{err}");
        let err = SecretKey::parse("not a key!").unwrap_err();
        assert!(err.contains("neither"), "{err}");
    }
}
