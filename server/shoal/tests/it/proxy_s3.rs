//! The S3 resource kind through real `shoal` processes, with real S3 clients (boto3, urllib
//! for presigned URLs; `scripts/fixtures/s3_client.py`) and a real S3 server behind Shoal that
//! checks signatures itself (moto, with an IAM user): whatever reaches it must be re-signed by
//! Shoal with the resource's key pair, or moto refuses it. Keys and prefixes stay within characters
//! that need no percent-encoding: moto's own check fails on encoded paths and queries even when
//! boto3 talks to it directly (Shoal's canonical forms are unit-tested in `sigv4`).

use std::time::Duration;

use serde_json::{Value, json};
use shoal_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_clients_sign_policies_decide_and_the_upstream_sees_only_shoal_signatures() {
    let db = database().await;
    let ips = ["127.0.0.101", "127.0.0.102", "127.0.0.103"];
    let c = Sandbox::cluster(&db.url, &ips).await;
    let apis = &c.apis;
    let (_moto, upstream_keys) = Moto::start().await;
    let port = free_port("127.0.0.101");

    // A user with an S3 key pair, the S3 resource (re-signing with moto's IAM key, virtual
    // hosts under s3.shoal.test) and the seed policy, unchanged, in strict mode.
    let key = apis[0].user_with_s3_key("alice").await;
    let mut spec = _moto.resource_spec(&upstream_keys, port);
    spec["virtual_host_domains"] = json!(["s3.shoal.test"]);
    let (code, body) = apis[0].put("/api/v1/resources/objects", spec).await;
    assert_eq!(code, 200, "{body}");
    // The upstream secret is stored sealed, never as given.
    let (_, listed) = apis[0].get("/api/v1/resources").await;
    let listed = listed.to_string();
    assert!(!listed.contains(upstream_keys["secret_access_key"].as_str().unwrap()));
    assert!(listed.contains("secret_sealed"), "{listed}");
    let revision = apis[0].put_seed_policy_strict().await;
    for node in &c.nodes {
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
            // A copy is an access to its source too: from reports it works, from the bucket
            // the seed policy now blocks it is refused (or a copy would read around it).
            {"step": "copy_allowed", "do": "copy", "bucket": "reports", "key": "copy/summary.csv",
             "from_bucket": "reports", "from_key": "q3/summary-2026.csv"},
            {"step": "copy_blocked", "do": "copy", "bucket": "reports", "key": "copy/secret.txt",
             "from_bucket": "sensitive-bucket", "from_key": "secret.txt"},
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

    let copied = step("copy_allowed");
    assert_eq!(
        (&copied["ok"], &copied["bytes"]),
        (&json!(true), &json!(8)),
        "{copied}"
    );
    let blocked_copy = step("copy_blocked");
    assert_eq!(
        (&blocked_copy["status"], &blocked_copy["code"]),
        (&json!(403), &json!("AccessDenied")),
        "{blocked_copy}"
    );

    // Every decision is in the audit log with the S3 operation, bucket and key.
    let audit = wait_until("audit lines of the S3 requests", WAIT, || async {
        let (_, body) = apis[0].get("/api/v1/audit?limit=500").await;
        let rows = body["entries"].as_array()?.clone();
        // Each node flushes its own lines: wait for every line asserted on below.
        let has = |outcome: &str, operation: &str| {
            rows.iter()
                .any(|r| r["outcome"] == outcome && r["detail"]["operation"] == operation)
        };
        let all = has("allowed", "PutObject")
            && has("allowed", "CompleteMultipartUpload")
            && has("allowed", "ListBuckets")
            && has("blocked", "GetObject")
            && has("blocked", "CopyObject")
            && rows.iter().any(|r| r["outcome"] == "unauthenticated");
        all.then_some(rows)
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
    let copy_line = audit
        .iter()
        .find(|r| r["outcome"] == "blocked" && r["detail"]["operation"] == "CopyObject")
        .expect("the blocked copy is audited");
    assert_eq!(
        copy_line["detail"]["copy_source"],
        "sensitive-bucket/secret.txt"
    );
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

/// A request signed with SigV4 as an S3 client would, at `time`, with `payload` as the
/// `x-amz-content-sha256` value.
fn signed(
    method: &str,
    url: &str,
    creds: (&str, &str),
    payload: &str,
    time: std::time::SystemTime,
) -> Vec<(String, String)> {
    signed_with(method, url, creds, payload, time, &[]).0
}

/// As [`signed`], also signing `headers` (which the caller sends too); returns the signature.
fn signed_with(
    method: &str,
    url: &str,
    (key_id, secret): (&str, &str),
    payload: &str,
    time: std::time::SystemTime,
    headers: &[(&str, &str)],
) -> (Vec<(String, String)>, String) {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
        UriPathNormalizationMode, sign,
    };
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(key_id, secret, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Precomputed(payload.to_string()),
    )
    .unwrap();
    let (instructions, signature) = sign(signable, &params).unwrap().into_parts();
    let headers = instructions
        .headers()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    (headers, signature)
}

/// The `<Code>` of an S3 error document.
fn s3_code(body: &str) -> &str {
    body.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map_or("", |(code, _)| code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_s3_input_gets_s3_errors_and_the_node_keeps_serving() {
    let db = database().await;
    let ip = "127.0.0.104";
    let (mut node, api, admin_base) =
        start_proxy_node(&db.url, ip, "upstream_timeout = \"500ms\"\n").await;
    let (moto, upstream_keys) = Moto::start().await;
    // An upstream that accepts connections and never answers.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_addr = hang.local_addr().unwrap();
    spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = hang.accept().await {
            held.push(conn);
        }
    });
    assert_eq!(api.put("/api/v1/users/erin", json!({})).await.0, 200);
    let (_, key) = api
        .post("/api/v1/users/erin/credentials", json!({"kind": "s3"}))
        .await;
    let creds = (
        key["key_id"].as_str().unwrap(),
        key["secret"].as_str().unwrap(),
    );
    let (port, stuck_port) = (free_port(ip), free_port(ip));
    let upstream_credentials = json!({
        "access_key_id": upstream_keys["access_key_id"],
        "secret_access_key": upstream_keys["secret_access_key"],
    });
    for (name, endpoint, port) in [
        ("objects", moto.endpoint.clone(), port),
        ("stuck", format!("http://{hang_addr}"), stuck_port),
    ] {
        let (code, body) = api
            .put(
                &format!("/api/v1/resources/{name}"),
                json!({"kind": "s3", "endpoint": endpoint, "port": port,
                       "upstream_credentials": upstream_credentials}),
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }
    node.wait_data_plane(head_revision(&db.url).await).await;

    let base = format!("http://{ip}:{port}");
    let client = reqwest::Client::new();
    let now = std::time::SystemTime::now();
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let send = |method: reqwest::Method, url: String, headers: Vec<(String, String)>| {
        let mut req = client.request(method, url);
        for (n, v) in headers {
            req = req.header(n, v);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        }
    };
    let get = |path: &str, headers: Vec<(String, String)>| {
        send(reqwest::Method::GET, format!("{base}{path}"), headers)
    };
    let sig = |path: &str, payload: &str, time| {
        signed("GET", &format!("{base}{path}"), creds, payload, time)
    };
    let with = |mut h: Vec<(String, String)>, name: &str, value: &str| {
        h.retain(|(n, _)| n != name);
        h.push((name.to_string(), value.to_string()));
        h
    };

    // A correctly signed request works (the baseline the cases below differ from).
    let (status, body) = get("/reports", sig("/reports", EMPTY, now)).await;
    assert_eq!(status, 200, "{body}");

    let twenty_minutes_ago = now - Duration::from_secs(20 * 60);
    let chunked_with_trailer = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
    let malformed = format!("AWS4-HMAC-SHA256 Credential={}/garbage", creds.0);
    for (what, path, headers, status, code) in [
        ("no signature", "/reports", vec![], 403, "AccessDenied"),
        (
            "malformed Authorization",
            "/reports",
            with(sig("/reports", EMPTY, now), "authorization", &malformed),
            400,
            "AuthorizationHeaderMalformed",
        ),
        (
            "signature version 2",
            "/reports",
            with(
                sig("/reports", EMPTY, now),
                "authorization",
                "AWS AKIDEXAMPLE:c2lnbmF0dXJl",
            ),
            400,
            "InvalidRequest",
        ),
        (
            "a payload hash that is not one",
            "/reports",
            with(
                sig("/reports", EMPTY, now),
                "x-amz-content-sha256",
                "not-a-hash",
            ),
            400,
            "AuthorizationHeaderMalformed",
        ),
        (
            "time outside the skew",
            "/reports",
            sig("/reports", EMPTY, twenty_minutes_ago),
            403,
            "RequestTimeTooSkewed",
        ),
        (
            "chunk-signed body with trailers",
            "/reports",
            sig("/reports", chunked_with_trailer, now),
            501,
            "NotImplemented",
        ),
        (
            "key that is not UTF-8",
            "/reports/%FF%FE",
            sig("/reports/%FF%FE", EMPTY, now),
            400,
            "InvalidURI",
        ),
        (
            "bucket name S3 refuses",
            "/No_Such_Bucket",
            sig("/No_Such_Bucket", EMPTY, now),
            400,
            "InvalidBucketName",
        ),
    ] {
        let (got, body) = get(path, headers).await;
        assert_eq!((got, s3_code(&body)), (status, code), "{what}: {body}");
        assert!(body.contains("<RequestId>"), "{what}: {body}");
    }

    // Oversized headers are refused before anything else.
    let (status, _) = get(
        "/reports",
        with(
            sig("/reports", EMPTY, now),
            "x-padding",
            &"p".repeat(80_000),
        ),
    )
    .await;
    assert_eq!(status, 431);

    // An upstream that never answers: 504 in S3's format, within the configured timeout.
    let stuck = format!("http://{ip}:{stuck_port}/reports");
    let (status, body) = send(
        reqwest::Method::GET,
        stuck.clone(),
        signed("GET", &stuck, creds, EMPTY, now),
    )
    .await;
    assert_eq!((status, s3_code(&body)), (504, "GatewayTimeout"), "{body}");

    // A body cut short: the client promises 1000 bytes, sends 10 and goes away. Nothing is
    // stored upstream, and the node goes on serving.
    let put_url = format!("{base}/reports/truncated.bin");
    let mut head = format!(
        "PUT /reports/truncated.bin HTTP/1.1\r\nhost: {ip}:{port}\r\ncontent-length: 1000\r\n"
    );
    for (n, v) in signed("PUT", &put_url, creds, "UNSIGNED-PAYLOAD", now) {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n0123456789");
    {
        use tokio::io::AsyncWriteExt as _;
        let mut conn = tokio::net::TcpStream::connect((ip, port)).await.unwrap();
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.shutdown().await.unwrap();
    }
    // The node gives up on the upstream request when the caller's body ends early.
    node.wait_for_log("upstream request failed", WAIT).await;
    let head_url = format!("{base}/reports/truncated.bin");
    let (status, _) = send(
        reqwest::Method::HEAD,
        head_url.clone(),
        signed(
            "HEAD",
            &head_url,
            creds,
            EMPTY,
            std::time::SystemTime::now(),
        ),
    )
    .await;
    assert_eq!(status, 404, "a truncated upload must not create the object");
    let (status, body) = get(
        "/reports",
        sig("/reports", EMPTY, std::time::SystemTime::now()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = get_ready(admin_base.clone()).await;
    assert_eq!(status, 200);
}

/// `data` as an aws-chunked body in `chunk`-byte chunks, each signed in the chain that starts
/// at `seed` (the S3 API reference's "Transferring Payload in Multiple Chunks").
fn chunk_signed_body(
    data: &[u8],
    chunk: usize,
    secret: &str,
    time: std::time::SystemTime,
    seed: String,
) -> Vec<u8> {
    use sha2::{Digest as _, Sha256};
    let key = aws_sigv4::sign::v4::generate_signing_key(secret, time, "us-east-1", "s3");
    let at = chrono::DateTime::<chrono::Utc>::from(time);
    let (amz_date, scope) = (
        at.format("%Y%m%dT%H%M%SZ").to_string(),
        format!("{}/us-east-1/s3/aws4_request", at.format("%Y%m%d")),
    );
    let empty = hex::encode(Sha256::digest(b""));
    let mut previous = seed;
    let mut out = Vec::new();
    for piece in data.chunks(chunk).chain([&[][..]]) {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n{empty}\n{}",
            hex::encode(Sha256::digest(piece))
        );
        previous = aws_sigv4::sign::v4::calculate_signature(&key, string_to_sign.as_bytes());
        out.extend_from_slice(
            format!("{:x};chunk-signature={previous}\r\n", piece.len()).as_bytes(),
        );
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_signed_uploads_are_checked_and_re_signed_chunk_by_chunk() {
    // Two resources on one node: `front` (what the client uses) forwards to `back`, which
    // checks front's chunk signatures exactly as front checks the client's, then stores the
    // body in moto. moto's own check fails on chunk-signed bodies even from AWS's SDKs, so it
    // runs open here; `back` is the signature checker front's output must satisfy.
    let db = database().await;
    let ip = "127.0.0.105";
    let (mut node, api, _) = start_proxy_node(&db.url, ip, "").await;
    let (moto, moto_keys) = Moto::start_with(false).await;
    let mut keys = Vec::new();
    for user in ["uma", "relay"] {
        assert_eq!(
            api.put(&format!("/api/v1/users/{user}"), json!({})).await.0,
            200
        );
        let (code, key) = api
            .post(
                &format!("/api/v1/users/{user}/credentials"),
                json!({"kind": "s3"}),
            )
            .await;
        assert_eq!(code, 201, "{key}");
        keys.push(key);
    }
    let (front, back) = (free_port(ip), free_port(ip));
    for (name, endpoint, port, creds) in [
        ("back", moto.endpoint.clone(), back, moto_keys.clone()),
        (
            "front",
            format!("http://{ip}:{back}"),
            front,
            json!({"access_key_id": keys[1]["key_id"], "secret_access_key": keys[1]["secret"]}),
        ),
    ] {
        let (code, body) = api
            .put(
                &format!("/api/v1/resources/{name}"),
                json!({"kind": "s3", "endpoint": endpoint, "port": port,
                       "upstream_credentials": {"access_key_id": creds["access_key_id"],
                                                "secret_access_key": creds["secret_access_key"]}}),
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }
    node.wait_data_plane(head_revision(&db.url).await).await;
    let creds = (
        keys[0]["key_id"].as_str().unwrap(),
        keys[0]["secret"].as_str().unwrap(),
    );
    let client = reqwest::Client::new();
    let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let put = |key: &'static str, tamper: bool| {
        let url = format!("http://{ip}:{front}/reports/{key}");
        let now = std::time::SystemTime::now();
        let decoded = data.len().to_string();
        let encoded_len = chunk_signed_body(&data, 65536, creds.1, now, "0".repeat(64)).len();
        let encoded_len = encoded_len.to_string();
        let signed_headers = [
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", decoded.as_str()),
            ("content-length", encoded_len.as_str()),
        ];
        let chunked = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
        let (auth, seed) = signed_with("PUT", &url, creds, chunked, now, &signed_headers);
        let mut body = chunk_signed_body(&data, 65536, creds.1, now, seed);
        if tamper {
            let second_chunk_data = body.len() / 2;
            body[second_chunk_data] ^= 1;
        }
        let mut req = client.put(url).body(body);
        for (n, v) in signed_headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .chain(auth)
        {
            req = req.header(n, v);
        }
        req.send()
    };
    let get = |key: &str| {
        let url = format!("http://{ip}:{front}/reports/{key}");
        const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let mut req = client.get(&url);
        for (n, v) in signed("GET", &url, creds, EMPTY, std::time::SystemTime::now()) {
            req = req.header(n, v);
        }
        req.send()
    };

    let resp = put("chunked.bin", false).await.unwrap();
    let status = resp.status().as_u16();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let resp = get("chunked.bin").await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.bytes().await.unwrap().to_vec(),
        data,
        "stored as sent, decoded"
    );

    // One flipped byte in the second chunk: front cuts the body there, nothing is stored.
    let status = put("tampered.bin", true).await.map(|r| r.status().as_u16());
    assert_ne!(status.ok(), Some(200));
    node.wait_for_log("signature of chunk 2 does not match", WAIT)
        .await;
    assert_eq!(get("tampered.bin").await.unwrap().status().as_u16(), 404);
}

/// CORS from the resource's rules: preflights answered by the node without a credential (no
/// policy, no upstream), refused ones as S3 refuses them and audited, and answers to presigned
/// URLs readable by the allowed origin's pages only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_get_cors_answers_from_the_resource_s_rules() {
    let db = database().await;
    let ip = "127.0.0.150";
    let (_sandbox, api, _) = sandbox_proxy_node(&db.url, ip, "").await;
    let node = &_sandbox.nodes[0];
    let (moto, upstream_keys) = Moto::start().await;
    let port = free_port(ip);
    let app = "http://app.shoal.test:5173";
    let key = api.user_with_s3_key("pia").await;
    let spec = |cors: Value| {
        let mut spec = moto.resource_spec(&upstream_keys, port);
        spec["cors"] = cors;
        spec
    };
    // A bad rule is refused with the field named, and nothing is stored.
    let (code, refused) = api
        .put(
            "/api/v1/resources/objects",
            spec(json!([{"allowed_origins": ["app.shoal.test"], "allowed_methods": ["GET"]}])),
        )
        .await;
    assert_eq!(code, 422, "{refused}");
    assert!(
        refused.to_string().contains("cors[0].allowed_origins[0]"),
        "{refused}"
    );
    let (code, body) = api
        .put(
            "/api/v1/resources/objects",
            spec(json!([{
                "allowed_origins": [app],
                "allowed_methods": ["GET", "PUT"],
                "allowed_headers": ["content-type", "x-amz-*"],
                "expose_headers": ["ETag"],
                "max_age_seconds": 600,
            }])),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    node.wait_data_plane(body["revision"].as_i64().unwrap())
        .await;

    let base = format!("http://{ip}:{port}");
    let client = reqwest::Client::new();
    let preflight = |origin: &str, method: &str, headers: &str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{base}/reports/page.txt"))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
    };
    let allowed = preflight(app, "PUT", "content-type").await.unwrap();
    assert_eq!(allowed.status().as_u16(), 200);
    let h = allowed.headers();
    assert_eq!(h["access-control-allow-origin"], app);
    assert_eq!(h["access-control-allow-methods"], "GET, PUT");
    assert_eq!(h["access-control-allow-headers"], "content-type");
    assert_eq!(h["access-control-max-age"], "600");
    for (origin, method) in [("http://evil.shoal.test", "GET"), (app, "DELETE")] {
        let refused = preflight(origin, method, "").await.unwrap();
        assert_eq!(refused.status().as_u16(), 403, "{origin} {method}");
        let text = refused.text().await.unwrap();
        assert!(text.contains("<Code>AccessForbidden</Code>"), "{text}");
        assert!(
            text.contains("CORSResponse: this CORS request is not allowed"),
            "{text}"
        );
    }
    let lines = wait_until("two refused preflights audited", WAIT, || async {
        let (_, page) = api.get("/api/v1/audit?q=objects").await;
        let refused: Vec<Value> = page["entries"]
            .as_array()?
            .iter()
            .filter(|l| l["outcome"] == "preflight_refused")
            .cloned()
            .collect();
        (refused.len() == 2).then_some(refused)
    })
    .await;
    assert_eq!(lines[0]["actor"], "anonymous", "{lines:?}");
    assert_eq!(lines[0]["detail"]["method"], "OPTIONS", "{lines:?}");

    // A page uploads to a presigned URL and reads the object back: the answers carry the
    // page's origin; another origin's page gets the answer without it (the browser hides it).
    let urls = run_steps(json!({
        "endpoints": [base],
        "access_key_id": key["key_id"],
        "secret_access_key": key["secret"],
        "steps": [
            {"step": "put", "do": "presign", "method": "put_object", "bucket": "reports", "key": "page.txt"},
            {"step": "get", "do": "presign", "method": "get_object", "bucket": "reports", "key": "page.txt"},
        ],
    }))
    .await;
    let put = client
        .put(urls["put"]["url"].as_str().unwrap())
        .header("origin", app)
        .body("from a page")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    assert_eq!(put.headers()["access-control-allow-origin"], app);
    assert_eq!(put.headers()["access-control-expose-headers"], "ETag");
    let get = |origin: &'static str| {
        client
            .get(urls["get"]["url"].as_str().unwrap())
            .header("origin", origin)
            .send()
    };
    let read = get("http://app.shoal.test:5173").await.unwrap();
    assert_eq!(read.headers()["access-control-allow-origin"], app);
    assert_eq!(read.text().await.unwrap(), "from a page");
    let other = get("http://evil.shoal.test").await.unwrap();
    assert_eq!(other.status().as_u16(), 200);
    assert!(!other.headers().contains_key("access-control-allow-origin"));
}

const ANONYMOUS_RULES: &str = r#"package anonymous

import rego.v1

# Anonymous callers read public/ only, three times a minute per address.
pre_request := {"action": "block", "type": "not_public", "message": "only public/ is open"} if {
  input.user.anonymous
  not startswith(input.request.key, "public/")
}

pre_request := {"action": "block", "type": "rate", "message": "three a minute"} if {
  input.user.anonymous
  input.bucket.access_count.last_minute > 3
}
"#;

/// Callers without a signature, on a resource that lets them read: policies see them as
/// `anonymous` and decide, counts are per address, audit lines say anonymous, and writes stay
/// refused as S3 refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_readers_are_decided_by_the_policies_and_counted_by_address() {
    let db = database().await;
    let ip = "127.0.0.151";
    let (_sandbox, api, _) = sandbox_proxy_node(&db.url, ip, "").await;
    let node = &_sandbox.nodes[0];
    let (moto, upstream_keys) = Moto::start().await;
    let port = free_port(ip);
    let key = api.user_with_s3_key("olga").await;
    let (code, refused) = api.put("/api/v1/users/anonymous", json!({})).await;
    assert_eq!(code, 422, "{refused}");
    assert!(refused.to_string().contains("is reserved"), "{refused}");
    let mut spec = moto.resource_spec(&upstream_keys, port);
    spec["anonymous"] = json!("read");
    let (code, body) = api.put("/api/v1/resources/objects", spec).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = api
        .put(
            "/api/v1/policies/anonymous",
            json!({"rego": ANONYMOUS_RULES}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    node.wait_data_plane(body["revision"].as_i64().unwrap())
        .await;
    let base = format!("http://{ip}:{port}");
    let stored = run_steps(json!({
        "endpoints": [base],
        "access_key_id": key["key_id"],
        "secret_access_key": key["secret"],
        "steps": [
            {"step": "public", "do": "put", "bucket": "reports", "key": "public/notice.txt", "bytes": 300},
            {"step": "private", "do": "put", "bucket": "reports", "key": "private/plan.txt", "bytes": 300},
        ],
    }))
    .await;
    assert_eq!(stored["public"]["ok"], true, "{stored:?}");
    assert_eq!(stored["private"]["ok"], true, "{stored:?}");

    let client = reqwest::Client::new();
    let get = |key: &str| client.get(format!("{base}/reports/{key}")).send();
    let public = get("public/notice.txt").await.unwrap();
    assert_eq!(public.status().as_u16(), 200);
    assert_eq!(public.bytes().await.unwrap().len(), 300);
    let private = get("private/plan.txt").await.unwrap();
    assert_eq!(private.status().as_u16(), 403);
    let text = private.text().await.unwrap();
    assert!(
        text.contains("<Code>AccessDenied</Code>") && text.contains("only public/ is open"),
        "{text}"
    );
    // A write is refused before any policy: the resource lets anonymous callers read only.
    let put = client
        .put(format!("{base}/reports/public/graffiti.txt"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 403);
    let text = put.text().await.unwrap();
    assert!(
        text.contains("may only read resource \"objects\""),
        "{text}"
    );
    // The third and fourth reads of this address (two counted above): the fourth is over.
    assert_eq!(
        get("public/notice.txt").await.unwrap().status().as_u16(),
        200
    );
    let over = get("public/notice.txt").await.unwrap();
    assert_eq!(over.status().as_u16(), 403);
    assert!(over.text().await.unwrap().contains("three a minute"));
    // A signed caller is not held to the anonymous rules.
    let signed = run_steps(json!({
        "endpoints": [base],
        "access_key_id": key["key_id"],
        "secret_access_key": key["secret"],
        "steps": [{"step": "get", "do": "round_robin_gets", "bucket": "reports", "key": "private/plan.txt", "count": 1}],
    }))
    .await;
    assert_eq!(signed["get:1"]["ok"], true, "{signed:?}");

    // Audited as anonymous with the address, and counted per address.
    let lines = wait_until("anonymous audit lines", WAIT, || async {
        let (_, page) = api.get("/api/v1/audit?q=objects").await;
        let anonymous: Vec<Value> = page["entries"]
            .as_array()?
            .iter()
            .filter(|l| l["actor"] == "anonymous" && l["action"] == "request")
            .cloned()
            .collect();
        (anonymous.len() == 5).then_some(anonymous)
    })
    .await;
    let allowed = lines.iter().filter(|l| l["outcome"] == "allowed").count();
    assert_eq!(allowed, 2, "{lines:?}");
    let address = lines[0]["detail"]["source_ip"].as_str().unwrap();
    assert!(
        lines.iter().all(|l| l["detail"]["source_ip"] == address),
        "{lines:?}"
    );
    // Four reads counted (the refused write never reached the policies or the counters).
    let (_, counter) = api
        .get(&format!(
            "/api/v1/state/counters?subject=anonymous:{address}&resource=objects/reports&action=access"
        ))
        .await;
    assert_eq!(counter["access_count"]["last_minute"], 4, "{counter}");
}

/// Debian's s3cmd and rclone, as operators script them, through Shoal: multipart uploads
/// (both split a 20 MB file), downloads, listings, and the bytes compared at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3cmd_and_rclone_move_multipart_files_through_shoal_intact() {
    let db = database().await;
    let ip = "127.0.0.152";
    let (_sandbox, api, _) = sandbox_proxy_node(&db.url, ip, "").await;
    let node = &_sandbox.nodes[0];
    let (moto, upstream_keys) = Moto::start().await;
    let port = free_port(ip);
    let key = api.user_with_s3_key("rex").await;
    let (code, body) = api
        .put(
            "/api/v1/resources/objects",
            moto.resource_spec(&upstream_keys, port),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    node.wait_data_plane(body["revision"].as_i64().unwrap())
        .await;
    let (key_id, secret) = (
        key["key_id"].as_str().unwrap(),
        key["secret"].as_str().unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    let data: Vec<u8> = (0..20 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let run = |program: &str, args: &[&str]| {
        // Debian's rclone fails every S3 remote when AWS_CA_BUNDLE is set (some machines set
        // it); s3cmd ignores it.
        let out = std::process::Command::new(program)
            .args(args)
            .env_remove("AWS_CA_BUNDLE")
            .current_dir(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{program} (scripts/test installs it): {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // s3cmd: path-style (no %(bucket)s in host_bucket), Signature Version 4.
    let endpoint = format!("{ip}:{port}");
    std::fs::write(
        dir.path().join("s3cmd.cfg"),
        format!(
            "[default]\naccess_key = {key_id}\nsecret_key = {secret}\nhost_base = {endpoint}\n\
             host_bucket = {endpoint}\nuse_https = False\nsignature_v2 = False\n\
             bucket_location = us-east-1\nmultipart_chunk_size_mb = 5\n"
        ),
    )
    .unwrap();
    let s3cmd = |args: &[&str]| run("s3cmd", &[&["-c", "s3cmd.cfg"], args].concat());
    s3cmd(&["put", "big.bin", "s3://reports/s3cmd/big.bin"]);
    s3cmd(&["get", "s3://reports/s3cmd/big.bin", "s3cmd-copy.bin"]);
    assert!(std::fs::read(dir.path().join("s3cmd-copy.bin")).unwrap() == data);
    // No `ls` with a prefix or `info`: moto refuses the first (its signature check fails on
    // the encoded `/`) and fails on the second's `?acl` (500), with or without Shoal.

    // rclone: an S3 remote from the environment, multipart above 5 MiB, checked by rclone.
    std::fs::write(dir.path().join("rclone.conf"), "").unwrap();
    std::fs::create_dir(dir.path().join("up")).unwrap();
    std::fs::copy(&file, dir.path().join("up/big.bin")).unwrap();
    let remote = [
        "--config=rclone.conf".to_string(),
        "--s3-provider=Other".to_string(),
        format!("--s3-access-key-id={key_id}"),
        format!("--s3-secret-access-key={secret}"),
        format!("--s3-endpoint=http://{endpoint}"),
        "--s3-region=us-east-1".to_string(),
        "--s3-force-path-style".to_string(),
        "--s3-upload-cutoff=5M".to_string(),
        "--s3-chunk-size=5M".to_string(),
    ];
    let rclone = |args: &[&str]| {
        let all: Vec<&str> = args
            .iter()
            .copied()
            .chain(remote.iter().map(String::as_str))
            .collect();
        run("rclone", &all)
    };
    // File to file, without listing (moto's signature check fails on the encoded `/` of a
    // listing's prefix, whoever sends it) and without the check after upload (moto answers
    // 400 to its `HEAD ?versionId=null`); the bytes are compared here instead.
    let target = ":s3:reports/rclone/big.bin";
    rclone(&[
        "copyto",
        "up/big.bin",
        target,
        "--no-check-dest",
        "--s3-no-head",
    ]);
    rclone(&["copyto", target, "down/big.bin"]);
    assert!(std::fs::read(dir.path().join("down/big.bin")).unwrap() == data);

    // Both uploaded in parts, each part a request Shoal decided and audited.
    for prefix in ["s3cmd/", "rclone/"] {
        wait_until("the parts audited", WAIT, || async {
            let (_, page) = api
                .get(&format!("/api/v1/audit?q={prefix}big.bin&limit=100"))
                .await;
            let parts = page["entries"]
                .as_array()?
                .iter()
                .filter(|l| l["detail"]["operation"] == "UploadPart" && l["outcome"] == "allowed")
                .count();
            (parts == 4).then_some(())
        })
        .await;
    }
}

const FORM_RULES: &str = r#"package forms

import rego.v1

pre_request := {"action": "block", "type": "form_prefix", "message": "forms may not write blocked/"} if {
  input.request.operation == "PostObject"
  startswith(input.request.key, "blocked/")
}

pre_request := {"action": "block", "type": "form_type", "message": "forms upload images only"} if {
  input.request.operation == "PostObject"
  not startswith(object.get(input.request.headers, "content-type", ""), "image/")
}
"#;

/// Browser-form uploads (S3 POST Object) as boto3's `generate_presigned_post` makes them: the
/// POST policy checked as S3 checks it, the caller identified by the form's credential, the
/// operator's policies deciding on `PostObject`, and every bad form refused with S3's error,
/// audited, with nothing stored upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_forms_upload_under_their_post_policy_and_the_operator_s_policies() {
    let db = database().await;
    let ip = "127.0.0.154";
    let (_sandbox, api, _) = sandbox_proxy_node(&db.url, ip, "").await;
    let node = &_sandbox.nodes[0];
    // moto fails every form upload while it checks signatures (it looks for an Authorization
    // header): an open moto stores what Shoal lets through.
    let (moto, upstream_keys) = Moto::start_with(false).await;
    let port = free_port(ip);
    let key = api.user_with_s3_key("fatima").await;
    api.resource("objects", moto.resource_spec(&upstream_keys, port))
        .await;
    let (code, body) = api
        .put("/api/v1/policies/forms", json!({"rego": FORM_RULES}))
        .await;
    assert_eq!(code, 200, "{body}");
    node.wait_data_plane(body["revision"].as_i64().unwrap())
        .await;
    let image = json!({"Content-Type": "image/png"});
    let ranged = json!([{"Content-Type": "image/png"}, ["starts-with", "$key", "uploads/"], ["content-length-range", 1, 4096]]);
    let form = |step: &str, key: &str, bytes: usize| {
        json!({"step": step, "do": "post_form", "bucket": "reports", "key": key, "bytes": bytes,
               "fields": image, "conditions": ranged, "file_name": "cat.png"})
    };
    let mut steps = vec![
        form("ok", "uploads/${filename}", 3000),
        form("too_large", "uploads/big.png", 5000),
    ];
    let mut blocked = form("blocked", "blocked/x.png", 10);
    blocked["conditions"] = json!([{"Content-Type": "image/png"}]);
    let mut expired = form("expired", "uploads/late.png", 10);
    expired["expires"] = json!(-60);
    let mut forged = form("forged", "uploads/forged.png", 10);
    forged["tamper"] = json!(["content-length-range", 1, 1_000_000_000]);
    let mut extra = form("extra", "uploads/extra.png", 10);
    extra["extra"] = json!({"x-amz-meta-added": "after signing"});
    let mut long = form("long", "uploads/long.png", 10);
    long["extra"] = json!({"x-ignore-padding": "p".repeat(25_000)});
    let mut wrong_type = form("wrong_type", "uploads/doc.txt", 10);
    wrong_type["fields"] = json!({"Content-Type": "text/plain"});
    wrong_type["conditions"] = json!([{"Content-Type": "text/plain"}]);
    steps.extend([blocked, expired, forged, extra, long, wrong_type]);
    let out = run_steps(json!({
        "endpoints": [format!("http://{ip}:{port}")],
        "access_key_id": key["key_id"],
        "secret_access_key": key["secret"],
        "steps": steps,
    }))
    .await;
    let ok = &out["ok"];
    assert_eq!(ok["status"], 204, "{ok}");
    // moto does not check a form's policy: the form Shoal re-posts is checked by a second
    // resource of the node (Shoal's own check, as strict as S3's), in front of moto.
    let outer_port = free_port(ip);
    let mut outer = moto.resource_spec(&json!({}), outer_port);
    outer["endpoint"] = json!(format!("http://{ip}:{port}"));
    outer["upstream_credentials"] = json!({
        "access_key_id": key["key_id"], "secret_access_key": key["secret"],
    });
    node.wait_data_plane(api.resource("outer", outer).await)
        .await;
    let chained = run_steps(json!({
        "endpoints": [format!("http://{ip}:{outer_port}")],
        "access_key_id": key["key_id"],
        "secret_access_key": key["secret"],
        "steps": [form("chained", "uploads/chained-${filename}", 4096)],
    }))
    .await;
    let chained = &chained["chained"];
    assert_eq!(chained["status"], 204, "{chained}");
    assert_eq!(chained["stored"], true, "{chained}");
    assert_eq!(ok["stored"], true, "{ok}");
    assert_eq!(ok["content_type"], "image/png", "{ok}");
    for (step, status, code, says) in [
        ("too_large", 400, "EntityTooLarge", "at most 4096 bytes"),
        (
            "blocked",
            403,
            "AccessDenied",
            "forms may not write blocked/",
        ),
        ("expired", 403, "AccessDenied", "Policy expired"),
        (
            "forged",
            403,
            "SignatureDoesNotMatch",
            "signature does not match",
        ),
        (
            "extra",
            403,
            "AccessDenied",
            "Extra input fields: x-amz-meta-added",
        ),
        (
            "long",
            400,
            "MaxPostPreDataLengthExceededError",
            "exceed 20480 bytes",
        ),
        (
            "wrong_type",
            403,
            "AccessDenied",
            "forms upload images only",
        ),
    ] {
        let got = &out[step];
        assert_eq!(got["status"], status, "{step}: {got}");
        assert_eq!(got["code"], code, "{step}: {got}");
        assert!(
            got["message"].as_str().unwrap_or("").contains(says),
            "{step}: {got}"
        );
        assert_eq!(
            got["stored"], "NoSuchKey",
            "{step} reached the upstream: {got}"
        );
    }
    // One audit line per form, the signed ones naming the user, each with its outcome.
    let lines = wait_until("form audit lines", WAIT, || async {
        let (_, page) = api.get("/api/v1/audit").await;
        let forms: Vec<Value> = page["entries"]
            .as_array()?
            .iter()
            .filter(|l| l["detail"]["operation"] == "PostObject")
            .cloned()
            .collect();
        (forms.len() >= 10).then_some(forms)
    })
    .await;
    let outcome = |key: &str| {
        lines.iter().find(|l| l["detail"]["key"] == key).map(|l| {
            (
                l["outcome"].as_str().unwrap_or("").to_string(),
                l["actor"].clone(),
            )
        })
    };
    assert_eq!(
        outcome("uploads/cat.png"),
        Some(("allowed".into(), json!("user:fatima"))),
        "{lines:?}"
    );
    assert_eq!(outcome("blocked/x.png").unwrap().0, "blocked", "{lines:?}");
    assert_eq!(
        outcome("uploads/forged.png"),
        Some(("unauthenticated".into(), json!("anonymous"))),
        "{lines:?}"
    );
    assert_eq!(
        outcome("uploads/big.png").unwrap(),
        ("invalid".into(), json!("user:fatima")),
        "{lines:?}"
    );
}

/// The page a web app would serve: empty, its script comes from the test.
const PAGE: &str = "<!doctype html><html lang=en><title>uploads</title><h1>uploads</h1></html>";

/// In the page: a file uploaded to a presigned URL and with a POST form, each read back through
/// a presigned GET; a form whose key the page changed is refused. Every answer is read by the
/// page's script, which the browser allows only with the resource's CORS headers.
const UPLOAD_SCRIPT: &str = r#"
const [putUrl, getPutUrl, form, getFormUrl, done] = arguments;
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
(async () => {
  const bytes = new Uint8Array(200000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) % 251;
  const out = {};
  const put = await fetch(putUrl, {method: "PUT", headers: {"Content-Type": "application/octet-stream"}, body: bytes});
  out.put = {status: put.status, etag: put.headers.get("ETag")};
  out.put_read_back = same(new Uint8Array(await (await fetch(getPutUrl)).arrayBuffer()), bytes);
  const posted = new FormData();
  for (const [name, value] of Object.entries(form.fields)) posted.append(name, value);
  posted.append("file", new Blob([bytes], {type: "application/octet-stream"}), "form.bin");
  const post = await fetch(form.url, {method: "POST", body: posted});
  out.post = {status: post.status};
  out.post_read_back = same(new Uint8Array(await (await fetch(getFormUrl)).arrayBuffer()), bytes);
  const forged = new FormData();
  for (const [name, value] of Object.entries(form.fields)) forged.append(name, name === "key" ? "elsewhere/form.bin" : value);
  forged.append("file", new Blob([bytes]), "form.bin");
  const refused = await fetch(form.url, {method: "POST", body: forged});
  out.forged = {status: refused.status, body: await refused.text()};
  done(out);
})().catch(e => done({error: String(e)}));
"#;

/// What web apps do in a browser, in Chromium: a page of its own origin uploads to a presigned
/// URL and with a POST form through Shoal and reads both back, the preflights answered from
/// the resource's CORS rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_uploads_with_presigned_urls_and_forms_and_reads_them_back() {
    let db = database().await;
    let ip = "127.0.0.155";
    let (_sandbox, api, _) = sandbox_proxy_node(&db.url, ip, "").await;
    let node = &_sandbox.nodes[0];
    // Open: moto fails form uploads while it checks signatures (see the form test above).
    let (moto, upstream_keys) = Moto::start_with(false).await;
    let origin = format!("http://{}", serve_page(ip, PAGE).await);
    let port = free_port(ip);
    let key = api.user_with_s3_key("wen").await;
    let mut spec = moto.resource_spec(&upstream_keys, port);
    spec["cors"] = json!([{
        "allowed_origins": [origin], "allowed_methods": ["GET", "PUT", "POST"],
        "allowed_headers": ["*"], "expose_headers": ["ETag"], "max_age_seconds": 600,
    }]);
    node.wait_data_plane(api.resource("objects", spec).await)
        .await;
    let presign = |step: &str, method: &str, key: &str| json!({"step": step, "do": "presign", "method": method, "bucket": "reports", "key": key});
    let signed = run_steps(json!({
        "endpoints": [format!("http://{ip}:{port}")],
        "access_key_id": key["key_id"],
        "secret_access_key": key["secret"],
        "steps": [
            presign("put", "put_object", "browser/put.bin"),
            presign("get_put", "get_object", "browser/put.bin"),
            {"step": "form", "do": "presign_post", "bucket": "reports", "key": "browser/${filename}",
             "conditions": [["content-length-range", 1, 1_048_576]]},
            presign("get_form", "get_object", "browser/form.bin"),
        ],
    }))
    .await;
    let (_driver, chromium) = browser().await;
    chromium.goto(&origin).await.unwrap();
    let out = chromium
        .execute_async(
            UPLOAD_SCRIPT,
            vec![
                signed["put"]["url"].clone(),
                signed["get_put"]["url"].clone(),
                signed["form"].clone(),
                signed["get_form"]["url"].clone(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out["error"], Value::Null, "{out}");
    assert_eq!(out["put"]["status"], 200, "{out}");
    assert!(out["put"]["etag"].is_string(), "ETag not exposed: {out}");
    assert_eq!(out["put_read_back"], true, "{out}");
    assert_eq!(out["post"]["status"], 204, "{out}");
    assert_eq!(out["post_read_back"], true, "{out}");
    assert_eq!(out["forged"]["status"], 403, "{out}");
    let forged = out["forged"]["body"].as_str().unwrap_or("");
    assert!(
        forged.contains("Policy Condition failed") && forged.contains("$key"),
        "{forged}"
    );
    // The browser's own requests, audited under the user who presigned them.
    let operations = wait_until("the browser's audit lines", WAIT, || async {
        let (_, page) = api.get("/api/v1/audit?q=objects").await;
        let mut ops: Vec<(String, String)> = page["entries"]
            .as_array()?
            .iter()
            .filter(|l| l["actor"] == "user:wen")
            .map(|l| {
                let d = &l["detail"];
                (
                    d["operation"].as_str().unwrap_or("").to_string(),
                    l["outcome"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        ops.sort();
        (ops.len() >= 5).then_some(ops)
    })
    .await;
    for expected in [
        ("GetObject", "allowed"),
        ("PostObject", "allowed"),
        ("PostObject", "unauthenticated"),
        ("PutObject", "allowed"),
    ] {
        assert!(
            operations.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} not in {operations:?}"
        );
    }
}
