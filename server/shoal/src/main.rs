//! `shoal`: run a node, check its config, manage the control plane from the command line.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use shoal_cluster::{GossipErrors, GossipLogFilter};
use shoal_config::{ClusterConfig, DiscoveryMethod, HttpConfig, LogFormat, NodeConfig};
use shoal_control_plane::Store;
use shoal_model::{Enforcement, OnError, OnUnreachable, Policy, Resource};

/// The request path allocates and frees a few dozen small blocks per request on two or more
/// threads; mimalloc's thread-local free lists take about a third of the instructions glibc's
/// arenas do for that (docs/benchmarks.md, issue 24).
#[global_allocator]
static HEAP: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for a configuration the operator must fix (as in sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(name = "shoal", version, about = "Clustered policy connector")]
struct Cli {
    /// Bootstrap config file (TOML). Every key can also come from a SHOAL_* variable.
    #[arg(long, short, global = true, env = "SHOAL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: follow the control plane, serve health, readiness and the admin API.
    Serve,
    /// Validate a config file and the environment without starting anything.
    CheckConfig {
        /// The file to check (defaults to --config).
        file: Option<PathBuf>,
    },
    /// Apply pending database migrations (nodes also do this at start unless disabled).
    Migrate,
    /// Print the version.
    Version,
    /// Print as JSON the names and values deployment artifacts must agree with: every SHOAL_*
    /// variable and the key it sets, the secret variables, the discovery methods, the
    /// permissions discovery needs and the default ports (read by scripts/check-deploy).
    Constants,
    /// Manage admin accounts for the console and admin API.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Manage Rego policies, and test and evaluate them offline.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage protected resources.
    #[command(subcommand)]
    Resource(ResourceCommand),
    /// Manage data-plane users and their credentials.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the data documents policies read as `data.<name>`.
    #[command(subcommand)]
    Data(DataCommand),
}

#[derive(Subcommand)]
enum DataCommand {
    /// Create or replace a document from a JSON file (`-` for standard input).
    Apply {
        name: String,
        #[arg(long)]
        file: PathBuf,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a document.
    Delete { name: String },
    /// List documents as JSON.
    List,
}

#[derive(Args)]
struct PasswordSource {
    /// Read the password from this file (first line).
    #[arg(long, conflicts_with_all = ["password_stdin", "generate"])]
    password_file: Option<PathBuf>,
    /// Read the password from standard input (first line).
    #[arg(long, conflicts_with = "generate")]
    password_stdin: bool,
    /// Generate a random password and print it once on standard output.
    #[arg(long)]
    generate: bool,
}

#[derive(Args)]
struct AdminArgs {
    /// Login name: letters, digits, '@', '.', '_' or '-'.
    #[arg(long)]
    username: String,
    #[command(flatten)]
    password: PasswordSource,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin account.
    Create(AdminArgs),
    /// Set a new password; ends the admin's sessions on every node.
    ResetPassword(AdminArgs),
}

/// Flags every `apply` command shares.
#[derive(Args)]
struct CommonFlags {
    /// Store it disabled.
    #[arg(long)]
    disabled: bool,
    /// Free text shown in listings and the console.
    #[arg(long, default_value = "")]
    description: String,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Create or replace a policy from a Rego file; it must compile to be stored.
    Apply {
        name: String,
        /// Rego source file.
        #[arg(long)]
        file: PathBuf,
        #[arg(long, default_value = "eventual", value_parser = ["eventual", "strict"])]
        enforcement: String,
        /// When the policy fails on a request: refuse it (block) or skip the policy (allow).
        #[arg(long, default_value = "block", value_parser = ["block", "allow"])]
        on_error: String,
        /// While this node cannot reach every cluster member: decide from this node's counts
        /// (local), refuse every request the policy governs (deny), or read the counts scaled
        /// by members / reachable members (share).
        #[arg(long, default_value = "local", value_parser = ["local", "deny", "share"])]
        on_unreachable: String,
        /// Evaluate and audit the policy as "would block", never enforce it (a dark launch);
        /// apply again without it to enforce.
        #[arg(long)]
        shadow: bool,
        #[command(flatten)]
        common: CommonFlags,
    },
    /// Delete a policy.
    Delete { name: String },
    /// List policies as JSON.
    List,
    /// Run the rules named test_* in the files (policies and their tests), like `opa test`;
    /// offline: no config, no database. Exits 1 unless every test passes.
    Test {
        /// Rego files: policies and test files, loaded together.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Only the tests whose full name (data.PACKAGE.test_NAME) matches this regular
        /// expression.
        #[arg(long, value_name = "REGEX")]
        run: Option<String>,
    },
    /// Print as JSON the verdict the data plane takes from the policies' rules for a stage
    /// (pre_request, or pre_response with --stage response) for an input, or with
    /// --entrypoint the value of one rule; offline: no config, no database.
    Eval {
        /// Rego files: each a policy; with --entrypoint, any modules loaded together.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The request as policies see it (`input`), a JSON file.
        #[arg(long, value_name = "FILE.json")]
        input: PathBuf,
        /// A rule to evaluate instead of the verdict, e.g. data.formal.v2.pre_request.
        #[arg(long, value_name = "data.PACKAGE.RULE")]
        entrypoint: Option<String>,
        /// The stage to evaluate: request (pre_request) or response (pre_response).
        #[arg(long, default_value = "request", value_parser = |s: &str| s.parse::<shoal_policy::Stage>())]
        stage: shoal_policy::Stage,
    },
}

#[derive(Subcommand)]
enum ResourceCommand {
    /// Create or replace a resource.
    Apply {
        name: String,
        /// Kind-specific settings as JSON, e.g. '{"kind":"s3","endpoint":"https://s3.example"}',
        /// or `@FILE` to read them from a file (`@-`: standard input). Use a file for an S3
        /// resource's `upstream_credentials.secret_access_key`: command lines are visible to
        /// every user of the machine.
        #[arg(long)]
        spec: String,
        #[command(flatten)]
        common: CommonFlags,
    },
    /// Delete a resource.
    Delete { name: String },
    /// List resources as JSON.
    List,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create or update a user (its profile replaced by the flags given).
    Apply {
        name: String,
        /// `input.user.email`.
        #[arg(long)]
        email: Option<String>,
        /// `input.user.type`.
        #[arg(long = "type", default_value = "human", value_parser = ["human", "machine"])]
        kind: String,
        /// `input.user.groups` (repeat for several).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// `input.user.attributes`: a JSON object.
        #[arg(long)]
        attributes: Option<String>,
        #[command(flatten)]
        common: CommonFlags,
    },
    /// Delete a user and all their credentials.
    Delete { name: String },
    /// List users and their credential ids as JSON.
    List,
    /// Issue a credential; its secret is printed once and never stored in clear.
    AddKey {
        name: String,
        #[arg(long, value_parser = ["api_key", "s3"])]
        kind: String,
    },
    /// Revoke a credential by its key id.
    DeleteKey { key_id: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("shoal {}", shoal::VERSION);
            ExitCode::SUCCESS
        }
        Command::Constants => match print_json(&constants()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        // Authoring tools: before any config is read or database reached.
        Command::Policy(PolicyCommand::Test { files, run }) => {
            offline(policy_test(&files, run.as_deref()))
        }
        Command::Policy(PolicyCommand::Eval {
            files,
            input,
            entrypoint,
            stage,
        }) => offline(policy_eval(&files, &input, entrypoint.as_deref(), stage).map(|()| true)),
        Command::CheckConfig { ref file } => {
            let path = file.clone().or(cli.config.clone());
            match shoal_config::load(path.as_deref()) {
                Ok(config) => {
                    let clusters: Vec<String> = config
                        .enabled_clusters()
                        .map(|c| format!("{} on {}", c.name, c.bind))
                        .collect();
                    println!(
                        "config OK: node {} listens on {}, database {}, cluster{} {}",
                        config.node_name,
                        config.http.listen,
                        shoal_control_plane::describe_url(
                            config.control_plane.database_url().expose()
                        ),
                        if clusters.len() == 1 { "" } else { "s" },
                        clusters.join(", ")
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("config error:\n{e}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        command => {
            let config = match shoal_config::load(cli.config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("config error:\n{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let serving = matches!(command, Command::Serve);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            // Telemetry first: the log subscriber takes its trace layer.
            let prepared = if serving {
                let _runtime = runtime.enter();
                match shoal::prepare(&config) {
                    Ok(p) => Some(p),
                    Err(e) if e.is::<shoal::Unusable>() => {
                        eprintln!("error: {e}");
                        return ExitCode::from(EXIT_CONFIG);
                    }
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                None
            };
            let (gossip_errors, log_level) =
                match init_logs(&config, prepared.as_ref().map(shoal::Prepared::telemetry)) {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                };
            if serving {
                exit_on_panic();
            }
            let node = prepared.map(|p| (p, log_level));
            match runtime.block_on(dispatch(command, config, node, gossip_errors)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    if serving {
                        tracing::error!("fatal: {e:#}");
                    }
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Exit status of an offline tool: 0 when it succeeded, 1 when it found a failure or could
/// not run (the reason on stderr).
fn offline(outcome: anyhow::Result<bool>) -> ExitCode {
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn read_rego_files(files: &[PathBuf]) -> anyhow::Result<Vec<shoal_policy::SourceFile>> {
    files
        .iter()
        .map(|path| {
            Ok(shoal_policy::SourceFile {
                path: path.display().to_string(),
                source: read_source(path)?,
            })
        })
        .collect()
}

/// Whether every test passed; a run that selects no test has not.
fn policy_test(files: &[PathBuf], run: Option<&str>) -> anyhow::Result<bool> {
    let tests = shoal_policy::run_tests(&read_rego_files(files)?, run)?;
    print!("{tests}");
    if tests.results.is_empty() {
        bail!(
            "no tests: no rule named test_* in the files{}",
            run.map(|r| format!(" matches --run {r:?}"))
                .unwrap_or_default()
        );
    }
    Ok(tests.failed() == 0)
}

fn policy_eval(
    files: &[PathBuf],
    input: &Path,
    entrypoint: Option<&str>,
    stage: shoal_policy::Stage,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("cannot read --input {}", input.display()))?;
    let input_json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("--input {} is not valid JSON", input.display()))?;
    print_json(&shoal_policy::eval(
        &read_rego_files(files)?,
        input_json,
        entrypoint,
        stage,
    )?)
}

/// What `shoal constants` prints, taken from the tables the node itself reads (the CLI's
/// definition, shoal-config's overrides and secrets, shoal-discovery's permissions and the
/// config defaults), so that the deployment checks compare against the code and not a copy.
fn constants() -> serde_json::Value {
    use clap::CommandFactory as _;
    use serde_json::json;
    let cli_env: Vec<String> = Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|var| var.to_string_lossy().into_owned())
        .collect();
    let overrides = shoal_config::ENV_OVERRIDES;
    let env_overrides: Vec<_> = overrides
        .iter()
        .map(|o| json!({ "var": o.var, "key": o.key }))
        .collect();
    // A secret's `*_FILE` variable is the override of its file key, where there is one.
    let secrets: Vec<_> = shoal_config::SECRET_ENV
        .iter()
        .map(|&(var, file_key)| {
            let file_var = overrides.iter().find(|o| o.key == file_key).map(|o| o.var);
            json!({ "var": var, "file_key": file_key, "file_var": file_var })
        })
        .collect();
    json!({
        "version": shoal::VERSION,
        "cli_env": cli_env,
        "env_overrides": env_overrides,
        "secrets": secrets,
        "discovery_methods": DiscoveryMethod::ALL.map(DiscoveryMethod::as_str),
        "ecs_iam_actions": shoal_discovery::ECS_IAM_ACTIONS,
        "kubernetes_pod_verbs": shoal_discovery::KUBERNETES_POD_VERBS,
        "cluster_env_prefix": shoal_config::CLUSTER_ENV_PREFIX,
        "ports": {
            "http": HttpConfig::default().listen.port(),
            "gossip": ClusterConfig::default().bind.port(),
        },
    })
}

/// Panic policy: a panic anywhere in a node is a bug that may have left state half-updated, so
/// the node logs it and exits (code 101) for the orchestrator to replace it; a new process
/// starts clean from PostgreSQL or the config snapshot.
fn exit_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("panic, exiting: {info}");
        default(info);
        std::process::exit(101);
    }));
}

/// A node logs at the configured level (changeable at run time through the admin API); CLI
/// commands only print warnings and errors, to stderr, so their stdout stays machine-readable.
fn init_logs(
    config: &NodeConfig,
    telemetry: Option<&shoal_telemetry::Telemetry>,
) -> Result<(GossipErrors, shoal_telemetry::LogLevel), shoal_telemetry::TelemetryError> {
    let serving = telemetry.is_some();
    let (gossip_filter, gossip_errors) = GossipLogFilter::new();
    let level = shoal_telemetry::init_logs(
        &shoal_telemetry::LogOptions {
            level: if serving {
                config.log.level.as_str()
            } else {
                "warn"
            },
            json: config.log.format == LogFormat::Json,
            stderr: !serving,
        },
        gossip_filter,
        telemetry,
    )?;
    Ok((gossip_errors, level))
}

/// `node` is what `serve` needs beyond the config: the prepared node and its log level.
async fn dispatch(
    command: Command,
    config: NodeConfig,
    node: Option<(shoal::Prepared, shoal_telemetry::LogLevel)>,
    gossip_errors: GossipErrors,
) -> anyhow::Result<()> {
    if let Some((prepared, log_level)) = node {
        let node = prepared.with_logs(log_level, gossip_errors);
        return shoal::run(config, node, shutdown_signal()).await;
    }
    let store = connect_store(&config).await?;
    match command {
        Command::Migrate => {
            let applied = shoal_control_plane::migrate(store.pool()).await?;
            println!(
                "applied {applied} migration(s); schema has {}",
                shoal_control_plane::known_migrations()
            );
        }
        Command::Admin(cmd) => admin(cmd, &store).await?,
        Command::Policy(cmd) => policy(cmd, &store).await?,
        Command::Resource(cmd) => resource(cmd, &store).await?,
        Command::User(cmd) => user(cmd, &store).await?,
        Command::Data(cmd) => data(cmd, &store).await?,
        Command::Serve | Command::CheckConfig { .. } | Command::Version | Command::Constants => {
            unreachable!()
        }
    }
    Ok(())
}

/// CLI commands talk to PostgreSQL directly with the node's own config: they are for
/// operators who hold the database credentials, and they run the same validation as the API.
async fn connect_store(config: &NodeConfig) -> anyhow::Result<Store> {
    let pool = shoal_control_plane::pool(&config.control_plane, "shoal-cli")?;
    let store = Store::new(
        pool,
        config.control_plane.secrets_key().cloned(),
        format!("cli@{}", config.node_name),
    );
    if config.control_plane.migrate_on_start {
        shoal_control_plane::migrate(store.pool())
            .await
            .with_context(|| {
                format!(
                    "cannot prepare the database at {}",
                    shoal_control_plane::describe_url(config.control_plane.database_url().expose())
                )
            })?;
    }
    Ok(store)
}

fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

fn read_password(source: &PasswordSource) -> anyhow::Result<(String, bool)> {
    let first_line = |text: String| text.lines().next().unwrap_or_default().to_string();
    if let Some(file) = &source.password_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read password file {}", file.display()))?;
        return Ok((first_line(text), false));
    }
    if source.password_stdin {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        return Ok((first_line(text), false));
    }
    if source.generate {
        use base64::Engine as _;
        let bytes: [u8; 18] = rand::random();
        return Ok((
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
            true,
        ));
    }
    bail!("give the password with --password-file, --password-stdin or --generate")
}

async fn admin(cmd: AdminCommand, store: &Store) -> anyhow::Result<()> {
    let (AdminCommand::Create(args) | AdminCommand::ResetPassword(args)) = &cmd;
    let create = matches!(cmd, AdminCommand::Create(_));
    let username = &args.username;
    let (password, generated) = read_password(&args.password)?;
    if create {
        store.create_admin("cli", username, &password).await?;
    } else {
        store.reset_admin_password(username, &password).await?;
    }
    if generated {
        println!("{password}");
    } else {
        eprintln!("admin {username:?} saved");
    }
    Ok(())
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn print_revision(what: &str, revision: i64) {
    println!("{what}: config revision {revision}");
}

async fn policy(cmd: PolicyCommand, store: &Store) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Apply {
            name,
            file,
            enforcement,
            on_error,
            on_unreachable,
            shadow,
            common,
        } => {
            let rego = read_source(&file)?;
            let policy = Policy {
                name: name.clone(),
                rego,
                enforcement: Enforcement::parse(&enforcement).map_err(anyhow::Error::msg)?,
                on_error: OnError::parse(&on_error).map_err(anyhow::Error::msg)?,
                on_unreachable: OnUnreachable::parse(&on_unreachable)
                    .map_err(anyhow::Error::msg)?,
                shadow,
                enabled: !common.disabled,
                description: common.description,
            };
            let revision = store.put_policy(&cli_actor(), &policy).await?;
            print_revision(&format!("policy {name} applied"), revision);
        }
        PolicyCommand::Delete { name } => {
            let revision = store.delete_policy(&cli_actor(), &name).await?;
            print_revision(&format!("policy {name} deleted"), revision);
        }
        PolicyCommand::List => print_json(&store.list_policies().await?)?,
        PolicyCommand::Test { .. } | PolicyCommand::Eval { .. } => unreachable!("run offline"),
    }
    Ok(())
}

async fn data(cmd: DataCommand, store: &Store) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Apply {
            name,
            file,
            description,
        } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
                    .context("cannot read the document from standard input")?
            } else {
                read_source(&file)?
            };
            let document = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", file.display()))?;
            let document = shoal_model::DataDocument {
                name: name.clone(),
                document,
                description,
            };
            let revision = store.put_document(&cli_actor(), &document).await?;
            print_revision(&format!("data document {name} applied"), revision);
        }
        DataCommand::Delete { name } => {
            let revision = store.delete_document(&cli_actor(), &name).await?;
            print_revision(&format!("data document {name} deleted"), revision);
        }
        DataCommand::List => print_json(&store.list_documents().await?)?,
    }
    Ok(())
}

fn read_source(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

async fn resource(cmd: ResourceCommand, store: &Store) -> anyhow::Result<()> {
    match cmd {
        ResourceCommand::Apply { name, spec, common } => {
            let text = match spec.strip_prefix('@') {
                Some("-") => std::io::read_to_string(std::io::stdin())
                    .context("cannot read --spec from standard input")?,
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --spec file {path}"))?,
                None => spec,
            };
            let mut value: serde_json::Value =
                serde_json::from_str(&text).context("--spec is not valid JSON")?;
            let kind = value
                .as_object_mut()
                .and_then(|o| o.remove("kind"))
                .and_then(|k| k.as_str().map(str::to_string))
                .context("--spec needs \"kind\": \"s3\" or \"http\"")?;
            // What policies read about the resource rides in the same document.
            let attributes = value.as_object_mut().map_or_else(
                || Ok(shoal_model::ResourceAttributes::default()),
                |o| {
                    let mut picked = serde_json::Map::new();
                    for k in ["environment", "tags"] {
                        if let Some(v) = o.remove(k) {
                            picked.insert(k.into(), v);
                        }
                    }
                    serde_json::from_value(serde_json::Value::Object(picked))
                        .context("--spec: environment must be text, tags an object of text")
                },
            )?;
            let resource = Resource {
                name: name.clone(),
                enabled: !common.disabled,
                description: common.description,
                spec: store.resource_spec(&kind, value)?,
                attributes,
            };
            let revision = store.put_resource(&cli_actor(), &resource).await?;
            print_revision(&format!("resource {name} applied"), revision);
        }
        ResourceCommand::Delete { name } => {
            let revision = store.delete_resource(&cli_actor(), &name).await?;
            print_revision(&format!("resource {name} deleted"), revision);
        }
        ResourceCommand::List => print_json(&store.list_resources().await?)?,
    }
    Ok(())
}

async fn user(cmd: UserCommand, store: &Store) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Apply {
            name,
            email,
            kind,
            groups,
            attributes,
            common,
        } => {
            let attributes = match attributes {
                None => serde_json::Map::new(),
                Some(text) => {
                    match serde_json::from_str(&text).context("--attributes is not valid JSON")? {
                        serde_json::Value::Object(map) => map,
                        _ => anyhow::bail!("--attributes must be a JSON object"),
                    }
                }
            };
            let profile = shoal_model::UserProfile {
                email,
                kind: shoal_model::UserKind::parse(&kind).map_err(anyhow::Error::msg)?,
                groups,
                attributes,
            };
            let revision = store
                .put_user(
                    &cli_actor(),
                    &name,
                    !common.disabled,
                    &common.description,
                    &profile,
                )
                .await?;
            print_revision(&format!("user {name} applied"), revision);
        }
        UserCommand::Delete { name } => {
            let revision = store.delete_user(&cli_actor(), &name).await?;
            print_revision(&format!("user {name} deleted"), revision);
        }
        UserCommand::List => print_json(&store.list_users().await?)?,
        UserCommand::AddKey { name, kind } => {
            let created = store.create_credential(&cli_actor(), &name, &kind).await?;
            print_json(&created)?;
        }
        UserCommand::DeleteKey { key_id } => {
            let revision = store.delete_credential(&cli_actor(), &key_id).await?;
            print_revision(&format!("credential {key_id} revoked"), revision);
        }
    }
    Ok(())
}

/// SIGTERM or SIGINT starts the graceful shutdown; a second signal is left to the default
/// handler's job by the orchestrator's kill timeout. The handlers are installed at once, so a
/// signal that comes while the node starts is not lost.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop the node with SIGKILL");
            return std::future::pending().await;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
    }
}
