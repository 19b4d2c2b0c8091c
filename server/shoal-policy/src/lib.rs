//! Rego policies: the checks a policy must pass before it is stored or applied.
//!
//! Policies are the operator's code, written in Rego and evaluated by regorus. A policy that
//! does not compile must never reach PostgreSQL or a node's live config, so the control plane
//! calls [`check`] before every write and again when a node loads a config revision (a row
//! written by hand in SQL gets no other check).
//!
//! [`Policy`] is the evaluator (`eval`): compiled once per config revision into one RVM
//! program per [`Stage`] the policy defines, evaluated per request on a VM from that stage's
//! pool. A stage rule made only of comparisons of `input` fields with literals also gets a
//! native form (`native`), decided without the VM, from the request's facts where it can.
//!
//! `builtins` knows which OPA built-ins a policy may not call and why; [`check`] refuses them
//! by name, so a policy never stores fine and then fails on every request.
//!
//! `testing` holds the offline authoring tools behind `shoal policy test` and `shoal policy
//! eval`: [`run_tests`] and [`eval`].

#![forbid(unsafe_code)]

mod builtins;
mod eval;
mod native;
mod testing;

use std::sync::Arc;

use regorus::rvm::Program;

pub use builtins::Unavailable;
pub use eval::{
    EVAL_TIME_LIMIT, Input, InputParts, NodeFacts, Policy, PolicyData, RequestFacts, ResponseFacts,
    Subject, Target, Verdict, Windows,
};
pub use testing::{Outcome, SourceFile, TestResult, TestRun, eval, run_tests};

/// When the data plane asks a policy; each stage is a rule of the policy's package, and a
/// policy defines either or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// `pre_request`: before the request is forwarded.
    Request,
    /// `pre_response`: when the upstream's status and headers have arrived, before its body
    /// is passed on, so a block replaces the body with the kind's error.
    Response,
}

impl Stage {
    pub const ALL: [Stage; 2] = [Stage::Request, Stage::Response];

    /// The rule the stage evaluates.
    pub const fn rule(self) -> &'static str {
        match self {
            Self::Request => "pre_request",
            Self::Response => "pre_response",
        }
    }

    /// `request` or `response`, as audit lines and the tools name it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Response => "response",
        }
    }
}

impl std::str::FromStr for Stage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "request" | "pre_request" => Ok(Self::Request),
            "response" | "pre_response" => Ok(Self::Response),
            other => Err(format!(
                "stage {other:?} is not one of request (pre_request), response (pre_response)"
            )),
        }
    }
}

/// Upper bound on one policy's source, so a pasted blob cannot stall every node's config load.
pub const MAX_SOURCE_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("policy {name:?} does not compile: {message}")]
    Compile { name: String, message: String },
    #[error(
        "policy {name:?} defines neither `pre_request` nor `pre_response` in package {package}: \
         the data plane evaluates data.<package>.pre_request before forwarding and \
         data.<package>.pre_response when the upstream answers"
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
    /// The stages the policy defines, in evaluation order.
    pub stages: Vec<Stage>,
}

impl CheckedPolicy {
    /// The full rule path the data plane evaluates at `stage`, e.g.
    /// `data.formal.v2.pre_request`.
    pub fn entrypoint(&self, stage: Stage) -> String {
        format!("{}.{}", self.package, stage.rule())
    }
}

/// Parses and compiles a policy for each stage it defines exactly as the data plane will (the
/// RVM programs included), returning the compiler's own message on failure (it carries the
/// line and column in the policy source). Whatever passes here compiles on every node: a
/// policy that only failed there would refuse every request it governs.
pub fn check(name: &str, source: &str) -> Result<CheckedPolicy, PolicyError> {
    compile(name, &format!("{name}.rego"), source).map(|(checked, _)| checked)
}

/// A policy's compiled programs, one per stage it defines, each with its native form when
/// the stage's rule has one.
pub(crate) type StagePrograms = Vec<(Stage, Arc<Program>, Option<native::Native>)>;

/// [`check`]'s work, with the source named `path` in messages (the authoring tools name the
/// author's file) and the programs kept, one per stage, for a caller that runs them.
pub(crate) fn compile(
    name: &str,
    path: &str,
    source: &str,
) -> Result<(CheckedPolicy, StagePrograms), PolicyError> {
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
    let mut programs = Vec::new();
    for stage in Stage::ALL {
        let declared = engine
            .has_declared_rule_rooted_at(path, stage.rule())
            .map_err(compile_error)?;
        if !declared {
            continue;
        }
        let entrypoint = format!("{package}.{}", stage.rule());
        let compiled = engine
            .compile_with_entrypoint(&entrypoint.as_str().into())
            .map_err(compile_error)?;
        let program = builtins::program(name, &compiled, &entrypoint)?;
        let native = engine.get_modules().first().and_then(|module| {
            native::Native::of(module, stage.rule(), |v| eval::verdict(stage, v).ok())
        });
        programs.push((stage, program, native));
    }
    if programs.is_empty() {
        return Err(PolicyError::MissingEntrypoint {
            name: name.to_string(),
            package,
        });
    }
    let stages = programs.iter().map(|(stage, ..)| *stage).collect();
    Ok((CheckedPolicy { package, stages }, programs))
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
        assert_eq!(checked.stages, [Stage::Request]);
        assert_eq!(
            checked.entrypoint(Stage::Request),
            "data.formal.v2.pre_request"
        );
    }

    #[test]
    fn a_policy_defines_either_stage_or_both() {
        let response_only =
            "package r\npre_response := {\"action\": \"block\"} if input.response.status == 500\n";
        assert_eq!(check("r", response_only).unwrap().stages, [Stage::Response]);
        let both = format!("{response_only}pre_request := {{\"action\": \"allow\"}}\n");
        assert_eq!(
            check("r", &both).unwrap().stages,
            [Stage::Request, Stage::Response]
        );
        // A broken response stage is refused even when the request stage is fine.
        let broken =
            "package r\npre_request := {\"action\": \"allow\"}\npre_response if { x > 1 }\n";
        assert!(matches!(
            check("r", broken),
            Err(PolicyError::Compile { .. })
        ));
        assert_eq!("response".parse::<Stage>(), Ok(Stage::Response));
        assert_eq!("pre_request".parse::<Stage>(), Ok(Stage::Request));
        assert!("body".parse::<Stage>().unwrap_err().contains("\"body\""));
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
