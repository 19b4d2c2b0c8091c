//! Test support: a real, throwaway PostgreSQL server.
//!
//! `scripts/test` starts one server for the whole suite and exports its URL in
//! `SHOAL_TEST_PG_URL`; [`database`] then creates a fresh database in it per test. Without that
//! variable (a plain `cargo test`), each call starts a private server that lives as long as the
//! returned guard. Tests that stop and restart PostgreSQL use [`TestPostgres`] directly.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sqlx::Connection as _;

/// A PostgreSQL server in a temporary directory on a free 127.0.0.1 port, stopped and deleted
/// on drop (also when the test panics).
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    max_connections: u32,
    running: bool,
}

/// A database of its own for one test; keeps its private server (if any) alive.
pub struct TestDatabase {
    pub url: String,
    _server: Option<TestPostgres>,
}

impl TestDatabase {
    /// The same database through the private server's Unix socket (`None` on the shared
    /// server): reachable from processes in other network namespaces.
    pub fn socket_url(&self) -> Option<String> {
        let server = self._server.as_ref()?;
        let db = self.url.rsplit('/').next()?;
        Some(format!(
            "postgres://postgres@localhost:{}/{db}?host={}",
            server.port,
            server.data_dir().display()
        ))
    }
}

fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("SHOAL_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .expect("PostgreSQL not found under /usr/lib/postgresql: run scripts/test (it installs it) or set SHOAL_PG_BIN")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// PostgreSQL refuses to run as root, so as root every server command runs as `postgres`.
fn pg_command(bin: &Path, tool: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

impl TestPostgres {
    /// initdb + start; panics with PostgreSQL's own output if either fails.
    pub fn start() -> Self {
        Self::start_with_connections(300)
    }

    /// [`TestPostgres::start`] for more clients than the suite's 300 (a benchmark of a
    /// hundred nodes, each with a pool and a listener).
    pub fn start_with_connections(max_connections: u32) -> Self {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("shoal-pg-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        if is_root() {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod temp dir");
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["postgres:postgres"]).arg(&data);
                    c
                },
                "chown data dir",
            )
            .unwrap();
        }
        let mut initdb = pg_command(&bin, "initdb");
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "-D",
            ])
            .arg(&data);
        run(initdb, "initdb").unwrap();
        let mut pg = Self {
            dir,
            bin,
            port: 0,
            max_connections,
            running: false,
        };
        let mut last_error = String::new();
        for _ in 0..5 {
            pg.port = free_port();
            match pg.try_start() {
                Ok(()) => return pg,
                Err(e) => last_error = e,
            }
        }
        panic!("PostgreSQL did not start: {last_error}");
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn try_start(&mut self) -> Result<(), String> {
        let data = self.data_dir();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections={}",
            self.port,
            data.display(),
            self.max_connections
        );
        let mut ctl = pg_command(&self.bin, "pg_ctl");
        ctl.arg("-D")
            .arg(&data)
            .args(["-w", "-t", "30", "-l"])
            .arg(data.join("server.log"))
            .args(["-o", &options, "start"]);
        run(ctl, "pg_ctl start")?;
        self.running = true;
        Ok(())
    }

    /// Starts a stopped server again on the same port (and data).
    pub fn restart(&mut self) {
        if !self.running {
            self.try_start().expect("PostgreSQL restart");
        }
    }

    /// Fast shutdown: connected clients are cut off, as in an outage.
    pub fn stop(&mut self) {
        if self.running {
            let mut ctl = pg_command(&self.bin, "pg_ctl");
            ctl.arg("-D")
                .arg(self.data_dir())
                .args(["-w", "-m", "fast", "stop"]);
            run(ctl, "pg_ctl stop").unwrap();
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
            let mut ctl = pg_command(&self.bin, "pg_ctl");
            ctl.arg("-D")
                .arg(self.data_dir())
                .args(["-w", "-m", "immediate", "stop"]);
            let _ = ctl.stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

async fn create_database(admin_url: &str) -> String {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
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
        _server: Some(server),
    }
}

/// A fresh database for one test, in the suite's shared server when there is one.
pub async fn database() -> TestDatabase {
    match std::env::var("SHOAL_TEST_PG_URL") {
        Ok(admin_url) => TestDatabase {
            url: create_database(&admin_url).await,
            _server: None,
        },
        Err(_) => private_database(300).await,
    }
}
