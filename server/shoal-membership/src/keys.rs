//! Key rotation without restarts: the key file, read again on an interval.

use std::time::Duration;

use shoal_cluster::Cluster;
use shoal_config::SecretKey;
use tokio_util::sync::CancellationToken;

use crate::join::sleep_or_stop;

/// Re-reads the key file so keys rotate without restarts. A file that does not parse keeps
/// the current keys in force and is reported once per distinct problem.
pub(crate) async fn reload_keys(
    cluster: Cluster,
    path: std::path::PathBuf,
    interval: Duration,
    mut current: Vec<SecretKey>,
    stop: CancellationToken,
) {
    let mut last_error: Option<String> = None;
    loop {
        if sleep_or_stop(&stop, interval).await {
            return;
        }
        let read = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|text| SecretKey::parse_list(&text).map_err(|e| format!("key {e}")));
        match read {
            Ok(keys) if keys != current => match cluster.set_keys(&keys) {
                Ok(_) => {
                    current = keys;
                    last_error = None;
                }
                Err(e) => tracing::error!(path = %path.display(), "cannot apply the new keys: {e}"),
            },
            Ok(_) => last_error = None,
            Err(e) => {
                if last_error.as_ref() != Some(&e) {
                    tracing::error!(
                        path = %path.display(),
                        "cluster.psk_file {e}; keeping the keys in force"
                    );
                }
                last_error = Some(e);
            }
        }
    }
}
