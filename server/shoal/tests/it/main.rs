//! Every end-to-end test of Shoal in one test crate: one link of the node's dependency tree
//! instead of one per file keeps CI's build time and disk use in check. Each module is one
//! capability, tested against real peers, with nodes as tasks of this process
//! (`shoal_testkit::Sandbox`) unless the scenario needs a process: a signal, an exit code,
//! the node's own log lines, a network namespace, the image or the quickstart.

mod audit;
mod cli;
mod cluster;
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
mod policies;
mod proxy_http;
mod proxy_s3;
mod quickstart;
mod regions;
mod s3_compat;
mod security;
mod state;
mod telemetry;
