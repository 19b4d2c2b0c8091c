//! The data plane: every node serves each resource on its own port, identifies the caller,
//! evaluates the operator's policies on cluster-wide counts, and forwards or blocks.
//!
//! - `routes`: what one config revision means for the data plane (ports, upstreams, compiled
//!   policies, credential index), rebuilt and swapped whole on every revision.
//! - `listeners`: one listener per resource port, started and drained as revisions come.
//! - `cores`: the data plane's threads, one single-threaded runtime per core, each serving
//!   the connections it accepts start to end with upstream connections of its own.
//! - `decision`: what every kind does once the caller is known: revocations, count, policies,
//!   audit line.
//! - `revocations`: the `revoke` events in force, from the events' cluster.
//! - `cors`: a resource's CORS rules: preflights answered, answers made readable to pages.
//! - `http_api`: the HTTP resource kind: API-key identity, JSON errors.
//! - `s3`: the S3 kind: addressing, operations, upstream re-signing, S3 XML errors.
//! - `post_form`: S3 form uploads (POST Object): the POST policy checked, the form re-posted
//!   upstream under Shoal's own policy, the file streamed through.
//! - `sigv4`: the caller's SigV4 signature (header and presigned forms), checked.
//! - `chunked`: chunk-signed bodies, each chunk's signature checked and replaced in stream.
//! - `forward`: the pooled upstream client; bodies stream both ways, never buffered.
//! - `instruments`: request durations, decisions, policy timings and upstream errors.
//! - `fuzzing` (only with `--cfg fuzzing`): entry points for the fuzz targets in `fuzz/`.
//!
//! Every request is a span under `shoal_telemetry::TRACE_TARGET` with child spans for the
//! count, each policy and the upstream call; the upstream receives its W3C `traceparent`.

#![forbid(unsafe_code)]

mod chunked;
mod cores;
mod cors;
mod decision;
mod forward;
#[cfg(any(fuzzing, test))]
pub mod fuzzing;
mod http_api;
mod instruments;
mod listeners;
mod post_form;
mod revocations;
mod routes;
mod s3;
mod sigv4;

pub use listeners::{DataPlane, DataPlaneStatus, ProxyOptions};
