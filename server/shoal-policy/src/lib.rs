//! Rego policies: the checks a policy must pass before it is stored or applied.
//!
//! Policies are the operator's code, written in Rego and evaluated by regorus. A policy that
//! does not compile must never reach PostgreSQL or a node's live config, so the control plane
//! calls [`check`] before every write and again when a node loads a config revision (a row
//! written by hand in SQL gets no other check).
//!
//! [`Policy`] is the evaluator (`eval`): compiled once per config revision into an RVM
//! program, evaluated per request on a VM from the policy's pool.
//!
//! `builtins` knows which OPA built-ins a policy may not call and why; [`check`] refuses them
//! by name, so a policy never stores fine and then fails on every request.
//!
//! `testing` holds the offline authoring tools behind `shoal policy test` and `shoal policy
//! eval`: [`run_tests`] and [`eval`].

#![forbid(unsafe_code)]

mod builtins;
mod eval;
mod testing;

use std::sync::Arc;

use regorus::rvm::Program;

pub use builtins::Unavailable;
pub use eval::{
    EVAL_TIME_LIMIT, Input, NodeFacts, Policy, PolicyData, RequestFacts, Subject, Target, Verdict,
    Windows,
};
pub use testing::{Outcome, SourceFile, TestResult, TestRun, eval, run_tests};

/// The rule every policy defines: what the data plane asks before forwarding a request.
pub const ENTRYPOINT: &str = "pre_request";

/// Upper bound on one policy's source, so a pasted blob cannot stall every node's config load.
pub const MAX_SOURCE_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("policy {name:?} does not compile: {message}")]
    Compile { name: String, message: String },
    #[error(
        "policy {name:?} does not define rule `{ENTRYPOINT}` in package {package}: \
         the data plane evaluates data.<package>.{ENTRYPOINT}"
    )]
    MissingEntrypoint { name: String, package: String },
    #[error("policy {name:?} is {size} bytes; the limit is {MAX_SOURCE_BYTES}")]
    TooLarge { name: String, size: usize },
    #[error("policy {name:?} failed: {message}")]
    Runtime { name: String, message: String },
    #[error("policy {name:?} calls {builtin}, {reason} (docs/policies.md, \"Built-ins\")")]
    UnavailableBuiltin {
        name: String,
        builtin: String,
        reason: Unavailable,
    },
    #[error("{file} does not parse:\n{message}")]
    Parse { file: String, message: String },
    #[error("{entrypoint} cannot be evaluated: {message}")]
    Entrypoint { entrypoint: String, message: String },
    #[error("test filter {pattern:?} is not a regular expression: {message}")]
    TestFilter { pattern: String, message: String },
}

/// What a successful check learned about a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPolicy {
    /// Rego path of the package, e.g. `data.formal.v2`.
    pub package: String,
    /// Full rule path the data plane evaluates, e.g. `data.formal.v2.pre_request`.
    pub entrypoint: String,
}

/// Parses and compiles a policy for its entry point exactly as the data plane will (the RVM
/// program included), returning the compiler's own message on failure (it carries the line and
/// column in the policy source). Whatever passes here compiles on every node: a policy that
/// only failed there would refuse every request it governs.
pub fn check(name: &str, source: &str) -> Result<CheckedPolicy, PolicyError> {
    compile(name, &format!("{name}.rego"), source).map(|(checked, _)| checked)
}

/// [`check`]'s work, with the source named `path` in messages (the authoring tools name the
/// author's file) and the program kept for a caller that runs it.
pub(crate) fn compile(
    name: &str,
    path: &str,
    source: &str,
) -> Result<(CheckedPolicy, Arc<Program>), PolicyError> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(PolicyError::TooLarge {
            name: name.to_string(),
            size: source.len(),
        });
    }
    let compile_error = |e| compile_error(name, e);
    let mut engine = regorus::Engine::new();
    let package = engine
        .add_policy(path.to_string(), source.to_string())
        .map_err(compile_error)?;
    let declared = engine
        .has_declared_rule_rooted_at(path, ENTRYPOINT)
        .map_err(compile_error)?;
    if !declared {
        return Err(PolicyError::MissingEntrypoint {
            name: name.to_string(),
            package,
        });
    }
    let entrypoint = format!("{package}.{ENTRYPOINT}");
    let compiled = engine
        .compile_with_entrypoint(&entrypoint.as_str().into())
        .map_err(compile_error)?;
    let program = builtins::program(name, &compiled, &entrypoint)?;
    Ok((
        CheckedPolicy {
            package,
            entrypoint,
        },
        program,
    ))
}

pub(crate) fn compile_error(name: &str, e: impl std::fmt::Display) -> PolicyError {
    PolicyError::Compile {
        name: name.to_string(),
        message: e.to_string().trim_end().to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The seed policy, unchanged: it must keep compiling.
    pub const SEED: &str = r#"package formal.v2

import future.keywords.if

pre_request := { "action": "block", "type": "block_with_formal_message" } if {
  input.bucket.name == "sensitive-bucket"
  input.bucket.access_count.last_minute > 5
}
"#;

    #[test]
    fn seed_policy_compiles() {
        let checked = check("seed", SEED).unwrap();
        assert_eq!(checked.package, "data.formal.v2");
        assert_eq!(checked.entrypoint, "data.formal.v2.pre_request");
    }

    #[test]
    fn syntax_error_carries_the_compiler_message_with_position() {
        let err = check("broken", "package p\n\npre_request := {\n").unwrap_err();
        let PolicyError::Compile { message, .. } = &err else {
            panic!("{err}")
        };
        assert!(message.contains("broken.rego:"), "{message}");
        assert!(
            err.to_string()
                .starts_with("policy \"broken\" does not compile")
        );
    }

    #[test]
    fn unsafe_variable_is_a_compile_error() {
        let err = check("unsafe", "package p\npre_request if { x > 1 }\n").unwrap_err();
        assert!(matches!(err, PolicyError::Compile { .. }), "{err}");
    }

    #[test]
    fn policy_without_entrypoint_is_rejected() {
        let err = check("noentry", "package p\nallow := true\n").unwrap_err();
        assert_eq!(
            err,
            PolicyError::MissingEntrypoint {
                name: "noentry".into(),
                package: "data.p".into()
            }
        );
    }

    #[test]
    fn oversized_policy_is_rejected_before_parsing() {
        let big = format!(
            "package p\n# {}\npre_request := 1\n",
            "x".repeat(MAX_SOURCE_BYTES)
        );
        assert!(matches!(
            check("big", &big),
            Err(PolicyError::TooLarge { .. })
        ));
    }
}
