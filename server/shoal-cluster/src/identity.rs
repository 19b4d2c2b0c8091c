use std::io::Write as _;
use std::path::Path;

use crate::ClusterError;

/// Who this node is in the cluster. With a node-key file the id survives restarts and address
/// changes (a rescheduled pod or task rejoins as the same node); without one it is random.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    id: String,
    persisted: bool,
}

impl NodeIdentity {
    pub fn random() -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            persisted: false,
        }
    }

    /// Reads the id from `path`, creating the file (mode 0600, written atomically) on first
    /// start. A file that exists but holds no valid id is an error, never silently replaced:
    /// replacing it would make the node a stranger to its cluster.
    pub fn load_or_create(path: &Path) -> Result<Self, ClusterError> {
        let err = |message: String| ClusterError::NodeKey {
            path: path.display().to_string(),
            message,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let id = text.trim();
                let valid = (8..=64).contains(&id.len())
                    && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                if !valid {
                    return Err(err(format!(
                        "holds {:?}, not a node id (8-64 letters, digits or '-'); \
                         delete it to get a new identity",
                        id.chars().take(80).collect::<String>()
                    )));
                }
                Ok(Self {
                    id: id.to_string(),
                    persisted: true,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = Self {
                    persisted: true,
                    ..Self::random()
                };
                write_new(path, &identity.id).map_err(|e| err(format!("cannot create: {e}")))?;
                Ok(identity)
            }
            Err(e) => Err(err(format!("cannot read: {e}"))),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the id comes from a node-key file (and so survives restarts).
    pub fn persisted(&self) -> bool {
        self.persisted
    }
}

fn write_new(path: &Path, id: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    writeln!(file, "{id}")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_key_file_keeps_the_id_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/node.key");
        let first = NodeIdentity::load_or_create(&path).unwrap();
        let again = NodeIdentity::load_or_create(&path).unwrap();
        assert_eq!(first, again);
        assert!(first.persisted());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_ne!(NodeIdentity::random().id(), first.id());
    }

    #[test]
    fn a_damaged_node_key_file_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        std::fs::write(&path, "not an id!").unwrap();
        let err = NodeIdentity::load_or_create(&path).unwrap_err().to_string();
        assert!(
            err.contains("not a node id") && err.contains("node.key"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not an id!");
    }
}
