//! The data plane's threads: one single-threaded runtime per core. Each accepts from every
//! resource port and serves the connections it accepts from start to end, with upstream
//! connections of its own, so a request is never handed to another thread and never wakes
//! one. On the node's shared multi-threaded runtime, every request woke the other worker
//! (a `futex` call per request or so, and its cache lines moving between cores).
//!
//! The ports stay bound once, by the node (no `SO_REUSEPORT`: a second process cannot bind
//! them); each core polls its own handle of the same listening socket. A core that accepts a
//! connection while another holds fewer hands it over (`shoal_http::Spread`): left alone, the
//! core awake when a burst of connections arrived took all of them.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::forward::Upstreams;

/// How often each core's runtime wakes with nothing to do. Without a timer this close, every
/// request woke its own thread through the runtime's eventfd (a `write` system call and an
/// extra `epoll` event each): tokio's timer wakes the thread whenever a timer is set earlier
/// than the earliest one it parked with, and the timer hyper sets for the next request's
/// headers (30 s) is earlier than the request's own (the upstream timeout, 60 s) it parked
/// with while waiting for the upstream. With one always due within this, neither is.
const TIMER_ANCHOR: Duration = Duration::from_secs(1);

/// The running cores; they stop when this is dropped (their tasks with them: the data plane
/// drains its listeners before).
pub(crate) struct Cores {
    cores: Vec<Core>,
    _stop: DropGuard,
}

/// One core's runtime and what its requests use.
#[derive(Clone)]
pub(crate) struct Core {
    pub handle: Handle,
    pub upstreams: Arc<Upstreams>,
}

impl Cores {
    /// `count` threads (at least one), each with its own pool of upstream connections. Each
    /// runtime is made on its own thread and dropped there, never inside the caller's async
    /// context; on an error the threads already started stop.
    pub(crate) fn start(count: usize, upstreams: impl Fn() -> Upstreams) -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        let guard = stop.clone().drop_guard();
        let mut cores = Vec::new();
        for i in 0..count.max(1) {
            let (started, handle) = std::sync::mpsc::sync_channel(1);
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("shoal-data-{i}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    match runtime {
                        Ok(runtime) => {
                            let _ = started.send(Ok(runtime.handle().clone()));
                            runtime.block_on(async {
                                let mut anchor = tokio::time::interval(TIMER_ANCHOR);
                                loop {
                                    tokio::select! {
                                        () = stop.cancelled() => break,
                                        _ = anchor.tick() => {}
                                    }
                                }
                            });
                        }
                        Err(e) => {
                            let _ = started.send(Err(e));
                        }
                    }
                })?;
            let handle = handle.recv().map_err(|_| {
                std::io::Error::other("a data-plane thread ended before its runtime started")
            })??;
            cores.push(Core {
                handle,
                upstreams: Arc::new(upstreams()),
            });
        }
        Ok(Self {
            cores,
            _stop: guard,
        })
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Core> {
        self.cores.iter()
    }
}
