//! The one HTTP accept loop every listener of a node runs: the admin port and each data-plane
//! port. HTTP/1.1 (keep-alive) and HTTP/2 on the same port, a read deadline and a size cap on
//! request heads (hyper answers 431 beyond the cap), an optional limit on open connections
//! (answered 503 beyond it, and counted), and a graceful drain bounded by a grace when the
//! listener stops.
//!
//! - `serve`: [`serve`] and the [`Limits`] it applies; [`Spread`] for several runtimes serving
//!   one listener, the connections spread over them.

#![forbid(unsafe_code)]

mod serve;

pub use serve::{ConnectionLimit, ConnectionService, Limits, ResponseBody, Share, Spread, serve};
