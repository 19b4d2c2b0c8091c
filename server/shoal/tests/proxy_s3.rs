//! The S3 resource kind through real `shoal` processes, with real S3 clients (boto3, urllib
//! for presigned URLs; `tests/s3_client.py`) and a real S3 server behind Shoal that checks
//! signatures itself (moto, with an IAM user): whatever reaches it must be re-signed by Shoal
//! with the resource's key pair, or moto refuses it. Keys and prefixes stay within characters
//! that need no percent-encoding: moto's own check fails on encoded paths and queries even
//! when boto3 talks to it directly (Shoal's canonical forms are unit-tested in `sigv4`).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// Runs the steps through `s3_client.py run`; the outcome of each step by name.
async fn run_steps(spec: Value) -> HashMap<String, Value> {
    let out = tokio::task::spawn_blocking(move || s3_client(&["run", &spec.to_string()]))
        .await
        .unwrap();
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (v["step"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_clients_sign_policies_decide_and_the_upstream_sees_only_shoal_signatures() {
    let db = database().await;
    let ips = ["127.0.0.101", "127.0.0.102", "127.0.0.103"];
    let (c, apis) = start_ready_cluster(&db.url, &ips).await;
    let (_moto, upstream_keys) = Moto::start().await;
    let port = free_port("127.0.0.101");

    // A user with an S3 key pair, the S3 resource (re-signing with moto's IAM key, virtual
    // hosts under s3.shoal.test) and the seed policy, unchanged, in strict mode.
    assert_eq!(apis[0].put("/api/v1/users/alice", json!({})).await.0, 200);
    let (code, key) = apis[0]
        .post("/api/v1/users/alice/credentials", json!({"kind": "s3"}))
        .await;
    assert_eq!(code, 201, "{key}");
    let (code, body) = apis[0]
        .put(
            "/api/v1/resources/objects",
            json!({
                "kind": "s3",
                "endpoint": _moto.endpoint,
                "port": port,
                "virtual_host_domains": ["s3.shoal.test"],
                "upstream_credentials": {
                    "access_key_id": upstream_keys["access_key_id"],
                    "secret_access_key": upstream_keys["secret_access_key"],
                },
            }),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    // The upstream secret is stored sealed, never as given.
    let (_, listed) = apis[0].get("/api/v1/resources").await;
    let listed = listed.to_string();
    assert!(!listed.contains(upstream_keys["secret_access_key"].as_str().unwrap()));
    assert!(listed.contains("secret_sealed"), "{listed}");
    let (code, body) = apis[0]
        .put(
            "/api/v1/policies/seed",
            json!({"rego": SEED_POLICY, "enforcement": "strict"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let revision = body["revision"].as_i64().unwrap();
    let mut nodes = c.nodes;
    for node in &mut nodes {
        let ready = node.wait_data_plane(revision).await;
        assert_eq!(ready["data_plane"]["resources"][0][1], port, "{ready}");
    }
    let endpoints: Vec<String> = ips.iter().map(|ip| format!("http://{ip}:{port}")).collect();
    let results = run_steps(json!({
        "endpoints": endpoints,
        "access_key_id": key["key_id"],
        "secret_access_key": key["secret"],
        "resolve": {"s3.shoal.test": ips[1]},
        "steps": [
            {"step": "list_buckets"},
            {"step": "put_get", "bucket": "reports", "key": "q3/summary-2026.csv", "body": "a,b\n1,2\n"},
            {"step": "multipart", "bucket": "reports", "key": "big/parts.bin", "part_sizes": [5_242_880, 1_000_000]},
            {"step": "upload_file", "bucket": "reports", "key": "big/managed.bin", "bytes": 12_582_912},
            {"step": "presigned_get", "bucket": "reports", "key": "q3/summary-2026.csv"},
            {"step": "presigned_get_tampered", "do": "presigned_get", "bucket": "reports", "key": "q3/summary-2026.csv", "tamper": true},
            {"step": "virtual_host", "endpoint": format!("http://s3.shoal.test:{port}"), "bucket": "reports", "key": "v/host.txt"},
            {"step": "wrong_secret", "bucket": "reports"},
            {"step": "unknown_key", "bucket": "reports"},
            {"step": "round_robin_gets", "bucket": "sensitive-bucket", "key": "secret.txt", "count": 6},
        ],
    }))
    .await;
    let step = |name: &str| {
        results
            .get(name)
            .unwrap_or_else(|| panic!("no result for {name}: {results:?}"))
    };

    assert_eq!(
        step("list_buckets")["ok"],
        true,
        "{:?}",
        step("list_buckets")
    );
    assert_eq!(
        step("list_buckets")["buckets"],
        json!(["reports", "sensitive-bucket"])
    );
    let put_get = step("put_get");
    assert_eq!(put_get["ok"], true, "{put_get}");
    assert_eq!(put_get["same"], true);
    assert_eq!(put_get["length"], 8);
    assert_eq!(put_get["listed"], json!(["q3/summary-2026.csv"]));
    let multipart = step("multipart");
    assert_eq!(multipart["ok"], true, "{multipart}");
    assert_eq!(multipart["sha256_match"], true);
    assert_eq!(multipart["bytes"], 6_242_880);
    let managed = step("upload_file");
    assert_eq!(managed["ok"], true, "{managed}");
    assert_eq!(managed["same"], true);
    let presigned = step("presigned_get");
    assert_eq!(presigned["status"], 200, "{presigned}");
    assert_eq!(presigned["body"], "a,b\n1,2\n");
    let tampered = step("presigned_get_tampered");
    assert_eq!(tampered["status"], 403, "{tampered}");
    assert!(
        tampered["body"]
            .as_str()
            .unwrap()
            .contains("<Code>SignatureDoesNotMatch</Code>"),
        "{tampered}"
    );
    let virtual_host = step("virtual_host");
    assert_eq!(virtual_host["ok"], true, "{virtual_host}");
    assert_eq!(virtual_host["body"], "virtual");
    // boto3 parsed Shoal's XML errors into its own exceptions.
    let wrong = step("wrong_secret");
    assert_eq!(
        (&wrong["status"], &wrong["code"]),
        (&json!(403), &json!("SignatureDoesNotMatch")),
        "{wrong}"
    );
    assert!(wrong["request_id"].is_string(), "{wrong}");
    let unknown = step("unknown_key");
    assert_eq!(
        (&unknown["status"], &unknown["code"]),
        (&json!(403), &json!("InvalidAccessKeyId")),
        "{unknown}"
    );
    // The seed policy: five reads of sensitive-bucket pass, round-robin over the three
    // nodes; the sixth is refused with S3's AccessDenied.
    for i in 1..=5 {
        let r = step(&format!("round_robin_gets:{i}"));
        assert_eq!(r["ok"], true, "read {i}: {r}");
        assert_eq!(r["bytes"], 10);
    }
    let sixth = step("round_robin_gets:6");
    assert_eq!(
        (&sixth["ok"], &sixth["status"], &sixth["code"]),
        (&json!(false), &json!(403), &json!("AccessDenied")),
        "{sixth}"
    );

    // Every decision is in the audit log with the S3 operation, bucket and key.
    let audit = wait_until("audit lines of the S3 requests", WAIT, || async {
        let (_, body) = apis[0].get("/api/v1/audit?limit=500").await;
        let rows = body.as_array()?.clone();
        let blocked = rows
            .iter()
            .any(|r| r["outcome"] == "blocked" && r["detail"]["bucket"] == "sensitive-bucket");
        blocked.then_some(rows)
    })
    .await;
    let find = |outcome: &str, operation: &str| {
        audit
            .iter()
            .find(|r| r["outcome"] == outcome && r["detail"]["operation"] == operation)
            .unwrap_or_else(|| panic!("no {outcome} {operation} audit line"))
    };
    let put = find("allowed", "PutObject");
    assert_eq!(put["actor"], "user:alice");
    assert_eq!(put["target"], "objects");
    assert_eq!(put["detail"]["bucket"], "reports");
    find("allowed", "CompleteMultipartUpload");
    find("allowed", "ListBuckets");
    let blocked = find("blocked", "GetObject");
    assert_eq!(blocked["detail"]["key"], "secret.txt");
    assert_eq!(blocked["detail"]["type"], "block_with_formal_message");
    assert!(
        audit
            .iter()
            .any(|r| r["outcome"] == "unauthenticated" && r["actor"] == "anonymous"),
        "refused signatures are audited too"
    );
}
