//! The caller's SigV4 signature, checked the way S3 checks it.
//!
//! A proxy cannot hand the request to a signing library and compare: it must rebuild the
//! canonical request from exactly what the caller signed (its `SignedHeaders`, its payload
//! hash, its time), so the canonical request is built here, and the key derivation and HMAC
//! come from `aws-sigv4`. Both forms are accepted: the `Authorization` header and presigned
//! URLs (`X-Amz-*` query parameters).

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, Method, Uri};
use chrono::{NaiveDateTime, TimeZone as _, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a header-signed request's time may be from the node's clock (S3's own bound).
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// The longest validity a presigned URL may ask for (7 days, as S3).
const MAX_EXPIRES_SECS: u64 = 7 * 24 * 3600;

/// SigV4's URI encoding: everything but `A-Za-z0-9-_.~` is percent-encoded.
pub(crate) const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same, keeping the path's slashes.
pub(crate) const UNRESERVED_PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// Query parameters that carry a presigned URL's signature; never forwarded upstream.
pub(crate) const PRESIGN_PARAMS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

/// Why a request's signature was not accepted; each maps to the S3 error code clients expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// Neither an `Authorization` header nor presigned parameters.
    Missing,
    /// Signature Version 2, another algorithm, or a session token.
    Unsupported(String),
    /// The header or query parameters cannot be read.
    Malformed(String),
    /// A presigned URL's parameters are out of range (S3 answers these with 403
    /// `AuthorizationQueryParametersError`, and S3 clients and suites expect it).
    QueryParameters(String),
    UnknownKey,
    /// The request's time is too far from the node's clock.
    Skewed,
    /// A presigned URL past its expiry.
    Expired,
    Mismatch,
}

/// The payload hash the caller signed (`x-amz-content-sha256`); it travels to the upstream
/// unchanged, which checks the body against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Payload {
    /// The body's SHA-256, lowercase hex.
    Sha256(String),
    Unsigned,
    /// aws-chunked body, chunks not signed, checksum in a trailer.
    UnsignedTrailer,
    /// aws-chunked body with a signature per chunk, chained to the caller's signature.
    SignedChunks(String),
}

impl Payload {
    fn parse(value: &str) -> Result<Self, AuthError> {
        Ok(match value {
            "UNSIGNED-PAYLOAD" => Payload::Unsigned,
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER" => Payload::UnsignedTrailer,
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
            | "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
            | "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"
            | "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER" => {
                Payload::SignedChunks(value.to_string())
            }
            hash if hash.len() == 64
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Payload::Sha256(hash.to_string())
            }
            other => {
                return Err(AuthError::Malformed(format!(
                    "x-amz-content-sha256 must be the body's SHA-256 in lowercase hex or \
                     UNSIGNED-PAYLOAD, got {:?}",
                    truncate(other)
                )));
            }
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Payload::Sha256(h) => h,
            Payload::Unsigned => "UNSIGNED-PAYLOAD",
            Payload::UnsignedTrailer => "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            Payload::SignedChunks(s) => s,
        }
    }
}

/// What the caller presented, read from the request but not yet checked.
#[derive(Debug)]
pub(crate) struct Presented {
    pub scope: Scope,
    signed_headers: Vec<String>,
    signature: String,
    pub payload: Payload,
    /// A presigned URL's lifetime; `None` for header signatures.
    expires: Option<Duration>,
}

/// Reads the signature from the `Authorization` header or the presigned query parameters.
pub(crate) fn parse(uri: &Uri, headers: &HeaderMap) -> Result<Presented, AuthError> {
    let header = headers.get("authorization");
    let query = uri.query().unwrap_or("");
    let presigned = query_pairs(query)
        .any(|(name, _)| name == b"X-Amz-Algorithm" || name == b"X-Amz-Signature");
    if headers.contains_key("x-amz-security-token") {
        return Err(AuthError::Unsupported(
            "Shoal credentials have no session token; remove x-amz-security-token".into(),
        ));
    }
    let presigned_v2 = query_pairs(query).any(|(name, _)| name == b"AWSAccessKeyId");
    if presigned_v2 && header.is_none() {
        return Err(AuthError::Unsupported(
            "Signature Version 2 presigned URLs are not accepted; presign with Signature \
             Version 4 (e.g. boto3 Config(signature_version=\"s3v4\"))"
                .into(),
        ));
    }
    match (header, presigned) {
        (Some(_), true) => Err(AuthError::Malformed(
            "a request is signed either in the Authorization header or in the query, not both"
                .into(),
        )),
        (Some(value), false) => {
            let value = value.to_str().map_err(|_| {
                AuthError::Malformed("the Authorization header is not ASCII".into())
            })?;
            parse_header(value, headers)
        }
        (None, true) => parse_query(query),
        (None, false) => Err(AuthError::Missing),
    }
}

fn parse_header(value: &str, headers: &HeaderMap) -> Result<Presented, AuthError> {
    let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm == "AWS" {
        return Err(AuthError::Unsupported(
            "Signature Version 2 is not accepted; sign with Signature Version 4 (AWS4-HMAC-SHA256)"
                .into(),
        ));
    }
    if algorithm != ALGORITHM {
        return Err(AuthError::Unsupported(format!(
            "the signing algorithm must be {ALGORITHM}, got {:?}",
            truncate(algorithm)
        )));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        let Some((name, value)) = part.split_once('=') else {
            return Err(AuthError::Malformed(format!(
                "Authorization part {:?} is not name=value",
                truncate(part)
            )));
        };
        match name {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed_headers = Some(value),
            "Signature" => signature = Some(value),
            other => {
                return Err(AuthError::Malformed(format!(
                    "unknown Authorization part {:?}",
                    truncate(other)
                )));
            }
        }
    }
    let missing =
        |what: &str| AuthError::Malformed(format!("the Authorization header has no {what}"));
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    let amz_date = headers
        .get("x-amz-date")
        .ok_or_else(|| AuthError::Malformed("the x-amz-date header is required".into()))?
        .to_str()
        .map_err(|_| AuthError::Malformed("x-amz-date is not ASCII".into()))?;
    let payload = headers
        .get("x-amz-content-sha256")
        .ok_or_else(|| {
            AuthError::Malformed(
                "the x-amz-content-sha256 header is required (the body's SHA-256 or \
                 UNSIGNED-PAYLOAD)"
                    .into(),
            )
        })?
        .to_str()
        .map_err(|_| AuthError::Malformed("x-amz-content-sha256 is not ASCII".into()))?;
    presented(
        credential,
        signed_headers,
        signature,
        amz_date,
        Payload::parse(payload)?,
        None,
    )
}

fn parse_query(query: &str) -> Result<Presented, AuthError> {
    let mut params = std::collections::HashMap::new();
    for (name, value) in query_pairs(query) {
        let name = String::from_utf8_lossy(&name).into_owned();
        if PRESIGN_PARAMS.contains(&name.as_str()) {
            let value = String::from_utf8(value).map_err(|_| {
                AuthError::Malformed(format!("query parameter {name} is not UTF-8"))
            })?;
            if params.insert(name.clone(), value).is_some() {
                return Err(AuthError::Malformed(format!(
                    "query parameter {name} appears twice"
                )));
            }
        }
    }
    if params.contains_key("X-Amz-Security-Token") {
        return Err(AuthError::Unsupported(
            "Shoal credentials have no session token; remove X-Amz-Security-Token".into(),
        ));
    }
    let get = |name: &str| {
        params.get(name).map(String::as_str).ok_or_else(|| {
            AuthError::Malformed(format!("a presigned URL needs the {name} query parameter"))
        })
    };
    let algorithm = get("X-Amz-Algorithm")?;
    if algorithm != ALGORITHM {
        return Err(AuthError::Unsupported(format!(
            "X-Amz-Algorithm must be {ALGORITHM}, got {:?}",
            truncate(algorithm)
        )));
    }
    // 0 is a URL that has already expired, as in S3; negative, fractional and over a week
    // are parameters S3 refuses.
    let given = get("X-Amz-Expires")?;
    let expires = given
        .parse::<u64>()
        .ok()
        .filter(|s| *s <= MAX_EXPIRES_SECS)
        .ok_or_else(|| {
            AuthError::QueryParameters(format!(
                "X-Amz-Expires must be a whole number of seconds from 0 to {MAX_EXPIRES_SECS} \
                 (a week), got {:?}",
                truncate(given)
            ))
        })?;
    presented(
        get("X-Amz-Credential")?,
        get("X-Amz-SignedHeaders")?,
        get("X-Amz-Signature")?,
        get("X-Amz-Date")?,
        Payload::Unsigned,
        Some(Duration::from_secs(expires)),
    )
}

/// A credential scope (`<key id>/<yyyymmdd>/<region>/s3/aws4_request`) and the request time
/// it must agree with: what header, presigned and POST-form signatures share.
#[derive(Debug)]
pub(crate) struct Scope {
    pub access_key_id: String,
    scope_date: String,
    region: String,
    amz_date: String,
    time: SystemTime,
}

impl Scope {
    pub(crate) fn parse(credential: &str, amz_date: &str) -> Result<Self, AuthError> {
        let parts: Vec<&str> = credential.split('/').collect();
        let [access_key_id, scope_date, region, service, terminator] = parts[..] else {
            return Err(AuthError::Malformed(
                "Credential must be <access key id>/<yyyymmdd>/<region>/s3/aws4_request".into(),
            ));
        };
        if terminator != "aws4_request" || access_key_id.is_empty() || region.is_empty() {
            return Err(AuthError::Malformed(
                "Credential must be <access key id>/<yyyymmdd>/<region>/s3/aws4_request".into(),
            ));
        }
        if service != "s3" {
            return Err(AuthError::Malformed(format!(
                "the credential scope's service must be s3, got {:?}",
                truncate(service)
            )));
        }
        let time = NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ").map_err(|_| {
            AuthError::Malformed(format!(
                "the request time must look like 20260101T120000Z, got {:?}",
                truncate(amz_date)
            ))
        })?;
        if !amz_date.starts_with(scope_date) || scope_date.len() != 8 {
            return Err(AuthError::Malformed(format!(
                "the credential scope's date {:?} is not the request's date",
                truncate(scope_date)
            )));
        }
        Ok(Self {
            access_key_id: access_key_id.to_string(),
            scope_date: scope_date.to_string(),
            region: region.to_string(),
            amz_date: amz_date.to_string(),
            time: Utc.from_utc_datetime(&time).into(),
        })
    }

    /// The key this scope's signatures are made with, from the secret of its access key.
    pub(crate) fn signing_key(&self, secret: &str) -> impl AsRef<[u8]> + use<> {
        aws_sigv4::sign::v4::generate_signing_key(secret, self.time, &self.region, "s3")
    }
}

fn presented(
    credential: &str,
    signed_headers: &str,
    signature: &str,
    amz_date: &str,
    payload: Payload,
    expires: Option<Duration>,
) -> Result<Presented, AuthError> {
    let scope = Scope::parse(credential, amz_date)?;
    let signed_headers: Vec<String> = signed_headers.split(';').map(str::to_string).collect();
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(AuthError::Malformed(
            "SignedHeaders must include host".into(),
        ));
    }
    if signed_headers
        .iter()
        .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(AuthError::Malformed(
            "SignedHeaders must be lowercase header names separated by ';'".into(),
        ));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthError::Malformed(
            "Signature must be 64 hexadecimal digits".into(),
        ));
    }
    Ok(Presented {
        scope,
        signed_headers,
        signature: signature.to_ascii_lowercase(),
        payload,
        expires,
    })
}

impl Presented {
    /// Checks the time window, then the signature against `secret`.
    pub(crate) fn verify(
        &self,
        secret: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Result<(), AuthError> {
        match self.expires {
            None => {
                let skew = now
                    .duration_since(self.scope.time)
                    .or_else(|_| self.scope.time.duration_since(now))
                    .unwrap_or_default();
                if skew > MAX_SKEW {
                    return Err(AuthError::Skewed);
                }
            }
            Some(expires) => {
                if self.scope.time > now + MAX_SKEW {
                    return Err(AuthError::Skewed);
                }
                if expires.is_zero() || now > self.scope.time + expires {
                    return Err(AuthError::Expired);
                }
            }
        }
        let canonical_headers = self.canonical_headers(uri, headers)?;
        let skip: &[&str] = if self.expires.is_some() {
            &["X-Amz-Signature"]
        } else {
            &[]
        };
        let query = canonical_query(uri.query().unwrap_or(""), skip);
        let key = self.scope.signing_key(secret);
        let raw_path = if uri.path().is_empty() {
            "/"
        } else {
            uri.path()
        };
        let strict_path = canonical_path(raw_path);
        // S3 clients encode keys strictly, so the re-encoded path is what they signed; a
        // client that sends a character unencoded and signed it so is accepted too.
        let mut candidates = vec![strict_path.as_ref()];
        if strict_path != raw_path {
            candidates.push(raw_path);
        }
        for path in candidates {
            let canonical_request = format!(
                "{method}\n{path}\n{query}\n{canonical_headers}\n{}\n{}",
                self.signed_headers.join(";"),
                self.payload.as_str()
            );
            let string_to_sign = format!(
                "{ALGORITHM}\n{}\n{}/{}/s3/aws4_request\n{}",
                self.scope.amz_date,
                self.scope.scope_date,
                self.scope.region,
                hex::encode(Sha256::digest(canonical_request.as_bytes()))
            );
            let expected =
                aws_sigv4::sign::v4::calculate_signature(&key, string_to_sign.as_bytes());
            if bool::from(expected.as_bytes().ct_eq(self.signature.as_bytes())) {
                return Ok(());
            }
        }
        Err(AuthError::Mismatch)
    }

    /// `name:value\n` for each signed header, values trimmed with inner runs of spaces
    /// collapsed and repeated headers joined with commas.
    fn canonical_headers(&self, uri: &Uri, headers: &HeaderMap) -> Result<String, AuthError> {
        let mut out = String::new();
        for name in &self.signed_headers {
            let mut values: Vec<Cow<'_, str>> = headers
                .get_all(name.as_str())
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
                .collect();
            if values.is_empty() && name == "host" {
                // HTTP/2 carries the host as :authority.
                values.extend(uri.authority().map(|a| Cow::Borrowed(a.as_str())));
            }
            if values.is_empty() {
                return Err(AuthError::Malformed(format!(
                    "signed header {name:?} is not in the request"
                )));
            }
            out.push_str(name);
            out.push(':');
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&value.split_whitespace().collect::<Vec<_>>().join(" "));
            }
            out.push('\n');
        }
        Ok(out)
    }

    /// The caller's chunk-signature chain, seeded by this request's signature.
    pub(crate) fn chunk_chain(&self, secret: &str) -> crate::chunked::Chain {
        crate::chunked::Chain {
            key: self.scope.signing_key(secret).as_ref().to_vec(),
            amz_date: self.scope.amz_date.clone(),
            scope: format!(
                "{}/{}/s3/aws4_request",
                self.scope.scope_date, self.scope.region
            ),
            previous: self.signature.clone(),
        }
    }

    /// Headers the caller signed: only these `x-amz-*` headers may travel upstream.
    pub(crate) fn signed(&self, name: &str) -> bool {
        self.signed_headers.iter().any(|h| h == name)
    }
}

/// The path as SigV4 canonicalizes it for S3: decoded, then every byte outside the unreserved
/// set percent-encoded once (no dot-segment normalization).
pub(crate) fn canonical_path(raw: &str) -> Cow<'_, str> {
    let decoded: Vec<u8> = percent_decode_str(raw).collect();
    let encoded: Cow<'_, str> = percent_encode(&decoded, UNRESERVED_PATH).into();
    if encoded == raw {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(encoded.into_owned())
    }
}

/// Query parameters decoded (`+` is a literal plus), in order.
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (
            percent_decode_str(name).collect(),
            percent_decode_str(value).collect(),
        )
    })
}

/// Parameters encoded strictly and sorted by name, then value, without those named in `skip`
/// (a presigned URL's own signature). Also the form in which the query is forwarded upstream.
pub(crate) fn canonical_query(query: &str, skip: &[&str]) -> String {
    let mut pairs: Vec<(String, String)> = query_pairs(query)
        .filter(|(name, _)| !skip.iter().any(|s| s.as_bytes() == name.as_slice()))
        .map(|(name, value)| {
            (
                percent_encode(&name, UNRESERVED).to_string(),
                percent_encode(&value, UNRESERVED).to_string(),
            )
        })
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(query.len());
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Caller-supplied text quoted in an error, cut short.
fn truncate(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// The example key pair of AWS's "Signature Calculations for the Authorization Header"
    /// and "Authenticating Requests: Using Query Parameters" pages (Amazon S3 API Reference).
    const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn at(s: &str) -> SystemTime {
        Utc.from_utc_datetime(&NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ").unwrap())
            .into()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                axum::http::HeaderName::try_from(*name).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    /// AWS's "GET Object" example: a Range request for the first 10 bytes of test.txt.
    fn get_object() -> (Uri, HeaderMap) {
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        (
            "/test.txt".parse().unwrap(),
            headers(&[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_SHA256),
                ("x-amz-date", "20130524T000000Z"),
                ("authorization", &authorization),
            ]),
        )
    }

    fn check(uri: &Uri, h: &HeaderMap, method: Method, now: &str) -> Result<(), AuthError> {
        let presented = parse(uri, h)?;
        assert_eq!(presented.scope.access_key_id, ACCESS_KEY);
        presented.verify(SECRET, &method, uri, h, at(now))
    }

    #[test]
    fn aws_get_object_example_verifies() {
        let (uri, h) = get_object();
        assert_eq!(check(&uri, &h, Method::GET, "20130524T000500Z"), Ok(()));
    }

    #[test]
    fn aws_list_objects_example_verifies_with_its_query() {
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;x-amz-content-sha256;x-amz-date,\
             Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
        let uri: Uri = "/?max-keys=2&prefix=J".parse().unwrap();
        let h = headers(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
            ("authorization", &authorization),
        ]);
        assert_eq!(check(&uri, &h, Method::GET, "20130524T000000Z"), Ok(()));
        // The same parameters in another order canonicalize the same way.
        let swapped: Uri = "/?prefix=J&max-keys=2".parse().unwrap();
        assert_eq!(check(&swapped, &h, Method::GET, "20130524T000000Z"), Ok(()));
    }

    #[test]
    fn aws_presigned_example_verifies_until_it_expires() {
        let uri: Uri = format!(
            "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential={ACCESS_KEY}%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        )
        .parse()
        .unwrap();
        let h = headers(&[("host", "examplebucket.s3.amazonaws.com")]);
        assert_eq!(check(&uri, &h, Method::GET, "20130524T120000Z"), Ok(()));
        assert_eq!(
            check(&uri, &h, Method::GET, "20130525T000001Z"),
            Err(AuthError::Expired)
        );
        assert_eq!(
            check(&uri, &h, Method::GET, "20130523T000000Z"),
            Err(AuthError::Skewed)
        );
        // The signature covers the method and the path.
        assert_eq!(
            check(&uri, &h, Method::PUT, "20130524T120000Z"),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn presign_expiry_edges_get_s3_s_answers() {
        let uri = |expires: &str| -> Uri {
            format!(
                "/k?X-Amz-Algorithm=AWS4-HMAC-SHA256\
                 &X-Amz-Credential={ACCESS_KEY}%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
                 &X-Amz-Date=20130524T000000Z&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host\
                 &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
            )
            .parse()
            .unwrap()
        };
        let h = headers(&[("host", "examplebucket.s3.amazonaws.com")]);
        // Zero: already expired, even within the same second.
        assert_eq!(
            check(&uri("0"), &h, Method::GET, "20130524T000000Z"),
            Err(AuthError::Expired)
        );
        for bad in ["-1", "1.5", "604801", "99999999999999999999", "x"] {
            let err = parse(&uri(bad), &h).unwrap_err();
            assert!(
                matches!(&err, AuthError::QueryParameters(m) if m.contains("0 to 604800") && m.contains(bad)),
                "{bad}: {err:?}"
            );
        }
        assert!(parse(&uri("604800"), &h).is_ok());
    }

    #[test]
    fn tampering_with_anything_signed_is_a_mismatch() {
        let (uri, h) = get_object();
        let now = "20130524T000000Z";
        let mut range = h.clone();
        range.insert("range", HeaderValue::from_static("bytes=0-99"));
        assert_eq!(
            check(&uri, &range, Method::GET, now),
            Err(AuthError::Mismatch)
        );
        let other: Uri = "/test2.txt".parse().unwrap();
        assert_eq!(
            check(&other, &h, Method::GET, now),
            Err(AuthError::Mismatch)
        );
        let mut host = h.clone();
        host.insert(
            "host",
            HeaderValue::from_static("otherbucket.s3.amazonaws.com"),
        );
        assert_eq!(
            check(&uri, &host, Method::GET, now),
            Err(AuthError::Mismatch)
        );
        let presented = parse(&uri, &h).unwrap();
        assert_eq!(
            presented.verify("wrong", &Method::GET, &uri, &h, at(now)),
            Err(AuthError::Mismatch)
        );
        // An unsigned header may change (it is not forwarded if it is x-amz-*).
        let mut extra = h.clone();
        extra.insert("x-amz-meta-added", HeaderValue::from_static("1"));
        assert_eq!(check(&uri, &extra, Method::GET, now), Ok(()));
        assert!(!presented.signed("x-amz-meta-added"));
    }

    #[test]
    fn header_signatures_are_refused_outside_the_clock_skew() {
        let (uri, h) = get_object();
        assert_eq!(
            check(&uri, &h, Method::GET, "20130524T001501Z"),
            Err(AuthError::Skewed)
        );
        assert_eq!(
            check(&uri, &h, Method::GET, "20130523T234459Z"),
            Err(AuthError::Skewed)
        );
        assert_eq!(check(&uri, &h, Method::GET, "20130524T001459Z"), Ok(()));
    }

    #[test]
    fn malformed_and_unsupported_signatures_say_what_is_wrong() {
        let uri: Uri = "/b/k".parse().unwrap();
        let base = [
            ("host", "h"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ];
        let with_auth = |auth: &str| {
            let mut h = headers(&base);
            h.insert("authorization", HeaderValue::from_str(auth).unwrap());
            parse(&uri, &h).unwrap_err()
        };
        let sig = "0".repeat(64);
        assert!(
            matches!(with_auth("AWS AKID:c2ln"), AuthError::Unsupported(m) if m.contains("Version 2"))
        );
        assert!(matches!(with_auth("HMAC x"), AuthError::Unsupported(_)));
        assert!(matches!(
            with_auth(&format!("AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3, SignedHeaders=host, Signature={sig}")),
            AuthError::Malformed(m) if m.contains("Credential must be")
        ));
        assert!(matches!(
            with_auth(&format!("AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature={sig}")),
            AuthError::Malformed(m) if m.contains("service must be s3")
        ));
        assert!(matches!(
            with_auth(&format!("AWS4-HMAC-SHA256 Credential=AKID/20130525/us-east-1/s3/aws4_request, SignedHeaders=host, Signature={sig}")),
            AuthError::Malformed(m) if m.contains("not the request's date")
        ));
        assert!(matches!(
            with_auth(&format!("AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request, SignedHeaders=range, Signature={sig}")),
            AuthError::Malformed(m) if m.contains("include host")
        ));
        assert!(matches!(
            with_auth("AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=xyz"),
            AuthError::Malformed(m) if m.contains("64 hexadecimal")
        ));
        assert!(matches!(
            with_auth("AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request"),
            AuthError::Malformed(m) if m.contains("no SignedHeaders")
        ));
        let mut no_hash = headers(&base[..2]);
        no_hash.insert(
            "authorization",
            HeaderValue::from_str(&format!("AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, Signature={sig}")).unwrap(),
        );
        assert!(
            matches!(parse(&uri, &no_hash), Err(AuthError::Malformed(m)) if m.contains("x-amz-content-sha256"))
        );
        assert_eq!(
            parse(&uri, &headers(&base)).unwrap_err(),
            AuthError::Missing
        );
        let mut token = headers(&base);
        token.insert("x-amz-security-token", HeaderValue::from_static("t"));
        assert!(matches!(
            parse(&uri, &token),
            Err(AuthError::Unsupported(_))
        ));
        let v2: Uri = "/b/k?AWSAccessKeyId=AKID&Expires=1&Signature=x"
            .parse()
            .unwrap();
        assert!(
            matches!(parse(&v2, &headers(&[("host", "h")])), Err(AuthError::Unsupported(m)) if m.contains("Version 2"))
        );
        let expired: Uri = "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=999999999"
            .parse()
            .unwrap();
        assert!(
            matches!(parse(&expired, &headers(&base)), Err(AuthError::QueryParameters(m)) if m.contains("X-Amz-Expires"))
        );
    }

    #[test]
    fn payload_hashes_are_recognized() {
        assert_eq!(
            Payload::parse(EMPTY_SHA256),
            Ok(Payload::Sha256(EMPTY_SHA256.into()))
        );
        assert_eq!(Payload::parse("UNSIGNED-PAYLOAD"), Ok(Payload::Unsigned));
        assert!(matches!(
            Payload::parse("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            Ok(Payload::SignedChunks(_))
        ));
        assert!(Payload::parse(&EMPTY_SHA256.to_uppercase()).is_err());
        assert!(Payload::parse("abc").is_err());
    }

    #[test]
    fn paths_and_queries_canonicalize_as_s3_expects() {
        assert_eq!(canonical_path("/b/a%20b"), "/b/a%20b");
        assert_eq!(canonical_path("/b/a b!"), "/b/a%20b%21");
        assert_eq!(canonical_path("/b/%7Ex"), "/b/~x");
        assert_eq!(canonical_path("/b/caf%C3%A9"), "/b/caf%C3%A9");
        assert_eq!(
            canonical_query("uploads&prefix=a+b&a=%2f", &[]),
            "a=%2F&prefix=a%2Bb&uploads="
        );
        assert_eq!(
            canonical_query("X-Amz-Signature=abc&x=1", &["X-Amz-Signature"]),
            "x=1"
        );
    }
}
