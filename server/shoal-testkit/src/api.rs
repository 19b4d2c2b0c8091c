//! The admin API as the tests use it, and the SQL they read and write directly.

use std::time::Duration;

use serde_json::Value;

use crate::{ADMIN, ADMIN_PASSWORD, SEED_POLICY, wait_until};

/// GET {base}/ready as (status, body); a refused connection is status 0.
pub async fn get_ready(base: String) -> (u16, Value) {
    match reqwest::get(format!("{base}/ready")).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// Polls `{base}/ready` until `accept` takes the (status, body) pair.
pub async fn poll_ready(
    base: String,
    what: &str,
    timeout: Duration,
    accept: impl Fn(u16, &Value) -> bool,
) -> (u16, Value) {
    wait_until(what, timeout, || {
        let base = base.clone();
        let accept = &accept;
        async move {
            let (status, body) = get_ready(base).await;
            accept(status, &body).then_some((status, body))
        }
    })
    .await
}

/// Polls `{base}/ready` until the data plane serves config `revision` (or later).
pub async fn poll_data_plane(base: String, revision: i64) -> Value {
    poll_ready(
        base,
        "data plane on the revision",
        Duration::from_secs(60),
        |_, r| r["data_plane"]["revision"].as_i64() >= Some(revision),
    )
    .await
    .1
}

/// Polls `{base}/ready` until node `name` reports `revision` (or later) in force.
pub async fn poll_revision(base: String, name: &str, revision: i64, timeout: Duration) -> Value {
    wait_until(&format!("revision {revision} on {name}"), timeout, || {
        let url = format!("{base}/ready");
        async move {
            let body: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
            (body["config"]["revision"].as_i64()? >= revision).then_some(body)
        }
    })
    .await
}

/// An authenticated admin API client.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    client: reqwest::Client,
}

impl Api {
    pub async fn login(base: &str) -> Api {
        let client = reqwest::Client::new();
        let resp = client
            .post(format!("{base}/api/v1/login"))
            .json(&serde_json::json!({ "username": ADMIN, "password": ADMIN_PASSWORD }))
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status().as_u16(), 200, "login failed");
        let body: Value = resp.json().await.unwrap();
        Api {
            base: base.to_string(),
            token: body["token"].as_str().unwrap().to_string(),
            client,
        }
    }

    /// The same session on another node: sessions live in PostgreSQL, so one login serves
    /// every node (a hundred logins as one admin would meet the login throttle).
    pub fn at(&self, base: &str) -> Api {
        Api {
            base: base.to_string(),
            ..self.clone()
        }
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("api request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A request whose body is sent as given (JSON content type): what a client with a
    /// broken encoder sends.
    pub async fn request_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &str,
    ) -> (u16, Value) {
        let resp = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("api request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }

    /// Creates user `name` with an API key; returns the key.
    pub async fn user_with_api_key(&self, name: &str) -> String {
        let key = self.user_with_credential(name, "api_key").await;
        key["secret"].as_str().unwrap().to_string()
    }

    /// A user with an S3 key pair: the key as the API gave it (`key_id`, `secret`).
    pub async fn user_with_s3_key(&self, name: &str) -> Value {
        self.user_with_credential(name, "s3").await
    }

    async fn user_with_credential(&self, name: &str, kind: &str) -> Value {
        let (code, body) = self
            .put(&format!("/api/v1/users/{name}"), serde_json::json!({}))
            .await;
        assert_eq!(code, 200, "{body}");
        let (code, key) = self
            .post(
                &format!("/api/v1/users/{name}/credentials"),
                serde_json::json!({"kind": kind}),
            )
            .await;
        assert_eq!(code, 201, "{key}");
        key
    }

    /// Stores the seed policy, unchanged, enforced as shipped; returns the config revision.
    pub async fn put_seed_policy(&self) -> i64 {
        let (code, body) = self
            .put(
                "/api/v1/policies/seed",
                serde_json::json!({"rego": SEED_POLICY}),
            )
            .await;
        assert_eq!(code, 200, "{body}");
        body["revision"].as_i64().unwrap()
    }

    /// Stores the resource `name` with any `spec` (S3, CORS, anonymous access...); returns the
    /// config revision.
    pub async fn resource(&self, name: &str, spec: Value) -> i64 {
        let (code, body) = self.put(&format!("/api/v1/resources/{name}"), spec).await;
        assert_eq!(code, 200, "{body}");
        body["revision"].as_i64().unwrap()
    }

    /// Stores the seed policy, unchanged, in strict mode; returns the config revision.
    pub async fn put_seed_policy_strict(&self) -> i64 {
        let (code, body) = self
            .put(
                "/api/v1/policies/seed",
                serde_json::json!({"rego": SEED_POLICY, "enforcement": "strict"}),
            )
            .await;
        assert_eq!(code, 200, "{body}");
        body["revision"].as_i64().unwrap()
    }

    /// Stores an HTTP resource served on `port`; returns the config revision.
    pub async fn http_resource(&self, name: &str, upstream: &str, port: u16) -> i64 {
        let (code, body) = self
            .put(
                &format!("/api/v1/resources/{name}"),
                serde_json::json!({"kind": "http", "upstream": upstream, "port": port}),
            )
            .await;
        assert_eq!(code, 200, "{body}");
        body["revision"].as_i64().unwrap()
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::DELETE, path, None).await
    }

    /// Names of the policies the node has in force.
    pub async fn policies_in_force(&self) -> Vec<String> {
        let (_, body) = self.get("/api/v1/config").await;
        body["policies"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Runs SQL against the test database.
pub async fn sql(url: &str, statement: &str) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("SQL failed: {e}\n{statement}"));
}

pub async fn head_revision(url: &str) -> i64 {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar("SELECT revision FROM config_head")
        .fetch_one(&mut conn)
        .await
        .expect("head revision")
}

/// GET /cluster/status of a node.
pub async fn cluster_status(base: String) -> Option<Value> {
    reqwest::get(format!("{base}/cluster/status"))
        .await
        .ok()?
        .json()
        .await
        .ok()
}
