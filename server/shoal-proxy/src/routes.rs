//! One config revision as the data plane uses it. Built off the request path when a revision
//! arrives; requests read it through one `ArcSwap` load.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderName, Uri};
use shoal_config::{Secret, SecretKey};

use crate::cors::Cors;
use shoal_model::{
    ANONYMOUS, Addressing, AnonymousAccess, ConfigSnapshot, Credential, Enforcement, OnError,
    OnUnreachable, ResourceSpec, S3Spec, open_sealed_secret,
};
use shoal_policy::{InputParts, Policy, PolicyData, Stage, Subject, Target, Windows};

/// What a policy names to read the global counts.
const GLOBAL_COUNTS: &str = "global_access_count";

/// What a policy names to read the byte counts.
const BYTE_COUNTS: [&str; 2] = ["bytes_read", "bytes_written"];

pub(crate) struct Routes {
    pub revision: i64,
    pub by_port: HashMap<u16, Arc<Route>>,
    pub policies: Vec<RoutePolicy>,
    /// Policies that failed to compile here: every request is refused while they are in force
    /// (fail closed), naming them.
    pub broken: Vec<String>,
    /// Any enabled policy asks for strict counting.
    pub strict: bool,
    /// Any enabled policy reads `global_access_count`: only then is a request counted in the
    /// global cluster too, so regional-only policies cost what they did.
    pub global: bool,
    /// Any enabled policy mentions headers or query parameters: only then are they built
    /// into the input.
    pub request_detail: bool,
    /// Any enabled policy reads `bytes_read` or `bytes_written`: only then are body bytes
    /// counted (a strict reservation per response is a round trip to the key's owner).
    pub bytes: bool,
    /// Any enabled policy has a `pre_response` rule: only then does a response wait for the
    /// response stage.
    pub response_stage: bool,
    /// The parts of `input` the enabled policies read: only those are built per request.
    pub input_parts: InputParts,
    pub api_keys: HashMap<String, ApiKey>,
    /// S3 credentials by access key id.
    pub s3_keys: HashMap<String, S3Key>,
    pub windows: Windows,
    /// `input.user` for a caller without credentials.
    pub anonymous: Subject,
}

/// An enabled policy, compiled, with what to do when it fails or members are unreachable.
pub(crate) struct RoutePolicy {
    pub compiled: Arc<Policy>,
    pub on_error: OnError,
    pub on_unreachable: OnUnreachable,
    /// Evaluated and audited, never enforced.
    pub shadow: bool,
}

pub(crate) struct Route {
    pub name: String,
    pub kind: RouteKind,
    pub target: Target,
    pub cors: Cors,
    /// What callers without credentials may do here.
    pub anonymous: AnonymousAccess,
}

pub(crate) enum RouteKind {
    Http {
        upstream: Uri,
        api_key_header: HeaderName,
    },
    S3(S3Route),
}

pub(crate) struct S3Route {
    pub endpoint: Uri,
    pub region: String,
    pub addressing: Addressing,
    /// Lowercase, so a Host header compares after one lowercase.
    pub virtual_host_domains: Vec<String>,
    pub upstream_key: Option<KeyPair>,
}

/// An access key id with its secret in plain text (SigV4 needs the secret itself).
pub(crate) struct KeyPair {
    pub access_key_id: String,
    pub secret: Secret<String>,
}

pub(crate) struct ApiKey {
    pub key_id: String,
    pub user: String,
    pub secret_sha256: Vec<u8>,
    pub subject: Subject,
}

pub(crate) struct S3Key {
    pub access_key_id: String,
    pub user: String,
    pub secret: Secret<String>,
    pub subject: Subject,
}

impl Routes {
    /// The data plane's view of `config`, and a line per resource or policy it cannot serve.
    pub(crate) fn build(
        config: &ConfigSnapshot,
        window_names: &[String],
        secrets_key: Option<&SecretKey>,
    ) -> (Self, Vec<String>) {
        let mut warnings = Vec::new();
        let mut by_port = HashMap::new();
        for r in config.resources.iter().filter(|r| r.enabled) {
            let Some(port) = r.spec.port() else {
                continue;
            };
            let (cors, anonymous) = match &r.spec {
                ResourceSpec::Http(h) => (Cors::new(&h.cors), h.anonymous),
                ResourceSpec::S3(s) => (Cors::new(&s.cors), s.anonymous),
            };
            let kind = match &r.spec {
                ResourceSpec::Http(h) => {
                    let upstream = match h.upstream.parse::<Uri>() {
                        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) => u,
                        Ok(_) => {
                            warnings.push(format!(
                                "resource {:?}: upstream must be http:// or https://, got {:?}",
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
                ResourceSpec::S3(spec) => match s3_route(spec, secrets_key) {
                    Ok(route) => RouteKind::S3(route),
                    Err(e) => {
                        warnings.push(format!("resource {:?}: {e}; not served", r.name));
                        continue;
                    }
                },
            };
            by_port.insert(
                port,
                Arc::new(Route {
                    name: r.name.clone(),
                    target: Target::from_json(r.policy_input()),
                    kind,
                    cors,
                    anonymous,
                }),
            );
        }
        let mut policies = Vec::new();
        let mut broken = Vec::new();
        let mut strict = false;
        let mut global = false;
        let mut request_detail = false;
        let mut bytes = false;
        let mut response_stage = false;
        // Every policy of the revision reads the same documents, converted once.
        let data = PolicyData::from_json(
            config
                .documents
                .iter()
                .map(|d| (d.name.clone(), d.document.clone()))
                .collect(),
        );
        for p in config.policies.iter().filter(|p| p.enabled) {
            global |= p.rego.contains(GLOBAL_COUNTS);
            request_detail |= p.rego.contains("headers") || p.rego.contains("query");
            bytes |= BYTE_COUNTS.iter().any(|b| p.rego.contains(b));
            match Policy::compile_with_data(&p.name, &p.rego, data.clone()) {
                Ok(compiled) => {
                    response_stage |= compiled.defines(Stage::Response);
                    policies.push(RoutePolicy {
                        compiled: Arc::new(compiled),
                        on_error: p.on_error,
                        on_unreachable: p.on_unreachable,
                        shadow: p.shadow,
                    });
                    strict |= p.enforcement == Enforcement::Strict;
                }
                // A shadow policy enforces nothing, so failing to compile refuses nothing.
                Err(e) if p.shadow => warnings.push(format!(
                    "{e}; it is in shadow mode, so requests are not refused for it"
                )),
                Err(e) => {
                    warnings.push(format!("{e}; requests are refused while it is in force"));
                    broken.push(p.name.clone());
                }
            }
        }
        let mut api_keys = HashMap::new();
        let mut s3_keys = HashMap::new();
        for u in config.users.iter().filter(|u| u.enabled) {
            let subject = Subject::from_json(u.profile.policy_input(&u.name));
            for c in &u.credentials {
                match c {
                    Credential::ApiKey {
                        key_id,
                        secret_sha256,
                        enabled: true,
                    } => {
                        api_keys.insert(
                            key_id.clone(),
                            ApiKey {
                                key_id: key_id.clone(),
                                user: u.name.clone(),
                                secret_sha256: secret_sha256.clone(),
                                subject: subject.clone(),
                            },
                        );
                    }
                    Credential::S3 {
                        access_key_id,
                        secret_ciphertext,
                        enabled: true,
                    } => match open(secrets_key, access_key_id, secret_ciphertext) {
                        Ok(secret) => {
                            s3_keys.insert(
                                access_key_id.clone(),
                                S3Key {
                                    access_key_id: access_key_id.clone(),
                                    user: u.name.clone(),
                                    secret,
                                    subject: subject.clone(),
                                },
                            );
                        }
                        Err(e) => warnings.push(format!(
                            "user {:?}: S3 key {access_key_id}: {e}; requests with it are refused",
                            u.name
                        )),
                    },
                    _ => {}
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
                global,
                request_detail,
                bytes,
                response_stage,
                input_parts: InputParts::read_by(
                    config
                        .policies
                        .iter()
                        .filter(|p| p.enabled)
                        .map(|p| p.rego.as_str()),
                ),
                api_keys,
                s3_keys,
                windows: Windows::new(window_names),
                anonymous: Subject::from_json(serde_json::json!({
                    "id": ANONYMOUS,
                    "anonymous": true,
                    "type": ANONYMOUS,
                    "groups": [],
                })),
            },
            warnings,
        )
    }
}

fn s3_route(spec: &S3Spec, secrets_key: Option<&SecretKey>) -> Result<S3Route, String> {
    let endpoint = spec
        .endpoint
        .parse::<Uri>()
        .map_err(|e| format!("endpoint: {e}"))?;
    if !matches!(endpoint.scheme_str(), Some("http" | "https")) {
        return Err(format!(
            "endpoint must be http:// or https://, got {:?}",
            spec.endpoint
        ));
    }
    let upstream_key = match &spec.upstream_credentials {
        None => None,
        Some(c) => Some(KeyPair {
            access_key_id: c.access_key_id.clone(),
            secret: open(secrets_key, &c.access_key_id, &c.secret_sealed)
                .map_err(|e| format!("upstream_credentials: {e}"))?,
        }),
    };
    Ok(S3Route {
        endpoint,
        region: spec.region.clone(),
        addressing: spec.upstream_addressing,
        virtual_host_domains: spec
            .virtual_host_domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect(),
        upstream_key,
    })
}

/// A sealed secret in plain text, or why it cannot be had on this node.
fn open(key: Option<&SecretKey>, key_id: &str, sealed: &[u8]) -> Result<Secret<String>, String> {
    let key = key.ok_or(
        "no secrets key on this node (control_plane.secrets_key_file or SHOAL_SECRETS_KEY)",
    )?;
    let plain = open_sealed_secret(key, key_id, sealed).map_err(|e| e.to_string())?;
    String::from_utf8(plain)
        .map(Secret::new)
        .map_err(|_| "the secret is not UTF-8".to_string())
}
