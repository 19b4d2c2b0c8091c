use std::io::Write as _;
use std::time::Duration;

use super::env::shoal_env;
use super::*;
use crate::model::DiscoveryMethod;

const PSK_HEX: &str = "0101010101010101010101010101010101010101010101010101010101010101";

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn base_env() -> BTreeMap<String, String> {
    env(&[
        (
            "SHOAL_DATABASE_URL",
            "postgres://shoal:pw@127.0.0.1:5432/shoal",
        ),
        ("SHOAL_CLUSTER_PSK", PSK_HEX),
    ])
}

fn load(text: &str, env: &BTreeMap<String, String>) -> Result<NodeConfig, ConfigError> {
    load_from_str(text, Path::new("shoal.toml"), env)
}

#[test]
fn defaults_are_valid_with_secrets_from_env() {
    let c = load("", &base_env()).unwrap();
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.control_plane.poll_interval, Duration::from_secs(5));
    assert_eq!(c.cluster.keys()[0].expose(), &[1u8; 32]);
    assert_eq!(
        c.control_plane.database_url().expose(),
        "postgres://shoal:pw@127.0.0.1:5432/shoal"
    );
    assert!(
        !format!("{c:?}").contains("pw@"),
        "secret leaked into Debug"
    );
}

#[test]
fn wrong_type_names_key_and_line() {
    let text = "node_name = \"a\"\n[http]\nlisten = 8080\n";
    let err = load(text, &base_env()).unwrap_err();
    let ConfigError::Syntax { line, message, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*line, 3, "{err}");
    assert!(message.contains("invalid"), "{err}");
    assert!(err.to_string().starts_with("shoal.toml:3:"), "{err}");
}

#[test]
fn unknown_key_is_rejected_with_the_allowed_ones() {
    let err = load("[http]\nlisen = \"127.0.0.1:1\"\n", &base_env()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("unknown field `lisen`"), "{text}");
    assert!(text.contains("listen"), "{text}");
    assert!(text.starts_with("shoal.toml:2:"), "{text}");
}

#[test]
fn inline_secret_gets_a_hint() {
    let err = load(
        "[control_plane]\ndatabase_url = \"postgres://x\"\n",
        &base_env(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("SHOAL_DATABASE_URL"), "{err}");
}

#[test]
fn malformed_toml_is_a_syntax_error_with_position() {
    let err = load("[http\nlisten = 1", &base_env()).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { line: 1, .. }), "{err}");
}

#[test]
fn missing_secrets_are_each_reported() {
    let err = load("", &BTreeMap::new()).unwrap_err();
    let keys: Vec<_> = err.issues().iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        ["control_plane.database_url_file", "cluster.psk_file"],
        "{err}"
    );
    assert!(err.to_string().contains("SHOAL_CLUSTER_PSK"), "{err}");
}

#[test]
fn psk_file_of_wrong_length_names_the_key_file_and_line() {
    let mut psk = tempfile::NamedTempFile::new().unwrap();
    writeln!(psk, "{}", "ab".repeat(20)).unwrap();
    let text = format!(
        "node_name = \"n1\"\n\n[cluster]\npsk_file = \"{}\"\n",
        psk.path().display()
    );
    let env = env(&[("SHOAL_DATABASE_URL", "postgres://a@b/c")]);
    let err = load(&text, &env).unwrap_err();
    let issue = &err.issues()[0];
    assert_eq!(issue.key, "cluster.psk_file");
    assert_eq!(
        issue.origin,
        Origin::File {
            path: "shoal.toml".into(),
            line: 4
        }
    );
    assert!(issue.message.contains("20 bytes"), "{err}");
}

#[test]
fn unreadable_secret_file_is_reported() {
    let text = "[control_plane]\ndatabase_url_file = \"/nonexistent/db-url\"\n";
    let mut e = base_env();
    e.remove("SHOAL_DATABASE_URL");
    let err = load(text, &e).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("shoal.toml:2: `control_plane.database_url_file` cannot read"),
        "{err}"
    );
}

#[test]
fn env_overrides_win_and_bad_env_values_name_the_variable() {
    let mut e = base_env();
    e.insert("SHOAL_HTTP_LISTEN".into(), "127.0.0.9:9000".into());
    e.insert("SHOAL_PROXY_ADDRESS".into(), "127.0.0.10".into());
    let c = load("[http]\nlisten = \"127.0.0.1:1\"\n", &e).unwrap();
    assert_eq!(c.http.listen.to_string(), "127.0.0.9:9000");
    assert_eq!(c.proxy.address.to_string(), "127.0.0.10");
    e.insert("SHOAL_PROXY_ADDRESS".into(), "10.0.0.1:80".into());
    let err = load("", &e).unwrap_err();
    assert!(err.to_string().contains("SHOAL_PROXY_ADDRESS"), "{err}");
    assert!(err.to_string().contains("must be an IP address"), "{err}");
    e.remove("SHOAL_PROXY_ADDRESS");

    e.insert("SHOAL_CONTROL_PLANE_POLL_INTERVAL".into(), "soon".into());
    let err = load("", &e).unwrap_err();
    assert_eq!(
        err.issues()[0].origin,
        Origin::Env("SHOAL_CONTROL_PLANE_POLL_INTERVAL".into())
    );
    assert!(
        err.to_string().contains("invalid duration \"soon\""),
        "{err}"
    );
}

#[test]
fn environment_variables_that_are_not_utf8_never_panic() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt as _;
    let raw = |k: &[u8], v: &[u8]| {
        (
            OsString::from_vec(k.to_vec()),
            OsString::from_vec(v.to_vec()),
        )
    };
    let env = shoal_env(
        [
            raw(b"UNRELATED", b"\xff\xfe"),
            raw(b"\xffODD", b"x"),
            raw(b"SHOAL_NODE_NAME", b"n1"),
        ]
        .into_iter(),
    )
    .unwrap();
    assert_eq!(env.len(), 1, "only ours, whatever the others hold");
    assert_eq!(env["SHOAL_NODE_NAME"], "n1");

    let err = shoal_env([raw(b"SHOAL_CLUSTER_PSK", b"secret\xff")].into_iter()).unwrap_err();
    let text = err.to_string();
    assert_eq!(
        text,
        "env SHOAL_CLUSTER_PSK: `SHOAL_CLUSTER_PSK` is not valid UTF-8 (the value is not shown)"
    );
    assert!(!text.contains("secret"));
}

#[test]
fn dns_a_discovery_is_configured_by_env() {
    let mut e = base_env();
    e.insert("SHOAL_DISCOVERY_DNS_A".into(), " shoal-nodes ".into());
    let c = load("", &e).unwrap();
    assert_eq!(c.discovery.method, DiscoveryMethod::DnsA);
    assert_eq!(c.discovery.name.as_deref(), Some("shoal-nodes"));

    e.insert("SHOAL_DISCOVERY_DNS_A".into(), "".into());
    let err = load("", &e).unwrap_err().to_string();
    assert!(err.contains("discovery.name"), "{err}");
}

#[test]
fn ecs_discovery_is_configured_by_file_or_env_and_checked() {
    let mut e = base_env();
    e.insert("SHOAL_DISCOVERY_METHOD".into(), "ecs".into());
    e.insert("SHOAL_DISCOVERY_ECS_CLUSTER".into(), "prod".into());
    let c = load("", &e).unwrap();
    assert_eq!(c.discovery.method, DiscoveryMethod::Ecs);
    assert_eq!(c.discovery.ecs.cluster.as_deref(), Some("prod"));
    assert_eq!(
        c.discovery.ecs.service, None,
        "from the task metadata at run time"
    );

    let text = "[discovery]\nmethod = \"ecs\"\n[discovery.ecs]\nendpoint = \"ecs.local\"\n";
    let err = load(text, &base_env()).unwrap_err().to_string();
    assert!(
        err.contains("`discovery.ecs.endpoint` must be an http:// or https:// URL"),
        "{err}"
    );

    let text = "[discovery]\nmethod = \"static\"\npeers = [\"a:7946\"]\n[discovery.ecs]\ncluster = \"prod\"\n";
    let err = load(text, &base_env()).unwrap_err().to_string();
    assert!(
        err.contains("`discovery.ecs` is not used by discovery method \"static\""),
        "{err}"
    );

    let mut e = base_env();
    e.insert("SHOAL_DISCOVERY_METHOD".into(), "zookeeper".into());
    let err = load("", &e).unwrap_err().to_string();
    assert!(err.contains("SHOAL_DISCOVERY_METHOD"), "{err}");
    assert!(
        err.contains(
            "must be none, static, dns-srv, dns-a, ecs, kubernetes, etcd, consul, udp or mdns, \
             got \"zookeeper\""
        ),
        "{err}"
    );
}

#[test]
fn every_discovery_method_is_read_by_its_name_from_a_file_and_the_environment() {
    for method in DiscoveryMethod::ALL {
        let name = method.as_str();
        let file: crate::model::DiscoveryConfig =
            toml::from_str(&format!("method = \"{name}\"")).unwrap();
        assert_eq!(file.method, method);
        let mut e = base_env();
        e.insert("SHOAL_DISCOVERY_METHOD".into(), name.into());
        // A method may want settings of its own; its name itself must never be refused.
        match load("", &e) {
            Ok(c) => assert_eq!(c.discovery.method, method),
            Err(err) => assert!(!err.to_string().contains("must be none"), "{name}: {err}"),
        }
    }
}

#[test]
fn registry_and_platform_discovery_settings_are_checked_by_key() {
    let refused = |text: &str, key: &str, says: &str| {
        let err = load(text, &base_env()).unwrap_err().to_string();
        assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        assert!(err.contains(says), "{key}: {err}");
    };
    refused(
        "[discovery]\nmethod = \"kubernetes\"\n",
        "discovery.kubernetes.label_selector",
        "must select the peer pods",
    );
    refused(
        "[discovery]\nmethod = \"kubernetes\"\n[discovery.kubernetes]\nlabel_selector = \"a=b\"\nnamespace = \"Bad_NS\"\n",
        "discovery.kubernetes.namespace",
        "got \"Bad_NS\"",
    );
    refused(
        "[discovery]\nmethod = \"etcd\"\n",
        "discovery.etcd.endpoints",
        "at least one",
    );
    refused(
        "[discovery]\nmethod = \"etcd\"\ninterval = \"10s\"\n[discovery.etcd]\nendpoints = [\"http://e:2379\"]\nttl = \"15s\"\n",
        "discovery.etcd.ttl",
        "at least twice discovery.interval (10s)",
    );
    refused(
        "[discovery]\nmethod = \"etcd\"\n[discovery.etcd]\nendpoints = [\"https://e:2379\"]\n",
        "discovery.etcd.endpoints",
        "TLS to etcd is not supported yet",
    );
    refused(
        "[discovery]\nmethod = \"consul\"\n[discovery.consul]\nservice = \"no spaces\"\n",
        "discovery.consul.service",
        "got \"no spaces\"",
    );
    refused(
        "[discovery]\nmethod = \"udp\"\n[discovery.udp]\nbroadcast = [\"[ff02::1]:7947\"]\n",
        "discovery.udp.broadcast",
        "IPv4 broadcast",
    );
    refused(
        "[discovery]\nmethod = \"static\"\npeers = [\"a:1\"]\n[discovery.etcd]\nendpoints = [\"http://e:2379\"]\n",
        "discovery.etcd",
        "is not used by discovery method \"static\"",
    );
    refused(
        "[telemetry]\notlp_endpoint = \"collector:4318\"\n",
        "telemetry.otlp_endpoint",
        "must be an http:// or https:// URL",
    );
    refused(
        "[telemetry]\ntrace_sample_ratio = 1.5\n",
        "telemetry.trace_sample_ratio",
        "must be from 0 to 1, got 1.5",
    );
    let err = load("[telemetry]\notlp_protocol = \"thrift\"\n", &base_env())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("shoal.toml:2") && err.contains("`thrift`"),
        "{err}"
    );
    refused(
        "[telemetry]\notlp_interval = \"10ms\"\n",
        "telemetry.otlp_interval",
        "must be between",
    );
    refused(
        "[http]\nsession_ttl = \"10s\"\n",
        "http.session_ttl",
        "must be between",
    );
    let err = load("[http]\ncookie_secure = \"sometimes\"\n", &base_env())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("shoal.toml:2") && err.contains("`sometimes`") && err.contains("`always`"),
        "{err}"
    );
    let mut e = base_env();
    e.insert("SHOAL_HTTP_COOKIE_SECURE".into(), "maybe".into());
    let err = load("", &e).unwrap_err().to_string();
    assert!(
        err.contains("SHOAL_HTTP_COOKIE_SECURE") && err.contains("\"maybe\""),
        "{err}"
    );
    let mut e = base_env();
    e.insert("SHOAL_DISCOVERY_METHOD".into(), "kubernetes".into());
    e.insert(
        "SHOAL_DISCOVERY_KUBERNETES_LABEL_SELECTOR".into(),
        "app=shoal".into(),
    );
    let c = load("", &e).unwrap();
    assert_eq!(c.discovery.method, DiscoveryMethod::Kubernetes);
    assert_eq!(
        c.discovery.kubernetes.label_selector.as_deref(),
        Some("app=shoal")
    );
    let mut e = base_env();
    e.insert("SHOAL_DISCOVERY_METHOD".into(), "etcd".into());
    e.insert(
        "SHOAL_DISCOVERY_ETCD_ENDPOINTS".into(),
        "http://a:2379, http://b:2379".into(),
    );
    let c = load("", &e).unwrap();
    assert_eq!(
        c.discovery.etcd.endpoints,
        ["http://a:2379", "http://b:2379"]
    );
}

#[test]
fn otlp_headers_come_from_the_environment_or_a_file_and_errors_never_echo_values() {
    let mut e = base_env();
    e.insert(
        "SHOAL_TELEMETRY_OTLP_HEADERS".into(),
        "Authorization=Bearer%20s3cret, x-tenant = blue".into(),
    );
    e.insert("SHOAL_TELEMETRY_OTLP_PROTOCOL".into(), "grpc".into());
    let c = load("", &e).unwrap();
    assert_eq!(c.telemetry.otlp_protocol, crate::OtlpProtocol::Grpc);
    let h: Vec<(&str, &str)> = c
        .telemetry
        .otlp_headers()
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose().as_str()))
        .collect();
    assert_eq!(
        h,
        [("authorization", "Bearer s3cret"), ("x-tenant", "blue")]
    );
    assert!(!format!("{:?}", c.telemetry).contains("s3cret"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("otlp-headers");
    std::fs::write(&file, "# collector key\napi-key=k1\nbroken-pair-s3cret\n").unwrap();
    let text = format!(
        "[telemetry]\notlp_headers_file = {:?}\n",
        file.display().to_string()
    );
    let err = load(&text, &base_env()).unwrap_err().to_string();
    assert!(
        err.contains("telemetry.otlp_headers_file") && err.contains("header 2 is not key=value"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    std::fs::write(&file, "api-key=k1\n").unwrap();
    let c = load(&text, &base_env()).unwrap();
    assert_eq!(c.telemetry.otlp_headers()[0].1.expose(), "k1");
    let err = load("[telemetry]\notlp_headers = \"a=b\"\n", &base_env())
        .unwrap_err()
        .to_string();
    assert!(err.contains("otlp_headers"), "{err}");
}

#[test]
fn upstream_ca_file_must_hold_a_pem_certificate() {
    let dir = std::env::temp_dir().join(format!("shoal-ca-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (good, bad) = (dir.join("ca.pem"), dir.join("not-a-cert.txt"));
    std::fs::write(
        &good,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(&bad, "hello\n").unwrap();
    let with = |path: &std::path::Path| {
        load(
            &format!("[proxy]\nupstream_ca_file = \"{}\"\n", path.display()),
            &base_env(),
        )
    };
    let c = with(&good).unwrap();
    assert!(
        c.proxy
            .upstream_ca_pem()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    let err = with(&bad).unwrap_err().to_string();
    assert!(
        err.starts_with("shoal.toml:2: `proxy.upstream_ca_file`"),
        "{err}"
    );
    assert!(err.contains("holds no PEM certificate"), "{err}");
    let err = with(&dir.join("missing.pem")).unwrap_err().to_string();
    assert!(err.contains("cannot read"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn out_of_range_values_name_key_line_and_value() {
    let text = "[control_plane]\npoll_interval = \"10ms\"\nreconnect_min = \"40s\"\nreconnect_max = \"20s\"\n";
    let err = load(text, &base_env()).unwrap_err();
    let lines: Vec<String> = err.issues().iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("shoal.toml:2: `control_plane.poll_interval` must be between"),
        "{lines:?}"
    );
    assert!(lines[0].ends_with("got 10ms"), "{lines:?}");
    assert!(lines[1].contains("`control_plane.reconnect_min` must not exceed"));
}

#[test]
fn a_pool_too_small_for_the_listener_and_a_migration_is_rejected() {
    let text = "[control_plane]\nmax_connections = 2\n";
    let err = load(text, &base_env()).unwrap_err();
    let lines: Vec<String> = err.issues().iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        ["shoal.toml:2: `control_plane.max_connections` must be between 3 and 100, got 2"]
    );
    let text = "[control_plane]\nmax_connections = 3\n";
    assert_eq!(
        load(text, &base_env())
            .unwrap()
            .control_plane
            .max_connections,
        3
    );
}

#[test]
fn bad_database_url_and_log_level_are_rejected() {
    let mut e = base_env();
    e.insert("SHOAL_DATABASE_URL".into(), "mysql://x/y".into());
    e.insert("SHOAL_LOG_LEVEL".into(), "info,[=".into());
    let err = load("", &e).unwrap_err();
    let keys: Vec<_> = err.issues().iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        ["control_plane.database_url_file", "log.level"],
        "{err}"
    );
    assert!(!err.to_string().contains("mysql://x"), "URL echoed: {err}");
}

/// Found by fuzzing (fuzz/fuzz_targets/config.rs): a span field value compiled as a regular
/// expression made validation build an exponential automaton (45 s and 400 MB for this one).
#[test]
fn log_level_field_values_are_not_compiled_as_regular_expressions() {
    let mut e = base_env();
    let level = format!("[{{f=.*a{}}}]", ".".repeat(16));
    e.insert("SHOAL_LOG_LEVEL".into(), level.clone());
    let started = std::time::Instant::now();
    let c = load("", &e).unwrap();
    assert_eq!(c.log.level, level);
    // Not a speed goal: the compiled pattern took 45 s, the literal takes microseconds,
    // so the bound only catches the blow-up coming back.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn state_max_keys_is_bounded_and_named() {
    assert_eq!(load("", &base_env()).unwrap().state.max_keys, 1_000_000);
    let err = load("[state]\nmax_keys = 10\n", &base_env()).unwrap_err();
    assert!(
        err.to_string().contains("state.max_keys") && err.to_string().contains("10"),
        "{err}"
    );
}

#[test]
fn audit_fsync_is_a_policy_and_its_interval_is_bounded() {
    let c = load(
        "[audit]\nfsync = \"batch\"\nfsync_interval = \"250ms\"\n",
        &base_env(),
    )
    .unwrap();
    assert_eq!(c.audit.fsync, crate::AuditFsync::Batch);
    assert_eq!(c.audit.fsync_interval, Duration::from_millis(250));
    assert_eq!(
        load("", &base_env()).unwrap().audit.fsync,
        crate::AuditFsync::Interval
    );

    let err = load("[audit]\nfsync = \"sometimes\"\n", &base_env()).unwrap_err();
    let text = err.to_string();
    // Where (the `fsync` line), what was given, and what is accepted.
    assert!(
        text.contains("shoal.toml:2:") && text.contains("sometimes") && text.contains("batch"),
        "{text}"
    );
    let err = load("[audit]\nfsync_interval = \"2m\"\n", &base_env()).unwrap_err();
    assert!(err.to_string().contains("audit.fsync_interval"), "{err}");
}

#[test]
fn discovery_keys_are_checked_against_the_method() {
    let text = "[discovery]\nmethod = \"static\"\npeers = [\"127.0.0.2:7946\", \"node-2.shoal:7946\"]\nallowed_address_space = [\"127.0.0.0/8\"]\n";
    let c = load(text, &base_env()).unwrap();
    assert_eq!(c.discovery.method, DiscoveryMethod::Static);
    assert_eq!(c.discovery.peers.len(), 2);
    assert!(
        c.discovery.allowed_address_space[0]
            .contains(&"127.0.0.9".parse::<std::net::IpAddr>().unwrap())
    );

    let err = load("[discovery]\nmethod = \"carrier-pigeon\"\n", &base_env()).unwrap_err();
    assert!(err.to_string().contains("unknown variant"), "{err}");

    let err = load(
        "[discovery]\nmethod = \"dns-srv\"\npeers = [\"a:1\"]\n",
        &base_env(),
    )
    .unwrap_err();
    let lines: Vec<String> = err.issues().iter().map(ToString::to_string).collect();
    assert!(
        lines[0].contains("`discovery.peers` is not used by discovery method \"dns-srv\""),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("`discovery.name` must be a DNS name"),
        "{lines:?}"
    );

    let err = load(
        "[discovery]\nmethod = \"static\"\npeers = [\"no-port\"]\n",
        &base_env(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("entries must be host:port, got \"no-port\""),
        "{err}"
    );
}

#[test]
fn cidr_that_does_not_parse_names_the_key() {
    let err = load(
        "[discovery]\nallowed_address_space = [\"10.0.0.0/33\"]\n",
        &base_env(),
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("shoal.toml:2:"), "{err}");

    let mut e = base_env();
    e.insert(
        "SHOAL_DISCOVERY_ALLOWED_ADDRESS_SPACE".into(),
        "10.0.0.0/8, nope".into(),
    );
    let err = load("", &e).unwrap_err();
    assert_eq!(
        err.issues()[0].origin,
        Origin::Env("SHOAL_DISCOVERY_ALLOWED_ADDRESS_SPACE".into())
    );
    assert!(
        err.to_string().contains("\"nope\" is not a CIDR block"),
        "{err}"
    );
}

#[test]
fn a_connection_limit_outside_its_range_is_rejected() {
    let err = load("[proxy]\nmax_connections = 0\n", &base_env()).unwrap_err();
    let lines: Vec<String> = err.issues().iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        ["shoal.toml:2: `proxy.max_connections` must be between 1 and 1000000, got 0"]
    );
    let config = load("[proxy]\nmax_connections = 50000\n", &base_env()).unwrap();
    assert_eq!(config.proxy.max_connections, 50_000);
    assert_eq!(
        load("", &base_env()).unwrap().proxy.max_connections,
        16 * 1024
    );
}
