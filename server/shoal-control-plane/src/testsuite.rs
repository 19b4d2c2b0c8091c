//! Test support: a real, throwaway PostgreSQL, brought up by `scripts/lib/postgres.sh`, the
//! script `scripts/test` starts the suite's server with, so there is one way a test server
//! comes up (the integration tests, the benchmarks and this crate's tests all use this one).
//!
//! `scripts/test` exports that server's URL in `SHOAL_TEST_PG_URL`; [`database`] then creates
//! a fresh database in it per test. Without that variable (a plain `cargo test` or `cargo
//! nextest run`), each call starts a private server that lives as long as the returned guard.
//! Tests that stop and restart PostgreSQL use [`TestPostgres`] directly.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use sqlx::Connection as _;

/// Connections a server takes by default: many tests each open pools (as `scripts/test`'s).
const MAX_CONNECTIONS: u32 = 300;

/// A PostgreSQL server in a temporary directory on a free 127.0.0.1 port, stopped and deleted
/// on drop (also when the test panics).
pub struct TestPostgres {
    dir: tempfile::TempDir,
    port: u16,
    max_connections: u32,
    running: bool,
}

/// A database of its own for one test; keeps its private server (if any) alive. A database in
/// the suite's shared server is dropped with the guard: a few hundred tests' databases of
/// about 8 MB each would otherwise stay on the test machine's disk until the suite ends.
pub struct TestDatabase {
    pub url: String,
    server: Option<TestPostgres>,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.server.is_some() {
            return; // the private server's directory goes with it
        }
        let Some((base, name)) = self.url.rsplit_once('/') else {
            return;
        };
        let admin_url = format!("{base}/postgres");
        let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        // Drop may run inside a test's runtime, which cannot be blocked on: the statement
        // runs on a thread of its own with a runtime of its own. Best effort: the suite's
        // server and its directory are deleted when the suite ends anyway.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        });
        let _ = dropped.join();
    }
}

impl TestDatabase {
    /// The same database through the private server's Unix socket (`None` on the shared
    /// server): reachable from processes in other network namespaces.
    pub fn socket_url(&self) -> Option<String> {
        let server = self.server.as_ref()?;
        let db = self.url.rsplit('/').next()?;
        Some(format!(
            "postgres://postgres@localhost:{}/{db}?host={}",
            server.port,
            server.data_dir().display()
        ))
    }
}

/// Runs `scripts/lib/postgres.sh ARGS`; its standard output, or its errors.
fn script(args: &[&str]) -> Result<String, String> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lib/postgres.sh");
    let out = Command::new(&path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "postgres.sh {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl TestPostgres {
    /// initdb + start; panics with PostgreSQL's own output if either fails.
    pub fn start() -> Self {
        Self::start_with_connections(MAX_CONNECTIONS)
    }

    /// [`TestPostgres::start`] for more clients than the suite's 300 (a benchmark of a
    /// hundred nodes, each with a pool and a listener).
    pub fn start_with_connections(max_connections: u32) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("shoal-pg-")
            .tempdir()
            .expect("temp dir");
        let mut pg = Self {
            dir,
            port: 0,
            max_connections,
            running: false,
        };
        pg.port = pg
            .run_start(None)
            .unwrap_or_else(|e| panic!("PostgreSQL did not start: {e}"));
        pg
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server (making its cluster first if new) on `port` or a free one.
    fn run_start(&mut self, port: Option<u16>) -> Result<u16, String> {
        let data = self.data_dir();
        let max_connections = self.max_connections.to_string();
        let port = port.map(|p| p.to_string());
        let mut args = vec!["start", data.to_str().unwrap(), &max_connections];
        args.extend(port.as_deref());
        let printed = script(&args)?;
        self.running = true;
        printed
            .parse()
            .map_err(|_| format!("postgres.sh start printed {printed:?}, not a port"))
    }

    /// Starts a stopped server again on the same port (and data).
    pub fn restart(&mut self) {
        if !self.running {
            self.run_start(Some(self.port))
                .unwrap_or_else(|e| panic!("PostgreSQL restart: {e}"));
        }
    }

    /// Fast shutdown: connected clients are cut off, as in an outage.
    pub fn stop(&mut self) {
        if self.running {
            script(&["stop", self.data_dir().to_str().unwrap(), "fast"]).unwrap();
            self.running = false;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A fresh database in this server.
    pub async fn create_database(&self) -> String {
        create_database(&self.url("postgres")).await
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if self.running {
            // Immediate: the data is thrown away, so there is nothing worth a clean shutdown.
            let _ = script(&["stop", self.data_dir().to_str().unwrap(), "immediate"]);
        }
    }
}

async fn create_database(admin_url: &str) -> String {
    let name = format!("t_{:032x}", rand::random::<u128>());
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach test PostgreSQL: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE");
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    format!("{base}/{name}")
}

/// A fresh database in a private server of its own that takes `max_connections` clients.
pub async fn private_database(max_connections: u32) -> TestDatabase {
    let server = TestPostgres::start_with_connections(max_connections);
    TestDatabase {
        url: server.create_database().await,
        server: Some(server),
    }
}

/// A fresh database for one test, in the suite's shared server when there is one.
pub async fn database() -> TestDatabase {
    match std::env::var("SHOAL_TEST_PG_URL") {
        Ok(admin_url) => TestDatabase {
            url: create_database(&admin_url).await,
            server: None,
        },
        Err(_) => private_database(MAX_CONNECTIONS).await,
    }
}
