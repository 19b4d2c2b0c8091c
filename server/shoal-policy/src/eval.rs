//! Evaluating policies on the request path: each policy is compiled once per config revision
//! into a regorus RVM program per stage it defines; a request takes a VM from that stage's
//! pool, sets the input, runs, and puts the VM back. No parsing, compiling or engine
//! construction per request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use regorus::Value;
use regorus::rvm::{Program, RegoVM};

use crate::native::{Field, Native};
use crate::{PolicyError, Stage};

/// Upper bound on one policy run: a runaway policy is an error (and fails closed), never a
/// stuck request.
pub const EVAL_TIME_LIMIT: Duration = Duration::from_millis(50);

/// VMs kept per policy: enough for every worker thread to find one idle.
const POOL_MAX: usize = 64;

/// The request as policies see it (`input`), converted once and shared by every policy.
#[derive(Clone)]
pub struct Input(Value);

/// What the data plane knows about a request, in the shape policies read (the seed example's):
/// `input.bucket.{name, access_count.<window>}`, `input.user.{id, groups}`,
/// `input.request.{method, path, operation, key, source_ip}`, `input.resource.{name, kind}`.
/// The parts that do not change per request ([`Subject`], [`Target`], [`Windows`]) are built
/// once per config revision.
#[derive(Clone, Copy)]
pub struct RequestFacts<'a> {
    pub bucket: Option<&'a str>,
    pub windows: &'a Windows,
    /// The key's cluster-wide count per window, in the order of `windows`.
    pub counts: &'a [u64],
    /// `input.bucket.global_access_count`, when a policy reads it: the count across regions
    /// a global limit compares with.
    pub global_counts: Option<&'a [u64]>,
    pub user: &'a Subject,
    pub method: &'a str,
    pub path: &'a str,
    pub operation: Option<&'a str>,
    /// The S3 object key.
    pub key: Option<&'a str>,
    pub source_ip: Option<&'a str>,
    pub resource: &'a Target,
    /// `input.request.headers`: lower-cased names, credentials and signatures left out by the
    /// caller; empty when no policy reads them.
    pub headers: &'a [(&'a str, &'a str)],
    /// `input.request.query`: decoded parameters, the first value of each name.
    pub query: &'a [(&'a str, &'a str)],
    /// `input.request.body_size`: the declared size of an upload, when it has one.
    pub body_size: Option<u64>,
    /// `input.node`.
    pub node: &'a NodeFacts,
    /// `input.bucket.bytes_read` and `.bytes_written` per window, when a policy reads them:
    /// what the key's body bytes came to, an upload's declared size included.
    pub bytes_read: Option<&'a [u64]>,
    pub bytes_written: Option<&'a [u64]>,
}

impl<'a> RequestFacts<'a> {
    /// The scalar at `path` of the input these facts make, read without making it (for
    /// [`Policy::decide_request`]): `Some(None)` where the input would have nothing, `None`
    /// for a path that ends at an object (the RVM decides those).
    fn field(&self, path: &[Value]) -> Option<Option<Field<'a>>> {
        fn name(v: &Value) -> Option<&str> {
            v.as_string().ok().map(|s| &**s)
        }
        let (part, rest) = path.split_first()?;
        let (key, below) = rest.split_first()?;
        let text = |v: Option<&'a str>| {
            Some(if below.is_empty() {
                v.map(Field::Str)
            } else {
                None
            })
        };
        let number = |v: Option<u64>| {
            Some(if below.is_empty() {
                v.map(Field::Unsigned)
            } else {
                None
            })
        };
        let value = |v: &'a Value| Some(crate::native::lookup(v, rest)?.map(Field::Value));
        match name(part)? {
            "bucket" => match name(key)? {
                "name" => text(self.bucket),
                "access_count" => self.window(below, Some(self.counts)),
                "global_access_count" => self.window(below, self.global_counts),
                "bytes_read" => self.window(below, self.bytes_read),
                "bytes_written" => self.window(below, self.bytes_written),
                _ => Some(None),
            },
            "request" => match name(key)? {
                "method" => text(Some(self.method)),
                "path" => text(Some(self.path)),
                "operation" => text(self.operation),
                "key" => text(self.key),
                "source_ip" => text(self.source_ip),
                "body_size" => number(self.body_size),
                "headers" => Self::pair(below, self.headers),
                "query" => Self::pair(below, self.query),
                _ => Some(None),
            },
            "user" => value(&self.user.0),
            "resource" => value(&self.resource.0),
            "node" => value(&self.node.0),
            _ => Some(None),
        }
    }

    /// A window's count, as `per_window` would hold it.
    fn window(&self, below: &[Value], counts: Option<&'a [u64]>) -> Option<Option<Field<'a>>> {
        let (window, deeper) = below.split_first()?;
        let Some(counts) = counts else {
            return Some(None);
        };
        let at = self
            .windows
            .0
            .iter()
            .zip(counts)
            .find(|(w, _)| *w == window);
        Some(match (at, deeper.is_empty()) {
            (Some((_, count)), true) => Some(Field::Unsigned(*count)),
            _ => None,
        })
    }

    /// A header or query parameter, as `pairs` would hold it (the last of a repeated name).
    fn pair(below: &[Value], pairs: &'a [(&'a str, &'a str)]) -> Option<Option<Field<'a>>> {
        let (wanted, deeper) = below.split_first()?;
        let wanted = wanted.as_string().ok()?;
        let found = pairs.iter().rev().find(|(name, _)| *name == &**wanted);
        Some(match (found, deeper.is_empty()) {
            (Some((_, value)), true) => Some(Field::Str(value)),
            _ => None,
        })
    }
}

/// What the response stage adds to the request's input: `input.response`, and the byte
/// counts with the response's own size counted.
#[derive(Clone, Copy)]
pub struct ResponseFacts<'a> {
    pub status: u16,
    /// `Content-Length`, when the upstream sent one.
    pub size: Option<u64>,
    pub content_type: Option<&'a str>,
    /// Lower-cased names, cookies left out by the caller.
    pub headers: &'a [(&'a str, &'a str)],
    /// S3's user metadata (`x-amz-meta-NAME`), by `NAME`.
    pub metadata: &'a [(&'a str, &'a str)],
    /// `input.bucket.bytes_read` per window with this response counted, when counted.
    pub bytes_read: Option<&'a [u64]>,
}

/// `input.node`, prepared once: the node deciding, and the cluster it counts in.
#[derive(Clone)]
pub struct NodeFacts(Value);

impl NodeFacts {
    pub fn new(name: &str, cluster: &str) -> Self {
        Self(Value::from(
            serde_json::json!({"name": name, "cluster": cluster}),
        ))
    }
}

/// `input.user`, prepared.
#[derive(Clone)]
pub struct Subject(Value);

impl Subject {
    /// A user as the control plane describes it (`id`, `groups`, `email`, `type`,
    /// `attributes`), converted once per config revision.
    pub fn from_json(user: serde_json::Value) -> Self {
        Self(Value::from(user))
    }

    pub fn new(id: &str, groups: &[String]) -> Self {
        let k = &*KEYS;
        let groups = Value::from(
            groups
                .iter()
                .map(|g| Value::from(g.as_str()))
                .collect::<Vec<_>>(),
        );
        Self(object([
            (k.id.clone(), Value::from(id)),
            (k.groups.clone(), groups),
        ]))
    }
}

/// `input.resource`, prepared.
#[derive(Clone)]
pub struct Target(Value);

impl Target {
    /// A resource as the control plane describes it (`name`, `kind`, `environment`, `tags`),
    /// converted once per config revision.
    pub fn from_json(resource: serde_json::Value) -> Self {
        Self(Value::from(resource))
    }

    pub fn new(name: &str, kind: &str) -> Self {
        let k = &*KEYS;
        Self(object([
            (k.name.clone(), Value::from(name)),
            (k.kind.clone(), Value::from(kind)),
        ]))
    }
}

/// The counting windows' names (`last_minute`, ...), prepared.
#[derive(Clone)]
pub struct Windows(Vec<Value>);

impl Windows {
    pub fn new(names: &[String]) -> Self {
        Self(names.iter().map(|n| Value::from(n.as_str())).collect())
    }
}

/// Object keys, built once: the request path only bumps reference counts.
struct Keys {
    bucket: Value,
    name: Value,
    access_count: Value,
    global_access_count: Value,
    user: Value,
    id: Value,
    groups: Value,
    request: Value,
    method: Value,
    path: Value,
    operation: Value,
    key: Value,
    source_ip: Value,
    resource: Value,
    kind: Value,
    headers: Value,
    query: Value,
    body_size: Value,
    node: Value,
    bytes_read: Value,
    bytes_written: Value,
    response: Value,
    status: Value,
    size: Value,
    content_type: Value,
    metadata: Value,
}

static KEYS: std::sync::LazyLock<Keys> = std::sync::LazyLock::new(|| Keys {
    bucket: Value::from("bucket"),
    name: Value::from("name"),
    access_count: Value::from("access_count"),
    global_access_count: Value::from("global_access_count"),
    user: Value::from("user"),
    id: Value::from("id"),
    groups: Value::from("groups"),
    request: Value::from("request"),
    method: Value::from("method"),
    path: Value::from("path"),
    operation: Value::from("operation"),
    key: Value::from("key"),
    source_ip: Value::from("source_ip"),
    resource: Value::from("resource"),
    kind: Value::from("kind"),
    headers: Value::from("headers"),
    query: Value::from("query"),
    body_size: Value::from("body_size"),
    node: Value::from("node"),
    bytes_read: Value::from("bytes_read"),
    bytes_written: Value::from("bytes_written"),
    response: Value::from("response"),
    status: Value::from("status"),
    size: Value::from("size"),
    content_type: Value::from("content_type"),
    metadata: Value::from("metadata"),
});

/// `pairs` as an object of strings.
fn pairs(pairs: &[(&str, &str)]) -> Value {
    object(
        pairs
            .iter()
            .map(|(name, value)| (Value::from(*name), Value::from(*value))),
    )
}

/// A total per window, by the windows' names.
fn per_window(windows: &Windows, counts: &[u64]) -> Value {
    object(
        windows
            .0
            .iter()
            .zip(counts)
            .map(|(w, c)| (w.clone(), Value::from(*c))),
    )
}

fn object(fields: impl IntoIterator<Item = (Value, Value)>) -> Value {
    Value::from(
        fields
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
}

/// Which top-level parts of `input` a revision's policies read. The request input is built on
/// every request, and its parts cost allocations (the `request` object alone holds five
/// strings), so a part no policy names is left out, as OPA leaves an undefined field: a
/// policy reading it would get undefined, but a policy that names it gets it built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputParts {
    bucket: bool,
    user: bool,
    request: bool,
    resource: bool,
    node: bool,
}

impl InputParts {
    pub const ALL: Self = Self {
        bucket: true,
        user: true,
        request: true,
        resource: true,
        node: true,
    };

    /// The parts `sources` name (as a word anywhere: a comment that names one costs only
    /// the building). A policy that uses `input` other than through a field (`input[k]`,
    /// `walk(input)`, `import input`, passing it whole) reads every part.
    pub fn read_by<'a>(sources: impl IntoIterator<Item = &'a str>) -> Self {
        static WHOLE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(r"\binput(\z|[^.\w])").expect("a valid pattern")
        });
        let mut parts = Self {
            bucket: false,
            user: false,
            request: false,
            resource: false,
            node: false,
        };
        for source in sources {
            if WHOLE.is_match(source) {
                return Self::ALL;
            }
            let names = |word: &str| {
                source
                    .match_indices(word)
                    .any(|(at, _)| is_word(source, at, word.len()))
            };
            parts.bucket |= names("bucket");
            parts.user |= names("user");
            parts.request |= names("request");
            parts.resource |= names("resource");
            parts.node |= names("node");
        }
        parts
    }
}

/// Whether `source[at..at + len]` stands as a word of its own.
fn is_word(source: &str, at: usize, len: usize) -> bool {
    let word_char = |c: char| c.is_alphanumeric() || c == '_';
    !source[..at].chars().next_back().is_some_and(word_char)
        && !source[at + len..].chars().next().is_some_and(word_char)
}

impl Input {
    /// Any JSON document as `input` (tests, tools); the data plane uses [`Input::request`].
    pub fn from_json(json: serde_json::Value) -> Self {
        Self(Value::from(json))
    }

    /// The request input, built directly (no JSON in between: it is on every request).
    pub fn request(f: &RequestFacts<'_>) -> Self {
        Self::request_parts(f, InputParts::ALL)
    }

    /// [`Input::request`] with only the `parts` the revision's policies read.
    pub fn request_parts(f: &RequestFacts<'_>, parts: InputParts) -> Self {
        let k = &*KEYS;
        let mut top = Vec::with_capacity(5);
        if parts.user {
            top.push((k.user.clone(), f.user.0.clone()));
        }
        if parts.resource {
            top.push((k.resource.clone(), f.resource.0.clone()));
        }
        if parts.node {
            top.push((k.node.clone(), f.node.0.clone()));
        }
        if parts.bucket {
            top.push((k.bucket.clone(), Self::bucket(f)));
        }
        if parts.request {
            top.push((k.request.clone(), Self::request_object(f)));
        }
        Self(object(top))
    }

    fn bucket(f: &RequestFacts<'_>) -> Value {
        let k = &*KEYS;
        let per_window = |counts: &[u64]| per_window(f.windows, counts);
        let mut bucket = vec![(k.access_count.clone(), per_window(f.counts))];
        if let Some(global) = f.global_counts {
            bucket.push((k.global_access_count.clone(), per_window(global)));
        }
        if let Some(read) = f.bytes_read {
            bucket.push((k.bytes_read.clone(), per_window(read)));
        }
        if let Some(written) = f.bytes_written {
            bucket.push((k.bytes_written.clone(), per_window(written)));
        }
        if let Some(name) = f.bucket {
            bucket.push((k.name.clone(), Value::from(name)));
        }
        object(bucket)
    }

    fn request_object(f: &RequestFacts<'_>) -> Value {
        let k = &*KEYS;
        let mut request = vec![
            (k.method.clone(), Value::from(f.method)),
            (k.path.clone(), Value::from(f.path)),
        ];
        if let Some(op) = f.operation {
            request.push((k.operation.clone(), Value::from(op)));
        }
        if let Some(key) = f.key {
            request.push((k.key.clone(), Value::from(key)));
        }
        if let Some(ip) = f.source_ip {
            request.push((k.source_ip.clone(), Value::from(ip)));
        }
        // Absent when empty (a policy reading them gets undefined, as for a missing
        // header): the seed policy's decision does not pay for two empty objects.
        if !f.headers.is_empty() {
            request.push((k.headers.clone(), pairs(f.headers)));
        }
        if !f.query.is_empty() {
            request.push((k.query.clone(), pairs(f.query)));
        }
        if let Some(size) = f.body_size {
            request.push((k.body_size.clone(), Value::from(size)));
        }
        object(request)
    }

    /// The response stage's input: this request's input with `input.response`, and
    /// `input.bucket.bytes_read` as it stands with the response counted.
    pub fn response(&self, windows: &Windows, f: &ResponseFacts<'_>) -> Self {
        let k = &*KEYS;
        let mut response = vec![(k.status.clone(), Value::from(u64::from(f.status)))];
        if let Some(size) = f.size {
            response.push((k.size.clone(), Value::from(size)));
        }
        if let Some(content_type) = f.content_type {
            response.push((k.content_type.clone(), Value::from(content_type)));
        }
        response.push((k.headers.clone(), pairs(f.headers)));
        response.push((k.metadata.clone(), pairs(f.metadata)));
        let mut input = self.0.clone();
        // Objects are shared: changing this copy clones the top level and the bucket's
        // fields, never the request's input.
        if let Ok(fields) = input.as_object_mut() {
            fields.insert(k.response.clone(), object(response));
            if let (Some(read), Some(bucket)) = (f.bytes_read, fields.get_mut(&k.bucket))
                && let Ok(bucket) = bucket.as_object_mut()
            {
                bucket.insert(k.bytes_read.clone(), per_window(windows, read));
            }
        }
        Self(input)
    }
}

/// What one policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Block {
        /// `type` from the policy's result (e.g. `block_with_formal_message`), `block` if none.
        kind: String,
        message: Option<String>,
    },
}

/// The data documents of a revision as policies read them (`data.<name>`), converted once and
/// shared by every policy of the revision.
#[derive(Clone, Default)]
pub struct PolicyData(Option<Value>);

impl PolicyData {
    /// `documents`: document name to its JSON.
    pub fn from_json(documents: serde_json::Map<String, serde_json::Value>) -> Self {
        if documents.is_empty() {
            Self(None)
        } else {
            Self(Some(Value::from(serde_json::Value::Object(documents))))
        }
    }
}

/// A policy ready to evaluate.
pub struct Policy {
    name: String,
    data: PolicyData,
    /// One program per stage the policy defines, each with its pool of VMs.
    stages: Vec<(Stage, Compiled)>,
}

struct Compiled {
    program: Arc<Program>,
    /// The rule read straight from the input, when it is made of comparisons only; the
    /// program stays for what this form leaves to the RVM.
    native: Option<Native>,
    vms: Mutex<Vec<RegoVM>>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("name", &self.name).finish()
    }
}

impl Policy {
    /// Checks (see [`crate::check`]) and compiles the policy's entry point to an RVM program.
    pub fn compile(name: &str, source: &str) -> Result<Self, PolicyError> {
        Self::compile_with_data(name, source, PolicyData::default())
    }

    /// [`Policy::compile`] for a revision with data documents: the policy reads them as
    /// `data.<name>`.
    pub fn compile_with_data(
        name: &str,
        source: &str,
        data: PolicyData,
    ) -> Result<Self, PolicyError> {
        // The check compiles the very programs the data plane runs: kept, not built twice.
        let (_, programs) = crate::compile(name, &format!("{name}.rego"), source)?;
        Ok(Self {
            name: name.to_string(),
            data,
            stages: programs
                .into_iter()
                .map(|(stage, program, native)| {
                    let vms = Mutex::new(Vec::new());
                    (
                        stage,
                        Compiled {
                            program,
                            native,
                            vms,
                        },
                    )
                })
                .collect(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the policy has a rule for `stage`: the data plane skips the stage's work when
    /// no policy has.
    pub fn defines(&self, stage: Stage) -> bool {
        self.stages.iter().any(|(s, _)| *s == stage)
    }

    /// Runs the policy's request stage on `input` (allow if it defines none).
    pub fn evaluate(&self, input: &Input) -> Result<Verdict, PolicyError> {
        self.evaluate_at(Stage::Request, input)
    }

    /// The request stage decided straight from `facts`, without building the input, when
    /// the policy's rule is native ([`crate::native`]) and the facts are of the types it
    /// compares; `None` otherwise: then [`Policy::evaluate`] on the input decides.
    pub fn decide_request(&self, facts: &RequestFacts<'_>) -> Option<Result<Verdict, PolicyError>> {
        let Some((_, compiled)) = self.stages.iter().find(|(s, _)| *s == Stage::Request) else {
            return Some(Ok(Verdict::Allow));
        };
        let decided = compiled
            .native
            .as_ref()?
            .decide_on(|path| facts.field(path))?;
        Some(decided.map_err(|message| self.runtime(message)))
    }

    /// Runs the policy's rule for `stage` on `input`; a stage the policy does not define
    /// allows. An error (a runtime failure, a result that is not an allow/block object, the
    /// time limit) is returned for the caller to apply `on_error` to.
    pub fn evaluate_at(&self, stage: Stage, input: &Input) -> Result<Verdict, PolicyError> {
        let Some((_, compiled)) = self.stages.iter().find(|(s, _)| *s == stage) else {
            return Ok(Verdict::Allow);
        };
        if let Some(decided) = compiled.native.as_ref().and_then(|n| n.decide(&input.0)) {
            return decided.map_err(|message| self.runtime(message));
        }
        self.evaluate_on_vm(stage, compiled, input)
    }

    /// The stage's program run on a pooled VM: every rule the native form leaves.
    fn evaluate_on_vm(
        &self,
        stage: Stage,
        compiled: &Compiled,
        input: &Input,
    ) -> Result<Verdict, PolicyError> {
        let pooled = compiled.vms.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut vm = match pooled {
            Some(vm) => vm,
            None => self.vm(&compiled.program)?,
        };
        vm.set_input(input.0.clone());
        let result = vm.execute();
        let mut pool = compiled.vms.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL_MAX {
            pool.push(vm);
        }
        drop(pool);
        let value = result.map_err(|e| self.runtime(e.to_string()))?;
        self.verdict(stage, &value)
    }

    /// What the native form and the RVM each answer for `stage` on `input` (`None`: no
    /// native form, or it left the answer to the RVM).
    #[cfg(test)]
    pub(crate) fn native_and_vm(
        &self,
        stage: Stage,
        input: &Input,
    ) -> (
        Option<Result<Verdict, String>>,
        Result<Verdict, PolicyError>,
    ) {
        let (_, compiled) = self
            .stages
            .iter()
            .find(|(s, _)| *s == stage)
            .expect("the stage is defined");
        let native = compiled.native.as_ref().and_then(|n| n.decide(&input.0));
        (native, self.evaluate_on_vm(stage, compiled, input))
    }

    #[cfg(test)]
    pub(crate) fn is_native(&self, stage: Stage) -> bool {
        self.stages
            .iter()
            .any(|(s, c)| *s == stage && c.native.is_some())
    }

    /// A VM for one of this policy's programs, with the revision's data documents.
    fn vm(&self, program: &Arc<Program>) -> Result<RegoVM, PolicyError> {
        let mut vm = RegoVM::new();
        vm.load_program(program.clone());
        vm.set_execution_timer_config(Some(regorus::utils::limits::ExecutionTimerConfig {
            limit: EVAL_TIME_LIMIT,
            check_interval: std::num::NonZeroU32::new(64).expect("non-zero"),
        }));
        if let Some(data) = &self.data.0 {
            vm.set_data(data.clone())
                .map_err(|e| self.runtime(format!("data documents: {e}")))?;
        }
        Ok(vm)
    }

    fn runtime(&self, message: String) -> PolicyError {
        PolicyError::Runtime {
            name: self.name.clone(),
            message,
        }
    }

    fn verdict(&self, stage: Stage, value: &Value) -> Result<Verdict, PolicyError> {
        verdict(stage, value).map_err(|message| self.runtime(message))
    }
}

static RESULT_KEYS: std::sync::LazyLock<[Value; 3]> =
    std::sync::LazyLock::new(|| ["action", "type", "message"].map(Value::from));

/// A stage rule's value as the verdict: undefined allows; otherwise an object whose `action`
/// is `allow` or `block`.
pub(crate) fn verdict(stage: Stage, value: &Value) -> Result<Verdict, String> {
    if *value == Value::Undefined {
        return Ok(Verdict::Allow);
    }
    let [action, kind, message] = &*RESULT_KEYS;
    let field = |key: &Value| -> Option<String> {
        value
            .as_object()
            .ok()?
            .get(key)
            .and_then(|v| v.as_string().ok().map(|s| s.to_string()))
    };
    match field(action).as_deref() {
        Some("allow") => Ok(Verdict::Allow),
        Some("block") => Ok(Verdict::Block {
            kind: field(kind).unwrap_or_else(|| "block".to_string()),
            message: field(message),
        }),
        _ => Err(format!(
            "{} must be an object with \"action\": \"allow\" or \"block\", got {value}",
            stage.rule()
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::tests::SEED;

    fn input(bucket: &str, last_minute: u64) -> Input {
        Input::from_json(json!({
            "bucket": {"name": bucket, "access_count": {"last_minute": last_minute, "last_hour": last_minute}},
            "user": {"id": "alice", "groups": []},
            "request": {"method": "GET", "operation": "GetObject"},
        }))
    }

    #[test]
    fn the_seed_policy_blocks_the_sixth_access() {
        let p = Policy::compile("seed", SEED).unwrap();
        assert_eq!(
            p.evaluate(&input("sensitive-bucket", 5)).unwrap(),
            Verdict::Allow
        );
        assert_eq!(
            p.evaluate(&input("sensitive-bucket", 6)).unwrap(),
            Verdict::Block {
                kind: "block_with_formal_message".into(),
                message: None
            }
        );
        assert_eq!(p.evaluate(&input("other", 60)).unwrap(), Verdict::Allow);
    }

    #[test]
    fn the_request_input_has_the_seed_shape() {
        let p = Policy::compile("seed", SEED).unwrap();
        let windows = Windows::new(&["last_minute".to_string(), "last_hour".to_string()]);
        let counts: Vec<[u64; 2]> = (0..7).map(|c| [c, c + 10]).collect();
        let (alice, reports) = (Subject::new("alice", &[]), Target::new("reports", "s3"));
        let node = NodeFacts::new("n1", "eu");
        let facts = |count: u64| RequestFacts {
            headers: &[("x-tenant", "acme")],
            query: &[],
            body_size: Some(7),
            node: &node,
            bytes_read: None,
            bytes_written: Some(&[7, 7]),
            bucket: Some("sensitive-bucket"),
            windows: &windows,
            counts: &counts[count as usize],
            global_counts: None,
            user: &alice,
            method: "GET",
            path: "/sensitive-bucket/a.csv",
            operation: Some("GetObject"),
            key: Some("reports/q3.csv"),
            source_ip: Some("10.0.0.1"),
            resource: &reports,
        };
        assert_eq!(
            p.evaluate(&Input::request(&facts(5))).unwrap(),
            Verdict::Allow
        );
        assert!(matches!(
            p.evaluate(&Input::request(&facts(6))).unwrap(),
            Verdict::Block { .. }
        ));
        let echo = Policy::compile(
            "echo",
            "package e
pre_request := {\"action\": \"block\", \"message\": sprintf(\"%s %s %s %s %d\", [input.user.id, input.request.operation, input.request.key, input.resource.kind, input.bucket.access_count.last_hour])}\n",
        )
        .unwrap();
        assert_eq!(
            echo.evaluate(&Input::request(&facts(1))).unwrap(),
            Verdict::Block {
                kind: "block".into(),
                message: Some("alice GetObject reports/q3.csv s3 11".into())
            }
        );
        let detail = Policy::compile(
            "detail",
            "package d
pre_request := {\"action\": \"block\", \"message\": sprintf(\"%s %d %s %s\", [input.request.headers[\"x-tenant\"], input.request.body_size, input.node.name, input.node.cluster])}\n",
        )
        .unwrap();
        assert_eq!(
            detail.evaluate(&Input::request(&facts(1))).unwrap(),
            Verdict::Block {
                kind: "block".into(),
                message: Some("acme 7 n1 eu".into())
            }
        );
    }

    #[test]
    fn the_response_stage_sees_the_request_the_response_and_the_bytes_counted() {
        let windows = Windows::new(&["last_minute".to_string()]);
        let (alice, reports) = (Subject::new("alice", &[]), Target::new("reports", "s3"));
        let node = NodeFacts::new("n1", "eu");
        let request = Input::request(&RequestFacts {
            headers: &[],
            query: &[],
            body_size: None,
            node: &node,
            bytes_read: Some(&[100]),
            bytes_written: None,
            bucket: Some("b"),
            windows: &windows,
            counts: &[1],
            global_counts: None,
            user: &alice,
            method: "GET",
            path: "/b/k",
            operation: Some("GetObject"),
            key: Some("k"),
            source_ip: None,
            resource: &reports,
        });
        let facts = ResponseFacts {
            status: 200,
            size: Some(50),
            content_type: Some("text/csv"),
            headers: &[("etag", "\"abc\"")],
            metadata: &[("classification", "secret")],
            bytes_read: Some(&[150]),
        };
        let response = request.response(&windows, &facts);
        let p = Policy::compile(
            "echo",
            r#"package echo
pre_response := {"action": "block", "message": sprintf("%s %s %d %d %s %s %s %d", [
  input.user.id, input.request.operation, input.response.status, input.response.size,
  input.response.content_type, input.response.headers.etag,
  input.response.metadata.classification, input.bucket.bytes_read.last_minute])}
"#,
        )
        .unwrap();
        assert!(p.defines(Stage::Response) && !p.defines(Stage::Request));
        assert_eq!(
            p.evaluate_at(Stage::Response, &response).unwrap(),
            Verdict::Block {
                kind: "block".into(),
                message: Some("alice GetObject 200 50 text/csv \"abc\" secret 150".into())
            }
        );
        // The request stage of a response-only policy allows, and the request's own input is
        // untouched by building the response's.
        assert_eq!(p.evaluate(&request).unwrap(), Verdict::Allow);
        let reads = Policy::compile(
            "reads",
            "package r\npre_request := {\"action\": \"block\", \"message\": sprintf(\"%d\", [input.bucket.bytes_read.last_minute])} if not input.response\n",
        )
        .unwrap();
        assert_eq!(
            reads.evaluate(&request).unwrap(),
            Verdict::Block {
                kind: "block".into(),
                message: Some("100".into())
            }
        );
    }

    #[test]
    fn a_response_rule_that_fails_is_an_error_naming_its_stage() {
        let p = Policy::compile("odd", "package o\npre_response := 42\n").unwrap();
        let err = p
            .evaluate_at(Stage::Response, &Input::from_json(json!({})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pre_response must be an object"), "{err}");
    }

    #[test]
    fn only_the_parts_of_the_input_policies_name_are_built() {
        let parts = InputParts::read_by([SEED]);
        assert_eq!(
            parts,
            InputParts {
                bucket: true,
                user: false,
                request: false,
                resource: false,
                node: false,
            }
        );
        let both =
            InputParts::read_by([SEED, "package p\npre_request if input.user.id == \"a\"\n"]);
        assert!(both.bucket && both.user && !both.request);
        // Words, not substrings: `users` in a data path is not `user`.
        assert!(!InputParts::read_by(["x := data.users.nodes"]).user);
        // `input` used whole reads everything.
        for whole in [
            "pre_request if walk(input, [p, v])",
            "pre_request if input[k] == 1",
            "import input\n",
            "x := input",
        ] {
            assert_eq!(InputParts::read_by([whole]), InputParts::ALL, "{whole}");
        }
        // A part left out is undefined, as in OPA: the seed policy decides as before.
        let p = Policy::compile("seed", SEED).unwrap();
        let windows = Windows::new(&["last_minute".to_string()]);
        let (alice, reports) = (Subject::new("alice", &[]), Target::new("reports", "s3"));
        let node = NodeFacts::new("n1", "eu");
        let facts = RequestFacts {
            headers: &[],
            query: &[],
            body_size: None,
            node: &node,
            bytes_read: None,
            bytes_written: None,
            bucket: Some("sensitive-bucket"),
            windows: &windows,
            counts: &[6],
            global_counts: None,
            user: &alice,
            method: "GET",
            path: "/",
            operation: None,
            key: None,
            source_ip: None,
            resource: &reports,
        };
        let input = Input::request_parts(&facts, parts);
        assert!(matches!(p.evaluate(&input).unwrap(), Verdict::Block { .. }));
        let reads_user = Policy::compile(
            "u",
            "package u\npre_request := {\"action\": \"block\"} if not input.user\n",
        )
        .unwrap();
        assert!(matches!(
            reads_user.evaluate(&input).unwrap(),
            Verdict::Block { .. }
        ));
    }

    #[test]
    fn policies_read_the_revisions_data_documents() {
        let rego = r#"package tiers
import future.keywords.if
import future.keywords.in
pre_request := {"action": "block", "type": "not-listed"} if {
  not input.user.id in data.allowlist.users
}
"#;
        let data = |users: serde_json::Value| {
            PolicyData::from_json(
                json!({"allowlist": {"users": users}})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
        };
        let as_user = |id: &str| Input::from_json(json!({"user": {"id": id}}));
        let p = Policy::compile_with_data("tiers", rego, data(json!(["ana"]))).unwrap();
        assert_eq!(p.evaluate(&as_user("ana")).unwrap(), Verdict::Allow);
        assert!(matches!(
            p.evaluate(&as_user("bob")).unwrap(),
            Verdict::Block { .. }
        ));
        let p = Policy::compile_with_data("tiers", rego, data(json!(["ana", "bob"]))).unwrap();
        assert_eq!(p.evaluate(&as_user("bob")).unwrap(), Verdict::Allow);
    }

    #[test]
    fn messages_and_cidr_builtins_work() {
        let p = Policy::compile(
            "net",
            r#"package net_rules
pre_request := {"action": "block", "type": "network", "message": "outside the office"} if {
  not net.cidr_contains("10.0.0.0/8", input.request.source_ip)
}
"#,
        )
        .unwrap();
        let from = |ip: &str| Input::from_json(json!({"request": {"source_ip": ip}}));
        assert_eq!(p.evaluate(&from("10.1.2.3")).unwrap(), Verdict::Allow);
        assert_eq!(
            p.evaluate(&from("192.0.2.1")).unwrap(),
            Verdict::Block {
                kind: "network".into(),
                message: Some("outside the office".into())
            }
        );
    }

    #[test]
    fn runtime_failures_and_bad_results_are_errors_naming_the_policy() {
        let p = Policy::compile(
            "divides",
            "package d\npre_request := {\"action\": \"block\"} if { 1 / input.n > 0 }\n",
        )
        .unwrap();
        let zero = Input::from_json(json!({"n": 0}));
        // Division by zero: an error or undefined (OPA's non-strict mode), never a panic and
        // never a block.
        assert!(!matches!(p.evaluate(&zero), Ok(Verdict::Block { .. })));
        assert!(matches!(
            p.evaluate(&Input::from_json(json!({"n": 1}))),
            Ok(Verdict::Block { .. })
        ));
        let odd = Policy::compile("odd", "package o\npre_request := 42\n").unwrap();
        let err = odd.evaluate(&zero).unwrap_err().to_string();
        assert!(err.contains("\"odd\"") && err.contains("42"), "{err}");
    }

    #[test]
    fn vms_are_reused_across_threads() {
        let p = Arc::new(Policy::compile("seed", SEED).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for i in 0..500u64 {
                        let expect_block = (i + t) % 2 == 0;
                        let n = if expect_block { 6 } else { 5 };
                        let v = p.evaluate(&input("sensitive-bucket", n)).unwrap();
                        assert_eq!(matches!(v, Verdict::Block { .. }), expect_block);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(p.stages[0].1.vms.lock().unwrap().len() <= 4);
    }
}
