//! The admin surface every node serves: today the JSON admin API (`/api/v1`), later the web
//! console on the same sessions.
//!
//! Every write goes through `shoal_control_plane::Store`, which validates before storing, so
//! the API adds authentication, input decoding and error mapping, nothing else. Sessions are
//! stored in PostgreSQL, so a token issued by one node works on every node.

#![forbid(unsafe_code)]

mod api;
mod error;
mod state_api;

pub use api::{ApiState, router};
pub use error::ApiError;
