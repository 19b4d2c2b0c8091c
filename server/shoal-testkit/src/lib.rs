//! What the integration tests and the benchmarks share: Shoal nodes started in this process
//! (`sandbox`) or as real processes (`node`), an admin API client, the real peers the
//! tests run against (PostgreSQL, moto, s3rver, etcd, nginx, rotel), network namespaces and
//! containers, and polling with deadlines instead of sleeps.
//!
//! - `sandbox`: nodes as tasks of this process (`prepare` + `run`) on OS-assigned loopback
//!   ports, for every scenario that needs no signal, exit code, namespace or image.
//! - `node`: nodes as `shoal` processes, for the ones that do.
//! - `cluster`: several nodes on static peers, ready and logged in.
//! - `api`: the admin API client and the SQL the tests read and write directly.
//! - `peers`: the real third-party servers and clients.
//! - `browser`: Chromium through chromedriver, and a page server for the pages it opens.
//! - `network`: private namespaces, a bridge of node namespaces, a cuttable TCP forwarder.
//! - `containers`: the image, compose and fleet tests' podman.
//! - `counting`: a stream of increments and what the nodes counted.
//! - `wait`: polling with a deadline; benchmark arguments and percentiles.

// Test support spawns helpers (upstreams, forwarders, load) and the nodes themselves into
// the test's runtime, which ends them with the test.
#![allow(clippy::disallowed_methods)]

mod api;
mod browser;
mod cluster;
pub mod containers;
pub mod counting;
mod network;
mod node;
mod peers;
mod sandbox;
mod wait;

use std::path::Path;

pub use api::*;
pub use browser::*;
pub use cluster::*;
pub use network::*;
pub use node::*;
pub use peers::*;
pub use sandbox::*;
pub use shoal_control_plane::testsuite::{TestPostgres, database, private_database};
pub use wait::*;

pub const PSK_HEX: &str = "4242424242424242424242424242424242424242424242424242424242424242";
pub const SECRETS_KEY_HEX: &str =
    "0909090909090909090909090909090909090909090909090909090909090909";
/// Control-plane settings that make tests converge quickly.
pub const FAST_CONTROL_PLANE: &str = "poll_interval = \"300ms\"\nconnect_timeout = \"2s\"\nreconnect_min = \"50ms\"\nreconnect_max = \"500ms\"\n";
/// Probe settings that make tests detect failures quickly.
pub const FAST_PROBES: &str = "probe_interval = \"200ms\"\nprobe_timeout = \"100ms\"\n";

pub const ADMIN: &str = "ops";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

pub const SEED_POLICY: &str = r#"package formal.v2

import future.keywords.if

pre_request := { "action": "block", "type": "block_with_formal_message" } if {
  input.bucket.name == "sensitive-bucket"
  input.bucket.access_count.last_minute > 5
}
"#;
pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
