//! Stage rules made only of comparisons between `input` fields and literals, decided without
//! the RVM.
//!
//! Most policies a security team writes for a data plane are of that shape (the seed policy:
//! a bucket name and a count over a threshold). The RVM's fixed cost per evaluation (resetting
//! the VM, the rule call, the result object) is most of the request's decision, so such a rule
//! is also kept as the list of its definitions' conditions and read straight from the input.
//!
//! Exactness comes first: a rule takes this path only if every definition of it has a constant
//! object as its value and a body of comparisons of an `input` reference with a string,
//! number or boolean literal (or a bare `input` reference, true when defined and not
//! `false`). At evaluation, anything whose answer would need Rego's finer rules (a value of
//! another type than the literal's, a set on the way) returns `None`, and the caller runs
//! the RVM, which gives its own answer or error. The differential tests below hold both
//! to the same verdicts, except where two definitions hold with different values: that is an
//! error here, as in OPA, where the RVM leaves the rule undefined.

use regorus::Value;
use regorus::unstable::{AssignOp, BoolOp, Expr, Literal, Module, Rule, RuleHead};

use crate::Verdict;

/// The longest rules taken natively: well within the RVM's default budget of 25,000
/// instructions a run, which a rule of this size uses a fraction of.
const MAX_DEFINITIONS: usize = 256;
const MAX_CONDITIONS: usize = 1024;

/// A stage rule in its native form.
#[derive(Debug)]
pub(crate) struct Native {
    definitions: Vec<Definition>,
}

/// One body of the rule with the rule's value.
#[derive(Debug)]
struct Definition {
    value: Value,
    verdict: Verdict,
    conditions: Vec<Condition>,
}

#[derive(Debug)]
enum Condition {
    Compare {
        path: Vec<Value>,
        op: BoolOp,
        literal: Scalar,
    },
    /// A bare reference: true when defined and not `false`.
    Truthy { path: Vec<Value> },
}

/// A literal, kept as the RVM holds it: comparisons use regorus's own ordering of values
/// (numbers compared exactly across integers, floats and big numbers), as the RVM does.
#[derive(Debug)]
enum Scalar {
    String(Value),
    Number(Value),
    Bool(bool),
}

impl Native {
    /// The native form of `rule` in `module`, if every definition of it has one. `verdict`
    /// turns the rule's value into the verdict exactly as an RVM result is turned; a value it
    /// refuses keeps the rule on the RVM, which reports it at every evaluation.
    pub(crate) fn of(
        module: &Module,
        rule: &str,
        verdict: impl Fn(&Value) -> Option<Verdict>,
    ) -> Option<Self> {
        let imports_allowed = module
            .imports
            .iter()
            .all(|i| matches!(root(&i.refr), Some("future" | "rego")));
        if !imports_allowed {
            return None;
        }
        let mut definitions = Vec::new();
        for r in &module.policy {
            let (head, bodies) = match &**r {
                Rule::Default { refr, .. } => {
                    if matches!(root(refr), Some(name) if name == rule || reserved(name)) {
                        return None;
                    }
                    continue;
                }
                Rule::Spec { head, bodies, .. } => (head, bodies),
            };
            let refr = match head {
                RuleHead::Compr { refr, .. }
                | RuleHead::Set { refr, .. }
                | RuleHead::Func { refr, .. } => refr,
            };
            match root(refr) {
                Some(name) if reserved(name) => return None,
                Some(name) if name == rule => {}
                Some(_) => continue,
                None => return None,
            }
            // Only `rule := <constant object>` (or `=`), not `rule.x`, a set or a function.
            let RuleHead::Compr {
                refr,
                assign: Some(assign),
                ..
            } = head
            else {
                return None;
            };
            if !matches!(&**refr, Expr::Var { .. })
                || !matches!(assign.op, AssignOp::ColEq | AssignOp::Eq)
            {
                return None;
            }
            let value = constant(&assign.value)?;
            let verdict = verdict(&value)?;
            if bodies.is_empty() {
                definitions.push(Definition {
                    value,
                    verdict,
                    conditions: Vec::new(),
                });
                continue;
            }
            for body in bodies {
                if body.is_else || body.assign.is_some() {
                    return None;
                }
                let conditions = body
                    .query
                    .stmts
                    .iter()
                    .map(|s| {
                        if !s.with_mods.is_empty() {
                            return None;
                        }
                        match &s.literal {
                            Literal::Expr { expr, .. } => condition(expr),
                            _ => None,
                        }
                    })
                    .collect::<Option<Vec<_>>>()?;
                definitions.push(Definition {
                    value: value.clone(),
                    verdict: verdict.clone(),
                    conditions,
                });
            }
        }
        // The RVM stops a run at its instruction budget; a rule this long stays on it, so the
        // answer (its error included) is the RVM's.
        let conditions: usize = definitions.iter().map(|d| d.conditions.len()).sum();
        if definitions.len() > MAX_DEFINITIONS || conditions > MAX_CONDITIONS {
            return None;
        }
        Some(Self { definitions })
    }

    /// The verdict on `input`, or `None` where the RVM must decide. Two definitions that hold
    /// with different values are an error, as in OPA (`eval_conflict_error`), so the policy's
    /// `on_error` applies; regorus's RVM leaves such a rule undefined, which would allow.
    pub(crate) fn decide(&self, input: &Value) -> Option<Result<Verdict, String>> {
        self.decide_on(|path| Some(lookup(input, path)?.map(Field::Value)))
    }

    /// [`Native::decide`] on whatever `field` reads: the value at a path of `input`, `None`
    /// where the RVM must decide, `Some(None)` where the path is undefined.
    pub(crate) fn decide_on<'a>(
        &self,
        field: impl Fn(&[Value]) -> Option<Option<Field<'a>>>,
    ) -> Option<Result<Verdict, String>> {
        let mut matched: Option<&Definition> = None;
        for d in &self.definitions {
            if !d.matches(&field)? {
                continue;
            }
            match matched {
                Some(m) if m.value != d.value => {
                    return Some(Err(format!(
                        "complete rule produced two values, {} and {}: Rego allows one \
                         (make the conditions exclusive, or use else)",
                        m.value, d.value
                    )));
                }
                Some(_) => {}
                None => matched = Some(d),
            }
        }
        Some(Ok(matched.map_or(Verdict::Allow, |d| d.verdict.clone())))
    }
}

/// A scalar of the input as the native form reads it: from the input's `Value`, or straight
/// from the request's facts, which the input would hold as a string or an unsigned number.
pub(crate) enum Field<'a> {
    Str(&'a str),
    Unsigned(u64),
    Value(&'a Value),
}

impl Definition {
    /// Whether every condition holds, in order, as the body's query is evaluated; `None`
    /// where a value is outside what this path compares.
    fn matches<'a>(&self, field: &impl Fn(&[Value]) -> Option<Option<Field<'a>>>) -> Option<bool> {
        for c in &self.conditions {
            let holds = match c {
                Condition::Truthy { path } => match field(path)? {
                    None | Some(Field::Value(Value::Bool(false))) => false,
                    Some(_) => true,
                },
                Condition::Compare { path, op, literal } => match field(path)? {
                    None => false,
                    Some(value) => compare(&value, op, literal)?,
                },
            };
            if !holds {
                return Some(false);
            }
        }
        Some(true)
    }
}

/// The value at `path` below `input`: `Some(None)` when undefined, `None` when a step is
/// neither an object nor a scalar (a set answers a key lookup in Rego: the RVM decides).
pub(crate) fn lookup<'a>(input: &'a Value, path: &[Value]) -> Option<Option<&'a Value>> {
    let mut at = input;
    for key in path {
        at = match at {
            Value::Object(fields) => match fields.get(key) {
                Some(v) => v,
                None => return Some(None),
            },
            Value::Set(_) | Value::Array(_) | Value::Undefined => return None,
            _ => return Some(None),
        };
    }
    (*at != Value::Undefined).then_some(Some(at))
}

fn compare(field: &Field<'_>, op: &BoolOp, literal: &Scalar) -> Option<bool> {
    let ordering = match (literal, field) {
        (Scalar::String(s), Field::Value(value @ Value::String(_))) => (*value).cmp(s),
        (Scalar::String(s), Field::Str(value)) => (*value).cmp(s.as_string().ok()?.as_ref()),
        (Scalar::Number(n), Field::Value(value @ Value::Number(_))) => (*value).cmp(n),
        (Scalar::Number(n), Field::Unsigned(value)) => Value::from(*value).cmp(n),
        (Scalar::Bool(b), Field::Value(Value::Bool(v)))
            if matches!(op, BoolOp::Eq | BoolOp::Ne) =>
        {
            v.cmp(b)
        }
        _ => return None,
    };
    Some(match op {
        BoolOp::Lt => ordering.is_lt(),
        BoolOp::Le => ordering.is_le(),
        BoolOp::Eq => ordering.is_eq(),
        BoolOp::Ge => ordering.is_ge(),
        BoolOp::Gt => ordering.is_gt(),
        BoolOp::Ne => ordering.is_ne(),
    })
}

/// A body statement as a condition: `<input ref> <op> <literal>`, either way round, or a bare
/// `input` reference.
fn condition(expr: &Expr) -> Option<Condition> {
    match expr {
        Expr::BoolExpr { op, lhs, rhs, .. } => {
            if let (Some(path), Some(literal)) = (input_path(lhs), scalar(rhs)) {
                return Some(Condition::Compare {
                    path,
                    op: op.clone(),
                    literal,
                });
            }
            let (literal, path) = (scalar(lhs)?, input_path(rhs)?);
            let op = match op {
                BoolOp::Lt => BoolOp::Gt,
                BoolOp::Le => BoolOp::Ge,
                BoolOp::Gt => BoolOp::Lt,
                BoolOp::Ge => BoolOp::Le,
                BoolOp::Eq => BoolOp::Eq,
                BoolOp::Ne => BoolOp::Ne,
            };
            Some(Condition::Compare { path, op, literal })
        }
        Expr::RefDot { .. } | Expr::RefBrack { .. } => Some(Condition::Truthy {
            path: input_path(expr)?,
        }),
        _ => None,
    }
}

/// The keys of `input.a.b["c"]` (`input` alone is not a field: the RVM keeps it).
fn input_path(expr: &Expr) -> Option<Vec<Value>> {
    let mut path = Vec::new();
    let mut at = expr;
    loop {
        match at {
            Expr::RefDot { refr, field, .. } => {
                path.push(field.1.clone());
                at = refr;
            }
            Expr::RefBrack { refr, index, .. } => {
                let (Expr::String { value, .. } | Expr::RawString { value, .. }) = &**index else {
                    return None;
                };
                path.push(value.clone());
                at = refr;
            }
            Expr::Var { value, .. } if value.as_string().ok()?.as_ref() == "input" => break,
            _ => return None,
        }
    }
    if path.is_empty() {
        return None;
    }
    path.reverse();
    Some(path)
}

fn scalar(expr: &Expr) -> Option<Scalar> {
    match expr {
        Expr::String { value, .. } | Expr::RawString { value, .. } => {
            Some(Scalar::String(value.clone()))
        }
        Expr::Number { value, .. } => Some(Scalar::Number(value.clone())),
        Expr::Bool { value, .. } => Some(Scalar::Bool(*value.as_bool().ok()?)),
        _ => None,
    }
}

/// A rule value made of literals only: an object of strings, numbers, booleans and null.
fn constant(expr: &Expr) -> Option<Value> {
    let Expr::Object { fields, .. } = expr else {
        return None;
    };
    let mut object = std::collections::BTreeMap::new();
    for (_, key, value) in fields {
        let (Expr::String { value: key, .. } | Expr::RawString { value: key, .. }) = &**key else {
            return None;
        };
        let value = match &**value {
            Expr::String { value, .. }
            | Expr::RawString { value, .. }
            | Expr::Number { value, .. }
            | Expr::Bool { value, .. }
            | Expr::Null { value, .. } => value.clone(),
            _ => return None,
        };
        // A repeated key is the compiler's to judge.
        if object.insert(key.clone(), value).is_some() {
            return None;
        }
    }
    Some(Value::from(object))
}

/// The variable a reference starts from (`pre_request` of `pre_request.x`).
fn root(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Var { value, .. } => value.as_string().ok().map(|s| &**s),
        Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } => root(refr),
        _ => None,
    }
}

/// Rules by these names would change what `input` and `data` mean: the RVM keeps them.
fn reserved(name: &str) -> bool {
    matches!(name, "input" | "data")
}

#[cfg(test)]
mod tests {
    use serde_json::{Value as Json, json};

    use crate::{Input, Policy, PolicyError, Stage, Verdict};

    const HEAD: &str = "package t\nimport future.keywords.if\n";

    fn policy(rules: &str) -> Policy {
        Policy::compile("t", &format!("{HEAD}{rules}\n")).unwrap()
    }

    /// Rules of the native shape, each with whether two of its definitions with different
    /// values can hold at once.
    const NATIVE: &[(&str, bool)] = &[
        // The seed policy's rule.
        (
            "pre_request := { \"action\": \"block\", \"type\": \"block_with_formal_message\" } if {\n  input.bucket.name == \"sensitive-bucket\"\n  input.bucket.access_count.last_minute > 5\n}",
            false,
        ),
        (
            r#"pre_request := {"action": "block", "type": "t"} if 5 < input.bucket.access_count.last_minute"#,
            false,
        ),
        (
            r#"pre_request := {"action": "block"} if { input.request.method >= "DELETE"; input.request.method != "GET" }"#,
            false,
        ),
        (
            r#"pre_request := {"action": "block"} if { input.request.method < "GET"; "DELETE" <= input.request.method }"#,
            false,
        ),
        (
            r#"pre_request := {"action": "block", "message": "admins only"} if input.user.admin != true"#,
            false,
        ),
        (
            r#"pre_request := {"action": "block"} if input.user.admin == false"#,
            false,
        ),
        (
            r#"pre_request := {"action": "allow"} if input.user.admin"#,
            false,
        ),
        (
            r#"pre_request := {"action": "block", "type": "freeze"} if input.request.headers["x-change"] == "freeze""#,
            false,
        ),
        (
            concat!(
                r#"pre_request := {"action": "block", "type": "a"} if input.bucket.name == "other""#,
                "\n",
                r#"pre_request := {"action": "block", "type": "a"} if input.bucket.access_count.last_minute >= 6"#
            ),
            false,
        ),
        (
            concat!(
                r#"pre_request := {"action": "block", "type": "a"} if input.bucket.name == "other""#,
                "\n",
                r#"pre_request := {"action": "block", "type": "b"} if input.bucket.access_count.last_minute <= 5"#
            ),
            true,
        ),
        (
            r#"pre_request := {"action": "block", "type": "always", "code": 7, "final": true, "note": null}"#,
            false,
        ),
        (r#"pre_request := {"action": "allow"}"#, false),
        (
            r#"pre_request := {"action": "block", "type": "float"} if input.bucket.access_count.last_minute > 5.5"#,
            false,
        ),
        (
            r#"pre_request := {"action": "block", "type": "huge"} if input.bucket.access_count.last_minute <= 170141183460469231731687303715884105727"#,
            false,
        ),
    ];

    /// Every combination of a few values per field: well-typed ones, absent ones and ones of
    /// other types than the rules' literals (a number for a name, a float, a string count).
    fn inputs() -> Vec<(Json, bool)> {
        let names = [(None, true), (Some(json!("sensitive-bucket")), true)]
            .into_iter()
            .chain([(Some(json!("other")), true), (Some(json!(5)), false)]);
        let counts = [
            (None, true),
            (Some(json!(0)), true),
            (Some(json!(5)), true),
            (Some(json!(6)), true),
            (Some(json!(6.0)), true),
            (Some(json!(5.5)), true),
            // 2^127 as a float: one past i128::MAX, where a conversion to integers saturates.
            (Some(json!(1.7014118346046923e38)), true),
            (Some(json!(u64::MAX)), true),
            (Some(json!("7")), false),
        ];
        let mut buckets = vec![(None, true), (Some(json!("a string")), true)];
        for (name, name_typed) in names {
            for (count, count_typed) in &counts {
                let mut bucket = serde_json::Map::new();
                if let Some(n) = &name {
                    bucket.insert("name".into(), n.clone());
                }
                if let Some(c) = count {
                    bucket.insert("access_count".into(), json!({ "last_minute": c }));
                }
                buckets.push((Some(Json::Object(bucket)), name_typed && *count_typed));
            }
        }
        let methods = [
            (None, true),
            (Some(json!("GET")), true),
            (Some(json!("DELETE")), true),
            (Some(json!(1)), false),
        ];
        let headers = [
            None,
            Some(json!({"x-change": "freeze"})),
            Some(json!({"x-change": "thaw"})),
        ];
        let admins = [
            (None, true),
            (Some(json!(true)), true),
            (Some(json!(false)), true),
            (Some(json!("yes")), false),
        ];
        let mut all = Vec::new();
        for (bucket, b_typed) in &buckets {
            for (method, m_typed) in &methods {
                for header in &headers {
                    for (admin, a_typed) in &admins {
                        let mut input = serde_json::Map::new();
                        if let Some(b) = bucket {
                            input.insert("bucket".into(), b.clone());
                        }
                        let mut request = serde_json::Map::new();
                        if let Some(m) = method {
                            request.insert("method".into(), m.clone());
                        }
                        if let Some(h) = header {
                            request.insert("headers".into(), h.clone());
                        }
                        input.insert("request".into(), Json::Object(request));
                        if let Some(a) = admin {
                            input.insert("user".into(), json!({ "admin": a }));
                        }
                        // A string `admin` is truthy in Rego; only comparisons defer it.
                        all.push((Json::Object(input), *b_typed && *m_typed && *a_typed));
                    }
                }
            }
        }
        all
    }

    #[test]
    fn native_rules_decide_as_the_rvm_does_on_every_input() {
        let inputs = inputs();
        assert!(inputs.len() > 1000, "{}", inputs.len());
        for (rules, may_conflict) in NATIVE {
            let p = policy(rules);
            assert!(p.is_native(Stage::Request), "not native: {rules}");
            let mut answered = 0;
            for (json, well_typed) in &inputs {
                let input = Input::from_json(json.clone());
                let (native, vm) = p.native_and_vm(Stage::Request, &input);
                match native {
                    Some(Ok(verdict)) => {
                        answered += 1;
                        assert_eq!(Ok(&verdict), vm.as_ref(), "{rules}\non {json}");
                    }
                    Some(Err(conflict)) => {
                        answered += 1;
                        assert!(*may_conflict, "{rules}\non {json}: {conflict}");
                        // The RVM's answer here: undefined, so allow.
                        assert_eq!(vm, Ok(Verdict::Allow), "{rules}\non {json}");
                    }
                    None => assert!(
                        !well_typed,
                        "{rules}\nleft a well-typed input to the RVM: {json}"
                    ),
                }
            }
            assert!(answered > inputs.len() / 3, "{rules}: {answered}");
        }
    }

    #[test]
    fn two_definitions_holding_with_different_values_are_an_error() {
        let (rules, _) = NATIVE
            .iter()
            .find(|(_, may_conflict)| *may_conflict)
            .unwrap();
        let p = policy(rules);
        let both = Input::from_json(json!({
            "bucket": {"name": "other", "access_count": {"last_minute": 1}}
        }));
        let err = p.evaluate(&both).unwrap_err();
        assert!(
            matches!(&err, PolicyError::Runtime { message, .. } if message.contains("two values")),
            "{err}"
        );
        let one = Input::from_json(json!({"bucket": {"name": "other"}}));
        assert_eq!(
            p.evaluate(&one).unwrap(),
            Verdict::Block {
                kind: "a".into(),
                message: None
            }
        );
    }

    #[test]
    fn rules_of_other_shapes_stay_on_the_rvm() {
        let others = [
            r#"pre_request := {"action": "block"} if not input.user.admin"#,
            r#"pre_request := {"action": "block"} if count(input.user.groups) > 3"#,
            r#"pre_request := {"action": "block"} if input.user.id == data.blocked.id"#,
            r#"pre_request := {"action": "block"} if input.request.method == input.user.method"#,
            r#"pre_request := {"action": "block"} if input.bucket.access_count.last_minute > 2 + 3"#,
            r#"pre_request := {"action": "block"} if { some g in input.user.groups; g == "x" }"#,
            r#"pre_request := {"action": "block"} if input.user.admin == null"#,
            r#"pre_request := {"action": "block"} if input == {}"#,
            "default pre_request := {\"action\": \"allow\"}\npre_request := {\"action\": \"block\"} if input.user.admin",
            "pre_request := {\"action\": \"block\"} if input.user.admin\nelse := {\"action\": \"allow\"}",
            r#"pre_request := {"action": "block", "type": input.user.id} if input.user.admin"#,
            r#"pre_request := {"action": "block", "tags": ["a"]} if input.user.admin"#,
            r#"pre_request := {"action": "maybe"} if input.user.admin"#,
            r#"pre_request if input.user.admin"#,
            r#"pre_request := x if { x := {"action": "block"}; input.user.admin }"#,
            "pre_request := {\"action\": \"block\"} if input.user.admin\ninput_copy := input\ndata_rule := 1\npre_response := {\"action\": \"block\"} if input.response.status == 500",
        ];
        for (i, rules) in others.iter().enumerate() {
            let p = policy(rules);
            // The last one is native at the request stage: other rules do not matter.
            assert_eq!(
                p.is_native(Stage::Request),
                i == others.len() - 1,
                "{rules}"
            );
        }
        // Past the bound, the rule stays on the RVM (its instruction budget decides).
        let long: String = (0..=super::MAX_DEFINITIONS)
            .map(|i| {
                format!(
                    "pre_request := {{\"action\": \"block\"}} if input.request.method == \"M{i}\"\n"
                )
            })
            .collect();
        assert!(!policy(&long).is_native(Stage::Request));
        let imports = Policy::compile(
            "t",
            "package t\nimport rego.v1\nimport input.user as u\npre_request := {\"action\": \"block\"} if u.admin\n",
        )
        .unwrap();
        assert!(!imports.is_native(Stage::Request));
        let response = policy(
            r#"pre_response := {"action": "block", "type": "error"} if input.response.status >= 500"#,
        );
        assert!(response.is_native(Stage::Response));
        let input = Input::from_json(json!({"response": {"status": 503}}));
        let (native, vm) = response.native_and_vm(Stage::Response, &input);
        assert_eq!(native.unwrap().unwrap(), vm.unwrap());
    }

    /// The request's facts read directly decide as the input built from them does, on every
    /// combination of a set of facts, for rules reading each kind of field.
    #[test]
    fn deciding_from_the_facts_agrees_with_the_input_they_make() {
        use crate::{NodeFacts, RequestFacts, Subject, Target, Windows};
        let rules: Vec<&str> = NATIVE
            .iter()
            .map(|(r, _)| *r)
            .chain([
                r#"pre_request := {"action": "block"} if input.bucket.global_access_count.last_minute > 2"#,
                r#"pre_request := {"action": "block"} if { input.request.body_size > 100; input.request.operation == "PutObject" }"#,
                r#"pre_request := {"action": "block"} if input.request.query.debug == "1""#,
                r#"pre_request := {"action": "block"} if input.request.key"#,
                r#"pre_request := {"action": "block"} if input.bucket.access_count.last_hour.x == 1"#,
                r#"pre_request := {"action": "block"} if input.request.source_ip != "10.0.0.7""#,
                r#"pre_request := {"action": "block"} if { input.resource.kind == "s3"; input.node.cluster == "eu" }"#,
                r#"pre_request := {"action": "block"} if input.user.attributes.clearance < 3"#,
                r#"pre_request := {"action": "block"} if input.bucket"#,
            ])
            .collect();
        let windows = Windows::new(&["last_minute".into(), "last_hour".into(), "last_day".into()]);
        let users = [
            Subject::from_json(json!({"id": "u", "admin": true, "attributes": {"clearance": 2}})),
            Subject::from_json(
                json!({"id": "u", "admin": "yes", "attributes": {"clearance": 2.5}}),
            ),
            Subject::new("u", &[]),
        ];
        let targets = [Target::new("reports", "s3"), Target::new("api", "http")];
        let node = NodeFacts::new("n1", "eu");
        let counts: [&[u64]; 3] = [&[0, 0, 0], &[6, 6, 6], &[5]];
        let headers: [&[(&str, &str)]; 3] = [
            &[],
            &[("x-change", "freeze")],
            &[("x-change", "thaw"), ("x-change", "freeze")],
        ];
        let queries: [&[(&str, &str)]; 2] = [&[], &[("debug", "1")]];
        let (mut answered, mut total) = (0, 0);
        for rules in &rules {
            let p = policy(rules);
            for bucket in [None, Some("sensitive-bucket"), Some("other")] {
                for counts in counts {
                    for global in [None, Some(&[3u64, 3, 3][..])] {
                        for (method, operation, body_size) in [
                            ("GET", None, None),
                            ("PUT", Some("PutObject"), Some(500)),
                            ("DELETE", Some("DeleteObject"), Some(5)),
                        ] {
                            for headers in headers {
                                for query in queries {
                                    for user in &users {
                                        for resource in &targets {
                                            let facts = RequestFacts {
                                                bucket,
                                                windows: &windows,
                                                counts,
                                                global_counts: global,
                                                user,
                                                method,
                                                path: "/reports/a",
                                                operation,
                                                key: bucket.map(|_| "a"),
                                                source_ip: Some("10.0.0.7"),
                                                resource,
                                                headers,
                                                query,
                                                body_size,
                                                node: &node,
                                                bytes_read: None,
                                                bytes_written: None,
                                            };
                                            total += 1;
                                            let Some(direct) = p.decide_request(&facts) else {
                                                continue;
                                            };
                                            answered += 1;
                                            let input = Input::request(&facts);
                                            let (native, vm) =
                                                p.native_and_vm(Stage::Request, &input);
                                            let on_input =
                                                native.expect("the input is decided too");
                                            match (&direct, &on_input) {
                                                (Ok(a), Ok(b)) => {
                                                    assert_eq!(a, b, "{rules}");
                                                    assert_eq!(Ok(a), vm.as_ref(), "{rules}");
                                                }
                                                (Err(_), Err(_)) => {}
                                                _ => panic!(
                                                    "{rules}: {direct:?} against {on_input:?}"
                                                ),
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        // Only the float clearance, the string `admin` and `input.bucket` itself go to the RVM.
        assert!(answered * 10 > total * 8, "{answered} of {total}");
    }
}
