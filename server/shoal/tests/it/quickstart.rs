//! `scripts/quickstart` end to end, in a temporary directory with the binary this suite built:
//! it must leave three ready nodes, a working admin login, a usable `env` file and the S3 demo
//! working as printed (the AWS CLI through Shoal to moto, the sixth read refused), and `down`
//! must stop everything it started.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use shoal_testkit::*;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/quickstart")
}

fn quickstart(state: &Path, args: &[&str]) -> Output {
    Command::new(script())
        .args(args)
        .env("SHOAL_QUICKSTART_DIR", state)
        .env("SHOAL_QUICKSTART_BIN", shoal_bin())
        .env("SHOAL_QUICKSTART_PYTHON", python())
        .output()
        .expect("run scripts/quickstart")
}

/// Runs `down --purge` when the test ends, passed or failed.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = quickstart(self.0, &["down", "--purge"]);
        }
    }
}

fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_up_gives_a_ready_node_and_down_stops_everything() {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    // PostgreSQL runs as `postgres` when the suite runs as root: it must reach the state dir.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("qs");
    let _down = Down(&state);

    let up = quickstart(&state, &["up"]);
    assert!(
        up.status.success(),
        "quickstart up failed:\n{}\n{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let env = parse_env(&std::fs::read_to_string(state.join("env")).unwrap());
    for key in [
        "SHOAL_NODES",
        "SHOAL_CONSOLE_URL",
        "SHOAL_ADMIN_USER",
        "SHOAL_ADMIN_PASSWORD_FILE",
        "SHOAL_DATABASE_URL",
        "SHOAL_S3_ENDPOINT",
        "SHOAL_S3_BUCKET",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
    ] {
        assert!(env.contains_key(key), "{key} missing from env: {env:?}");
    }
    let console = &env["SHOAL_CONSOLE_URL"];
    let nodes: Vec<&str> = env["SHOAL_NODES"].split(' ').collect();
    assert_eq!(nodes.len(), 3, "{env:?}");
    for node in &nodes {
        let (status, body) = get_ready(node.to_string()).await;
        assert_eq!(status, 200, "{node}: {body}");
    }
    // The three nodes form one cluster.
    let url = format!("{console}/cluster/status");
    wait_until("3 alive members", Duration::from_secs(30), || {
        let url = url.clone();
        async move {
            let status: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
            (status["cluster"]["healthy"] == 3).then_some(())
        }
    })
    .await;

    let password = std::fs::read_to_string(&env["SHOAL_ADMIN_PASSWORD_FILE"]).unwrap();
    let login = reqwest::Client::new()
        .post(format!("{console}/api/v1/login"))
        .json(&serde_json::json!({ "username": env["SHOAL_ADMIN_USER"], "password": password.trim() }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 200);
    // The console login, as a browser does it: the form's token and its cookie, then the
    // session cookie opens the instances page, which lists all three nodes alive.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = browser
        .get(format!("{console}/console/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let login_cookie = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let html = page.text().await.unwrap();
    assert!(html.contains("Shoal console"));
    let at = html.find("name=\"_csrf\" value=\"").unwrap() + 20;
    let token = html[at..at + 64].to_string();
    let logged_in = browser
        .post(format!("{console}/console/login"))
        .header("cookie", &login_cookie)
        .form(&[
            ("username", env["SHOAL_ADMIN_USER"].as_str()),
            ("password", password.trim()),
            ("_csrf", token.as_str()),
            ("next", "/console/instances"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(logged_in.status().as_u16(), 303);
    let session = logged_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("shoal_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let instances = browser
        .get(format!("{console}/console/instances"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(instances.status().as_u16(), 200);
    let html = instances.text().await.unwrap();
    assert_eq!(
        html.matches("data-col=\"state\"><span class=\"pill alive\">")
            .count(),
        3,
        "three nodes alive on the console"
    );

    // The demo, as the script prints it: `aws s3` with nothing but the env file.
    let aws = |script: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(". '{}' && {script}", state.join("env").display()))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = aws("aws s3 ls --endpoint-url $SHOAL_S3_ENDPOINT");
    assert!(ok, "aws s3 ls: {stderr}");
    assert!(stdout.contains("sensitive-bucket"), "{stdout}");
    // One GetObject per read (`aws s3 cp` would add a HeadObject, a second access).
    let read = "aws s3api get-object --bucket \"$SHOAL_S3_BUCKET\" --key secret.txt \
                /dev/null --query ContentLength --endpoint-url";
    let endpoints: Vec<String> = env["SHOAL_S3_ENDPOINTS"]
        .split(' ')
        .map(str::to_string)
        .collect();
    assert_eq!(endpoints.len(), 3, "{env:?}");
    for i in 0..5 {
        let (ok, stdout, stderr) = aws(&format!("{read} {}", endpoints[i % 3]));
        assert!(ok, "read {}: {stderr}", i + 1);
        assert_eq!(stdout.trim(), "10", "read {}", i + 1);
    }
    let (ok, _, stderr) = aws(&format!("{read} {}", endpoints[5 % 3]));
    assert!(!ok, "the sixth read must be refused");
    assert!(
        stderr.contains("AccessDenied") || stderr.contains("403"),
        "{stderr}"
    );

    let down = quickstart(&state, &["down", "--purge"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(!state.exists(), "--purge removes the state dir");
    for node in nodes {
        wait_until("node gone", Duration::from_secs(30), || async move {
            (get_ready(node.to_string()).await.0 == 0).then_some(())
        })
        .await;
    }
}
