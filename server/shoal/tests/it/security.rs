//! Secrets stay secret: a node given every kind of secret (database password, cluster PSK,
//! secrets-at-rest key, OTLP export header, admin password, users' API keys and S3 secret
//! keys, session tokens) and driven through logins, failures and failing exports at debug
//! level never writes one of them to its log, `/cluster/status`, `/ready`, `/health`,
//! `/metrics` or the admin API's status and config answers.

use std::time::Duration;

use serde_json::json;
use shoal_testkit::*;

const DB_PASSWORD: &str = "db-pass-8c1f0e";
const OTLP_SECRET: &str = "otlp-token-5d2a77";
const WRONG_PASSWORD: &str = "wrong-password-31b9";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_status_or_metrics() {
    let db = database().await;
    assert!(db.url.contains("postgres@"), "{}", db.url);
    // PostgreSQL trusts loopback here, so the password is carried but not needed.
    let url = db
        .url
        .replacen("postgres@", &format!("postgres:{DB_PASSWORD}@"), 1);
    // A collector that is not there: exports fail and their errors are logged.
    let dead_collector = format!("http://127.0.0.1:{}", free_port("127.0.0.1"));
    let c = start_nodes(&url, &["127.0.0.119"], |_, spec, _| {
        spec.env.push((
            "SHOAL_TELEMETRY_OTLP_ENDPOINT".into(),
            dead_collector.clone(),
        ));
        spec.env.push((
            "SHOAL_TELEMETRY_OTLP_HEADERS".into(),
            format!("authorization=Bearer%20{OTLP_SECRET}"),
        ));
        spec.extra_toml = "\n[telemetry]\notlp_interval = \"300ms\"\n".into();
    })
    .await;
    let base = c.bases[0].clone();
    let api = Api::login(&base).await;
    let (code, body) = api
        .put("/api/v1/log-level", json!({"level": "debug,sqlx=debug"}))
        .await;
    assert_eq!(code, 200, "{body}");

    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"username": ADMIN, "password": WRONG_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let api_key = api.user_with_api_key("sam").await;
    let (code, s3) = api
        .post("/api/v1/users/sam/credentials", json!({"kind": "s3"}))
        .await;
    assert_eq!(code, 201, "{s3}");
    let s3_secret = s3["secret"].as_str().unwrap().to_string();
    let key_id = s3["key_id"].as_str().unwrap().to_string();
    let (code, rotated) = api
        .post(&format!("/api/v1/credentials/{key_id}/rotate"), json!({}))
        .await;
    assert_eq!(code, 201, "{rotated}");
    let rotated_secret = rotated["secret"].as_str().unwrap().to_string();
    // A failed export is logged (with the collector's address, never the header).
    let failed_export = c.nodes[0]
        .wait_for_log("OTLP", Duration::from_secs(30))
        .await;
    println!("failed export logged as: {failed_export}");

    let mut seen = c.nodes[0].logs().join("\n");
    for path in ["/cluster/status", "/ready", "/health", "/metrics"] {
        let text = reqwest::get(format!("{base}{path}"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        seen.push_str(&text);
    }
    for path in ["/api/v1/status", "/api/v1/config", "/api/v1/overview"] {
        let (code, body) = api.get(path).await;
        assert_eq!(code, 200, "{path}: {body}");
        seen.push_str(&body.to_string());
    }
    assert!(seen.contains("starting shoal node"), "the log was captured");
    for (what, secret) in [
        ("database password", DB_PASSWORD),
        ("cluster PSK", PSK_HEX),
        ("secrets-at-rest key", SECRETS_KEY_HEX),
        ("OTLP header", OTLP_SECRET),
        ("admin password", ADMIN_PASSWORD),
        ("mistyped password", WRONG_PASSWORD),
        ("admin session token", api.token.as_str()),
        ("API key", api_key.as_str()),
        ("S3 secret key", s3_secret.as_str()),
        ("rotated S3 secret key", rotated_secret.as_str()),
    ] {
        assert!(
            !seen.contains(secret),
            "the {what} appears in the node's output"
        );
    }
}

/// Trickles a request head one header line a second; how long until the server hangs up.
async fn trickle_until_closed(addr: &str) -> Duration {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    conn.write_all(b"GET /health HTTP/1.1\r\nhost: slow\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{addr} still holds a slow client after 90 s"
        );
        match tokio::time::timeout(Duration::from_secs(1), conn.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {} // an error response before the close
            Err(_) => {
                if conn.write_all(b"x-slow: 1\r\n").await.is_err() {
                    return started.elapsed();
                }
            }
        }
    }
}

/// Sends a request head of `bytes`; the status line of the answer, if any.
async fn oversize_head(addr: &str, bytes: usize) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /health HTTP/1.1\r\nhost: big\r\nx-big: {}\r\n\r\n",
        "a".repeat(bytes)
    );
    // The server may close before it has read everything.
    let _ = conn.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).to_string();
    text.lines().next().map(str::to_string)
}

/// Every HTTP listener (the admin and health port, a data-plane port) hangs up on a client
/// that trickles its request head, and refuses an oversize head without serving it; the node
/// keeps serving everyone else meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_oversize_clients_are_cut_off_on_every_listener() {
    let db = database().await;
    let ip = "127.0.0.120";
    let (_node, api, base) = sandbox_proxy_node(&db.url, ip, "").await;
    let port = free_port(ip);
    let upstream = ok_upstream().await;
    api.user_with_api_key("slow").await;
    let revision = api
        .http_resource("slowres", &format!("http://{upstream}"), port)
        .await;
    wait_until(
        "the data plane listening",
        Duration::from_secs(30),
        || async {
            let (_, ready) = get_ready(base.clone()).await;
            (ready["data_plane"]["revision"].as_i64() >= Some(revision)).then_some(())
        },
    )
    .await;
    let admin = base.trim_start_matches("http://").to_string();
    let data = format!("{ip}:{port}");
    let (admin_cut, data_cut) =
        tokio::join!(trickle_until_closed(&admin), trickle_until_closed(&data));
    println!(
        "FIGURE slow_client_cut_admin_s {:.0} s\nFIGURE slow_client_cut_data_plane_s {:.0} s",
        admin_cut.as_secs_f64(),
        data_cut.as_secs_f64()
    );
    for addr in [&admin, &data] {
        let status = oversize_head(addr, 256 * 1024).await;
        assert!(
            status.as_deref().is_none_or(|s| s.contains(" 431 ")),
            "{addr}: an oversize head got {status:?}"
        );
    }
    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200, "the node still serves");
}
