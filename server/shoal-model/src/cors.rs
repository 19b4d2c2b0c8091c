//! A resource's CORS rules: which web origins may call it from a browser, with which methods
//! and headers. The shape is S3's bucket CORS configuration (a list of rules, the first that
//! matches applies), so an operator moving a bucket's rules behind Shoal copies them over.
//! The data plane answers preflights from these rules itself: a preflight carries no
//! credential, so it never reaches a policy or the upstream.

use serde::{Deserialize, Serialize};

/// Most rules a resource may have, as S3 allows per bucket.
pub const MAX_CORS_RULES: usize = 100;

/// Methods a rule may allow: S3's list.
pub const CORS_METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];

/// Longest preflight cache a rule may ask browsers for (a day; browsers cap it lower anyway).
pub const MAX_CORS_MAX_AGE: u32 = 86_400;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsRule {
    /// `https://app.example.com`, `https://*.example.com` (one `*`), or `*` for any origin.
    pub allowed_origins: Vec<String>,
    /// From [`CORS_METHODS`].
    pub allowed_methods: Vec<String>,
    /// Request headers a browser may send (case-insensitive, one `*` each; `*` for any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,
    /// Response headers a page's script may read (`ETag` for multipart uploads, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// How long a browser may cache the preflight's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u32>,
}

/// The rules' errors, each naming the rule and field (`cors[1].allowed_origins[0]: ...`).
pub(crate) fn check_cors(rules: &[CorsRule]) -> Result<(), String> {
    if rules.len() > MAX_CORS_RULES {
        return Err(format!(
            "cors: {} rules; the limit is {MAX_CORS_RULES}",
            rules.len()
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        let at = |field: &str| format!("cors[{i}].{field}");
        if rule.allowed_origins.is_empty() {
            return Err(format!("{}: at least one origin", at("allowed_origins")));
        }
        for (j, origin) in rule.allowed_origins.iter().enumerate() {
            check_origin(origin).map_err(|e| format!("{}[{j}]: {e}", at("allowed_origins")))?;
        }
        if rule.allowed_methods.is_empty() {
            return Err(format!("{}: at least one method", at("allowed_methods")));
        }
        for (j, method) in rule.allowed_methods.iter().enumerate() {
            if !CORS_METHODS.contains(&method.as_str()) {
                return Err(format!(
                    "{}[{j}]: {method:?} is not one of {}",
                    at("allowed_methods"),
                    CORS_METHODS.join(", ")
                ));
            }
        }
        for (j, header) in rule.allowed_headers.iter().enumerate() {
            check_header(header, true)
                .map_err(|e| format!("{}[{j}]: {e}", at("allowed_headers")))?;
        }
        for (j, header) in rule.expose_headers.iter().enumerate() {
            check_header(header, false)
                .map_err(|e| format!("{}[{j}]: {e}", at("expose_headers")))?;
        }
        if let Some(age) = rule.max_age_seconds
            && age > MAX_CORS_MAX_AGE
        {
            return Err(format!(
                "{}: {age} is over {MAX_CORS_MAX_AGE} (a day)",
                at("max_age_seconds")
            ));
        }
    }
    Ok(())
}

/// `*`, or `scheme://host[:port]` with at most one `*`, as browsers send `Origin`.
fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let shape = "an origin is `*` or scheme://host[:port] (one `*` allowed), without a path";
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(format!("{origin:?}: {shape}"));
    };
    let scheme_ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    let rest_ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:*[]".contains(&b));
    if !scheme_ok || !rest_ok || origin.matches('*').count() > 1 {
        return Err(format!("{origin:?}: {shape}"));
    }
    Ok(())
}

/// An HTTP header name (a token), with one `*` where `wildcard` allows it.
fn check_header(header: &str, wildcard: bool) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'+-.^_`|~".contains(&b);
    let stars = header.matches('*').count();
    let ok = !header.is_empty()
        && header.bytes().all(|b| token(b) || (wildcard && b == b'*'))
        && stars <= 1;
    if ok {
        Ok(())
    } else if wildcard {
        Err(format!("{header:?} is not a header name (one `*` allowed)"))
    } else {
        Err(format!("{header:?} is not a header name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str]) -> CorsRule {
        CorsRule {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_methods: methods.iter().map(|s| s.to_string()).collect(),
            allowed_headers: vec!["*".into(), "x-amz-*".into(), "Content-Type".into()],
            expose_headers: vec!["ETag".into()],
            max_age_seconds: Some(3000),
        }
    }

    #[test]
    fn rules_in_s3_s_shape_are_accepted() {
        let rules = [
            rule(
                &["https://app.example.com", "http://localhost:5173"],
                &["GET", "PUT", "POST"],
            ),
            rule(&["https://*.example.com"], &["HEAD"]),
            rule(&["*"], &["GET"]),
        ];
        assert_eq!(check_cors(&rules), Ok(()));
        assert_eq!(check_cors(&[]), Ok(()));
    }

    #[test]
    fn each_bad_field_is_named_with_its_rule() {
        let mut wide = rule(&["*"], &["GET"]);
        wide.max_age_seconds = Some(86_401);
        let mut star_expose = rule(&["*"], &["GET"]);
        star_expose.expose_headers = vec!["*".into()];
        let mut bad_header = rule(&["*"], &["GET"]);
        bad_header.allowed_headers = vec!["x amz".into()];
        for (rules, want) in [
            (
                vec![rule(&[], &["GET"])],
                "cors[0].allowed_origins: at least one origin",
            ),
            (
                vec![rule(&["*"], &["GET"]), rule(&["app.example.com"], &["GET"])],
                "cors[1].allowed_origins[0]: \"app.example.com\": an origin is",
            ),
            (
                vec![rule(&["https://*.*.example.com"], &["GET"])],
                "cors[0].allowed_origins[0]: \"https://*.*.example.com\"",
            ),
            (
                vec![rule(&["https://app.example.com/path"], &["GET"])],
                "without a path",
            ),
            (
                vec![rule(&["*"], &[])],
                "cors[0].allowed_methods: at least one method",
            ),
            (
                vec![rule(&["*"], &["PATCH"])],
                "cors[0].allowed_methods[0]: \"PATCH\" is not one of GET, PUT, POST, DELETE, HEAD",
            ),
            (vec![wide], "cors[0].max_age_seconds: 86401 is over 86400"),
            (
                vec![star_expose],
                "cors[0].expose_headers[0]: \"*\" is not a header name",
            ),
            (
                vec![bad_header],
                "cors[0].allowed_headers[0]: \"x amz\" is not a header name",
            ),
            (
                vec![rule(&["*"], &["GET"]); MAX_CORS_RULES + 1],
                "cors: 101 rules; the limit is 100",
            ),
        ] {
            let e = check_cors(&rules).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
