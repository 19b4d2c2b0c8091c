//! The authoring tools behind `shoal policy test` and `shoal policy eval`: offline (no
//! database, no node config), what an author runs before `shoal policy apply`.
//!
//! Tests run on regorus's interpreter, as `opa test` runs on OPA's: it has `with`, which the
//! data plane's RVM does not compile, so a test can replace `input` and `data`. Every file that
//! defines the entry point is first checked as `shoal policy apply` would check it, so a suite
//! cannot pass for a policy the control plane would refuse. `eval` runs what the data plane
//! runs: the compiled program, and the verdict the data plane takes from it.

use std::collections::HashSet;
use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use regorus::Value;
use regorus::rvm::RegoVM;
use regorus::unstable::{Parser, Rule, RuleHead};
use regorus::utils::limits::ExecutionTimerConfig;
use serde_json::json;

use crate::{EVAL_TIME_LIMIT, Input, Policy, PolicyError, Stage, Verdict};

/// Upper bound on one test: a test that never ends is an ERROR, not a hung command. Far above
/// the data plane's limit, since tests run on the slower interpreter and may build large data.
const TEST_TIME_LIMIT: Duration = Duration::from_secs(10);

/// A Rego file as the author named it: messages point at `path`.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Defined and not `false`, as in `opa test`.
    Pass,
    /// Undefined or `false`.
    Fail,
    /// Evaluation failed; regorus's message, with the file, line and column.
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// e.g. `data.seed_test`.
    pub package: String,
    /// e.g. `test_the_sixth_read_is_blocked`.
    pub rule: String,
    pub outcome: Outcome,
}

/// What [`run_tests`] found; `Display` prints one line per test and the summary.
#[derive(Debug, Default)]
pub struct TestRun {
    pub results: Vec<TestResult>,
}

impl TestRun {
    pub fn passed(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.outcome == Outcome::Pass)
            .count()
    }

    /// Failed and errored tests: either way the suite does not pass.
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }
}

impl fmt::Display for TestRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.results {
            let name = format!("{}.{}", r.package, r.rule);
            match &r.outcome {
                Outcome::Pass => writeln!(f, "PASS  {name}")?,
                Outcome::Fail => writeln!(f, "FAIL  {name}")?,
                Outcome::Error(message) => {
                    writeln!(f, "ERROR {name}:")?;
                    for line in message.lines() {
                        writeln!(f, "  {line}")?;
                    }
                }
            }
        }
        writeln!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

/// Runs every rule named `test_*` in `files` (policies and tests together, as one `data`),
/// those whose full name (`data.pkg.test_x`) matches `filter` if given, in file order. A file
/// that does not parse, or a policy `shoal policy apply` would refuse, fails the whole run.
pub fn run_tests(files: &[SourceFile], filter: Option<&str>) -> Result<TestRun, PolicyError> {
    let filter = filter
        .map(|pattern| {
            regex::Regex::new(pattern).map_err(|e| PolicyError::TestFilter {
                pattern: pattern.to_string(),
                message: e.to_string(),
            })
        })
        .transpose()?;
    let (mut engine, files) = load(files)?;
    for file in &files {
        let mut declares_stage = false;
        for stage in Stage::ALL {
            declares_stage |= engine
                .has_declared_rule_rooted_at(&file.path, stage.rule())
                .map_err(|e| parse_error(&file.path, e))?;
        }
        if declares_stage {
            crate::compile(&policy_name(&file.path), &file.path, &file.source)?;
        }
    }
    let mut seen = HashSet::new();
    let tests: Vec<(String, String)> = engine
        .get_modules()
        .iter()
        .zip(files.iter().map(|f| &f.package))
        .flat_map(|(module, package)| {
            module
                .policy
                .iter()
                .filter_map(|rule| test_name(rule))
                .map(move |rule| (package.clone(), rule))
        })
        .filter(|(package, rule)| {
            filter
                .as_ref()
                .is_none_or(|f| f.is_match(&format!("{package}.{rule}")))
        })
        .filter(|test| seen.insert(test.clone()))
        .collect();
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: TEST_TIME_LIMIT,
        check_interval: NonZeroU32::new(64).expect("non-zero"),
    });
    let results = tests
        .into_iter()
        .map(|(package, rule)| {
            let outcome = match engine.eval_rule(format!("{package}.{rule}")) {
                Ok(Value::Undefined | Value::Bool(false)) => Outcome::Fail,
                Ok(_) => Outcome::Pass,
                Err(e) => Outcome::Error(e.to_string().trim().to_string()),
            };
            TestResult {
                package,
                rule,
                outcome,
            }
        })
        .collect();
    Ok(TestRun { results })
}

/// Evaluates `input` as the data plane would at `stage` and returns the JSON document `shoal
/// policy eval` prints. Without `entrypoint`, each file is one policy, checked as `apply`
/// checks it and run like a node runs it: `verdict` is the first block in file order (the
/// data plane's rule across enabled policies), or allow, and `policies` has each one's
/// verdict (a policy without a rule for the stage allows). With it, the files are loaded
/// together and the raw value of that rule is returned, compiled and run the data plane's way.
pub fn eval(
    files: &[SourceFile],
    input: serde_json::Value,
    entrypoint: Option<&str>,
    stage: Stage,
) -> Result<serde_json::Value, PolicyError> {
    if let Some(entrypoint) = entrypoint {
        let (mut engine, _) = load(files)?;
        let value = eval_rule(&mut engine, entrypoint, &input)?;
        let mut out = json!({
            "entrypoint": entrypoint,
            "input": input,
            "defined": value.is_some(),
        });
        if let Some(value) = value {
            out["value"] = value;
        }
        return Ok(out);
    }
    let as_input = Input::from_json(input.clone());
    let mut policies = Vec::new();
    let mut decision = json!({ "action": "allow" });
    for file in files {
        let name = policy_name(&file.path);
        crate::compile(&name, &file.path, &file.source)?;
        let policy = Policy::compile(&name, &file.source)?;
        let verdict = policy.evaluate_at(stage, &as_input)?;
        let mut shown = verdict_json(&verdict);
        if matches!(verdict, Verdict::Block { .. }) && decision["action"] == "allow" {
            decision = shown.clone();
            decision["policy"] = json!(name);
        }
        shown["policy"] = json!(name);
        shown["file"] = json!(file.path);
        if !policy.defines(stage) {
            shown["defines_stage"] = json!(false);
        }
        policies.push(shown);
    }
    Ok(json!({
        "stage": stage.as_str(),
        "input": input,
        "verdict": decision,
        "policies": policies,
    }))
}

/// A verdict in the shape a policy's `pre_request` gives it.
fn verdict_json(verdict: &Verdict) -> serde_json::Value {
    match verdict {
        Verdict::Allow => json!({ "action": "allow" }),
        Verdict::Block { kind, message } => {
            let mut v = json!({ "action": "block", "type": kind });
            if let Some(message) = message {
                v["message"] = json!(message);
            }
            v
        }
    }
}

/// `entrypoint` compiled to an RVM program (refused built-ins refused) and run on `input`;
/// `None` when it is undefined.
fn eval_rule(
    engine: &mut regorus::Engine,
    entrypoint: &str,
    input: &serde_json::Value,
) -> Result<Option<serde_json::Value>, PolicyError> {
    let failed = |message: String| PolicyError::Entrypoint {
        entrypoint: entrypoint.to_string(),
        message: message.trim().to_string(),
    };
    let compiled = engine
        .compile_with_entrypoint(&entrypoint.into())
        .map_err(|e| failed(e.to_string()))?;
    let program = crate::builtins::program(entrypoint, &compiled, entrypoint)?;
    let mut vm = RegoVM::new();
    vm.load_program(program);
    vm.set_execution_timer_config(Some(ExecutionTimerConfig {
        limit: EVAL_TIME_LIMIT,
        check_interval: NonZeroU32::new(64).expect("non-zero"),
    }));
    vm.set_input(Value::from(input.clone()));
    let value = vm.execute().map_err(|e| failed(e.to_string()))?;
    if value == Value::Undefined {
        return Ok(None);
    }
    let text = value.to_json_str().map_err(|e| failed(e.to_string()))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| failed(e.to_string()))
}

/// A loaded file and the package it declares.
struct Loaded {
    path: String,
    source: String,
    package: String,
}

/// One interpreter with every file in it; a file named twice is loaded once.
fn load(files: &[SourceFile]) -> Result<(regorus::Engine, Vec<Loaded>), PolicyError> {
    let mut engine = regorus::Engine::new();
    let mut loaded: Vec<Loaded> = Vec::with_capacity(files.len());
    for file in files {
        if loaded.iter().any(|l| l.path == file.path) {
            continue;
        }
        let package = engine
            .add_policy(file.path.clone(), file.source.clone())
            .map_err(|e| parse_error(&file.path, e))?;
        loaded.push(Loaded {
            path: file.path.clone(),
            source: file.source.clone(),
            package,
        });
    }
    Ok((engine, loaded))
}

fn parse_error(path: &str, e: impl fmt::Display) -> PolicyError {
    PolicyError::Parse {
        file: path.to_string(),
        message: e.to_string().trim().to_string(),
    }
}

/// A policy's name is its file's, as `shoal policy apply NAME --file NAME.rego` would store it.
fn policy_name(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "policy".to_string())
}

/// `test_x` for a rule `test_x if { ... }` or `test_x := ...`; functions, partial sets and
/// rules with a dotted head are not tests, as in `opa test`.
fn test_name(rule: &Rule) -> Option<String> {
    let Rule::Spec {
        head: RuleHead::Compr { refr, .. },
        ..
    } = rule
    else {
        return None;
    };
    let components = Parser::get_path_ref_components(refr).ok()?;
    let [name] = components.as_slice() else {
        return None;
    };
    let name = name.text();
    name.starts_with("test_").then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Unavailable;
    use crate::tests::SEED;

    fn file(path: &str, source: &str) -> SourceFile {
        SourceFile {
            path: path.to_string(),
            source: source.to_string(),
        }
    }

    /// Tests of the seed policy, importing its package as a test file would.
    const SEED_TESTS: &str = r#"package formal.v2_test

import rego.v1
import data.formal.v2

reads(n) := {"bucket": {"name": "sensitive-bucket", "access_count": {"last_minute": n}}}

test_five_reads_are_allowed if {
  not v2.pre_request with input as reads(5)
}

test_the_sixth_read_is_blocked if {
  v2.pre_request.action == "block" with input as reads(6)
}

test_other_buckets_are_not_counted if {
  not v2.pre_request with input as {"bucket": {"name": "public", "access_count": {"last_minute": 60}}}
}

# Not tests: a helper function and a rule without the prefix.
test_helper(x) := x
helper := true
"#;

    fn outcomes(run: &TestRun) -> Vec<(&str, &Outcome)> {
        run.results
            .iter()
            .map(|r| (r.rule.as_str(), &r.outcome))
            .collect()
    }

    #[test]
    fn a_passing_suite_runs_every_test_rule_with_input_replaced() {
        let run = run_tests(
            &[file("seed.rego", SEED), file("seed_test.rego", SEED_TESTS)],
            None,
        )
        .unwrap();
        assert_eq!(
            outcomes(&run),
            [
                ("test_five_reads_are_allowed", &Outcome::Pass),
                ("test_the_sixth_read_is_blocked", &Outcome::Pass),
                ("test_other_buckets_are_not_counted", &Outcome::Pass),
            ]
        );
        assert!(
            run.results
                .iter()
                .all(|r| r.package == "data.formal.v2_test")
        );
        assert_eq!((run.passed(), run.failed()), (3, 0));
        let printed = run.to_string();
        assert!(
            printed.starts_with("PASS  data.formal.v2_test.test_five_reads_are_allowed\n"),
            "{printed}"
        );
        assert!(printed.ends_with("\n3 passed, 0 failed\n"), "{printed}");
    }

    #[test]
    fn a_test_that_does_not_hold_fails_and_false_fails_too() {
        let tests = r#"package t
import rego.v1
import data.formal.v2
test_wrong_limit if { v2.pre_request with input as {"bucket": {"name": "sensitive-bucket", "access_count": {"last_minute": 1}}} }
test_false := false
test_true := true
"#;
        let run = run_tests(&[file("seed.rego", SEED), file("t.rego", tests)], None).unwrap();
        assert_eq!(
            outcomes(&run),
            [
                ("test_wrong_limit", &Outcome::Fail),
                ("test_false", &Outcome::Fail),
                ("test_true", &Outcome::Pass),
            ]
        );
        assert_eq!((run.passed(), run.failed()), (1, 2));
        let printed = run.to_string();
        assert!(
            printed.contains("FAIL  data.t.test_wrong_limit\n"),
            "{printed}"
        );
        assert!(printed.ends_with("1 passed, 2 failed\n"), "{printed}");
    }

    #[test]
    fn a_test_that_cannot_be_evaluated_errors_with_file_line_and_column() {
        let tests = "package t\nimport rego.v1\n\ntest_divides if { 1 / input.zero == 1 with input as {\"zero\": 0} }\ntest_after_it_still_runs := true\n";
        let run = run_tests(&[file("dir/t_test.rego", tests)], None).unwrap();
        let Outcome::Error(message) = &run.results[0].outcome else {
            panic!("{run}")
        };
        assert!(
            message.contains("dir/t_test.rego:4:") && message.contains("divide by zero"),
            "{message}"
        );
        assert_eq!(run.results[1].outcome, Outcome::Pass);
        assert_eq!((run.passed(), run.failed()), (1, 1));
        let printed = run.to_string();
        assert!(
            printed.starts_with("ERROR data.t.test_divides:\n  --> dir/t_test.rego:4:"),
            "{printed}"
        );
    }

    #[test]
    fn a_file_that_does_not_parse_fails_the_run_naming_file_line_and_column() {
        let err = run_tests(
            &[
                file("seed.rego", SEED),
                file("policies/bad.rego", "package bad\n\nallow if { x > }\n"),
            ],
            None,
        )
        .unwrap_err();
        let PolicyError::Parse { file, message } = &err else {
            panic!("{err}")
        };
        assert_eq!(file, "policies/bad.rego");
        assert!(message.contains("policies/bad.rego:3:"), "{message}");
        assert!(
            err.to_string()
                .starts_with("policies/bad.rego does not parse:\n")
        );
    }

    #[test]
    fn with_replaces_data_as_well_as_input() {
        let policy = "package lim\nimport rego.v1\npre_request := {\"action\": \"block\"} if input.n > data.limits.max\n";
        let tests = "package lim_test\nimport rego.v1\nimport data.lim\ntest_over if { lim.pre_request with input as {\"n\": 3} with data.limits as {\"max\": 2} }\ntest_under if { not lim.pre_request with input as {\"n\": 1} with data.limits.max as 2 }\n";
        let run = run_tests(
            &[file("lim.rego", policy), file("lim_test.rego", tests)],
            None,
        )
        .unwrap();
        assert_eq!((run.passed(), run.failed()), (2, 0), "{run}");
    }

    #[test]
    fn the_filter_selects_tests_by_full_name_and_must_be_a_regex() {
        let files = [file("seed.rego", SEED), file("seed_test.rego", SEED_TESTS)];
        let run = run_tests(&files, Some("sixth|other")).unwrap();
        assert_eq!(
            outcomes(&run),
            [
                ("test_the_sixth_read_is_blocked", &Outcome::Pass),
                ("test_other_buckets_are_not_counted", &Outcome::Pass),
            ]
        );
        let run = run_tests(&files, Some(r"^data\.formal\.v2_test\.test_five")).unwrap();
        assert_eq!(run.results.len(), 1);
        assert!(
            run_tests(&files, Some("nothing-matches"))
                .unwrap()
                .results
                .is_empty()
        );
        assert!(matches!(
            run_tests(&files, Some("(")),
            Err(PolicyError::TestFilter { .. })
        ));
    }

    /// Tests cannot pass for a policy `shoal policy apply` would refuse.
    #[test]
    fn a_policy_apply_would_refuse_fails_the_run_though_its_tests_pass() {
        let policy = "package ext\nimport rego.v1\npre_request := {\"action\": \"block\"} if http.send({\"method\": \"get\", \"url\": input.url}).status_code == 403\n";
        let tests = "package ext_test\nimport rego.v1\ntest_nothing := true\n";
        let err = run_tests(
            &[file("p/ext.rego", policy), file("ext_test.rego", tests)],
            None,
        )
        .unwrap_err();
        assert_eq!(
            err,
            PolicyError::UnavailableBuiltin {
                name: "ext".into(),
                builtin: "http.send".into(),
                reason: Unavailable::Network
            }
        );
    }

    #[test]
    fn eval_gives_the_verdict_the_data_plane_takes_and_the_input() {
        let input =
            json!({"bucket": {"name": "sensitive-bucket", "access_count": {"last_minute": 6}}});
        let out = eval(
            &[file("p/seed.rego", SEED)],
            input.clone(),
            None,
            Stage::Request,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({
                "stage": "request",
                "input": input,
                "verdict": {"action": "block", "type": "block_with_formal_message", "policy": "seed"},
                "policies": [{"action": "block", "type": "block_with_formal_message", "policy": "seed", "file": "p/seed.rego"}],
            })
        );
        let quiet =
            json!({"bucket": {"name": "sensitive-bucket", "access_count": {"last_minute": 5}}});
        let out = eval(&[file("seed.rego", SEED)], quiet, None, Stage::Request).unwrap();
        assert_eq!(out["verdict"], json!({"action": "allow"}));
    }

    #[test]
    fn eval_runs_the_stage_asked_for() {
        let size = "package size\nimport rego.v1\npre_response := {\"action\": \"block\", \"type\": \"too_big\"} if input.response.size > 100\n";
        let files = [file("seed.rego", SEED), file("size.rego", size)];
        let input = json!({"bucket": {"name": "sensitive-bucket", "access_count": {"last_minute": 6}}, "response": {"size": 101}});
        let out = eval(&files, input.clone(), None, Stage::Response).unwrap();
        assert_eq!(out["stage"], "response");
        assert_eq!(
            out["verdict"],
            json!({"action": "block", "type": "too_big", "policy": "size"})
        );
        // The seed policy has no response rule: it allows at that stage, and says why.
        assert_eq!(out["policies"][0]["action"], "allow");
        assert_eq!(out["policies"][0]["defines_stage"], false);
        let out = eval(&files, input, None, Stage::Request).unwrap();
        assert_eq!(out["verdict"]["policy"], "seed");
        assert_eq!(out["policies"][1]["defines_stage"], false);
    }

    #[test]
    fn eval_of_several_policies_takes_the_first_block_in_file_order() {
        let allow = "package a\npre_request := {\"action\": \"allow\"}\n";
        let block = |p: &str| {
            format!(
                "package {p}\npre_request := {{\"action\": \"block\", \"type\": \"{p}\", \"message\": \"no ({p})\"}}\n"
            )
        };
        let out = eval(
            &[
                file("a.rego", allow),
                file("b.rego", &block("b")),
                file("c.rego", &block("c")),
            ],
            json!({}),
            None,
            Stage::Request,
        )
        .unwrap();
        assert_eq!(
            out["verdict"],
            json!({"action": "block", "type": "b", "message": "no (b)", "policy": "b"})
        );
        let each: Vec<_> = out["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["policy"].as_str().unwrap(), p["action"].as_str().unwrap()))
            .collect();
        assert_eq!(each, [("a", "allow"), ("b", "block"), ("c", "block")]);
    }

    #[test]
    fn eval_refuses_what_apply_refuses_and_reports_policy_failures() {
        let err = eval(
            &[file("lib.rego", "package lib\nx := 1\n")],
            json!({}),
            None,
            Stage::Request,
        )
        .unwrap_err();
        assert!(
            matches!(err, PolicyError::MissingEntrypoint { .. }),
            "{err}"
        );
        let jwt = "package j\npre_request := {\"action\": \"block\"} if io.jwt.decode(input.token)[1].sub == \"x\"\n";
        let err = eval(&[file("j.rego", jwt)], json!({}), None, Stage::Request).unwrap_err();
        assert!(
            matches!(&err, PolicyError::UnavailableBuiltin { builtin, .. } if builtin == "io.jwt.decode"),
            "{err}"
        );
        let err = eval(
            &[file("odd.rego", "package o\npre_request := 42\n")],
            json!({}),
            None,
            Stage::Request,
        )
        .unwrap_err();
        assert!(matches!(err, PolicyError::Runtime { .. }), "{err}");
    }

    #[test]
    fn eval_of_an_entrypoint_gives_its_raw_value_across_files() {
        let lib = "package lib\nimport rego.v1\nlimit := 5\n";
        let rules = "package rules\nimport rego.v1\nimport data.lib\nover := input.n > lib.limit\nnames contains n if some n in input.names\nnever if false\n";
        let files = [file("lib.rego", lib), file("rules.rego", rules)];
        let input = json!({"n": 7, "names": ["b", "a", "b"]});
        let out = eval(
            &files,
            input.clone(),
            Some("data.rules.over"),
            Stage::Request,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"entrypoint": "data.rules.over", "input": input, "defined": true, "value": true})
        );
        let out = eval(
            &files,
            input.clone(),
            Some("data.rules.names"),
            Stage::Request,
        )
        .unwrap();
        assert_eq!(out["value"], json!(["a", "b"]));
        let out = eval(&files, input, Some("data.rules.never"), Stage::Request).unwrap();
        assert_eq!(out["defined"], json!(false));
        assert!(out.get("value").is_none());
        let err = eval(
            &files,
            json!({}),
            Some("data.rules.missing"),
            Stage::Request,
        )
        .unwrap_err();
        assert!(
            matches!(&err, PolicyError::Entrypoint { entrypoint, .. } if entrypoint == "data.rules.missing"),
            "{err}"
        );
    }

    /// The built-ins authors reach for most that regorus provides, each evaluated by the data
    /// plane's compiled evaluator.
    #[test]
    fn provided_builtins_evaluate_on_the_data_plane_s_evaluator() {
        let cases: &[(&str, serde_json::Value)] = &[
            (
                r#"net.cidr_contains("10.0.0.0/8", "10.1.2.3")"#,
                json!(true),
            ),
            (
                r#"net.cidr_contains("10.0.0.0/8", "192.0.2.1")"#,
                json!(false),
            ),
            (
                r#"net.cidr_expand("192.168.0.0/31")"#,
                json!(["192.168.0.0", "192.168.0.1"]),
            ),
            (r#"net.cidr_is_valid("10.0.0.0/33")"#, json!(false)),
            (
                "time.add_date(0, 1, 0, 0)",
                json!(31_536_000_000_000_000u64),
            ),
            ("time.clock(0)", json!([0, 0, 0])),
            ("time.date(0)", json!([1970, 1, 1])),
            ("time.diff(0, 86400000000000)", json!([0, 0, 1, 0, 0, 0])),
            ("time.format(0)", json!("1970-01-01T00:00:00Z")),
            (
                r#"time.parse_duration_ns("1m30s")"#,
                json!(90_000_000_000u64),
            ),
            (
                r#"time.parse_ns("2006-01-02", "2020-03-04")"#,
                json!(1_583_280_000_000_000_000u64),
            ),
            (
                r#"time.parse_rfc3339_ns("2020-01-01T00:00:00Z")"#,
                json!(1_577_836_800_000_000_000u64),
            ),
            ("time.weekday(0)", json!("Thursday")),
            (r#"regex.match("^a+$", "aaa")"#, json!(true)),
            (r#"regex.is_valid("(")"#, json!(false)),
            (r#"regex.find_n("a.", "a1 a2 a3", 2)"#, json!(["a1", "a2"])),
            (
                r#"regex.find_all_string_submatch_n("a(\\d)", "a1 a2", -1)"#,
                json!([["a1", "1"], ["a2", "2"]]),
            ),
            (r##"regex.replace("a1b2", "\\d", "#")"##, json!("a#b#")),
            (r#"regex.split(",\\s*", "a, b,c")"#, json!(["a", "b", "c"])),
            (
                r#"regex.template_match("urn:foo:{.*}", "urn:foo:bar:baz", "{", "}")"#,
                json!(true),
            ),
            (
                r#"glob.match("*.example.com", ["."], "api.example.com")"#,
                json!(true),
            ),
            (
                r#"glob.match("*.example.com", ["."], "a.b.example.com")"#,
                json!(false),
            ),
            (
                r#"glob.quote_meta("*.github.com")"#,
                json!("\\*.github.com"),
            ),
            (
                r#"uuid.parse("f47ac10b-58cc-4372-a567-0e02b2c3d479").version"#,
                json!(4),
            ),
            (r#"count(uuid.rfc4122("seed"))"#, json!(36)),
            (r#"units.parse("10K")"#, json!(10_000)),
            (r#"units.parse_bytes("1KiB")"#, json!(1024)),
            (
                r#"graph.reachable({"a": ["b"], "b": ["c"], "c": [], "d": []}, ["a"])"#,
                json!(["a", "b", "c"]),
            ),
            (
                r#"graph.reachable_paths({"a": ["b"], "b": []}, ["a"])"#,
                json!([["a", "b"]]),
            ),
            ("time.now_ns() > 1600000000000000000", json!(true)),
            (r#"sprintf("%s/%d", ["a", 1])"#, json!("a/1")),
            (r#"base64url.decode("aGk")"#, json!("hi")),
            (r#"json.unmarshal("{\"a\": 1}").a"#, json!(1)),
            (r#"semver.compare("1.2.3", "1.10.0")"#, json!(-1)),
            (
                r#"urlquery.decode_object("a=1&a=2")"#,
                json!({"a": ["1", "2"]}),
            ),
        ];
        for (expr, expected) in cases {
            let source = format!("package t\nimport rego.v1\nv := {expr}\n");
            let out = eval(
                &[file("t.rego", &source)],
                json!({}),
                Some("data.t.v"),
                Stage::Request,
            )
            .unwrap_or_else(|e| panic!("{expr}: {e}"));
            assert_eq!(&out["value"], expected, "{expr}");
        }
    }
}
