//! Entry points for the fuzz targets in `fuzz/` (`scripts/fuzz`). cargo-fuzz builds with
//! `--cfg fuzzing` and the tests below replay the targets' inputs, so normal builds never
//! contain this module, and the parsers stay private to the crate. Each entry point splits the input on `\n` into the parts of a request and
//! builds only what hyper could have handed the data plane (a valid `Uri`, valid header names
//! and values): anything else never reaches these parsers.

use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::{post_form, s3, sigv4};

/// The secret of AWS's example key pair, so the seeds made from AWS's SigV4 examples verify.
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// 2013-05-24T00:05:00Z: inside the validity of AWS's header and presigned examples.
const NOW_SECS: u64 = 1_369_353_900;
/// At most this many header lines are read (a request's headers are bounded too).
const MAX_HEADERS: usize = 16;

/// The caller's SigV4 signature. Input lines: `[METHOD ]request-target`, the
/// `Authorization` value (empty: none), then `name:value` headers (`x-amz-date`,
/// `x-amz-content-sha256`, `host`, ...). Parses as `s3::identify` does, verifies against
/// [`SECRET`] at a fixed time, and canonicalizes the path and query.
pub fn sigv4(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let Some((method, uri)) = lines.next().and_then(request_line) else {
        return;
    };
    let mut headers = HeaderMap::new();
    if let Some(auth) = lines.next().filter(|l| !l.is_empty()) {
        let Ok(value) = HeaderValue::from_bytes(auth) else {
            return;
        };
        headers.insert("authorization", value);
    }
    for line in lines.filter(|l| !l.is_empty()).take(MAX_HEADERS) {
        let Some((name, value)) = header(line) else {
            return;
        };
        headers.append(name, value);
    }
    sigv4::canonical_path(uri.path());
    sigv4::canonical_query(uri.query().unwrap_or(""), &["X-Amz-Signature"]);
    sigv4::canonical_query(uri.query().unwrap_or(""), &sigv4::PRESIGN_PARAMS);
    let Ok(presented) = sigv4::parse(&uri, &headers) else {
        return;
    };
    presented.signed("x-amz-copy-source");
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS);
    if presented
        .verify(SECRET, &method, &uri, &headers, now)
        .is_ok()
    {
        // Only a verified request's chunk chain is ever built.
        presented.chunk_chain(SECRET);
    }
}

/// S3 addressing and operations. Input lines: method, `Host` value, request target
/// (path and query), and optionally the `x-amz-copy-source` value; virtual-host buckets
/// are recognised under `s3.example.com`, as `s3::handle` is configured by a resource.
pub fn s3_request(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let (Some(method), Some(host), Some(target)) = (lines.next(), lines.next(), lines.next())
    else {
        return;
    };
    let Ok(method) = Method::from_bytes(method) else {
        return;
    };
    let Ok(uri) = Uri::try_from(target) else {
        return;
    };
    // `s3::handle` reads the Host header as text and treats anything else as no host.
    let host = HeaderValue::from_bytes(host).ok();
    let host = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
    let copy = lines.next().filter(|l| !l.is_empty());
    if let Some(copy) = copy {
        let _ = s3::copy_source(copy);
    }
    let domains = ["s3.example.com".to_string()];
    if let Ok(location) = s3::locate(&domains, host, uri.path()) {
        s3::operation(
            &method,
            &location,
            uri.query().unwrap_or(""),
            copy.is_some(),
        );
    }
}

/// A form upload's body. Input: the boundary on the first line, then the body. Reads the
/// fields as `post_form::handle` does, decodes and checks a `policy` field's policy, and
/// scans the rest for the file's end in chunks of a size the first byte picks.
pub fn post_form(data: &[u8]) {
    post_form::fuzz(data);
}

/// `[METHOD ]target`: GET when no method is given.
fn request_line(line: &[u8]) -> Option<(Method, Uri)> {
    let (method, target) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (Method::from_bytes(&line[..i]).ok()?, &line[i + 1..]),
        None => (Method::GET, line),
    };
    Some((method, Uri::try_from(target).ok()?))
}

/// `name:value`, the value trimmed of spaces as an HTTP parser does.
fn header(line: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = HeaderName::from_bytes(&line[..colon]).ok()?;
    let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use shoal_config::fuzzing::{edited, inputs};

    use super::*;

    #[test]
    fn every_seed_and_corpus_request_is_handled_without_a_panic() {
        for input in inputs("sigv4") {
            sigv4(&input);
        }
        for input in inputs("s3_request") {
            s3_request(&input);
        }
        for input in inputs("post_form") {
            post_form(&input);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        #[test]
        fn edited_signatures_are_handled_without_a_panic(input in edited("sigv4")) {
            sigv4(&input);
        }

        #[test]
        fn edited_s3_requests_are_handled_without_a_panic(input in edited("s3_request")) {
            s3_request(&input);
        }

        #[test]
        fn edited_forms_are_handled_without_a_panic(input in edited("post_form")) {
            post_form(&input);
        }
    }
}
