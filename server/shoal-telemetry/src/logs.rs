//! The node's log output: one `tracing` subscriber writing text or JSON lines, filtered by a
//! level that operators can change while the node runs (to catch a problem at `debug` without
//! a restart that would make it go away), and, when traces are on, the layer that exports the
//! proxy's request spans.

use std::sync::{Arc, Mutex};

use tracing_subscriber::filter::{EnvFilter, FilterExt as _, LevelFilter, Targets};
use tracing_subscriber::layer::Filter;
use tracing_subscriber::layer::Identity;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, Registry, reload};

use crate::{Telemetry, TelemetryError, trace::TRACE_TARGET};

/// Longest level directive accepted at run time.
const MAX_DIRECTIVES: usize = 1024;

pub struct LogOptions<'a> {
    /// An `EnvFilter` directive (`info`, `info,shoal_cluster=debug`).
    pub level: &'a str,
    pub json: bool,
    /// Text lines to stderr instead of stdout (CLI commands keep stdout for their output).
    pub stderr: bool,
}

/// Installs the process-wide subscriber. `filter` is applied to log lines after the level
/// (the gossip layer's rate limit); request spans never reach the log output, only the trace
/// exporter of `telemetry`.
pub fn init_logs<F>(
    options: &LogOptions<'_>,
    filter: F,
    telemetry: Option<&Telemetry>,
) -> Result<LogLevel, TelemetryError>
where
    F: Filter<Registry> + Send + Sync + 'static,
{
    let env = parse(options.level)?;
    let (env, handle) = reload::Layer::new(env);
    let fmt = tracing_subscriber::fmt::layer();
    let output = if options.json {
        fmt.json().flatten_event(true).boxed()
    } else if options.stderr {
        fmt.with_writer(std::io::stderr).boxed()
    } else {
        fmt.boxed()
    };
    // Request spans are decided per call site, once: with no trace exporter no layer takes
    // them, so creating one costs the request nothing.
    let no_spans = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target(TRACE_TARGET, LevelFilter::OFF);
    let output = output.with_filter(env.and(no_spans).and(filter));
    let traces = telemetry
        .and_then(Telemetry::tracing_layer)
        .unwrap_or_else(|| Identity::new().with_filter(LevelFilter::OFF).boxed());
    tracing_subscriber::registry()
        .with(output)
        .with(traces)
        .try_init()
        .map_err(|e| TelemetryError::LogLevel {
            directives: options.level.to_string(),
            message: format!("cannot install the log subscriber: {e}"),
        })?;
    Ok(LogLevel {
        inner: Arc::new(Inner {
            current: Mutex::new(options.level.to_string()),
            reload: Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())),
        }),
    })
}

fn parse(directives: &str) -> Result<EnvFilter, TelemetryError> {
    let bad = |message: String| TelemetryError::LogLevel {
        directives: directives.chars().take(80).collect(),
        message,
    };
    if directives.trim().is_empty() || directives.len() > MAX_DIRECTIVES {
        return Err(bad(format!(
            "expected 1 to {MAX_DIRECTIVES} characters such as \"info\" or \"info,shoal_cluster=debug\""
        )));
    }
    // Field values as literals: compiled as regular expressions, a value such as
    // `[{f=.*a................}]` builds an exponential automaton (found by fuzzing the
    // config loader, which checks `log.level` the same way).
    EnvFilter::builder()
        .with_regex(false)
        .parse(directives)
        .map_err(|e| bad(e.to_string()))
}

/// The log level in force on this node, changeable at run time; cheap to clone.
#[derive(Clone)]
pub struct LogLevel {
    inner: Arc<Inner>,
}

type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

struct Inner {
    current: Mutex<String>,
    reload: Reload,
}

impl LogLevel {
    /// A level that filters nothing itself: for a node that shares its process's log
    /// subscriber with others (nodes run as tasks in one test process), where changing it
    /// only records the directives, still checked as on a real node.
    pub fn unattached(directives: &str) -> Result<Self, TelemetryError> {
        parse(directives)?;
        Ok(Self {
            inner: Arc::new(Inner {
                current: Mutex::new(directives.to_string()),
                reload: Box::new(|_| Ok(())),
            }),
        })
    }

    pub fn current(&self) -> String {
        self.inner
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the level. A directive that does not parse changes nothing.
    pub fn set(&self, directives: &str) -> Result<(), TelemetryError> {
        let filter = parse(directives)?;
        let mut current = self.inner.current.lock().unwrap_or_else(|p| p.into_inner());
        (self.inner.reload)(filter).map_err(|message| TelemetryError::LogLevel {
            directives: directives.to_string(),
            message,
        })?;
        *current = directives.to_string();
        Ok(())
    }
}

impl std::fmt::Debug for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LogLevel").field(&self.current()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_directives_are_refused_with_the_reason() {
        for bad in ["", "   ", "info,shoal=loud", &"x".repeat(2000)] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid log level"), "{e}");
        }
        assert!(parse("info,shoal_cluster=debug").is_ok());
    }
}
