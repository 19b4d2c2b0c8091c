//! Logging in, for the console and the API alike, with a lockout counted in the cluster's own
//! rate counters: failed attempts on any node count against the account everywhere, so an
//! attacker gains nothing by spreading guesses over the nodes behind the load balancer.

use shoal_control_plane::Session;
use shoal_state::CounterKey;

use crate::ApiError;
use crate::api::ApiState;

/// Failed logins per account within the first counting window (a minute by default) before
/// further attempts are refused without checking the password.
pub(crate) const MAX_FAILURES: u64 = 5;

const RESOURCE: &str = "shoal-console";
const ACTION: &str = "login-failure";

pub(crate) enum LoginOutcome {
    LoggedIn(Session),
    Denied,
    LockedOut { failures: u64, window: String },
}

/// The counter for failed logins of `username`; `None` for a name no account can have (it is
/// refused before any lookup anyway).
fn failure_key(username: &str) -> Option<CounterKey> {
    CounterKey::new(format!("admin:{username}"), RESOURCE, ACTION).ok()
}

/// Failed logins of `username` in the first window, as the whole cluster counted them.
pub(crate) fn failures(state: &ApiState, username: &str) -> u64 {
    failure_key(username)
        .map(|k| state.state.totals(&k).first().copied().unwrap_or(0))
        .unwrap_or(0)
}

pub(crate) async fn attempt(
    state: &ApiState,
    username: &str,
    password: &str,
) -> Result<LoginOutcome, ApiError> {
    let key = failure_key(username);
    let failed = failures(state, username);
    if failed >= MAX_FAILURES {
        let window = state
            .state
            .window_names()
            .first()
            .cloned()
            .unwrap_or_default();
        state
            .store
            .audit(
                &truncate(username),
                "admin.login",
                &truncate(username),
                "locked_out",
                serde_json::json!({ "failures": failed, "window": window }),
            )
            .await?;
        return Ok(LoginOutcome::LockedOut {
            failures: failed,
            window,
        });
    }
    match state
        .store
        .login(username, password, state.session_ttl)
        .await?
    {
        Some(session) => Ok(LoginOutcome::LoggedIn(session)),
        None => {
            if let Some(key) = key {
                state.state.increment(&key, 1);
            }
            Ok(LoginOutcome::Denied)
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

impl LoginOutcome {
    /// The error the API returns for a refused login.
    pub(crate) fn api_error(&self) -> ApiError {
        match self {
            LoginOutcome::LockedOut { failures, window } => ApiError::TooManyAttempts(format!(
                "too many failed logins for this account ({failures} in {window}); \
                 wait and try again"
            )),
            _ => ApiError::BadCredentials,
        }
    }
}
