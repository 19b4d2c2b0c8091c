use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use memberlist::Memberlist;
use memberlist::Options;
use memberlist::bytes::Bytes;
use memberlist::delegate::{CompositeDelegate, VoidDelegate};
use memberlist::net::NetTransportOptions;
use memberlist::proto::{
    ChecksumAlgorithm, CompressAlgorithm, EncryptionAlgorithm, Label, MaybeResolvedAddress, Meta,
    SecretKey as GossipKey, State,
};
use memberlist::tokio::{TokioNetTransport, TokioSocketAddrResolver, TokioTcp};
use serde::Serialize;
use shoal_config::{ClusterConfig, SecretKey};
use smol_str::SmolStr;
use tokio::sync::{broadcast, mpsc, watch};

use crate::delegate::{HeartbeatDelegate, MetaDelegate};
use crate::{ClusterError, NodeIdentity, NodeMeta};

type Id = SmolStr;
type Transport = TokioNetTransport<Id, TokioSocketAddrResolver, TokioTcp>;
type Void = VoidDelegate<Id, SocketAddr>;
type Delegates =
    CompositeDelegate<Id, SocketAddr, Void, Void, Void, Void, MetaDelegate, HeartbeatDelegate>;
type Gossip = Memberlist<Transport, Delegates>;

/// How often the member table is refreshed from memberlist's state. Bounds how late a state
/// change is seen locally (on top of gossip's own delay).
const STATE_POLL: Duration = Duration::from_millis(25);

/// Bound on the broadcasts of a metadata update and of the leave message.
const BROADCAST_TIMEOUT: Duration = Duration::from_secs(2);

/// How many received user messages may wait for the reader before new ones are dropped.
const INBOX_CAPACITY: usize = 8192;

/// The largest user message [`Cluster::send`] takes: a UDP datagram is at most 1472 bytes
/// and memberlist adds its label, checksum, compression header, nonce and tag around it.
pub const PACKET_MESSAGE_MAX: usize = 1200;

/// Everything the gossip layer needs, already validated by `shoal_config`.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub name: String,
    pub bind: SocketAddr,
    pub advertise: Option<SocketAddr>,
    /// Primary first.
    pub keys: Vec<SecretKey>,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub suspicion_multiplier: u32,
    pub suspicion_max_timeout_multiplier: u32,
    pub awareness_max_multiplier: u32,
    pub gossip_interval: Duration,
    pub gossip_nodes: u32,
    pub retransmit_multiplier: u32,
    pub push_pull_interval: Duration,
    pub dead_node_reap: Duration,
}

impl ClusterOptions {
    pub fn from_config(c: &ClusterConfig) -> Self {
        Self {
            name: c.name.clone(),
            bind: c.bind,
            advertise: c.advertise,
            keys: c.keys().to_vec(),
            probe_interval: c.probe_interval,
            probe_timeout: c.probe_timeout,
            suspicion_multiplier: c.suspicion_multiplier,
            suspicion_max_timeout_multiplier: c.suspicion_max_timeout_multiplier,
            awareness_max_multiplier: c.awareness_max_multiplier,
            gossip_interval: c.gossip_interval,
            gossip_nodes: c.gossip_nodes,
            retransmit_multiplier: c.retransmit_multiplier,
            push_pull_interval: c.push_pull_interval,
            dead_node_reap: c.dead_node_reap,
        }
    }

    /// The suspicion timeouts memberlist applies at `members` known nodes: a suspect that
    /// enough peers independently confirm is declared dead after `min`; an unconfirmed one
    /// waits up to `max` (Lifeguard), which is what spares a node that is merely slow.
    pub fn suspicion_timeouts(&self, members: usize) -> SuspicionTimeouts {
        let scale = (members.max(1) as f64).log10().max(1.0);
        let min = self
            .probe_interval
            .mul_f64(f64::from(self.suspicion_multiplier) * scale);
        // memberlist skips the confirmation wait when too few peers could confirm.
        let wanted = self.suspicion_multiplier.saturating_sub(2);
        let confirmations = if (members as u32).saturating_sub(2) < wanted {
            0
        } else {
            wanted
        };
        let max = if confirmations == 0 {
            min
        } else {
            min * self.suspicion_max_timeout_multiplier
        };
        SuspicionTimeouts {
            min_ms: min.as_millis() as u64,
            max_ms: max.as_millis() as u64,
            confirmations_needed: confirmations,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SuspicionTimeouts {
    pub min_ms: u64,
    pub max_ms: u64,
    pub confirmations_needed: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    Alive,
    Suspect,
    Dead,
    Left,
}

impl MemberState {
    fn from_gossip(state: State) -> Self {
        match state {
            State::Alive => MemberState::Alive,
            State::Suspect => MemberState::Suspect,
            State::Left => MemberState::Left,
            // Dead, and any state a newer peer might send that we do not know.
            _ => MemberState::Dead,
        }
    }
}

/// One cluster member as this node sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Member {
    pub id: String,
    /// Gossip address.
    pub address: SocketAddr,
    pub state: MemberState,
    pub incarnation: u32,
    /// What the member says about itself; `None` if its metadata is not Shoal's.
    pub meta: Option<NodeMeta>,
    /// Milliseconds since the state last changed.
    pub state_age_ms: u64,
    /// Milliseconds since this node last got an ack from the member; `None` if it has not
    /// probed it yet (or it is this node).
    pub last_heartbeat_ms: Option<u64>,
    pub rtt_ms: Option<f64>,
    pub local: bool,
}

/// A membership change, as the cluster layer reports it (self excluded).
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterChange {
    Joined(Member),
    StateChanged {
        member: Member,
        from: MemberState,
    },
    Updated(Member),
    /// Removed from the member list `dead_node_reap` after it died or left.
    Reaped {
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClusterHealth {
    Healthy,
    NotHealthy,
}

/// Which keys this node holds, by fingerprint (never the keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyringStatus {
    pub primary: String,
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub cluster: String,
    pub local_id: String,
    pub advertise: SocketAddr,
    pub members: Vec<Member>,
    /// Members alive (this node included).
    pub healthy: usize,
    pub health: ClusterHealth,
    /// Lifeguard's local health score: 0 is healthy; higher means this node itself misses
    /// acks and stretches its timeouts before accusing anyone.
    pub local_health_score: usize,
    pub suspicion_timeout: SuspicionTimeouts,
    pub keyring: KeyringStatus,
    /// Members this node has seen turn suspect since it started.
    pub suspicions_raised: u64,
    /// Of those, how many proved alive again (a false suspicion, refuted by the member).
    pub suspicions_refuted: u64,
}

/// How many membership events a node remembers for the console.
pub const EVENT_HISTORY: usize = 500;

/// What happened to a member, as the console's event list shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MembershipEventKind {
    Joined,
    Suspect,
    Dead,
    Left,
    Alive,
    Removed,
}

/// One membership change with the wall-clock time this node saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MembershipEvent {
    /// Unix milliseconds.
    pub at_ms: u64,
    pub id: String,
    /// The node's configured name, when its metadata is Shoal's.
    pub node_name: Option<String>,
    pub address: Option<SocketAddr>,
    pub kind: MembershipEventKind,
}

/// The result of asking to join some addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOutcome {
    pub joined: Vec<SocketAddr>,
    pub error: Option<String>,
}

/// Handle to this node's membership in the cluster; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    gossip: Gossip,
    id: Id,
    options: ClusterOptions,
    meta: Mutex<NodeMeta>,
    encoded_meta: Arc<Mutex<Vec<u8>>>,
    heartbeats: HeartbeatDelegate,
    /// The member table as of its last change, and when that was (ages are read as of then
    /// plus the time since).
    table: RwLock<(BTreeMap<Id, Member>, std::time::Instant)>,
    changes: broadcast::Sender<ClusterChange>,
    history: Mutex<VecDeque<MembershipEvent>>,
    stop: watch::Sender<bool>,
    inbox: Mutex<Option<mpsc::Receiver<Bytes>>>,
    inbox_dropped: Arc<AtomicU64>,
    suspicions_raised: AtomicU64,
    suspicions_refuted: AtomicU64,
}

fn gossip_key(key: &SecretKey) -> GossipKey {
    GossipKey::Aes256(*key.expose())
}

fn fingerprint(key: &GossipKey) -> String {
    let bytes: [u8; 32] = key.as_ref().try_into().unwrap_or([0; 32]);
    SecretKey::new(bytes).fingerprint()
}

impl Cluster {
    /// Binds the gossip port (TCP and UDP) and starts the protocol; the node is alone until
    /// [`Cluster::join`].
    pub async fn start(
        options: ClusterOptions,
        identity: &NodeIdentity,
        meta: NodeMeta,
    ) -> Result<Self, ClusterError> {
        let encoded = meta.encode()?;
        let primary = options
            .keys
            .first()
            .ok_or_else(|| ClusterError::Keyring("no key configured".into()))?;
        let label = Label::try_from(options.name.as_str())
            .map_err(|e| ClusterError::Gossip(format!("cluster name: {e}")))?;
        let gossip_options = Options::lan()
            .with_label(label)
            .with_skip_inbound_label_check(false)
            .with_encryption_algo(EncryptionAlgorithm::NoPadding)
            .with_primary_key(gossip_key(primary))
            .with_gossip_verify_incoming(true)
            .with_gossip_verify_outgoing(true)
            .with_checksum_algo(ChecksumAlgorithm::Crc32)
            .with_compress_algo(CompressAlgorithm::Snappy)
            .with_probe_interval(options.probe_interval)
            .with_probe_timeout(options.probe_timeout)
            .with_suspicion_mult(options.suspicion_multiplier as usize)
            .with_suspicion_max_timeout_mult(options.suspicion_max_timeout_multiplier as usize)
            .with_awareness_max_multiplier(options.awareness_max_multiplier as usize)
            .with_gossip_interval(options.gossip_interval)
            .with_gossip_nodes(options.gossip_nodes as usize)
            .with_retransmit_mult(options.retransmit_multiplier as usize)
            .with_push_pull_interval(options.push_pull_interval)
            .with_gossip_to_the_dead_time(options.dead_node_reap)
            .with_timeout(BROADCAST_TIMEOUT);

        let id = SmolStr::new(identity.id());
        let mut transport =
            NetTransportOptions::<Id, TokioSocketAddrResolver, TokioTcp>::new(id.clone());
        transport.add_bind_address(options.bind);
        if let Some(advertise) = options.advertise {
            transport = transport.with_advertise_address(advertise);
        }
        let encoded_meta = Arc::new(Mutex::new(encoded));
        let heartbeats = HeartbeatDelegate::default();
        let (inbox_tx, inbox) = mpsc::channel(INBOX_CAPACITY);
        let inbox_dropped = Arc::new(AtomicU64::new(0));
        let delegates: Delegates = CompositeDelegate::new()
            .with_node_delegate(MetaDelegate {
                encoded: encoded_meta.clone(),
                inbox: inbox_tx,
                inbox_dropped: inbox_dropped.clone(),
            })
            .with_ping_delegate(heartbeats.clone());
        let gossip = Memberlist::with_delegate(delegates, transport, gossip_options)
            .await
            .map_err(|e| ClusterError::Start {
                bind: options.bind.to_string(),
                message: e.to_string(),
            })?;
        if !gossip.encryption_enabled() {
            let _ = gossip.shutdown().await;
            return Err(ClusterError::Start {
                bind: options.bind.to_string(),
                message: "gossip encryption is not active; refusing to run unencrypted".into(),
            });
        }
        for extra in &options.keys[1..] {
            if let Some(keyring) = gossip.keyring() {
                keyring.insert(gossip_key(extra));
            }
        }
        let (changes, _) = broadcast::channel(1024);
        let (stop, stopped) = watch::channel(false);
        let cluster = Self {
            inner: Arc::new(Inner {
                gossip,
                id,
                options,
                meta: Mutex::new(meta),
                encoded_meta,
                heartbeats,
                table: RwLock::new((BTreeMap::new(), std::time::Instant::now())),
                changes,
                history: Mutex::new(VecDeque::with_capacity(EVENT_HISTORY)),
                stop,
                inbox: Mutex::new(Some(inbox)),
                inbox_dropped,
                suspicions_raised: AtomicU64::new(0),
                suspicions_refuted: AtomicU64::new(0),
            }),
        };
        tracing::info!(
            node_id = %cluster.inner.id,
            advertise = %cluster.advertise_address(),
            cluster = %cluster.inner.options.name,
            keys = cluster.keyring().keys.len(),
            "gossip started (encrypted)"
        );
        #[expect(
            clippy::disallowed_methods,
            reason = "holds the cluster weakly and ends when it stops or is dropped"
        )]
        tokio::spawn(track_states(Arc::downgrade(&cluster.inner), stopped));
        Ok(cluster)
    }

    /// The last [`EVENT_HISTORY`] membership changes this node saw, newest first. Each node
    /// keeps its own: a node that joined late has not seen what happened before.
    pub fn events(&self) -> Vec<MembershipEvent> {
        let history = self.inner.history.lock().expect("history lock");
        history.iter().rev().cloned().collect()
    }

    pub fn local_id(&self) -> &str {
        &self.inner.id
    }

    /// The gossip address peers use for this node (self is skipped in discovery results).
    pub fn advertise_address(&self) -> SocketAddr {
        *self.inner.gossip.advertise_address()
    }

    /// Joins the given peers (push/pull with each); partial success is reported, not hidden.
    /// One address at a time: memberlist's `join_many` future is not `Send`.
    pub async fn join(&self, addrs: &[SocketAddr]) -> JoinOutcome {
        let mut joined = Vec::new();
        let mut errors = Vec::new();
        for addr in addrs {
            match self
                .inner
                .gossip
                .join(MaybeResolvedAddress::Resolved(*addr))
                .await
            {
                Ok(peer) => joined.push(peer),
                Err(e) => errors.push(format!("{addr}: {e}")),
            }
        }
        JoinOutcome {
            joined,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        }
    }

    /// The member table (refreshed every few tens of milliseconds), this node included.
    pub fn members(&self) -> Vec<Member> {
        let heartbeats = self
            .inner
            .heartbeats
            .seen
            .lock()
            .expect("heartbeat lock")
            .clone();
        let table = self.inner.table.read().expect("table lock");
        let (members, at) = &*table;
        let since = at.elapsed().as_millis() as u64;
        members
            .values()
            .cloned()
            .map(|mut m| {
                m.state_age_ms += since;
                if let Some(h) = heartbeats.get(m.id.as_str()) {
                    m.last_heartbeat_ms = Some(h.at.elapsed().as_millis() as u64);
                    m.rtt_ms = Some(h.rtt.as_secs_f64() * 1000.0);
                }
                m
            })
            .collect()
    }

    /// The user messages peers send this node (decrypted and authenticated with the cluster
    /// key). There is one reader: the first call gets the stream, later calls `None`.
    pub fn messages(&self) -> Option<mpsc::Receiver<Bytes>> {
        self.inner.inbox.lock().expect("inbox lock").take()
    }

    /// Received messages dropped because their reader fell behind.
    pub fn messages_dropped(&self) -> u64 {
        self.inner.inbox_dropped.load(Ordering::Relaxed)
    }

    /// Sends one encrypted datagram to the node at `to` (best effort, at most
    /// [`PACKET_MESSAGE_MAX`] bytes): cheap, for frequent small messages whose loss is repaired.
    pub async fn send(&self, to: SocketAddr, msg: Bytes) -> Result<(), ClusterError> {
        if msg.len() > PACKET_MESSAGE_MAX {
            return Err(ClusterError::Gossip(format!(
                "message of {} bytes is over the {PACKET_MESSAGE_MAX}-byte datagram limit",
                msg.len()
            )));
        }
        self.inner
            .gossip
            .send(&to, msg)
            .await
            .map_err(|e| ClusterError::Gossip(format!("send to {to}: {e}")))
    }

    /// Sends one message over an encrypted stream (delivered whole or an error): for large or
    /// must-arrive messages.
    pub async fn send_reliable(&self, to: SocketAddr, msg: Bytes) -> Result<(), ClusterError> {
        self.inner
            .gossip
            .send_reliable(&to, msg)
            .await
            .map_err(|e| ClusterError::Gossip(format!("stream to {to}: {e}")))
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ClusterChange> {
        self.inner.changes.subscribe()
    }

    pub fn status(&self) -> ClusterStatus {
        let members = self.members();
        let healthy = members
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .count();
        ClusterStatus {
            cluster: self.inner.options.name.clone(),
            local_id: self.inner.id.to_string(),
            advertise: self.advertise_address(),
            healthy,
            health: health_of(&members),
            local_health_score: self.inner.gossip.health_score(),
            // memberlist counts every member it still holds, dead and left ones included.
            suspicion_timeout: self.inner.options.suspicion_timeouts(members.len()),
            keyring: self.keyring(),
            members,
            suspicions_raised: self.inner.suspicions_raised.load(Ordering::Relaxed),
            suspicions_refuted: self.inner.suspicions_refuted.load(Ordering::Relaxed),
        }
    }

    /// Replaces this node's metadata and broadcasts it.
    pub async fn update_meta(
        &self,
        update: impl FnOnce(&mut NodeMeta),
    ) -> Result<(), ClusterError> {
        {
            // Both under the same lock, so concurrent updates publish in the order they apply.
            let mut meta = self.inner.meta.lock().expect("meta lock");
            let mut next = meta.clone();
            update(&mut next);
            let encoded = next.encode()?;
            *meta = next;
            *self.inner.encoded_meta.lock().expect("meta lock") = encoded;
        }
        self.inner
            .gossip
            .update_node(BROADCAST_TIMEOUT)
            .await
            .map_err(|e| ClusterError::Gossip(format!("metadata update: {e}")))
    }

    pub fn keyring(&self) -> KeyringStatus {
        match self.inner.gossip.keyring() {
            Some(k) => KeyringStatus {
                primary: fingerprint(&k.primary_key()),
                keys: k.keys().map(|key| fingerprint(&key)).collect(),
            },
            None => KeyringStatus {
                primary: String::new(),
                keys: Vec::new(),
            },
        }
    }

    /// Makes the keyring exactly `keys` (primary first) in the only safe order: install the
    /// new ones, switch the primary, then remove the ones no longer listed. Returns whether
    /// anything changed.
    pub fn set_keys(&self, keys: &[SecretKey]) -> Result<bool, ClusterError> {
        let keyring = self
            .inner
            .gossip
            .keyring()
            .ok_or_else(|| ClusterError::Keyring("encryption is off".into()))?;
        let primary = keys
            .first()
            .ok_or_else(|| ClusterError::Keyring("the key list is empty".into()))?;
        let before = self.keyring();
        let wanted: Vec<GossipKey> = keys.iter().map(gossip_key).collect();
        for key in &wanted {
            if !keyring.keys().any(|k| &k == key) {
                keyring.insert(*key);
            }
        }
        keyring
            .use_key(gossip_key(primary).as_ref())
            .map_err(|e| ClusterError::Keyring(e.to_string()))?;
        let stale: Vec<GossipKey> = keyring.keys().filter(|k| !wanted.contains(k)).collect();
        for key in stale {
            keyring
                .remove(key.as_ref())
                .map_err(|e| ClusterError::Keyring(e.to_string()))?;
        }
        let after = self.keyring();
        if after != before {
            tracing::info!(
                primary = %after.primary,
                keys = ?after.keys,
                "gossip keyring changed"
            );
        }
        Ok(after != before)
    }

    /// Graceful exit: tells the others this node is leaving (they mark it `left`, not `dead`),
    /// then stops gossip.
    pub async fn leave(&self) {
        match self.inner.gossip.leave(BROADCAST_TIMEOUT).await {
            Ok(_) => tracing::info!("left the cluster"),
            Err(e) => tracing::warn!("leave broadcast did not complete: {e}"),
        }
        self.shutdown().await;
    }

    /// Stops gossip without a goodbye (peers will detect this node as failed).
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        if let Err(e) = self.inner.gossip.shutdown().await {
            tracing::warn!("gossip shutdown: {e}");
        }
    }
}

fn health_of(members: &[Member]) -> ClusterHealth {
    let troubled = members
        .iter()
        .any(|m| matches!(m.state, MemberState::Suspect | MemberState::Dead));
    if troubled {
        ClusterHealth::NotHealthy
    } else {
        ClusterHealth::Healthy
    }
}

/// What memberlist says of a member, less the age of its state.
struct Seen {
    id: Id,
    address: SocketAddr,
    state: MemberState,
    incarnation: u32,
    meta: Meta,
}

/// Keeps the member table in step with memberlist's state and reports each change once.
///
/// A poll that finds every member as the last one did (in the same order: memberlist
/// reorders its list once a probe round, and that poll rebuilds for nothing) leaves the table
/// alone, its ages being read as of the last change. Rebuilding it on every poll (every
/// member's metadata decoded, the table cloned and compared) 40 times a second was most of an
/// idle node's CPU at a hundred members.
async fn track_states(inner: std::sync::Weak<Inner>, mut stopped: watch::Receiver<bool>) {
    let mut health: Option<ClusterHealth> = None;
    let mut seen: Vec<Seen> = Vec::new();
    let mut tick = tokio::time::interval(STATE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => return,
        }
        let Some(inner) = inner.upgrade() else { return };
        let states = inner.gossip.member_states().await;
        let unchanged = states.len() == seen.len()
            && states.iter().zip(&seen).all(|(s, seen)| {
                seen.id == *s.node.id()
                    && seen.address == *s.node.address()
                    && seen.state == MemberState::from_gossip(s.state)
                    && seen.incarnation == s.incarnation
                    && seen.meta == *s.node.meta()
            });
        if unchanged {
            continue;
        }
        seen = states
            .iter()
            .map(|s| Seen {
                id: s.node.id().clone(),
                address: *s.node.address(),
                state: MemberState::from_gossip(s.state),
                incarnation: s.incarnation,
                meta: s.node.meta().clone(),
            })
            .collect();
        let mut next = BTreeMap::new();
        for s in states.iter() {
            let id = s.node.id().clone();
            let member = Member {
                id: id.to_string(),
                address: *s.node.address(),
                state: MemberState::from_gossip(s.state),
                incarnation: s.incarnation,
                meta: NodeMeta::decode(s.node.meta()),
                state_age_ms: s.since_change.as_millis() as u64,
                last_heartbeat_ms: None,
                rtt_ms: None,
                local: id == inner.id,
            };
            next.insert(id, member);
        }
        let (previous, _) = std::mem::replace(
            &mut *inner.table.write().expect("table lock"),
            (next.clone(), std::time::Instant::now()),
        );
        report_changes(&inner, &previous, &next);
        // Acks can complete after a member was reaped: keep only current members.
        inner
            .heartbeats
            .seen
            .lock()
            .expect("heartbeat lock")
            .retain(|id, _| next.contains_key(id));
        let members: Vec<Member> = next.values().cloned().collect();
        let now_health = health_of(&members);
        if health != Some(now_health) {
            let alive = members
                .iter()
                .filter(|m| m.state == MemberState::Alive)
                .count();
            let known = members
                .iter()
                .filter(|m| m.state != MemberState::Left)
                .count();
            match now_health {
                ClusterHealth::Healthy => {
                    tracing::info!(
                        alive,
                        known,
                        "cluster health: HEALTHY ({alive}/{known} members alive)"
                    )
                }
                ClusterHealth::NotHealthy => {
                    tracing::warn!(
                        alive,
                        known,
                        "cluster health: NOT HEALTHY ({alive}/{known} members alive)"
                    )
                }
            }
            health = Some(now_health);
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn push_event(inner: &Inner, event: MembershipEvent) {
    let mut history = inner.history.lock().expect("history lock");
    if history.len() == EVENT_HISTORY {
        history.pop_front();
    }
    history.push_back(event);
}

fn record(inner: &Inner, change: &ClusterChange) {
    let (member, kind) = match change {
        ClusterChange::Joined(m) => (m, MembershipEventKind::Joined),
        ClusterChange::StateChanged { member, .. } => (
            member,
            match member.state {
                MemberState::Alive => MembershipEventKind::Alive,
                MemberState::Suspect => MembershipEventKind::Suspect,
                MemberState::Dead => MembershipEventKind::Dead,
                MemberState::Left => MembershipEventKind::Left,
            },
        ),
        ClusterChange::Updated(_) | ClusterChange::Reaped { .. } => return,
    };
    push_event(
        inner,
        MembershipEvent {
            at_ms: unix_ms(),
            id: member.id.clone(),
            node_name: member.meta.as_ref().map(|m| m.node_name.clone()),
            address: Some(member.address),
            kind,
        },
    );
}

fn report_changes(inner: &Inner, previous: &BTreeMap<Id, Member>, next: &BTreeMap<Id, Member>) {
    let name = |m: &Member| {
        m.meta.as_ref().map_or_else(
            || m.id.clone(),
            |meta| format!("{} ({})", meta.node_name, m.id),
        )
    };
    for (id, member) in next {
        if member.local {
            continue;
        }
        let change = match previous.get(id) {
            None => {
                tracing::info!(node = %name(member), addr = %member.address, state = ?member.state, "node {} joined", name(member));
                ClusterChange::Joined(member.clone())
            }
            Some(old) if old.state != member.state => {
                let who = name(member);
                match member.state {
                    MemberState::Suspect => {
                        inner.suspicions_raised.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(node = %who, "node {who} marked as suspect")
                    }
                    MemberState::Dead => tracing::warn!(node = %who, "node {who} marked as dead"),
                    MemberState::Left => tracing::info!(node = %who, "node {who} left the cluster"),
                    MemberState::Alive => {
                        if old.state == MemberState::Suspect {
                            inner.suspicions_refuted.fetch_add(1, Ordering::Relaxed);
                        }
                        tracing::info!(node = %who, from = ?old.state, "node {who} is alive again")
                    }
                }
                ClusterChange::StateChanged {
                    member: member.clone(),
                    from: old.state,
                }
            }
            Some(old) if old.meta != member.meta || old.address != member.address => {
                ClusterChange::Updated(member.clone())
            }
            Some(_) => continue,
        };
        record(inner, &change);
        let _ = inner.changes.send(change);
    }
    for (id, old) in previous {
        if !next.contains_key(id) && !old.local {
            tracing::info!(node = %name(old), "node {} removed from the member list", name(old));
            push_event(
                inner,
                MembershipEvent {
                    at_ms: unix_ms(),
                    id: id.to_string(),
                    node_name: old.meta.as_ref().map(|m| m.node_name.clone()),
                    address: Some(old.address),
                    kind: MembershipEventKind::Removed,
                },
            );
            let _ = inner
                .changes
                .send(ClusterChange::Reaped { id: id.to_string() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (docs/reliability.md): 11 bytes, once decrypted, claimed a 3.9 GB
    /// decompressed size and the decoder allocated it. The vendored decoder now refuses any
    /// claim over 64 MiB before allocating.
    #[tokio::test]
    async fn a_packet_claiming_gigabytes_uncompressed_is_refused_before_allocating() {
        use memberlist::agnostic::tokio::TokioRuntime;
        use memberlist::bytes::BytesMut;
        use memberlist::proto::ProtoDecoder;
        let packet = [
            0x0e, 0x04, 0x54, 0xe7, 0x00, 0x01, 0x7a, 0x01, 0x00, 0x03, 0x72,
        ];
        let mut decoder = ProtoDecoder::new();
        decoder.with_offload_size(usize::MAX);
        let err = decoder
            .decode::<TokioRuntime>(BytesMut::from(&packet[..]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("byte limit"), "{err}");
    }

    fn options() -> ClusterOptions {
        ClusterOptions {
            name: "t".into(),
            bind: "127.0.0.1:0".parse().unwrap(),
            advertise: None,
            keys: vec![SecretKey::new([1; 32])],
            probe_interval: Duration::from_millis(300),
            probe_timeout: Duration::from_millis(200),
            suspicion_multiplier: 4,
            suspicion_max_timeout_multiplier: 3,
            awareness_max_multiplier: 8,
            gossip_interval: Duration::from_millis(50),
            gossip_nodes: 4,
            retransmit_multiplier: 4,
            push_pull_interval: Duration::from_secs(5),
            dead_node_reap: Duration::from_secs(60),
        }
    }

    #[test]
    fn suspicion_timeouts_follow_memberlist_formula() {
        let o = options();
        // 3 nodes: too few to confirm, so min == max = 4 x 1 x 300 ms.
        let three = o.suspicion_timeouts(3);
        assert_eq!((three.min_ms, three.max_ms), (1200, 1200));
        assert_eq!(three.confirmations_needed, 0);
        // 25 nodes: 4 x log10(25) x 300 ms, up to 3x that without confirmations.
        let many = o.suspicion_timeouts(25);
        assert_eq!(many.min_ms, 1677);
        assert_eq!(many.max_ms, 5032);
        assert_eq!(many.confirmations_needed, 2);
    }
}
