//! The web console in a real browser (Debian's Chromium driven through chromedriver) against
//! a real three-node cluster and PostgreSQL: sessions that follow the operator across nodes,
//! live membership, policy editing with compile errors, policy trials at both stages with the
//! node's data documents, live counters (byte counters in binary units), data documents,
//! CSRF, logout everywhere, accessibility (axe-core) and keyboard navigation. Screenshots of
//! the main pages are written to `SHOAL_SCREENSHOT_DIR` (docs/img when refreshing the README's
//! pictures).

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::json;
use shoal_testkit::*;

const WAIT: Duration = Duration::from_secs(60);
const VERSION: &str = env!("CARGO_PKG_VERSION");

async fn text(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

/// Polls the page (without reloading it) until the element's text satisfies `accept`.
async fn wait_text(c: &Client, css: &str, what: &str, accept: impl Fn(&str) -> bool) -> String {
    wait_until(what, WAIT, || async {
        text(c, css).await.filter(|t| accept(t))
    })
    .await
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

/// Sets a textarea's value directly (send_keys would be slow and auto-indent nothing, but
/// typing a whole policy key by key takes seconds).
async fn set_value(c: &Client, css: &str, value: &str) {
    c.execute(
        "document.querySelector(arguments[0]).value = arguments[1];",
        vec![json!(css), json!(value)],
    )
    .await
    .unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// A relative `SHOAL_SCREENSHOT_DIR` is taken from the repository root (tests run in their
/// crate's directory).
fn screenshot_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::env::var_os("SHOAL_SCREENSHOT_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"),
        |dir| root.join(dir),
    )
}

async fn screenshot(c: &Client, name: &str) {
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(dir.join(format!("console-{name}.png")), png).unwrap();
}

fn axe_source() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../web/e2e/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scripts/test installs it with npm ci --prefix web/e2e)",
            path.display()
        )
    })
}

/// Runs axe-core's WCAG 2 A/AA rules (labels, names, contrast, landmarks...) on the page and
/// fails with the violations listed.
async fn assert_accessible(c: &Client, axe: &str, page: &str) {
    c.execute(axe, vec![]).await.unwrap();
    let result = c
        .execute(
            "return axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}})
               .then(r => r.violations.map(v => ({id: v.id, impact: v.impact,
                 nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(result, json!([]), "accessibility violations on {page}");
}

/// The console session cookie of the browser's current site.
async fn session_cookie(c: &Client) -> fantoccini::cookies::Cookie<'static> {
    c.get_all_cookies()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name() == "shoal_session")
        .expect("a shoal_session cookie after login")
}

async fn log_in(c: &Client, base: &str) {
    c.goto(&format!("{base}/console/")).await.unwrap();
    wait_text(c, "h1", "the login page", |t| t == "Shoal console").await;
    fill(c, "#username", ADMIN).await;
    fill(c, "#password", ADMIN_PASSWORD).await;
    click(c, "button[type=submit]").await;
    wait_text(c, "main h1", "the overview after login", |t| {
        t == "Overview"
    })
    .await;
}

/// A plain HTTP client that does not follow redirects, to see where the console sends it.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn console_status(base: &str, cookie: &str) -> (u16, String) {
    let resp = raw_client()
        .get(format!("{base}/console/instances"))
        .header("cookie", format!("shoal_session={cookie}"))
        .send()
        .await
        .unwrap();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (resp.status().as_u16(), location)
}

const BROKEN_POLICY: &str = "package console.e2e\n\ndefault pre_request := {\"action\": \"allow\"}\n\npre_request := {\"action\": \"block\" if {\n    input.bucket.access_count.last_minute > 10\n}\n";
const FIXED_POLICY: &str = "package console.e2e\n\ndefault pre_request := {\"action\": \"allow\"}\n\npre_request := {\"action\": \"block\", \"type\": \"over_limit\", \"message\": \"over ten a minute\"} if {\n    input.bucket.access_count.last_minute > 10\n}\n";
/// Reads a data document at the request stage and the upstream's answer at the response stage.
const TRIAL_POLICY: &str = r#"package console.trial

import rego.v1

pre_request := {"action": "block", "type": "not_allowlisted"} if not input.user.id in data.allowlist.users

pre_response := {"action": "block", "type": "too_large", "message": "over 1 KiB"} if input.response.size > 1024
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser_across_a_three_node_cluster() {
    let pg = TestPostgres::start();
    let url = pg.create_database().await;
    // Suspicion lasts at least 12 probe intervals (2.4 s): long enough for a page refreshed
    // every second to show it before the member is declared dead.
    let mut cluster = start_nodes(
        &url,
        &["127.0.0.71", "127.0.0.72", "127.0.0.73"],
        |_, spec, all| {
            spec.cluster_toml = "suspicion_multiplier = 12\n".into();
            spec.extra_toml = format!(
                "{}\n[proxy]\naddress = \"{}\"\n",
                static_peers(all),
                spec.ip
            );
        },
    )
    .await;
    let mut apis = Vec::new();
    for (node, base) in cluster.nodes.iter_mut().zip(&cluster.bases) {
        node.wait_ready_where("ready", WAIT, |s, _| s == 200).await;
        apis.push(Api::login(base).await);
    }
    let (a, b, c_base) = (
        cluster.bases[0].clone(),
        cluster.bases[1].clone(),
        cluster.bases[2].clone(),
    );
    wait_until("all three nodes to see each other", WAIT, || async {
        let (_, m) = apis[1].get("/api/v1/cluster/members").await;
        (m["by_state"]["alive"] == 3).then_some(())
    })
    .await;
    let (_driver, c) = browser().await;
    let axe = axe_source();

    // The login page: screenshot and accessibility before logging in.
    c.goto(&format!("{a}/console/login")).await.unwrap();
    wait_text(&c, "h1", "the login page", |t| t == "Shoal console").await;
    assert_accessible(&c, &axe, "login").await;
    screenshot(&c, "login").await;

    // Log in on node A; the overview is live.
    log_in(&c, &a).await;
    wait_text(&c, "#member-count", "three members on the overview", |t| {
        t == "3"
    })
    .await;
    assert_accessible(&c, &axe, "overview").await;
    screenshot(&c, "overview").await;

    // Keyboard: the first Tab reaches the skip link, Enter on it focuses the main content.
    c.execute(
        "document.activeElement.blur(); window.scrollTo(0,0);",
        vec![],
    )
    .await
    .unwrap();
    let body = c.find(Locator::Css("body")).await.unwrap();
    body.send_keys(&fantoccini::key::Key::Tab.to_string())
        .await
        .unwrap();
    let focused = c.active_element().await.unwrap();
    assert_eq!(focused.text().await.unwrap(), "Skip to content");
    focused
        .send_keys(&fantoccini::key::Key::Enter.to_string())
        .await
        .unwrap();
    let focused = c.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("main"));

    // The same session cookie on node B: no second login, all three nodes with their version.
    let cookie = session_cookie(&c).await;
    let token = cookie.value().to_string();
    c.goto(&format!("{b}/console/static/console.css"))
        .await
        .unwrap();
    // Node A's cookie as the browser holds it (HttpOnly, SameSite=Strict), for node B's host.
    let mut moved = cookie.clone();
    moved.set_domain("127.0.0.72");
    c.add_cookie(moved).await.unwrap();
    c.goto(&format!("{b}/console/instances")).await.unwrap();
    wait_text(&c, "main h1", "the instances page on node B", |t| {
        t == "Connected instances"
    })
    .await;
    for name in ["n0", "n1", "n2"] {
        let row = format!("tr[data-node={name}]");
        wait_text(&c, &format!("{row} td[data-col=state]"), name, |t| {
            t == "alive"
        })
        .await;
        assert_eq!(
            text(&c, &format!("{row} td[data-col=version]"))
                .await
                .unwrap(),
            VERSION
        );
    }
    assert!(
        text(&c, "tr[data-node=n1] th")
            .await
            .unwrap()
            .contains("this node"),
        "node B marks itself"
    );
    assert_accessible(&c, &axe, "instances").await;
    screenshot(&c, "instances").await;

    // A policy with a syntax error is refused with the compiler's message and line; fixed,
    // it is stored and every node applies it.
    c.goto(&format!("{a}/console/policies/new")).await.unwrap();
    fill(&c, "#name", "console-e2e").await;
    set_value(&c, "#rego", BROKEN_POLICY).await;
    click(&c, "#policy-form button[type=submit]").await;
    let error = wait_text(&c, "#form-error", "the compile error", |t| !t.is_empty()).await;
    assert!(error.contains("does not compile"), "{error}");
    assert!(
        error.contains("console-e2e.rego:5:"),
        "the error points at line 5: {error}"
    );
    assert_eq!(
        c.find(Locator::Css("#rego"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some(BROKEN_POLICY),
        "the submitted text is kept for fixing"
    );
    assert_accessible(&c, &axe, "policy editor with an error").await;
    screenshot(&c, "policy-error").await;
    for api in &apis {
        assert!(
            !api.policies_in_force()
                .await
                .contains(&"console-e2e".into())
        );
    }
    // "Test this policy" evaluates the fixed text on the sample input (12 a minute > 10).
    set_value(&c, "#rego", FIXED_POLICY).await;
    click(&c, ".trial button[type=submit]").await;
    let verdict = wait_text(&c, "#trial-result .verdict", "the trial verdict", |t| {
        !t.is_empty()
    })
    .await;
    assert!(verdict.starts_with("block"), "{verdict}");
    assert!(verdict.contains("over ten a minute"), "{verdict}");
    // At the response stage the policy, which has no pre_response, says so: not an allow.
    set_value(&c, "#trial-stage", "response").await;
    click(&c, ".trial button[type=submit]").await;
    let verdict = wait_text(
        &c,
        "#trial-result .verdict[data-stage=response]",
        "the response stage's verdict",
        |t| !t.is_empty(),
    )
    .await;
    assert!(verdict.starts_with("no rule for this stage"), "{verdict}");
    assert!(verdict.contains("no pre_response rule"), "{verdict}");
    assert_accessible(&c, &axe, "policy trial without a rule for the stage").await;
    click(&c, "#policy-form button[type=submit]").await;
    wait_text(&c, "main h1", "the policy list after saving", |t| {
        t == "Policies"
    })
    .await;
    let notice = text(&c, ".notice").await.unwrap();
    assert!(
        notice.contains("Saved as configuration revision"),
        "{notice}"
    );
    for api in &apis {
        wait_until("the fixed policy in force on every node", WAIT, || async {
            api.policies_in_force()
                .await
                .contains(&"console-e2e".to_string())
                .then_some(())
        })
        .await;
    }
    c.goto(&format!("{b}/console/policies")).await.unwrap();
    assert_eq!(
        text(&c, "tr[data-policy=console-e2e] td[data-col=in-force]")
            .await
            .unwrap(),
        "in force",
        "node B's console shows the policy in force"
    );
    screenshot(&c, "policies").await;

    // Traffic through nodes A and B: the counter rises on A's page, with both contributions.
    let key = apis[0].user_with_api_key("console-user").await;
    let upstream = ok_upstream().await;
    let port = free_port("127.0.0.71");
    let revision = apis[0]
        .http_resource("console-echo", &format!("http://{upstream}"), port)
        .await;
    for node in &mut cluster.nodes {
        node.wait_data_plane(revision).await;
    }
    c.goto(&format!("{a}/console/counters?q=console-user"))
        .await
        .unwrap();
    wait_text(&c, "main h1", "the counters page", |t| t == "Rate counters").await;
    let http = reqwest::Client::new();
    for (ip, n) in [("127.0.0.71", 3), ("127.0.0.72", 2)] {
        for _ in 0..n {
            let resp = http
                .get(format!("http://{ip}:{port}/hello"))
                .header("x-api-key", &key)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200);
        }
    }
    let row = "tr[data-subject=console-user]";
    wait_text(
        &c,
        &format!("{row} td[data-col=total-0]"),
        "a count of 5",
        |t| t == "5",
    )
    .await;
    wait_text(
        &c,
        &format!("{row} li[data-node=n0] .count"),
        "n0's 3",
        |t| t == "3",
    )
    .await;
    wait_text(
        &c,
        &format!("{row} li[data-node=n1] .count"),
        "n1's 2",
        |t| t == "2",
    )
    .await;
    assert_accessible(&c, &axe, "counters").await;
    screenshot(&c, "counters").await;
    // Byte counters (kept when a policy reads them; counted here through the state API) show
    // their totals in binary units too, and the filter finds them by action.
    for _ in 0..3 {
        let (code, body) = apis[0]
            .post(
                "/api/v1/state/increment",
                json!({"subject": "console-user", "resource": "console-echo",
                       "action": "bytes_read", "by": 1_000_000}),
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }
    c.goto(&format!("{a}/console/counters?q=bytes_read"))
        .await
        .unwrap();
    wait_text(
        &c,
        "tr[data-subject=console-user][data-action=bytes_read] td[data-col=total-0] .human",
        "3,000,000 bytes read in MiB",
        |t| t == "2.9 MiB",
    )
    .await;
    assert!(
        c.find(Locator::Css("#counters tr[data-action=access]"))
            .await
            .is_err(),
        "the filter on the action leaves the request counters out"
    );
    let summary = text(&c, "#counter-summary").await.unwrap();
    assert!(
        summary.contains("bytes_read: last_minute 2.9 MiB"),
        "{summary}"
    );

    // A form post without the CSRF token is refused, and changes nothing.
    let status = c
        .execute(
            "return fetch('/console/policies/console-e2e/delete', {method: 'POST',
               headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'x=1'})
               .then(r => r.status);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403));
    assert!(
        apis[0]
            .policies_in_force()
            .await
            .contains(&"console-e2e".to_string())
    );

    // Data documents: one made on the console is listed with its size; a bad one is refused
    // with the store's reason next to the form, the text kept, and nothing stored.
    c.goto(&format!("{a}/console/data")).await.unwrap();
    wait_text(&c, "main h1", "the data documents page", |t| {
        t == "Data documents"
    })
    .await;
    assert_eq!(
        text(&c, "nav a[aria-current=page]").await.unwrap(),
        "Data documents"
    );
    click(&c, "main a.button.primary").await;
    wait_text(&c, "main h1", "the new document form", |t| {
        t == "New data document"
    })
    .await;
    fill(&c, "#name", "allowlist").await;
    set_value(&c, "#document", "{\n  \"users\": [\"alice\"]\n}").await;
    fill(&c, "#description", "who may read").await;
    click(&c, "#document-form button[type=submit]").await;
    let row = "tr[data-document=allowlist]";
    wait_text(
        &c,
        &format!("{row} td[data-col=size]"),
        "the listed size",
        |t| t == "19 B",
    )
    .await;
    assert!(
        text(&c, row).await.unwrap().contains("who may read"),
        "the description is listed"
    );
    let saved = c
        .current_url()
        .await
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "saved")
        .and_then(|(_, v)| v.parse::<i64>().ok())
        .expect("the saved revision in the address");
    assert_accessible(&c, &axe, "data documents").await;
    screenshot(&c, "data").await;
    for (name, document, reason) in [
        (
            "console",
            "{}".to_string(),
            "policy \"console-e2e\" has its package under data.console",
        ),
        (
            "huge",
            format!("\"{}\"", "x".repeat(1024 * 1024)),
            "1048578 bytes as JSON; the limit is 1048576",
        ),
    ] {
        c.goto(&format!("{a}/console/data/new")).await.unwrap();
        fill(&c, "#name", name).await;
        set_value(&c, "#document", &document).await;
        click(&c, "#document-form button[type=submit]").await;
        let error = wait_text(&c, "#form-error", reason, |t| !t.is_empty()).await;
        assert!(error.contains(reason), "{error}");
        let kept = c
            .find(Locator::Css("#document"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap();
        assert_eq!(kept.as_deref(), Some(document.as_str()), "{name} kept");
        if name == "console" {
            assert_accessible(&c, &axe, "data document refused").await;
        }
    }
    let (_, listed) = apis[0].get("/api/v1/data").await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, ["allowlist"], "nothing refused was stored");
    assert!(listed[0]["updated_at"].is_string(), "{listed}");

    // "Test this policy" reads the documents of the revision this node enforces: alice is
    // allowlisted, so the request stage allows; the response stage sees the large answer.
    let (code, body) = apis[0]
        .get(&format!(
            "/api/v1/config/wait?revision={saved}&timeout_ms=60000"
        ))
        .await;
    assert_eq!(code, 200, "node A applies the document's revision: {body}");
    c.goto(&format!("{a}/console/policies/new")).await.unwrap();
    set_value(&c, "#rego", TRIAL_POLICY).await;
    for (stage, expected) in [("request", "allow"), ("response", "block")] {
        set_value(&c, "#trial-stage", stage).await;
        click(&c, ".trial button[type=submit]").await;
        let verdict = wait_text(
            &c,
            &format!("#trial-result .verdict[data-stage={stage}]"),
            stage,
            |t| !t.is_empty(),
        )
        .await;
        assert!(verdict.starts_with(expected), "{stage}: {verdict}");
    }
    let verdict = text(&c, "#trial-result .verdict").await.unwrap();
    assert!(verdict.contains("too_large"), "{verdict}");
    c.execute("document.querySelector('.trial').scrollIntoView();", vec![])
        .await
        .unwrap();
    screenshot(&c, "policy-trial").await;

    // The other main pages render and pass the checker.
    for (path, name) in [
        ("/console/users", "users"),
        ("/console/admins", "admins"),
        ("/console/audit?action=policy", "audit"),
        ("/console/resources", "resources"),
    ] {
        c.goto(&format!("{a}{path}")).await.unwrap();
        wait_text(&c, "main h1", name, |t| !t.is_empty()).await;
        assert_accessible(&c, &axe, name).await;
        screenshot(&c, name).await;
    }
    c.goto(&format!("{a}/console/audit?action=policy.put"))
        .await
        .unwrap();
    let audit_page = text(&c, "#audit").await.unwrap();
    assert!(
        audit_page.contains("admin:ops") && audit_page.contains("console-e2e"),
        "the console's change is audited with the admin as actor: {audit_page}"
    );

    // Logging out on A refuses the session on every node at once.
    c.goto(&format!("{a}/console/")).await.unwrap();
    click(&c, ".logout button").await;
    wait_text(&c, "h1", "the login page after logout", |t| {
        t == "Shoal console"
    })
    .await;
    for base in [&a, &b, &c_base] {
        let (code, location) = console_status(base, &token).await;
        assert_eq!(code, 303, "{base}");
        assert!(location.starts_with("/console/login"), "{base}: {location}");
        let api = raw_client()
            .get(format!("{base}/api/v1/status"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(api.status().as_u16(), 401, "{base}");
    }

    // Log in again on B, keep the instances page open, kill node C: it turns suspect, then
    // dead, without the page being reloaded.
    log_in(&c, &b).await;
    c.goto(&format!("{b}/console/instances")).await.unwrap();
    wait_text(&c, "tr[data-node=n2] td[data-col=state]", "n2 alive", |t| {
        t == "alive"
    })
    .await;
    c.execute("window.shoalMarker = 'same page';", vec![])
        .await
        .unwrap();
    cluster.nodes[2].signal("KILL");
    let state = "tr[data-node=n2] td[data-col=state]";
    wait_text(&c, state, "n2 suspect", |t| t == "suspect").await;
    screenshot(&c, "instances-suspect").await;
    wait_text(&c, state, "n2 dead", |t| t == "dead").await;
    let marker = c
        .execute("return window.shoalMarker;", vec![])
        .await
        .unwrap();
    assert_eq!(marker, json!("same page"), "the page was not reloaded");
    c.goto(&format!("{b}/console/events")).await.unwrap();
    for kind in ["suspect", "dead"] {
        wait_text(
            &c,
            &format!("tr[data-node=n2][data-kind={kind}] td:nth-child(3)"),
            kind,
            |t| t == kind,
        )
        .await;
    }
    assert_accessible(&c, &axe, "events").await;
    screenshot(&c, "events").await;
    let (_, events) = apis[1].get("/api/v1/cluster/events").await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"] == "n2")
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"suspect") && kinds.contains(&"dead"),
        "{kinds:?}"
    );
    c.close().await.unwrap();
}

/// Everything hostile a console form or cookie can carry, over plain HTTP: each is refused
/// with a message that says why, or rendered harmless, and nothing is half-applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_refuses_bad_input_and_escapes_what_it_shows() {
    let pg = TestPostgres::start();
    let url = pg.create_database().await;
    let cluster = Sandbox::cluster(&url, &["127.0.0.74"]).await;
    let (base, apis) = (cluster.nodes[0].base_url(), &cluster.apis);
    let http = raw_client();

    // Security headers and cookie flags on the login page.
    let login = http
        .get(format!("{base}/console/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 200);
    let h = login.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let set_cookie = h["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let login_csrf = set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();

    let post_login = |username: &str, password: &str, csrf: &str, next: &str| {
        http.post(format!("{base}/console/login"))
            .header("cookie", format!("shoal_login_csrf={login_csrf}"))
            .form(&[
                ("username", username),
                ("password", password),
                ("_csrf", csrf),
                ("next", next),
            ])
            .send()
    };
    // A login form not sent by this site (no matching token) is refused.
    let forged = post_login(ADMIN, ADMIN_PASSWORD, "forged", "/console/")
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    // An open redirect through `next` is not followed.
    let ok = post_login(ADMIN, ADMIN_PASSWORD, &login_csrf, "//evil.example/")
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 303);
    assert_eq!(ok.headers()["location"], "/console/");
    let session = ok
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("shoal_session="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_string();
    let cookie = format!("shoal_session={session}");
    // Session fixation: a session cookie planted before the login is never adopted; the
    // login issues a fresh token and the planted one stays worthless.
    let planted = "planted-by-attacker-0123456789abcdef";
    let fixed = http
        .post(format!("{base}/console/login"))
        .header(
            "cookie",
            format!("shoal_login_csrf={login_csrf}; shoal_session={planted}"),
        )
        .form(&[
            ("username", ADMIN),
            ("password", ADMIN_PASSWORD),
            ("_csrf", login_csrf.as_str()),
            ("next", "/console/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(fixed.status().as_u16(), 303);
    let issued = fixed
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("shoal_session="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_string();
    assert_ne!(issued, planted, "the planted session id was adopted");
    let with_planted = http
        .get(format!("{base}/console/"))
        .header("cookie", format!("shoal_session={planted}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        with_planted.status().as_u16(),
        303,
        "the planted id is not a session"
    );
    let page = |path: String| {
        http.get(format!("{base}{path}"))
            .header("cookie", &cookie)
            .send()
    };
    let csrf = {
        let html = page("/console/users".into())
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let at = html.find("name=\"_csrf\" value=\"").unwrap() + 20;
        html[at..at + 64].to_string()
    };
    let post = |path: &str, form: Vec<(&str, String)>| {
        http.post(format!("{base}{path}"))
            .header("cookie", &cookie)
            .form(&form)
            .send()
    };

    // CSRF: missing or wrong token is refused and nothing changes.
    for token in [None, Some("0".repeat(64))] {
        let mut form = vec![("name", "csrf-victim".to_string())];
        if let Some(t) = token {
            form.push(("_csrf", t));
        }
        let r = post("/console/users", form).await.unwrap();
        assert_eq!(r.status().as_u16(), 403);
        assert!(r.text().await.unwrap().contains("CSRF token"));
    }
    let (_, users) = apis[0].get("/api/v1/users").await;
    assert_eq!(users, json!([]), "nothing was created");

    // Script and SQL metacharacters in every text field come back escaped, stored verbatim.
    let hostile = "<script>alert(1)</script><img src=x onerror=alert(2)> '; DROP TABLE users; --";
    let r = post(
        "/console/users",
        vec![
            ("_csrf", csrf.clone()),
            ("name", "mallory".into()),
            ("description", hostile.into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let r = post(
        "/console/policies",
        vec![
            ("_csrf", csrf.clone()),
            ("creating", "true".into()),
            ("name", "hostile".into()),
            ("rego", FIXED_POLICY.into()),
            ("enforcement", "eventual".into()),
            ("on_error", "block".into()),
            ("on_unreachable", "deny".into()),
            ("enabled", "on".into()),
            ("description", hostile.into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let (_, stored) = apis[0].get("/api/v1/policies/hostile").await;
    assert_eq!(stored["on_unreachable"], "deny", "{stored}");
    let document = |name: &str, document: &str, description: &str| {
        vec![
            ("_csrf", csrf.clone()),
            ("creating", "true".into()),
            ("name", name.into()),
            ("document", document.into()),
            ("description", description.into()),
        ]
    };
    let r = post("/console/data", document("tiers", "{\"gold\": 3}", hostile))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    for path in [
        "/console/users",
        "/console/policies",
        "/console/data",
        "/console/audit",
    ] {
        let html = page(path.into()).await.unwrap().text().await.unwrap();
        assert!(!html.contains("<script>alert"), "{path} shows a raw script");
        assert!(!html.contains("<img src=x"), "{path} shows a raw img");
        if path != "/console/audit" {
            assert!(
                html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
                "{path}: escaped text"
            );
        }
    }
    let (_, users) = apis[0].get("/api/v1/users").await;
    assert_eq!(users[0]["description"], hostile, "stored verbatim");
    // A data document that exists already, is not JSON, or is badly named comes back with
    // the reason, and nothing changes; the delete form deletes.
    for (name, body, reason) in [
        ("tiers", "{\"gold\": 4}", "already exists"),
        ("broken", "{\"users\": [", "not valid JSON"),
        ("Bad-Name", "{}", "lower-case letters"),
    ] {
        let r = post("/console/data", document(name, body, ""))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 422, "{name}");
        let html = r.text().await.unwrap();
        assert!(
            html.contains("Not saved.") && html.contains(reason),
            "{name}: {html}"
        );
    }
    let (_, listed) = apis[0].get("/api/v1/data").await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["document"], json!({"gold": 3}), "unchanged");
    let r = post("/console/data/tiers/delete", vec![("_csrf", csrf.clone())])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let (_, listed) = apis[0].get("/api/v1/data").await;
    assert_eq!(listed, json!([]), "deleted");
    // Switches post the state wanted, so sending one twice (a double click) keeps it.
    for _ in 0..2 {
        let r = post(
            "/console/users/mallory/enabled",
            vec![("_csrf", csrf.clone()), ("enabled", "false".into())],
        )
        .await
        .unwrap();
        assert_eq!(r.status().as_u16(), 303);
        let (_, users) = apis[0].get("/api/v1/users").await;
        assert_eq!(users[0]["enabled"], false);
    }
    let r = post(
        "/console/users/mallory/enabled",
        vec![("_csrf", csrf.clone()), ("enabled", "maybe".into())],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("enabled") && text.contains("`true` or `false`"),
        "{text}"
    );
    // The API's answers carry the same protective headers as the pages.
    let api_resp = http
        .get(format!("{base}/api/v1/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(api_resp.status().as_u16(), 401);
    assert_eq!(api_resp.headers()["x-content-type-options"], "nosniff");
    // A policy name with markup is refused with the rule it breaks, and the form comes back.
    let r = post(
        "/console/policies",
        vec![
            ("_csrf", csrf.clone()),
            ("creating", "true".into()),
            ("name", "<b>x</b>".into()),
            ("rego", FIXED_POLICY.into()),
            ("enforcement", "eventual".into()),
            ("on_error", "block".into()),
            ("on_unreachable", "local".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Not saved.") && html.contains("&#60;b&#62;x&#60;"),
        "{html}"
    );
    // A wrong enum value, an oversize description, a missing field, an oversize body.
    let r = post(
        "/console/policies",
        vec![
            ("_csrf", csrf.clone()),
            ("name", "hostile".into()),
            ("rego", FIXED_POLICY.into()),
            ("enforcement", "sometimes".into()),
            ("on_error", "block".into()),
            ("on_unreachable", "local".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    assert!(r.text().await.unwrap().contains("enforcement"));
    let r = post(
        "/console/policies",
        vec![
            ("_csrf", csrf.clone()),
            ("name", "hostile".into()),
            ("rego", FIXED_POLICY.into()),
            ("enforcement", "eventual".into()),
            ("on_error", "block".into()),
            ("on_unreachable", "partial".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Not saved.")
            && html.contains("on_unreachable must be")
            && html.contains("partial"),
        "{html}"
    );
    let (_, stored) = apis[0].get("/api/v1/policies/hostile").await;
    assert_eq!(stored["on_unreachable"], "deny", "unchanged");
    let r = post(
        "/console/users",
        vec![
            ("_csrf", csrf.clone()),
            ("name", "longdesc".into()),
            ("description", "x".repeat(5000)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    assert!(r.text().await.unwrap().contains("the limit is 1024"));
    let r = post("/console/users", vec![("_csrf", csrf.clone())])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    assert!(r.text().await.unwrap().contains("missing field `name`"));
    let r = post(
        "/console/users",
        vec![("_csrf", csrf.clone()), ("name", "y".repeat(2 << 20))],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // Audit filters take any characters as text, never as SQL.
    let r = page("/console/audit?q=%25%27--%20%5C".into())
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (code, page_json) = apis[0]
        .get("/api/v1/audit?actor=admin%3Aops&action=user.put&limit=1")
        .await;
    assert_eq!(code, 200, "{page_json}");
    assert_eq!(page_json["entries"][0]["target"], "mallory");

    // Forged and expired session cookies are refused.
    let forged = http
        .get(format!("{base}/console/instances"))
        .header("cookie", "shoal_session=forged-token")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 303);
    let other = Api::login(&base).await;
    sql(
        &url,
        "UPDATE admin_sessions SET expires_at = now() - interval '1 second'
          WHERE created_at = (SELECT max(created_at) FROM admin_sessions)",
    )
    .await;
    let (code, _) = other.get("/api/v1/status").await;
    assert_eq!(code, 401, "an expired session is refused");

    // Wrong passwords: after five in a minute the account is locked, even for the right
    // password, and the admins page shows the count.
    for _ in 0..5 {
        let r = post_login(ADMIN, "wrong password!", &login_csrf, "")
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("Wrong username or password")
        );
    }
    let r = post_login(ADMIN, ADMIN_PASSWORD, &login_csrf, "")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.text().await.unwrap().contains("Too many failed logins"));
    let api_login = reqwest::Client::new()
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"username": ADMIN, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(api_login.status().as_u16(), 429);
    let (_, admins) = apis[0].get("/api/v1/admins").await;
    assert_eq!(admins[0]["failed_logins"], 5, "{admins}");
    let (_, audit) = apis[0]
        .get("/api/v1/audit?action=admin.login&outcome=locked_out")
        .await;
    assert!(!audit["entries"].as_array().unwrap().is_empty(), "{audit}");
    let admins_html = page("/console/admins".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(admins_html.contains(">locked<"), "the lockout is shown");
}
