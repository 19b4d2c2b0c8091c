use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::send::{chunks, send};
use super::{Decision, LateCheck, Limit, Mode, Shared, SharedState, note_rejection};
use crate::CounterKey;
use crate::wire::{Check, Msg, Verdict};

/// How long after the strict timeout an owner's late answer is still waited for, as a multiple
/// of `state.strict_timeout`: past it, the request is counted here.
const LATE_ANSWER_TIMEOUTS: u32 = 4;

impl SharedState {
    pub(super) async fn forward_check(
        &self,
        key: &CounterKey,
        window: usize,
        limit: Limit,
        cost: u64,
        owner: String,
        addr: SocketAddr,
    ) -> Decision {
        let id = self.inner.next_check.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner.pending.lock().expect("pending").insert(id, tx);
        let check = Check {
            id,
            key: key.clone(),
            window: window as u8,
            limit: limit.max,
            cost,
        };
        self.inner
            .stats
            .strict_forwarded
            .fetch_add(1, Ordering::Relaxed);
        let sent = self.inner.forward.send((addr, check)).is_ok();
        let mut rx = rx;
        let answer = if sent {
            tokio::time::timeout(self.inner.options.strict_timeout, &mut rx)
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        // Sent and unanswered: the owner may have counted it and only be late to say so.
        let owner_may_count = sent && answer.is_none();
        if !owner_may_count {
            self.inner.pending.lock().expect("pending").remove(&id);
        }
        let why = match answer {
            Some(Some(v)) => {
                return Decision {
                    allowed: v.allowed,
                    count: v.count,
                    mode: Mode::Strict,
                    decided_by: owner,
                    degraded: None,
                    totals: v.totals,
                };
            }
            Some(None) => {
                format!(
                    "owner {owner} is still replaying the cluster's state; decided from local counts"
                )
            }
            None => format!(
                "owner {owner} did not answer within {} ms; decided from local counts",
                self.inner.options.strict_timeout.as_millis()
            ),
        };
        self.inner
            .stats
            .strict_degraded
            .fetch_add(1, Ordering::Relaxed);
        note_rejection(&self.inner, "strict check degraded to eventual", &why);
        let (allowed, count, totals) =
            self.decide_here(key, window, limit.max, cost, !owner_may_count);
        if owner_may_count {
            if allowed {
                self.await_late_answer(id, key, cost, rx);
            } else {
                self.inner.pending.lock().expect("pending").remove(&id);
            }
        }
        Decision {
            allowed,
            count,
            mode: Mode::Eventual,
            decided_by: self.node_id(),
            degraded: Some(why),
            totals,
        }
    }

    /// Holds an admitted check whose owner was too slow as pending until the owner's answer
    /// says whether it counted the request; without an answer, counts it here (a lost answer
    /// may so count a request twice, never not at all).
    fn await_late_answer(
        &self,
        id: u64,
        key: &CounterKey,
        cost: u64,
        rx: oneshot::Receiver<Option<Verdict>>,
    ) {
        let inner = self.inner.clone();
        let at_ms = inner.clock.now_ms();
        let late = LateCheck {
            key: key.clone(),
            cost,
            at_ms,
        };
        {
            let mut pending = inner.late.lock().expect("late");
            pending.insert(id, late);
            inner.any_late.store(true, Ordering::Release);
        }
        let wait = inner.options.strict_timeout * LATE_ANSWER_TIMEOUTS;
        #[expect(
            clippy::disallowed_methods,
            reason = "a timer of one check: ends with the owner's answer or after `wait`"
        )]
        tokio::spawn(async move {
            let answer = tokio::time::timeout(wait, rx).await;
            inner.pending.lock().expect("pending").remove(&id);
            let owner_counted = matches!(answer, Ok(Ok(Some(ref v))) if v.allowed);
            let removed = {
                let mut pending = inner.late.lock().expect("late");
                let removed = pending.remove(&id);
                inner.any_late.store(!pending.is_empty(), Ordering::Release);
                removed
            };
            let Some(late) = removed else {
                return;
            };
            if owner_counted {
                inner.stats.strict_late.fetch_add(1, Ordering::Relaxed);
            } else {
                inner.replica.increment(&late.key, late.cost, late.at_ms);
            }
        });
    }
}

/// Counts every late strict check still waiting for its owner's answer: the node is stopping,
/// and counting one twice beats losing it.
pub(super) fn count_late_checks(inner: &Shared) {
    let late = {
        let mut pending = inner.late.lock().expect("late");
        inner.any_late.store(false, Ordering::Release);
        std::mem::take(&mut *pending)
    };
    for (_, l) in late {
        inner.replica.increment(&l.key, l.cost, l.at_ms);
    }
}

/// Sends queued strict checks, all those waiting for one owner in as few messages as fit.
pub(super) async fn forward_loop(
    inner: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<(SocketAddr, Check)>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            c = rx.recv() => match c { Some(c) => c, None => return },
        };
        let mut by_owner: HashMap<SocketAddr, Vec<Check>> = HashMap::new();
        by_owner.entry(first.0).or_default().push(first.1);
        while let Ok((addr, check)) = rx.try_recv() {
            by_owner.entry(addr).or_default().push(check);
        }
        for (addr, checks) in by_owner {
            for chunk in chunks(checks, 8) {
                send(&inner, addr, Msg::Checks(chunk));
            }
        }
    }
}
