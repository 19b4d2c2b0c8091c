//! ECS: the peers are the RUNNING tasks of the node's own service, found with the ECS API and
//! least privilege (`ecs:ListTasks`, `ecs:DescribeTasks`), each task's address being the
//! private IPv4 of its awsvpc network interface.
//!
//! API shapes relied on (Amazon ECS API Reference): `ListTasks` takes `cluster`,
//! `serviceName`, `desiredStatus` (asked for explicitly as `RUNNING`, or stopped tasks are
//! listed for an hour) and pages with `nextToken`; `DescribeTasks` takes at most 100 task ARNs
//! and returns `tasks[].lastStatus` and `tasks[].attachments[]` of type
//! `ElasticNetworkInterface` whose `details[]` carry `privateIPv4Address`. Cluster and service
//! default to the task's own, from the task metadata endpoint v4 (`$ECS_CONTAINER_METADATA_URI_V4/task`:
//! `Cluster`, `ServiceName`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_ecs::Client;
use aws_sdk_ecs::error::DisplayErrorContext;
use aws_sdk_ecs::types::DesiredStatus;
use futures_util::future::BoxFuture;
use shoal_config::EcsDiscovery;
use tokio::sync::OnceCell;

use crate::{Discover, DiscoveryError};

const METHOD: &str = "ecs";

/// The IAM actions this provider calls, and all of them: the deployment checks
/// (`scripts/deploy/check_terraform.py`, through `shoal constants`) compare the Terraform task
/// role with this list, and a test below checks it against the API calls in this file.
pub const ECS_IAM_ACTIONS: [&str; 2] = ["ecs:DescribeTasks", "ecs:ListTasks"];
/// `DescribeTasks` accepts at most this many tasks per call.
const DESCRIBE_BATCH: usize = 100;

/// Where the ECS API is asked, and about which tasks.
struct Target {
    client: Client,
    cluster: String,
    service: Option<String>,
}

pub struct Ecs {
    config: EcsDiscovery,
    port: u16,
    timeout: Duration,
    /// Built at the first round: the AWS chain and the metadata endpoint are asked once.
    target: OnceCell<Target>,
    /// Credentials given directly (tests against an emulator) instead of the AWS chain.
    credentials: Option<aws_sdk_ecs::config::Credentials>,
}

impl Ecs {
    pub fn new(config: &EcsDiscovery, port: u16, timeout: Duration) -> Self {
        Self {
            config: config.clone(),
            port,
            timeout,
            target: OnceCell::new(),
            credentials: None,
        }
    }

    /// The provider with fixed credentials instead of the AWS chain: for an ECS emulator.
    pub fn with_credentials(mut self, access_key_id: &str, secret_access_key: &str) -> Self {
        self.credentials = Some(aws_sdk_ecs::config::Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "shoal-static",
        ));
        self
    }

    async fn target(&self) -> Result<&Target, DiscoveryError> {
        self.target
            .get_or_try_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest());
                if let Some(region) = &self.config.region {
                    loader = loader.region(aws_config::Region::new(region.clone()));
                }
                if let Some(endpoint) = &self.config.endpoint {
                    loader = loader.endpoint_url(endpoint);
                }
                if let Some(credentials) = &self.credentials {
                    loader = loader.credentials_provider(credentials.clone());
                }
                let client = Client::new(&loader.load().await);
                let (cluster, service) = match (&self.config.cluster, &self.config.service) {
                    (Some(c), service) => (c.clone(), service.clone()),
                    (None, service) => {
                        let own = own_task().await?;
                        (own.0, service.clone().or(own.1))
                    }
                };
                Ok(Target {
                    client,
                    cluster,
                    service,
                })
            })
            .await
    }

    async fn round(&self) -> Result<Vec<SocketAddr>, DiscoveryError> {
        let target = self.target().await?;
        let failed = |what: &str, e: &dyn std::error::Error| DiscoveryError::Invalid {
            method: METHOD,
            message: format!("error {what}: {}", DisplayErrorContext(e)),
        };
        let mut arns = Vec::new();
        let mut next_token = None;
        loop {
            let page = target
                .client
                .list_tasks()
                .cluster(&target.cluster)
                .set_service_name(target.service.clone())
                .desired_status(DesiredStatus::Running)
                .set_next_token(next_token)
                .send()
                .await
                .map_err(|e| failed("listing tasks", &e))?;
            arns.extend(page.task_arns().iter().cloned());
            next_token = page.next_token().map(str::to_string);
            if next_token.is_none() {
                break;
            }
        }
        let mut addrs = Vec::new();
        for batch in arns.chunks(DESCRIBE_BATCH) {
            let described = target
                .client
                .describe_tasks()
                .cluster(&target.cluster)
                .set_tasks(Some(batch.to_vec()))
                .send()
                .await
                .map_err(|e| failed("describing tasks", &e))?;
            for task in described.tasks() {
                if task.last_status() != Some("RUNNING") {
                    continue;
                }
                let ip = task
                    .attachments()
                    .iter()
                    .filter(|a| a.r#type() == Some("ElasticNetworkInterface"))
                    .flat_map(|a| a.details())
                    .find(|d| d.name() == Some("privateIPv4Address"))
                    .and_then(|d| d.value())
                    .and_then(|v| v.parse::<IpAddr>().ok());
                if let Some(ip) = ip {
                    addrs.push(SocketAddr::new(ip, self.port));
                }
            }
        }
        Ok(addrs)
    }
}

impl Discover for Ecs {
    fn method(&self) -> &'static str {
        METHOD
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<SocketAddr>, DiscoveryError>> {
        Box::pin(async move {
            tokio::time::timeout(self.timeout, self.round())
                .await
                .map_err(|_| DiscoveryError::Timeout {
                    method: METHOD,
                    name: self.config.cluster.clone().unwrap_or_default(),
                    timeout_ms: self.timeout.as_millis(),
                })?
        })
    }
}

/// This task's cluster and service, from the task metadata endpoint v4.
async fn own_task() -> Result<(String, Option<String>), DiscoveryError> {
    let invalid = |message: String| DiscoveryError::Invalid {
        method: METHOD,
        message,
    };
    let base = std::env::var("ECS_CONTAINER_METADATA_URI_V4").map_err(|_| {
        invalid(
            "set discovery.ecs.cluster (ECS_CONTAINER_METADATA_URI_V4 is not set: not an ECS task?)"
                .into(),
        )
    })?;
    let url = format!("{}/task", base.trim_end_matches('/'));
    let body = http_get(&url)
        .await
        .map_err(|e| invalid(format!("cannot read the task metadata endpoint {url}: {e}")))?;
    let task: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| invalid(format!("task metadata from {url} is not JSON: {e}")))?;
    let cluster = task["Cluster"]
        .as_str()
        .ok_or_else(|| invalid(format!("task metadata from {url} has no Cluster")))?;
    Ok((
        cluster.to_string(),
        task["ServiceName"].as_str().map(str::to_string),
    ))
}

/// One plain-HTTP GET (the metadata endpoint is `http://` on a link-local address).
async fn http_get(url: &str) -> Result<Vec<u8>, String> {
    use http_body_util::BodyExt as _;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri = url.parse().map_err(|e| format!("{e}"))?;
    let response = client.get(uri).await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(body.to_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `snake_case` SDK operation to IAM action: `list_tasks` -> `ecs:ListTasks`.
    fn action(operation: &str) -> String {
        let camel: String = operation
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        format!("ecs:{camel}")
    }

    #[test]
    fn the_exported_iam_actions_are_exactly_the_api_calls_made_here() {
        let source = include_str!("ecs.rs");
        let code = &source[..source.find("#[cfg(test)]").unwrap()];
        let mut called: Vec<String> = code
            .split(".client")
            .skip(1)
            .filter_map(|rest| {
                let rest = rest.trim_start().strip_prefix('.')?;
                let end = rest.find("()")?;
                Some(action(&rest[..end]))
            })
            .collect();
        called.sort();
        called.dedup();
        assert_eq!(called, ECS_IAM_ACTIONS.to_vec());
    }
}
