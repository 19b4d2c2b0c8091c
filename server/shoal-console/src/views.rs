//! What the console shows, assembled once and used twice: rendered by the HTML pages and
//! returned as JSON by their `/api/v1` twins, so a test or a script sees exactly what an
//! operator sees.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use shoal_cluster::{Member, MemberState, MembershipEvent, MembershipEventKind};

use crate::api::ApiState;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn state_name(s: MemberState) -> &'static str {
    match s {
        MemberState::Alive => "alive",
        MemberState::Suspect => "suspect",
        MemberState::Dead => "dead",
        MemberState::Left => "left",
    }
}

/// "3.2 s", "4 min", "2 h 5 min": durations as an operator reads them in a table.
pub(crate) fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {} s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

pub(crate) fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A UTC timestamp from Unix milliseconds, to the second.
pub(crate) fn utc_ms(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64).map_or_else(String::new, |t| {
        t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    })
}

/// One row of the instances page.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MemberView {
    pub id: String,
    pub name: String,
    /// Gossip address.
    pub address: String,
    /// HTTP address (health, API, console), as the member advertises it.
    pub http: String,
    pub version: String,
    pub state: &'static str,
    pub local: bool,
    pub incarnation: u32,
    pub state_age_ms: u64,
    pub last_heartbeat_ms: Option<u64>,
    pub rtt_ms: Option<f64>,
    pub uptime_ms: Option<u64>,
    pub cpu_percent: Option<f32>,
    pub memory_bytes: Option<u64>,
    pub in_flight: Option<u64>,
    pub keys: Option<u64>,
    pub replayed: Option<bool>,
    /// The region the member counts in, when it is in several clusters.
    pub region: Option<String>,
}

impl MemberView {
    fn new(m: &Member, now: u64) -> Self {
        let meta = m.meta.as_ref();
        Self {
            id: m.id.clone(),
            name: meta.map_or_else(|| m.id.clone(), |x| x.node_name.clone()),
            address: m.address.to_string(),
            http: meta.map_or_else(String::new, |x| x.http.clone()),
            version: meta.map_or_else(|| "unknown".into(), |x| x.version.clone()),
            state: state_name(m.state),
            local: m.local,
            incarnation: m.incarnation,
            state_age_ms: m.state_age_ms,
            last_heartbeat_ms: m.last_heartbeat_ms,
            rtt_ms: m.rtt_ms,
            uptime_ms: meta.map(|x| now.saturating_sub(x.started_at_ms)),
            cpu_percent: meta.map(|x| x.load.cpu_percent),
            memory_bytes: meta.map(|x| x.load.memory_bytes),
            in_flight: meta.map(|x| x.load.in_flight),
            keys: meta.map(|x| x.load.keys),
            replayed: meta.map(|x| x.load.replayed),
            region: meta.and_then(|x| x.region.clone()),
        }
    }

    pub fn heartbeat(&self) -> String {
        match (self.local, self.last_heartbeat_ms) {
            (true, _) => "this node".into(),
            (false, Some(ms)) => format!("{} ago", human_ms(ms)),
            (false, None) => "not probed yet".into(),
        }
    }

    pub fn rtt(&self) -> String {
        self.rtt_ms
            .map_or_else(|| "-".into(), |r| format!("{r:.2} ms"))
    }

    pub fn uptime(&self) -> String {
        self.uptime_ms.map_or_else(|| "-".into(), human_ms)
    }

    pub fn state_for(&self) -> String {
        human_ms(self.state_age_ms)
    }

    pub fn load(&self) -> String {
        match (self.cpu_percent, self.memory_bytes, self.in_flight) {
            (Some(c), Some(m), Some(r)) => {
                format!("{c:.0}% cpu · {} · {r} in flight", human_bytes(m))
            }
            _ => "-".into(),
        }
    }

    pub fn keys_held(&self) -> String {
        self.keys.map_or_else(|| "-".into(), |k| k.to_string())
    }

    pub fn replay(&self) -> &'static str {
        match self.replayed {
            Some(true) => "replayed",
            Some(false) => "replaying",
            None => "-",
        }
    }
}

/// The instances page and `GET /api/v1/cluster/members`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct InstancesView {
    /// The node that answered (members are as this node sees them).
    pub serving_node: String,
    pub cluster: String,
    /// Every cluster the node is in, for choosing another.
    pub clusters: Vec<String>,
    pub health: String,
    pub members: Vec<MemberView>,
    pub by_state: BTreeMap<&'static str, usize>,
    pub versions: BTreeMap<String, usize>,
}

/// The members of the node's cluster named `cluster` (the counters' when `None`); `None` when
/// the node is in no cluster of that name.
pub(crate) fn instances_of(s: &ApiState, cluster: Option<&str>) -> Option<InstancesView> {
    let c = match cluster {
        None => s.clusters.first()?,
        Some(name) => s.clusters.iter().find(|c| c.name == name)?,
    };
    let status = c.cluster.status();
    let now = now_ms();
    let mut members: Vec<MemberView> = status
        .members
        .iter()
        .map(|m| MemberView::new(m, now))
        .collect();
    // This node's own figures are read live rather than from its last published metadata.
    let replay = c.state.replay();
    let keys = c.state.status().keys as u64;
    for m in members.iter_mut().filter(|m| m.local) {
        m.keys = Some(keys);
        m.replayed = Some(replay.done);
    }
    members.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let mut by_state = BTreeMap::new();
    let mut versions = BTreeMap::new();
    for m in &members {
        *by_state.entry(m.state).or_insert(0) += 1;
        if m.state == "alive" || m.state == "suspect" {
            *versions.entry(m.version.clone()).or_insert(0) += 1;
        }
    }
    Some(InstancesView {
        serving_node: s.node.clone(),
        cluster: status.cluster.clone(),
        clusters: s.clusters.iter().map(|c| c.name.clone()).collect(),
        health: health_text(status.health),
        members,
        by_state,
        versions,
    })
}

/// The counters' cluster's members.
pub(crate) fn instances(s: &ApiState) -> InstancesView {
    instances_of(s, None).expect("a node is in at least one cluster")
}

fn health_text(health: shoal_cluster::ClusterHealth) -> String {
    match health {
        shoal_cluster::ClusterHealth::Healthy => "HEALTHY".into(),
        shoal_cluster::ClusterHealth::NotHealthy => "NOT HEALTHY".into(),
    }
}

/// One cluster of the node on the overview.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClusterSummary {
    pub name: String,
    /// The `[services]` keys on it.
    pub services: String,
    pub health: String,
    pub alive: usize,
    pub members: usize,
    /// The fingerprint of the key the node sends with.
    pub key: String,
}

/// One region as the global cluster shows it: its members there.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RegionSummary {
    pub name: String,
    pub alive: usize,
    pub members: usize,
}

/// Each cluster's health, and each region's members in the cluster events travel on (the
/// global one), for the overview of a node in several clusters.
fn clusters_and_regions(s: &ApiState) -> (Vec<ClusterSummary>, Vec<RegionSummary>) {
    let clusters = s
        .clusters
        .iter()
        .map(|c| {
            let status = c.cluster.status();
            ClusterSummary {
                name: c.name.clone(),
                services: c.services.join(", "),
                health: health_text(status.health),
                alive: status
                    .members
                    .iter()
                    .filter(|m| m.state == MemberState::Alive)
                    .count(),
                members: status.members.len(),
                key: status.keyring.primary,
            }
        })
        .collect();
    let mut regions: BTreeMap<String, RegionSummary> = BTreeMap::new();
    let global = s
        .clusters
        .iter()
        .find(|c| c.services.contains(&"global_counters"))
        .filter(|_| s.clusters.len() > 1);
    if let Some(global) = global {
        for m in global.cluster.members() {
            let Some(region) = m.meta.as_ref().and_then(|x| x.region.clone()) else {
                continue;
            };
            let r = regions.entry(region.clone()).or_insert(RegionSummary {
                name: region,
                alive: 0,
                members: 0,
            });
            r.members += 1;
            r.alive += usize::from(m.state == MemberState::Alive);
        }
    }
    (clusters, regions.into_values().collect())
}

/// One row of the membership events page.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EventView {
    pub at_ms: u64,
    pub at: String,
    pub node: String,
    pub id: String,
    pub address: String,
    pub kind: &'static str,
}

pub(crate) fn events(s: &ApiState) -> Vec<EventView> {
    s.cluster
        .events()
        .into_iter()
        .map(|e: MembershipEvent| EventView {
            at_ms: e.at_ms,
            at: utc_ms(e.at_ms),
            node: e.node_name.unwrap_or_else(|| e.id.clone()),
            id: e.id,
            address: e.address.map_or_else(String::new, |a| a.to_string()),
            kind: match e.kind {
                MembershipEventKind::Joined => "joined",
                MembershipEventKind::Suspect => "suspect",
                MembershipEventKind::Dead => "dead",
                MembershipEventKind::Left => "left",
                MembershipEventKind::Alive => "alive again",
                MembershipEventKind::Removed => "removed",
            },
        })
        .collect()
}

/// The overview page and `GET /api/v1/overview`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OverviewView {
    pub node: String,
    pub version: &'static str,
    pub cluster: String,
    pub health: String,
    pub members: usize,
    pub by_state: BTreeMap<&'static str, usize>,
    pub versions: BTreeMap<String, usize>,
    pub local_health_score: usize,
    pub control_plane_connected: bool,
    pub control_plane_error: Option<String>,
    pub revision: Option<i64>,
    pub config_source: Option<String>,
    pub config_applied_at: Option<String>,
    pub rejected_revision: Option<String>,
    pub audit_spooling: bool,
    pub audit_spooled: u64,
    pub audit_spool_bytes: u64,
    pub keys: usize,
    pub replay: String,
    /// Every cluster of the node (one row for a node in one).
    pub clusters: Vec<ClusterSummary>,
    /// Regions seen in the global cluster (empty for a node in one cluster).
    pub regions: Vec<RegionSummary>,
}

impl OverviewView {
    pub fn revision_text(&self) -> String {
        self.revision
            .map_or_else(|| "none".into(), |r| r.to_string())
    }

    pub fn spool(&self) -> String {
        if self.audit_spooling {
            format!(
                "{} decisions ({}) waiting for PostgreSQL",
                self.audit_spooled,
                human_bytes(self.audit_spool_bytes)
            )
        } else {
            "empty".into()
        }
    }

    pub fn state_count(&self, state: &str) -> usize {
        self.by_state.get(state).copied().unwrap_or(0)
    }
}

pub(crate) fn overview(s: &ApiState) -> OverviewView {
    let inst = instances(s);
    let (clusters, regions) = clusters_and_regions(s);
    let cluster = s.cluster.status();
    let cp = s.config.status();
    let audit = s.audit.backlog();
    let replay = s.state.replay();
    OverviewView {
        node: s.node.clone(),
        version: env!("CARGO_PKG_VERSION"),
        cluster: inst.cluster,
        health: inst.health,
        members: inst.members.len(),
        by_state: inst.by_state,
        versions: inst.versions,
        local_health_score: cluster.local_health_score,
        control_plane_connected: cp.connected,
        control_plane_error: cp.last_error.clone(),
        revision: cp.revision,
        config_source: cp.source.map(|src| {
            match src {
                shoal_model::ConfigSource::Database => "database",
                shoal_model::ConfigSource::Snapshot => "local snapshot",
            }
            .to_string()
        }),
        config_applied_at: cp
            .applied_at
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
        rejected_revision: cp
            .rejected
            .map(|r| format!("revision {} refused: {}", r.revision, r.error)),
        audit_spooling: audit.spooling,
        audit_spooled: audit.spooled,
        audit_spool_bytes: audit.spool_bytes,
        keys: s.state.status().keys,
        replay: replay.detail,
        clusters,
        regions,
    }
}

/// How far back the counter chart goes, in one-second samples.
const HISTORY_SAMPLES: usize = 300;
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Keys the counters page lists at most.
const TOP_KEYS: usize = 50;

/// Keys scanned per sample and per page; beyond this the totals are partial (and say so).
const SCAN_KEYS: usize = 20_000;

/// Cluster-wide count in the first window, sampled every second while the node runs, so the
/// chart has history before anyone opens the page.
#[derive(Clone, Default)]
pub(crate) struct CounterHistory(Arc<Mutex<VecDeque<(u64, u64)>>>);

impl CounterHistory {
    /// Starts the sampler; it stops when the last router holding this history is dropped.
    pub(crate) fn spawn(state: shoal_state::SharedState) -> Self {
        let history = Self::default();
        let weak: Weak<Mutex<VecDeque<(u64, u64)>>> = Arc::downgrade(&history.0);
        #[expect(
            clippy::disallowed_methods,
            reason = "holds the history weakly and ends with the last router holding it"
        )]
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let Some(samples) = weak.upgrade() else {
                    return;
                };
                let total: u64 = state
                    .counters(SCAN_KEYS)
                    .iter()
                    .map(|(_, t)| t.first().copied().unwrap_or(0))
                    .sum();
                let mut samples = samples.lock().expect("history lock");
                if samples.len() == HISTORY_SAMPLES {
                    samples.pop_front();
                }
                samples.push_back((now_ms(), total));
            }
        });
        history
    }

    fn samples(&self) -> Vec<(u64, u64)> {
        self.0
            .lock()
            .expect("history lock")
            .iter()
            .copied()
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ContributionView {
    pub node: String,
    pub count: u64,
    /// Share of the key's total, 0-100.
    pub percent: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CounterView {
    pub subject: String,
    pub resource: String,
    pub action: String,
    /// One per window, in the order of `windows`.
    pub totals: Vec<u64>,
    /// Per node, in the first window.
    pub contributions: Vec<ContributionView>,
    pub owner: Option<String>,
}

/// A line chart drawn server-side as SVG points (no script runs in the page).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChartView {
    /// `(unix ms, total)` samples.
    pub samples: Vec<(u64, u64)>,
    #[serde(skip)]
    pub points: String,
    pub max: u64,
    pub latest: u64,
}

/// The chart's SVG viewBox (`fragments/counters.html` uses the same numbers).
const CHART_W: u64 = 600;
const CHART_H: u64 = 120;

impl ChartView {
    fn new(samples: Vec<(u64, u64)>) -> Self {
        let max = samples.iter().map(|s| s.1).max().unwrap_or(0);
        let latest = samples.last().map_or(0, |s| s.1);
        let n = samples.len().max(2) as u64 - 1;
        let scale = max.max(1);
        let points = samples
            .iter()
            .enumerate()
            .map(|(i, (_, v))| {
                let x = i as u64 * CHART_W / n;
                let y = CHART_H
                    - (u128::from(*v) * u128::from(CHART_H - 4) / u128::from(scale)) as u64
                    - 2;
                format!("{x},{y}")
            })
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            samples,
            points,
            max,
            latest,
        }
    }
}

/// The counters page and `GET /api/v1/state/top`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CountersView {
    pub windows: Vec<String>,
    pub filter: String,
    /// Keys with live counts that match the filter (before the cut to the top ones).
    pub matching: usize,
    pub counters: Vec<CounterView>,
    /// Sum of the first window over every key, cluster-wide, per matching key set.
    pub window_totals: Vec<u64>,
    pub chart: ChartView,
}

pub(crate) fn counters(s: &ApiState, history: &CounterHistory, filter: &str) -> CountersView {
    let windows = s.state.window_names().to_vec();
    let needle = filter.to_lowercase();
    let mut rows: Vec<_> = s
        .state
        .counters(SCAN_KEYS)
        .into_iter()
        .filter(|(k, _)| {
            needle.is_empty()
                || k.subject().to_lowercase().contains(&needle)
                || k.resource().to_lowercase().contains(&needle)
                || k.action().to_lowercase().contains(&needle)
        })
        .collect();
    let mut window_totals = vec![0u64; windows.len()];
    for (_, totals) in &rows {
        for (sum, t) in window_totals.iter_mut().zip(totals) {
            *sum += t;
        }
    }
    let matching = rows.len();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows.truncate(TOP_KEYS);
    let names: BTreeMap<String, String> = s
        .cluster
        .members()
        .into_iter()
        .map(|m| {
            let name = m.meta.map_or_else(|| m.id.clone(), |x| x.node_name);
            (m.id, name)
        })
        .collect();
    let node_name = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let counters = rows
        .into_iter()
        .map(|(key, totals)| {
            let total = totals.first().copied().unwrap_or(0).max(1);
            let mut contributions: Vec<ContributionView> = s
                .state
                .contributions(&key, 0)
                .into_iter()
                .filter(|c| c.count > 0)
                .map(|c| ContributionView {
                    node: node_name(&c.node),
                    count: c.count,
                    // Totals and shares are read a moment apart: clamp to 100.
                    percent: (c.count.saturating_mul(100) / total).min(100),
                })
                .collect();
            contributions.sort_by(|a, b| a.node.cmp(&b.node));
            CounterView {
                owner: s.state.owner(&key).map(|o| node_name(&o)),
                subject: key.subject().to_string(),
                resource: key.resource().to_string(),
                action: key.action().to_string(),
                totals,
                contributions,
            }
        })
        .collect();
    CountersView {
        windows,
        filter: filter.to_string(),
        matching,
        counters,
        window_totals,
        chart: ChartView::new(history.samples()),
    }
}

/// The outcome of "test this policy": compile errors carry the compiler's line and column.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TrialView {
    /// `allow`, `block`, or `error` (the policy or the input is wrong).
    pub outcome: &'static str,
    /// The block's `type`, for a block.
    pub kind: Option<String>,
    pub message: Option<String>,
}

/// Longest sample input accepted.
const MAX_TRIAL_INPUT: usize = 64 * 1024;

/// Compiles `rego` and evaluates it on `input` (JSON text), off the async runtime; nothing is
/// stored.
pub(crate) async fn trial(rego: String, input: String) -> TrialView {
    let error = |message: String| TrialView {
        outcome: "error",
        kind: None,
        message: Some(message),
    };
    if input.len() > MAX_TRIAL_INPUT {
        return error(format!(
            "sample input is {} bytes; the limit is {MAX_TRIAL_INPUT}",
            input.len()
        ));
    }
    let value: serde_json::Value = match serde_json::from_str(&input) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => return error("sample input must be a JSON object".into()),
        Err(e) => return error(format!("sample input is not valid JSON: {e}")),
    };
    let run = tokio::task::spawn_blocking(move || {
        let policy = shoal_policy::Policy::compile("trial", &rego)?;
        policy.evaluate(&shoal_policy::Input::from_json(value))
    })
    .await;
    match run {
        Ok(Ok(shoal_policy::Verdict::Allow)) => TrialView {
            outcome: "allow",
            kind: None,
            message: None,
        },
        Ok(Ok(shoal_policy::Verdict::Block { kind, message })) => TrialView {
            outcome: "block",
            kind: Some(kind),
            message,
        },
        Ok(Err(e)) => error(e.to_string()),
        Err(e) => error(format!("evaluation failed: {e}")),
    }
}

/// What "test this policy" starts from: the shape the data plane builds for every request.
pub(crate) const SAMPLE_INPUT: &str = r#"{
  "user": { "id": "alice", "groups": ["analysts"] },
  "resource": { "name": "demo-s3", "kind": "s3" },
  "bucket": { "name": "reports", "access_count": { "last_minute": 12, "last_hour": 40 } },
  "request": { "method": "GET", "path": "/reports/q3.csv", "operation": "GetObject",
               "key": "q3.csv", "source_ip": "10.0.0.7" }
}"#;
