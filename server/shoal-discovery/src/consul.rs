//! Consul: every node registers with its agent as an instance of the service, with a TTL
//! health check it passes every round, and lists the service's passing instances. A node that
//! vanishes turns critical after `ttl` (and is removed by the agent later); one that leaves
//! deregisters at once.
//!
//! API shapes relied on (Consul HTTP API reference): `PUT /v1/agent/service/register` with
//! `{"ID", "Name", "Address", "Port", "Check": {"CheckID", "TTL",
//! "DeregisterCriticalServiceAfter"}}`; `PUT /v1/agent/check/pass/{check_id}` (404 when the
//! agent forgot the check, e.g. after a restart); `GET /v1/health/service/{name}?passing=true` →
//! `[{"Node": {"Address"}, "Service": {"ID", "Address", "Port"}}]`, where an empty service
//! address means the node's; `PUT /v1/agent/service/deregister/{id}`. An ACL token travels in
//! `X-Consul-Token`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use shoal_config::ConsulDiscovery;

use crate::{Announce, Discover, DiscoveryError};

const METHOD: &str = "consul";
const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// How long a critical (vanished) instance stays registered before the agent removes it.
const DEREGISTER_AFTER: &str = "10m";

pub struct Consul {
    address: String,
    service: String,
    ttl: Duration,
    token: Option<String>,
    me: Announce,
    http: reqwest::Client,
    registered: tokio::sync::Mutex<bool>,
}

fn invalid(message: String) -> DiscoveryError {
    DiscoveryError::Invalid {
        method: METHOD,
        message,
    }
}

impl Consul {
    /// The token comes from `CONSUL_HTTP_TOKEN`, else `token_file`; an unreadable file is an
    /// error at start, not at the first round.
    /// `interval`: how often the check is passed; the default TTL outlives three passes.
    pub fn new(
        config: &ConsulDiscovery,
        me: Announce,
        timeout: Duration,
        interval: Duration,
    ) -> Result<Self, DiscoveryError> {
        let token = match std::env::var("CONSUL_HTTP_TOKEN") {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
            _ => match &config.token_file {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| {
                            invalid(format!("cannot read token_file {}: {e}", path.display()))
                        })?
                        .trim()
                        .to_string(),
                ),
                None => None,
            },
        };
        Ok(Self {
            address: config
                .address
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:8500".into())
                .trim_end_matches('/')
                .to_string(),
            service: config.service.clone().unwrap_or_else(|| "shoal".into()),
            ttl: config.ttl.unwrap_or(DEFAULT_TTL.max(interval * 3)),
            token,
            me,
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("an HTTP client without TLS always builds"),
            registered: tokio::sync::Mutex::new(false),
        })
    }

    fn check_id(&self) -> String {
        format!("service:{}", self.me.id)
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, String), DiscoveryError> {
        let mut req = self.http.request(method, format!("{}{path}", self.address));
        if let Some(token) = &self.token {
            req = req.header("X-Consul-Token", token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| invalid(format!("agent {} did not answer: {e}", self.address)))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if status == 403 {
            return Err(invalid(format!(
                "{path}: permission denied ({}); the ACL token needs service:write on {:?} \
                 and service:read and node:read to list it",
                text.trim(),
                self.service
            )));
        }
        Ok((status, text))
    }

    async fn register(&self) -> Result<(), DiscoveryError> {
        let mut registered = self.registered.lock().await;
        if *registered {
            let (status, text) = self
                .request(
                    reqwest::Method::PUT,
                    &format!("/v1/agent/check/pass/{}", self.check_id()),
                    None,
                )
                .await?;
            if status == 200 {
                return Ok(());
            }
            // 404 from current agents, 500 ("does not have associated TTL") from older ones:
            // either way the agent no longer has this node; register again.
            tracing::info!(
                method = METHOD,
                "consul agent does not know this node's check (HTTP {status}: {}); registering \
                 again",
                text.trim()
            );
        }
        let body = json!({
            "ID": self.me.id,
            "Name": self.service,
            "Address": self.me.addr.ip().to_string(),
            "Port": self.me.addr.port(),
            "Meta": { "cluster": self.me.cluster },
            "Check": {
                "CheckID": self.check_id(),
                "Name": "shoal gossip",
                "TTL": format!("{}s", self.ttl.as_secs().max(1)),
                "DeregisterCriticalServiceAfter": DEREGISTER_AFTER,
                "Status": "passing",
            },
        });
        let (status, text) = self
            .request(
                reqwest::Method::PUT,
                "/v1/agent/service/register",
                Some(body),
            )
            .await?;
        if status != 200 {
            return Err(invalid(format!(
                "registering service {:?}: HTTP {status}: {}",
                self.service,
                text.trim()
            )));
        }
        *registered = true;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<SocketAddr>, DiscoveryError> {
        let (status, text) = self
            .request(
                reqwest::Method::GET,
                &format!(
                    "/v1/health/service/{}?passing=true&filter={}",
                    self.service,
                    form_urlencoded_value(&format!(
                        "Service.Meta.cluster == \"{}\"",
                        self.me.cluster
                    ))
                ),
                None,
            )
            .await?;
        if status != 200 {
            return Err(invalid(format!(
                "listing service {:?}: HTTP {status}: {}",
                self.service,
                text.trim()
            )));
        }
        let entries: Vec<Value> = serde_json::from_str(&text)
            .map_err(|e| invalid(format!("listing service {:?}: not JSON: {e}", self.service)))?;
        let mut out = Vec::new();
        for entry in &entries {
            let service = &entry["Service"];
            let address = service["Address"]
                .as_str()
                .filter(|a| !a.is_empty())
                .or_else(|| entry["Node"]["Address"].as_str());
            let ip = address.and_then(|a| a.parse::<IpAddr>().ok());
            let port = service["Port"].as_u64().and_then(|p| u16::try_from(p).ok());
            match (ip, port) {
                (Some(ip), Some(port)) if port > 0 => out.push(SocketAddr::new(ip, port)),
                _ => tracing::warn!(
                    method = METHOD,
                    instance = %service["ID"],
                    "consul discovery: ignoring an instance without an IP address and port"
                ),
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// A query-string value, percent-encoded.
fn form_urlencoded_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Discover for Consul {
    fn method(&self) -> &'static str {
        METHOD
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<SocketAddr>, DiscoveryError>> {
        Box::pin(async move {
            self.register().await?;
            self.list().await
        })
    }

    fn leave(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut registered = self.registered.lock().await;
            if !*registered {
                return;
            }
            let path = format!("/v1/agent/service/deregister/{}", self.me.id);
            match self.request(reqwest::Method::PUT, &path, None).await {
                Ok((200, _)) => *registered = false,
                Ok((status, text)) => tracing::warn!(
                    method = METHOD,
                    "could not deregister from consul: HTTP {status}: {}",
                    text.trim()
                ),
                Err(e) => tracing::warn!(method = METHOD, "could not deregister from consul: {e}"),
            }
        })
    }
}
