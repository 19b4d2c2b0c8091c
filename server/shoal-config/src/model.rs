use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::{Secret, SecretKey};

/// The whole bootstrap config of one node.
///
/// Secret values (`database_url`, the cluster PSK, the secrets-at-rest key) are never read from
/// the TOML file itself: only from the files it names or from environment variables, so a
/// config file can be committed and shared without leaking anything.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Human-readable node name shown in logs and the console; defaults to the host name.
    #[serde(default = "default_node_name")]
    pub node_name: String,
    /// Directory for state that must survive a restart: the config snapshot used when the
    /// control plane is down at start, the audit spool, the node key by default.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub control_plane: ControlPlaneConfig,
    /// The one cluster of a node that is in one, with `discovery`; with `[[clusters]]` it
    /// only holds `node_key_file` (one identity per node, whatever it joins).
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub discovery: DiscoveryConfig,
    /// Several clusters, each with its own membership, keys, port and discovery (regional
    /// ones beside a global one). After `load` it always lists the node's clusters: the
    /// `[cluster]` + `[discovery]` pair becomes its one entry when it is not given.
    #[serde(default)]
    pub clusters: Vec<ClusterConfig>,
    /// Which cluster each shared-state service runs on.
    #[serde(default)]
    pub services: ServicesConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub proxy: ProxyConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

/// The node's own HTTP server: health, readiness, admin API, console.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Loopback by default so that a node never exposes its admin API by accident; deployments
    /// set the pod/task address (or all interfaces) explicitly.
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// How long a shutdown waits for in-flight requests before giving up on them.
    #[serde(default = "default_shutdown_grace", with = "duration_str")]
    pub shutdown_grace: Duration,
    /// When console session cookies carry the `Secure` flag. `auto` sets it unless the console
    /// is reached on a loopback address over plain HTTP (the quickstart); browsers drop
    /// `Secure` cookies on plain-HTTP origins, so `never` is for a non-loopback plain-HTTP lab.
    #[serde(default)]
    pub cookie_secure: CookieSecure,
    /// How long an admin session (console cookie or API token) lasts.
    #[serde(default = "default_session_ttl", with = "duration_str")]
    pub session_ttl: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CookieSecure {
    #[default]
    Auto,
    Always,
    Never,
}

impl std::str::FromStr for CookieSecure {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            other => Err(format!(
                "expected \"auto\", \"always\" or \"never\", got {other:?}"
            )),
        }
    }
}

/// What the node exports about itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Serve `/metrics` (Prometheus text format) on the HTTP port, next to `/health`; like
    /// `/cluster/status` it needs no login and carries no secret.
    #[serde(default = "default_true")]
    pub prometheus: bool,
    /// OTLP collector to push metrics and traces to (`http://collector:4318` for
    /// `http/protobuf`, `http://collector:4317` for `grpc`; `https://` for TLS); none by
    /// default.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    #[serde(default)]
    pub otlp_protocol: OtlpProtocol,
    /// How often metrics are pushed over OTLP.
    #[serde(default = "default_otlp_interval", with = "duration_str")]
    pub otlp_interval: Duration,
    /// File of headers sent with every export (`key=value`, one per line or comma-separated,
    /// as in `OTEL_EXPORTER_OTLP_HEADERS`): collectors' API keys are secrets, so they come
    /// from this file or `SHOAL_TELEMETRY_OTLP_HEADERS`, never from the config itself.
    #[serde(default)]
    pub otlp_headers_file: Option<PathBuf>,
    #[serde(skip)]
    pub(crate) otlp_headers: Vec<(String, Secret<String>)>,
    /// Share of new traces recorded (0 to 1); a request that arrives with a sampled W3C
    /// `traceparent` is always recorded, so a caller's trace is never cut in the middle.
    /// 0 turns tracing off, and the request path then creates no spans at all.
    #[serde(default = "default_trace_sample_ratio")]
    pub trace_sample_ratio: f64,
}

/// How OTLP travels: the two transports every collector accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "grpc")]
    Grpc,
}

impl std::str::FromStr for OtlpProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http/protobuf" => Ok(Self::HttpProtobuf),
            "grpc" => Ok(Self::Grpc),
            other => Err(format!(
                "expected \"http/protobuf\" or \"grpc\", got {other:?}"
            )),
        }
    }
}

impl TelemetryConfig {
    /// Headers for every OTLP export, read from `otlp_headers_file` or the environment.
    pub fn otlp_headers(&self) -> &[(String, Secret<String>)] {
        &self.otlp_headers
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            prometheus: true,
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::default(),
            otlp_interval: default_otlp_interval(),
            otlp_headers_file: None,
            otlp_headers: Vec::new(),
            trace_sample_ratio: default_trace_sample_ratio(),
        }
    }
}

/// OpenTelemetry SDKs' own default (`parentbased_always_on`).
fn default_trace_sample_ratio() -> f64 {
    1.0
}

fn default_otlp_interval() -> Duration {
    Duration::from_secs(10)
}

/// How the node reaches PostgreSQL, the control plane's source of truth.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// File holding the database URL (it carries a password, so it is never inline).
    /// `SHOAL_DATABASE_URL` takes precedence.
    #[serde(default)]
    pub database_url_file: Option<PathBuf>,
    /// File holding the 32-byte key that encrypts SigV4 secrets at rest in PostgreSQL.
    /// `SHOAL_SECRETS_KEY` takes precedence.
    #[serde(default)]
    pub secrets_key_file: Option<PathBuf>,
    /// Revision poll period: the safety net for a lost LISTEN/NOTIFY notification.
    #[serde(default = "default_poll_interval", with = "duration_str")]
    pub poll_interval: Duration,
    /// Bound on establishing one connection, so an unreachable database fails fast.
    #[serde(default = "default_connect_timeout", with = "duration_str")]
    pub connect_timeout: Duration,
    /// First delay of the capped exponential reconnect backoff (with full jitter).
    #[serde(default = "default_reconnect_min", with = "duration_str")]
    pub reconnect_min: Duration,
    /// Cap of the reconnect backoff.
    #[serde(default = "default_reconnect_max", with = "duration_str")]
    pub reconnect_max: Duration,
    /// Run pending migrations at start (behind an advisory lock, so N nodes migrate once).
    #[serde(default = "default_true")]
    pub migrate_on_start: bool,
    /// Connection pool size for config loads, admin API reads and writes, and the change
    /// listener (which keeps one); at least 3, so a migration at start has two more.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    #[serde(skip)]
    pub(crate) database_url: Option<Secret<String>>,
    #[serde(skip)]
    pub(crate) secrets_key: Option<SecretKey>,
}

impl ControlPlaneConfig {
    /// Always present once `load` succeeded.
    pub fn database_url(&self) -> &Secret<String> {
        self.database_url
            .as_ref()
            .expect("validated config always has a database URL")
    }

    /// Absent when no secrets key was configured: S3 credentials then cannot be stored.
    pub fn secrets_key(&self) -> Option<&SecretKey> {
        self.secrets_key.as_ref()
    }

    /// For tools and tests that build a config without a file.
    pub fn with_database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(Secret::new(url.into()));
        self
    }

    pub fn with_secrets_key(mut self, key: SecretKey) -> Self {
        self.secrets_key = Some(key);
        self
    }
}

/// Gossip layer settings; the PSK is required so that no cluster ever runs unencrypted.
///
/// The failure-detection defaults are tuned so that a killed node is suspect everywhere
/// within about 1 s and dead within 3 s, while Lifeguard's awareness keeps a busy node from
/// being falsely suspected (see docs/benchmarks.md, `scripts/bench membership`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Cluster label, authenticated in every packet so two clusters on one network never merge.
    #[serde(default = "default_cluster_name")]
    pub name: String,
    /// Gossip bind address (TCP and UDP).
    #[serde(default = "default_cluster_bind")]
    pub bind: SocketAddr,
    /// Address peers should use to reach this node, when it differs from `bind` (required
    /// when `bind` is a wildcard address).
    #[serde(default)]
    pub advertise: Option<SocketAddr>,
    /// File holding the pre-shared keys, one per line (32 bytes as hex or base64), the first
    /// being the one this node sends with. Re-read every `key_reload_interval`, so keys rotate
    /// without restarts: add the new key on a second line, move it first, remove the old one.
    /// `SHOAL_CLUSTER_PSK` (keys separated by commas) takes precedence and is not reloaded.
    #[serde(default)]
    pub psk_file: Option<PathBuf>,
    /// File holding this node's identity, created on first start, so the node id survives
    /// restarts and address changes. Without it the node takes a fresh id at every start.
    #[serde(default)]
    pub node_key_file: Option<PathBuf>,
    /// How often each node probes one other node.
    #[serde(default = "default_probe_interval", with = "duration_str")]
    pub probe_interval: Duration,
    /// How long a direct probe waits for an ack before indirect probes start.
    #[serde(default = "default_probe_timeout", with = "duration_str")]
    pub probe_timeout: Duration,
    /// Suspicion timeout = multiplier x log10(nodes) x probe interval, before confirmations.
    #[serde(default = "default_suspicion_multiplier")]
    pub suspicion_multiplier: u32,
    /// Upper bound of the suspicion timeout as a multiple of its minimum (Lifeguard: a suspect
    /// with no independent confirmation waits longer).
    #[serde(default = "default_suspicion_max_multiplier")]
    pub suspicion_max_timeout_multiplier: u32,
    /// Lifeguard awareness: how far a node that misses its own acks stretches its probe
    /// timeouts before it accuses others.
    #[serde(default = "default_awareness_max_multiplier")]
    pub awareness_max_multiplier: u32,
    #[serde(default = "default_gossip_interval", with = "duration_str")]
    pub gossip_interval: Duration,
    /// Peers each gossip round sends to.
    #[serde(default = "default_gossip_nodes")]
    pub gossip_nodes: u32,
    /// Retransmissions of a broadcast = multiplier x log10(nodes + 1).
    #[serde(default = "default_retransmit_multiplier")]
    pub retransmit_multiplier: u32,
    /// Full state exchange with one random peer (anti-entropy for anything gossip missed).
    #[serde(default = "default_push_pull_interval", with = "duration_str")]
    pub push_pull_interval: Duration,
    /// How long a dead or left node stays in the member list before it is removed.
    #[serde(default = "default_dead_node_reap", with = "duration_str")]
    pub dead_node_reap: Duration,
    /// How often `psk_file` is re-read for key rotation.
    #[serde(default = "default_key_reload_interval", with = "duration_str")]
    pub key_reload_interval: Duration,
    /// `[[clusters]]` entries only: how this cluster's peers are found (the single cluster's
    /// is `[discovery]`).
    #[serde(default)]
    pub discovery: DiscoveryConfig,
    /// `[[clusters]]` entries only: kept in the config (and its checks) but not joined, so a
    /// cluster is switched off by one key without losing its settings.
    #[serde(default)]
    pub disabled: bool,
    #[serde(skip)]
    pub(crate) keys: Vec<SecretKey>,
    #[serde(skip)]
    pub(crate) keys_from_env: bool,
    /// Where messages find this cluster's keys: `cluster` or `clusters[N]`.
    #[serde(skip)]
    pub(crate) path: String,
}

impl ClusterConfig {
    /// The key path errors and logs name this cluster by: `cluster` (the single cluster) or
    /// `clusters[N]`.
    pub fn key_path(&self) -> &str {
        &self.path
    }

    /// The keys this node holds, the primary first; never empty once `load` succeeded.
    pub fn keys(&self) -> &[SecretKey] {
        &self.keys
    }

    /// Whether the keys come from a file that may change at runtime.
    pub fn keys_reloadable(&self) -> bool {
        self.psk_file.is_some() && !self.keys_from_env
    }
}

/// Which cluster each shared-state service uses. With one cluster every service is on it;
/// with several, each is named (a service naming a disabled cluster runs on the `counters`
/// one, and the node says so at start).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServicesConfig {
    /// Rate counters and strict ownership: what policies read as
    /// `input.bucket.access_count`, exact within this cluster (a region's).
    #[serde(default)]
    pub counters: Option<String>,
    /// The shared cache.
    #[serde(default)]
    pub cache: Option<String>,
    /// Broadcast events, revocations among them: every node of this cluster gets each once.
    #[serde(default)]
    pub events: Option<String>,
    /// The counts behind `input.bucket.global_access_count` and the shares of global limits.
    #[serde(default)]
    pub global_counters: Option<String>,
}

/// A shared-state service, for [`NodeConfig::cluster_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Counters,
    Cache,
    Events,
    GlobalCounters,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Counters,
        Service::Cache,
        Service::Events,
        Service::GlobalCounters,
    ];

    /// The key under `[services]`.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Counters => "counters",
            Service::Cache => "cache",
            Service::Events => "events",
            Service::GlobalCounters => "global_counters",
        }
    }

    /// The cluster `[services]` names for this service, if it names one.
    pub fn named_in(self, s: &ServicesConfig) -> Option<&String> {
        match self {
            Service::Counters => s.counters.as_ref(),
            Service::Cache => s.cache.as_ref(),
            Service::Events => s.events.as_ref(),
            Service::GlobalCounters => s.global_counters.as_ref(),
        }
    }
}

impl NodeConfig {
    /// The clusters this node joins (not the disabled ones), in the order configured.
    pub fn enabled_clusters(&self) -> impl Iterator<Item = &ClusterConfig> {
        self.clusters.iter().filter(|c| !c.disabled)
    }

    /// The cluster `service` runs on: the one `[services]` names, or the `counters` cluster
    /// when that one is disabled; with a single cluster, that one. Never fails once `load`
    /// succeeded.
    pub fn cluster_for(&self, service: Service) -> &ClusterConfig {
        let enabled = |name: &String| self.enabled_clusters().find(|c| &c.name == name);
        service
            .named_in(&self.services)
            .and_then(enabled)
            .or_else(|| Service::Counters.named_in(&self.services).and_then(enabled))
            .or_else(|| self.enabled_clusters().next())
            .expect("load refuses a config without an enabled cluster")
    }
}

/// How a node finds its peers. One flat section (so unknown keys are still rejected); which
/// keys apply depends on `method`, and `load` rejects keys that do not apply.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    #[serde(default)]
    pub method: DiscoveryMethod,
    /// `static`: peer gossip addresses as `host:port` (names are resolved at every round).
    #[serde(default)]
    pub peers: Vec<String>,
    /// `dns-srv` / `dns-a`: the name to query.
    #[serde(default)]
    pub name: Option<String>,
    /// `dns-a`: the gossip port of the addresses found.
    #[serde(default = "default_gossip_port")]
    pub port: u16,
    /// DNS server to ask instead of the system resolver (`dns-*` and names in `peers`).
    #[serde(default)]
    pub server: Option<SocketAddr>,
    /// How often discovery runs again (new nodes are joined, so a node that started alone
    /// finds the others).
    #[serde(default = "default_discovery_interval", with = "duration_str")]
    pub interval: Duration,
    /// Bound on one discovery round.
    #[serde(default = "default_discovery_timeout", with = "duration_str")]
    pub timeout: Duration,
    /// How long a starting node waits for its first successful join before it reports ready
    /// on its own, so that a node whose listed peers are all gone can still start.
    #[serde(default = "default_join_timeout", with = "duration_str")]
    pub join_timeout: Duration,
    /// Only addresses inside these CIDR blocks are joined (empty: all).
    #[serde(default)]
    pub allowed_address_space: Vec<ipnet::IpNet>,
    /// `ecs`: which tasks are the node's peers.
    #[serde(default)]
    pub ecs: EcsDiscovery,
    /// `kubernetes`: which pods are the node's peers.
    #[serde(default)]
    pub kubernetes: KubernetesDiscovery,
    /// `etcd`: where nodes register and list each other.
    #[serde(default)]
    pub etcd: EtcdDiscovery,
    /// `consul`: the service nodes register as and list.
    #[serde(default)]
    pub consul: ConsulDiscovery,
    /// `udp`: where announcements are sent and heard.
    #[serde(default)]
    pub udp: UdpDiscovery,
}

/// Signed announcements broadcast on the local network (HMAC with the cluster key).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UdpDiscovery {
    /// Where announcements are heard; all interfaces by default (a broadcast is only
    /// delivered to a socket bound to the wildcard address).
    #[serde(default = "default_udp_listen")]
    pub listen: SocketAddr,
    /// Where announcements are sent: broadcast addresses with the port. The default limited
    /// broadcast leaves by the default route; name the subnet's broadcast address
    /// (`10.0.0.255:7947`) on a host without one, or several for several subnets.
    #[serde(default = "default_udp_broadcast")]
    pub broadcast: Vec<SocketAddr>,
}

impl Default for UdpDiscovery {
    fn default() -> Self {
        Self {
            listen: default_udp_listen(),
            broadcast: default_udp_broadcast(),
        }
    }
}

fn default_udp_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7947))
}

fn default_udp_broadcast() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([255, 255, 255, 255], 7947))]
}

/// Each node registers its gossip address under `prefix` with a lease it keeps alive, and
/// lists the prefix (etcd v3 JSON API over HTTP).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EtcdDiscovery {
    /// Client URLs, tried in order (`http://host:2379`).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Key prefix of the registrations; default `/shoal/<cluster.name>/nodes/`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Lease TTL of a registration: how long a node that vanished stays listed. Default 30s,
    /// at least twice `discovery.interval` (the lease is renewed every round).
    #[serde(default, with = "duration_str::option")]
    pub ttl: Option<Duration>,
}

/// Each node registers as an instance of `service` with a TTL check it passes every round,
/// and lists the service's passing instances (Consul HTTP API).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConsulDiscovery {
    /// Agent URL; default `http://127.0.0.1:8500` (the local agent).
    #[serde(default)]
    pub address: Option<String>,
    /// Service name; default `shoal`.
    #[serde(default)]
    pub service: Option<String>,
    /// TTL of the health check; default 30s, at least twice `discovery.interval`.
    #[serde(default, with = "duration_str::option")]
    pub ttl: Option<Duration>,
    /// File holding an ACL token (`CONSUL_HTTP_TOKEN` takes precedence).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// Peers as the pods matching a label selector (`get`, `list`, `watch` on pods; the gossip
/// port is the container port named `gossip`, else `discovery.port`). The API is reached with
/// the pod's service account, or `KUBECONFIG` outside a cluster.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesDiscovery {
    /// Namespace to watch; default: the pod's own (its service account's namespace).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Label selector of the peer pods, e.g. `app.kubernetes.io/name=shoal,app.kubernetes.io/instance=prod`
    /// (required: watching every pod of a namespace is never what is meant).
    #[serde(default)]
    pub label_selector: Option<String>,
    /// Kubeconfig file to use instead of the in-cluster service account and `KUBECONFIG`
    /// (a node outside the cluster, tests).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
}

/// Peers as the RUNNING tasks of an ECS service (`ecs:ListTasks`, `ecs:DescribeTasks`; the
/// gossip port is `discovery.port`). Unset values come from the task metadata endpoint v4
/// (cluster, service) and the standard AWS chain (region, credentials).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EcsDiscovery {
    /// Cluster name or ARN; default: the task's own cluster.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Service name: its tasks (started by `ecs-svc/...` or by this name) are the peers;
    /// default: the task's own service (task metadata `ServiceName`), else every task of the
    /// cluster.
    #[serde(default)]
    pub service: Option<String>,
    /// AWS region; default: the standard chain (`AWS_REGION`, profile, task metadata).
    #[serde(default)]
    pub region: Option<String>,
    /// ECS API endpoint override (VPC endpoints, tests).
    #[serde(default)]
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DiscoveryMethod {
    /// Standalone node, or one that others join.
    #[default]
    None,
    Static,
    DnsSrv,
    DnsA,
    /// The RUNNING tasks of an ECS service (awsvpc private IPv4 addresses).
    Ecs,
    /// The running pods matching a label selector, followed with a watch.
    Kubernetes,
    /// Registrations under an etcd key prefix, kept alive with a lease.
    Etcd,
    /// Signed announcements broadcast on the local network.
    Udp,
    /// `_shoal._tcp.local.` instances on the local link (mDNS / DNS-SD).
    Mdns,
    /// The passing instances of a Consul service, registered with a TTL check.
    Consul,
}

impl DiscoveryMethod {
    /// Every method, in the order messages list them: `SHOAL_DISCOVERY_METHOD` accepts exactly
    /// these names, and `shoal constants` reports them to the deployment checks.
    pub const ALL: [DiscoveryMethod; 10] = [
        DiscoveryMethod::None,
        DiscoveryMethod::Static,
        DiscoveryMethod::DnsSrv,
        DiscoveryMethod::DnsA,
        DiscoveryMethod::Ecs,
        DiscoveryMethod::Kubernetes,
        DiscoveryMethod::Etcd,
        DiscoveryMethod::Consul,
        DiscoveryMethod::Udp,
        DiscoveryMethod::Mdns,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DiscoveryMethod::None => "none",
            DiscoveryMethod::Static => "static",
            DiscoveryMethod::DnsSrv => "dns-srv",
            DiscoveryMethod::DnsA => "dns-a",
            DiscoveryMethod::Ecs => "ecs",
            DiscoveryMethod::Kubernetes => "kubernetes",
            DiscoveryMethod::Etcd => "etcd",
            DiscoveryMethod::Udp => "udp",
            DiscoveryMethod::Mdns => "mdns",
            DiscoveryMethod::Consul => "consul",
        }
    }
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            method: DiscoveryMethod::None,
            peers: Vec::new(),
            name: None,
            port: default_gossip_port(),
            server: None,
            interval: default_discovery_interval(),
            timeout: default_discovery_timeout(),
            join_timeout: default_join_timeout(),
            allowed_address_space: Vec::new(),
            ecs: EcsDiscovery::default(),
            kubernetes: KubernetesDiscovery::default(),
            etcd: EtcdDiscovery::default(),
            consul: ConsulDiscovery::default(),
            udp: UdpDiscovery::default(),
        }
    }
}

fn default_discovery_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_discovery_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_join_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The decision audit log: journaled under `data_dir` before each answer, shipped to
/// PostgreSQL (and kept on disk while it is away).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Unshipped journal size past which the data plane refuses requests it could not audit.
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// How long decisions are gathered into one insert.
    #[serde(default = "default_audit_flush_interval", with = "duration_str")]
    pub flush_interval: Duration,
    /// When the journal reaches the device: `interval` (every `fsync_interval`) or `batch`
    /// (before each batch of answers, nothing lost to a machine crash).
    #[serde(default)]
    pub fsync: AuditFsync,
    /// With `fsync = "interval"`: the most a machine crash (not a killed process) can lose.
    #[serde(default = "default_audit_fsync_interval", with = "duration_str")]
    pub fsync_interval: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            spool_max_bytes: default_spool_max_bytes(),
            flush_interval: default_audit_flush_interval(),
            fsync: AuditFsync::default(),
            fsync_interval: default_audit_fsync_interval(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditFsync {
    #[default]
    Interval,
    Batch,
}

fn default_audit_fsync_interval() -> Duration {
    Duration::from_millis(100)
}

fn default_spool_max_bytes() -> u64 {
    1 << 30
}
fn default_audit_flush_interval() -> Duration {
    Duration::from_millis(200)
}

/// The data plane: where resources are served (each on its own `port`, from the control
/// plane) and how long upstreams may take.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// The address resource ports are bound on. Loopback by default, like the admin port;
    /// deployments set the pod/task address or `0.0.0.0`.
    #[serde(default = "default_proxy_address")]
    pub address: std::net::IpAddr,
    #[serde(default = "default_upstream_connect_timeout", with = "duration_str")]
    pub upstream_connect_timeout: Duration,
    /// Bound on waiting for an upstream's response headers (bodies stream without one).
    #[serde(default = "default_upstream_timeout", with = "duration_str")]
    pub upstream_timeout: Duration,
    /// Largest request header section accepted from clients.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// The most client connections the node's resource ports hold open together; more are
    /// answered 503 and closed, and counted (`shoal.proxy.connections.refused`).
    #[serde(default = "default_max_client_connections")]
    pub max_connections: usize,
    /// PEM certificates of private CAs trusted for `https://` upstreams (an in-house object
    /// store, say), on top of the bundled Mozilla roots.
    #[serde(default)]
    pub upstream_ca_file: Option<std::path::PathBuf>,
    /// The file's text, read and checked at load.
    #[serde(skip)]
    pub(crate) upstream_ca_pem: Option<String>,
}

impl ProxyConfig {
    pub fn upstream_ca_pem(&self) -> Option<&str> {
        self.upstream_ca_pem.as_deref()
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            address: default_proxy_address(),
            upstream_connect_timeout: default_upstream_connect_timeout(),
            upstream_timeout: default_upstream_timeout(),
            max_header_bytes: default_max_header_bytes(),
            max_connections: default_max_client_connections(),
            upstream_ca_file: None,
            upstream_ca_pem: None,
        }
    }
}

fn default_proxy_address() -> std::net::IpAddr {
    std::net::Ipv4Addr::LOCALHOST.into()
}
fn default_upstream_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_upstream_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
/// Room for a load balancer's pool and thousands of keep-alive clients, at a few KiB each.
fn default_max_client_connections() -> usize {
    16 * 1024
}

/// Shared cluster state: rate-counter windows, batching, repair and strict-mode timing.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// The counting windows policies see as `input.bucket.access_count.<name>`. Every node of
    /// a cluster must use the same list.
    #[serde(default = "default_windows")]
    pub windows: Vec<WindowConfig>,
    /// Update batches kept for nodes that join or come back; a node that missed more gets a
    /// full state transfer instead.
    #[serde(default = "default_replay_capacity")]
    pub replay_capacity: usize,
    /// How long increments are coalesced before they are sent (a hot key costs one message
    /// per flush, not one per request).
    #[serde(default = "default_flush_interval", with = "duration_str")]
    pub flush_interval: Duration,
    /// How often a digest goes to one random peer to repair whatever gossip dropped.
    #[serde(default = "default_anti_entropy_interval", with = "duration_str")]
    pub anti_entropy_interval: Duration,
    /// How long a strict check waits for the key's owner before deciding locally.
    #[serde(default = "default_strict_timeout", with = "duration_str")]
    pub strict_timeout: Duration,
    /// The same wait for a strict check of a global count, whose owner may be across an
    /// ocean (a node in one cluster never uses it).
    #[serde(default = "default_global_strict_timeout", with = "duration_str")]
    pub global_strict_timeout: Duration,
    #[serde(default = "default_cache_max_entries")]
    pub cache_max_entries: usize,
    #[serde(default = "default_cache_max_value_bytes")]
    pub cache_max_value_bytes: usize,
    #[serde(default = "default_event_max_payload_bytes")]
    pub event_max_payload_bytes: usize,
    /// Rate-counter keys a node holds; past it idle keys go, then the least recently counted
    /// (about 260 bytes each: the default bounds them near 250 MB).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Clusters of more nodes than this pass update batches along a relay ring (each node
    /// sends to log2(N) fingers) instead of sending each batch to every node.
    #[serde(default = "default_relay_above")]
    pub relay_above: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    pub name: String,
    #[serde(with = "duration_str")]
    pub length: Duration,
    /// Sub-window buckets: the window slides by `length / buckets`.
    pub buckets: u32,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            windows: default_windows(),
            replay_capacity: default_replay_capacity(),
            flush_interval: default_flush_interval(),
            anti_entropy_interval: default_anti_entropy_interval(),
            strict_timeout: default_strict_timeout(),
            global_strict_timeout: default_global_strict_timeout(),
            cache_max_entries: default_cache_max_entries(),
            cache_max_value_bytes: default_cache_max_value_bytes(),
            event_max_payload_bytes: default_event_max_payload_bytes(),
            max_keys: default_max_keys(),
            relay_above: default_relay_above(),
        }
    }
}

fn default_max_keys() -> usize {
    1_000_000
}

fn default_relay_above() -> usize {
    32
}

fn default_windows() -> Vec<WindowConfig> {
    vec![
        WindowConfig {
            name: "last_minute".into(),
            length: Duration::from_secs(60),
            buckets: 60,
        },
        WindowConfig {
            name: "last_hour".into(),
            length: Duration::from_secs(3600),
            buckets: 60,
        },
    ]
}
fn default_replay_capacity() -> usize {
    10_000
}
fn default_flush_interval() -> Duration {
    Duration::from_millis(5)
}
fn default_anti_entropy_interval() -> Duration {
    Duration::from_millis(500)
}
fn default_global_strict_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_strict_timeout() -> Duration {
    Duration::from_millis(250)
}
fn default_cache_max_entries() -> usize {
    100_000
}
fn default_cache_max_value_bytes() -> usize {
    64 * 1024
}
fn default_event_max_payload_bytes() -> usize {
    16 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive such as `info` or `info,shoal_control_plane=debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_http_listen(),
            shutdown_grace: default_shutdown_grace(),
            cookie_secure: CookieSecure::default(),
            session_ttl: default_session_ttl(),
        }
    }
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        Self {
            database_url_file: None,
            secrets_key_file: None,
            poll_interval: default_poll_interval(),
            connect_timeout: default_connect_timeout(),
            reconnect_min: default_reconnect_min(),
            reconnect_max: default_reconnect_max(),
            migrate_on_start: true,
            max_connections: default_max_connections(),
            database_url: None,
            secrets_key: None,
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            name: default_cluster_name(),
            bind: default_cluster_bind(),
            advertise: None,
            psk_file: None,
            node_key_file: None,
            probe_interval: default_probe_interval(),
            probe_timeout: default_probe_timeout(),
            suspicion_multiplier: default_suspicion_multiplier(),
            suspicion_max_timeout_multiplier: default_suspicion_max_multiplier(),
            awareness_max_multiplier: default_awareness_max_multiplier(),
            gossip_interval: default_gossip_interval(),
            gossip_nodes: default_gossip_nodes(),
            retransmit_multiplier: default_retransmit_multiplier(),
            push_pull_interval: default_push_pull_interval(),
            dead_node_reap: default_dead_node_reap(),
            key_reload_interval: default_key_reload_interval(),
            discovery: DiscoveryConfig::default(),
            disabled: false,
            keys: Vec::new(),
            keys_from_env: false,
            path: "cluster".into(),
        }
    }
}

fn default_probe_interval() -> Duration {
    Duration::from_millis(300)
}
fn default_probe_timeout() -> Duration {
    Duration::from_millis(200)
}
fn default_suspicion_multiplier() -> u32 {
    3
}
fn default_suspicion_max_multiplier() -> u32 {
    3
}
fn default_awareness_max_multiplier() -> u32 {
    8
}
fn default_gossip_interval() -> Duration {
    Duration::from_millis(50)
}
fn default_gossip_nodes() -> u32 {
    4
}
fn default_retransmit_multiplier() -> u32 {
    4
}
fn default_push_pull_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_dead_node_reap() -> Duration {
    Duration::from_secs(60)
}
fn default_key_reload_interval() -> Duration {
    Duration::from_secs(5)
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: default_log_level(),
        }
    }
}

fn default_node_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "shoal".to_string())
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/shoal")
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_session_ttl() -> Duration {
    Duration::from_secs(12 * 3600)
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_reconnect_min() -> Duration {
    Duration::from_millis(200)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(30)
}
fn default_true() -> bool {
    true
}
fn default_max_connections() -> u32 {
    8
}
fn default_cluster_name() -> String {
    "shoal".to_string()
}
fn default_gossip_port() -> u16 {
    7946
}
fn default_cluster_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], default_gossip_port()))
}
fn default_log_level() -> String {
    "info".to_string()
}

/// Durations are written the way operators say them: "500ms", "5s", "1m".
pub(crate) mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    pub fn parse(text: &str) -> Result<Duration, String> {
        humantime::parse_duration(text.trim()).map_err(|e| {
            format!("invalid duration {text:?} ({e}); write e.g. \"500ms\", \"5s\" or \"1m\"")
        })
    }

    /// For optional keys: absent stays `None`.
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer};

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            let text = String::deserialize(d)?;
            super::parse(&text)
                .map(Some)
                .map_err(serde::de::Error::custom)
        }
    }
}
