//! UDP broadcast, for a local network without any registry: every round each node broadcasts
//! a signed announcement of its gossip address, and listens for the others'. Announcements are
//! authenticated with HMAC-SHA256 under the cluster's pre-shared key, carry the cluster name
//! and a timestamp, and are dropped when the signature, the cluster or the time (±60 s) is
//! wrong: a host without the key cannot make nodes join it, and a recorded announcement stops
//! working after a minute.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use shoal_config::UdpDiscovery;
use tokio::net::UdpSocket;
use tokio::sync::OnceCell;

use crate::{Announce, Discover, DiscoveryError};

const METHOD: &str = "udp";
/// Announcements older or newer than this are refused (replays, clocks far apart).
const MAX_SKEW_MS: u64 = 60_000;
/// How long a rejected sender stays quiet in the log before it is reported again.
const WARN_PERIOD: Duration = Duration::from_secs(600);
/// Largest datagram read: an announcement is a few hundred bytes.
const MAX_DATAGRAM: usize = 1024;

#[derive(Serialize, Deserialize)]
struct Announcement {
    v: u8,
    cluster: String,
    id: String,
    addr: SocketAddr,
    ts: u64,
}

/// What the listener learned: node id → (gossip address, when last heard).
type Heard = Arc<Mutex<HashMap<String, (SocketAddr, Instant)>>>;

pub struct Udp {
    config: UdpDiscovery,
    me: Announce,
    key: hmac::Key,
    /// A peer not heard for this long is forgotten.
    forget_after: Duration,
    /// Every peer announces once per interval (plus jitter): listening this long hears all.
    listen_before_trusting: Duration,
    started: std::sync::OnceLock<Instant>,
    /// The listener task, stopped when the provider is dropped.
    listener: std::sync::OnceLock<tokio::task::AbortHandle>,
    socket: OnceCell<Arc<UdpSocket>>,
    heard: Heard,
}

fn invalid(message: String) -> DiscoveryError {
    DiscoveryError::Invalid {
        method: METHOD,
        message,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `<hex signature> <json>`: the signature covers the exact JSON bytes.
fn seal(key: &hmac::Key, a: &Announcement) -> Vec<u8> {
    let body = serde_json::to_vec(a).expect("an announcement serializes");
    let tag = hmac::sign(key, &body);
    let mut out = hex::encode(tag.as_ref()).into_bytes();
    out.push(b' ');
    out.extend_from_slice(&body);
    out
}

/// The announcement if it is signed with our key, for our cluster, and recent.
fn open(key: &hmac::Key, cluster: &str, datagram: &[u8]) -> Result<Announcement, &'static str> {
    let split = datagram
        .iter()
        .position(|&b| b == b' ')
        .ok_or("not an announcement")?;
    let (tag, body) = (&datagram[..split], &datagram[split + 1..]);
    let tag = hex::decode(tag).map_err(|_| "not an announcement")?;
    hmac::verify(key, body, &tag).map_err(|_| "bad signature (another key)")?;
    let a: Announcement = serde_json::from_slice(body).map_err(|_| "malformed announcement")?;
    if a.v != 1 {
        return Err("unknown announcement version");
    }
    if a.cluster != cluster {
        return Err("another cluster");
    }
    if now_ms().abs_diff(a.ts) > MAX_SKEW_MS {
        return Err("stale or future timestamp");
    }
    Ok(a)
}

impl Udp {
    pub fn new(config: &UdpDiscovery, me: Announce, interval: Duration) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, me.key.expose());
        Self {
            config: config.clone(),
            me,
            key,
            forget_after: interval * 3,
            listen_before_trusting: interval.mul_f64(1.3),
            started: std::sync::OnceLock::new(),
            listener: std::sync::OnceLock::new(),
            socket: OnceCell::new(),
            heard: Arc::default(),
        }
    }

    /// Binds the listening socket and starts the listener at the first round.
    async fn socket(&self) -> Result<&Arc<UdpSocket>, DiscoveryError> {
        self.socket
            .get_or_try_init(|| async {
                let socket = UdpSocket::bind(self.config.listen).await.map_err(|e| {
                    invalid(format!(
                        "cannot listen on {} (discovery.udp.listen): {e}",
                        self.config.listen
                    ))
                })?;
                socket
                    .set_broadcast(true)
                    .map_err(|e| invalid(format!("cannot enable broadcast: {e}")))?;
                let socket = Arc::new(socket);
                self.started.get_or_init(Instant::now);
                #[expect(
                    clippy::disallowed_methods,
                    reason = "a child of the discovery task: aborted when the discoverer is dropped"
                )]
                let task = tokio::spawn(listen(
                    socket.clone(),
                    self.key.clone(),
                    self.me.cluster.clone(),
                    self.me.id.clone(),
                    self.heard.clone(),
                ));
                let _ = self.listener.set(task.abort_handle());
                Ok(socket)
            })
            .await
    }
}

impl Drop for Udp {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.get() {
            listener.abort();
        }
    }
}

/// Receives announcements until the provider is dropped (which aborts this task); a bad one
/// is logged (once per sender and reason in each ten-minute period) and ignored.
async fn listen(
    socket: Arc<UdpSocket>,
    key: hmac::Key,
    cluster: String,
    own_id: String,
    heard: Heard,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut warned: HashMap<(std::net::IpAddr, &'static str), ()> = HashMap::new();
    let mut warned_since = Instant::now();
    loop {
        let received = socket.recv_from(&mut buf).await;
        if warned_since.elapsed() > WARN_PERIOD {
            warned.clear();
            warned_since = Instant::now();
        }
        let (n, from) = match received {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(method = METHOD, "udp discovery receive failed: {e}");
                continue;
            }
        };
        match open(&key, &cluster, &buf[..n]) {
            Ok(a) if a.id == own_id => {}
            Ok(a) => {
                heard
                    .lock()
                    .expect("heard")
                    .insert(a.id, (a.addr, Instant::now()));
            }
            Err(why) => {
                if warned.len() < 1024 && warned.insert((from.ip(), why), ()).is_none() {
                    tracing::warn!(
                        method = METHOD,
                        from = %from,
                        "udp discovery: ignoring a datagram: {why}"
                    );
                }
            }
        }
    }
}

impl Discover for Udp {
    fn method(&self) -> &'static str {
        METHOD
    }

    fn settled(&self) -> bool {
        self.started
            .get()
            .is_some_and(|t| t.elapsed() >= self.listen_before_trusting)
    }

    /// Announces this node, then returns the peers heard recently.
    fn discover(&self) -> BoxFuture<'_, Result<Vec<SocketAddr>, DiscoveryError>> {
        Box::pin(async move {
            let socket = self.socket().await?;
            let datagram = seal(
                &self.key,
                &Announcement {
                    v: 1,
                    cluster: self.me.cluster.clone(),
                    id: self.me.id.clone(),
                    addr: self.me.addr,
                    ts: now_ms(),
                },
            );
            let mut sent = 0;
            let mut last_error = None;
            for target in &self.config.broadcast {
                match socket.send_to(&datagram, target).await {
                    Ok(_) => sent += 1,
                    Err(e) => last_error = Some(format!("{target}: {e}")),
                }
            }
            if sent == 0 {
                return Err(invalid(format!(
                    "could not broadcast to any of discovery.udp.broadcast ({})",
                    last_error.unwrap_or_else(|| "none configured".into())
                )));
            }
            let mut heard = self.heard.lock().expect("heard");
            heard.retain(|_, (_, at)| at.elapsed() < self.forget_after);
            let mut out: Vec<SocketAddr> = heard.values().map(|(a, _)| *a).collect();
            out.sort();
            out.dedup();
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &[byte; 32])
    }

    fn announcement(ts: u64) -> Announcement {
        Announcement {
            v: 1,
            cluster: "prod".into(),
            id: "n1".into(),
            addr: "10.0.0.1:7946".parse().unwrap(),
            ts,
        }
    }

    #[test]
    fn only_signed_recent_announcements_of_our_cluster_are_accepted() {
        let sealed = seal(&key(1), &announcement(now_ms()));
        assert_eq!(open(&key(1), "prod", &sealed).unwrap().id, "n1");
        assert_eq!(
            open(&key(2), "prod", &sealed).err(),
            Some("bad signature (another key)")
        );
        assert_eq!(
            open(&key(1), "staging", &sealed).err(),
            Some("another cluster")
        );
        let old = seal(&key(1), &announcement(now_ms() - 2 * MAX_SKEW_MS));
        assert_eq!(
            open(&key(1), "prod", &old).err(),
            Some("stale or future timestamp")
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 2;
        tampered[last] ^= 1;
        assert!(open(&key(1), "prod", &tampered).is_err());
        assert_eq!(
            open(&key(1), "prod", b"garbage").err(),
            Some("not an announcement")
        );
    }
}
