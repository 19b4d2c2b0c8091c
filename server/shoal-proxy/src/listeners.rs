//! One listener per resource port, following the config revisions: a new port starts serving,
//! a removed one stops accepting and drains its connections, a changed resource takes effect
//! on the next request (every request reads the routes of the revision in force).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{Request, Response, StatusCode};
use shoal_config::ProxyConfig;
use shoal_control_plane::ConfigHandle;
use shoal_state::SharedState;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::forward::{Upstreams, client};
use crate::http_api::{self, error};
use crate::routes::Routes;

#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub address: IpAddr,
    pub upstream_connect_timeout: Duration,
    pub upstream_timeout: Duration,
    /// How long a removed listener's connections may take to finish.
    pub drain_grace: Duration,
}

impl ProxyOptions {
    pub fn from_config(c: &ProxyConfig, drain_grace: Duration) -> Self {
        Self {
            address: c.address,
            upstream_connect_timeout: c.upstream_connect_timeout,
            upstream_timeout: c.upstream_timeout,
            drain_grace,
        }
    }
}

pub(crate) struct Shared {
    pub state: SharedState,
    pub options: ProxyOptions,
    pub upstreams: Upstreams,
    pub routes: ArcSwapOption<Routes>,
    pub policy_errors: AtomicU64,
}

/// The data plane of one node; cheap to clone.
#[derive(Clone)]
pub struct DataPlane {
    shared: Arc<Shared>,
}

impl DataPlane {
    /// Starts following `config`: listeners come and go with the revisions until `stop`.
    pub fn spawn(
        config: ConfigHandle,
        state: SharedState,
        options: ProxyOptions,
        stop: CancellationToken,
        tasks: &mut JoinSet<()>,
    ) -> Self {
        let shared = Arc::new(Shared {
            state,
            upstreams: client(options.upstream_connect_timeout),
            options,
            routes: ArcSwapOption::empty(),
            policy_errors: AtomicU64::new(0),
        });
        tasks.spawn(follow(shared.clone(), config, stop));
        Self { shared }
    }

    /// What the data plane serves now (for `/ready` and the console).
    pub fn status(&self) -> DataPlaneStatus {
        let routes = self.shared.routes.load();
        let mut resources: Vec<(String, u16)> = routes.as_ref().map_or_else(Vec::new, |r| {
            r.by_port
                .iter()
                .map(|(p, route)| (route.name.clone(), *p))
                .collect()
        });
        resources.sort();
        DataPlaneStatus {
            revision: routes.as_ref().map(|r| r.revision),
            resources,
            policy_errors: self
                .shared
                .policy_errors
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DataPlaneStatus {
    /// The config revision the routes come from.
    pub revision: Option<i64>,
    /// (resource, port) pairs served.
    pub resources: Vec<(String, u16)>,
    /// Policy evaluations that failed (each refused its request).
    pub policy_errors: u64,
}

struct Listener {
    stop: CancellationToken,
}

async fn follow(shared: Arc<Shared>, config: ConfigHandle, stop: CancellationToken) {
    let mut status = config.subscribe();
    let mut listeners: HashMap<u16, Listener> = HashMap::new();
    let mut draining = JoinSet::new();
    let mut applied: Option<i64> = None;
    loop {
        if let Some(snapshot) = config.current()
            && applied != Some(snapshot.revision)
        {
            let (routes, warnings) = Routes::build(&snapshot, shared.state.window_names());
            for w in &warnings {
                tracing::warn!(revision = snapshot.revision, "data plane: {w}");
            }
            let routes = Arc::new(routes);
            shared.routes.store(Some(routes.clone()));
            reconcile(&shared, &routes, &mut listeners, &mut draining).await;
            applied = Some(snapshot.revision);
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = status.changed() => if changed.is_err() { break },
            Some(_) = draining.join_next(), if !draining.is_empty() => {}
        }
    }
    for (_, l) in listeners.drain() {
        l.stop.cancel();
    }
    while draining.join_next().await.is_some() {}
}

async fn reconcile(
    shared: &Arc<Shared>,
    routes: &Routes,
    listeners: &mut HashMap<u16, Listener>,
    draining: &mut JoinSet<()>,
) {
    listeners.retain(|port, l| {
        let keep = routes.by_port.contains_key(port);
        if !keep {
            tracing::info!(port, "data plane: resource removed, draining its listener");
            l.stop.cancel();
        }
        keep
    });
    for (port, route) in &routes.by_port {
        if listeners.contains_key(port) {
            continue;
        }
        let addr = SocketAddr::new(shared.options.address, *port);
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(
                    resource = %route.name,
                    %addr,
                    "data plane: cannot listen: {e}; retried at the next revision"
                );
                continue;
            }
        };
        let stop = CancellationToken::new();
        let app = Router::new()
            .fallback(serve)
            .with_state((shared.clone(), *port));
        let grace = shared.options.drain_grace;
        let token = stop.clone();
        draining.spawn(async move {
            let stopped = token.clone();
            let server = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(token.cancelled_owned());
            tokio::select! {
                result = server => if let Err(e) = result {
                    tracing::warn!(%addr, "data plane listener stopped: {e}");
                },
                _ = async { stopped.cancelled().await; tokio::time::sleep(grace).await } => {
                    tracing::warn!(%addr, "data plane: connections still open after the drain grace; closed");
                }
            }
        });
        tracing::info!(resource = %route.name, %addr, "data plane listening");
        listeners.insert(*port, Listener { stop });
    }
}

async fn serve(
    State((shared, port)): State<(Arc<Shared>, u16)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response<Body> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let routes = shared.routes.load_full();
    let route = routes.as_ref().and_then(|r| r.by_port.get(&port).cloned());
    let (Some(routes), Some(route)) = (routes, route) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this port no longer serves a resource",
            &request_id,
        );
    };
    http_api::handle(&shared, &routes, &route, req, peer, &request_id).await
}
