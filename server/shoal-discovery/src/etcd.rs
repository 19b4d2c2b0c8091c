//! etcd: every node registers its gossip address under a key prefix with a lease it renews
//! every round, and lists the prefix. A node that vanishes without leaving drops out when its
//! lease expires (`ttl`); one that leaves revokes its lease at once.
//!
//! API shapes relied on (etcd v3 API reference, JSON gateway, served by etcd 3.4 and later
//! under `/v3/`): `POST /v3/lease/grant {"TTL"}` → `{"ID"}`; `POST /v3/lease/keepalive {"ID"}` →
//! `{"result": {"TTL"}}` (no TTL once the lease expired); `POST /v3/kv/put {"key", "value",
//! "lease"}`; `POST /v3/kv/range {"key", "range_end"}` → `{"kvs": [{"key", "value"}]}`;
//! `POST /v3/lease/revoke {"ID"}`. Keys and values are base64; int64 fields are JSON strings.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use shoal_config::EtcdDiscovery;
use tokio::sync::Mutex;

use crate::{Announce, Discover, DiscoveryError};

const METHOD: &str = "etcd";
const DEFAULT_TTL: Duration = Duration::from_secs(30);

pub struct Etcd {
    endpoints: Vec<String>,
    prefix: String,
    ttl: Duration,
    me: Announce,
    http: reqwest::Client,
    /// The lease of this node's registration, once granted.
    lease: Mutex<Option<String>>,
}

fn invalid(message: String) -> DiscoveryError {
    DiscoveryError::Invalid {
        method: METHOD,
        message,
    }
}

/// The key just past every key that starts with `prefix` (etcd's range end for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Etcd {
    /// `interval`: the renewal period; the default TTL outlives three renewals.
    pub fn new(
        config: &EtcdDiscovery,
        me: Announce,
        timeout: Duration,
        interval: Duration,
    ) -> Self {
        Self {
            endpoints: config
                .endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            prefix: config
                .prefix
                .clone()
                .unwrap_or_else(|| format!("/shoal/{}/nodes/", me.cluster)),
            ttl: config.ttl.unwrap_or(DEFAULT_TTL.max(interval * 3)),
            me,
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("an HTTP client without TLS always builds"),
            lease: Mutex::new(None),
        }
    }

    /// One call, tried on each endpoint in turn until one answers.
    async fn call(&self, path: &str, body: Value) -> Result<Value, DiscoveryError> {
        let mut last = String::from("no endpoint configured");
        for endpoint in &self.endpoints {
            let url = format!("{endpoint}{path}");
            match self.http.post(&url).json(&body).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    let shown: String = text.chars().take(300).collect();
                    if status.is_client_error() {
                        // The request itself is wrong: another member would refuse it too.
                        return Err(invalid(format!(
                            "{path} at {endpoint}: HTTP {status}: {shown}"
                        )));
                    }
                    if !status.is_success() {
                        // A member without a leader, a proxy in between: try the next one.
                        last = format!("{endpoint}: HTTP {status}: {shown}");
                        continue;
                    }
                    match serde_json::from_str(&text) {
                        Ok(v) => return Ok(v),
                        Err(e) => last = format!("{endpoint}: {path}: not a JSON answer: {e}"),
                    }
                }
                Err(e) => last = format!("{endpoint}: {e}"),
            }
        }
        Err(invalid(format!("no etcd endpoint answered ({last})")))
    }

    /// Keeps this node's registration alive: renews the lease, or (first round, or after it
    /// expired) grants a new one and writes the key under it.
    async fn register(&self) -> Result<(), DiscoveryError> {
        let mut lease = self.lease.lock().await;
        if let Some(id) = lease.as_ref() {
            let answer = self
                .call("/v3/lease/keepalive", json!({ "ID": id }))
                .await?;
            let alive = answer["result"]["TTL"]
                .as_str()
                .and_then(|t| t.parse::<i64>().ok())
                .is_some_and(|t| t > 0);
            if alive {
                return Ok(());
            }
            tracing::info!(method = METHOD, "etcd lease expired; registering again");
        }
        let granted = self
            .call(
                "/v3/lease/grant",
                json!({ "TTL": self.ttl.as_secs().max(1) }),
            )
            .await?;
        let id = granted["ID"]
            .as_str()
            .ok_or_else(|| invalid(format!("lease grant answered without an ID: {granted}")))?
            .to_string();
        let key = format!("{}{}", self.prefix, self.me.id);
        self.call(
            "/v3/kv/put",
            json!({
                "key": B64.encode(key.as_bytes()),
                "value": B64.encode(self.me.addr.to_string().as_bytes()),
                "lease": id,
            }),
        )
        .await?;
        *lease = Some(id);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<SocketAddr>, DiscoveryError> {
        let answer = self
            .call(
                "/v3/kv/range",
                json!({
                    "key": B64.encode(self.prefix.as_bytes()),
                    "range_end": B64.encode(prefix_end(self.prefix.as_bytes())),
                }),
            )
            .await?;
        let mut out = Vec::new();
        for kv in answer["kvs"].as_array().into_iter().flatten() {
            let key = kv["key"]
                .as_str()
                .and_then(|k| B64.decode(k).ok())
                .map(|k| String::from_utf8_lossy(&k).into_owned())
                .unwrap_or_default();
            let value = kv["value"]
                .as_str()
                .and_then(|v| B64.decode(v).ok())
                .and_then(|v| String::from_utf8(v).ok());
            match value.as_deref().map(str::parse::<SocketAddr>) {
                Some(Ok(addr)) => out.push(addr),
                _ => tracing::warn!(
                    method = METHOD,
                    key,
                    "etcd discovery: ignoring a registration that is not host:port"
                ),
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl Discover for Etcd {
    fn method(&self) -> &'static str {
        METHOD
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<SocketAddr>, DiscoveryError>> {
        Box::pin(async move {
            self.register().await?;
            self.list().await
        })
    }

    /// Revokes the lease so peers stop listing this node at once.
    fn leave(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(id) = self.lease.lock().await.take()
                && let Err(e) = self.call("/v3/lease/revoke", json!({ "ID": id })).await
            {
                tracing::warn!(
                    method = METHOD,
                    "could not remove the etcd registration: {e}"
                );
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/shoal/"), b"/shoal0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
