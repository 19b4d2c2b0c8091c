//! mDNS / DNS-SD on the local link: every node publishes itself as an instance of
//! `_shoal._tcp.local.` (instance name: its node id) and browses the others. The TXT record
//! carries the cluster name, the gossip address and an HMAC-SHA256 of both under the
//! cluster's primary key; instances of another cluster or with a bad signature are ignored.
//! Only the interface that holds the node's gossip address takes part.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aws_lc_rs::hmac;
use futures_util::future::BoxFuture;
use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::OnceCell;

use crate::{Announce, Discover, DiscoveryError};

const METHOD: &str = "mdns";
/// The DNS-SD service type every Shoal node publishes and browses.
pub const MDNS_SERVICE: &str = "_shoal._tcp.local.";

/// Instances found: fullname → gossip address.
type Found = Arc<Mutex<HashMap<String, SocketAddr>>>;

/// How long to browse before an empty answer is believed (queries are answered within a
/// second or so on a quiet link).
const BROWSE_BEFORE_TRUSTING: std::time::Duration = std::time::Duration::from_secs(3);

pub struct Mdns {
    me: Announce,
    key: hmac::Key,
    started: std::sync::OnceLock<std::time::Instant>,
    daemon: OnceCell<(ServiceDaemon, String)>,
    found: Found,
}

fn invalid(message: String) -> DiscoveryError {
    DiscoveryError::Invalid {
        method: METHOD,
        message,
    }
}

fn signed_text(cluster: &str, id: &str, addr: &str) -> String {
    format!("{cluster}\n{id}\n{addr}")
}

impl Mdns {
    pub fn new(me: Announce) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, me.key.expose());
        Self {
            me,
            key,
            started: std::sync::OnceLock::new(),
            daemon: OnceCell::new(),
            found: Arc::default(),
        }
    }

    /// Starts the responder on the gossip interface, publishes this node and starts browsing.
    async fn daemon(&self) -> Result<&(ServiceDaemon, String), DiscoveryError> {
        self.daemon
            .get_or_try_init(|| async {
                let fail = |what: &str, e: mdns_sd::Error| invalid(format!("{what}: {e}"));
                let daemon = ServiceDaemon::new().map_err(|e| fail("cannot start mDNS", e))?;
                if let Err(e) = daemon
                    .disable_interface(IfKind::All)
                    .and_then(|()| daemon.enable_interface(IfKind::Addr(self.me.addr.ip())))
                {
                    let _ = daemon.shutdown();
                    return Err(fail("cannot select the gossip interface", e));
                }
                let addr = self.me.addr.to_string();
                let sig = hmac::sign(
                    &self.key,
                    signed_text(&self.me.cluster, &self.me.id, &addr).as_bytes(),
                );
                let properties = [
                    ("cluster", self.me.cluster.clone()),
                    ("addr", addr),
                    ("sig", hex::encode(sig.as_ref())),
                ];
                let info = ServiceInfo::new(
                    MDNS_SERVICE,
                    &self.me.id,
                    &format!("{}.local.", self.me.id),
                    self.me.addr.ip(),
                    self.me.addr.port(),
                    &properties[..],
                )
                .map_err(|e| fail("invalid service record", e))?;
                let fullname = info.get_fullname().to_string();
                if let Err(e) = daemon.register(info) {
                    let _ = daemon.shutdown();
                    return Err(fail("cannot publish this node", e));
                }
                let events = match daemon.browse(MDNS_SERVICE) {
                    Ok(events) => events,
                    Err(e) => {
                        let _ = daemon.shutdown();
                        return Err(fail("cannot browse", e));
                    }
                };
                self.started.get_or_init(std::time::Instant::now);
                #[expect(
                    clippy::disallowed_methods,
                    reason = "ends when the mDNS daemon stops and closes its browse channel"
                )]
                tokio::spawn(follow(
                    events,
                    self.key.clone(),
                    self.me.cluster.clone(),
                    fullname.clone(),
                    self.found.clone(),
                ));
                Ok((daemon, fullname))
            })
            .await
    }
}

/// Keeps `found` in step with the browse events until the daemon stops.
async fn follow(
    events: mdns_sd::Receiver<ServiceEvent>,
    key: hmac::Key,
    cluster: String,
    own: String,
    found: Found,
) {
    while let Ok(event) = events.recv_async().await {
        match event {
            ServiceEvent::ServiceResolved(r) if r.fullname != own => {
                let text = |k: &str| r.txt_properties.get_property_val_str(k).map(str::to_string);
                let (Some(their_cluster), Some(addr), Some(sig)) =
                    (text("cluster"), text("addr"), text("sig"))
                else {
                    continue;
                };
                let id = r
                    .fullname
                    .strip_suffix(&format!(".{MDNS_SERVICE}"))
                    .unwrap_or(&r.fullname)
                    .to_string();
                let valid = their_cluster == cluster
                    && hex::decode(&sig).is_ok_and(|sig| {
                        hmac::verify(&key, signed_text(&cluster, &id, &addr).as_bytes(), &sig)
                            .is_ok()
                    });
                match addr.parse::<SocketAddr>() {
                    Ok(a) if valid => {
                        found.lock().expect("found").insert(r.fullname.clone(), a);
                    }
                    _ => tracing::warn!(
                        method = METHOD,
                        instance = %r.fullname,
                        "mdns discovery: ignoring an instance of another cluster or with a bad \
                         signature"
                    ),
                }
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                found.lock().expect("found").remove(&fullname);
            }
            _ => {}
        }
    }
}

impl Discover for Mdns {
    fn method(&self) -> &'static str {
        METHOD
    }

    fn settled(&self) -> bool {
        self.started
            .get()
            .is_some_and(|t| t.elapsed() >= BROWSE_BEFORE_TRUSTING)
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<SocketAddr>, DiscoveryError>> {
        Box::pin(async move {
            self.daemon().await?;
            let mut out: Vec<SocketAddr> = self
                .found
                .lock()
                .expect("found")
                .values()
                .copied()
                .collect();
            out.sort();
            out.dedup();
            Ok(out)
        })
    }

    /// Withdraws this node's record (a goodbye packet), then stops the responder.
    fn leave(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some((daemon, fullname)) = self.daemon.get() {
                if let Ok(done) = daemon.unregister(fullname) {
                    let _ = done.recv_async().await;
                }
                let _ = daemon.shutdown();
            }
        })
    }
}
