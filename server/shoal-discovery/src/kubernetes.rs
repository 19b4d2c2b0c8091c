//! Kubernetes: the peers are the pods matching a label selector in a namespace, followed with a
//! watch (a reflector: one list, then change events) rather than polled, with least privilege
//! (`get`, `list`, `watch` on `pods` in that namespace).
//!
//! API shapes relied on (Kubernetes API reference, core/v1 Pod and the API concepts page):
//! `GET /api/v1/namespaces/{ns}/pods?labelSelector=...` returns a `PodList` with
//! `metadata.resourceVersion`; `watch=true&resourceVersion=N` streams `{"type", "object"}` events
//! (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`); a pod's address is `status.podIP`, its
//! lifecycle `status.phase`, and `metadata.deletionTimestamp` marks one shutting down. Missing
//! RBAC is `403` with a `Status` whose `reason` is `Forbidden`.
//!
//! Which pods count: phase `Running`, an IP, not being deleted. Readiness is deliberately not
//! required: a Shoal pod reports ready only after it joined its peers, so waiting for Ready
//! would keep starting pods from ever finding each other (the Helm chart's headless Service
//! publishes not-ready addresses for the same reason).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use shoal_config::KubernetesDiscovery;
use tokio::sync::OnceCell;

use crate::{Discover, DiscoveryError};

const METHOD: &str = "kubernetes";

/// The RBAC the provider needs, and all of it: the deployment checks compare the Helm chart's
/// Role with this list.
pub const KUBERNETES_POD_VERBS: [&str; 3] = ["get", "list", "watch"];

/// Where the service account's namespace is mounted in every pod.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The watch's last error, cleared by the next good event.
type LastError = Arc<Mutex<Option<String>>>;

struct Watch {
    store: Store<Pod>,
    error: LastError,
    /// Turns true when a full list first arrived (the store then holds the last good view).
    listed: tokio::sync::watch::Receiver<bool>,
    namespace: String,
    /// The task following the API's watch stream, which never ends by itself: it goes with
    /// the discoverer (the discovery task owns it and drops it at shutdown).
    follower: tokio::task::AbortHandle,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

pub struct Kubernetes {
    config: KubernetesDiscovery,
    port: u16,
    timeout: Duration,
    /// Started at the first round, then kept running for the node's life.
    watch: OnceCell<Watch>,
}

impl Kubernetes {
    pub fn new(config: &KubernetesDiscovery, port: u16, timeout: Duration) -> Self {
        Self {
            config: config.clone(),
            port,
            timeout,
            watch: OnceCell::new(),
        }
    }

    async fn watch(&self) -> Result<&Watch, DiscoveryError> {
        self.watch
            .get_or_try_init(|| async {
                let mut config = match &self.config.kubeconfig {
                    Some(path) => {
                        let file = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                            invalid(format!("cannot read kubeconfig {}: {e}", path.display()))
                        })?;
                        kube::Config::from_custom_kubeconfig(file, &Default::default())
                            .await
                            .map_err(|e| invalid(format!("kubeconfig {}: {e}", path.display())))?
                    }
                    None => kube::Config::infer().await.map_err(|e| {
                        invalid(format!(
                            "no Kubernetes API configuration (in-cluster service account or \
                             KUBECONFIG): {e}"
                        ))
                    })?,
                };
                config.read_timeout = Some(WATCH_READ_TIMEOUT);
                let namespace = match &self.config.namespace {
                    Some(ns) => ns.clone(),
                    None => std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
                        .map(|s| s.trim().to_string())
                        .unwrap_or_else(|_| config.default_namespace.clone()),
                };
                let client = Client::try_from(config)
                    .map_err(|e| invalid(format!("cannot build the API client: {e}")))?;
                let api: Api<Pod> = Api::namespaced(client, &namespace);
                let selector = self.config.label_selector.clone().unwrap_or_default();
                let (store, writer) = reflector::store();
                let error = LastError::default();
                let (listed_tx, listed) = tokio::sync::watch::channel(false);
                let stream = reflector::reflector(
                    writer,
                    watcher(api, watcher::Config::default().labels(&selector)).default_backoff(),
                );
                #[expect(
                    clippy::disallowed_methods,
                    reason = "a child of the discovery task: aborted when its Watch is dropped"
                )]
                let follower =
                    tokio::spawn(follow(stream, error.clone(), listed_tx, namespace.clone()));
                Ok(Watch {
                    store,
                    error,
                    listed,
                    namespace,
                    follower: follower.abort_handle(),
                })
            })
            .await
    }

    fn addresses(&self, pods: &[Arc<Pod>]) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = pods
            .iter()
            .filter_map(|pod| peer_address(pod, self.port))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Bound on a silent watch connection: longer than the apiserver's bookmark interval, so a
/// dead connection is noticed and the watch restarted.
const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(300);

fn invalid(message: String) -> DiscoveryError {
    DiscoveryError::Invalid {
        method: METHOD,
        message,
    }
}

/// What an operator reads when the watch fails: the cause and, for RBAC, the missing grant.
fn explain(error: &watcher::Error, namespace: &str) -> String {
    let api_status = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.as_ref()),
        watcher::Error::WatchError(s) => Some(s.as_ref()),
        _ => None,
    };
    match api_status {
        Some(s) if s.code == 403 => format!(
            "error listing pods in namespace {namespace}: forbidden ({}); the service account \
             needs get, list and watch on pods in namespace {namespace} (a Role and \
             RoleBinding: the Helm chart's rbac.create makes them)",
            s.message
        ),
        Some(s) if s.code == 401 => format!(
            "error listing pods in namespace {namespace}: unauthorized ({}); check the service \
             account token or the kubeconfig credentials",
            s.message
        ),
        Some(s) => format!(
            "error listing pods in namespace {namespace}: {} {} ({})",
            s.code, s.reason, s.message
        ),
        None => format!("error listing pods in namespace {namespace}: {error}"),
    }
}

/// Drives the watch for the node's life, recording its health; logs each new error once and
/// the recovery after one.
async fn follow<S>(
    stream: S,
    error: LastError,
    listed: tokio::sync::watch::Sender<bool>,
    namespace: String,
) where
    S: futures_util::Stream<Item = Result<watcher::Event<Pod>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let mut last = error.lock().expect("watch error");
        match event {
            Ok(event) => {
                if matches!(event, watcher::Event::InitDone) {
                    listed.send_replace(true);
                }
                if let Some(previous) = last.take() {
                    tracing::info!(
                        method = METHOD,
                        "kubernetes discovery recovered after: {previous}"
                    );
                }
            }
            Err(e) => {
                let message = explain(&e, &namespace);
                if last.as_deref() != Some(message.as_str()) {
                    tracing::warn!(method = METHOD, "{message}");
                }
                *last = Some(message);
            }
        }
    }
}

/// The gossip address of a pod that counts as a peer: its container port named `gossip`
/// when it declares one, else the configured port.
fn peer_address(pod: &Pod, default_port: u16) -> Option<SocketAddr> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let ip: IpAddr = status.pod_ip.as_deref()?.parse().ok()?;
    let port = pod
        .spec
        .as_ref()
        .into_iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("gossip"))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(default_port);
    Some(SocketAddr::new(ip, port))
}

impl Discover for Kubernetes {
    fn method(&self) -> &'static str {
        METHOD
    }

    /// The pods as the watch last saw them. Until the first list arrives this waits (up to
    /// the discovery timeout); after that a failing watch keeps the last good view (logged by
    /// the watch), so a broken API connection never empties the peer list.
    fn discover(&self) -> BoxFuture<'_, Result<Vec<SocketAddr>, DiscoveryError>> {
        Box::pin(async move {
            let watch = self.watch().await?;
            let mut first_list = watch.listed.clone();
            let listed = tokio::time::timeout(self.timeout, first_list.wait_for(|l| *l))
                .await
                .is_ok_and(|r| r.is_ok());
            if !listed {
                let error = watch.error.lock().expect("watch error").clone();
                return Err(match error {
                    Some(e) => invalid(e),
                    None => DiscoveryError::Timeout {
                        method: METHOD,
                        name: format!("pods in namespace {}", watch.namespace),
                        timeout_ms: self.timeout.as_millis(),
                    },
                });
            }
            Ok(self.addresses(&watch.store.state()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn only_running_pods_with_an_ip_that_are_not_being_deleted_count() {
        let base = |phase: &str, ip: Option<&str>| {
            let mut status = serde_json::json!({ "phase": phase });
            if let Some(ip) = ip {
                status["podIP"] = ip.into();
            }
            pod(serde_json::json!({ "metadata": { "name": "p" }, "status": status }))
        };
        assert_eq!(
            peer_address(&base("Running", Some("10.0.0.7")), 7946),
            Some("10.0.0.7:7946".parse().unwrap())
        );
        assert_eq!(peer_address(&base("Pending", Some("10.0.0.7")), 7946), None);
        assert_eq!(
            peer_address(&base("Succeeded", Some("10.0.0.7")), 7946),
            None
        );
        assert_eq!(peer_address(&base("Running", None), 7946), None);
        assert_eq!(peer_address(&base("Running", Some("garbage")), 7946), None);
        let mut leaving = base("Running", Some("10.0.0.7"));
        leaving.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_eq!(peer_address(&leaving, 7946), None);
    }

    #[test]
    fn a_container_port_named_gossip_wins_over_the_configured_port() {
        let p = pod(serde_json::json!({
            "metadata": { "name": "p" },
            "spec": { "containers": [{ "name": "shoal", "ports": [
                { "name": "http", "containerPort": 8080 },
                { "name": "gossip", "containerPort": 7950 }
            ]}]},
            "status": { "phase": "Running", "podIP": "fd00::7" }
        }));
        assert_eq!(
            peer_address(&p, 7946),
            Some("[fd00::7]:7950".parse().unwrap())
        );
    }
}
