//! The S3 resource kind: the caller signs with a Shoal-issued access key (SigV4, header or
//! presigned URL); the node checks the signature, reads bucket, key and operation for the
//! policies, and re-signs the request for the upstream with the resource's own key pair. The
//! caller's payload hash travels upstream unchanged, so the upstream checks the streamed body
//! against what the caller signed without the node buffering it.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use percent_encoding::{percent_decode_str, percent_encode};

use crate::chunked::{self, Chain};
use crate::decision::{
    Caller, Codes, Ctx, Facts, Refusal, anonymous_subject, audit, decide, respond,
};
use crate::forward::{ForwardError, add_forwarding_headers, send};
use crate::post_form;
use crate::routes::{KeyPair, S3Key, S3Route};
use crate::sigv4::{
    self, AuthError, PRESIGN_PARAMS, Payload, Presented, UNRESERVED_PATH, canonical_query,
};
use shoal_model::{ANONYMOUS, Addressing};

/// Where a request points: bucket and key as S3 names them, and the path below the bucket as
/// it will be forwarded (strictly encoded).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Location {
    bucket: Option<String>,
    key: Option<String>,
    /// The path after the bucket (`/key`, `/`, or empty), encoded for the upstream.
    rest: String,
}

pub(crate) async fn handle(ctx: &Ctx<'_>, s3: &S3Route, req: Request<Body>) -> Response<Body> {
    let (method, raw_path) = (req.method().clone(), req.uri().path().to_string());
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
        .to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let located = locate(&s3.virtual_host_domains, &host, &raw_path);
    // A POST to a bucket itself is a form upload: its credentials are in the body.
    if let Ok(
        location @ Location {
            bucket: Some(bucket),
            key: None,
            ..
        },
    ) = &located
        && method == Method::POST
        && query.is_empty()
    {
        return post_form::handle(ctx, s3, req, bucket, location).await;
    }
    let identified = identify(ctx, &req);
    // A copy reads its source: only a signed copy source travels upstream, and it is checked
    // by the policies as an access to the source bucket.
    let copy_source = match &identified {
        Ok(sender) if sender.signed("x-amz-copy-source") => req
            .headers()
            .get("x-amz-copy-source")
            .map(|v| copy_source(v.as_bytes())),
        _ => None,
    };
    // Only an anonymous caller is counted by address: a signed request allocates nothing here.
    let anonymous_as = match &identified {
        Ok(Sender::Anonymous) => anonymous_subject(ctx),
        _ => String::new(),
    };
    let operation = located
        .as_ref()
        .ok()
        .map(|l| operation(&method, l, &query, copy_source.is_some()));
    let (bucket, key) = located
        .as_ref()
        .map_or((None, None), |l| (l.bucket.as_deref(), l.key.as_deref()));
    let counted = match bucket {
        Some(b) => format!("{}/{b}", ctx.route.name),
        None => ctx.route.name.clone(),
    };
    let source = copy_source.as_ref().and_then(|c| c.as_ref().ok());
    let source_text = source.map(|(b, k)| format!("{b}/{k}"));
    let facts = Facts {
        method: method.as_str(),
        path: &raw_path,
        bucket,
        counted: &counted,
        key,
        operation,
        copy_source: source_text.as_deref(),
        headers: req.headers(),
        secret_header: None,
        query: Some(&query),
    };
    let identified = identified.map(|sender| {
        let caller = sender.caller(ctx, &anonymous_as);
        (sender, caller)
    });
    let user = identified
        .as_ref()
        .ok()
        .and_then(|(_, caller)| caller.audited_as());
    let decision = match (&identified, &located) {
        (Err(refusal), _) | (_, Err(refusal)) => Err(refusal.clone()),
        (Ok((sender, _)), Ok(_))
            if !chunks_supported(sender.payload(), s3.upstream_key.is_some()) =>
        {
            Err(Refusal::new(
                "invalid",
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                "this chunk-signed body is not accepted: only STREAMING-AWS4-HMAC-SHA256-PAYLOAD \
                 without trailers, to a resource with upstream_credentials; send the body's \
                 SHA-256, UNSIGNED-PAYLOAD or STREAMING-UNSIGNED-PAYLOAD-TRAILER instead",
            ))
        }
        (Ok(_), Ok(_)) if matches!(copy_source, Some(Err(_))) => Err(Refusal::new(
            "invalid",
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "x-amz-copy-source must be /<bucket>/<key> (percent-encoded, optionally \
             ?versionId=...)",
        )),
        (Ok((sender, caller)), Ok(location)) => {
            let decided = decide(ctx, caller, &facts, CODES).await;
            // A copy is also an access to its source, decided on its own; the response stage
            // and the byte counts follow the destination.
            let source_decided = match (&decided, source) {
                (Ok(_), Some((src_bucket, src_key))) => {
                    let counted = format!("{}/{src_bucket}", ctx.route.name);
                    let source_facts = Facts {
                        bucket: Some(src_bucket),
                        key: Some(src_key),
                        counted: &counted,
                        ..facts
                    };
                    decide(ctx, caller, &source_facts, CODES).await.map(|_| ())
                }
                _ => Ok(()),
            };
            source_decided.and(decided.map(|d| (location, d, sender, caller)))
        }
    };
    let audited = audit(ctx, user, &facts, decision.as_ref().err()).await;
    let (location, decided, sender, caller) = match (decision, audited) {
        (Err(refusal), _) | (Ok(_), Err(refusal)) => {
            return s3_error(&refusal, &raw_path, ctx.request_id);
        }
        (Ok(allowed), Ok(())) => allowed,
    };
    // The response stage's audit line names the request as the first did; the headers stay
    // with the request, which goes upstream.
    let no_headers = HeaderMap::new();
    let response_facts = Facts {
        method: method.as_str(),
        path: &raw_path,
        bucket,
        counted: &counted,
        key,
        operation,
        copy_source: source_text.as_deref(),
        headers: &no_headers,
        secret_header: None,
        query: Some(&query),
    };
    let req = req.map(|body| decided.upload(ctx.node, body));
    let request = match upstream_request(ctx, s3, req, sender, location, &query) {
        Ok(r) => r,
        Err(e) => return forward_error(ctx, e, &raw_path),
    };
    let response = match send(ctx.upstreams, request, ctx.upstream_timeout).await {
        Ok(response) => response,
        Err(e) => return forward_error(ctx, e, &raw_path),
    };
    match respond(ctx, caller, &response_facts, &decided, response, CODES).await {
        Ok(response) => response,
        Err(refusal) => s3_error(&refusal, &raw_path, ctx.request_id),
    }
}

/// How S3 callers are told no: the codes S3 clients act on.
pub(crate) const CODES: Codes = Codes {
    blocked: "AccessDenied",
    policy_error: "AccessDenied",
    unreachable: "ServiceUnavailable",
};

/// Who sent a request: a signature checked against the key it names (in the request, or in a
/// form upload's policy), or nobody, where the resource lets anonymous callers in.
pub(crate) enum Sender<'r> {
    Signed(Box<Presented>, &'r S3Key),
    Form(&'r S3Key),
    Anonymous,
}

/// An anonymous request's body travels as sent, unsigned.
static UNSIGNED: Payload = Payload::Unsigned;

impl<'r> Sender<'r> {
    /// Whether the caller signed header `name`: only signed `x-amz-*` headers travel on.
    fn signed(&self, name: &str) -> bool {
        match self {
            Self::Signed(presented, _) => presented.signed(name),
            Self::Form(_) | Self::Anonymous => false,
        }
    }

    fn payload(&self) -> &Payload {
        match self {
            Self::Signed(presented, _) => &presented.payload,
            Self::Form(_) | Self::Anonymous => &UNSIGNED,
        }
    }

    /// `anonymous_as`: what an anonymous caller is counted as (its address).
    pub(crate) fn caller<'a>(&self, ctx: &Ctx<'r>, anonymous_as: &'a str) -> Caller<'a>
    where
        'r: 'a,
    {
        match *self {
            Self::Signed(_, key) | Self::Form(key) => Caller {
                user: &key.user,
                key_id: &key.access_key_id,
                subject: &key.subject,
                counted_as: &key.user,
                anonymous: false,
            },
            Self::Anonymous => Caller {
                user: ANONYMOUS,
                key_id: "",
                subject: &ctx.routes.anonymous,
                counted_as: anonymous_as,
                anonymous: true,
            },
        }
    }

    /// The caller's chunk signatures, checked against their own key as the body streams.
    fn chunk_chain(&self) -> Option<Chain> {
        match self {
            Self::Signed(p, k) if matches!(p.payload, Payload::SignedChunks(_)) => {
                Some(p.chunk_chain(k.secret.expose()))
            }
            _ => None,
        }
    }
}

/// The caller's signature, checked against the secret of the access key it names; a request
/// without one is anonymous if the resource allows it for its method.
fn identify<'r>(ctx: &Ctx<'r>, req: &Request<Body>) -> Result<Sender<'r>, Refusal> {
    let presented = match sigv4::parse(req.uri(), req.headers()) {
        Ok(presented) => presented,
        Err(AuthError::Missing) => return anonymous(ctx, req.method()),
        Err(e) => return Err(auth_refusal(&e)),
    };
    let Some(key) = ctx.routes.s3_keys.get(&presented.scope.access_key_id) else {
        return Err(auth_refusal(&AuthError::UnknownKey));
    };
    presented
        .verify(
            key.secret.expose(),
            req.method(),
            req.uri(),
            req.headers(),
            SystemTime::now(),
        )
        .map_err(|e| auth_refusal(&e))?;
    Ok(Sender::Signed(Box::new(presented), key))
}

/// An unsigned request: anonymous where the resource allows its method, else refused as S3
/// refuses it (`AccessDenied`), saying what would let it in.
pub(crate) fn anonymous<'r>(ctx: &Ctx<'r>, method: &Method) -> Result<Sender<'r>, Refusal> {
    let access = ctx.route.anonymous;
    if access.allows(method.as_str()) {
        return Ok(Sender::Anonymous);
    }
    let message = if access.is_off() {
        "sign the request with SigV4 using an access key Shoal issued".to_string()
    } else {
        format!(
            "anonymous callers may only read resource {:?} (GET and HEAD); sign the request \
             to {method} it",
            ctx.route.name
        )
    };
    Err(Refusal::new(
        "unauthenticated",
        StatusCode::FORBIDDEN,
        "AccessDenied",
        message,
    ))
}

pub(crate) fn auth_refusal(e: &AuthError) -> Refusal {
    let (status, code, message) = match e {
        AuthError::Missing => (
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "sign the request with SigV4 using an access key Shoal issued".to_string(),
        ),
        AuthError::Unsupported(m) => (StatusCode::BAD_REQUEST, "InvalidRequest", m.clone()),
        AuthError::Malformed(m) => (
            StatusCode::BAD_REQUEST,
            "AuthorizationHeaderMalformed",
            m.clone(),
        ),
        AuthError::QueryParameters(m) => (
            StatusCode::FORBIDDEN,
            "AuthorizationQueryParametersError",
            m.clone(),
        ),
        AuthError::UnknownKey => (
            StatusCode::FORBIDDEN,
            "InvalidAccessKeyId",
            "the access key id is not one Shoal issued, or it was revoked".to_string(),
        ),
        AuthError::Skewed => (
            StatusCode::FORBIDDEN,
            "RequestTimeTooSkewed",
            "the request time is more than 15 minutes from the node's clock".to_string(),
        ),
        AuthError::Expired => (
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Request has expired: the presigned URL's X-Amz-Date plus X-Amz-Expires is past"
                .to_string(),
        ),
        AuthError::Mismatch => (
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "the signature does not match the request; check the secret key and the signing \
             method"
                .to_string(),
        ),
    };
    Refusal::new("unauthenticated", status, code, message)
}

/// Bucket and key from virtual-host (`<bucket>.<domain>`) or path-style addressing.
pub(crate) fn locate(domains: &[String], host: &str, raw_path: &str) -> Result<Location, Refusal> {
    let invalid =
        |code, message: String| Refusal::new("invalid", StatusCode::BAD_REQUEST, code, message);
    let host = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
        .to_ascii_lowercase();
    let virtual_bucket = domains.iter().find_map(|d| {
        host.strip_suffix(d.as_str())
            .and_then(|h| h.strip_suffix('.'))
            .filter(|b| !b.is_empty())
    });
    let (bucket, rest) = match virtual_bucket {
        Some(bucket) => (Some(bucket.to_string()), raw_path),
        None => {
            let trimmed = raw_path.strip_prefix('/').unwrap_or(raw_path);
            match trimmed.split_once('/') {
                None if trimmed.is_empty() => (None, ""),
                None => (Some(decode(trimmed)?), ""),
                Some((bucket, _)) => (Some(decode(bucket)?), &trimmed[bucket.len()..]),
            }
        }
    };
    if let Some(b) = &bucket
        && !valid_bucket(b)
    {
        return Err(invalid(
            "InvalidBucketName",
            "a bucket name is 3-63 characters of a-z, 0-9, '.' and '-', starting and ending \
             with a letter or digit"
                .into(),
        ));
    }
    let key = decode(rest.strip_prefix('/').unwrap_or(rest))?;
    if key.split('/').any(|s| s == "." || s == "..") {
        return Err(invalid(
            "InvalidURI",
            "object keys with '.' or '..' path segments are refused (upstreams may resolve them)"
                .into(),
        ));
    }
    let rest = if rest.is_empty() {
        String::new()
    } else {
        format!("/{}", percent_encode(key.as_bytes(), UNRESERVED_PATH))
    };
    Ok(Location {
        bucket,
        key: (!key.is_empty()).then_some(key),
        rest,
    })
}

/// `/<bucket>/<key>[?versionId=...]`, percent-encoded, as bucket and key.
pub(crate) fn copy_source(value: &[u8]) -> Result<(String, String), ()> {
    let text = std::str::from_utf8(value).map_err(|_| ())?;
    let path = text.split_once('?').map_or(text, |(p, _)| p);
    let path = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = path.split_once('/').ok_or(())?;
    let (bucket, key) = (
        decode(bucket).map_err(|_| ())?,
        decode(key).map_err(|_| ())?,
    );
    if !valid_bucket(&bucket) || key.is_empty() {
        return Err(());
    }
    Ok((bucket, key))
}

/// Percent-decoded path text; S3 object keys are UTF-8.
fn decode(raw: &str) -> Result<String, Refusal> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            Refusal::new(
                "invalid",
                StatusCode::BAD_REQUEST,
                "InvalidURI",
                "the bucket or object key is not valid UTF-8 once percent-decoded",
            )
        })
}

/// S3's bucket naming rules: 3-63 of `a-z0-9.-`, letters or digits at both ends, no `..`,
/// not shaped like an IP address.
fn valid_bucket(b: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && alnum(b.chars().next())
        && alnum(b.chars().last())
        && !b.contains("..")
        && b.parse::<std::net::Ipv4Addr>().is_err()
}

/// The S3 API operation, as the AWS API reference names it, from method, addressing, query
/// sub-resources and whether a (signed, so forwarded) copy source is given.
pub(crate) fn operation(method: &Method, at: &Location, query: &str, copy: bool) -> &'static str {
    let names: Vec<Vec<u8>> = sigv4::query_pairs(query).map(|(n, _)| n).collect();
    let has = |name: &str| names.iter().any(|n| n == name.as_bytes());
    /// Sub-resources of a bucket: (query name, GET, PUT, DELETE).
    const BUCKET_SUB: [(&str, &str, &str, &str); 10] = [
        ("acl", "GetBucketAcl", "PutBucketAcl", "DeleteBucketAcl"),
        (
            "policy",
            "GetBucketPolicy",
            "PutBucketPolicy",
            "DeleteBucketPolicy",
        ),
        (
            "versioning",
            "GetBucketVersioning",
            "PutBucketVersioning",
            "PutBucketVersioning",
        ),
        (
            "tagging",
            "GetBucketTagging",
            "PutBucketTagging",
            "DeleteBucketTagging",
        ),
        ("cors", "GetBucketCors", "PutBucketCors", "DeleteBucketCors"),
        (
            "lifecycle",
            "GetBucketLifecycleConfiguration",
            "PutBucketLifecycleConfiguration",
            "DeleteBucketLifecycle",
        ),
        (
            "encryption",
            "GetBucketEncryption",
            "PutBucketEncryption",
            "DeleteBucketEncryption",
        ),
        (
            "location",
            "GetBucketLocation",
            "GetBucketLocation",
            "GetBucketLocation",
        ),
        (
            "website",
            "GetBucketWebsite",
            "PutBucketWebsite",
            "DeleteBucketWebsite",
        ),
        (
            "notification",
            "GetBucketNotificationConfiguration",
            "PutBucketNotificationConfiguration",
            "PutBucketNotificationConfiguration",
        ),
    ];
    let Some(_) = &at.bucket else {
        return if *method == Method::GET {
            "ListBuckets"
        } else {
            "Unknown"
        };
    };
    if at.key.is_none() {
        for (name, get, put, delete) in BUCKET_SUB {
            if has(name) {
                return match *method {
                    Method::GET => get,
                    Method::PUT => put,
                    Method::DELETE => delete,
                    _ => "Unknown",
                };
            }
        }
        return match *method {
            Method::GET if has("uploads") => "ListMultipartUploads",
            Method::GET if has("versions") => "ListObjectVersions",
            Method::GET if has("list-type") => "ListObjectsV2",
            Method::GET => "ListObjects",
            Method::HEAD => "HeadBucket",
            Method::PUT => "CreateBucket",
            Method::DELETE => "DeleteBucket",
            Method::POST if has("delete") => "DeleteObjects",
            _ => "Unknown",
        };
    }
    match *method {
        Method::GET if has("uploadId") => "ListParts",
        Method::GET if has("acl") => "GetObjectAcl",
        Method::GET if has("tagging") => "GetObjectTagging",
        Method::GET if has("attributes") => "GetObjectAttributes",
        Method::GET => "GetObject",
        Method::HEAD => "HeadObject",
        Method::PUT if has("partNumber") && copy => "UploadPartCopy",
        Method::PUT if has("partNumber") => "UploadPart",
        Method::PUT if has("acl") => "PutObjectAcl",
        Method::PUT if has("tagging") => "PutObjectTagging",
        Method::PUT if copy => "CopyObject",
        Method::PUT => "PutObject",
        Method::POST if has("uploads") => "CreateMultipartUpload",
        Method::POST if has("uploadId") => "CompleteMultipartUpload",
        Method::POST if has("restore") => "RestoreObject",
        Method::POST if has("select") => "SelectObjectContent",
        Method::DELETE if has("uploadId") => "AbortMultipartUpload",
        Method::DELETE if has("tagging") => "DeleteObjectTagging",
        Method::DELETE => "DeleteObject",
        _ => "Unknown",
    }
}

/// The caller's request re-addressed to the upstream and re-signed with the resource's key
/// pair. Only the `x-amz-*` headers the caller signed travel on.
fn upstream_request(
    ctx: &Ctx<'_>,
    s3: &S3Route,
    req: Request<Body>,
    sender: &Sender<'_>,
    location: &Location,
    query: &str,
) -> Result<Request<Body>, ForwardError> {
    let (mut parts, body) = req.into_parts();
    let (authority, uri) = upstream_target(s3, location, query)?;
    let headers = &mut parts.headers;
    let unsigned_amz: Vec<_> = headers
        .keys()
        .filter(|n| n.as_str().starts_with("x-amz-") && !sender.signed(n.as_str()))
        .cloned()
        .collect();
    for name in unsigned_amz {
        headers.remove(name);
    }
    for name in [
        "authorization",
        "x-amz-date",
        "x-amz-content-sha256",
        "x-amz-security-token",
        "expect",
    ] {
        headers.remove(name);
    }
    add_forwarding_headers(headers, ctx.request_id, ctx.peer_ip);
    let host = HeaderValue::from_str(&authority).map_err(|_| ForwardError {
        status: StatusCode::BAD_GATEWAY,
        message: "the upstream host is not a valid header value".into(),
    })?;
    headers.insert(header::HOST, host);
    parts.uri = uri;
    if s3.upstream_key.is_none()
        && let Ok(v) = HeaderValue::from_str(sender.payload().as_str())
    {
        // Unsigned upstream: the payload's encoding still has to be known there.
        headers.insert("x-amz-content-sha256", v);
    }
    let mut request = Request::from_parts(parts, body);
    if let Some(key) = &s3.upstream_key {
        let seed = sign_upstream(&mut request, key, &s3.region, sender.payload())?;
        if let Some(caller) = sender.chunk_chain() {
            let body = std::mem::take(request.body_mut());
            *request.body_mut() = chunked::resign(body, caller, seed);
        }
    }
    Ok(request)
}

/// Where a request for `location` goes upstream: the authority (the bucket's own host under
/// virtual addressing) and the URI, the presigned parameters left out of the query.
pub(crate) fn upstream_target(
    s3: &S3Route,
    location: &Location,
    query: &str,
) -> Result<(String, Uri), ForwardError> {
    let base = s3.endpoint.path().trim_end_matches('/');
    let endpoint_authority = s3.endpoint.authority().map_or("", |a| a.as_str());
    let (authority, path) = match (&location.bucket, s3.addressing) {
        (None, _) => (endpoint_authority.to_string(), format!("{base}/")),
        (Some(bucket), Addressing::Path) => (
            endpoint_authority.to_string(),
            format!("{base}/{bucket}{}", location.rest),
        ),
        (Some(bucket), Addressing::Virtual) => (
            format!("{bucket}.{endpoint_authority}"),
            match location.rest.as_str() {
                "" => format!("{base}/"),
                rest => format!("{base}{rest}"),
            },
        ),
    };
    let query = canonical_query(query, &PRESIGN_PARAMS);
    let path_and_query = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    let scheme = s3.endpoint.scheme_str().unwrap_or("http");
    let uri = format!("{scheme}://{authority}{path_and_query}")
        .parse()
        .map_err(|e| ForwardError {
            status: StatusCode::BAD_REQUEST,
            message: format!("the upstream address cannot be built: {e}"),
        })?;
    Ok((authority, uri))
}

/// Whether a body signed chunk by chunk (if it is one) can be re-signed: the plain variant
/// only (trailers and ECDSA are not built), and only into a signed upstream request.
fn chunks_supported(payload: &Payload, upstream_signed: bool) -> bool {
    match payload {
        Payload::SignedChunks(kind) => {
            upstream_signed && kind == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        }
        _ => true,
    }
}

/// Signs `request` for the upstream; returns the start of Shoal's chunk-signature chain
/// (the request's signature, time and scope), which a chunk-signed body continues.
fn sign_upstream(
    request: &mut Request<Body>,
    key: &KeyPair,
    region: &str,
    payload: &Payload,
) -> Result<Chain, ForwardError> {
    let failed = |e: &dyn std::fmt::Display| ForwardError {
        status: StatusCode::BAD_GATEWAY,
        message: format!("the upstream request cannot be signed: {e}"),
    };
    let identity: Identity = Credentials::new(
        &key.access_key_id,
        key.secret.expose(),
        None,
        None,
        "shoal-resource",
    )
    .into();
    let mut settings = SigningSettings::default();
    // Sign what S3 acts on; leave out what transports and tools add or rewrite on the way
    // (content-length, SDK bookkeeping, forwarding headers): some stores recompute the
    // signature over a view of the request that lacks them.
    let excluded = settings.excluded_headers.get_or_insert_with(Vec::new);
    excluded.extend(
        request
            .headers()
            .keys()
            .filter(|n| !signed_upstream(n.as_str()))
            .map(|n| std::borrow::Cow::Owned(n.as_str().to_string())),
    );
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let now = SystemTime::now();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let body = match payload {
        Payload::Sha256(hash) => SignableBody::Precomputed(hash.clone()),
        Payload::Unsigned => SignableBody::UnsignedPayload,
        Payload::SignedChunks(kind) => SignableBody::Precomputed(kind.clone()),
        Payload::UnsignedTrailer => SignableBody::StreamingUnsignedPayloadTrailer,
    };
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
        .collect();
    let signable = SignableRequest::new(
        request.method().as_str(),
        request.uri().to_string(),
        headers.into_iter(),
        body,
    )
    .map_err(|e| failed(&e))?;
    let (instructions, signature) = sign(signable, &params)
        .map_err(|e| failed(&e))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    let time = chrono::DateTime::<chrono::Utc>::from(now);
    Ok(Chain {
        key: v4::generate_signing_key(key.secret.expose(), now, region, "s3")
            .as_ref()
            .to_vec(),
        amz_date: time.format("%Y%m%dT%H%M%SZ").to_string(),
        scope: format!("{}/{region}/s3/aws4_request", time.format("%Y%m%d")),
        previous: signature,
    })
}

/// Headers whose meaning S3 depends on, signed upstream when present.
fn signed_upstream(name: &str) -> bool {
    name == "host"
        || name.starts_with("x-amz-")
        || matches!(
            name,
            "content-type"
                | "content-md5"
                | "content-encoding"
                | "content-disposition"
                | "content-language"
                | "cache-control"
                | "expires"
                | "range"
                | "if-match"
                | "if-none-match"
                | "if-modified-since"
                | "if-unmodified-since"
        )
}

pub(crate) fn forward_error(ctx: &Ctx<'_>, e: ForwardError, resource: &str) -> Response<Body> {
    tracing::warn!(request_id = ctx.request_id, resource = %ctx.route.name, "{}", e.message);
    ctx.node
        .instruments
        .upstream_error(&ctx.route.name, e.status);
    let code = match e.status {
        StatusCode::GATEWAY_TIMEOUT => "GatewayTimeout",
        StatusCode::BAD_REQUEST => "InvalidURI",
        _ => "BadGateway",
    };
    s3_error(
        &Refusal::new("upstream", e.status, code, e.caller_message()),
        resource,
        ctx.request_id,
    )
}

/// The S3 error document (`Error` with `Code`, `Message`, `Resource`, `RequestId`) that AWS
/// SDKs parse into their exceptions.
pub(crate) fn s3_error(refusal: &Refusal, resource: &str, request_id: &str) -> Response<Body> {
    #[derive(serde::Serialize)]
    #[serde(rename = "Error", rename_all = "PascalCase")]
    struct ErrorDocument<'a> {
        code: &'a str,
        message: &'a str,
        resource: &'a str,
        request_id: &'a str,
    }
    let document = ErrorDocument {
        code: refusal.code,
        message: &refusal.message,
        resource,
        request_id,
    };
    let xml = quick_xml::se::to_string(&document).unwrap_or_default();
    let mut response = Response::new(Body::from(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{xml}"
    )));
    *response.status_mut() = refusal.status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-amz-request-id", v.clone());
        headers.insert("x-request-id", v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(domains: &[&str], host: &str, path: &str) -> Result<Location, Refusal> {
        let domains: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
        locate(&domains, host, path)
    }

    fn loc(bucket: Option<&str>, key: Option<&str>, rest: &str) -> Location {
        Location {
            bucket: bucket.map(str::to_string),
            key: key.map(str::to_string),
            rest: rest.to_string(),
        }
    }

    #[test]
    fn path_style_and_virtual_host_addressing_find_bucket_and_key() {
        let d = ["s3.shoal.test"];
        assert_eq!(at(&d, "127.0.0.1:9000", "/").unwrap(), loc(None, None, ""));
        assert_eq!(
            at(&d, "127.0.0.1:9000", "/photos").unwrap(),
            loc(Some("photos"), None, "")
        );
        assert_eq!(
            at(&d, "127.0.0.1:9000", "/photos/").unwrap(),
            loc(Some("photos"), None, "/")
        );
        assert_eq!(
            at(&d, "h", "/photos/2026/a%20b%21.jpg").unwrap(),
            loc(Some("photos"), Some("2026/a b!.jpg"), "/2026/a%20b%21.jpg")
        );
        assert_eq!(
            at(&d, "photos.S3.shoal.test:9000", "/2026/x.jpg").unwrap(),
            loc(Some("photos"), Some("2026/x.jpg"), "/2026/x.jpg")
        );
        assert_eq!(
            at(&d, "photos.s3.shoal.test", "/").unwrap(),
            loc(Some("photos"), None, "/")
        );
        // The bare domain is path-style.
        assert_eq!(
            at(&d, "s3.shoal.test", "/photos/k").unwrap(),
            loc(Some("photos"), Some("k"), "/k")
        );
    }

    #[test]
    fn bad_buckets_and_keys_are_refused_with_s3_codes() {
        let d: [&str; 0] = [];
        for (path, code) in [
            ("/ab/k", "InvalidBucketName"),
            ("/Photos/k", "InvalidBucketName"),
            ("/-photos/k", "InvalidBucketName"),
            ("/a..b/k", "InvalidBucketName"),
            ("/192.168.5.4/k", "InvalidBucketName"),
            ("/photos/%FF%FE", "InvalidURI"),
            ("/photos/a/../b", "InvalidURI"),
            ("/photos/%2e%2e/b", "InvalidURI"),
        ] {
            let refusal = at(&d, "h", path).unwrap_err();
            assert_eq!(refusal.code, code, "{path}");
            assert_eq!(refusal.status, StatusCode::BAD_REQUEST, "{path}");
        }
    }

    #[test]
    fn operations_follow_the_s3_api_names() {
        let (h, copy) = (false, true);
        let bucket = loc(Some("b"), None, "");
        let object = loc(Some("b"), Some("k"), "/k");
        let root = loc(None, None, "");
        for (method, at, query, copying, expected) in [
            (Method::GET, &root, "", h, "ListBuckets"),
            (
                Method::GET,
                &bucket,
                "list-type=2&prefix=a",
                h,
                "ListObjectsV2",
            ),
            (Method::GET, &bucket, "", h, "ListObjects"),
            (Method::GET, &bucket, "location", h, "GetBucketLocation"),
            (Method::GET, &bucket, "uploads", h, "ListMultipartUploads"),
            (Method::PUT, &bucket, "", h, "CreateBucket"),
            (Method::DELETE, &bucket, "tagging", h, "DeleteBucketTagging"),
            (Method::POST, &bucket, "delete", h, "DeleteObjects"),
            (Method::HEAD, &bucket, "", h, "HeadBucket"),
            (Method::GET, &object, "", h, "GetObject"),
            (Method::HEAD, &object, "", h, "HeadObject"),
            (Method::PUT, &object, "", h, "PutObject"),
            (Method::PUT, &object, "", copy, "CopyObject"),
            (Method::POST, &object, "uploads", h, "CreateMultipartUpload"),
            (
                Method::PUT,
                &object,
                "partNumber=1&uploadId=u",
                h,
                "UploadPart",
            ),
            (
                Method::PUT,
                &object,
                "partNumber=1&uploadId=u",
                copy,
                "UploadPartCopy",
            ),
            (
                Method::POST,
                &object,
                "uploadId=u",
                h,
                "CompleteMultipartUpload",
            ),
            (
                Method::DELETE,
                &object,
                "uploadId=u",
                h,
                "AbortMultipartUpload",
            ),
            (Method::GET, &object, "uploadId=u", h, "ListParts"),
            (Method::DELETE, &object, "", h, "DeleteObject"),
        ] {
            assert_eq!(
                operation(&method, at, query, copying),
                expected,
                "{method} {query}"
            );
        }
    }

    #[test]
    fn copy_sources_name_a_bucket_and_a_key() {
        assert_eq!(
            copy_source(b"/reports/q3/a%20b.csv?versionId=3"),
            Ok(("reports".into(), "q3/a b.csv".into()))
        );
        assert_eq!(
            copy_source(b"reports/k"),
            Ok(("reports".into(), "k".into()))
        );
        for bad in [&b"/reports"[..], b"/Bad_Bucket/k", b"/reports/", b"\xff/k"] {
            assert_eq!(
                copy_source(bad),
                Err(()),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn error_documents_are_s3_xml_with_escaped_text() {
        let refusal = Refusal::new(
            "blocked",
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "limit <5> & more",
        );
        let response = s3_error(&refusal, "/b/k", "req-1");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()["x-amz-request-id"], "req-1");
        let body = futures_body(response);
        assert!(body.starts_with("<?xml"), "{body}");
        assert!(
            body.contains("<Error><Code>AccessDenied</Code><Message>limit &lt;5&gt; &amp; more</Message><Resource>/b/k</Resource><RequestId>req-1</RequestId></Error>"),
            "{body}"
        );
    }

    fn futures_body(response: Response<Body>) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}
