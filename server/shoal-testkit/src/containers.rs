//! Containers for the image, compose and fleet tests: rootful podman with the project's
//! containers.conf (`scripts/containers setup`, which `scripts/test` runs), the Shoal image
//! built from the Dockerfile's `prebuilt` target around this build's binary, and a network per
//! test whose containers, volumes and network go when it is dropped. A machine where
//! containers were never set up fails these tests with that reason; nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

use super::{PSK_HEX, SECRETS_KEY_HEX, wait_until};

/// The tag the tests' image gets.
pub const IMAGE: &str = "localhost/shoal:test";
/// Stand-in images built by `scripts/containers setup`, named as the public images they
/// replace where they keep those images' interface.
pub const POSTGRES_IMAGE: &str = "docker.io/library/postgres:15-bookworm";
pub const NGINX_IMAGE: &str = "docker.io/library/nginx:1.28";
pub const S3_IMAGE: &str = "localhost/shoal-standin/s3:latest";

/// The password of the PostgreSQL containers the tests start (a throwaway database).
pub const PG_PASSWORD: &str = "shoal-test-password";
/// The user, database and password the PostgreSQL container is started with, as the URL a
/// container on the same network uses.
pub fn pg_url(container: &str) -> String {
    format!("postgres://shoal:{PG_PASSWORD}@{container}:5432/shoal")
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn containers_conf() -> PathBuf {
    repo().join(".containers/containers.conf")
}

/// Runs podman with the project's containers.conf.
pub fn podman(args: &[&str]) -> Output {
    let conf = containers_conf();
    assert!(
        conf.exists(),
        "containers are not set up on this machine ({} is missing): run scripts/containers \
         setup (scripts/test does)",
        conf.display()
    );
    Command::new("podman")
        .args(args)
        .env("CONTAINERS_CONF", conf)
        .output()
        .unwrap_or_else(|e| panic!("cannot run podman: {e}"))
}

/// Runs podman, which must succeed; its trimmed standard output.
pub fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The image of this build, built once per test process (podman's layer cache makes the later
/// builds of the same binary cheap). `SHOAL_IMAGE_BINARY` puts another binary in it
/// (`scripts/bench fleet` uses the release build).
pub fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let binary = std::env::var_os("SHOAL_IMAGE_BINARY")
            .map(PathBuf::from)
            .unwrap_or_else(super::shoal_bin);
        let out = Command::new(repo().join("scripts/containers"))
            .arg("image")
            .arg(&binary)
            .arg(IMAGE)
            .output()
            .expect("run scripts/containers");
        assert!(
            out.status.success(),
            "building the image failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
    });
    IMAGE
}

/// A podman network of one test, with everything the test started on it.
pub struct Net {
    pub name: String,
    /// The first three octets of the network's /24.
    prefix: String,
    containers: Mutex<Vec<String>>,
    volumes: Mutex<Vec<String>>,
}

impl Net {
    pub fn new(test: &str) -> Net {
        Self::create(test, false)
    }

    /// A network with no route out (`--internal`): what stays of a container's links when it
    /// is cut from the others, so the test can still talk to it.
    pub fn internal(test: &str) -> Net {
        Self::create(test, true)
    }

    fn create(test: &str, internal: bool) -> Net {
        let name = format!("shoal-it-{test}-{}", std::process::id());
        podman(&["network", "rm", "-f", &name]);
        let mut create = vec!["network", "create"];
        if internal {
            create.push("--internal");
        }
        create.push(&name);
        podman_ok(&create);
        let subnet = podman_ok(&[
            "network",
            "inspect",
            "--format",
            "{{range .Subnets}}{{.Subnet}}{{end}}",
            &name,
        ]);
        let prefix = subnet
            .strip_suffix(".0/24")
            .unwrap_or_else(|| panic!("expected a /24 for {name}, got {subnet}"))
            .to_string();
        Net {
            name,
            prefix,
            containers: Mutex::new(Vec::new()),
            volumes: Mutex::new(Vec::new()),
        }
    }

    /// Address `host` of the network (the gateway is 1; podman hands out from 2 upwards, so
    /// tests pick fixed addresses from 100).
    pub fn ip(&self, host: u8) -> String {
        format!("{}.{host}", self.prefix)
    }

    /// A container name unique to this test.
    pub fn scoped(&self, name: &str) -> String {
        format!("{}-{name}", self.name)
    }

    /// `podman run -d` of a container called `name` (scoped to the test) on this network,
    /// with `args` before the image and command.
    pub fn run(&self, name: &str, args: &[&str]) -> Container {
        self.run_attached(name, &self.name, args)
    }

    /// Like [`Net::run`], with `network` as the `--network` value (`NAME:ip=..,alias=..`);
    /// `args` may attach more networks.
    pub fn run_attached(&self, name: &str, network: &str, args: &[&str]) -> Container {
        let full = self.scoped(name);
        self.containers.lock().unwrap().push(full.clone());
        let net = format!("--network={network}");
        let mut all = vec!["run", "-d", "--name", &full, &net];
        all.extend_from_slice(args);
        podman_ok(&all);
        Container { name: full }
    }

    /// A named volume scoped to the test.
    pub fn volume(&self, name: &str) -> String {
        let full = self.scoped(name);
        podman_ok(&["volume", "create", &full]);
        self.volumes.lock().unwrap().push(full.clone());
        full
    }

    /// PostgreSQL (the stand-in image) on this network as `pg`, accepting connections.
    pub async fn postgres(&self) -> Container {
        self.postgres_with(&[]).await
    }

    /// [`Net::postgres`] with more `podman run` arguments (another network).
    pub async fn postgres_with(&self, extra: &[&str]) -> Container {
        let password = format!("POSTGRES_PASSWORD={PG_PASSWORD}");
        let mut args = extra.to_vec();
        args.extend_from_slice(&[
            "-e",
            "POSTGRES_USER=shoal",
            "-e",
            "POSTGRES_DB=shoal",
            "-e",
            &password,
            POSTGRES_IMAGE,
        ]);
        let pg = self.run("pg", &args);
        wait_until(
            "PostgreSQL in its container",
            Duration::from_secs(60),
            || {
                let ok = podman(&[
                    "exec",
                    &pg.name,
                    "pg_isready",
                    "-q",
                    "-U",
                    "shoal",
                    "-d",
                    "shoal",
                ])
                .status
                .success();
                async move { ok.then_some(()) }
            },
        )
        .await;
        pg
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in self.containers.lock().unwrap().iter() {
            podman(&["rm", "-f", "-v", "-t", "0", c]);
        }
        for v in self.volumes.lock().unwrap().iter() {
            podman(&["volume", "rm", "-f", v]);
        }
        podman(&["network", "rm", "-f", &self.name]);
    }
}

/// One container (removed with its [`Net`]).
pub struct Container {
    pub name: String,
}

impl Container {
    pub fn inspect(&self) -> Value {
        let out = podman_ok(&["inspect", &self.name]);
        serde_json::from_str::<Value>(&out).unwrap()[0].clone()
    }

    /// Its address on its (first) network.
    pub fn ip(&self) -> String {
        let i = self.inspect();
        i["NetworkSettings"]["Networks"]
            .as_object()
            .and_then(|n| n.values().next())
            .and_then(|n| n["IPAddress"].as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// Its address on `net`.
    pub fn ip_on(&self, net: &Net) -> String {
        self.inspect()["NetworkSettings"]["Networks"][&net.name]["IPAddress"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Standard output and error so far.
    pub fn logs(&self) -> String {
        let out = podman(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The exit code once the container has stopped.
    pub fn exit_code(&self) -> Option<i64> {
        let state = &self.inspect()["State"];
        (state["Status"].as_str() == Some("exited")).then(|| state["ExitCode"].as_i64())?
    }

    pub async fn wait_exit(&self, timeout: Duration) -> i64 {
        wait_until(&format!("{} to exit", self.name), timeout, || {
            let code = self.exit_code();
            async move { code }
        })
        .await
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", &self.name];
        all.extend_from_slice(args);
        podman(&all)
    }
}

/// The environment of a Shoal node container advertising `ip` (none: something else fills it
/// in, as the ECS entrypoint does), with secrets as environment values, as ECS injects them,
/// and the node key on the image's data volume.
pub fn node_env(name: &str, ip: Option<&str>, database_url: &str) -> Vec<String> {
    let advertise = ip.map(|ip| ("SHOAL_CLUSTER_ADVERTISE", format!("{ip}:7946")));
    [
        ("SHOAL_NODE_NAME", name.to_string()),
        ("SHOAL_DATABASE_URL", database_url.to_string()),
        ("SHOAL_CLUSTER_PSK", PSK_HEX.to_string()),
        ("SHOAL_SECRETS_KEY", SECRETS_KEY_HEX.to_string()),
        ("SHOAL_CLUSTER_BIND", "0.0.0.0:7946".to_string()),
        ("SHOAL_PROXY_ADDRESS", "0.0.0.0".to_string()),
        ("SHOAL_NODE_KEY_FILE", "/var/lib/shoal/node.key".to_string()),
        ("SHOAL_LOG_FORMAT", "json".to_string()),
    ]
    .into_iter()
    .chain(advertise)
    .flat_map(|(k, v)| ["-e".to_string(), format!("{k}={v}")])
    .collect()
}

/// The hardening every deployment applies (Helm's securityContext, compose's settings): no
/// capabilities, no privilege gain, a read-only root filesystem.
pub const HARDENED: &[&str] = &[
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--read-only",
];

/// Polls `podman healthcheck run` (no systemd here runs it on its own schedule) until the
/// image's HEALTHCHECK passes.
pub async fn wait_healthy(c: &Container, timeout: Duration) {
    wait_until(&format!("{} healthy", c.name), timeout, || {
        let ok = podman(&["healthcheck", "run", &c.name]).status.success();
        async move { ok.then_some(()) }
    })
    .await;
}

/// `http://<ip>:8080` of a node container.
pub fn base(c: &Container) -> String {
    format!("http://{}:8080", c.ip())
}
