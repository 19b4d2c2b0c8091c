//! Named tasks in ordered shutdown stages.
//!
//! A node's long-running tasks (listeners, background loops, the audit writer, the config
//! watcher) and its shutdown steps (drain, leave, flush) are all started through a [`Stage`]
//! of one [`Supervisor`], each with a name. Stages are declared in shutdown order; each has
//! its own cancellation token (a child of the supervisor's) and a deadline.
//! [`Supervisor::shutdown`] walks them in order: cancel the stage's token, wait for its tasks
//! until the deadline, abort and name those still running, one log line per stage.
//!
//! - `supervisor`: [`Supervisor`], [`Stage`] and the [`StageReport`] each stop returns.

#![forbid(unsafe_code)]

mod supervisor;

pub use supervisor::{Stage, StageReport, Supervisor, TaskName};
