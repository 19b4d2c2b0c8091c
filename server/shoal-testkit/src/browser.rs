//! A real browser: Debian's Chromium driven through chromedriver, headless, with a profile of
//! its own; and a page server, so a test's page has an origin of its own (CORS is between
//! origins, and a `data:` page has none).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

use crate::{free_port, wait_until};

/// A chromedriver process on loopback, killed when dropped (also when the test fails) with
/// the Chromium it started: chromedriver leads a process group of its own, which the browser's
/// processes join, and the whole group goes (killing chromedriver alone leaves Chromium
/// running).
pub struct Driver {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver (`CHROMEDRIVER`, default `chromedriver`) and a session of Chromium
/// (`CHROMIUM`, default `/usr/bin/chromium`); keep the driver for as long as the client.
pub async fn browser() -> (Driver, Client) {
    let port = free_port("127.0.0.1");
    let child = Command::new(std::env::var("CHROMEDRIVER").unwrap_or("chromedriver".into()))
        .args([&format!("--port={port}"), "--allowed-ips=127.0.0.1"])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver; scripts/test installs it)");
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        _profile: profile,
    };
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1440,900",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let client = wait_until(
        "chromedriver to accept a session",
        Duration::from_secs(60),
        || {
            let caps = caps.clone();
            let url = url.clone();
            async move {
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&url)
                    .await
                    .ok()
            }
        },
    )
    .await;
    (driver, client)
}

/// Serves `html` at every path of `ip` (a free port), in this test's runtime.
pub async fn serve_page(ip: &str, html: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let page = axum::Router::new().fallback(move || async move { axum::response::Html(html) });
    tokio::spawn(async move { axum::serve(listener, page).await });
    addr
}
