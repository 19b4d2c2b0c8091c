//! The upstream side: one pooled client per node (keep-alive, HTTP/1.1), request and response
//! bodies streamed through as they come.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{HeaderMap, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub(crate) type Upstreams = Client<HttpConnector, Body>;

pub(crate) fn client(connect_timeout: Duration) -> Upstreams {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

/// Headers that describe one hop's connection and never travel further (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
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
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Why a request could not be forwarded: the status to answer with and what to say.
pub(crate) struct ForwardError {
    pub status: StatusCode,
    pub message: String,
}

/// Sends `req` to `upstream` (its path and query appended to the upstream's path), with the
/// request id and the caller's address added.
pub(crate) async fn forward(
    client: &Upstreams,
    upstream: &Uri,
    mut req: Request<Body>,
    request_id: &str,
    peer: SocketAddr,
    timeout: Duration,
) -> Result<Response<Body>, ForwardError> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    let base = upstream.path().trim_end_matches('/');
    *req.uri_mut() = upstream_uri(upstream, &format!("{base}{path_and_query}"))?;
    let headers = req.headers_mut();
    headers.remove(header::HOST);
    add_forwarding_headers(headers, request_id, peer);
    send(client, req, timeout).await
}

/// `upstream`'s scheme and authority with another path and query.
pub(crate) fn upstream_uri(upstream: &Uri, path_and_query: &str) -> Result<Uri, ForwardError> {
    Uri::builder()
        .scheme(upstream.scheme_str().unwrap_or("http"))
        .authority(upstream.authority().map_or("", |a| a.as_str()))
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| ForwardError {
            status: StatusCode::BAD_REQUEST,
            message: format!("request path cannot be forwarded: {e}"),
        })
}

/// Drops the hop-by-hop headers; adds `x-request-id` and the caller to `x-forwarded-for`.
pub(crate) fn add_forwarding_headers(headers: &mut HeaderMap, request_id: &str, peer: SocketAddr) {
    strip_hop_by_hop(headers);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
    let forwarded = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        headers.insert("x-forwarded-for", v);
    }
}

/// Sends a prepared request; the response streams back without its hop-by-hop headers.
pub(crate) async fn send(
    client: &Upstreams,
    req: Request<Body>,
    timeout: Duration,
) -> Result<Response<Body>, ForwardError> {
    let response = match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => {
            return Err(ForwardError {
                status: StatusCode::GATEWAY_TIMEOUT,
                message: format!("upstream did not answer within {} ms", timeout.as_millis()),
            });
        }
        Ok(Err(e)) => {
            return Err(ForwardError {
                status: StatusCode::BAD_GATEWAY,
                message: format!("upstream request failed: {e}"),
            });
        }
        Ok(Ok(r)) => r,
    };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)))
}
