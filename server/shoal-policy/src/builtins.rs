//! The OPA built-ins a Shoal policy cannot call, and why.
//!
//! regorus 0.14 with its default features (`full-opa`, the workspace's choice) implements most
//! of OPA's built-ins, but not all; the data plane runs its RVM, which knows only regorus's own
//! table (functions added with `Engine::add_extension` reach the interpreter, not the RVM), and
//! does not compile `print` or `walk`. Two built-ins it does have are refused on purpose:
//! `http.send` (a stub that answers undefined, and a network call from the data plane in OPA)
//! and `opa.runtime`. A call to any of them is refused at write time by name, so a policy
//! never stores fine and then fails or silently allows on every request. docs/policies.md has
//! the whole table; keep the two in step.

use std::sync::Arc;

use regorus::CompiledPolicy;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::Program;

use crate::PolicyError;

/// Why a built-in is refused; its text completes "policy "x" calls NAME, ...".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// OPA has it, regorus does not.
    NotProvided,
    /// OPA deprecated it (and refuses it in Rego v1); regorus does not have it either.
    Deprecated,
    /// It reaches the network: a decision must not wait on, or leak to, another service.
    Network,
    /// It describes the evaluating process rather than the request.
    Runtime,
    /// regorus's interpreter has it but its RVM, the data plane's evaluator, does not compile it.
    NotCompiled,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotProvided => "which this version of Shoal does not provide",
            Self::Deprecated => "which OPA deprecated and this version of Shoal does not provide",
            Self::Network => {
                "which Shoal refuses: a policy must not make network calls from the data plane"
            }
            Self::Runtime => {
                "which Shoal refuses: it describes the evaluating process (in OPA, its \
                 configuration and environment), which a decision must neither depend on nor \
                 reveal"
            }
            Self::NotCompiled => {
                "which the data plane's compiled evaluator does not support (`shoal policy test` \
                 runs it, on the interpreter)"
            }
        })
    }
}

use Unavailable::*;

/// Every OPA built-in (OPA 1.x capabilities, operators aside) a policy cannot call here.
pub(crate) const UNAVAILABLE: &[(&str, Unavailable)] = &[
    ("all", Deprecated),
    ("any", Deprecated),
    ("array.flatten", NotProvided),
    ("cast_array", Deprecated),
    ("cast_boolean", Deprecated),
    ("cast_null", Deprecated),
    ("cast_object", Deprecated),
    ("cast_set", Deprecated),
    ("cast_string", Deprecated),
    ("crypto.hmac.equal", NotProvided),
    ("crypto.hmac.md5", NotProvided),
    ("crypto.hmac.sha1", NotProvided),
    ("crypto.hmac.sha256", NotProvided),
    ("crypto.hmac.sha512", NotProvided),
    ("crypto.md5", NotProvided),
    ("crypto.parse_private_keys", NotProvided),
    ("crypto.sha1", NotProvided),
    ("crypto.sha256", NotProvided),
    ("crypto.x509.parse_and_verify_certificates", NotProvided),
    (
        "crypto.x509.parse_and_verify_certificates_with_options",
        NotProvided,
    ),
    ("crypto.x509.parse_certificate_request", NotProvided),
    ("crypto.x509.parse_certificates", NotProvided),
    ("crypto.x509.parse_keypair", NotProvided),
    ("crypto.x509.parse_rsa_private_key", NotProvided),
    ("graphql.is_valid", NotProvided),
    ("graphql.parse", NotProvided),
    ("graphql.parse_and_verify", NotProvided),
    ("graphql.parse_query", NotProvided),
    ("graphql.parse_schema", NotProvided),
    ("graphql.schema_is_valid", NotProvided),
    ("http.send", Network),
    ("io.jwt.decode", NotProvided),
    ("io.jwt.decode_verify", NotProvided),
    ("io.jwt.encode_sign", NotProvided),
    ("io.jwt.encode_sign_raw", NotProvided),
    ("io.jwt.verify_eddsa", NotProvided),
    ("io.jwt.verify_es256", NotProvided),
    ("io.jwt.verify_es384", NotProvided),
    ("io.jwt.verify_es512", NotProvided),
    ("io.jwt.verify_hs256", NotProvided),
    ("io.jwt.verify_hs384", NotProvided),
    ("io.jwt.verify_hs512", NotProvided),
    ("io.jwt.verify_ps256", NotProvided),
    ("io.jwt.verify_ps384", NotProvided),
    ("io.jwt.verify_ps512", NotProvided),
    ("io.jwt.verify_rs256", NotProvided),
    ("io.jwt.verify_rs384", NotProvided),
    ("io.jwt.verify_rs512", NotProvided),
    ("net.cidr_contains_matches", NotProvided),
    ("net.cidr_intersects", NotProvided),
    ("net.cidr_merge", NotProvided),
    ("net.cidr_overlap", Deprecated),
    ("net.lookup_ip_addr", Network),
    ("opa.runtime", Runtime),
    ("print", NotCompiled),
    ("providers.aws.sign_req", NotProvided),
    ("re_match", Deprecated),
    ("regex.globs_match", NotProvided),
    ("rego.metadata.chain", NotProvided),
    ("rego.metadata.rule", NotProvided),
    ("rego.parse_module", NotProvided),
    ("set_diff", Deprecated),
    ("strings.render_template", NotProvided),
    ("strings.split_n", NotProvided),
    ("uri.is_valid", NotProvided),
    ("uri.parse", NotProvided),
    ("walk", NotCompiled),
];

pub(crate) fn unavailable(builtin: &str) -> Option<Unavailable> {
    UNAVAILABLE
        .iter()
        .find(|(name, _)| *name == builtin)
        .map(|&(_, why)| why)
}

/// Compiles `entrypoint` to the RVM program the data plane runs, refusing by name any
/// built-in in [`UNAVAILABLE`] that the program would call. The RVM compiler sees exactly
/// the rules and functions the entry point reaches, after import aliases and local functions
/// have been resolved, so a local function that shares a built-in's name is not refused.
pub(crate) fn program(
    name: &str,
    compiled: &CompiledPolicy,
    entrypoint: &str,
) -> Result<Arc<Program>, PolicyError> {
    let refuse = |builtin: &str, reason| PolicyError::UnavailableBuiltin {
        name: name.to_string(),
        builtin: builtin.to_string(),
        reason,
    };
    let program = Compiler::compile_from_policy(compiled, &[entrypoint]).map_err(|e| {
        let text = e.to_string();
        match missing(&text).and_then(|b| unavailable(b).map(|why| (b, why))) {
            Some((builtin, why)) => refuse(builtin, why),
            None => crate::compile_error(name, text),
        }
    })?;
    if let Some((builtin, why)) = program
        .builtin_info_table
        .iter()
        .find_map(|b| unavailable(&b.name).map(|why| (&b.name, why)))
    {
        return Err(refuse(builtin, why));
    }
    Ok(program)
}

/// The function a failed RVM compile could not call, from its message: the compiler names an
/// unknown function in a typed error, but wraps it in a general one (keeping only the text)
/// when the call sits inside another expression; it names `print` when it cannot resolve it
/// and says so when it meets `walk`. The innermost (last) mention is the cause.
fn missing(text: &str) -> Option<&str> {
    const NAMED: [(&str, &str); 4] = [
        ("Unknown function: '", "'"),
        ("Unknown builtin function: ", "\n"),
        ("Not a builtin function: ", "\n"),
        ("Missing builtin function: ", "\n"),
    ];
    let named = NAMED
        .iter()
        .filter_map(|(before, after)| {
            let at = text.rfind(before)? + before.len();
            let rest = &text[at..];
            Some((at, &rest[..rest.find(after).unwrap_or(rest.len())]))
        })
        .max_by_key(|&(at, _)| at)
        .map(|(_, name)| name.trim());
    named.or_else(|| text.contains("walk loops are not").then_some("walk"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use regorus::languages::rego::compiler::CompilerError;

    use super::*;
    use crate::{Input, Policy, Verdict, check};

    /// A policy whose entry point calls `call`.
    fn calling(call: &str) -> String {
        format!(
            "package b\nimport rego.v1\npre_request := {{\"action\": \"block\"}} if {{\n  x := {call}\n  x != 0\n}}\n"
        )
    }

    fn call_of(builtin: &str) -> String {
        match builtin {
            "opa.runtime" => "opa.runtime()".to_string(),
            "http.send" => {
                r#"http.send({"method": "get", "url": "http://127.0.0.1:1/"})"#.to_string()
            }
            "print" => r#"print("x")"#.to_string(),
            "walk" => r#"[p | walk({"a": 1}, [p, _])]"#.to_string(),
            other => format!("{other}(\"x\")"),
        }
    }

    /// Every refused built-in, called from the entry point, is refused by `check` with a
    /// message naming it, giving the reason and pointing to the docs.
    #[test]
    fn every_unavailable_builtin_is_refused_at_write_time_by_name() {
        for &(builtin, why) in UNAVAILABLE {
            let err = check("uses", &calling(&call_of(builtin))).unwrap_err();
            assert_eq!(
                err,
                PolicyError::UnavailableBuiltin {
                    name: "uses".into(),
                    builtin: builtin.into(),
                    reason: why
                },
                "{builtin}"
            );
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("policy \"uses\" calls {builtin}, which "))
                    && text.ends_with("(docs/policies.md, \"Built-ins\")"),
                "{text}"
            );
        }
    }

    #[test]
    fn the_brief_s_example_message_reads_as_documented() {
        let err = check("x", &calling(r#"io.jwt.decode_verify("t", {})"#)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "policy \"x\" calls io.jwt.decode_verify, which this version of Shoal does not \
             provide (docs/policies.md, \"Built-ins\")"
        );
        let err = check("net", &calling(&call_of("http.send"))).unwrap_err();
        assert!(
            err.to_string()
                .contains("a policy must not make network calls from the data plane"),
            "{err}"
        );
    }

    /// Refused deep down too: in a helper rule or function the entry point uses.
    #[test]
    fn a_builtin_reached_through_helpers_is_refused() {
        let source = "package b\nimport rego.v1\nclaims(t) := io.jwt.decode(t)\nuser := claims(input.token)[1].sub\npre_request := {\"action\": \"block\"} if user == \"x\"\n";
        assert!(matches!(
            check("deep", source),
            Err(PolicyError::UnavailableBuiltin { builtin, .. }) if builtin == "io.jwt.decode"
        ));
    }

    /// What regorus does with an unknown function, either way: its interpreter's compile step
    /// (all `check` ran before) accepts the call and only its evaluation fails, at request
    /// time; the RVM compiler fails at once. `check` now runs the latter, so a typo is a compile
    /// error naming the function and its position, not an error on every request.
    #[test]
    fn an_unknown_function_fails_the_rvm_compile_but_only_the_interpreter_s_evaluation() {
        let source = "package u\npre_request := lowerr(\"X\")\n";
        let mut engine = regorus::Engine::new();
        engine.add_policy("u.rego".into(), source.into()).unwrap();
        let compiled = engine
            .compile_with_entrypoint(&"data.u.pre_request".into())
            .expect("the interpreter's compile step does not resolve calls");
        let at_eval = engine
            .eval_rule("data.u.pre_request".into())
            .unwrap_err()
            .to_string();
        assert!(
            at_eval.contains("could not find function lowerr"),
            "{at_eval}"
        );
        let at_compile =
            Compiler::compile_from_policy(&compiled, &["data.u.pre_request"]).unwrap_err();
        assert!(
            matches!(&at_compile.error, CompilerError::UnknownFunction { name } if name == "lowerr")
        );

        let err = check("u", source).unwrap_err();
        let PolicyError::Compile { message, .. } = &err else {
            panic!("{err}")
        };
        assert!(
            message.contains("u.rego:2:22") && message.contains("Unknown function: 'lowerr'"),
            "{message}"
        );
    }

    /// The same for a built-in OPA has and regorus lacks: refused by name at write time; had
    /// one reached a node (a row written by hand in SQL), the node's compile refuses it too,
    /// so its requests are refused, never decided without the policy.
    #[test]
    fn an_unavailable_builtin_never_reaches_a_request() {
        let source = calling(r#"io.jwt.decode("t")"#);
        assert!(matches!(
            check("jwt", &source),
            Err(PolicyError::UnavailableBuiltin { .. })
        ));
        assert!(Policy::compile("jwt", &source).is_err());
    }

    /// regorus's `http.send` is a stub answering undefined: without the refusal, a policy that
    /// blocks when a service says so would store fine and never block.
    #[test]
    fn http_send_compiles_in_regorus_and_is_refused_by_shoal() {
        let source = calling(&call_of("http.send"));
        let mut engine = regorus::Engine::new();
        engine.add_policy("h.rego".into(), source.clone()).unwrap();
        let compiled = engine
            .compile_with_entrypoint(&"data.b.pre_request".into())
            .unwrap();
        let program = Compiler::compile_from_policy(&compiled, &["data.b.pre_request"]).unwrap();
        assert!(
            program
                .builtin_info_table
                .iter()
                .any(|b| b.name == "http.send")
        );
        assert!(matches!(
            check("h", &source),
            Err(PolicyError::UnavailableBuiltin {
                reason: Network,
                ..
            })
        ));
    }

    /// A function of the policy's own that shares a built-in's name is the policy's, not
    /// refused.
    #[test]
    fn a_local_function_named_like_a_refused_builtin_is_not_refused() {
        let source = "package b\nimport rego.v1\nprint(x) := x\npre_request := {\"action\": \"block\", \"message\": print(\"own\")}\n";
        let p = Policy::compile("own", source).unwrap();
        assert_eq!(
            p.evaluate(&Input::from_json(json!({}))).unwrap(),
            Verdict::Block {
                kind: "block".into(),
                message: Some("own".into())
            }
        );
    }

    /// Extensions reach regorus's interpreter but not its RVM: why the missing built-ins are
    /// refused rather than provided as extensions.
    #[test]
    fn extensions_do_not_reach_the_rvm() {
        let mut engine = regorus::Engine::new();
        engine
            .add_extension(
                "io.jwt.decode".into(),
                1,
                Box::new(|_: Vec<regorus::Value>| Ok(regorus::Value::from(7))),
            )
            .unwrap();
        engine
            .add_policy(
                "e.rego".into(),
                "package e\npre_request := io.jwt.decode(\"t\")\n".into(),
            )
            .unwrap();
        assert_eq!(
            engine.eval_rule("data.e.pre_request".into()).unwrap(),
            regorus::Value::from(7)
        );
        let compiled = engine
            .compile_with_entrypoint(&"data.e.pre_request".into())
            .unwrap();
        let err = Compiler::compile_from_policy(&compiled, &["data.e.pre_request"]).unwrap_err();
        assert!(
            matches!(&err.error, CompilerError::UnknownFunction { name } if name == "io.jwt.decode")
        );
    }

    /// The table lists only what regorus really lacks or Shoal refuses: a name regorus has
    /// is there only when refused on purpose or not compiled by the RVM.
    #[test]
    fn the_table_agrees_with_regorus() {
        let has = |name: &str| regorus::unstable::BUILTINS.contains_key(name);
        for &(name, why) in UNAVAILABLE {
            match why {
                Network | Runtime => assert!(
                    has(name) || name == "net.lookup_ip_addr",
                    "{name}: refused on purpose but absent"
                ),
                NotCompiled => {}
                NotProvided | Deprecated => {
                    assert!(!has(name), "{name} is provided by regorus now")
                }
            }
        }
    }
}
