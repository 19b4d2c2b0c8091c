//! Every end-to-end test of the `shoal` binary in one test crate: one link of the binary's
//! dependency tree instead of one per file keeps CI's build time and disk use in check.
//! Each module is one capability, tested against real processes and real peers.

mod audit;
mod cli;
mod cluster;
mod common;
mod compose;
mod config_delivery;
mod console;
mod discovery_ecs;
mod discovery_kubernetes;
mod discovery_lan;
mod discovery_registry;
mod faults;
mod fleet;
mod gossip_input;
mod image;
mod lifecycle;
mod proxy_http;
mod proxy_s3;
mod quickstart;
mod security;
mod state;
mod telemetry;
