//! The admin surface every node serves: the JSON admin API (`/api/v1`, bearer tokens) and
//! the web console (`/console`, cookie sessions), over the same sessions and the same data.
//!
//! Every write goes through the node's `shoal_model::AdminStore` (the control plane's
//! `Store`), which validates before storing, so the API and the console add authentication,
//! input decoding and error mapping, nothing else. Sessions are stored in PostgreSQL, so a
//! session made on one node works on every node and a logout or a disabled account is refused
//! everywhere on the next request.
//!
//! - `api`: the `/api/v1` routes: login, config and revisions, policies, data documents,
//!   resources, users and credentials, admins, audit, cluster members and events, log level.
//! - `state_api`: `/api/v1/state`, the shared counters, cache and events.
//! - `views`: what the console shows, shared by the pages and their JSON twins.
//! - `login`: logins with a cluster-wide lockout counted in Shoal's own rate counters.
//! - `web`: pages, fragments, forms, sessions and CSRF.
//! - `error`: `ApiError`, each failure as a status and `{"error": {"code", "message"}}`.

#![forbid(unsafe_code)]

mod api;
mod error;
mod login;
mod state_api;
mod views;
mod web;

pub use api::{ApiState, NodeCluster, router};
pub use error::ApiError;
