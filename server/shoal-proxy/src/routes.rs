//! One config revision as the data plane uses it. Built off the request path when a revision
//! arrives; requests read it through one `ArcSwap` load.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderName, Uri};
use shoal_control_plane::{ConfigSnapshot, Credential, Enforcement, OnError, ResourceSpec};
use shoal_policy::{Policy, Subject, Target, Windows};

pub(crate) struct Routes {
    pub revision: i64,
    pub by_port: HashMap<u16, Arc<Route>>,
    pub policies: Vec<(Arc<Policy>, OnError)>,
    /// Policies that failed to compile here: every request is refused while they are in force
    /// (fail closed), naming them.
    pub broken: Vec<String>,
    /// Any enabled policy asks for strict counting.
    pub strict: bool,
    pub api_keys: HashMap<String, ApiKey>,
    pub windows: Windows,
}

pub(crate) struct Route {
    pub name: String,
    pub kind: RouteKind,
    pub target: Target,
}

pub(crate) enum RouteKind {
    Http {
        upstream: Uri,
        api_key_header: HeaderName,
    },
}

pub(crate) struct ApiKey {
    pub user: String,
    pub secret_sha256: Vec<u8>,
    pub subject: Subject,
}

impl Routes {
    /// The data plane's view of `config`, and a line per resource or policy it cannot serve.
    pub(crate) fn build(config: &ConfigSnapshot, window_names: &[String]) -> (Self, Vec<String>) {
        let mut warnings = Vec::new();
        let mut by_port = HashMap::new();
        for r in config.resources.iter().filter(|r| r.enabled) {
            let Some(port) = r.spec.port() else {
                continue;
            };
            let kind = match &r.spec {
                ResourceSpec::Http(h) => {
                    let upstream = match h.upstream.parse::<Uri>() {
                        Ok(u) if u.scheme_str() == Some("http") => u,
                        Ok(_) => {
                            warnings.push(format!(
                                "resource {:?}: only http:// upstreams are served yet, got {:?}",
                                r.name, h.upstream
                            ));
                            continue;
                        }
                        Err(e) => {
                            warnings.push(format!("resource {:?}: upstream: {e}", r.name));
                            continue;
                        }
                    };
                    let Ok(api_key_header) = HeaderName::try_from(h.api_key_header.as_str()) else {
                        warnings.push(format!(
                            "resource {:?}: api_key_header {:?} is not a header name",
                            r.name, h.api_key_header
                        ));
                        continue;
                    };
                    RouteKind::Http {
                        upstream,
                        api_key_header,
                    }
                }
                ResourceSpec::S3(_) => {
                    warnings.push(format!(
                        "resource {:?}: the S3 kind is not served by this version yet",
                        r.name
                    ));
                    continue;
                }
            };
            by_port.insert(
                port,
                Arc::new(Route {
                    name: r.name.clone(),
                    target: Target::new(&r.name, r.spec.kind()),
                    kind,
                }),
            );
        }
        let mut policies = Vec::new();
        let mut broken = Vec::new();
        let mut strict = false;
        for p in config.policies.iter().filter(|p| p.enabled) {
            match Policy::compile(&p.name, &p.rego) {
                Ok(compiled) => {
                    policies.push((Arc::new(compiled), p.on_error));
                    strict |= p.enforcement == Enforcement::Strict;
                }
                Err(e) => {
                    warnings.push(format!("{e}; requests are refused while it is in force"));
                    broken.push(p.name.clone());
                }
            }
        }
        let mut api_keys = HashMap::new();
        for u in config.users.iter().filter(|u| u.enabled) {
            let subject = Subject::new(&u.name, &[]);
            for c in &u.credentials {
                if let Credential::ApiKey {
                    key_id,
                    secret_sha256,
                    enabled: true,
                } = c
                {
                    api_keys.insert(
                        key_id.clone(),
                        ApiKey {
                            user: u.name.clone(),
                            secret_sha256: secret_sha256.clone(),
                            subject: subject.clone(),
                        },
                    );
                }
            }
        }
        (
            Self {
                revision: config.revision,
                by_port,
                policies,
                broken,
                strict,
                api_keys,
                windows: Windows::new(window_names),
            },
            warnings,
        )
    }
}
