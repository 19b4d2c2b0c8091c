//! The node-visible configuration and the rules every piece of it must satisfy.
//!
//! The same validation runs before a write is stored and when a node loads a revision, because
//! rows can also be written by hand in SQL and a snapshot file can be edited or corrupted.

use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::cors::{CorsRule, check_cors};
use crate::sealed::check_sealed_shape;

/// One consistent revision of everything a node enforces. Immutable once built: a node swaps
/// a whole new `ConfigSnapshot` in one step, so no request ever sees half a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSnapshot {
    pub revision: i64,
    pub resources: Vec<Resource>,
    pub policies: Vec<Policy>,
    pub users: Vec<User>,
    /// Snapshots written before data documents existed have none.
    #[serde(default)]
    pub documents: Vec<DataDocument>,
}

/// A named JSON document policies read as `data.<name>`: an allowlist, tiers, keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataDocument {
    pub name: String,
    pub document: serde_json::Value,
    #[serde(default)]
    pub description: String,
}

/// Bound on one data document as JSON: every node holds every document in every policy VM.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

impl DataDocument {
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 63
            && self.name.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !name_ok {
            return Err(format!(
                "name must be 1-63 lower-case letters, digits or '_' starting with a letter (it \
                 is read as data.<name>), got {:?}",
                self.name
            ));
        }
        let size = serde_json::to_vec(&self.document).map_or(usize::MAX, |v| v.len());
        if size > MAX_DOCUMENT_BYTES {
            return Err(format!(
                "{size} bytes as JSON; the limit is {MAX_DOCUMENT_BYTES}"
            ));
        }
        Ok(())
    }
}

/// The first segment of a policy's package (`formal` for `package formal.v2`): a data
/// document of that name would hide it under `data`.
pub fn package_root(rego: &str) -> Option<&str> {
    rego.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("package "))
        .and_then(|p| p.trim().split(['.', ' ', '[']).next())
        .filter(|p| !p.is_empty())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    pub name: String,
    pub enabled: bool,
    pub description: String,
    pub spec: ResourceSpec,
    /// Snapshots written before attributes existed read as none.
    #[serde(default)]
    pub attributes: ResourceAttributes,
}

/// What sits behind a resource, per kind. Unknown fields are rejected so a typo in a
/// hand-written row is caught instead of silently ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ResourceSpec {
    S3(S3Spec),
    Http(HttpSpec),
}

impl ResourceSpec {
    pub fn port(&self) -> Option<u16> {
        match self {
            ResourceSpec::S3(s) => s.port,
            ResourceSpec::Http(h) => h.port,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ResourceSpec::S3(_) => "s3",
            ResourceSpec::Http(_) => "http",
        }
    }

    /// Builds the typed spec from the `kind` column and the `spec` JSON column.
    pub fn from_parts(kind: &str, spec: serde_json::Value) -> Result<Self, String> {
        match kind {
            "s3" => serde_json::from_value(spec)
                .map(ResourceSpec::S3)
                .map_err(|e| format!("s3 spec: {e}")),
            "http" => serde_json::from_value(spec)
                .map(ResourceSpec::Http)
                .map_err(|e| format!("http spec: {e}")),
            other => Err(format!("kind must be \"s3\" or \"http\", got {other:?}")),
        }
    }

    /// The `spec` JSON column: the typed spec without its `kind` tag.
    pub fn spec_json(&self) -> serde_json::Value {
        match self {
            ResourceSpec::S3(s) => serde_json::to_value(s),
            ResourceSpec::Http(h) => serde_json::to_value(h),
        }
        .expect("specs serialize")
    }

    fn validate(&self) -> Result<(), String> {
        if self.port() == Some(0) {
            return Err("port must be between 1 and 65535, got 0".into());
        }
        match self {
            ResourceSpec::S3(s) => s.validate(),
            ResourceSpec::Http(h) => {
                check_upstream("upstream", &h.upstream)?;
                let header_ok = !h.api_key_header.is_empty()
                    && h.api_key_header
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !header_ok {
                    return Err(format!(
                        "api_key_header must be an HTTP header name, got {:?}",
                        h.api_key_header
                    ));
                }
                check_cors(&h.cors)
            }
        }
    }
}

fn check_upstream(field: &str, value: &str) -> Result<(), String> {
    let parsed =
        url::Url::parse(value).map_err(|e| format!("{field} {value:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "{field} must be an http:// or https:// URL with a host, got {value:?}"
        ));
    }
    Ok(())
}

/// An S3-compatible object store the data plane fronts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Spec {
    /// Upstream endpoint, e.g. `https://s3.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    /// The region upstream requests are signed for.
    #[serde(default = "default_region")]
    pub region: String,
    /// The data-plane port every node serves this resource on (`proxy.address`); a resource
    /// without one is stored but not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Host names clients reach the resource by with the bucket in the host
    /// (`<bucket>.<domain>`, virtual-host addressing); a request to any other host is read
    /// path-style, so both work side by side.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_host_domains: Vec<String>,
    /// How requests are addressed to the upstream. Path style works with every S3-compatible
    /// store, so it is the default.
    #[serde(default)]
    pub upstream_addressing: Addressing,
    /// The key pair upstream requests are re-signed with (callers sign with their own Shoal
    /// credentials, which the upstream never sees). None: forwarded unsigned, for public buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_credentials: Option<UpstreamCredentials>,
    /// Which web origins may call the resource from a browser (docs/proxy.md, "CORS").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors: Vec<CorsRule>,
    /// What callers without a signature may do (docs/proxy.md, "Anonymous callers").
    #[serde(default, skip_serializing_if = "AnonymousAccess::is_off")]
    pub anonymous: AnonymousAccess,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    /// `endpoint/bucket/key`.
    #[default]
    Path,
    /// `bucket.endpoint-host/key`.
    Virtual,
}

/// The resource's own key pair for the upstream. The secret is sealed with the secrets key
/// (associated data: the access key id), as users' S3 secrets are; the admin API and CLI take
/// it in plain text once (`secret_access_key`) and store only the sealed form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamCredentials {
    pub access_key_id: String,
    #[serde(with = "hex_bytes")]
    pub secret_sealed: Vec<u8>,
}

impl S3Spec {
    fn validate(&self) -> Result<(), String> {
        check_upstream("endpoint", &self.endpoint)?;
        if self.region.is_empty()
            || self.region.len() > 64
            || !self
                .region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(format!(
                "region must look like us-east-1, got {:?}",
                self.region
            ));
        }
        for domain in &self.virtual_host_domains {
            check_domain(domain).map_err(|e| format!("virtual_host_domains: {e}"))?;
        }
        if let Some(c) = &self.upstream_credentials {
            check_access_key_id(&c.access_key_id)
                .map_err(|e| format!("upstream_credentials.access_key_id: {e}"))?;
            check_sealed_shape(&c.secret_sealed)
                .map_err(|e| format!("upstream_credentials.secret_sealed: {e}"))?;
        }
        check_cors(&self.cors)
    }
}

/// A DNS name of letters, digits and hyphens in dot-separated labels, as a Host header carries.
fn check_domain(domain: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if domain.len() <= 253 && domain.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "{domain:?} is not a host name (dot-separated labels of letters, digits and '-')"
        ))
    }
}

/// An upstream's access key id: 3-128 visible characters without `/` (the credential scope's
/// separator). AWS issues 16-128 letters and digits; MinIO and others allow shorter ids.
fn check_access_key_id(id: &str) -> Result<(), String> {
    if (3..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        Ok(())
    } else {
        Err(format!(
            "an access key id is 3-128 visible characters without '/', got {} characters",
            id.len()
        ))
    }
}

/// A plain HTTP API the data plane fronts; users identify with an API key header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    pub upstream: String,
    #[serde(default = "default_api_key_header")]
    pub api_key_header: String,
    /// As for S3 resources: the data-plane port, or not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// As for S3 resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors: Vec<CorsRule>,
    /// What callers without an API key may do, as for S3 resources.
    #[serde(default, skip_serializing_if = "AnonymousAccess::is_off")]
    pub anonymous: AnonymousAccess,
}

fn default_region() -> String {
    "us-east-1".to_string()
}
fn default_api_key_header() -> String {
    "x-api-key".to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Decide locally from gossiped counts; a few extra requests may pass while counts spread.
    Eventual,
    /// The key's owner on the hash ring decides; no over-admission while it is reachable.
    Strict,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Eventual => "eventual",
            Enforcement::Strict => "strict",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "eventual" => Ok(Enforcement::Eventual),
            "strict" => Ok(Enforcement::Strict),
            _ => Err(format!(
                "enforcement must be \"eventual\" or \"strict\", got {s:?}"
            )),
        }
    }
}

/// What the data plane does when the policy fails on a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Refuse the request (fail closed).
    #[default]
    Block,
    /// Treat the policy as not applying to the request (fail open), still logged and counted.
    Allow,
}

impl OnError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Block => "block",
            OnError::Allow => "allow",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "block" => Ok(OnError::Block),
            "allow" => Ok(OnError::Allow),
            _ => Err(format!(
                "on_error must be \"block\" or \"allow\", got {s:?}"
            )),
        }
    }
}

/// What the data plane does with the policy while this node cannot reach every member of the
/// cluster (a partition, or members failed and not yet forgotten): the counts it sees then
/// miss what the others admit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnreachable {
    /// Decide from the counts this node has (each side of a split may admit up to the limit).
    #[default]
    Local,
    /// Refuse every request the policy governs (fail closed).
    Deny,
    /// Hold this side to its share of the limit: the policy reads the counts scaled by
    /// members / reachable members, so the sides together stay within the limit.
    Share,
}

impl OnUnreachable {
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnreachable::Local => "local",
            OnUnreachable::Deny => "deny",
            OnUnreachable::Share => "share",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(OnUnreachable::Local),
            "deny" => Ok(OnUnreachable::Deny),
            "share" => Ok(OnUnreachable::Share),
            _ => Err(format!(
                "on_unreachable must be \"local\", \"deny\" or \"share\", got {s:?}"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    pub rego: String,
    pub enforcement: Enforcement,
    /// Snapshots written before this field existed read as `block`.
    #[serde(default)]
    pub on_error: OnError,
    /// Snapshots written before this field existed read as `local`.
    #[serde(default)]
    pub on_unreachable: OnUnreachable,
    /// Evaluated and audited as "would block", never enforced. Snapshots written before this
    /// field existed read as enforced.
    #[serde(default)]
    pub shadow: bool,
    pub enabled: bool,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub enabled: bool,
    pub credentials: Vec<Credential>,
    /// Snapshots written before profiles existed read as a human in no group.
    #[serde(default)]
    pub profile: UserProfile,
}

/// What policies read about a user besides its name: `input.user.{email, type, groups,
/// attributes}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: UserKind,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Free-form, the operator's: a JSON object of at most [`MAX_ATTRIBUTES_BYTES`].
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// Whether a person or a program holds the user's keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserKind {
    #[default]
    Human,
    Machine,
}

impl UserKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UserKind::Human => "human",
            UserKind::Machine => "machine",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "human" => Ok(UserKind::Human),
            "machine" => Ok(UserKind::Machine),
            other => Err(format!(
                "type must be \"human\" or \"machine\", got {other:?}"
            )),
        }
    }
}

/// Bound on a user's attributes or a resource's tags, as JSON: they ride in every policy input.
pub const MAX_ATTRIBUTES_BYTES: usize = 4096;

/// Groups a user may be in.
pub const MAX_GROUPS: usize = 64;

impl UserProfile {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(email) = &self.email {
            let shaped = email.len() <= 254
                && email.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
                })
                && !email.contains(char::is_whitespace);
            if !shaped {
                return Err(format!(
                    "email {email:?} is not an address like ops@example.com"
                ));
            }
        }
        if self.groups.len() > MAX_GROUPS {
            return Err(format!(
                "{} groups; a user may be in at most {MAX_GROUPS}",
                self.groups.len()
            ));
        }
        for g in &self.groups {
            if !tag_shaped(g) {
                return Err(format!(
                    "group {g:?} must be 1-64 letters, digits, '.', '_', '-' or ':'"
                ));
            }
        }
        let size = serde_json::to_vec(&self.attributes).map_or(usize::MAX, |v| v.len());
        if size > MAX_ATTRIBUTES_BYTES {
            return Err(format!(
                "attributes are {size} bytes as JSON; the limit is {MAX_ATTRIBUTES_BYTES}"
            ));
        }
        Ok(())
    }

    /// `input.user` for policies.
    pub fn policy_input(&self, name: &str) -> serde_json::Value {
        serde_json::json!({
            "id": name,
            "email": self.email,
            "type": self.kind.as_str(),
            "groups": self.groups,
            "attributes": self.attributes,
        })
    }
}

/// A group name, tag key or environment: short, printable, no spaces.
fn tag_shaped(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
}

/// What policies read about a resource besides its name and kind: `input.resource.
/// {environment, tags}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceAttributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
}

impl ResourceAttributes {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(env) = &self.environment
            && !tag_shaped(env)
        {
            return Err(format!(
                "environment {env:?} must be 1-64 letters, digits, '.', '_', '-' or ':'"
            ));
        }
        for (k, v) in &self.tags {
            if !tag_shaped(k) {
                return Err(format!(
                    "tag {k:?} must be 1-64 letters, digits, '.', '_', '-' or ':'"
                ));
            }
            if v.len() > 256 || v.contains(char::is_control) {
                return Err(format!(
                    "tag {k:?}: its value must be at most 256 printable characters"
                ));
            }
        }
        let size = serde_json::to_vec(&self.tags).map_or(usize::MAX, |v| v.len());
        if size > MAX_ATTRIBUTES_BYTES {
            return Err(format!(
                "tags are {size} bytes as JSON; the limit is {MAX_ATTRIBUTES_BYTES}"
            ));
        }
        Ok(())
    }
}

/// How a user proves identity to the data plane; never the plaintext of a hashed secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Credential {
    ApiKey {
        key_id: String,
        #[serde(with = "hex_bytes")]
        secret_sha256: Vec<u8>,
        enabled: bool,
    },
    S3 {
        access_key_id: String,
        /// AES-256-GCM sealed secret access key (see `sealed`).
        #[serde(with = "hex_bytes")]
        secret_ciphertext: Vec<u8>,
        enabled: bool,
    },
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name must be 1-63 characters of a-z, 0-9, '.', '_' or '-' starting with a \
             letter or digit, got {name:?}"
        ))
    }
}

/// Names of people and accounts: letters, digits and `@._-`, starting with a letter or digit.
/// Users' names and admins' usernames both follow it.
fn check_account_name(what: &str, name: &str, max: usize) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} must be 1-{max} characters of letters, digits, '@', '.', '_' or '-', got {name:?}"
        ))
    }
}

/// Longest description accepted, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

/// Descriptions are free text shown in listings, checked when written (a description never
/// makes a node refuse a revision): bounded, and without control characters
/// (other than newlines and tabs) that could garble a terminal or a log line.
pub fn check_description(what: &str, description: &str) -> Result<(), String> {
    let chars = description.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(format!(
            "{what} description is {chars} characters; the limit is {MAX_DESCRIPTION_CHARS}"
        ));
    }
    if let Some(c) = description
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(format!(
            "{what} description contains the control character {c:?}"
        ));
    }
    Ok(())
}

/// A user's name, as every write of a user checks it (and every load, through [`User`]).
pub fn check_user_name(name: &str) -> Result<(), String> {
    check_account_name("user name", name, 128)?;
    if name.eq_ignore_ascii_case(ANONYMOUS) {
        return Err(format!(
            "user name {name:?} is reserved: policies see callers without credentials as \
             user {ANONYMOUS:?}"
        ));
    }
    Ok(())
}

/// The user id policies and audit lines give a caller without credentials, on a resource
/// that lets them in.
pub const ANONYMOUS: &str = "anonymous";

/// What a resource lets callers without credentials do. Off unless the operator says so;
/// their requests are still counted (per source address) and decided by the policies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnonymousAccess {
    /// Refused: `403 AccessDenied` (S3) or `401 unauthenticated` (HTTP).
    #[default]
    Off,
    /// GET and HEAD only.
    Read,
    /// Any method.
    ReadWrite,
}

impl AnonymousAccess {
    pub fn is_off(&self) -> bool {
        *self == Self::Off
    }

    /// Whether a caller without credentials may send `method`.
    pub fn allows(self, method: &str) -> bool {
        match self {
            Self::Off => false,
            Self::Read => matches!(method, "GET" | "HEAD"),
            Self::ReadWrite => true,
        }
    }
}

/// An admin's username, as every admin write checks it and as the console's login lockout
/// requires before it counts an attempt against a name.
pub fn check_admin_name(name: &str) -> Result<(), String> {
    check_account_name("admin username", name, 64)
}

impl Resource {
    pub fn validate(&self) -> Result<(), String> {
        check_name("resource", &self.name)?;
        self.spec.validate()?;
        self.attributes.validate()
    }

    /// `input.resource` for policies.
    pub fn policy_input(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "kind": self.spec.kind(),
            "environment": self.attributes.environment,
            "tags": self.attributes.tags,
        })
    }
}

impl Policy {
    pub fn validate(&self) -> Result<(), String> {
        check_name("policy", &self.name)?;
        shoal_policy::check(&self.name, &self.rego)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl User {
    pub fn validate(&self) -> Result<(), String> {
        check_user_name(&self.name)?;
        self.profile.validate()?;
        for c in &self.credentials {
            match c {
                Credential::ApiKey {
                    secret_sha256,
                    key_id,
                    ..
                } if secret_sha256.len() != 32 => {
                    return Err(format!(
                        "api key {key_id:?} has a {}-byte hash; expected a 32-byte SHA-256",
                        secret_sha256.len()
                    ));
                }
                Credential::S3 {
                    secret_ciphertext,
                    access_key_id,
                    ..
                } => {
                    check_sealed_shape(secret_ciphertext)
                        .map_err(|e| format!("s3 credential {access_key_id:?}: {e}"))?;
                }
                Credential::ApiKey { .. } => {}
            }
        }
        Ok(())
    }
}

impl ConfigSnapshot {
    /// Validates every row and reports all failures, each naming its row; a revision with any
    /// failure is refused as a whole.
    pub fn validate(&self) -> Result<(), ModelError> {
        refuse_if_any(self.revision, self.problems())
    }

    fn problems(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let mut ports = std::collections::HashMap::new();
        for r in &self.resources {
            if let Err(e) = r.validate() {
                errors.push(format!("resource {:?}: {e}", r.name));
            }
            if let Some(port) = r.spec.port().filter(|_| r.enabled)
                && let Some(other) = ports.insert(port, &r.name)
            {
                errors.push(format!(
                    "resource {:?}: port {port} is already served by resource {other:?}",
                    r.name
                ));
            }
        }
        for p in &self.policies {
            if let Err(e) = p.validate() {
                errors.push(format!("policy {:?}: {e}", p.name));
            }
        }
        for u in &self.users {
            if let Err(e) = u.validate() {
                errors.push(format!("user {:?}: {e}", u.name));
            }
        }
        for d in &self.documents {
            if let Err(e) = d.validate() {
                errors.push(format!("data document {:?}: {e}", d.name));
            }
            if let Some(p) = self
                .policies
                .iter()
                .find(|p| package_root(&p.rego) == Some(d.name.as_str()))
            {
                errors.push(format!(
                    "data document {:?}: policy {:?} has a package under data.{}: rename one",
                    d.name, p.name, d.name
                ));
            }
        }
        errors
    }
}

fn refuse_if_any(revision: i64, problems: Vec<String>) -> Result<(), ModelError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ModelError::Invalid(format!(
            "revision {revision} refused: {}",
            problems.join("; ")
        )))
    }
}

impl ConfigSnapshot {
    /// Validation with problems found while building the snapshot from rows added first.
    pub fn validate_with(&self, mut earlier: Vec<String>) -> Result<(), ModelError> {
        earlier.extend(self.problems());
        refuse_if_any(self.revision, earlier)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn http(name: &str, port: Option<u16>, enabled: bool) -> Resource {
        Resource {
            name: name.into(),
            enabled,
            description: String::new(),
            spec: ResourceSpec::Http(HttpSpec {
                upstream: "http://127.0.0.1:9000".into(),
                api_key_header: default_api_key_header(),
                port,
                cors: Vec::new(),
                anonymous: AnonymousAccess::Off,
            }),
            attributes: ResourceAttributes::default(),
        }
    }

    fn s3(spec: serde_json::Value) -> Result<(), String> {
        let spec = ResourceSpec::from_parts("s3", spec)?;
        Resource {
            name: "store".into(),
            enabled: true,
            description: String::new(),
            spec,
            attributes: ResourceAttributes::default(),
        }
        .validate()
    }

    fn policy(name: &str, rego: &str) -> Policy {
        Policy {
            name: name.into(),
            rego: rego.into(),
            enforcement: Enforcement::Eventual,
            on_error: OnError::Block,
            on_unreachable: OnUnreachable::Local,
            shadow: false,
            enabled: true,
            description: String::new(),
        }
    }

    #[test]
    fn names_follow_their_rules_and_errors_quote_the_value() {
        for ok in ["a", "s3-prod", "api.v2_internal", "0day"] {
            assert_eq!(check_name("resource", ok), Ok(()), "{ok}");
        }
        for bad in ["", "-a", "A", "a b", "ä", &"a".repeat(64)] {
            let e = check_name("resource", bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        assert_eq!(check_user_name("alice@example.com"), Ok(()));
        assert!(check_user_name(&"u".repeat(129)).is_err());
        assert_eq!(check_admin_name(&"a".repeat(64)), Ok(()));
        let e = check_admin_name(&"a".repeat(65)).unwrap_err();
        assert!(
            e.starts_with("admin username must be 1-64 characters"),
            "{e}"
        );
        assert!(
            check_admin_name(".root").is_err(),
            "must start with a letter or digit"
        );
    }

    #[test]
    fn descriptions_are_bounded_and_free_of_control_characters() {
        assert_eq!(
            check_description("policy", "line one\n\tline two\r\n"),
            Ok(())
        );
        let long = "é".repeat(MAX_DESCRIPTION_CHARS + 1);
        let e = check_description("policy", &long).unwrap_err();
        assert!(e.contains("1025 characters; the limit is 1024"), "{e}");
        let e = check_description("resource", "bell\u{7}").unwrap_err();
        assert_eq!(
            e,
            "resource description contains the control character '\\u{7}'"
        );
    }

    #[test]
    fn s3_specs_are_checked_field_by_field() {
        assert_eq!(
            s3(json!({"endpoint": "https://s3.eu-west-1.amazonaws.com"})),
            Ok(())
        );
        for (spec, want) in [
            (
                json!({"endpoint": "s3.amazonaws.com"}),
                "endpoint \"s3.amazonaws.com\" is not a URL",
            ),
            (
                json!({"endpoint": "ftp://host"}),
                "endpoint must be an http:// or https:// URL",
            ),
            (
                json!({"endpoint": "http://h", "region": "eu west"}),
                "region must look like us-east-1",
            ),
            (
                json!({"endpoint": "http://h", "port": 0}),
                "port must be between 1 and 65535",
            ),
            (
                json!({"endpoint": "http://h", "virtual_host_domains": ["-bad.example"]}),
                "virtual_host_domains: \"-bad.example\" is not a host name",
            ),
            (
                json!({"endpoint": "http://h", "upstream_credentials":
                    {"access_key_id": "AK/IA", "secret_sealed": "00"}}),
                "upstream_credentials.access_key_id: an access key id is 3-128 visible",
            ),
            (
                json!({"endpoint": "http://h", "upstream_credentials":
                    {"access_key_id": "AKIA", "secret_sealed": "00"}}),
                "upstream_credentials.secret_sealed: sealed secret is 1 bytes",
            ),
            (
                json!({"endpoint": "http://h", "bucket": "b"}),
                "s3 spec: unknown field `bucket`",
            ),
        ] {
            let e = s3(spec.clone()).unwrap_err();
            assert!(e.contains(want), "{spec}: {e}");
        }
        let e = ResourceSpec::from_parts("ftp", json!({})).unwrap_err();
        assert_eq!(e, "kind must be \"s3\" or \"http\", got \"ftp\"");
    }

    #[test]
    fn http_specs_need_a_header_name_and_an_http_upstream() {
        let mut r = http("api", Some(8080), true);
        assert_eq!(r.validate(), Ok(()));
        if let ResourceSpec::Http(h) = &mut r.spec {
            h.api_key_header = "x api key".into();
        }
        let e = r.validate().unwrap_err();
        assert!(
            e.starts_with("api_key_header must be an HTTP header name"),
            "{e}"
        );
    }

    #[test]
    fn policies_must_compile() {
        let good = "package shoal\npre_request := {\"action\": \"block\"} if { input.n > 5 }\n";
        assert_eq!(policy("p", good).validate(), Ok(()));
        let e = policy("p", "package shoal\nallow if {")
            .validate()
            .unwrap_err();
        assert!(e.starts_with("policy \"p\" does not compile"), "{e}");
        let e = policy("p", "package shoal\nallow := true\n")
            .validate()
            .unwrap_err();
        assert!(
            e.contains("defines neither `pre_request` nor `pre_response`"),
            "{e}"
        );
        assert!(
            policy("P", good)
                .validate()
                .unwrap_err()
                .starts_with("policy name")
        );
    }

    #[test]
    fn enum_fields_parse_their_spellings_only() {
        for e in [Enforcement::Eventual, Enforcement::Strict] {
            assert_eq!(Enforcement::parse(e.as_str()), Ok(e));
        }
        for e in [OnError::Block, OnError::Allow] {
            assert_eq!(OnError::parse(e.as_str()), Ok(e));
        }
        for e in [
            OnUnreachable::Local,
            OnUnreachable::Deny,
            OnUnreachable::Share,
        ] {
            assert_eq!(OnUnreachable::parse(e.as_str()), Ok(e));
        }
        assert_eq!(
            OnUnreachable::parse("Share").unwrap_err(),
            "on_unreachable must be \"local\", \"deny\" or \"share\", got \"Share\""
        );
        assert!(Enforcement::parse("").is_err());
        assert!(OnError::parse("open").is_err());
    }

    #[test]
    fn profiles_and_resource_attributes_are_checked_with_the_reason() {
        let ok = UserProfile {
            email: Some("ana@example.com".into()),
            kind: UserKind::Machine,
            groups: vec!["finance".into(), "team:eu-ops".into()],
            attributes: json!({"tier": "gold"}).as_object().unwrap().clone(),
        };
        ok.validate().unwrap();
        assert_eq!(
            ok.policy_input("ana"),
            json!({"id": "ana", "email": "ana@example.com", "type": "machine",
                   "groups": ["finance", "team:eu-ops"], "attributes": {"tier": "gold"}})
        );
        for (bad, words) in [
            (
                UserProfile {
                    email: Some("not an address".into()),
                    ..ok.clone()
                },
                "is not an address",
            ),
            (
                UserProfile {
                    groups: vec!["has space".into()],
                    ..ok.clone()
                },
                "group \"has space\"",
            ),
            (
                UserProfile {
                    attributes: json!({"blob": "x".repeat(5000)})
                        .as_object()
                        .unwrap()
                        .clone(),
                    ..ok.clone()
                },
                "the limit is 4096",
            ),
        ] {
            let e = bad.validate().unwrap_err();
            assert!(e.contains(words), "{e}");
        }
        let tags = ResourceAttributes {
            environment: Some("prod".into()),
            tags: [("team".to_string(), "ledger".to_string())].into(),
        };
        tags.validate().unwrap();
        let bad = ResourceAttributes {
            environment: Some("pro d".into()),
            ..tags
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .contains("environment \"pro d\"")
        );
    }

    #[test]
    fn a_snapshot_is_refused_whole_with_every_problem_named_by_its_row() {
        let user = User {
            name: "bob".into(),
            enabled: true,
            credentials: vec![Credential::ApiKey {
                key_id: "k1".into(),
                secret_sha256: vec![0; 31],
                enabled: true,
            }],
            profile: UserProfile::default(),
        };
        let snapshot = ConfigSnapshot {
            revision: 7,
            resources: vec![
                http("a", Some(8080), true),
                http("b", Some(8080), true),
                // A disabled resource is not served, so its port collides with nothing.
                http("c", Some(8080), false),
                http("Bad", None, true),
            ],
            policies: vec![
                policy("p", "not rego"),
                policy("tiers", "package allowlist.v1\npre_request := 1\n"),
            ],
            users: vec![user],
            documents: vec![
                DataDocument {
                    name: "allowlist".into(),
                    document: json!({"users": ["ana"]}),
                    description: String::new(),
                },
                DataDocument {
                    name: "Bad-Name".into(),
                    document: json!("x".repeat(MAX_DOCUMENT_BYTES)),
                    description: String::new(),
                },
            ],
        };
        let ModelError::Invalid(e) = snapshot.validate().unwrap_err() else {
            panic!("refused as invalid");
        };
        assert!(e.starts_with("revision 7 refused: "), "{e}");
        assert!(
            e.contains("resource \"b\": port 8080 is already served by resource \"a\""),
            "{e}"
        );
        assert!(!e.contains("resource \"c\""), "{e}");
        assert!(e.contains("resource \"Bad\": resource name must be"), "{e}");
        assert!(e.contains("policy \"p\": "), "{e}");
        assert!(
            e.contains("user \"bob\": api key \"k1\" has a 31-byte hash"),
            "{e}"
        );
        assert!(
            e.contains(
                "data document \"allowlist\": policy \"tiers\" has a package under data.allowlist"
            ),
            "{e}"
        );
        assert!(
            e.contains("data document \"Bad-Name\": name must be 1-63 lower-case"),
            "{e}"
        );

        let earlier = vec!["row 3: bad json".to_string()];
        let fine = ConfigSnapshot {
            revision: 8,
            resources: vec![http("a", Some(8080), true)],
            policies: Vec::new(),
            users: Vec::new(),
            documents: Vec::new(),
        };
        assert!(fine.validate().is_ok());
        let ModelError::Invalid(e) = fine.validate_with(earlier).unwrap_err() else {
            panic!("refused as invalid");
        };
        assert_eq!(e, "revision 8 refused: row 3: bad json");
    }
}
