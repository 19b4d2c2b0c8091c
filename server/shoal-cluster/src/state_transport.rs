//! The cluster as shared state's [`Transport`]: members, their changes, and the encrypted
//! sends, mapped onto `shoal-state`'s own types.

use std::net::SocketAddr;

use shoal_state::{Peer, PeerChange, PeerState, Sent, Transport};
use tokio::sync::{broadcast, mpsc};

use crate::{Bytes, Cluster, ClusterChange, MemberState, PACKET_MESSAGE_MAX};

fn peer_state(state: MemberState) -> PeerState {
    match state {
        MemberState::Alive => PeerState::Alive,
        MemberState::Suspect => PeerState::Suspect,
        MemberState::Dead => PeerState::Dead,
        MemberState::Left => PeerState::Left,
    }
}

impl Transport for Cluster {
    fn local_id(&self) -> String {
        Cluster::local_id(self).to_string()
    }

    fn members(&self) -> Vec<Peer> {
        Cluster::members(self)
            .into_iter()
            .map(|m| Peer {
                id: m.id,
                address: m.address,
                state: peer_state(m.state),
                local: m.local,
                region: m.meta.and_then(|meta| meta.region),
            })
            .collect()
    }

    fn subscribe(&self) -> mpsc::UnboundedReceiver<PeerChange> {
        let mut changes = Cluster::subscribe(self);
        let (tx, rx) = mpsc::unbounded_channel();
        #[expect(
            clippy::disallowed_methods,
            reason = "a relay: ends when the cluster's channel closes or the subscriber goes"
        )]
        tokio::spawn(async move {
            loop {
                let change = match changes.recv().await {
                    Ok(ClusterChange::Joined(m)) => PeerChange::Back(m.address),
                    Ok(ClusterChange::StateChanged { member, .. })
                        if member.state == MemberState::Alive =>
                    {
                        PeerChange::Back(member.address)
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => PeerChange::Changed,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if tx.send(change).is_err() {
                    return;
                }
            }
        });
        rx
    }

    fn take_inbox(&self) -> Option<mpsc::Receiver<Bytes>> {
        self.messages()
    }

    fn messages_dropped(&self) -> u64 {
        Cluster::messages_dropped(self)
    }

    fn packet_max(&self) -> usize {
        PACKET_MESSAGE_MAX
    }

    fn send(&self, to: SocketAddr, msg: Bytes) -> Sent<'_> {
        Box::pin(async move {
            Cluster::send(self, to, msg)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn send_reliable(&self, to: SocketAddr, msg: Bytes) -> Sent<'_> {
        Box::pin(async move {
            Cluster::send_reliable(self, to, msg)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
