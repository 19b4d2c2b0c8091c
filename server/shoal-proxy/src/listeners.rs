//! One listener per resource port, following the config revisions: a new port starts serving,
//! a removed one stops accepting and drains its connections, a changed resource takes effect
//! on the next request (every request reads the routes of the revision in force).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use shoal_config::{ProxyConfig, SecretKey};
use shoal_lifecycle::Stage;
use shoal_model::{AuditSink, ConfigHandle};
use shoal_state::{Services, SharedState};

use crate::revocations::Revocations;
use shoal_policy::NodeFacts;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::cores::Cores;
use crate::cors::{Cors, Refused};
use crate::decision::{Ctx, Facts, Node, Refusal, audit};
use crate::forward::Upstreams;
use crate::http_api::{self, error};
use crate::instruments::Instruments;
use crate::routes::{RouteKind, Routes};
use crate::s3;

#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub address: IpAddr,
    pub upstream_connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub max_header_bytes: usize,
    /// The most client connections all resource ports hold open together.
    pub max_connections: usize,
    /// How long a removed listener's connections may take to finish.
    pub drain_grace: Duration,
    /// Opens the sealed S3 secrets (users' keys, resources' upstream keys).
    pub secrets_key: Option<SecretKey>,
    /// Private CAs (PEM) trusted for `https://` upstreams besides the bundled roots.
    pub upstream_ca_pem: Option<String>,
    /// This node's name, as policies read it (`input.node.name`).
    pub node: String,
}

/// How often ports that could not be bound are tried again.
const BIND_RETRY: Duration = Duration::from_secs(5);

/// A client has this long to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

impl ProxyOptions {
    pub fn from_config(
        c: &ProxyConfig,
        drain_grace: Duration,
        secrets_key: Option<SecretKey>,
        node: &str,
    ) -> Self {
        Self {
            address: c.address,
            upstream_connect_timeout: c.upstream_connect_timeout,
            upstream_timeout: c.upstream_timeout,
            max_header_bytes: c.max_header_bytes,
            max_connections: c.max_connections,
            drain_grace,
            secrets_key,
            upstream_ca_pem: c.upstream_ca_pem().map(str::to_string),
            node: node.to_string(),
        }
    }
}

/// What every listener of the data plane shares.
struct Shared {
    /// The counters' shared state (`services.counters`).
    state: SharedState,
    services: Services,
    /// `input.node`, the same for every request.
    node_facts: NodeFacts,
    revocations: Arc<Revocations>,
    audit: Arc<dyn AuditSink>,
    options: ProxyOptions,
    routes: ArcSwapOption<Routes>,
    policy_errors: Arc<AtomicU64>,
    instruments: Instruments,
    /// Shared by every resource port.
    connections: Arc<shoal_http::ConnectionLimit>,
}

/// The data plane of one node; cheap to clone.
#[derive(Clone)]
pub struct DataPlane {
    shared: Arc<Shared>,
}

impl DataPlane {
    /// Starts following `config` as the task `data plane` of `stage`: listeners come and go
    /// with the revisions until the stage stops, then drain. Every decision's audit line goes
    /// to `audit`; request figures are recorded with `meter`'s instruments. Requests are
    /// served on threads of the data plane's own, one per core the process may use; an
    /// error is a thread or runtime that could not be made.
    pub fn spawn(
        config: ConfigHandle,
        services: Services,
        audit: Arc<dyn AuditSink>,
        options: ProxyOptions,
        meter: &shoal_telemetry::Meter,
        stage: &Stage,
    ) -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let cores = Cores::start(cores, || {
            Upstreams::new(
                options.upstream_connect_timeout,
                options.upstream_ca_pem.as_deref(),
            )
        })?;
        let policy_errors = Arc::new(AtomicU64::new(0));
        let connections = shoal_http::ConnectionLimit::new(options.max_connections);
        let shared = Arc::new(Shared {
            state: services.counters.clone(),
            node_facts: NodeFacts::new(&options.node, &services.region),
            services,
            revocations: Arc::default(),
            audit,
            options,
            routes: ArcSwapOption::empty(),
            instruments: Instruments::new(meter, policy_errors.clone(), connections.clone()),
            policy_errors,
            connections,
        });
        stage.spawn(
            "data plane",
            follow(shared.clone(), cores, config, stage.token()),
        );
        stage.spawn(
            "revocations",
            crate::revocations::follow(
                shared.services.events.clone(),
                shared.revocations.clone(),
                stage.token(),
            ),
        );
        Ok(Self { shared })
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

/// `cores` run until this returns, after every listener has drained.
async fn follow(shared: Arc<Shared>, cores: Cores, config: ConfigHandle, stop: CancellationToken) {
    let mut status = config.subscribe();
    let mut listeners: HashMap<u16, Listener> = HashMap::new();
    let mut draining = JoinSet::new();
    let mut applied: Option<i64> = None;
    let mut retry = tokio::time::interval(BIND_RETRY);
    loop {
        if let Some(snapshot) = config.current()
            && applied != Some(snapshot.revision)
        {
            let (routes, warnings) = Routes::build(
                &snapshot,
                shared.state.window_names(),
                shared.options.secrets_key.as_ref(),
            );
            for w in &warnings {
                tracing::warn!(revision = snapshot.revision, "data plane: {w}");
            }
            let routes = Arc::new(routes);
            shared.routes.store(Some(routes.clone()));
            reconcile(&shared, &cores, &routes, &mut listeners, &mut draining).await;
            applied = Some(snapshot.revision);
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = status.changed() => if changed.is_err() { break },
            _ = retry.tick() => {
                // Ports that could not be bound (still in use) are tried again.
                if let Some(routes) = shared.routes.load_full()
                    && routes.by_port.keys().any(|p| !listeners.contains_key(p))
                {
                    reconcile(&shared, &cores, &routes, &mut listeners, &mut draining).await;
                }
            }
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
    cores: &Cores,
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
                    "data plane: cannot listen: {e}; trying again every 5 s"
                );
                continue;
            }
        };
        let stop = CancellationToken::new();
        let served = match serve_on_cores(cores, listener, shared, *port, &stop) {
            Ok(served) => served,
            Err(e) => {
                tracing::error!(
                    resource = %route.name,
                    %addr,
                    "data plane: cannot share the listener with its threads: {e}; trying again every 5 s"
                );
                continue;
            }
        };
        draining.spawn(served);
        tracing::info!(resource = %route.name, %addr, "data plane listening");
        listeners.insert(*port, Listener { stop });
    }
}

/// Serves `listener` on every core until `stop`; the future returned ends when every core
/// has drained it.
fn serve_on_cores(
    cores: &Cores,
    listener: tokio::net::TcpListener,
    shared: &Arc<Shared>,
    port: u16,
    stop: &CancellationToken,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let listener = listener.into_std()?;
    // Every core's handle made before any core starts: a failure leaves nothing serving.
    let handles = cores
        .iter()
        .map(|_| listener.try_clone())
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut served = Vec::new();
    let shares = shoal_http::Spread::shares(handles.len());
    for ((core, listener), share) in cores.iter().zip(handles).zip(shares) {
        let (shared, stop, upstreams) = (shared.clone(), stop.clone(), core.upstreams.clone());
        served.push(core.handle.spawn(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    serve_listener(listener, shared, upstreams, port, share, stop).await
                }
                Err(e) => tracing::error!(port, "data plane: a thread cannot poll the port: {e}"),
            }
        }));
    }
    Ok(async move {
        for core in served {
            // A core's task ends only by finishing or with its runtime (the node stopping).
            let _ = core.await;
        }
    })
}

/// Serves one resource port on this core until `stop`, then lets open requests finish for up
/// to the drain grace.
async fn serve_listener(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    upstreams: Arc<Upstreams>,
    port: u16,
    share: shoal_http::Share,
    stop: CancellationToken,
) {
    let limits = shoal_http::Limits {
        label: "data plane",
        header_read_timeout: HEADER_READ_TIMEOUT,
        // The backstop; `serve` refuses smaller excesses with a message of its own.
        max_head_bytes: shared.options.max_header_bytes + 64 * 1024,
        max_header_list_bytes: shared.options.max_header_bytes as u32,
        drain_grace: shared.options.drain_grace,
        connections: Some(shared.connections.clone()),
    };
    shoal_http::serve(listener, &limits, stop, Some(share), |peer| {
        let (shared, upstreams) = (shared.clone(), upstreams.clone());
        // The caller's address as text, made once per connection: every request's input,
        // audit line and X-Forwarded-For carry it.
        let peer: Arc<str> = peer.ip().to_string().into();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let (shared, upstreams, peer) = (shared.clone(), upstreams.clone(), peer.clone());
            async move {
                Ok::<_, std::convert::Infallible>(
                    serve(shared, &upstreams, port, peer, req.map(Body::new)).await,
                )
            }
        })
    })
    .await;
}

/// `peer`: the caller's address, as text.
async fn serve(
    shared: Arc<Shared>,
    upstreams: &Upstreams,
    port: u16,
    peer: Arc<str>,
    req: Request<Body>,
) -> Response<Body> {
    let started = Instant::now();
    // Written straight into its text: `to_string` goes through the formatting machinery.
    let request_id = uuid::Uuid::new_v4()
        .hyphenated()
        .encode_lower(&mut uuid::Uuid::encode_buffer())
        .to_owned();
    let span = tracing::info_span!(
        target: "shoal::trace",
        "request",
        otel.name = %req.method(),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %req.method(),
        url.path = req.uri().path(),
        server.port = i64::from(port),
        client.address = &*peer,
        shoal.request_id = %request_id,
        shoal.resource = tracing::field::Empty,
        shoal.outcome = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    shoal_telemetry::continue_trace(&span, req.headers());
    let method = req.method().clone();
    // Boxed where it is made: hyper would keep room for the request's future in every
    // connection, idle or not, and every wrapper and await would copy it again. The kinds'
    // own futures (the S3 kind's is some 8 KB) are boxed inside it in the same way.
    let (response, resource) = Box::pin(route_and_handle(
        &shared,
        upstreams,
        port,
        &peer,
        req,
        &request_id,
        started,
    ))
    .instrument(span.clone())
    .await;
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    if let Some(resource) = resource {
        shared
            .instruments
            .request(&resource, &method, status, started.elapsed());
    }
    response
}

/// A browser's preflight, answered from the resource's CORS rules without identifying anyone:
/// it carries no credential, so no policy sees it and nothing reaches the upstream. A refusal
/// is the kind's error, audited (a page asking for what the resource does not allow is worth
/// knowing about); an allowed preflight is not, as it reads and changes nothing.
async fn preflight(ctx: &Ctx<'_>, headers: &HeaderMap, uri: &Uri) -> Response<Body> {
    let route = ctx.route;
    let answer = match route.cors.preflight(&route.name, headers) {
        Ok(answer) => answer,
        Err(Refused(message)) => {
            tracing::info!(request_id = ctx.request_id, resource = %route.name, "preflight refused: {message}");
            let code = match route.kind {
                RouteKind::S3(_) => "AccessForbidden",
                RouteKind::Http { .. } => "cors",
            };
            let refusal = Refusal::new("preflight_refused", StatusCode::FORBIDDEN, code, message);
            let path = uri.path();
            let facts = Facts {
                method: Method::OPTIONS.as_str(),
                path,
                bucket: None,
                counted: &route.name,
                key: None,
                operation: None,
                copy_source: None,
                headers,
                secret_header: None,
                query: uri.query(),
            };
            // An audit line that cannot be kept changes nothing here: the preflight is
            // refused either way.
            let _ = audit(ctx, None, &facts, Some(&refusal)).await;
            return match route.kind {
                RouteKind::S3(_) => s3::s3_error(&refusal, path, ctx.request_id),
                RouteKind::Http { .. } => {
                    error(refusal.status, code, &refusal.message, ctx.request_id)
                }
            };
        }
    };
    let mut response = Response::new(Body::empty());
    *response.headers_mut() = answer;
    response
}

/// The request's resource (by port) and its kind's handling; the resource is `None` when the
/// request was refused before one was known.
async fn route_and_handle(
    shared: &Arc<Shared>,
    upstreams: &Upstreams,
    port: u16,
    peer: &str,
    req: Request<Body>,
    request_id: &str,
    started: Instant,
) -> (Response<Body>, Option<String>) {
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > shared.options.max_header_bytes {
        let response = error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            &format!(
                "request headers are {header_bytes} bytes; this node accepts at most {} (proxy.max_header_bytes)",
                shared.options.max_header_bytes
            ),
            request_id,
        );
        return (response, None);
    }
    let routes = shared.routes.load_full();
    let route = routes.as_ref().and_then(|r| r.by_port.get(&port).cloned());
    let (Some(routes), Some(route)) = (routes, route) else {
        let response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this port no longer serves a resource",
            request_id,
        );
        return (response, None);
    };
    tracing::Span::current().record("shoal.resource", route.name.as_str());
    let ctx = Ctx {
        node: Node {
            state: &shared.state,
            services: &shared.services,
            facts: &shared.node_facts,
            revocations: &shared.revocations,
            audit: shared.audit.as_ref(),
            instruments: &shared.instruments,
            policy_errors: &shared.policy_errors,
        },
        upstreams,
        upstream_timeout: shared.options.upstream_timeout,
        routes: &routes,
        route: &route,
        peer_ip: peer,
        request_id,
        started,
        reach: shared.state.reach(),
        global_note: std::sync::OnceLock::new(),
        would_block: std::sync::Mutex::default(),
    };
    if Cors::is_preflight(req.method(), req.headers()) {
        return (
            preflight(&ctx, req.headers(), req.uri()).await,
            Some(route.name.clone()),
        );
    }
    let method = req.method().clone();
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Each kind's handling boxed where it is made: the S3 kind's future is several times the
    // HTTP kind's, and an HTTP request should neither copy nor hold room for it.
    let mut response = match &route.kind {
        RouteKind::Http {
            upstream,
            api_key_header,
        } => Box::pin(http_api::handle(&ctx, (upstream, api_key_header), req)).await,
        RouteKind::S3(s3_route) => Box::pin(s3::handle(&ctx, s3_route, req)).await,
    };
    route
        .cors
        .decorate(origin.as_deref(), &method, response.headers_mut());
    if let Some(note) = ctx.global_note.get()
        && let Ok(value) = axum::http::HeaderValue::from_str(note)
    {
        response
            .headers_mut()
            .insert("x-shoal-global-decision", value);
    }
    (response, Some(route.name.clone()))
}
