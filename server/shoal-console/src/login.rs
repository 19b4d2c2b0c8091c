//! Logging in, for the console and the API alike, with a lockout counted in the cluster's own
//! rate counters: attempts on any node count against the account everywhere, so an attacker
//! gains nothing by spreading guesses over the nodes behind the load balancer.
//!
//! Two counters per account, in the shortest window of at least a minute:
//! - attempts, checked in strict mode *before* the password is verified (the key's owner
//!   decides, so parallel requests cannot all slip under the limit): at most
//!   [`MAX_ATTEMPTS`] per window, however the attempts end;
//! - failures, counted after a wrong password: at [`MAX_FAILURES`] the account is refused
//!   until the window slides past them.
//!
//! The lock is per account, not per client address: behind a load balancer every client
//! shares an address. The price is that anyone can keep an account locked by failing on
//! purpose; the lock lasts only as long as the failures stay in the window.

use std::time::Duration;

use shoal_model::{Session, check_admin_name};
use shoal_state::{CounterKey, Limit, Mode};

use crate::ApiError;
use crate::api::ApiState;

/// Failed logins per account in the window before the account is refused.
pub(crate) const MAX_FAILURES: u64 = 5;

/// Login attempts per account in the window, successful or not.
pub(crate) const MAX_ATTEMPTS: u64 = 20;

const RESOURCE: &str = "shoal-console";

pub(crate) enum LoginOutcome {
    LoggedIn(Session),
    Denied,
    LockedOut { count: u64, window: String },
}

/// Only names an account could have are counted: anything else is refused by the store
/// before any lookup, and must not create counters on every node.
fn key(username: &str, action: &str) -> Option<CounterKey> {
    check_admin_name(username).ok()?;
    CounterKey::new(format!("admin:{username}"), RESOURCE, action).ok()
}

/// The shortest configured window of at least a minute (the first one if none is).
fn window(state: &ApiState) -> (usize, String) {
    let windows = state.state.windows();
    let index = windows
        .iter()
        .enumerate()
        .filter(|(_, w)| w.length >= Duration::from_secs(60))
        .min_by_key(|(_, w)| w.length)
        .map_or(0, |(i, _)| i);
    let name = state
        .state
        .window_names()
        .get(index)
        .cloned()
        .unwrap_or_default();
    (index, name)
}

/// Failed logins of `username` in the lockout window, as the whole cluster counted them.
pub(crate) fn failures(state: &ApiState, username: &str) -> u64 {
    let (index, _) = window(state);
    key(username, "login-failure")
        .and_then(|k| state.state.totals(&k).get(index).copied())
        .unwrap_or(0)
}

pub(crate) async fn attempt(
    state: &ApiState,
    username: &str,
    password: &str,
) -> Result<LoginOutcome, ApiError> {
    let (index, window_name) = window(state);
    if let Some(attempts) = key(username, "login-attempt") {
        let limit = Limit {
            window: index,
            max: MAX_ATTEMPTS,
            mode: Mode::Strict,
        };
        let decision = state.state.check(&attempts, limit, 1).await;
        let failed = failures(state, username);
        if !decision.allowed || failed >= MAX_FAILURES {
            // Audited while under the attempt limit only, so a flood writes a bounded number
            // of lines per account and window.
            if decision.allowed {
                state
                    .store
                    .audit(
                        username,
                        "admin.login",
                        username,
                        "locked_out",
                        serde_json::json!({ "failures": failed, "window": window_name }),
                    )
                    .await?;
            }
            return Ok(LoginOutcome::LockedOut {
                count: failed.max(decision.count),
                window: window_name,
            });
        }
    }
    match state
        .store
        .login(username, password, state.session_ttl)
        .await?
    {
        Some(session) => Ok(LoginOutcome::LoggedIn(session)),
        None => {
            if let Some(k) = key(username, "login-failure") {
                state.state.increment(&k, 1);
            }
            Ok(LoginOutcome::Denied)
        }
    }
}

impl LoginOutcome {
    /// The error the API returns for a refused login.
    pub(crate) fn api_error(&self) -> ApiError {
        match self {
            LoginOutcome::LockedOut { count, window } => ApiError::TooManyAttempts(format!(
                "too many login attempts for this account ({count} in {window}); \
                 wait and try again"
            )),
            _ => ApiError::BadCredentials,
        }
    }
}
