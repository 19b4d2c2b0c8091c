use serde::{Deserialize, Serialize};

use crate::ClusterError;

/// memberlist carries at most this many bytes of metadata per node.
pub const META_MAX_BYTES: usize = 512;

/// What every node tells the others about itself. Kept small: it rides in every alive
/// message and must fit [`META_MAX_BYTES`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeMeta {
    #[serde(rename = "n")]
    pub node_name: String,
    #[serde(rename = "v")]
    pub version: String,
    /// The node's HTTP address (health, admin API, console).
    #[serde(rename = "h")]
    pub http: String,
    /// Process start, Unix milliseconds.
    #[serde(rename = "s")]
    pub started_at_ms: u64,
    #[serde(rename = "l", default)]
    pub load: Load,
    /// The cluster the node counts in (its region), when it is in several: what the global
    /// cluster groups members by.
    #[serde(rename = "g", default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// Coarse load figures, refreshed periodically.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Process CPU use over the last refresh period, percent of one core.
    #[serde(rename = "c")]
    pub cpu_percent: f32,
    /// Resident memory, bytes.
    #[serde(rename = "m")]
    pub memory_bytes: u64,
    /// Requests being served right now.
    #[serde(rename = "r")]
    pub in_flight: u64,
    /// Rate-limit keys held in shared state.
    #[serde(rename = "k", default)]
    pub keys: u64,
    /// Whether the node has replayed the state its peers held when it joined (until then its
    /// counts are incomplete).
    #[serde(rename = "p", default)]
    pub replayed: bool,
}

impl NodeMeta {
    pub(crate) fn encode(&self) -> Result<Vec<u8>, ClusterError> {
        let bytes = serde_json::to_vec(self).expect("metadata serializes");
        if bytes.len() > META_MAX_BYTES {
            return Err(ClusterError::MetaTooLarge { size: bytes.len() });
        }
        Ok(bytes)
    }

    /// `None` for metadata that is not Shoal's (a foreign or older node): shown as unknown,
    /// never trusted further.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realistic_metadata_fits_and_round_trips() {
        let meta = NodeMeta {
            node_name: "x".repeat(128),
            version: "10.200.3000".into(),
            http: "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535".into(),
            started_at_ms: u64::MAX,
            load: Load {
                cpu_percent: 1234.5,
                memory_bytes: u64::MAX,
                in_flight: u64::MAX,
                keys: u64::MAX,
                replayed: true,
            },
            region: Some("r".repeat(64)),
        };
        let bytes = meta.encode().unwrap();
        assert!(bytes.len() <= META_MAX_BYTES);
        assert_eq!(NodeMeta::decode(&bytes), Some(meta));
        assert_eq!(NodeMeta::decode(b"\xff garbage"), None);
    }

    #[test]
    fn oversized_metadata_is_an_error_not_a_panic() {
        let meta = NodeMeta {
            node_name: "x".repeat(600),
            version: String::new(),
            http: String::new(),
            started_at_ms: 0,
            load: Load::default(),
            region: None,
        };
        assert!(matches!(
            meta.encode(),
            Err(ClusterError::MetaTooLarge { .. })
        ));
    }
}
