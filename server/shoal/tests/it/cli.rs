//! The `shoal` command line: config checking, control-plane management and the offline policy
//! tools, as operators and policy authors run them.

use std::process::{Command, Output, Stdio};

use shoal_testkit::*;

fn check_config(toml: &str, env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shoal.toml");
    std::fs::write(&path, toml).unwrap();
    let mut cmd = Command::new(shoal_bin());
    cmd.args(["check-config", path_str(&path)])
        .env_clear()
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const SECRETS: [(&str, &str); 2] = [
    (
        "SHOAL_DATABASE_URL",
        "postgres://shoal:pw@127.0.0.1:1/shoal",
    ),
    ("SHOAL_CLUSTER_PSK", PSK_HEX),
];

#[test]
fn check_config_accepts_a_valid_file_without_printing_secrets() {
    let out = check_config("node_name = \"n1\"\n", &SECRETS);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("config OK") && stdout.contains("127.0.0.1:1/shoal"));
    assert!(
        stdout.contains("cluster shoal on 127.0.0.1:7946"),
        "{stdout}"
    );
    assert!(!stdout.contains("pw"), "password printed: {stdout}");
}

/// The environment is read as bytes: a variable that is not UTF-8 is ignored when it is not
/// ours and refused by name (exit 78) when it is; neither panics (exit 101 before).
#[test]
fn environment_variables_that_are_not_utf8_are_ignored_or_named() {
    use std::os::unix::ffi::OsStrExt as _;
    let run = |name: &str| {
        let mut cmd = Command::new(shoal_bin());
        cmd.arg("check-config").env_clear().stdin(Stdio::null());
        for (k, v) in SECRETS {
            cmd.env(k, v);
        }
        cmd.env(name, std::ffi::OsStr::from_bytes(b"n\xff1"));
        cmd.output().unwrap()
    };
    let out = run("UNRELATED");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run("SHOAL_NODE_NAME");
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("env SHOAL_NODE_NAME: `SHOAL_NODE_NAME` is not valid UTF-8"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_config_names_the_field_for_each_kind_of_mistake() {
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, Env, &str); 5] = [
        ("[http]\nlisten = 8080\n", &SECRETS, "shoal.toml:2:"),
        (
            "[http]\nlisten_on = \"127.0.0.1:1\"\n",
            &SECRETS,
            "unknown field `listen_on`",
        ),
        ("", &SECRETS[..1], "`cluster.psk_file` is missing"),
        (
            "[control_plane]\npoll_interval = \"fast\"\n",
            &SECRETS,
            "invalid duration \"fast\"",
        ),
        ("[http\n", &SECRETS, "shoal.toml:1:"),
    ];
    for (toml, env, expected) in cases {
        let out = check_config(toml, env);
        assert_eq!(out.status.code(), Some(78), "{toml:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{toml:?}: {}",
            stderr(&out)
        );
    }
}

/// Two clusters that would run into each other (one name, one port, one key file): exit 78,
/// every clash named by key and line, before anything binds.
#[test]
fn check_config_refuses_clusters_that_would_run_into_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("{PSK_HEX}\n")).unwrap();
    let entry = |port: u16| {
        format!(
            "[[clusters]]\nname = \"eu\"\nbind = \"127.0.0.1:{port}\"\npsk_file = \"{}\"\n",
            keys.display()
        )
    };
    let toml = format!(
        "{}{}[services]\ncounters = \"eu\"\n",
        entry(7946),
        entry(7946)
    );
    let out = check_config(&toml, &SECRETS[..1]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    for expected in [
        "shoal.toml:6: `clusters[1].name` \"eu\" is also the name of clusters[0]",
        "shoal.toml:7: `clusters[1].bind` 127.0.0.1:7946 takes the port of clusters[0].bind",
        "shoal.toml:8: `clusters[1].psk_file` is also clusters[0].psk_file",
    ] {
        assert!(err.contains(expected), "{expected:?} not in {err}");
    }
}

#[test]
fn check_config_rejects_a_psk_file_of_the_wrong_length() {
    let dir = tempfile::tempdir().unwrap();
    let psk = dir.path().join("psk");
    std::fs::write(&psk, "00112233").unwrap();
    let toml = format!("[cluster]\npsk_file = \"{}\"\n", psk.display());
    let out = check_config(&toml, &SECRETS[..1]);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(
        err.contains("shoal.toml:2: `cluster.psk_file` key number 1 decodes to 4 bytes"),
        "{err}"
    );
}

/// `shoal constants` is what scripts/check-deploy (scripts/deploy/node_constants.py) compares
/// the deployment artifacts with: it must parse, name every field the checkers read, and report
/// the crates' own tables; it needs no config, so a missing config file does not stop it.
#[test]
fn constants_report_what_the_deployment_checks_read() {
    let out = Command::new(shoal_bin())
        .arg("constants")
        .env_clear()
        .env("SHOAL_CONFIG", "/nonexistent/shoal.toml")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let strings = |field: &str| -> Vec<String> {
        c[field]
            .as_array()
            .unwrap_or_else(|| panic!("{field} is not a list: {c}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(strings("cli_env"), ["SHOAL_CONFIG"]);

    let overrides: Vec<(&str, &str)> = c["env_overrides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["var"].as_str().unwrap(), o["key"].as_str().unwrap()))
        .collect();
    assert_eq!(overrides.len(), shoal_config::ENV_OVERRIDES.len());
    for (var, key) in [
        ("SHOAL_DISCOVERY_METHOD", "discovery.method"),
        (
            "SHOAL_DISCOVERY_KUBERNETES_LABEL_SELECTOR",
            "discovery.kubernetes.label_selector",
        ),
        ("SHOAL_HTTP_SHUTDOWN_GRACE", "http.shutdown_grace"),
        ("SHOAL_PROXY_ADDRESS", "proxy.address"),
        ("SHOAL_DATABASE_URL_FILE", "control_plane.database_url_file"),
    ] {
        assert!(
            overrides.contains(&(var, key)),
            "{var} -> {key} missing: {overrides:?}"
        );
    }

    let secrets: Vec<(&str, Option<&str>)> = c["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["var"].as_str().unwrap(), s["file_var"].as_str()))
        .collect();
    for var in [
        "SHOAL_DATABASE_URL",
        "SHOAL_CLUSTER_PSK",
        "SHOAL_SECRETS_KEY",
    ] {
        let file_var = format!("{var}_FILE");
        assert!(
            secrets.contains(&(var, Some(file_var.as_str()))),
            "{var} and {file_var} missing: {secrets:?}"
        );
    }
    assert!(secrets.contains(&("SHOAL_TELEMETRY_OTLP_HEADERS", None)));

    let methods = shoal_config::DiscoveryMethod::ALL.map(shoal_config::DiscoveryMethod::as_str);
    assert_eq!(strings("discovery_methods"), methods);
    assert_eq!(strings("ecs_iam_actions"), shoal_discovery::ECS_IAM_ACTIONS);
    assert_eq!(
        strings("kubernetes_pod_verbs"),
        shoal_discovery::KUBERNETES_POD_VERBS
    );
    // The ports the Dockerfile exposes.
    assert_eq!(c["ports"]["http"], 8080);
    assert_eq!(c["ports"]["gossip"], 7946);
}

/// `shoal policy test|eval` in `dir`, as an author runs them: no config (SHOAL_CONFIG names a
/// file that does not exist, which any other command would refuse with exit 78), no database.
fn offline_policy(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(shoal_bin())
        .arg("policy")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("SHOAL_CONFIG", "/nonexistent/shoal.toml")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const SEED_TESTS: &str = r#"package formal.v2_test

import rego.v1
import data.formal.v2

reads(n) := {"bucket": {"name": "sensitive-bucket", "access_count": {"last_minute": n}}}

test_five_reads_are_allowed if {
  not v2.pre_request with input as reads(5)
}

test_the_sixth_read_is_blocked if {
  v2.pre_request.action == "block" with input as reads(6)
}
"#;

#[test]
fn policy_test_runs_offline_and_exits_0_only_when_every_test_passes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seed.rego"), SEED_POLICY).unwrap();
    std::fs::write(dir.path().join("seed_test.rego"), SEED_TESTS).unwrap();
    let out = offline_policy(dir.path(), &["test", "seed.rego", "seed_test.rego"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "PASS  data.formal.v2_test.test_five_reads_are_allowed\n\
         PASS  data.formal.v2_test.test_the_sixth_read_is_blocked\n\
         2 passed, 0 failed\n"
    );

    let failing = format!(
        "{SEED_TESTS}\ntest_wrong if {{ v2.pre_request with input as reads(1) }}\n\
         test_divides if {{ 1 / input.z == 0 with input as {{\"z\": 0}} }}\n"
    );
    std::fs::write(dir.path().join("seed_test.rego"), failing).unwrap();
    let out = offline_policy(dir.path(), &["test", "seed.rego", "seed_test.rego"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let printed = stdout(&out);
    for line in [
        "FAIL  data.formal.v2_test.test_wrong\n",
        "ERROR data.formal.v2_test.test_divides:\n  --> seed_test.rego:17:",
        "error: divide by zero\n",
        "\n2 passed, 2 failed\n",
    ] {
        assert!(printed.contains(line), "{line:?} not in {printed}");
    }

    let out = offline_policy(
        dir.path(),
        &["test", "seed.rego", "seed_test.rego", "--run", "sixth"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with("\n1 passed, 0 failed\n"),
        "{}",
        stdout(&out)
    );

    let out = offline_policy(dir.path(), &["test", "seed.rego", "--run", "sixth"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no tests"), "{}", stderr(&out));
}

/// A file that does not parse, or a policy `apply` would refuse, stops the run with the reason.
#[test]
fn policy_test_names_the_file_that_does_not_parse_and_the_builtin_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ok_test.rego"),
        "package ok\ntest_ok := true\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.rego"),
        "package bad\n\npre_request if { x > }\n",
    )
    .unwrap();
    let out = offline_policy(dir.path(), &["test", "ok_test.rego", "bad.rego"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("error: bad.rego does not parse:\n--> bad.rego:3:"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "no test ran: {}", stdout(&out));

    std::fs::write(
        dir.path().join("jwt.rego"),
        "package jwt\npre_request := {\"action\": \"block\"} if io.jwt.decode_verify(input.token, {})[0] == false\n",
    )
    .unwrap();
    let out = offline_policy(dir.path(), &["test", "jwt.rego", "ok_test.rego"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "policy \"jwt\" calls io.jwt.decode_verify, which this version of Shoal does not \
             provide (docs/policies.md, \"Built-ins\")"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn policy_eval_prints_the_verdict_and_the_input_or_a_rule_s_value() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seed.rego"), SEED_POLICY).unwrap();
    let input = serde_json::json!({
        "bucket": {"name": "sensitive-bucket", "access_count": {"last_minute": 6}},
        "user": {"id": "alice", "groups": []},
    });
    std::fs::write(dir.path().join("in.json"), input.to_string()).unwrap();
    let out = offline_policy(dir.path(), &["eval", "seed.rego", "--input", "in.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed["input"], input);
    assert_eq!(
        printed["verdict"],
        serde_json::json!({"action": "block", "type": "block_with_formal_message", "policy": "seed"})
    );

    let out = offline_policy(
        dir.path(),
        &[
            "eval",
            "seed.rego",
            "--input",
            "in.json",
            "--entrypoint",
            "data.formal.v2.pre_request",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        printed["value"],
        serde_json::json!({"action": "block", "type": "block_with_formal_message"})
    );

    // The response stage: the seed policy has no rule for it, a size cap has.
    std::fs::write(
        dir.path().join("size.rego"),
        "package size\nimport rego.v1\npre_response := {\"action\": \"block\", \"type\": \"too_large\"} if input.response.size > 100\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("big.json"),
        serde_json::json!({"response": {"status": 200, "size": 101}}).to_string(),
    )
    .unwrap();
    let args = ["eval", "seed.rego", "size.rego", "--input", "big.json"];
    let out = offline_policy(dir.path(), &[&args[..], &["--stage", "response"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed["stage"], "response");
    assert_eq!(
        printed["verdict"],
        serde_json::json!({"action": "block", "type": "too_large", "policy": "size"})
    );
    assert_eq!(printed["policies"][0]["defines_stage"], false, "{printed}");
    let out = offline_policy(dir.path(), &[&args[..], &["--stage", "body"]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "stage \"body\" is not one of request (pre_request), response (pre_response)"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn policy_eval_refuses_a_bad_input_file_and_a_failing_policy_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seed.rego"), SEED_POLICY).unwrap();
    std::fs::write(
        dir.path().join("odd.rego"),
        "package odd\npre_request := 42\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("net.rego"),
        "package net\npre_request := {\"action\": \"block\"} if http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:1/\"}).status_code != 200\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("bad.json"), "{\"bucket\": ").unwrap();
    std::fs::write(dir.path().join("in.json"), "{}").unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["eval", "seed.rego", "--input", "bad.json"],
            "error: --input bad.json is not valid JSON",
        ),
        (
            &["eval", "seed.rego", "--input", "missing.json"],
            "error: cannot read --input missing.json",
        ),
        (
            &["eval", "odd.rego", "--input", "in.json"],
            "error: policy \"odd\" failed: pre_request must be an object",
        ),
        (
            &["eval", "net.rego", "--input", "in.json"],
            "error: policy \"net\" calls http.send, which Shoal refuses: a policy must not make \
             network calls from the data plane",
        ),
    ];
    for (args, expected) in cases {
        let out = offline_policy(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", stdout(&out));
    }
}

#[test]
fn unreachable_database_is_a_clear_error() {
    let spec = NodeSpec::new("n1", "127.0.0.1", "postgres://postgres@127.0.0.1:1/shoal");
    let out = spec.cli(&["migrate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot prepare the database at 127.0.0.1:1/shoal")
            && err.contains("control plane unavailable"),
        "{err}"
    );
}

#[tokio::test]
async fn policy_cli_validates_before_storing() {
    let db = database().await;
    let spec = NodeSpec::new("n1", "127.0.0.1", &db.url);
    let good = spec.dir.path().join("seed.rego");
    let bad = spec.dir.path().join("bad.rego");
    std::fs::write(&good, SEED_POLICY).unwrap();
    std::fs::write(&bad, "package bad\npre_request if { x > }\n").unwrap();

    let out = spec.cli(&["policy", "apply", "seed", "--file", path_str(&good)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rev = head_revision(&db.url).await;

    let out = spec.cli(&["policy", "apply", "bad", "--file", path_str(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("policy \"bad\" does not compile"),
        "{}",
        stderr(&out)
    );
    assert_eq!(head_revision(&db.url).await, rev, "nothing stored");

    let out = spec.cli(&["policy", "list"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], "seed");
    assert_eq!(listed[0]["on_unreachable"], "local", "the default");

    // on_unreachable: an unknown value is refused by name, a known one stored (a new revision).
    let apply_on_unreachable = |value: &str| {
        spec.cli(&[
            "policy",
            "apply",
            "seed",
            "--file",
            path_str(&good),
            "--on-unreachable",
            value,
        ])
    };
    let out = apply_on_unreachable("partial");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--on-unreachable") && stderr(&out).contains("partial"),
        "{}",
        stderr(&out)
    );
    assert_eq!(head_revision(&db.url).await, rev, "nothing stored");
    let out = apply_on_unreachable("share");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(head_revision(&db.url).await, rev + 1);
    let out = spec.cli(&["policy", "list"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["on_unreachable"], "share");

    let out = spec.cli(&["user", "apply", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = spec.cli(&["user", "add-key", "alice", "--kind", "s3"]);
    let key: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(key["kind"], "s3");
    assert_eq!(key["secret"].as_str().unwrap().len(), 40);
    let out = spec.cli(&["user", "delete-key", key["key_id"].as_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = spec.cli(&["admin", "create", "--username", "short", "--password-stdin"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("password must be 12"),
        "{}",
        stderr(&out)
    );
}
