//! S3 POST Object: uploads from browser forms.
//!
//! The caller's credentials are not in a header but in the form's fields before the file (a
//! base64 POST policy and its SigV4 signature), so the node reads that much of the body,
//! bounded as S3 bounds it, and checks the policy as S3 does. The form goes upstream with
//! Shoal's own policy in place of the caller's, signed with the resource's key pair: the new
//! fields, then the caller's file part exactly as it came, so its length is known before it is
//! sent and the file streams through without being held.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::{Stream, StreamExt as _, stream};
use memchr::memmem;
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;

use crate::decision::{Ctx, Facts, Refusal, anonymous_subject, audit, decide, respond};
use crate::forward::{ForwardError, add_forwarding_headers, send};
use crate::routes::{KeyPair, S3Route};
use crate::s3::{CODES, Location, Sender, anonymous, auth_refusal, forward_error, s3_error};
use crate::sigv4::{AuthError, Scope};

/// How much of a form S3 reads before the file: its fields and the file part's headers.
const PREFIX_LIMIT: usize = 20 * 1024;
/// The fields are the upload's head: they must arrive as promptly as a request's headers.
const PREFIX_TIMEOUT: Duration = Duration::from_secs(30);
/// Shoal's policy for the upstream is checked when the upstream has read the fields, which
/// follow at once; the margin covers clocks apart, not the file's transfer.
const UPSTREAM_POLICY_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::minutes(15);
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const OPERATION: &str = "PostObject";
/// The fields that carry the caller's signature; upstream, Shoal's own take their place.
const SIGNATURE_FIELDS: [&str; 5] = [
    "policy",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-signature",
];

/// A bucket POST: S3's form upload. Every refusal is audited and answered with S3's error
/// document; nothing reaches the upstream before the form is checked and the policies allow it.
pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    s3: &S3Route,
    req: Request<Body>,
    bucket: &str,
    location: &Location,
) -> Response<Body> {
    let raw_path = req.uri().path().to_string();
    let counted = format!("{}/{bucket}", ctx.route.name);
    let (parts, body) = req.into_parts();
    let mut facts = Facts {
        method: Method::POST.as_str(),
        path: &raw_path,
        bucket: Some(bucket),
        counted: &counted,
        key: None,
        operation: Some(OPERATION),
        copy_source: None,
        headers: &parts.headers,
        secret_header: None,
        query: Some(""),
    };
    let refuse = async |facts: &Facts<'_>, user: Option<&str>, refusal: Refusal| {
        // The refusal stands whether or not its audit line could be kept.
        let _ = audit(ctx, user, facts, Some(&refusal)).await;
        s3_error(&refusal, &raw_path, ctx.request_id)
    };
    let read = match read_form(&parts.headers, body).await {
        Ok(read) => read,
        Err(refusal) => return refuse(&facts, None, refusal).await,
    };
    let form = &read.form;
    let key = match form.object_key() {
        Ok(key) => key,
        Err(refusal) => return refuse(&facts, None, refusal).await,
    };
    facts.key = Some(&key);
    let (sender, policy) = match identify(ctx, form) {
        Ok(identified) => identified,
        Err(refusal) => return refuse(&facts, None, refusal).await,
    };
    let anonymous_as = match sender {
        Sender::Anonymous => anonymous_subject(ctx),
        _ => String::new(),
    };
    let caller = sender.caller(ctx, &anonymous_as);
    let user = caller.audited_as();
    let range = match policy.map(|p| p.check(form, bucket, Utc::now())) {
        None => Ok(None),
        Some(checked) => checked,
    };
    let range = match range.and_then(|range| read.file_size_bound(range).map(|_| range)) {
        Ok(range) => range,
        Err(refusal) => return refuse(&facts, user, refusal).await,
    };
    // Policies see the upload as they see a PutObject: the object's content type, and the
    // file's size (at most; the form's closing delimiter is not counted).
    let facts_headers = form.facts_headers(&parts.headers, read.file_max());
    facts.headers = &facts_headers;
    let decided = match decide(ctx, &caller, &facts, CODES).await {
        Ok(decided) => decided,
        Err(refusal) => return refuse(&facts, user, refusal).await,
    };
    if let Err(refusal) = audit(ctx, user, &facts, None).await {
        return s3_error(&refusal, &raw_path, ctx.request_id);
    }
    let verdict = Arc::new(OnceLock::new());
    let signer = s3.upstream_key.as_ref().map(|k| (k, s3.region.as_str()));
    let prefix = read.upstream_prefix(&key, bucket, range, signer, Utc::now());
    let request = match upstream_request(
        ctx,
        s3,
        location,
        &parts.headers,
        prefix,
        read,
        range,
        &verdict,
    ) {
        Ok(request) => request.map(|body| decided.upload(ctx.node, body)),
        Err(e) => return forward_error(ctx, e, &raw_path),
    };
    let sent = send(ctx.upstreams, request, ctx.upstream_timeout).await;
    // A file outside its range is found only as it streams: the upstream got a body cut
    // short, stores nothing, and the caller hears why.
    if let Some(refusal) = verdict.get() {
        return refuse(&facts, user, refusal.clone()).await;
    }
    let response = match sent {
        Ok(response) => response,
        Err(e) => return forward_error(ctx, e, &raw_path),
    };
    let no_headers = HeaderMap::new();
    let response_facts = Facts {
        headers: &no_headers,
        ..facts
    };
    match respond(ctx, &caller, &response_facts, &decided, response, CODES).await {
        Ok(response) => response,
        Err(refusal) => s3_error(&refusal, &raw_path, ctx.request_id),
    }
}

fn invalid(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal::new("invalid", StatusCode::BAD_REQUEST, code, message)
}

fn malformed(message: impl std::fmt::Display) -> Refusal {
    invalid(
        "MalformedPOSTRequest",
        format!("The body of the POST request is not well-formed multipart/form-data: {message}"),
    )
}

/// A form that its own policy does not allow (S3's wording, which SDKs' users search for).
fn not_allowed(message: impl std::fmt::Display) -> Refusal {
    Refusal::new(
        "unauthenticated",
        StatusCode::FORBIDDEN,
        "AccessDenied",
        format!("Invalid according to Policy: {message}"),
    )
}

fn invalid_policy(message: impl std::fmt::Display) -> Refusal {
    invalid(
        "InvalidPolicyDocument",
        format!("Invalid Policy: {message}"),
    )
}

/// The form as far as its file's first byte, and what follows still unread.
struct Read {
    boundary: String,
    form: Form,
    /// The bytes already read past the file part's headers: the file's first bytes.
    leftover: Bytes,
    rest: axum::body::BodyDataStream,
    /// The bytes from the file's first byte to the body's end (the request's length less what
    /// was read before the file).
    after: u64,
}

async fn read_form(headers: &HeaderMap, body: Body) -> Result<Read, Refusal> {
    let boundary = boundary(headers)?;
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .ok_or_else(|| {
            Refusal::new(
                "invalid",
                StatusCode::LENGTH_REQUIRED,
                "MissingContentLength",
                "a form upload needs a Content-Length header",
            )
        })?;
    let mut rest = body.into_data_stream();
    let mut buf = Vec::new();
    let reading = async {
        loop {
            if let Parsed::Complete(form) = parse(&buf, &boundary)? {
                return Ok(form);
            }
            if buf.len() > PREFIX_LIMIT {
                return Err(too_long());
            }
            match rest.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(_)) => {
                    return Err(invalid(
                        "IncompleteBody",
                        "the form's body ended before its file part",
                    ));
                }
                None => return Err(malformed("the form has no file part")),
            }
        }
    };
    let form = tokio::time::timeout(PREFIX_TIMEOUT, reading)
        .await
        .map_err(|_| {
            invalid(
                "RequestTimeout",
                format!(
                    "the form's fields did not arrive within {} s",
                    PREFIX_TIMEOUT.as_secs()
                ),
            )
        })??;
    let data_start = form.file_head.end;
    if data_start > PREFIX_LIMIT {
        return Err(too_long());
    }
    let after = length
        .checked_sub(data_start as u64)
        .filter(|&n| n >= closing_len(&boundary))
        .ok_or_else(|| malformed("Content-Length is shorter than the form"))?;
    Ok(Read {
        leftover: Bytes::from(buf).slice(data_start..),
        boundary,
        form,
        rest,
        after,
    })
}

fn too_long() -> Refusal {
    invalid(
        "MaxPostPreDataLengthExceededError",
        format!(
            "the form's fields before the file (and the file part's headers) exceed \
             {PREFIX_LIMIT} bytes"
        ),
    )
}

/// `\r\n--BOUNDARY--`: the least that can follow a file.
fn closing_len(boundary: &str) -> u64 {
    boundary.len() as u64 + 6
}

impl Read {
    /// The file's largest possible size: all that follows its first byte but the closing
    /// delimiter.
    fn file_max(&self) -> u64 {
        self.after - closing_len(&self.boundary)
    }

    /// Refuses before anything is sent a file whose size the request's length already puts
    /// outside the range. A final CRLF after the closing delimiter is allowed for; fields after
    /// the file (S3 ignores them) count towards the file's size here.
    fn file_size_bound(&self, range: Option<(u64, u64)>) -> Result<(), Refusal> {
        let Some((min, max)) = range else {
            return Ok(());
        };
        let largest = self.file_max();
        if largest < min {
            return Err(too_small(min));
        }
        if largest.saturating_sub(2) > max {
            return Err(too_large(max));
        }
        Ok(())
    }

    /// The new form's beginning: the key the policies decided on, the caller's fields that
    /// mean something to S3, Shoal's policy and signature when the upstream is signed, then
    /// the caller's file part headers as sent.
    fn upstream_prefix(
        &self,
        key: &str,
        bucket: &str,
        range: Option<(u64, u64)>,
        signer: Option<(&KeyPair, &str)>,
        now: DateTime<Utc>,
    ) -> Vec<u8> {
        let mut fields: Vec<(String, String)> = vec![("key".into(), key.into())];
        fields.extend(
            self.form
                .fields
                .iter()
                .filter(|(name, _)| forwarded(name))
                .cloned(),
        );
        if let Some((pair, region)) = signer {
            let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
            let credential = format!(
                "{}/{}/{region}/s3/aws4_request",
                pair.access_key_id,
                now.format("%Y%m%d")
            );
            fields.extend([
                ("x-amz-algorithm".to_string(), ALGORITHM.to_string()),
                ("x-amz-credential".to_string(), credential),
                ("x-amz-date".to_string(), amz_date),
            ]);
            let mut conditions = vec![json!({ "bucket": bucket })];
            conditions.extend(fields.iter().map(|(n, v)| json!({ n: v })));
            if let Some((min, max)) = range {
                conditions.push(json!(["content-length-range", min, max]));
            }
            let expiration =
                (now + UPSTREAM_POLICY_LIFETIME).to_rfc3339_opts(SecondsFormat::Millis, true);
            let policy = base64::engine::general_purpose::STANDARD
                .encode(json!({ "expiration": expiration, "conditions": conditions }).to_string());
            let signing_key = aws_sigv4::sign::v4::generate_signing_key(
                pair.secret.expose(),
                now.into(),
                region,
                "s3",
            );
            let signature =
                aws_sigv4::sign::v4::calculate_signature(signing_key, policy.as_bytes());
            fields.extend([
                ("policy".to_string(), policy),
                ("x-amz-signature".to_string(), signature),
            ]);
        }
        let mut out = Vec::new();
        for (name, value) in &fields {
            out.extend_from_slice(
                format!(
                    "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
                    self.boundary
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(&self.form.head_bytes);
        out
    }
}

/// Whether a caller's field travels upstream: not its signature (Shoal's replaces it), not
/// `key` (the one the policies decided on goes instead), not `bucket` (the URL names it) and
/// not what S3 itself ignores.
fn forwarded(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !SIGNATURE_FIELDS.contains(&lower.as_str())
        && !matches!(lower.as_str(), "key" | "bucket")
        && !lower.starts_with("x-ignore-")
}

#[allow(clippy::too_many_arguments)]
fn upstream_request(
    ctx: &Ctx<'_>,
    s3: &S3Route,
    location: &Location,
    headers: &HeaderMap,
    prefix: Vec<u8>,
    read: Read,
    range: Option<(u64, u64)>,
    verdict: &Arc<OnceLock<Refusal>>,
) -> Result<Request<Body>, ForwardError> {
    let (authority, uri) = crate::s3::upstream_target(s3, location, "")?;
    let length = prefix.len() as u64 + read.after;
    let scan = FileScan::new(&read.boundary, range);
    let file = stream::once(std::future::ready(Ok(read.leftover))).chain(read.rest);
    let body = stream::once(std::future::ready(Ok(Bytes::from(prefix)))).chain(scanned(
        file,
        scan,
        verdict.clone(),
    ));
    let mut request = Request::new(Body::from_stream(body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    let out = request.headers_mut();
    let bad = |what: &str| ForwardError {
        status: StatusCode::BAD_GATEWAY,
        message: format!("the upstream form's {what} is not a valid header value"),
    };
    out.insert(
        header::HOST,
        HeaderValue::from_str(&authority).map_err(|_| bad("host"))?,
    );
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        out.insert(header::CONTENT_TYPE, content_type.clone());
    }
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    add_forwarding_headers(out, ctx.request_id, ctx.peer_ip);
    Ok(request)
}

/// The file's bytes as they stream, checked by `scan`; a refusal ends the stream with an
/// error (the upstream's request is cut short) and is left in `verdict` for the caller.
fn scanned(
    file: impl Stream<Item = Result<Bytes, axum::Error>> + Send + 'static,
    scan: FileScan,
    verdict: Arc<OnceLock<Refusal>>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let refused = move |verdict: &OnceLock<Refusal>, refusal: Refusal| {
        let error = std::io::Error::other(refusal.message.clone());
        let _ = verdict.set(refusal);
        error
    };
    stream::unfold(
        (Box::pin(file), Some(scan), verdict),
        move |(mut file, scan, verdict)| async move {
            let mut scan = scan?;
            let item = match file.next().await {
                Some(Ok(chunk)) => match scan.feed(&chunk) {
                    Ok(()) => Ok(chunk),
                    Err(refusal) => {
                        let error = refused(&verdict, refusal);
                        return Some((Err(error), (file, None, verdict)));
                    }
                },
                Some(Err(e)) => {
                    return Some((Err(std::io::Error::other(e)), (file, None, verdict)));
                }
                None => match scan.end() {
                    Ok(()) => return None,
                    Err(refusal) => {
                        let error = refused(&verdict, refusal);
                        return Some((Err(error), (file, None, verdict)));
                    }
                },
            };
            Some((item, (file, Some(scan), verdict)))
        },
    )
}

fn too_large(max: u64) -> Refusal {
    invalid(
        "EntityTooLarge",
        format!(
            "Your proposed upload exceeds the maximum allowed size: the policy's content-length-range allows at most {max} bytes"
        ),
    )
}

fn too_small(min: u64) -> Refusal {
    invalid(
        "EntityTooSmall",
        format!(
            "Your proposed upload is smaller than the minimum allowed size: the policy's content-length-range asks for at least {min} bytes"
        ),
    )
}

/// Finds where the file ends (the first `\r\n--BOUNDARY` after its first byte) as its bytes
/// go by, so the file's exact size is checked without holding it.
struct FileScan {
    finder: memmem::Finder<'static>,
    /// Bytes of the file and what follows it, seen so far.
    seen: u64,
    /// The last bytes seen, short of a whole delimiter: one may straddle two chunks.
    tail: Vec<u8>,
    size: Option<u64>,
    range: Option<(u64, u64)>,
}

impl FileScan {
    fn new(boundary: &str, range: Option<(u64, u64)>) -> Self {
        Self {
            finder: memmem::Finder::new(format!("\r\n--{boundary}").as_bytes()).into_owned(),
            seen: 0,
            tail: Vec::new(),
            size: None,
            range,
        }
    }

    fn feed(&mut self, chunk: &[u8]) -> Result<(), Refusal> {
        if self.size.is_none() {
            let keep = self.finder.needle().len() - 1;
            let mut straddling = std::mem::take(&mut self.tail);
            let tail_len = straddling.len() as u64;
            straddling.extend_from_slice(&chunk[..chunk.len().min(keep)]);
            self.size = match self.finder.find(&straddling) {
                Some(at) => Some(self.seen - tail_len + at as u64),
                None => self.finder.find(chunk).map(|at| self.seen + at as u64),
            };
            self.tail = if chunk.len() >= keep {
                chunk[chunk.len() - keep..].to_vec()
            } else {
                straddling[straddling.len().saturating_sub(keep)..].to_vec()
            };
        }
        self.seen += chunk.len() as u64;
        match (self.size, self.range) {
            (Some(size), Some((min, _))) if size < min => Err(too_small(min)),
            (Some(size), Some((_, max))) if size > max => Err(too_large(max)),
            // Without the delimiter yet, all but its possible start is the file's.
            (None, Some((_, max)))
                if self.seen.saturating_sub(self.finder.needle().len() as u64) > max =>
            {
                Err(too_large(max))
            }
            _ => Ok(()),
        }
    }

    fn end(&self) -> Result<(), Refusal> {
        match self.size {
            Some(_) => Ok(()),
            None => Err(malformed("the file part is not closed by the boundary")),
        }
    }
}

/// The form's fields before the file, and the file part's own headers.
#[derive(Debug)]
struct Form {
    /// Name as sent, value.
    fields: Vec<(String, String)>,
    file_name: Option<String>,
    /// The file part's delimiter line and headers, through the blank line, as sent.
    head_bytes: Vec<u8>,
    /// Where `head_bytes` lie in the body: the file's first byte is at `end`.
    file_head: std::ops::Range<usize>,
}

enum Parsed {
    Incomplete,
    Complete(Form),
}

impl Form {
    /// Form field names are case-insensitive, as S3 reads them.
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `key` field with `${filename}` replaced by the file's name, as S3 stores it.
    fn object_key(&self) -> Result<String, Refusal> {
        let key = self.field("key").filter(|k| !k.is_empty()).ok_or_else(|| {
            invalid(
                "InvalidArgument",
                "Bucket POST must contain a field named 'key', before the file",
            )
        })?;
        Ok(key.replace("${filename}", self.file_name.as_deref().unwrap_or("")))
    }

    /// The request's headers as policies see them for this upload: the object's content type
    /// (the `Content-Type` field) and the file's size.
    fn facts_headers(&self, request: &HeaderMap, size: u64) -> HeaderMap {
        let mut headers = request.clone();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        match self
            .field("content-type")
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            Some(v) => headers.insert(header::CONTENT_TYPE, v),
            None => headers.remove(header::CONTENT_TYPE),
        };
        headers
    }
}

/// The boundary of a `multipart/form-data` body.
fn boundary(headers: &HeaderMap) -> Result<String, Refusal> {
    let precondition = || {
        Refusal::new(
            "invalid",
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            "Bucket POST must be of the enclosure-type multipart/form-data",
        )
    };
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(precondition)?;
    let mut params = value.split(';');
    let kind = params.next().unwrap_or("").trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return Err(precondition());
    }
    let boundary = params
        .filter_map(|p| p.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value.trim().trim_matches('"').to_string())
        .ok_or_else(|| malformed("Content-Type names no boundary"))?;
    // RFC 2046: 1 to 70 characters, none of them a line break.
    if boundary.is_empty() || boundary.len() > 70 || boundary.contains(['\r', '\n']) {
        return Err(malformed("the boundary must be 1 to 70 characters"));
    }
    Ok(boundary)
}

/// Reads the parts before the file: `Incomplete` while `buf` does not yet hold the file
/// part's headers.
fn parse(buf: &[u8], boundary: &str) -> Result<Parsed, Refusal> {
    let dashed = format!("--{boundary}");
    let delimiter = format!("\r\n{dashed}");
    // A preamble before the first delimiter is allowed, and ignored.
    let mut at = if buf.starts_with(dashed.as_bytes()) {
        0
    } else {
        match memmem::find(buf, delimiter.as_bytes()) {
            Some(i) => i + 2,
            None => return Ok(Parsed::Incomplete),
        }
    };
    let mut fields: Vec<(String, String)> = Vec::new();
    loop {
        let mut line_end = at + dashed.len();
        if buf.len() < line_end + 2 {
            return Ok(Parsed::Incomplete);
        }
        if &buf[line_end..line_end + 2] == b"--" {
            return Err(malformed("the form ends without a file part"));
        }
        // Transport padding may follow a delimiter.
        while matches!(buf.get(line_end), Some(b' ' | b'\t')) {
            line_end += 1;
        }
        match buf.get(line_end..line_end + 2) {
            None => return Ok(Parsed::Incomplete),
            Some(b"\r\n") => {}
            Some(_) => return Err(malformed("a boundary line is followed by other text")),
        }
        let headers_start = line_end + 2;
        let mut storage = [httparse::EMPTY_HEADER; 8];
        let (used, headers) = match httparse::parse_headers(&buf[headers_start..], &mut storage) {
            Ok(httparse::Status::Complete(parsed)) => parsed,
            Ok(httparse::Status::Partial) => return Ok(Parsed::Incomplete),
            Err(e) => return Err(malformed(format!("a part's headers cannot be read ({e})"))),
        };
        let data_start = headers_start + used;
        let (name, file_name) = headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-disposition"))
            .and_then(|h| disposition(h.value))
            .ok_or_else(|| {
                malformed("every part needs Content-Disposition: form-data; name=\"...\"")
            })?;
        if name.eq_ignore_ascii_case("file") {
            return Ok(Parsed::Complete(Form {
                fields,
                file_name,
                head_bytes: buf[at..data_start].to_vec(),
                file_head: at..data_start,
            }));
        }
        if name.is_empty() || name.contains(|c: char| c == '"' || c.is_control()) {
            return Err(invalid(
                "InvalidArgument",
                format!("form field name {name:?} is empty or holds a quote or control character"),
            ));
        }
        let Some(length) = memmem::find(&buf[data_start..], delimiter.as_bytes()) else {
            return Ok(Parsed::Incomplete);
        };
        let value = std::str::from_utf8(&buf[data_start..data_start + length]).map_err(|_| {
            invalid(
                "InvalidArgument",
                format!("form field {name:?} is not UTF-8"),
            )
        })?;
        if fields.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            return Err(invalid(
                "InvalidArgument",
                format!("form field {name:?} appears more than once"),
            ));
        }
        fields.push((name, value.to_string()));
        at = data_start + length + 2;
    }
}

/// `name` and `filename` from `form-data; name="..."; filename="..."`. Quoted values are read
/// as HTML forms write them: a quote inside is sent as `%22`, and a backslash is a backslash.
fn disposition(value: &[u8]) -> Option<(String, Option<String>)> {
    let value = std::str::from_utf8(value).ok()?;
    let (kind, mut rest) = value.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return None;
    }
    let (mut name, mut file_name) = (None, None);
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            break;
        }
        let (param, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (text, remaining) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => {
                let end = after.find(';').unwrap_or(after.len());
                (after[..end].trim(), &after[end..])
            }
        };
        match param.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(text.to_string()),
            "filename" => file_name = Some(text.to_string()),
            _ => {}
        }
        rest = remaining;
    }
    Some((name?, file_name))
}

/// Who signed the form, and its policy, with the signature checked; a form with no signature
/// fields at all is anonymous where the resource lets anonymous callers write.
fn identify<'r>(ctx: &Ctx<'r>, form: &Form) -> Result<(Sender<'r>, Option<PostPolicy>), Refusal> {
    if form.field("awsaccesskeyid").is_some() || form.field("signature").is_some() {
        return Err(auth_refusal(&AuthError::Unsupported(
            "Signature Version 2 POST forms are not accepted; sign the POST policy with \
             Signature Version 4 (e.g. boto3's generate_presigned_post with \
             Config(signature_version=\"s3v4\"))"
                .into(),
        )));
    }
    if form.field("x-amz-security-token").is_some() {
        return Err(auth_refusal(&AuthError::Unsupported(
            "Shoal credentials have no session token; remove the x-amz-security-token field".into(),
        )));
    }
    if SIGNATURE_FIELDS.iter().all(|f| form.field(f).is_none()) {
        return anonymous(ctx, &Method::POST).map(|sender| (sender, None));
    }
    let field = |name: &str| {
        form.field(name).ok_or_else(|| {
            invalid(
                "InvalidArgument",
                format!(
                    "a signed form upload needs the field {name} (the fields are {})",
                    SIGNATURE_FIELDS.join(", ")
                ),
            )
        })
    };
    let (policy, algorithm, credential, date, signature) = (
        field("policy")?,
        field("x-amz-algorithm")?,
        field("x-amz-credential")?,
        field("x-amz-date")?,
        field("x-amz-signature")?,
    );
    if algorithm != ALGORITHM {
        return Err(auth_refusal(&AuthError::Unsupported(format!(
            "x-amz-algorithm must be {ALGORITHM}, got {algorithm:?}"
        ))));
    }
    let scope = Scope::parse(credential, date).map_err(|e| auth_refusal(&e))?;
    let Some(key) = ctx.routes.s3_keys.get(&scope.access_key_id) else {
        return Err(auth_refusal(&AuthError::UnknownKey));
    };
    let expected = aws_sigv4::sign::v4::calculate_signature(
        scope.signing_key(key.secret.expose()),
        policy.as_bytes(),
    );
    if !bool::from(
        expected
            .as_bytes()
            .ct_eq(signature.to_ascii_lowercase().as_bytes()),
    ) {
        return Err(auth_refusal(&AuthError::Mismatch));
    }
    Ok((Sender::Form(key), Some(PostPolicy::decode(policy)?)))
}

/// A POST policy: until when the form may be used, and what its fields must say.
#[derive(Debug)]
struct PostPolicy {
    expiration: DateTime<Utc>,
    conditions: Vec<Condition>,
}

#[derive(Debug)]
enum Condition {
    /// Field name (lowercase), value.
    Equals(String, String),
    StartsWith(String, String),
    Length(u64, u64),
}

impl Condition {
    fn field(&self) -> Option<&str> {
        match self {
            Self::Equals(f, _) | Self::StartsWith(f, _) => Some(f),
            Self::Length(..) => None,
        }
    }

    /// As S3 quotes a failed condition.
    fn describe(&self) -> String {
        match self {
            Self::Equals(f, v) => json!(["eq", format!("${f}"), v]).to_string(),
            Self::StartsWith(f, v) => json!(["starts-with", format!("${f}"), v]).to_string(),
            Self::Length(min, max) => json!(["content-length-range", min, max]).to_string(),
        }
    }

    fn parse(value: &Value) -> Result<Self, Refusal> {
        let bad = || invalid_policy(format!("Invalid Condition: {value}"));
        match value {
            Value::Object(map) if map.len() == 1 => {
                let (name, expected) = map.iter().next().ok_or_else(bad)?;
                let expected = expected.as_str().ok_or_else(bad)?;
                let name = name.strip_prefix('$').unwrap_or(name);
                Ok(Self::Equals(name.to_ascii_lowercase(), expected.into()))
            }
            Value::Array(items) if items.len() == 3 => {
                let op = items[0].as_str().ok_or_else(bad)?.to_ascii_lowercase();
                if op == "content-length-range" {
                    let bound = |v: &Value| {
                        v.as_u64()
                            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                            .ok_or_else(bad)
                    };
                    let (min, max) = (bound(&items[1])?, bound(&items[2])?);
                    if min > max {
                        return Err(bad());
                    }
                    return Ok(Self::Length(min, max));
                }
                let name = items[1]
                    .as_str()
                    .and_then(|n| n.strip_prefix('$'))
                    .ok_or_else(bad)?
                    .to_ascii_lowercase();
                let expected = items[2].as_str().ok_or_else(bad)?.to_string();
                match op.as_str() {
                    "eq" => Ok(Self::Equals(name, expected)),
                    "starts-with" => Ok(Self::StartsWith(name, expected)),
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        }
    }

    fn holds(&self, value: &str) -> bool {
        match self {
            Self::Equals(_, expected) => value == expected,
            // A Content-Type may list several types: each must start so.
            Self::StartsWith(field, prefix) if field == "content-type" => value
                .split(',')
                .all(|t| t.trim().starts_with(prefix.as_str())),
            Self::StartsWith(_, prefix) => value.starts_with(prefix.as_str()),
            Self::Length(..) => true,
        }
    }
}

impl PostPolicy {
    fn decode(base64_text: &str) -> Result<Self, Refusal> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(base64_text.trim())
            .map_err(|e| invalid_policy(format!("the policy is not base64 ({e})")))?;
        let document: Value = serde_json::from_slice(&bytes)
            .map_err(|e| invalid_policy(format!("the policy is not JSON ({e})")))?;
        let expiration = document
            .get("expiration")
            .ok_or_else(|| invalid_policy("Policy missing expiration."))?;
        let expiration = expiration
            .as_str()
            .and_then(|e| DateTime::parse_from_rfc3339(e).ok())
            .ok_or_else(|| {
                invalid_policy(format!(
                    "Invalid 'expiration' value: {expiration} (an ISO 8601 time such as \
                     2026-12-31T12:00:00.000Z)"
                ))
            })?
            .with_timezone(&Utc);
        let conditions = document
            .get("conditions")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid_policy("Policy missing conditions."))?
            .iter()
            .map(Condition::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            expiration,
            conditions,
        })
    }

    /// Checks the form against the policy as S3 does: not expired, every condition holds,
    /// every field is named by a condition. Returns the file's allowed size range.
    fn check(
        &self,
        form: &Form,
        bucket: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(u64, u64)>, Refusal> {
        if now > self.expiration {
            return Err(not_allowed("Policy expired."));
        }
        if form.field("bucket").is_some_and(|b| b != bucket) {
            return Err(invalid(
                "InvalidArgument",
                "the form's bucket field does not name the bucket it is posted to",
            ));
        }
        let mut range: Option<(u64, u64)> = None;
        for condition in &self.conditions {
            let value = match condition {
                Condition::Length(min, max) => {
                    range = Some(match range {
                        Some((lo, hi)) => (lo.max(*min), hi.min(*max)),
                        None => (*min, *max),
                    });
                    continue;
                }
                _ if condition.field() == Some("bucket") => bucket,
                _ => condition.field().and_then(|f| form.field(f)).unwrap_or(""),
            };
            if !condition.holds(value) {
                return Err(not_allowed(format!(
                    "Policy Condition failed: {}",
                    condition.describe()
                )));
            }
        }
        let uncovered = form.fields.iter().map(|(n, _)| n).find(|name| {
            let lower = name.to_ascii_lowercase();
            !matches!(lower.as_str(), "policy" | "x-amz-signature")
                && !lower.starts_with("x-ignore-")
                && !self
                    .conditions
                    .iter()
                    .any(|c| c.field() == Some(lower.as_str()))
        });
        if let Some(name) = uncovered {
            return Err(not_allowed(format!("Extra input fields: {name}")));
        }
        Ok(range)
    }
}

/// The fuzz target's body (`fuzzing::post_form`): every parser here on untrusted bytes.
#[cfg(any(fuzzing, test))]
pub(crate) fn fuzz(data: &[u8]) {
    let Some(newline) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let (Ok(boundary), body) = (std::str::from_utf8(&data[..newline]), &data[newline + 1..]) else {
        return;
    };
    let Ok(Parsed::Complete(form)) = parse(body, boundary) else {
        return;
    };
    let _ = form.object_key();
    if let Some(Ok(policy)) = form.field("policy").map(PostPolicy::decode) {
        let _ = policy.check(&form, "bucket", DateTime::<Utc>::UNIX_EPOCH);
    }
    let chunk = usize::from(data[0] % 17) + 1;
    let mut scan = FileScan::new(boundary, Some((1, 64)));
    for piece in body[form.file_head.end..].chunks(chunk) {
        if scan.feed(piece).is_err() {
            return;
        }
    }
    let _ = scan.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "XyZ";

    fn form_body(fields: &[(&str, &str)], file: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, v) in fields {
            out.extend_from_slice(
                format!("--{B}\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n")
                    .as_bytes(),
            );
        }
        out.extend_from_slice(
            format!(
                "--{B}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a b.txt\"\r\n\
                 Content-Type: text/plain\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(file);
        out.extend_from_slice(format!("\r\n--{B}--\r\n").as_bytes());
        out
    }

    fn complete(buf: &[u8]) -> Form {
        match parse(buf, B).unwrap() {
            Parsed::Complete(form) => form,
            Parsed::Incomplete => panic!("incomplete"),
        }
    }

    #[test]
    fn fields_before_the_file_are_read_and_the_file_starts_after_its_headers() {
        let body = form_body(
            &[("key", "up/${filename}"), ("Content-Type", "text/plain")],
            b"hello",
        );
        let form = complete(&body);
        assert_eq!(form.field("KEY"), Some("up/${filename}"));
        assert_eq!(form.field("content-type"), Some("text/plain"));
        assert_eq!(form.object_key().unwrap(), "up/a b.txt");
        assert_eq!(&body[form.file_head.end..form.file_head.end + 5], b"hello");
        assert!(form.head_bytes.starts_with(b"--XyZ\r\n"));
        assert!(form.head_bytes.ends_with(b"text/plain\r\n\r\n"));
        // Every shorter prefix is incomplete, never an error or a wrong answer.
        for cut in 0..form.file_head.end {
            assert!(
                matches!(parse(&body[..cut], B), Ok(Parsed::Incomplete)),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn malformed_forms_are_refused_with_what_is_wrong() {
        let no_file = format!(
            "--{B}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--{B}--\r\n"
        );
        assert_eq!(
            parse(no_file.as_bytes(), B).err().unwrap().code,
            "MalformedPOSTRequest"
        );
        let twice = form_body(&[("key", "a"), ("KEY", "b")], b"");
        let refusal = parse(&twice, B).err().unwrap();
        assert!(
            refusal.message.contains("more than once"),
            "{}",
            refusal.message
        );
        let no_disposition = format!("--{B}\r\nX: y\r\n\r\nv\r\n--{B}\r\n");
        assert_eq!(
            parse(no_disposition.as_bytes(), B).err().unwrap().code,
            "MalformedPOSTRequest"
        );
    }

    #[test]
    fn disposition_reads_quoted_and_bare_values_as_browsers_write_them() {
        assert_eq!(
            disposition(br#"form-data; name="file"; filename="C:\x;y.txt""#),
            Some(("file".into(), Some(r"C:\x;y.txt".into())))
        );
        assert_eq!(
            disposition(b"form-data;name=key"),
            Some(("key".into(), None))
        );
        assert_eq!(disposition(b"attachment; name=\"key\""), None);
    }

    #[test]
    fn boundary_comes_from_the_content_type() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data; boundary=\"a b\""),
        );
        assert_eq!(boundary(&h).unwrap(), "a b");
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        assert_eq!(boundary(&h).err().unwrap().code, "PreconditionFailed");
    }

    fn policy(conditions: Value, expiration: &str) -> PostPolicy {
        let doc = json!({"expiration": expiration, "conditions": conditions}).to_string();
        PostPolicy::decode(&base64::engine::general_purpose::STANDARD.encode(doc)).unwrap()
    }

    #[test]
    fn a_policy_must_name_every_field_and_every_condition_must_hold() {
        let now = Utc::now();
        let later = (now + chrono::TimeDelta::hours(1)).to_rfc3339();
        let body = form_body(
            &[
                ("key", "up/x"),
                ("Content-Type", "image/png"),
                ("x-ignore-me", "1"),
                ("policy", "p"),
            ],
            b"",
        );
        let form = complete(&body);
        let ok = policy(
            json!([{"bucket": "b"}, ["starts-with", "$key", "up/"], ["eq", "$Content-Type", "image/png"], ["content-length-range", 1, 10]]),
            &later,
        );
        assert_eq!(ok.check(&form, "b", now).unwrap(), Some((1, 10)));
        let wrong_bucket = ok.check(&form, "other", now).err().unwrap();
        assert!(
            wrong_bucket.message.contains(r#"["eq","$bucket","b"]"#),
            "{}",
            wrong_bucket.message
        );
        let extra = policy(
            json!([{"bucket": "b"}, ["starts-with", "$key", ""]]),
            &later,
        );
        let refusal = extra.check(&form, "b", now).err().unwrap();
        assert_eq!(
            refusal.message,
            "Invalid according to Policy: Extra input fields: Content-Type"
        );
        let expired = policy(
            json!([]),
            &(now - chrono::TimeDelta::seconds(1)).to_rfc3339(),
        );
        assert_eq!(
            expired.check(&form, "b", now).err().unwrap().message,
            "Invalid according to Policy: Policy expired."
        );
        let prefix = policy(json!([["starts-with", "$key", "other/"]]), &later);
        assert_eq!(
            prefix.check(&form, "b", now).err().unwrap().code,
            "AccessDenied"
        );
    }

    #[test]
    fn malformed_policies_are_invalid_policy_documents() {
        for doc in [
            "not base64!".to_string(),
            base64::engine::general_purpose::STANDARD.encode("{"),
            base64::engine::general_purpose::STANDARD.encode(r#"{"conditions": []}"#),
            base64::engine::general_purpose::STANDARD.encode(r#"{"expiration": "soon", "conditions": []}"#),
            base64::engine::general_purpose::STANDARD
                .encode(r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [["ne", "$key", "a"]]}"#),
            base64::engine::general_purpose::STANDARD
                .encode(r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [["content-length-range", 5, 1]]}"#),
        ] {
            assert_eq!(PostPolicy::decode(&doc).err().unwrap().code, "InvalidPolicyDocument", "{doc}");
        }
    }

    /// Feeds `body` (what follows the file's first byte) in chunks of `size`.
    fn scan(body: &[u8], size: usize, range: Option<(u64, u64)>) -> Result<Option<u64>, Refusal> {
        let mut scan = FileScan::new(B, range);
        for chunk in body.chunks(size) {
            scan.feed(chunk)?;
        }
        scan.end()?;
        Ok(scan.size)
    }

    #[test]
    fn the_file_s_size_is_found_wherever_chunks_split_the_delimiter() {
        let body = [
            b"0123456789".as_slice(),
            format!("\r\n--{B}--\r\n").as_bytes(),
        ]
        .concat();
        for size in 1..body.len() {
            assert_eq!(scan(&body, size, None).unwrap(), Some(10), "chunk {size}");
            assert_eq!(scan(&body, size, Some((10, 10))).unwrap(), Some(10));
            assert_eq!(
                scan(&body, size, Some((0, 9))).err().unwrap().code,
                "EntityTooLarge"
            );
            assert_eq!(
                scan(&body, size, Some((11, 20))).err().unwrap().code,
                "EntityTooSmall"
            );
        }
        assert_eq!(
            scan(b"0123456789", 4, None).err().unwrap().code,
            "MalformedPOSTRequest"
        );
    }
}
