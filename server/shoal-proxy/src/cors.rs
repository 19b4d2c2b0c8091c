//! CORS for browsers, from the resource's rules (`shoal_model::CorsRule`): a preflight is
//! answered here, before identification, since it carries no credential and asks nothing of
//! the data; an actual request from an allowed origin gets the headers that let the page read
//! the answer. The upstream's own CORS headers are dropped on a resource with rules, so what a
//! browser is told comes from one place.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use shoal_model::CorsRule;

/// A resource's rules, prepared once per revision.
#[derive(Default)]
pub(crate) struct Cors {
    rules: Vec<Rule>,
}

struct Rule {
    origins: Vec<Pattern>,
    methods: Vec<Method>,
    /// Lower-cased.
    headers: Vec<Pattern>,
    allow_methods: HeaderValue,
    expose: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
}

/// A glob with at most one `*` (checked when the rule was stored).
struct Pattern {
    before: String,
    after: Option<String>,
}

impl Pattern {
    fn new(text: &str) -> Self {
        match text.split_once('*') {
            Some((before, after)) => Self {
                before: before.to_string(),
                after: Some(after.to_string()),
            },
            None => Self {
                before: text.to_string(),
                after: None,
            },
        }
    }

    fn matches(&self, text: &str) -> bool {
        match &self.after {
            None => text == self.before,
            Some(after) => {
                text.len() >= self.before.len() + after.len()
                    && text.starts_with(&self.before)
                    && text.ends_with(after.as_str())
            }
        }
    }
}

/// Why a preflight is refused, for the caller and the audit line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refused(pub String);

impl Cors {
    pub(crate) fn new(rules: &[CorsRule]) -> Self {
        let value = |v: String| HeaderValue::from_str(&v).ok();
        Self {
            rules: rules
                .iter()
                .map(|r| Rule {
                    origins: r.allowed_origins.iter().map(|o| Pattern::new(o)).collect(),
                    methods: r
                        .allowed_methods
                        .iter()
                        .filter_map(|m| m.parse().ok())
                        .collect(),
                    headers: r
                        .allowed_headers
                        .iter()
                        .map(|h| Pattern::new(&h.to_ascii_lowercase()))
                        .collect(),
                    allow_methods: value(r.allowed_methods.join(", "))
                        .unwrap_or(HeaderValue::from_static("GET")),
                    expose: (!r.expose_headers.is_empty())
                        .then(|| value(r.expose_headers.join(", ")))
                        .flatten(),
                    max_age: r.max_age_seconds.map(HeaderValue::from),
                })
                .collect(),
        }
    }

    /// A browser's preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
    pub(crate) fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(header::ORIGIN)
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The headers of the answer to a preflight, or why it is refused: the first rule that
    /// allows the origin, the method and every requested header applies, as in S3.
    pub(crate) fn preflight(
        &self,
        resource: &str,
        request: &HeaderMap,
    ) -> Result<HeaderMap, Refused> {
        if self.rules.is_empty() {
            return Err(Refused(format!(
                "CORSResponse: CORS is not configured on resource {resource:?} (cors in its spec)"
            )));
        }
        let text = |name: HeaderName| request.get(name).and_then(|v| v.to_str().ok());
        let origin = text(header::ORIGIN).unwrap_or_default();
        let method: Option<Method> =
            text(header::ACCESS_CONTROL_REQUEST_METHOD).and_then(|m| m.trim().parse().ok());
        let asked: Vec<String> = text(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let rule = method.as_ref().and_then(|method| {
            self.rules.iter().find(|r| {
                r.allows(origin, method)
                    && asked.iter().all(|h| r.headers.iter().any(|p| p.matches(h)))
            })
        });
        let Some(rule) = rule else {
            return Err(Refused(format!(
                "CORSResponse: this CORS request is not allowed: no rule of resource {resource:?} \
                 allows origin {origin:?}, method {:?} and headers {:?}",
                text(header::ACCESS_CONTROL_REQUEST_METHOD).unwrap_or_default(),
                asked.join(", ")
            )));
        };
        let mut out = HeaderMap::new();
        rule.allow_origin(origin, &mut out);
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            rule.allow_methods.clone(),
        );
        if let Some(asked) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        }
        if let Some(age) = &rule.max_age {
            out.insert(header::ACCESS_CONTROL_MAX_AGE, age.clone());
        }
        out.insert(
            header::VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        Ok(out)
    }

    /// Adds to an answer (the upstream's or a refusal) what lets a page from `origin` read it,
    /// when a rule allows the origin and the method; the upstream's own CORS headers go.
    pub(crate) fn decorate(&self, origin: Option<&str>, method: &Method, response: &mut HeaderMap) {
        if self.rules.is_empty() {
            return;
        }
        let upstream_cors: Vec<HeaderName> = response
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in upstream_cors {
            response.remove(name);
        }
        let Some(origin) = origin else {
            return;
        };
        // Caches keep one answer per origin.
        response.append(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(rule) = self.rules.iter().find(|r| r.allows(origin, method)) {
            rule.allow_origin(origin, response);
            if let Some(expose) = &rule.expose {
                response.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
            }
        }
    }
}

impl Rule {
    fn allows(&self, origin: &str, method: &Method) -> bool {
        self.methods.contains(method) && self.origins.iter().any(|p| p.matches(origin))
    }

    /// The origin itself, not `*`: a page's requests are answered for that page only.
    fn allow_origin(&self, origin: &str, out: &mut HeaderMap) {
        if let Ok(value) = HeaderValue::from_str(origin) {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors() -> Cors {
        Cors::new(&[
            CorsRule {
                allowed_origins: vec![
                    "https://app.example.com".into(),
                    "https://*.example.org".into(),
                ],
                allowed_methods: vec!["GET".into(), "PUT".into()],
                allowed_headers: vec!["content-type".into(), "x-amz-*".into()],
                expose_headers: vec!["ETag".into()],
                max_age_seconds: Some(600),
            },
            CorsRule {
                allowed_origins: vec!["*".into()],
                allowed_methods: vec!["HEAD".into()],
                allowed_headers: vec![],
                expose_headers: vec![],
                max_age_seconds: None,
            },
        ])
    }

    fn preflight(origin: &str, method: &str, headers: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, origin.parse().unwrap());
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            method.parse().unwrap(),
        );
        if !headers.is_empty() {
            h.insert(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                headers.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_preflight_is_answered_from_the_first_rule_that_allows_all_it_asks() {
        let c = cors();
        let out = c
            .preflight(
                "objects",
                &preflight("https://app.example.com", "PUT", "Content-Type, X-Amz-Date"),
            )
            .unwrap();
        assert_eq!(
            out[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, PUT");
        assert_eq!(
            out[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "Content-Type, X-Amz-Date"
        );
        assert_eq!(out[header::ACCESS_CONTROL_MAX_AGE], "600");
        let sub = c
            .preflight(
                "objects",
                &preflight("https://files.example.org", "GET", ""),
            )
            .unwrap();
        assert_eq!(
            sub[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://files.example.org"
        );
        // The second rule: any origin, HEAD only.
        let any = c
            .preflight("objects", &preflight("http://elsewhere.test", "HEAD", ""))
            .unwrap();
        assert_eq!(
            any[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://elsewhere.test"
        );
    }

    #[test]
    fn what_no_rule_allows_is_refused_saying_what_was_asked() {
        let c = cors();
        for (origin, method, headers) in [
            ("https://evil.example.com", "GET", ""),
            ("https://app.example.com", "DELETE", ""),
            ("https://app.example.com", "PUT", "authorization-x"),
            ("https://example.org", "GET", ""),
            ("http://elsewhere.test", "GET", ""),
        ] {
            let Refused(why) = c
                .preflight("objects", &preflight(origin, method, headers))
                .unwrap_err();
            assert!(why.contains(origin) && why.contains(method), "{why}");
        }
        let Refused(why) = Cors::default()
            .preflight("objects", &preflight("https://app.example.com", "GET", ""))
            .unwrap_err();
        assert!(
            why.contains("CORS is not configured on resource \"objects\""),
            "{why}"
        );
    }

    #[test]
    fn answers_to_allowed_origins_are_readable_and_upstream_cors_headers_go() {
        let c = cors();
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".parse().unwrap());
        headers.insert(header::ETAG, "\"abc\"".parse().unwrap());
        c.decorate(Some("https://app.example.com"), &Method::PUT, &mut headers);
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(headers[header::ACCESS_CONTROL_EXPOSE_HEADERS], "ETag");
        assert_eq!(headers[header::VARY], "Origin");
        let mut other = HeaderMap::new();
        other.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".parse().unwrap());
        c.decorate(Some("https://evil.example.com"), &Method::GET, &mut other);
        assert!(!other.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        // A resource without rules passes the upstream's headers on untouched.
        let mut untouched = HeaderMap::new();
        untouched.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".parse().unwrap());
        Cors::default().decorate(Some("https://x.test"), &Method::GET, &mut untouched);
        assert_eq!(untouched[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }
}
