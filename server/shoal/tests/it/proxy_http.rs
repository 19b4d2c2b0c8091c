//! The HTTP resource kind through real `shoal` processes: API-key identity, the seed policy on
//! cluster-wide counts, streaming bodies, and listeners that follow the control plane. The
//! upstream is a small HTTP server in this test (an echo and a checksum endpoint).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::routing::{any, post};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shoal_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

/// Echoes what arrived; `/api/upload` streams the body through SHA-256 and reports it.
async fn upstream() -> SocketAddr {
    async fn echo(req: Request) -> axum::Json<Value> {
        let h = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        axum::Json(json!({
            "method": req.method().as_str(),
            "uri": req.uri().to_string(),
            "host": h("host"),
            "path_and_query": req.uri().path_and_query().map(|p| p.as_str()),
            "request_id": h("x-request-id"),
            "forwarded_for": h("x-forwarded-for"),
            "api_key": h("x-api-key"),
        }))
    }
    async fn upload(req: Request) -> axum::Json<Value> {
        let mut body = req.into_body().into_data_stream();
        let (mut hash, mut bytes) = (Sha256::new(), 0u64);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.expect("upload stream");
            bytes += chunk.len() as u64;
            hash.update(&chunk);
        }
        axum::Json(json!({"bytes": bytes, "sha256": hex::encode(hash.finalize())}))
    }
    let app = Router::new()
        .route("/api/upload", post(upload))
        .fallback(any(echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Streams `body` to the upstream's checksum endpoint through the data plane; its report.
async fn upload<S>(client: &reqwest::Client, url: &str, key: &str, body: S) -> Value
where
    S: futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static,
{
    let resp = client
        .post(url)
        .header("x-api-key", key)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_resources_identify_decide_stream_and_follow_the_control_plane() {
    let db = database().await;
    let ips = ["127.0.0.91", "127.0.0.92", "127.0.0.93"];
    let (c, apis) = start_ready_cluster(&db.url, &ips).await;
    let upstream = upstream().await;
    let port = free_port("127.0.0.91");

    // A user with an API key, the resource, and the seed policy, unchanged, in strict mode.
    assert_eq!(apis[0].put("/api/v1/users/alice", json!({})).await.0, 200);
    let (code, key) = apis[0]
        .post(
            "/api/v1/users/alice/credentials",
            json!({"kind": "api_key"}),
        )
        .await;
    assert_eq!(code, 201, "{key}");
    let key = key["secret"].as_str().unwrap().to_string();
    let (code, body) = apis[0]
        .put(
            "/api/v1/resources/sensitive-bucket",
            json!({"kind": "http", "upstream": format!("http://{upstream}/api"), "port": port}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let revision = apis[0].put_seed_policy_strict().await;
    let mut nodes = c.nodes;
    for node in &mut nodes {
        let ready = node.wait_data_plane(revision).await;
        assert_eq!(ready["data_plane"]["resources"][0][1], port);
    }
    let url = |i: usize, path: &str| format!("http://{}:{port}{path}", ips[i]);
    let client = reqwest::Client::new();

    // Identity: no key, a wrong key.
    let resp = client.get(url(0, "/x")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-api-key")
    );
    assert!(body["error"]["request_id"].is_string());
    let resp = client
        .get(url(0, "/x"))
        .header("x-api-key", "shoal_nope_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // Oversized headers are refused before anything is counted.
    let resp = client
        .get(url(0, "/x"))
        .header("x-api-key", &key)
        .header("x-padding", "p".repeat(80_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 431);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("proxy.max_header_bytes"),
        "{body}"
    );

    // Five accesses pass, round-robin over the three nodes; the sixth is blocked.
    for i in 0..5 {
        let resp = client
            .get(url(i % 3, &format!("/report?n={i}")))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "request {i}");
        let echo: Value = resp.json().await.unwrap();
        assert_eq!(echo["path_and_query"], format!("/api/report?n={i}"));
        // Origin form with a Host header, as from any HTTP client.
        assert_eq!(echo["uri"], format!("/api/report?n={i}"));
        assert_eq!(echo["host"], upstream.to_string());
        assert!(echo["request_id"].is_string());
        assert_eq!(
            echo["api_key"],
            Value::Null,
            "the caller's key stays with Shoal"
        );
        assert_eq!(echo["forwarded_for"], "127.0.0.1");
    }
    let resp = client
        .get(url(5 % 3, "/report"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let blocked: Value = resp.json().await.unwrap();
    assert_eq!(
        blocked["error"]["type"], "block_with_formal_message",
        "{blocked}"
    );
    assert_eq!(blocked["error"]["policy"], "seed");

    // Another user is not affected; a large upload streams through without being buffered.
    let bob = apis[0].user_with_api_key("bob").await;
    nodes[1].wait_data_plane(head_revision(&db.url).await).await;
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 1024;
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    let mut expected = Sha256::new();
    for _ in 0..CHUNKS {
        expected.update(&chunk);
    }
    let stream = futures_util::stream::iter(
        (0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let pid = nodes[1].pid();
    let before = rss_kib(pid);
    // The node's RSS, sampled all through the upload: its peak is what must stay flat.
    let uploading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = spawn({
        let uploading = uploading.clone();
        async move {
            let mut peak = 0;
            while uploading.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak.max(rss_kib(pid))
        }
    });
    let got = upload(&client, &url(1, "/upload"), &bob, stream).await;
    assert_eq!(got["bytes"], (CHUNK * CHUNKS) as u64);
    assert_eq!(got["sha256"], hex::encode(expected.finalize()));
    uploading.store(false, std::sync::atomic::Ordering::Relaxed);
    let grown_mib = sampler.await.unwrap().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "RSS peaked {grown_mib} MiB above its start during a 1 GiB upload"
    );

    // Removing the resource closes its port on every node.
    let (code, _) = apis[0].delete("/api/v1/resources/sensitive-bucket").await;
    assert_eq!(code, 200);
    for ip in ips {
        wait_until("port closed", WAIT, || async move {
            tokio::net::TcpStream::connect((ip, port))
                .await
                .is_err()
                .then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_or_missing_upstreams_and_failing_policies_get_clear_refusals() {
    let db = database().await;
    let ip = "127.0.0.94";
    let (mut node, api, _) = start_proxy_node(&db.url, ip, "upstream_timeout = \"500ms\"\n").await;
    // An upstream that accepts connections and never answers, and a port nobody listens on.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_addr = hang.local_addr().unwrap();
    spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = hang.accept().await {
            held.push(conn);
        }
    });
    let refused = free_port("127.0.0.1");
    let key = api.user_with_api_key("dan").await;
    let (hang_port, refused_port, echo_port) = (free_port(ip), free_port(ip), free_port(ip));
    let echo = upstream().await;
    api.http_resource("echo", &format!("http://{echo}/api"), echo_port)
        .await;
    api.http_resource("hangs", &format!("http://{hang_addr}"), hang_port)
        .await;
    let head = api
        .http_resource("gone", &format!("http://127.0.0.1:{refused}"), refused_port)
        .await;
    node.wait_data_plane(head).await;
    let client = reqwest::Client::new();
    let get = |port: u16| {
        client
            .get(format!("http://{ip}:{port}/x"))
            .header("x-api-key", &key)
            .send()
    };
    // An upload slower than the upstream timeout is not cut off while it makes progress:
    // the timeout runs from the last byte sent (six 1 KiB pieces, 200 ms apart, 500 ms limit).
    let pieces = futures_util::stream::unfold(0, |i| async move {
        if i == 6 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        Some((Ok::<_, std::io::Error>(vec![b'x'; 1024]), i + 1))
    });
    let got = upload(
        &client,
        &format!("http://{ip}:{echo_port}/upload"),
        &key,
        pieces,
    )
    .await;
    assert_eq!(got["bytes"], 6 * 1024);

    let resp = get(hang_port).await.unwrap();
    assert_eq!(resp.status().as_u16(), 504);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"]["message"], "the upstream did not answer in time",
        "{body}"
    );
    node.wait_for_log("upstream did not answer within 500 ms", WAIT)
        .await;
    let resp = get(refused_port).await.unwrap();
    assert_eq!(resp.status().as_u16(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream");
    assert!(body["error"]["request_id"].is_string());

    // A policy whose result is not an allow/block object fails closed, naming itself.
    let (code, body) = api
        .put(
            "/api/v1/policies/odd",
            json!({"rego": "package odd\npre_request := 42\n"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    node.wait_data_plane(body["revision"].as_i64().unwrap())
        .await;
    let resp = get(refused_port).await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "policy_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("odd"));
    let (_, ready) = node.ready().await;
    assert!(ready["data_plane"]["policy_errors"].as_u64().unwrap() >= 1);
    // The log line is read from the node's output by another thread: wait for it.
    node.wait_for_log("request refused (fail closed)", WAIT)
        .await;

    // The same policy set to fail open is skipped: the request goes on (to the missing
    // upstream, hence 502), and the failure is still logged.
    let (code, body) = api
        .put(
            "/api/v1/policies/odd",
            json!({"rego": "package odd\npre_request := 42\n", "on_error": "allow"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    node.wait_data_plane(body["revision"].as_i64().unwrap())
        .await;
    assert_eq!(get(refused_port).await.unwrap().status().as_u16(), 502);
    node.wait_for_log("policy skipped (on_error = allow)", WAIT)
        .await;
}

/// A CA and a certificate it signed for 127.0.0.1, made with the `openssl` command.
fn certificates(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, Vec<u8>, Vec<u8>) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian's openssl package)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let f = |suffix: &str| format!("{name}-{suffix}");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &f("ca.key"),
        "-out",
        &f("ca.pem"),
        "-days",
        "2",
        "-subj",
        "/CN=shoal test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &f("server.key"),
        "-out",
        &f("server.csr"),
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join(f("ext")), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &f("server.csr"),
        "-CA",
        &f("ca.pem"),
        "-CAkey",
        &f("ca.key"),
        "-CAcreateserial",
        "-out",
        &f("server.pem"),
        "-days",
        "2",
        "-extfile",
        &f("ext"),
    ]);
    (
        dir.join(f("ca.pem")),
        std::fs::read(dir.join(f("server.pem"))).unwrap(),
        std::fs::read(dir.join(f("server.key"))).unwrap(),
    )
}

/// An HTTPS upstream (rustls) answering every request with its path.
async fn tls_upstream(cert_pem: &[u8], key_pem: &[u8]) -> SocketAddr {
    use rustls_pki_types::pem::PemObject as _;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|req: hyper::Request<_>| async move {
                    let body = format!("tls {}", req.uri().path());
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_against_the_operators_ca() {
    let db = database().await;
    let certs = tempfile::tempdir().unwrap();
    let (ca_file, cert, key) = certificates(certs.path(), "trusted");
    let (_, other_cert, other_key) = certificates(certs.path(), "untrusted");
    let ip = "127.0.0.95";
    let ca = ca_file.display().to_string();
    let (mut node, api, _) =
        start_proxy_node(&db.url, ip, &format!("upstream_ca_file = \"{ca}\"\n")).await;
    let key_value = api.user_with_api_key("tess").await;
    let (trusted, untrusted) = (
        tls_upstream(&cert, &key).await,
        tls_upstream(&other_cert, &other_key).await,
    );
    let (port, bad_port) = (free_port(ip), free_port(ip));
    api.http_resource("secure", &format!("https://{trusted}/api"), port)
        .await;
    let head = api
        .http_resource("impostor", &format!("https://{untrusted}/api"), bad_port)
        .await;
    node.wait_data_plane(head).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let resp = client
            .get(format!("http://{ip}:{port}/report"))
            .header("x-api-key", &key_value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.text().await.unwrap(), "tls /api/report");
    }
    // A certificate from a CA nobody configured is refused: 502, saying why.
    let resp = client
        .get(format!("http://{ip}:{bad_port}/report"))
        .header("x-api-key", &key_value)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 502);
    let body: Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    // The caller learns that the upstream failed, not the upstream's address or TLS details;
    // the log has those under the request id.
    assert!(!message.contains("127.0.0.1"), "{message}");
    let request_id = body["error"]["request_id"].as_str().unwrap().to_string();
    let logged = wait_until("the TLS failure in the log", WAIT, || {
        let lines = node.logs();
        let request_id = request_id.clone();
        async move {
            lines
                .into_iter()
                .find(|l| l.contains(&request_id) && l.contains("TLS"))
        }
    })
    .await;
    assert!(logged.to_lowercase().contains("certificate"), "{logged}");
}

/// A node holds at most `proxy.max_connections` client connections on its resource ports:
/// one more is answered 503 and closed, counted in `/metrics` with its reason, and a place
/// freed is taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_counted_and_let_in_once_a_place_frees() {
    let db = database().await;
    let ip = "127.0.0.156";
    let (_sandbox, api, base) = sandbox_proxy_node(&db.url, ip, "max_connections = 3\n").await;
    let node = &_sandbox.nodes[0];
    let key = api.user_with_api_key("ivy").await;
    let port = free_port(ip);
    let echo = upstream().await;
    let head = api
        .http_resource("echo", &format!("http://{echo}/api"), port)
        .await;
    node.wait_data_plane(head).await;
    // A series by name and one of its labels (the exporter adds its own labels).
    let metric = |name: &'static str, label: &'static str| {
        let base = base.clone();
        async move {
            let text = reqwest::get(format!("{base}/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.lines()
                .find(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(label))
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        }
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect((ip, port)).await.unwrap());
    }
    wait_until("three connections open", WAIT, || async {
        (metric("shoal_proxy_connections_open", "").await? == 3).then_some(())
    })
    .await;
    let client = reqwest::Client::new();
    let refused = client
        .get(format!("http://{ip}:{port}/x"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let text = refused.text().await.unwrap();
    assert!(text.contains("maximum of 3 connections"), "{text}");
    wait_until("the refusal counted", WAIT, || async {
        let refused = metric("shoal_proxy_connections_refused_total", "reason=\"limit\"").await?;
        (refused == 1).then_some(())
    })
    .await;
    drop(held);
    wait_until("a freed place taken", WAIT, || async {
        let answer = client
            .get(format!("http://{ip}:{port}/x"))
            .header("x-api-key", &key)
            .send()
            .await
            .ok()?;
        (answer.status().as_u16() == 200).then_some(())
    })
    .await;
}
