//! The last good config on local disk, so a node restarted while PostgreSQL is unreachable can
//! still start and enforce policies.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use shoal_model::ConfigSnapshot;

use crate::ControlPlaneError;

const FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotFile {
    format: u32,
    written_at: DateTime<Utc>,
    shoal_version: String,
    config: ConfigSnapshot,
}

/// A snapshot read back from disk.
#[derive(Debug)]
pub struct StoredSnapshot {
    pub config: ConfigSnapshot,
    pub written_at: DateTime<Utc>,
}

fn error(path: &Path, message: impl Into<String>) -> ControlPlaneError {
    ControlPlaneError::Snapshot {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Writes atomically: a temporary file in the same directory, fsync, rename, fsync of the
/// directory. A crash at any point leaves either the old snapshot or the new one, never half.
pub fn write(path: &Path, config: &ConfigSnapshot) -> Result<(), ControlPlaneError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| error(path, format!("cannot create directory: {e}")))?;
    let body = serde_json::to_vec_pretty(&SnapshotFile {
        format: FORMAT,
        written_at: Utc::now(),
        shoal_version: env!("CARGO_PKG_VERSION").to_string(),
        config: config.clone(),
    })
    .map_err(|e| error(path, format!("cannot encode: {e}")))?;
    let tmp: PathBuf = path.with_extension("json.tmp");
    let write_tmp = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&body)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write_tmp().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        error(path, format!("cannot write: {e}"))
    })
}

/// Reads and re-validates a snapshot: the file is outside the database's checks and may have
/// been edited or damaged.
pub fn read(path: &Path) -> Result<Option<StoredSnapshot>, ControlPlaneError> {
    let body = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error(path, format!("cannot read: {e}"))),
    };
    let file: SnapshotFile = serde_json::from_slice(&body)
        .map_err(|e| error(path, format!("not a valid snapshot: {e}")))?;
    if file.format != FORMAT {
        return Err(error(
            path,
            format!(
                "format {} is not supported (expected {FORMAT})",
                file.format
            ),
        ));
    }
    file.config
        .validate()
        .map_err(|e| error(path, e.to_string()))?;
    Ok(Some(StoredSnapshot {
        config: file.config,
        written_at: file.written_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::{Enforcement, Policy};

    fn sample(revision: i64) -> ConfigSnapshot {
        ConfigSnapshot {
            revision,
            resources: vec![],
            policies: vec![Policy {
                name: "p".into(),
                rego: "package p\npre_request := 1\n".into(),
                enforcement: Enforcement::Eventual,
                on_error: Default::default(),
                on_unreachable: Default::default(),
                shadow: false,
                enabled: true,
                description: String::new(),
            }],
            users: vec![],
            documents: vec![],
        }
    }

    #[test]
    fn round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config-snapshot.json");
        assert!(read(&path).unwrap().is_none());
        write(&path, &sample(3)).unwrap();
        write(&path, &sample(4)).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().config, sample(4));
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["config-snapshot.json"]);
    }

    #[test]
    fn damaged_or_invalid_snapshot_is_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config-snapshot.json");
        std::fs::write(&path, b"{\"format\": 1, \"trunc").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains("config-snapshot.json") && err.contains("not a valid"),
            "{err}"
        );

        let mut bad = sample(5);
        bad.policies[0].rego = "package p\npre_request := {".into();
        write(&path, &bad).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("policy \"p\""), "{err}");
    }
}
