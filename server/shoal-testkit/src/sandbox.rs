//! Nodes as tasks of the test's own runtime: the same config file and environment a process
//! would get, loaded by the same loader, then `shoal::prepare` and `shoal::run`, so a
//! scenario that needs no signal, exit code, namespace or image runs without starting a
//! process. The admin port is chosen by the system (`http.listen` on port 0) and read back
//! from what `prepare` bound.
//!
//! The nodes share the process's log subscriber and own none of it, so a scenario that reads
//! a node's own log lines or its exported spans (recorded through the subscriber's trace
//! layer) stays with the process tier ([`crate::Node`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{
    ADMIN, ADMIN_PASSWORD, NodeSpec, get_ready, poll_data_plane, poll_ready, poll_revision,
};

/// A node running in this process, stopped in its shutdown order by [`InProcessNode::stop`]
/// and aborted if dropped.
pub struct InProcessNode {
    pub name: String,
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// The spec's directory: the data dir outlives the spec while the node runs.
    _dir: Arc<tempfile::TempDir>,
}

impl NodeSpec {
    /// The node's config as the `shoal` binary would load it from [`NodeSpec::command`]'s
    /// file and environment.
    pub fn config(&self) -> shoal_config::NodeConfig {
        self.write_config();
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).expect("read the config just written");
        let env: BTreeMap<String, String> = self.environment().into_iter().collect();
        shoal_config::load_from_str(&text, &path, &env)
            .unwrap_or_else(|e| panic!("{}: config error:\n{e}", self.name))
    }

    /// Starts this node as tasks of the calling runtime (which must be multi-threaded: the
    /// node's blocking work runs beside the test).
    pub fn start_in_process(&self) -> InProcessNode {
        let config = self.config();
        let prepared = shoal::prepare(&config)
            .unwrap_or_else(|e| panic!("{}: cannot prepare: {e:#}", self.name));
        let base = format!("http://{}", prepared.admin_addr());
        let level = shoal_telemetry::LogLevel::unattached(&config.log.level)
            .expect("the loader checked the level");
        let node = prepared.with_logs(level, shoal_cluster::GossipErrors::default());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(shoal::run(config, node, async move {
            // A dropped sender (the node dropped) also stops it.
            let _ = stopped.await;
        }));
        InProcessNode {
            name: self.name.clone(),
            base,
            stop: Some(stop),
            task: Some(task),
            _dir: self.dir.clone(),
        }
    }
}

impl InProcessNode {
    /// Base URL of the node's admin port.
    pub fn base_url(&self) -> String {
        self.base.clone()
    }

    /// GET /ready as (status, body).
    pub async fn ready(&self) -> (u16, Value) {
        get_ready(self.base.clone()).await
    }

    /// Polls /ready until the node answers 200.
    pub async fn wait_ready(&self, timeout: Duration) -> Value {
        let what = format!("{} ready", self.name);
        self.wait_ready_where(&what, timeout, |status, _| status == 200)
            .await
            .1
    }

    /// Polls /ready until `accept` takes the (status, body) pair.
    pub async fn wait_ready_where(
        &self,
        what: &str,
        timeout: Duration,
        accept: impl Fn(u16, &Value) -> bool,
    ) -> (u16, Value) {
        poll_ready(self.base.clone(), what, timeout, accept).await
    }

    /// Waits until the node's data plane serves config `revision` (or later).
    pub async fn wait_data_plane(&self, revision: i64) -> Value {
        poll_data_plane(self.base.clone(), revision).await
    }

    /// Waits until the node reports `revision` (or later) in force.
    pub async fn wait_revision(&self, revision: i64, timeout: Duration) -> Value {
        poll_revision(self.base.clone(), &self.name, revision, timeout).await
    }

    /// Stops the node as a signal would and returns what `run` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("a running node has its task");
        task.await.expect("the node's run task panicked")
    }
}

impl Drop for InProcessNode {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Migrates the database and creates the test admin, as `shoal admin create` does.
pub async fn create_admin_in_process(spec: &NodeSpec) {
    let config = spec.config();
    let pool = shoal_control_plane::pool(&config.control_plane, "shoal-testkit")
        .expect("a pool for the test database");
    shoal_control_plane::migrate(&pool)
        .await
        .expect("migrate the test database");
    let store = shoal_control_plane::Store::new(
        pool.clone(),
        config.control_plane.secrets_key().cloned(),
        "testkit".to_string(),
    );
    store
        .create_admin("cli", ADMIN, ADMIN_PASSWORD)
        .await
        .expect("create the test admin");
    pool.close().await;
}
