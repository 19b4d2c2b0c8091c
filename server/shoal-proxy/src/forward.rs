//! The upstream side: keep-alive HTTP/1.1 connections, pooled per upstream and driven inside
//! the task of the request that uses them. A shared client with a task per connection hands
//! every request and every response over between tasks (and, on a multi-threaded runtime,
//! between threads); on a two-core node those hand-offs cost more than the proxying itself.
//! Here the request's task polls the connection while it waits for the response head, and the
//! response body polls it while it streams, so a request never leaves its task. Bodies stream
//! both ways, never buffered. `https://` upstreams are verified against the bundled Mozilla
//! roots plus `proxy.upstream_ca_file`.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::uri::{Parts, PathAndQuery, Scheme};
use axum::http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::Instrument as _;

/// An idle connection is closed after this long (upstreams usually time out sooner; a
/// connection they closed is noticed and dropped when taken from the pool).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per upstream; more are closed when they come back.
const MAX_IDLE_PER_UPSTREAM: usize = 256;
/// Idle connections kept in all.
const MAX_IDLE_TOTAL: usize = 1024;

/// The per-node pool of upstream connections; cheap to clone.
#[derive(Clone)]
pub(crate) struct Upstreams {
    pool: Arc<Pool>,
}

struct Pool {
    /// By `scheme://host:port`. A list emptied by a checkout stays, so the next checkin does
    /// not allocate its key again; empty lists go once there are more than
    /// [`MAX_IDLE_TOTAL`] keys.
    idle: Mutex<HashMap<String, Vec<Conn>>>,
    /// The targets requests went to, by the upstream URI's authority (plain, then TLS):
    /// worked out once, not on every request. At most [`MAX_IDLE_TOTAL`] are kept (S3
    /// virtual-host upstreams have one per bucket, and bucket names come from callers).
    targets: Mutex<HashMap<Box<str>, PlainAndTls>>,
    connect_timeout: Duration,
    tls: TlsConnector,
}

/// An authority's targets: `http` first, then `https`.
type PlainAndTls = [Option<Arc<Target>>; 2];

/// A connection to an upstream, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// TLS for `https://` upstreams: the bundled Mozilla roots plus the operator's own CAs (PEM
/// text of `proxy.upstream_ca_file`), HTTP/1.1 by ALPN. Certificates that cannot be used are
/// logged and left out.
fn tls_connector(extra_ca_pem: Option<&str>) -> TlsConnector {
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca_pem {
        for (i, cert) in CertificateDer::pem_slice_iter(pem.as_bytes()).enumerate() {
            if let Err(e) = cert
                .map_err(|e| e.to_string())
                .and_then(|c| roots.add(c).map_err(|e| e.to_string()))
            {
                tracing::error!(
                    "proxy.upstream_ca_file: certificate {} cannot be used and is ignored: {e}",
                    i + 1
                );
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

struct Conn {
    sender: SendRequest<Body>,
    /// `None` once the connection has finished: a finished future must not be polled again.
    driver: Option<Driver>,
    idle_since: Instant,
}

impl Conn {
    /// Polls the connection once with no task to wake: a connection the upstream closed (or
    /// that failed) has finished and must not be used again.
    fn usable(&mut self, now: Instant) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.fresh(now) && self.poll_driver(&mut cx).is_pending() && !self.sender.is_closed()
    }

    /// Idle for less than [`IDLE_TIMEOUT`] at `now`: the pool reads the clock once per
    /// checkout or checkin, not once per connection it looks at.
    fn fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.idle_since) < IDLE_TIMEOUT
    }

    /// Drives the connection's I/O; `Ready` once it has finished (closed or failed).
    fn poll_driver(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(driver) = &mut self.driver else {
            return Poll::Ready(());
        };
        if driver.as_mut().poll(cx).is_ready() {
            self.driver = None;
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Upstreams {
    pub(crate) fn new(connect_timeout: Duration, extra_ca_pem: Option<&str>) -> Self {
        Self {
            pool: Arc::new(Pool {
                idle: Mutex::new(HashMap::new()),
                targets: Mutex::new(HashMap::new()),
                connect_timeout,
                tls: tls_connector(extra_ca_pem),
            }),
        }
    }
}

impl Pool {
    fn checkout(&self, key: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        let now = Instant::now();
        while let Some(mut conn) = list.pop() {
            if conn.usable(now) {
                return Some(conn);
            }
        }
        None
    }

    /// `uri`'s target, from the cache when a request went there before.
    fn target(&self, uri: &Uri) -> Result<Arc<Target>, ForwardError> {
        let tls = match uri.scheme_str() {
            Some("http") | None => 0,
            Some("https") => 1,
            // Refused by `Target::of`, never cached under another scheme's entry.
            Some(_) => return Target::of(uri).map(Arc::new),
        };
        let authority = uri.authority().map_or("", |a| a.as_str());
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(target) = targets.get(authority).and_then(|t| t[tls].clone()) {
            return Ok(target);
        }
        let target = Arc::new(Target::of(uri)?);
        if targets.len() < MAX_IDLE_TOTAL || targets.contains_key(authority) {
            targets.entry(authority.into()).or_default()[tls] = Some(target.clone());
        }
        Ok(target)
    }

    fn checkin(&self, key: &str, mut conn: Conn) {
        // Ready for another request only once the last one is completely done both ways (an
        // upstream may answer before it has read the whole request body).
        let now = Instant::now();
        conn.idle_since = now;
        if !conn.usable(now) || !conn.sender.is_ready() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded in total, not only per upstream: virtual-host upstreams are keyed by bucket,
        // and bucket names come from callers. Expired connections go first.
        let total: usize = idle.values().map(Vec::len).sum();
        if total >= MAX_IDLE_TOTAL {
            for list in idle.values_mut() {
                list.retain(|c| c.fresh(now));
            }
            idle.retain(|_, list| !list.is_empty());
            if idle.values().map(Vec::len).sum::<usize>() >= MAX_IDLE_TOTAL {
                return;
            }
        }
        if idle.len() > MAX_IDLE_TOTAL {
            idle.retain(|_, list| !list.is_empty());
        }
        let list = match idle.get_mut(key) {
            Some(list) => list,
            None => idle.entry(key.to_owned()).or_default(),
        };
        list.retain(|c| c.fresh(now));
        if list.len() < MAX_IDLE_PER_UPSTREAM {
            list.push(conn);
        }
    }

    /// A new connection to `target` (`scheme://host:port`), TLS-verified for `https`.
    async fn connect(&self, target: &Target) -> Result<Conn, ForwardError> {
        let failed = |e: &dyn std::fmt::Display| ForwardError {
            status: StatusCode::BAD_GATEWAY,
            message: format!(
                "upstream request failed: cannot connect to {}: {e}",
                target.key
            ),
        };
        let connecting = async {
            let tcp = TcpStream::connect(&target.authority)
                .await
                .map_err(|e| failed(&e))?;
            let _ = tcp.set_nodelay(true);
            if !target.tls {
                return Ok(Stream::Plain(tcp));
            }
            let name = ServerName::try_from(target.host.clone()).map_err(|e| failed(&e))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| failed(&format!("TLS: {e}")))?;
            Ok(Stream::Tls(Box::new(tls)))
        };
        let stream = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| ForwardError {
                status: StatusCode::GATEWAY_TIMEOUT,
                message: format!(
                    "upstream {} did not accept a connection within {} ms",
                    target.key,
                    self.connect_timeout.as_millis()
                ),
            })??;
        let (sender, driver) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| failed(&e))?;
        Ok(Conn {
            sender,
            driver: Some(Box::pin(driver)),
            idle_since: Instant::now(),
        })
    }
}

/// Where a request goes: what to connect to, and the pool key.
struct Target {
    tls: bool,
    host: String,
    /// `host:port`, the port explicit.
    authority: String,
    /// `scheme://host:port`.
    key: String,
    /// The `Host` header a request to it carries when it has none: the host, and the port
    /// when the upstream's address names one.
    host_header: Option<HeaderValue>,
}

impl Target {
    fn of(uri: &Uri) -> Result<Self, ForwardError> {
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") | None => false,
            Some(other) => {
                return Err(ForwardError {
                    status: StatusCode::BAD_GATEWAY,
                    message: format!("upstream scheme {other:?} is not http or https"),
                });
            }
        };
        let Some(host) = uri.host() else {
            return Err(ForwardError {
                status: StatusCode::BAD_GATEWAY,
                message: "the upstream address has no host".into(),
            });
        };
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        // IPv6 literals keep their brackets in `host:port`, not in the TLS server name.
        // Joined by hand: this runs for every request, and `format!` costs several times more.
        let mut port_text = itoa::Buffer::new();
        let authority = [host, ":", port_text.format(port)].concat();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let scheme = if tls { "https://" } else { "http://" };
        let host_header = match uri.port_u16() {
            Some(_) => HeaderValue::from_str(&authority),
            None => HeaderValue::from_str(uri.host().unwrap_or_default()),
        };
        Ok(Self {
            tls,
            key: [scheme, &authority].concat(),
            host,
            authority,
            host_header: host_header.ok(),
        })
    }
}

/// Headers that describe one hop's connection and never travel further (RFC 9110 7.6.1),
/// as names made once rather than parsed on every request and response.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most requests and responses carry none: one look at the few names present is cheaper
    // than eight hashed removals (a thousand instructions per request, measured).
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::try_from(name.trim()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// A connection that ended where an answer was expected.
#[derive(Debug)]
struct Closed(&'static str);

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Closed {}

/// Why a request could not be forwarded: the status to answer with and what to log.
pub(crate) struct ForwardError {
    pub status: StatusCode,
    pub message: String,
}

impl ForwardError {
    /// What the caller is told: the kind of failure, not the upstream's address or the
    /// details of its TLS or connection errors (those are logged with the request id).
    pub(crate) fn caller_message(&self) -> String {
        match self.status {
            StatusCode::GATEWAY_TIMEOUT => "the upstream did not answer in time".into(),
            StatusCode::BAD_REQUEST => self.message.clone(),
            _ => "the upstream request failed; the node's log has the cause under this request id"
                .into(),
        }
    }
}

/// Sends `req` to `upstream` (its path and query appended to the upstream's path), with the
/// request id and the caller's address added.
pub(crate) async fn forward(
    upstreams: &Upstreams,
    upstream: &Uri,
    mut req: Request<Body>,
    request_id: &str,
    peer_ip: &str,
    timeout: Duration,
) -> Result<Response<Body>, ForwardError> {
    let base = upstream.path().trim_end_matches('/');
    let path_and_query = match req.uri().path_and_query() {
        // An upstream without a path of its own (the usual case) takes the request's path and
        // query as they are, already checked, rather than joined and parsed again.
        Some(pq) if base.is_empty() => pq.clone(),
        pq => {
            let joined = format!("{base}{}", pq.map_or("/", |pq| pq.as_str()));
            joined.parse().map_err(|e| unforwardable(&e))?
        }
    };
    *req.uri_mut() = upstream_uri(upstream, path_and_query)?;
    let headers = req.headers_mut();
    headers.remove(header::HOST);
    add_forwarding_headers(headers, request_id, peer_ip);
    send(upstreams, req, timeout).await
}

/// `upstream`'s scheme and authority with another path and query.
fn upstream_uri(upstream: &Uri, path_and_query: PathAndQuery) -> Result<Uri, ForwardError> {
    let mut parts = Parts::default();
    parts.scheme = Some(upstream.scheme().cloned().unwrap_or(Scheme::HTTP));
    parts.authority = upstream.authority().cloned();
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).map_err(|e| unforwardable(&e))
}

fn unforwardable(e: &dyn std::fmt::Display) -> ForwardError {
    ForwardError {
        status: StatusCode::BAD_REQUEST,
        message: format!("request path cannot be forwarded: {e}"),
    }
}

/// Drops the hop-by-hop headers; adds `x-request-id` and the caller to `x-forwarded-for`.
pub(crate) fn add_forwarding_headers(headers: &mut HeaderMap, request_id: &str, peer_ip: &str) {
    strip_hop_by_hop(headers);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    let forwarded = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) => HeaderValue::from_str(&format!("{prior}, {peer_ip}")),
        None => HeaderValue::from_str(peer_ip),
    };
    if let Ok(v) = forwarded {
        headers.insert(X_FORWARDED_FOR, v);
    }
}

type Driver = Pin<Box<Connection<TokioIo<Stream>, Body>>>;

/// Polls the connection alongside `fut` until `fut` is done: the connection does its I/O only
/// while someone polls it. `Err` if the connection finished without `fut` getting its result.
async fn drive<F: Future>(conn: &mut Conn, fut: F) -> Result<F::Output, ()> {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if conn.poll_driver(cx).is_ready() {
            // An upstream that closes after its answer finishes the connection in the same
            // poll that delivers the answer: `fut` has its result now or never.
            return match fut.as_mut().poll(cx) {
                Poll::Ready(out) => Poll::Ready(Ok(out)),
                Poll::Pending => Poll::Ready(Err(())),
            };
        }
        Poll::Pending
    })
    .await
}

/// Sends a prepared request; the response streams back without its hop-by-hop headers.
/// The call is the request's `upstream` span, whose trace context the upstream receives.
pub(crate) async fn send(
    upstreams: &Upstreams,
    mut req: Request<Body>,
    timeout: Duration,
) -> Result<Response<Body>, ForwardError> {
    let target = upstreams.pool.target(req.uri())?;
    let span = tracing::info_span!(
        target: "shoal::trace",
        "upstream",
        otel.name = %req.method(),
        otel.kind = "client",
        server.address = %target.authority,
        http.request.method = %req.method(),
        http.response.status_code = tracing::field::Empty,
    );
    shoal_telemetry::inject_trace_context(&span, req.headers_mut());
    let sent = exchange(upstreams, target, req, timeout)
        .instrument(span.clone())
        .await;
    match &sent {
        Ok(response) => {
            span.record(
                "http.response.status_code",
                i64::from(response.status().as_u16()),
            );
        }
        Err(e) => shoal_telemetry::record_error(&span, &e.message),
    }
    sent
}

async fn exchange(
    upstreams: &Upstreams,
    target: Arc<Target>,
    req: Request<Body>,
    timeout: Duration,
) -> Result<Response<Body>, ForwardError> {
    let request_id = req.headers().get(X_REQUEST_ID).cloned();
    let mut req = req;
    // hyper's connection-level client writes the request line and headers as given: the
    // upstream gets origin form (`GET /path?query`) and a Host header, as from any client.
    if let Some(host) = &target.host_header
        && !req.headers().contains_key(header::HOST)
    {
        req.headers_mut().insert(header::HOST, host.clone());
    }
    let mut origin_form = Parts::default();
    origin_form.path_and_query = Some(
        req.uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    *req.uri_mut() = Uri::from_parts(origin_form).map_err(|e| unforwardable(&e))?;
    // The answer must come within `timeout` of the last progress: of the request body's
    // last byte (an upload may take far longer than that), or of its latest chunk.
    let progress = Progress::new();
    // A request without a body (most) has no progress to mark.
    let req = if req.body().is_end_stream() {
        req
    } else {
        req.map(|body| {
            Body::new(Tracked {
                body,
                progress: progress.clone(),
            })
        })
    };
    let failed = |e: &dyn std::error::Error| {
        // hyper's errors name their kind; the cause (a TLS alert, a body that failed its
        // chunk signature) is in the source chain.
        let mut message = format!("upstream request failed: {e}");
        let mut source = e.source();
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        ForwardError {
            status: StatusCode::BAD_GATEWAY,
            message,
        }
    };
    let pool = &upstreams.pool;
    let exchange = async {
        let mut req = req;
        // A pooled connection the upstream closed meanwhile gives the request back unsent:
        // it is sent again, once, on a new connection.
        let mut pooled = pool.checkout(&target.key);
        loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(c) => c,
                None => pool.connect(&target).await?,
            };
            let ready = poll_fn(|cx| {
                if let Poll::Ready(r) = conn.sender.poll_ready(cx) {
                    return Poll::Ready(r.is_ok());
                }
                if conn.poll_driver(cx).is_ready() {
                    return Poll::Ready(false);
                }
                Poll::Pending
            })
            .await;
            if !ready {
                if reused {
                    continue;
                }
                return Err(failed(&Closed(
                    "the connection closed before the request was sent",
                )));
            }
            let sending = conn.sender.try_send_request(req);
            match drive(&mut conn, sending).await {
                Ok(Ok(response)) => return Ok((response, conn)),
                Ok(Err(mut e)) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(failed(&e.into_error())),
                },
                Err(()) => return Err(failed(&Closed("the upstream closed the connection"))),
            }
        }
    };
    // One timer per request: it waits for the answer here, then for the body's frames.
    let mut timer = Box::pin(tokio::time::sleep(timeout));
    let answered = {
        let mut exchange = pin!(exchange);
        poll_fn(|cx| {
            if let Poll::Ready(result) = exchange.as_mut().poll(cx) {
                return Poll::Ready(Some(result));
            }
            progress.stalled(timer.as_mut(), timeout, cx).map(|()| None)
        })
        .await
    };
    let Some(answered) = answered else {
        return Err(ForwardError {
            status: StatusCode::GATEWAY_TIMEOUT,
            message: format!("upstream did not answer within {} ms", timeout.as_millis()),
        });
    };
    let (response, conn) = answered?;
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = Streamed {
        body,
        conn: Some(conn),
        pool: upstreams.pool.clone(),
        target,
        idle: timer,
        waiting: false,
        timeout,
        request_id,
    };
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// When the request body last moved, shared between the body and the timer.
#[derive(Clone)]
struct Progress(Arc<Mutex<Instant>>);

impl Progress {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }

    fn touch(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// `Ready` once nothing has moved for `timeout`; `timer` is moved to the last movement's
    /// deadline whenever it fires early.
    fn stalled(
        &self,
        mut timer: Pin<&mut tokio::time::Sleep>,
        timeout: Duration,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        while timer.as_mut().poll(cx).is_ready() {
            let last = *self.0.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= timeout {
                return Poll::Ready(());
            }
            timer.as_mut().reset((last + timeout).into());
        }
        Poll::Pending
    }
}

/// The request body, marking progress as it is sent upstream.
struct Tracked {
    body: Body,
    progress: Progress,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if frame.is_ready() {
            self.progress.touch();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The upstream's response body, driving its connection as it is read; the connection goes
/// back to the pool when the body has ended (also when nobody reads an empty body, as for
/// HEAD), and is closed if the body is dropped unfinished.
struct Streamed {
    body: Incoming,
    conn: Option<Conn>,
    pool: Arc<Pool>,
    target: Arc<Target>,
    /// Fires when the upstream has sent nothing for `timeout` while the body waited for it: a
    /// stalled body ends in an error instead of holding the request (and its connection)
    /// indefinitely. Armed only when a read finds nothing, so a body that is there when it is
    /// read (most small ones) costs no timer operation.
    idle: Pin<Box<tokio::time::Sleep>>,
    /// `idle` is armed for the current wait.
    waiting: bool,
    timeout: Duration,
    request_id: Option<HeaderValue>,
}

/// The upstream stopped sending its response body.
#[derive(Debug)]
struct Stalled(Duration);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the upstream sent nothing of its response body for {} ms",
            self.0.as_millis()
        )
    }
}

impl std::error::Error for Stalled {}

impl Streamed {
    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.checkin(&self.target.key, conn);
        }
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        if self.body.is_end_stream() {
            self.release();
        }
    }
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(conn) = &mut this.conn
            && conn.poll_driver(cx).is_ready()
        {
            // Closed after (or while) sending the body: what was read still comes out below.
            this.conn = None;
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if frame.is_pending() {
            if !this.waiting {
                this.waiting = true;
                let deadline = tokio::time::Instant::now() + this.timeout;
                this.idle.as_mut().reset(deadline);
            }
            if this.idle.as_mut().poll(cx).is_ready() {
                let request_id = this.request_id.as_ref().and_then(|v| v.to_str().ok());
                tracing::warn!(request_id, "{}; response cut off", Stalled(this.timeout));
                this.conn = None;
                return Poll::Ready(Some(Err(Box::new(Stalled(this.timeout)))));
            }
            return Poll::Pending;
        }
        this.waiting = false;
        // A body of known length is done with its last byte: the server does not poll for
        // the end after that, so the connection goes back now.
        if matches!(frame, Poll::Ready(None) | Poll::Ready(Some(Ok(_))))
            && this.body.is_end_stream()
        {
            this.release();
        }
        frame.map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "the tests' upstreams are tasks of the test runtime, ended with it"
)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go_the_rest_stay() {
        let map = |pairs: &[(&str, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(
                    HeaderName::try_from(*name).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            headers
        };
        let end_to_end = [
            ("host", "up"),
            ("x-api-key", "k"),
            ("content-length", "3"),
            ("x-amz-date", "20261207T000000Z"),
        ];
        let mut plain = map(&end_to_end);
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain, map(&end_to_end));
        for hop in [
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic eA=="),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("connection", "x-trace-hop, Keep-Alive"),
        ] {
            let mut headers = map(&end_to_end);
            headers.append("x-trace-hop", HeaderValue::from_static("1"));
            headers.append(
                HeaderName::try_from(hop.0).unwrap(),
                HeaderValue::from_str(hop.1).unwrap(),
            );
            strip_hop_by_hop(&mut headers);
            let mut want = map(&end_to_end);
            // Only a Connection header naming it makes an end-to-end name hop-by-hop.
            if !hop.1.contains("x-trace-hop") {
                want.append("x-trace-hop", HeaderValue::from_static("1"));
            }
            assert_eq!(headers, want, "{hop:?}");
        }
    }

    /// How an upstream in these tests treats a connection after each answer.
    #[derive(Clone, Copy)]
    enum After {
        KeepAlive,
        /// Closes the socket without announcing it (as an idle timeout does).
        Vanish,
        /// Says `connection: close`, then closes.
        AnnounceClose,
    }

    /// An HTTP/1.1 upstream answering `ok` to each request; counts accepted connections.
    async fn upstream(after: After) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body = if buf.starts_with(b"HEAD ") { "" } else { "ok" };
                        buf.clear();
                        let close = matches!(after, After::AnnounceClose);
                        let head = if close { "connection: close\r\n" } else { "" };
                        let answer =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{head}\r\n{body}");
                        if conn.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                        if !matches!(after, After::KeepAlive) {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    async fn get(upstreams: &Upstreams, addr: SocketAddr) -> String {
        let req = Request::get(format!("http://{addr}/x"))
            .body(Body::empty())
            .unwrap();
        let response = send(upstreams, req, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn keep_alive_connections_are_reused() {
        let (addr, accepted) = upstream(After::KeepAlive).await;
        let upstreams = Upstreams::new(Duration::from_secs(1), None);
        for _ in 0..20 {
            assert_eq!(get(&upstreams, addr).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_read_to_its_length_or_never_read_still_frees_the_connection() {
        // hyper's server stops polling a body at its last byte (and never polls an empty
        // one): the connection must go back to the pool all the same.
        let (addr, accepted) = upstream(After::KeepAlive).await;
        let upstreams = Upstreams::new(Duration::from_secs(1), None);
        for i in 0..10 {
            let method = if i % 2 == 0 { "GET" } else { "HEAD" };
            let req = Request::builder()
                .method(method)
                .uri(format!("http://{addr}/x"))
                .body(Body::empty())
                .unwrap();
            let response = send(&upstreams, req, Duration::from_secs(5))
                .await
                .unwrap_or_else(|e| panic!("{}", e.message));
            let mut body = response.into_body();
            if i % 2 == 0 {
                let frame = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
                let data = frame.unwrap().unwrap().into_data().unwrap();
                assert_eq!(&data[..], b"ok");
                assert!(body.is_end_stream());
            }
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn connections_the_upstream_closed_are_replaced_without_failing_a_request() {
        for after in [After::Vanish, After::AnnounceClose] {
            let (addr, accepted) = upstream(after).await;
            let upstreams = Upstreams::new(Duration::from_secs(1), None);
            for _ in 0..20 {
                assert_eq!(get(&upstreams, addr).await, "ok");
            }
            assert_eq!(accepted.load(Ordering::SeqCst), 20);
        }
    }

    #[tokio::test]
    async fn a_response_body_that_stalls_ends_in_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            // Promises 10 bytes, sends 2, then nothing (the socket stays open).
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok")
                .await
                .unwrap();
            std::future::pending::<()>().await;
        });
        let req = Request::get(format!("http://{addr}/x"))
            .body(Body::empty())
            .unwrap();
        let upstreams = Upstreams::new(Duration::from_secs(1), None);
        let response = send(&upstreams, req, Duration::from_millis(300))
            .await
            .unwrap_or_else(|e| panic!("{}", e.message));
        let err = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect_err("the body never completes");
        assert!(format!("{err:?}").contains("Stalled(300ms)"), "{err:?}");
        assert_eq!(
            Stalled(Duration::from_millis(300)).to_string(),
            "the upstream sent nothing of its response body for 300 ms"
        );
    }

    #[test]
    fn targets_are_cached_per_authority_and_scheme_and_other_schemes_stay_refused() {
        let pool = Upstreams::new(Duration::from_secs(1), None).pool;
        let target = |uri: &str| pool.target(&uri.parse().unwrap());
        let plain = target("http://up.example:8080/a").unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(plain.key, "http://up.example:8080");
        assert_eq!(plain.host_header.as_ref().unwrap(), "up.example:8080");
        let again = target("http://up.example:8080/b").unwrap_or_else(|e| panic!("{}", e.message));
        assert!(Arc::ptr_eq(&plain, &again));
        let tls = target("https://up.example:8080/").unwrap_or_else(|e| panic!("{}", e.message));
        assert!(tls.tls && !plain.tls);
        assert_eq!(tls.key, "https://up.example:8080");
        let refused = target("ftp://up.example:8080/")
            .err()
            .expect("not http or https");
        assert_eq!(refused.status, StatusCode::BAD_GATEWAY);
        // Without a port, the Host header is the host alone.
        let bare = target("http://[::1]/").unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(bare.host_header.as_ref().unwrap(), "[::1]");
        assert_eq!(
            (bare.authority.as_str(), bare.host.as_str()),
            ("[::1]:80", "::1")
        );
        // Authorities from callers (S3 virtual-host buckets) fill the cache only to its bound;
        // past it targets are still worked out, just not kept.
        for n in 0..MAX_IDLE_TOTAL + 100 {
            let uri = format!("http://bucket-{n}.up.example/");
            let t = target(&uri).unwrap_or_else(|e| panic!("{}", e.message));
            assert_eq!(t.key, format!("http://bucket-{n}.up.example:80"));
        }
        assert_eq!(pool.targets.lock().unwrap().len(), MAX_IDLE_TOTAL);
    }

    #[tokio::test]
    async fn a_missing_upstream_is_a_bad_gateway() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let req = Request::get(format!("http://127.0.0.1:{port}/"))
            .body(Body::empty())
            .unwrap();
        let err = send(
            &Upstreams::new(Duration::from_secs(1), None),
            req,
            Duration::from_secs(5),
        )
        .await
        .expect_err("nothing listens there");
        assert_eq!(err.status, StatusCode::BAD_GATEWAY);
        assert!(err.message.contains("cannot connect"), "{}", err.message);
    }
}
