//! The data plane's threads: one single-threaded runtime per core. Each accepts from every
//! resource port and serves the connections it accepts from start to end, with upstream
//! connections of its own, so a request is never handed to another thread and never wakes
//! one. On the node's shared multi-threaded runtime, every request woke the other worker
//! (a `futex` call per request or so, and its cache lines moving between cores).
//!
//! The ports stay bound once, by the node (no `SO_REUSEPORT`: a second process cannot bind
//! them); each core polls its own handle of the same listening socket, and the first to
//! accept a connection keeps it.

use std::sync::Arc;

use tokio::runtime::Handle;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::forward::Upstreams;

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
    /// `count` threads (at least one), each with its own pool of upstream connections.
    pub(crate) fn start(count: usize, upstreams: impl Fn() -> Upstreams) -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        let mut cores = Vec::new();
        for i in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            cores.push(Core {
                handle: runtime.handle().clone(),
                upstreams: Arc::new(upstreams()),
            });
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("shoal-data-{i}"))
                .spawn(move || runtime.block_on(stop.cancelled()))?;
        }
        Ok(Self {
            cores,
            _stop: stop.drop_guard(),
        })
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Core> {
        self.cores.iter()
    }
}
