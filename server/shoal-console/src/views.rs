//! What the console shows, assembled once and used twice: rendered by the HTML pages and
//! returned as JSON by their `/api/v1` twins, so a test or a script sees exactly what an
//! operator sees.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use shoal_cluster::{Member, MemberState, MembershipEvent, MembershipEventKind};
use shoal_model::{DataDocument, DocumentRecord, MAX_DOCUMENT_BYTES, package_root};
use shoal_policy::{Input, Policy, PolicyData, Stage, Verdict};
use shoal_state::CounterKey;

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

/// Counter actions that add up body bytes (the data plane's byte budgets) rather than events.
/// Their totals run into millions where a request counter has tens, so they are shown in
/// binary units, summed apart from the counts and ranked after them: a few downloads would
/// otherwise push every requester off the page and flatten the chart.
const BYTE_ACTIONS: [&str; 2] = ["bytes_read", "bytes_written"];

fn counts_bytes(action: &str) -> bool {
    BYTE_ACTIONS.contains(&action)
}

/// Cluster-wide count in the first window (byte counters apart), sampled every second while
/// the node runs, so the chart has history before anyone opens the page.
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
                    .filter(|(k, _)| !counts_bytes(k.action()))
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
    /// `totals` in binary units, for the byte actions (empty for counts).
    pub totals_human: Vec<String>,
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
    /// Per window, the sum over the matching keys that count events (requests, logins),
    /// cluster-wide.
    pub window_totals: Vec<u64>,
    /// Per byte action with matching keys, its sum per window.
    pub byte_totals: Vec<ByteTotals>,
    pub chart: ChartView,
}

/// The sum of one byte action over the matching keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ByteTotals {
    pub action: &'static str,
    /// One per window.
    pub totals: Vec<u64>,
    pub human: Vec<String>,
}

/// The keys the counters page lists and what it sums over them.
#[derive(Debug)]
struct Selection {
    /// Keys matching the filter, before the cut.
    matching: usize,
    /// The first `TOP_KEYS`: counts busiest first, then bytes busiest first.
    top: Vec<(CounterKey, Vec<u64>)>,
    window_totals: Vec<u64>,
    byte_totals: Vec<ByteTotals>,
}

/// Keeps the keys whose subject, resource or action contains `filter` (any case), ranks them
/// and sums them per window.
fn select(rows: Vec<(CounterKey, Vec<u64>)>, filter: &str, windows: usize) -> Selection {
    let needle = filter.to_lowercase();
    let mut rows: Vec<_> = rows
        .into_iter()
        .filter(|(k, _)| {
            needle.is_empty()
                || k.subject().to_lowercase().contains(&needle)
                || k.resource().to_lowercase().contains(&needle)
                || k.action().to_lowercase().contains(&needle)
        })
        .collect();
    let sum = |action: Option<&str>| {
        let mut sums = vec![0u64; windows];
        for (key, totals) in &rows {
            let wanted = match action {
                None => !counts_bytes(key.action()),
                Some(a) => key.action() == a,
            };
            if wanted {
                for (sum, t) in sums.iter_mut().zip(totals) {
                    *sum = sum.saturating_add(*t);
                }
            }
        }
        sums
    };
    let window_totals = sum(None);
    let byte_totals = BYTE_ACTIONS
        .into_iter()
        .filter(|a| rows.iter().any(|(k, _)| k.action() == *a))
        .map(|action| {
            let totals = sum(Some(action));
            let human = totals.iter().map(|&b| human_bytes(b)).collect();
            ByteTotals {
                action,
                totals,
                human,
            }
        })
        .collect();
    let matching = rows.len();
    rows.sort_by(|a, b| {
        counts_bytes(a.0.action())
            .cmp(&counts_bytes(b.0.action()))
            .then_with(|| b.1.cmp(&a.1))
            .then_with(|| a.0.cmp(&b.0))
    });
    rows.truncate(TOP_KEYS);
    Selection {
        matching,
        top: rows,
        window_totals,
        byte_totals,
    }
}

pub(crate) fn counters(s: &ApiState, history: &CounterHistory, filter: &str) -> CountersView {
    let windows = s.state.window_names().to_vec();
    let Selection {
        matching,
        top,
        window_totals,
        byte_totals,
    } = select(s.state.counters(SCAN_KEYS), filter, windows.len());
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
    let counters = top
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
            let totals_human = if counts_bytes(key.action()) {
                totals.iter().map(|&b| human_bytes(b)).collect()
            } else {
                Vec::new()
            };
            CounterView {
                owner: s.state.owner(&key).map(|o| node_name(&o)),
                subject: key.subject().to_string(),
                resource: key.resource().to_string(),
                action: key.action().to_string(),
                totals,
                totals_human,
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
        byte_totals,
        chart: ChartView::new(history.samples()),
    }
}

/// The outcome of "test this policy": compile errors carry the compiler's line and column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct TrialView {
    /// `allow`, `block`, `no_rule` (the policy has no rule for the stage, so the data plane
    /// never asks it there), or `error` (the policy or the input is wrong).
    pub outcome: &'static str,
    /// `request` or `response`.
    pub stage: &'static str,
    /// The block's `type`, for a block.
    pub kind: Option<String>,
    pub message: Option<String>,
}

impl TrialView {
    /// What the result box says first: a missing rule must not read as an allow.
    pub fn headline(&self) -> &'static str {
        match self.outcome {
            "no_rule" => "no rule for this stage",
            other => other,
        }
    }
}

/// Longest sample input accepted.
const MAX_TRIAL_INPUT: usize = 64 * 1024;

/// `stage` of a trial form or body, read as the CLI's `--stage` is.
pub(crate) fn trial_stage<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Stage, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}

/// The stage a trial without one runs: the one every policy had before responses were.
pub(crate) fn request_stage() -> Stage {
    Stage::Request
}

/// The data documents of the revision this node enforces, so a trial reads `data.<name>` as
/// the node's data plane does.
pub(crate) fn documents_in_force(s: &ApiState) -> Vec<DataDocument> {
    s.config
        .current()
        .map(|c| c.documents.clone())
        .unwrap_or_default()
}

/// Compiles `rego` with `documents` as its data and evaluates its rule for `stage` on `input`
/// (JSON text), off the async runtime; nothing is stored.
pub(crate) async fn trial(
    rego: String,
    input: String,
    stage: Stage,
    documents: Vec<DataDocument>,
) -> TrialView {
    let view = |outcome, kind, message| TrialView {
        outcome,
        stage: stage.as_str(),
        kind,
        message,
    };
    let error = |message: String| view("error", None, Some(message));
    if input.len() > MAX_TRIAL_INPUT {
        return error(format!(
            "sample input is {} bytes; the limit is {MAX_TRIAL_INPUT}",
            input.len()
        ));
    }
    let mut fields = match serde_json::from_str(&input) {
        Ok(serde_json::Value::Object(fields)) => fields,
        Ok(_) => return error("sample input must be a JSON object".into()),
        Err(e) => return error(format!("sample input is not valid JSON: {e}")),
    };
    // The data plane decides the request stage before there is an answer: `input.response`
    // is undefined there, so a policy that reads it behaves here as it will on a node.
    if stage == Stage::Request {
        fields.remove("response");
    }
    if let Some(root) = package_root(&rego)
        && documents.iter().any(|d| d.name == root)
    {
        return error(format!(
            "the policy's package is under data.{root}, which is a data document of the \
             revision in force: rename one (the control plane refuses this policy too)"
        ));
    }
    let run = tokio::task::spawn_blocking(move || {
        let data = PolicyData::from_json(
            documents
                .into_iter()
                .map(|d| (d.name, d.document))
                .collect(),
        );
        let policy = Policy::compile_with_data("trial", &rego, data)?;
        if !policy.defines(stage) {
            return Ok(None);
        }
        let input = Input::from_json(serde_json::Value::Object(fields));
        policy.evaluate_at(stage, &input).map(Some)
    })
    .await;
    match run {
        Ok(Ok(Some(Verdict::Allow))) => view("allow", None, None),
        Ok(Ok(Some(Verdict::Block { kind, message }))) => view("block", Some(kind), message),
        Ok(Ok(None)) => view(
            "no_rule",
            None,
            Some(format!(
                "The policy has no {} rule, so the data plane does not evaluate it at the {} \
                 stage: it blocks nothing there.",
                stage.rule(),
                stage.as_str()
            )),
        ),
        Ok(Err(e)) => error(e.to_string()),
        Err(e) => error(format!("evaluation failed: {e}")),
    }
}

/// What "test this policy" starts from: every field the data plane builds (docs/policies.md,
/// "Input"), with the default windows; `response` is read at the response stage only.
pub(crate) const SAMPLE_INPUT: &str = r#"{
  "user": { "id": "alice", "groups": ["analysts"], "email": "alice@example.com",
            "type": "human", "attributes": { "clearance": 2 } },
  "resource": { "name": "demo-s3", "kind": "s3", "environment": "prod",
                "tags": { "team": "analytics" } },
  "bucket": { "name": "reports",
              "access_count": { "last_minute": 12, "last_hour": 40 },
              "bytes_read": { "last_minute": 1048576, "last_hour": 52428800 },
              "bytes_written": { "last_minute": 0, "last_hour": 2097152 } },
  "request": { "method": "GET", "path": "/reports/q3.csv", "operation": "GetObject",
               "key": "q3.csv", "source_ip": "10.0.0.7",
               "headers": { "user-agent": "aws-cli/2.15.0", "x-purpose": "audit" },
               "query": { "versionId": "3" }, "body_size": 0 },
  "node": { "name": "shoal-1", "cluster": "eu-west" },
  "response": { "status": 200, "size": 48213, "content_type": "text/csv",
                "headers": { "content-length": "48213", "content-type": "text/csv",
                             "etag": "\"5d41402abc4b2a76b9719d911017c592\"" },
                "metadata": { "classification": "internal" } }
}"#;

/// One row of the data documents page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct DocumentRow {
    pub name: String,
    /// As compact JSON: what the control plane's limit is measured on.
    pub bytes: usize,
    pub size: String,
    pub description: String,
    pub updated: String,
}

pub(crate) fn document_rows(records: Vec<DocumentRecord>) -> Vec<DocumentRow> {
    records
        .into_iter()
        .map(|r| {
            let bytes = serde_json::to_vec(&r.document.document).map_or(0, |v| v.len());
            DocumentRow {
                name: r.document.name,
                bytes,
                size: human_bytes(bytes as u64),
                description: r.document.description,
                updated: r.updated_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            }
        })
        .collect()
}

/// The largest document the control plane stores, as the pages say it.
pub(crate) fn document_limit() -> String {
    human_bytes(MAX_DOCUMENT_BYTES as u64)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Value, json};
    use shoal_policy::{NodeFacts, RequestFacts, ResponseFacts, Subject, Target, Windows};

    use super::*;

    /// Objects whose keys are the operator's or the caller's (headers, tags...), not Shoal's.
    const FREE_FORM: [&str; 6] = [
        "/user/attributes",
        "/resource/tags",
        "/request/headers",
        "/request/query",
        "/response/headers",
        "/response/metadata",
    ];

    fn paths(v: &Value, at: String, out: &mut BTreeSet<String>) {
        if let Value::Object(fields) = v
            && !FREE_FORM.contains(&at.as_str())
        {
            for (k, v) in fields {
                paths(v, format!("{at}/{k}"), out);
            }
        }
        out.insert(at);
    }

    fn paths_of(v: &Value) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        paths(v, String::new(), &mut out);
        out
    }

    /// `input` exactly as the data plane builds it at `stage`, every optional part present,
    /// read back through a policy.
    fn data_plane_input(stage: Stage) -> Value {
        let windows = Windows::new(&["last_minute".into(), "last_hour".into()]);
        let profile = shoal_model::UserProfile {
            email: Some("alice@example.com".into()),
            kind: shoal_model::UserKind::Human,
            groups: vec!["analysts".into()],
            attributes: serde_json::from_value(json!({"clearance": 2})).unwrap(),
        };
        let resource = shoal_model::Resource {
            name: "demo-s3".into(),
            enabled: true,
            description: String::new(),
            spec: shoal_model::ResourceSpec::from_parts("s3", json!({"endpoint": "http://s3"}))
                .unwrap(),
            attributes: shoal_model::ResourceAttributes {
                environment: Some("prod".into()),
                tags: [("team".to_string(), "analytics".to_string())].into(),
            },
        };
        let (user, target) = (
            Subject::from_json(profile.policy_input("alice")),
            Target::from_json(resource.policy_input()),
        );
        let node = NodeFacts::new("shoal-1", "eu-west");
        let request = Input::request(&RequestFacts {
            bucket: Some("reports"),
            windows: &windows,
            counts: &[12, 40],
            global_counts: None,
            user: &user,
            method: "GET",
            path: "/reports/q3.csv",
            operation: Some("GetObject"),
            key: Some("q3.csv"),
            source_ip: Some("10.0.0.7"),
            resource: &target,
            headers: &[("x-purpose", "audit")],
            query: &[("versionId", "3")],
            body_size: Some(0),
            node: &node,
            bytes_read: Some(&[1, 2]),
            bytes_written: Some(&[3, 4]),
        });
        let input = match stage {
            Stage::Request => request,
            Stage::Response => request.response(
                &windows,
                &ResponseFacts {
                    status: 200,
                    size: Some(48213),
                    content_type: Some("text/csv"),
                    headers: &[("etag", "\"x\"")],
                    metadata: &[("classification", "internal")],
                    bytes_read: Some(&[5, 6]),
                },
            ),
        };
        let echo = Policy::compile(
            "echo",
            "package echo\n\
             pre_request := {\"action\": \"block\", \"message\": json.marshal(input)}\n\
             pre_response := {\"action\": \"block\", \"message\": json.marshal(input)}\n",
        )
        .unwrap();
        let Verdict::Block {
            message: Some(m), ..
        } = echo.evaluate_at(stage, &input).unwrap()
        else {
            panic!("the echo policy blocks with the input");
        };
        serde_json::from_str(&m).unwrap()
    }

    #[test]
    fn the_sample_input_has_the_shape_the_data_plane_builds_at_each_stage() {
        let sample: Value = serde_json::from_str(SAMPLE_INPUT).unwrap();
        assert!(SAMPLE_INPUT.len() < MAX_TRIAL_INPUT);
        let sample_paths = paths_of(&sample);
        assert_eq!(
            sample_paths,
            paths_of(&data_plane_input(Stage::Response)),
            "the response stage's input"
        );
        let request_paths: BTreeSet<String> = sample_paths
            .into_iter()
            .filter(|p| !p.starts_with("/response"))
            .collect();
        assert_eq!(request_paths, paths_of(&data_plane_input(Stage::Request)));
        for headers in ["request", "response"] {
            for name in sample[headers]["headers"].as_object().unwrap().keys() {
                assert_eq!(*name, name.to_lowercase(), "{headers} header names");
            }
        }
    }

    const BOTH_STAGES: &str = r#"package trial
pre_request := {"action": "block", "type": "saw_a_response"} if input.response
pre_response := {"action": "block", "type": "too_large", "message": "over 1 KiB"} if {
    input.response.size > 1024
}
"#;

    const REQUEST_ONLY: &str = "package trial\npre_request := {\"action\": \"block\"} if input.bucket.access_count.last_minute > 10\n";

    async fn run(rego: &str, input: &str, stage: Stage, documents: Vec<DataDocument>) -> TrialView {
        trial(rego.into(), input.into(), stage, documents).await
    }

    #[tokio::test]
    async fn the_trial_runs_the_stage_chosen_and_leaves_the_response_out_of_the_request() {
        let t = run(BOTH_STAGES, SAMPLE_INPUT, Stage::Response, vec![]).await;
        assert_eq!(
            t,
            TrialView {
                outcome: "block",
                stage: "response",
                kind: Some("too_large".into()),
                message: Some("over 1 KiB".into()),
            }
        );
        let t = run(BOTH_STAGES, SAMPLE_INPUT, Stage::Request, vec![]).await;
        assert_eq!((t.outcome, t.stage), ("allow", "request"), "{t:?}");
    }

    #[tokio::test]
    async fn a_stage_the_policy_has_no_rule_for_is_said_not_allowed() {
        let t = run(REQUEST_ONLY, SAMPLE_INPUT, Stage::Response, vec![]).await;
        assert_eq!(t.outcome, "no_rule");
        assert_eq!(t.headline(), "no rule for this stage");
        let message = t.message.unwrap();
        assert!(
            message.contains("no pre_response rule") && message.contains("response stage"),
            "{message}"
        );
        let t = run(REQUEST_ONLY, SAMPLE_INPUT, Stage::Request, vec![]).await;
        assert_eq!((t.outcome, t.headline()), ("block", "block"));
    }

    fn document(name: &str, document: Value) -> DataDocument {
        DataDocument {
            name: name.into(),
            document,
            description: String::new(),
        }
    }

    #[tokio::test]
    async fn the_trial_reads_the_data_documents_it_is_given() {
        let allowlisted = "package gate\nimport rego.v1\n\
                           pre_request := {\"action\": \"block\", \"type\": \"not_listed\"} if \
                           not input.user.id in data.allowlist.users\n";
        let listing = |users: Value| vec![document("allowlist", json!({ "users": users }))];
        let t = run(
            allowlisted,
            SAMPLE_INPUT,
            Stage::Request,
            listing(json!(["alice"])),
        )
        .await;
        assert_eq!(t.outcome, "allow", "{t:?}");
        let t = run(
            allowlisted,
            SAMPLE_INPUT,
            Stage::Request,
            listing(json!(["bob"])),
        )
        .await;
        assert_eq!(t.kind.as_deref(), Some("not_listed"), "{t:?}");
        let t = run(allowlisted, SAMPLE_INPUT, Stage::Request, vec![]).await;
        assert_eq!(t.outcome, "block", "no document, no allowlist: {t:?}");

        // A package the revision's documents would hide is refused as the store refuses it.
        let hidden = "package allowlist\npre_request := {\"action\": \"allow\"}\n";
        let t = run(hidden, SAMPLE_INPUT, Stage::Request, listing(json!([]))).await;
        assert_eq!(t.outcome, "error");
        assert!(t.message.unwrap().contains("under data.allowlist"));
    }

    #[tokio::test]
    async fn bad_sample_inputs_and_policies_are_errors_that_say_why() {
        let long = format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_TRIAL_INPUT));
        for (rego, input, words) in [
            (REQUEST_ONLY, long.as_str(), "the limit is 65536"),
            (REQUEST_ONLY, "[1, 2]", "must be a JSON object"),
            (REQUEST_ONLY, "{\"user\": ", "not valid JSON"),
            ("package p\npre_request := {\n", "{}", "does not compile"),
        ] {
            let t = run(rego, input, Stage::Request, vec![]).await;
            assert_eq!(t.outcome, "error");
            let message = t.message.unwrap();
            assert!(message.contains(words), "{words}: {message}");
        }
    }

    #[test]
    fn the_stage_is_read_by_name_and_defaults_to_the_request() {
        #[derive(Deserialize)]
        struct Form {
            #[serde(default = "request_stage", deserialize_with = "trial_stage")]
            stage: Stage,
        }
        let stage = |v: Value| serde_json::from_value::<Form>(v).map(|f| f.stage);
        assert_eq!(stage(json!({})).unwrap(), Stage::Request);
        assert_eq!(
            stage(json!({"stage": "response"})).unwrap(),
            Stage::Response
        );
        let err = stage(json!({"stage": "body"})).unwrap_err().to_string();
        assert!(err.contains("\"body\" is not one of request"), "{err}");
    }

    fn key(subject: &str, action: &str) -> CounterKey {
        CounterKey::new(subject, "reports", action).unwrap()
    }

    #[test]
    fn byte_counters_rank_after_counts_and_are_summed_apart() {
        let rows = vec![
            (key("alice", "bytes_read"), vec![3 << 20, 5 << 30]),
            (key("alice", "access"), vec![3, 9]),
            (key("bob", "access"), vec![7, 7]),
            (key("bob", "bytes_written"), vec![1536, 1536]),
            (key("bob", "bytes_read"), vec![512, 512]),
        ];
        let all = select(rows.clone(), "", 2);
        assert_eq!(all.matching, 5);
        let order: Vec<(&str, &str)> = all
            .top
            .iter()
            .map(|(k, _)| (k.subject(), k.action()))
            .collect();
        assert_eq!(
            order,
            [
                ("bob", "access"),
                ("alice", "access"),
                ("alice", "bytes_read"),
                ("bob", "bytes_written"),
                ("bob", "bytes_read"),
            ]
        );
        assert_eq!(all.window_totals, [10, 16], "counts only");
        assert_eq!(
            all.byte_totals,
            [
                ByteTotals {
                    action: "bytes_read",
                    totals: vec![(3 << 20) + 512, (5 << 30) + 512],
                    human: vec!["3.0 MiB".into(), "5.0 GiB".into()],
                },
                ByteTotals {
                    action: "bytes_written",
                    totals: vec![1536, 1536],
                    human: vec!["1.5 KiB".into(), "1.5 KiB".into()],
                },
            ]
        );

        // The filter finds them by action, in any case.
        let read = select(rows.clone(), "BYTES_READ", 2);
        assert_eq!(read.matching, 2);
        assert!(read.top.iter().all(|(k, _)| k.action() == "bytes_read"));
        assert_eq!(read.window_totals, [0, 0]);
        assert_eq!(read.byte_totals.len(), 1);
        let bob = select(rows, "bob", 2);
        assert_eq!(bob.matching, 3);
        assert_eq!(bob.window_totals, [7, 7]);
    }

    #[test]
    fn byte_sizes_read_in_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn document_rows_show_the_size_the_limit_is_measured_on() {
        let at = chrono::DateTime::from_timestamp(1_765_000_000, 0).unwrap();
        let rows = document_rows(vec![DocumentRecord {
            document: DataDocument {
                description: "who may read".into(),
                ..document("allowlist", json!({ "users": ["x".repeat(2000)] }))
            },
            updated_at: at,
        }]);
        assert_eq!(
            rows,
            [DocumentRow {
                name: "allowlist".into(),
                bytes: 2014,
                size: "2.0 KiB".into(),
                description: "who may read".into(),
                updated: "2025-12-06 05:46:40 UTC".into(),
            }]
        );
        assert_eq!(document_limit(), "1.0 MiB");
    }
}
