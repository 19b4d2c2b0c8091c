//! The deterministic network simulator: many nodes' shared state in one process, talking over
//! an in-memory network under paused tokio time, so a scenario of minutes runs in milliseconds
//! and its faults come from a seeded generator.
//!
//! The network delivers each message after the link's latency plus a random share of its
//! jitter (so messages reorder), drops a share of datagrams, duplicates a share, and honours
//! one-way cuts. Membership is the test's to set: every node starts seeing every other alive,
//! and [`SimNet::partition`] / [`SimNet::heal`] / [`SimNet::crash`] change both the links and
//! the views at once, as a converged failure detector would (its timing is the cluster
//! crate's to prove, not this one's).
//!
//! Determinism: the faults (which message is lost, delayed by how much, duplicated) are drawn
//! from the seed in the order messages are sent, and a current-thread runtime runs tasks in a
//! fixed order. Nodes built with [`SimTransport::state`] take their origin id from the seed and
//! their wall clock from simulated time (a fixed date at the start, plus the node's skew), so
//! a busy machine cannot set their clocks apart; what is not pinned is hash map order, so a
//! seed reproduces the network's behaviour, not every interleaving.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::mpsc;

use crate::transport::{Peer, PeerChange, PeerState, Sent, Transport};
use crate::{Origin, SharedState, StateOptions};

/// The simulated wall clock at a scenario's start (2026-01-01T00:00:00Z): a fixed date, so
/// bucket boundaries fall at the same simulated instants in every run of a seed.
const SIM_EPOCH_MS: u64 = 1_767_225_600_000;

/// Inbox depth per node, as the cluster layer's.
const INBOX: usize = 4096;

/// How links behave.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub latency: Duration,
    /// Up to this much more, drawn per message.
    pub jitter: Duration,
    /// Share of datagrams lost (reliable sends are not).
    pub loss: f64,
    /// Share of messages delivered twice.
    pub duplicate: f64,
}

impl Link {
    /// A LAN: 0.2 ms, a little jitter, 1% loss.
    pub const LAN: Link = Link {
        latency: Duration::from_micros(200),
        jitter: Duration::from_micros(100),
        loss: 0.01,
        duplicate: 0.0,
    };
    /// A WAN between regions: 20 ms and 10 ms of jitter.
    pub const WAN: Link = Link {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(10),
        loss: 0.01,
        duplicate: 0.0,
    };
    /// Perfect, instant-ish links.
    pub const IDEAL: Link = Link {
        latency: Duration::from_micros(100),
        jitter: Duration::ZERO,
        loss: 0.0,
        duplicate: 0.0,
    };
}

struct Node {
    id: String,
    inbox: Option<mpsc::Sender<Bytes>>,
    /// Its view of the others.
    view: HashMap<SocketAddr, PeerState>,
    subscribers: Vec<mpsc::UnboundedSender<PeerChange>>,
    /// Listed by nobody (see [`SimNet::stranger`]).
    stranger: bool,
    /// The region it counts in (see [`SimNet::join_in_region`]).
    region: Option<String>,
}

struct Net {
    rng: StdRng,
    link: Link,
    /// Links between nodes of different regions (see [`SimNet::between_regions`]).
    between: Link,
    nodes: HashMap<SocketAddr, Node>,
    /// (from, to) pairs whose messages vanish.
    cut: HashSet<(SocketAddr, SocketAddr)>,
    next: u32,
}

/// The simulated network; cheap to clone.
#[derive(Clone)]
pub struct SimNet {
    net: Arc<Mutex<Net>>,
    /// Bytes each node sent.
    sent: Arc<Mutex<HashMap<SocketAddr, Arc<AtomicU64>>>>,
    /// Whom each node sent to.
    destinations: Arc<Mutex<HashMap<SocketAddr, HashSet<SocketAddr>>>>,
    /// Messages dropped at a full inbox.
    inbox_full: Arc<AtomicU64>,
    /// Simulated time at the start: what [`SimNet::wall_ms`] counts from.
    started: tokio::time::Instant,
    pub seed: u64,
}

impl SimNet {
    pub fn new(seed: u64, link: Link) -> Self {
        Self {
            net: Arc::new(Mutex::new(Net {
                rng: StdRng::seed_from_u64(seed),
                link,
                between: link,
                nodes: HashMap::new(),
                cut: HashSet::new(),
                next: 1,
            })),
            sent: Arc::default(),
            destinations: Arc::default(),
            inbox_full: Arc::default(),
            started: tokio::time::Instant::now(),
            seed,
        }
    }

    /// The simulated wall clock, in Unix milliseconds.
    pub fn wall_ms(&self) -> u64 {
        SIM_EPOCH_MS + self.started.elapsed().as_millis() as u64
    }

    /// A new member named `id`, seen alive by every node and seeing them alive.
    pub fn join(&self, id: &str) -> Arc<SimTransport> {
        self.join_skewed(id, 0)
    }

    /// [`SimNet::join`] for a node whose wall clock is `skew_ms` ahead (behind, if negative).
    pub fn join_skewed(&self, id: &str, skew_ms: i64) -> Arc<SimTransport> {
        let address = self.next_address();
        self.attach(id, address, true, skew_ms)
    }

    /// Messages between nodes of different regions take `link` from now on (those inside a
    /// region, and those of nodes with no region, the network's own).
    pub fn between_regions(&self, link: Link) {
        self.net.lock().expect("sim net").between = link;
    }

    /// [`SimNet::join`] for a node of `region`: its peers see the region in its membership,
    /// as a node in several clusters advertises it.
    pub fn join_in_region(&self, id: &str, region: &str) -> Arc<SimTransport> {
        let node = self.join(id);
        if let Some(n) = self
            .net
            .lock()
            .expect("sim net")
            .nodes
            .get_mut(&node.address)
        {
            n.region = Some(region.to_string());
        }
        node
    }

    fn next_address(&self) -> SocketAddr {
        let mut net = self.net.lock().expect("sim net");
        let n = net.next;
        net.next += 1;
        let [_, a, b, c] = n.to_be_bytes();
        SocketAddr::from((Ipv4Addr::new(10, a, b, c), 7946))
    }

    /// A node on the network that no member lists (and that lists nobody): what it sends
    /// arrives, as from a holder of the cluster key that never joined.
    pub fn stranger(&self, id: &str) -> Arc<SimTransport> {
        let address = self.next_address();
        self.attach(id, address, false, 0)
    }

    /// A crashed member back at its address with its id (a new process run).
    pub fn restart(&self, address: SocketAddr) -> Arc<SimTransport> {
        let id = self.net.lock().expect("sim net").nodes[&address].id.clone();
        self.attach(&id, address, true, 0)
    }

    fn attach(
        &self,
        id: &str,
        address: SocketAddr,
        member: bool,
        skew_ms: i64,
    ) -> Arc<SimTransport> {
        let (tx, rx) = mpsc::channel(INBOX);
        let mut net = self.net.lock().expect("sim net");
        let others: Vec<SocketAddr> = if member {
            net.nodes
                .iter()
                .filter(|(a, n)| **a != address && !n.stranger)
                .map(|(a, _)| *a)
                .collect()
        } else {
            Vec::new()
        };
        let view = others.iter().map(|a| (*a, PeerState::Alive)).collect();
        net.nodes.insert(
            address,
            Node {
                id: id.to_string(),
                inbox: Some(tx),
                view,
                subscribers: Vec::new(),
                stranger: !member,
                region: None,
            },
        );
        for other in others {
            set_view(&mut net, other, address, PeerState::Alive);
        }
        let sent = self
            .sent
            .lock()
            .expect("sim sent")
            .entry(address)
            .or_default()
            .clone();
        Arc::new(SimTransport {
            net: self.clone(),
            address,
            id: id.to_string(),
            inbox: Mutex::new(Some(rx)),
            sent,
            skew_ms,
        })
    }

    /// Cuts every link between the two groups both ways, and each side sees the other dead.
    pub fn partition(&self, a: &[SocketAddr], b: &[SocketAddr]) {
        let mut net = self.net.lock().expect("sim net");
        for &x in a {
            for &y in b {
                net.cut.insert((x, y));
                net.cut.insert((y, x));
                set_view(&mut net, x, y, PeerState::Dead);
                set_view(&mut net, y, x, PeerState::Dead);
            }
        }
    }

    /// Cuts `from -> to` only; views unchanged (what a detector has not noticed yet).
    pub fn cut_one_way(&self, from: SocketAddr, to: SocketAddr) {
        self.net.lock().expect("sim net").cut.insert((from, to));
    }

    /// Every link restored; every running node sees every other running node alive.
    pub fn heal(&self) {
        let mut net = self.net.lock().expect("sim net");
        net.cut.clear();
        let running: Vec<SocketAddr> = net
            .nodes
            .iter()
            .filter(|(_, n)| n.inbox.is_some())
            .map(|(a, _)| *a)
            .collect();
        for &x in &running {
            for &y in &running {
                if x != y {
                    set_view(&mut net, x, y, PeerState::Alive);
                }
            }
        }
    }

    /// The node stops receiving (its process is gone); the others see it dead.
    pub fn crash(&self, address: SocketAddr) {
        let mut net = self.net.lock().expect("sim net");
        if let Some(n) = net.nodes.get_mut(&address) {
            n.inbox = None;
            n.subscribers.clear();
        }
        let others: Vec<SocketAddr> = net
            .nodes
            .keys()
            .copied()
            .filter(|a| *a != address)
            .collect();
        for other in others {
            set_view(&mut net, other, address, PeerState::Dead);
        }
    }

    /// Bytes node `address` has sent so far.
    pub fn bytes_sent(&self, address: SocketAddr) -> u64 {
        self.sent
            .lock()
            .expect("sim sent")
            .get(&address)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Messages dropped so far because the receiver's inbox was full (a receiver that fell
    /// behind, as the cluster layer drops them).
    pub fn inbox_dropped(&self) -> u64 {
        self.inbox_full.load(Ordering::Relaxed)
    }

    /// How many distinct nodes `address` has sent to.
    pub fn destinations(&self, address: SocketAddr) -> usize {
        self.destinations
            .lock()
            .expect("sim destinations")
            .get(&address)
            .map_or(0, HashSet::len)
    }

    /// Delivers `msg` from `from` to `to` by the link's rules; `reliable` messages are not lost
    /// (but a cut still swallows them, and the sender hears of it).
    fn deliver(
        &self,
        from: SocketAddr,
        to: SocketAddr,
        msg: Bytes,
        reliable: bool,
    ) -> Result<(), String> {
        self.destinations
            .lock()
            .expect("sim destinations")
            .entry(from)
            .or_default()
            .insert(to);
        let (inbox, delays) = {
            let mut net = self.net.lock().expect("sim net");
            let region = |a: &SocketAddr| net.nodes.get(a).and_then(|n| n.region.as_ref());
            let link = match (region(&from), region(&to)) {
                (Some(a), Some(b)) if a != b => net.between,
                _ => net.link,
            };
            let cut = net.cut.contains(&(from, to));
            let inbox = net.nodes.get(&to).and_then(|n| n.inbox.clone());
            let lost = !reliable && net.rng.random_bool(link.loss.clamp(0.0, 1.0));
            let copies = if net.rng.random_bool(link.duplicate.clamp(0.0, 1.0)) {
                2
            } else {
                1
            };
            let mut delays = Vec::new();
            for _ in 0..copies {
                let jitter = if link.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    link.jitter.mul_f64(net.rng.random::<f64>())
                };
                delays.push(link.latency + jitter);
            }
            match inbox {
                Some(inbox) if !cut => (if lost { None } else { Some(inbox) }, delays),
                _ if reliable => return Err(format!("{to} unreachable")),
                _ => (None, delays),
            }
        };
        if let Some(inbox) = inbox {
            for delay in delays {
                let (inbox, msg) = (inbox.clone(), msg.clone());
                let full = self.inbox_full.clone();
                #[expect(
                    clippy::disallowed_methods,
                    reason = "one simulated packet in flight: ends after its delay"
                )]
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Err(mpsc::error::TrySendError::Full(_)) = inbox.try_send(msg) {
                        full.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
        Ok(())
    }
}

/// Records `observer`'s view of `subject` and tells its subscribers.
fn set_view(net: &mut Net, observer: SocketAddr, subject: SocketAddr, state: PeerState) {
    let Some(node) = net.nodes.get_mut(&observer) else {
        return;
    };
    let before = node.view.insert(subject, state);
    if before == Some(state) {
        return;
    }
    let change = if state == PeerState::Alive {
        PeerChange::Back(subject)
    } else {
        PeerChange::Changed
    };
    node.subscribers.retain(|s| s.send(change.clone()).is_ok());
}

/// One simulated node's view of the network.
pub struct SimTransport {
    net: SimNet,
    pub address: SocketAddr,
    id: String,
    inbox: Mutex<Option<mpsc::Receiver<Bytes>>>,
    sent: Arc<AtomicU64>,
    skew_ms: i64,
}

impl SimTransport {
    /// This node's shared state (not attached yet), its origin drawn from the seed and its
    /// clock set from simulated time.
    pub fn state(&self, options: StateOptions) -> SharedState {
        let origin = self.net.net.lock().expect("sim net").rng.random::<u64>();
        let wall = self.net.wall_ms().saturating_add_signed(self.skew_ms);
        SharedState::with_clock(options, Origin(origin | 1), wall)
    }
}

impl Transport for SimTransport {
    fn local_id(&self) -> String {
        self.id.clone()
    }

    fn members(&self) -> Vec<Peer> {
        let net = self.net.net.lock().expect("sim net");
        let mut members = vec![Peer {
            id: self.id.clone(),
            address: self.address,
            state: PeerState::Alive,
            local: true,
            region: net.nodes.get(&self.address).and_then(|n| n.region.clone()),
        }];
        if let Some(me) = net.nodes.get(&self.address) {
            for (address, state) in &me.view {
                members.push(Peer {
                    id: net.nodes[address].id.clone(),
                    address: *address,
                    state: *state,
                    local: false,
                    region: net.nodes[address].region.clone(),
                });
            }
        }
        members
    }

    fn subscribe(&self) -> mpsc::UnboundedReceiver<PeerChange> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(me) = self
            .net
            .net
            .lock()
            .expect("sim net")
            .nodes
            .get_mut(&self.address)
        {
            me.subscribers.push(tx);
        }
        rx
    }

    fn take_inbox(&self) -> Option<mpsc::Receiver<Bytes>> {
        self.inbox.lock().expect("sim inbox").take()
    }

    fn messages_dropped(&self) -> u64 {
        0
    }

    fn packet_max(&self) -> usize {
        1200
    }

    fn send(&self, to: SocketAddr, msg: Bytes) -> Sent<'_> {
        self.sent.fetch_add(msg.len() as u64, Ordering::Relaxed);
        let result = self.net.deliver(self.address, to, msg, false);
        Box::pin(async move { result })
    }

    fn send_reliable(&self, to: SocketAddr, msg: Bytes) -> Sent<'_> {
        self.sent.fetch_add(msg.len() as u64, Ordering::Relaxed);
        let result = self.net.deliver(self.address, to, msg, true);
        Box::pin(async move { result })
    }
}
