//! The `lti2` command line: `serve`, `admin …`, `token`, `jwt decode|verify`, `bench`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use crate::authority::{ensure_signing_key, new_signing_key, AUTHORIZATION_CODE, JWT_BEARER};
use crate::client::{request_token, system_now, AssertionBuilder, BodyEncoding, ClientError};
use crate::clock::{Clock, SystemClock};
use crate::config::{Overrides, Settings};
use crate::jose::{self, Alg};
use crate::profile::{is_restricted_capability, restricted_capabilities, restricted_services};
use crate::registration::{auto_submit_form, REGISTRATION_LIFETIME};
use crate::secrets::{random_bytes, Secret};
use crate::store::check_identifier;
use crate::store::sqlite::Durability;
use crate::store::{
    ContextKind, ContextRef, NewRegistration, NewToolProxy, Store, ToolConsumerProfileRecord,
    ToolService,
};

/// Secrets shorter than this many bytes are refused unless `--allow-short-secret` is given.
pub const MIN_SECRET_BYTES: usize = 32;

/// `lti2`: a Canvas-compatible LTI 2 platform (JWT access tokens) and its tool-side client.
#[derive(Debug, Parser)]
#[command(name = "lti2", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve(ServeArgs),
    /// Manage accounts, courses, credentials and signing keys in the database.
    Admin(AdminArgs),
    /// Build and sign an assertion, exchange it for an access token, print the response.
    Token(TokenArgs),
    /// Inspect or check a JWT offline.
    Jwt {
        /// The JWT command.
        #[command(subcommand)]
        command: JwtCommand,
    },
    /// Load-test a running server's authorize endpoint.
    Bench(crate::bench::BenchArgs),
}

/// Where the database and the master key are.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// A TOML configuration file.
    #[arg(long, env = "LTI2_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Database URL (default sqlite://lti2.db).
    #[arg(long, env = "LTI2_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Data directory holding master.key (default ./lti2-data).
    #[arg(long, env = "LTI2_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

/// `lti2 serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Storage.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Listen address (default 127.0.0.1:3000).
    #[arg(long, env = "LTI2_LISTEN")]
    pub listen: Option<String>,
    /// Public base URL(s), scheme://host[:port]; builds the expected `aud` and the token `aud`.
    #[arg(long, env = "LTI2_BASE_URL", value_delimiter = ',')]
    pub base_url: Vec<String>,
    /// Access-token issuer (default "Canvas").
    #[arg(long, env = "LTI2_ISSUER")]
    pub issuer: Option<String>,
    /// Largest `exp - now` accepted on an assertion, seconds; 0 = no bound (default 300).
    #[arg(long, env = "LTI2_MAX_ASSERTION_LIFETIME")]
    pub max_assertion_lifetime: Option<i64>,
    /// Assertion algorithms accepted (default HS256).
    #[arg(long, env = "LTI2_ALLOWED_ALGORITHMS", value_delimiter = ',')]
    pub allowed_algorithms: Vec<String>,
    /// `text` (default) or `json`.
    #[arg(long, env = "LTI2_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// SQLite commit durability: `normal` (default; survives a process crash) or `full` (fsync
    /// per commit).
    #[arg(long, env = "LTI2_SQLITE_DURABILITY", value_parser = parse_durability)]
    pub sqlite_durability: Option<Durability>,
    /// How often (ms) to look for changes made by `lti2 admin` in another process (default 200).
    #[arg(long, env = "LTI2_CACHE_REFRESH_MS")]
    pub cache_refresh_ms: Option<u64>,
    /// Local development: webhooks may target http URLs and loopback or private addresses.
    #[arg(long, env = "LTI2_DEV")]
    pub dev: bool,
    /// Redis for the jti store (`redis://host:port`); default: the database.
    #[arg(long, env = "LTI2_REDIS_URL")]
    pub redis_url: Option<String>,
    /// PostgreSQL: most connections this process opens (default 16).
    #[arg(long, env = "LTI2_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    /// PostgreSQL: how long a request waits for a free connection, ms (default 5000).
    #[arg(long, env = "LTI2_DB_ACQUIRE_TIMEOUT_MS")]
    pub db_acquire_timeout_ms: Option<u64>,
}

fn parse_durability(s: &str) -> Result<Durability, String> {
    match s {
        "normal" => Ok(Durability::Normal),
        "full" => Ok(Durability::Full),
        _ => Err("expected normal or full".into()),
    }
}

impl ServeArgs {
    /// The overrides these flags and variables make.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.store.config.clone(),
            listen: self.listen.clone(),
            base_url: self.base_url.clone(),
            database_url: self.store.database_url.clone(),
            data_dir: self.store.data_dir.clone(),
            issuer: self.issuer.clone(),
            max_assertion_lifetime: self.max_assertion_lifetime,
            allowed_algorithms: self.allowed_algorithms.clone(),
            log_format: self.log_format.clone(),
            sqlite_durability: self.sqlite_durability,
            cache_refresh_ms: self.cache_refresh_ms,
            redis_url: self.redis_url.clone(),
            db_max_connections: self.db_max_connections,
            db_acquire_timeout_ms: self.db_acquire_timeout_ms,
            master_key: std::env::var("LTI2_MASTER_KEY")
                .ok()
                .filter(|s| !s.is_empty()),
            admin_token: std::env::var("LTI2_ADMIN_TOKEN")
                .ok()
                .filter(|s| !s.is_empty()),
            dev: self.dev,
        }
    }
}

/// `lti2 admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Storage.
    #[command(flatten)]
    pub store: StoreArgs,
    /// What to manage.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// `lti2 admin …`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Accounts.
    Account {
        /// The account command.
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Courses.
    Course {
        /// The course command.
        #[command(subcommand)]
        command: CourseCommand,
    },
    /// Developer keys.
    DeveloperKey {
        /// The developer key command.
        #[command(subcommand)]
        command: DeveloperKeyCommand,
    },
    /// Tool proxies.
    ToolProxy {
        /// The tool proxy command.
        #[command(subcommand)]
        command: ToolProxyCommand,
    },
    /// Pending LTI 2 registrations.
    Registration {
        /// The registration command.
        #[command(subcommand)]
        command: RegistrationCommand,
    },
    /// Load LMS records (accounts, courses, users, enrollments, groups, assignments,
    /// submissions with their files) from an import document; idempotent, all or nothing.
    Import {
        /// The JSON document (`path`s of files are relative to it).
        file: PathBuf,
    },
    /// Submissions.
    Submission {
        /// The submission command.
        #[command(subcommand)]
        command: SubmissionCommand,
    },
    /// Webhook deliveries.
    Deliveries {
        /// The deliveries command.
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// Custom tool consumer profiles.
    Tcp {
        /// The tcp command.
        #[command(subcommand)]
        command: TcpCommand,
    },
    /// Access-token signing keys.
    SigningKey {
        /// The signing key command.
        #[command(subcommand)]
        command: SigningKeyCommand,
    },
    /// Where the servers on this database claim jtis (every instance must agree).
    JtiStore {
        /// The jti store command.
        #[command(subcommand)]
        command: JtiStoreCommand,
    },
}

/// `admin jti-store …`.
#[derive(Debug, Subcommand)]
pub enum JtiStoreCommand {
    /// Show where jtis are claimed (`database`, or a Redis URL), as the first server recorded.
    Show,
    /// Record a new jti store: run it with every server stopped, then start them all with the
    /// matching `--redis-url` (or none for `database`). Claims in the old store are not
    /// carried over: an assertion accepted just before the move could be accepted once more
    /// until it expires (at most `max_assertion_lifetime` + 60 s), so keep the gap that long if
    /// that matters.
    Set {
        /// `database`, or `redis://host:port[/db]`.
        store: String,
    },
}

/// `admin account …`.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account.
    Create {
        /// Its id.
        #[arg(long)]
        id: i64,
        /// Its name.
        #[arg(long, default_value = "")]
        name: String,
        /// Its parent account.
        #[arg(long)]
        parent: Option<i64>,
    },
}

/// `admin course …`.
#[derive(Debug, Subcommand)]
pub enum CourseCommand {
    /// Create a course.
    Create {
        /// Its id.
        #[arg(long)]
        id: i64,
        /// Its account.
        #[arg(long)]
        account: i64,
        /// Its name.
        #[arg(long, default_value = "")]
        name: String,
    },
}

/// `admin developer-key …`.
#[derive(Debug, Subcommand)]
pub enum DeveloperKeyCommand {
    /// Create a developer key; prints its id and secret (shown only this once).
    Create {
        /// Global id (default: the next free id above 10000000000000).
        #[arg(long)]
        id: Option<i64>,
        /// Secret (default: 32 random bytes as 64 hex characters).
        #[arg(long)]
        secret: Option<String>,
        /// A name.
        #[arg(long)]
        name: Option<String>,
        /// The vendor code it registers tools for: tools of this vendor must then be
        /// registered with one of its keys.
        #[arg(long)]
        vendor_code: Option<String>,
        /// Accept a secret shorter than 32 bytes.
        #[arg(long)]
        allow_short_secret: bool,
    },
    /// List developer keys (no secrets).
    List,
    /// Deactivate a key: it no longer gets tokens.
    Deactivate {
        /// The key's global id.
        id: i64,
    },
    /// Reactivate a key.
    Activate {
        /// The key's global id.
        id: i64,
    },
}

/// Tool proxy states settable by the console.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ToolProxyState {
    /// Can sign assertions.
    Active,
    /// Cannot.
    Disabled,
}

impl ToolProxyState {
    fn as_str(self) -> &'static str {
        match self {
            ToolProxyState::Active => "active",
            ToolProxyState::Disabled => "disabled",
        }
    }
}

/// `admin tool-proxy …`.
#[derive(Debug, Subcommand)]
pub enum ToolProxyCommand {
    /// Create a tool proxy with a shared secret.
    Create {
        /// Its guid (the assertion's `sub`).
        #[arg(long)]
        guid: String,
        /// Its shared secret (for split secrets: tc_half followed by tp_half).
        #[arg(long)]
        secret: String,
        /// An enabled capability (repeatable; default Security.splitSecret).
        #[arg(long = "capability")]
        capabilities: Vec<String>,
        /// A security-contract service, NAME=METHOD,METHOD (repeatable).
        #[arg(long = "service", value_parser = parse_service)]
        services: Vec<ToolService>,
        /// Initial state.
        #[arg(long, value_enum, default_value = "active")]
        state: ToolProxyState,
        /// The developer key of its product family.
        #[arg(long)]
        developer_key: Option<i64>,
        /// Accept a secret shorter than 32 bytes.
        #[arg(long)]
        allow_short_secret: bool,
    },
    /// List tool proxies (no secrets).
    List,
    /// Show a tool proxy's registration: contexts, vendor, document, waiting re-registration.
    Show {
        /// Its guid.
        guid: String,
    },
    /// Accept a registered tool proxy: it becomes active (Canvas's admin acceptance).
    Accept {
        /// Its guid.
        guid: String,
    },
    /// Accept a tool proxy's waiting re-registration: confirm it to the tool with a PUT to its
    /// VND-IMS-CONFIRM-URL and, once the tool answers 2xx, apply it (the new document and
    /// shared secret). If the tool does not confirm, nothing changes and the command fails.
    AcceptUpdate {
        /// Its guid.
        guid: String,
        /// Apply without confirming to the tool (it must switch secrets by other means).
        #[arg(long)]
        skip_confirmation: bool,
    },
    /// Set a tool proxy's state.
    SetState {
        /// Its guid.
        guid: String,
        /// The new state.
        #[arg(value_enum)]
        state: ToolProxyState,
    },
}

fn parse_service(s: &str) -> Result<ToolService, String> {
    let (name, methods) = s.split_once('=').ok_or("expected NAME=METHOD,METHOD")?;
    let action: Vec<String> = methods
        .split(',')
        .map(|m| m.trim().to_ascii_uppercase())
        .filter(|m| !m.is_empty())
        .collect();
    if name.trim().is_empty() || action.is_empty() {
        return Err("expected NAME=METHOD,METHOD".into());
    }
    Ok(ToolService {
        service: name.trim().to_owned(),
        action,
    })
}

/// `admin registration …`.
#[derive(Debug, Subcommand)]
pub enum RegistrationCommand {
    /// Record a pending registration (valid for one hour) whose reg_password signs assertions
    /// with sub = reg_key at this context's authorize URL.
    Create {
        /// An account context.
        #[arg(long, conflicts_with = "course", required_unless_present = "course")]
        account: Option<i64>,
        /// A course context.
        #[arg(long)]
        course: Option<i64>,
        /// The reg_key.
        #[arg(long)]
        reg_key: String,
        /// The reg_password.
        #[arg(long)]
        reg_password: String,
        /// Accept a reg_password shorter than 32 bytes.
        #[arg(long)]
        allow_short_secret: bool,
    },
    /// Start a registration (a new reg_key and reg_password, valid for one hour in this
    /// context) and print the ToolProxyRegistrationRequest launch parameters to post to the
    /// tool.
    Start {
        /// An account context.
        #[arg(long, conflicts_with = "course", required_unless_present = "course")]
        account: Option<i64>,
        /// A course context.
        #[arg(long)]
        course: Option<i64>,
        /// The tool's registration URL (http or https).
        #[arg(long)]
        tool_url: String,
        /// The platform's public base URL (default: the configured one, else
        /// http://127.0.0.1:3000).
        #[arg(long, env = "LTI2_BASE_URL")]
        base_url: Option<String>,
        /// Print an HTML page that posts the parameters to the tool when opened in a browser.
        #[arg(long)]
        html: bool,
    },
}

/// `admin submission …`.
#[derive(Debug, Subcommand)]
pub enum SubmissionCommand {
    /// Ask the plagiarism tool to check a submission again (a `plagiarism_resubmit` event).
    Resubmit {
        /// The submission.
        #[arg(long)]
        submission: i64,
    },
    /// Add an attempt to a student's submission (creating the submission if needed), with
    /// files and/or a text body.
    Create {
        /// The assignment.
        #[arg(long)]
        assignment: i64,
        /// The student.
        #[arg(long)]
        user: i64,
        /// A file to attach (repeatable).
        #[arg(long = "file")]
        files: Vec<PathBuf>,
        /// The media type of the files (default application/octet-stream).
        #[arg(long)]
        content_type: Option<String>,
        /// A text entry body.
        #[arg(long)]
        body: Option<String>,
        /// The submission type (default online_upload with files, else online_text_entry).
        #[arg(long = "type")]
        submission_type: Option<String>,
        /// When it was submitted, RFC 3339 (default now).
        #[arg(long)]
        submitted_at: Option<String>,
        /// The group it is submitted for.
        #[arg(long)]
        group: Option<i64>,
        /// The EULA agreement timestamp (milliseconds since the epoch).
        #[arg(long)]
        eula: Option<String>,
    },
}

/// `admin deliveries …`.
#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// The latest webhook deliveries, newest first.
    List {
        /// Only the ones that failed for good.
        #[arg(long)]
        failed: bool,
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

/// `admin tcp …`.
#[derive(Debug, Subcommand)]
pub enum TcpCommand {
    /// Create a developer key's custom tool consumer profile: the restricted services and
    /// capabilities it unlocks (default: all of them).
    Create {
        /// The developer key.
        #[arg(long)]
        developer_key: i64,
        /// Its uuid (default: a new UUID).
        #[arg(long)]
        uuid: Option<String>,
        /// A restricted service, e.g. vnd.Canvas.OriginalityReport (repeatable).
        #[arg(long = "service")]
        services: Vec<String>,
        /// A restricted capability, e.g. Canvas.placements.similarityDetection (repeatable).
        #[arg(long = "capability")]
        capabilities: Vec<String>,
    },
    /// List custom tool consumer profiles.
    List,
}

/// `admin signing-key …`.
#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// Add a new signing key; older keys still verify until removed.
    Rotate,
    /// List the keys (no key bytes).
    List,
    /// Remove a key: tokens it signed stop working.
    Remove {
        /// The key id.
        kid: String,
    },
}

/// `lti2 token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The authorize URL (also the assertion's `aud`).
    #[arg(long)]
    pub url: String,
    /// The assertion's `sub`: a tool proxy guid, a developer key id, or a reg_key.
    #[arg(long)]
    pub sub: String,
    /// The HMAC secret.
    #[arg(long, env = "LTI2_TOKEN_SECRET", hide_env_values = true)]
    pub secret: String,
    /// The `code` parameter (the reg_key), for developer keys.
    #[arg(long)]
    pub code: Option<String>,
    /// The grant type (default: authorization-code with --code, else jwt-bearer).
    #[arg(long, value_enum)]
    pub grant: Option<Grant>,
    /// Send multipart/form-data (like `curl -F`) instead of a urlencoded form.
    #[arg(long)]
    pub multipart: bool,
    /// Seconds from iat to exp (default 60).
    #[arg(long, default_value_t = 60)]
    pub lifetime: i64,
    /// Send an all-digit sub as a JSON string rather than an integer.
    #[arg(long)]
    pub string_sub: bool,
}

/// The grant type to send.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Grant {
    /// urn:ietf:params:oauth:grant-type:jwt-bearer
    JwtBearer,
    /// authorization_code
    AuthorizationCode,
}

/// `lti2 jwt …`.
#[derive(Debug, Subcommand)]
pub enum JwtCommand {
    /// Print a JWT's header and claims as JSON (no signature check).
    Decode {
        /// The token.
        token: String,
    },
    /// Check a JWT's HMAC signature with a secret; exits 1 when it does not verify.
    Verify {
        /// The token.
        token: String,
        /// The HMAC secret.
        #[arg(long)]
        secret: String,
    },
}

fn check_secret_len(secret: &str, allow_short: bool, what: &str) -> anyhow::Result<()> {
    if secret.is_empty() {
        bail!("the {what} must not be empty");
    }
    if secret.len() < MIN_SECRET_BYTES && !allow_short {
        bail!("the {what} is {} bytes; at least {MIN_SECRET_BYTES} are required (--allow-short-secret overrides)", secret.len());
    }
    Ok(())
}

fn positive(id: i64, what: &str) -> anyhow::Result<()> {
    if id <= 0 {
        bail!("the {what} must be a positive integer");
    }
    Ok(())
}

/// Prints JSON to stdout; a closed pipe (`| head`) is not an error.
pub fn print_json(v: &serde_json::Value) {
    use std::io::Write;
    let text = serde_json::to_string_pretty(v).expect("JSON prints");
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Runs `lti2 admin …`.
pub async fn admin(args: AdminArgs) -> anyhow::Result<()> {
    let env = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
    let settings = Settings::resolve(Overrides {
        config: args.store.config.clone(),
        database_url: args.store.database_url.clone(),
        data_dir: args.store.data_dir.clone(),
        // Read like `serve` reads them, so that URLs printed by the console (registration
        // launches) name the server.
        listen: env("LTI2_LISTEN"),
        base_url: env("LTI2_BASE_URL")
            .map(|v| v.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        master_key: std::env::var("LTI2_MASTER_KEY")
            .ok()
            .filter(|s| !s.is_empty()),
        ..Default::default()
    })?;
    let store = crate::server::open_store(&settings).await?;
    let now = SystemClock.now();
    ensure_signing_key(store.as_ref(), now).await?;
    run_admin(store, &settings, args.command, now).await
}

fn context_of(account: Option<i64>, course: Option<i64>) -> anyhow::Result<ContextRef> {
    match (account, course) {
        (Some(id), None) => Ok(ContextRef {
            kind: ContextKind::Account,
            id,
        }),
        (None, Some(id)) => Ok(ContextRef {
            kind: ContextKind::Course,
            id,
        }),
        _ => bail!("give exactly one of --account or --course"),
    }
}

async fn run_admin(
    store: Arc<dyn Store>,
    settings: &Settings,
    cmd: AdminCommand,
    now: i64,
) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Account {
            command: AccountCommand::Create { id, name, parent },
        } => {
            positive(id, "account id")?;
            store.create_account(id, &name, parent, now).await?;
            print_json(&json!({"account": {"id": id, "name": name, "parent_account_id": parent}}));
        }
        AdminCommand::Course {
            command: CourseCommand::Create { id, account, name },
        } => {
            positive(id, "course id")?;
            store.create_course(id, account, &name, now).await?;
            print_json(&json!({"course": {"id": id, "account_id": account, "name": name}}));
        }
        AdminCommand::DeveloperKey { command } => match command {
            DeveloperKeyCommand::Create {
                id,
                secret,
                name,
                vendor_code,
                allow_short_secret,
            } => {
                if let Some(code) = &vendor_code {
                    check_identifier(code).map_err(|e| anyhow::anyhow!("the vendor code {e}"))?;
                }
                let secret = match secret {
                    Some(s) => {
                        check_secret_len(&s, allow_short_secret, "developer key secret")?;
                        s
                    }
                    None => hex::encode(random_bytes(32)),
                };
                let id = store
                    .create_developer_key(
                        id,
                        &Secret::new(secret.clone().into_bytes()),
                        name.as_deref(),
                        now,
                    )
                    .await?;
                if let Some(code) = vendor_code.as_deref().filter(|c| !c.trim().is_empty()) {
                    store.set_developer_key_vendor_code(id, Some(code)).await?;
                }
                print_json(
                    &json!({"id": id, "secret": secret, "name": name, "vendor_code": vendor_code, "workflow_state": "active"}),
                );
            }
            DeveloperKeyCommand::List => print_json(&json!(store.list_developer_keys().await?)),
            DeveloperKeyCommand::Deactivate { id } => {
                store.set_developer_key_state(id, "inactive").await?;
                print_json(&json!({"id": id, "workflow_state": "inactive"}));
            }
            DeveloperKeyCommand::Activate { id } => {
                store.set_developer_key_state(id, "active").await?;
                print_json(&json!({"id": id, "workflow_state": "active"}));
            }
        },
        AdminCommand::ToolProxy { command } => match command {
            ToolProxyCommand::Create {
                guid,
                secret,
                capabilities,
                services,
                state,
                developer_key,
                allow_short_secret,
            } => {
                check_secret_len(&secret, allow_short_secret, "tool proxy shared secret")?;
                if guid.trim().is_empty() {
                    bail!("the guid must not be empty");
                }
                check_identifier(&guid).map_err(|e| anyhow::anyhow!("the guid {e}"))?;
                let enabled_capability = if capabilities.is_empty() {
                    vec!["Security.splitSecret".to_string()]
                } else {
                    capabilities
                };
                store
                    .create_tool_proxy(NewToolProxy {
                        guid: guid.clone(),
                        shared_secret: Secret::new(secret.into_bytes()),
                        workflow_state: state.as_str().into(),
                        enabled_capability: enabled_capability.clone(),
                        tool_service: services.clone(),
                        developer_key_id: developer_key,
                        now,
                    })
                    .await?;
                print_json(
                    &json!({"guid": guid, "workflow_state": state.as_str(), "enabled_capability": enabled_capability, "tool_service": services, "developer_key_id": developer_key}),
                );
            }
            ToolProxyCommand::List => print_json(&json!(store.list_tool_proxies().await?)),
            ToolProxyCommand::Show { guid } => {
                let detail = store
                    .tool_proxy_detail(&guid)
                    .await?
                    .with_context(|| format!("no tool proxy {guid}"))?;
                let parse = |s: &Option<String>| {
                    s.as_deref()
                        .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
                };
                print_json(&json!({
                    "guid": detail.guid,
                    "workflow_state": detail.workflow_state,
                    "developer_key_id": detail.developer_key_id,
                    "vendor_code": detail.vendor_code,
                    "product_code": detail.product_code,
                    "contexts": detail.contexts,
                    "tool_proxy": parse(&detail.raw_data),
                    "update_pending": parse(&detail.update_payload),
                }));
            }
            ToolProxyCommand::Accept { guid } => {
                let detail = store
                    .tool_proxy_detail(&guid)
                    .await?
                    .with_context(|| format!("no tool proxy {guid}"))?;
                if detail.workflow_state == "deleted" {
                    bail!("tool proxy {guid} is deleted");
                }
                store.set_tool_proxy_state(&guid, "active", now).await?;
                print_json(&json!({"guid": guid, "workflow_state": "active"}));
            }
            ToolProxyCommand::AcceptUpdate {
                guid,
                skip_confirmation,
            } => {
                accept_update(store.as_ref(), &guid, skip_confirmation, now).await?;
            }
            ToolProxyCommand::SetState { guid, state } => {
                store
                    .set_tool_proxy_state(&guid, state.as_str(), now)
                    .await?;
                print_json(&json!({"guid": guid, "workflow_state": state.as_str()}));
            }
        },
        AdminCommand::Registration {
            command:
                RegistrationCommand::Create {
                    account,
                    course,
                    reg_key,
                    reg_password,
                    allow_short_secret,
                },
        } => {
            check_secret_len(&reg_password, allow_short_secret, "reg_password")?;
            if reg_key.trim().is_empty() || reg_key.bytes().all(|b| b.is_ascii_digit()) {
                bail!("the reg_key must not be empty or all digits (an all-digit sub names a developer key)");
            }
            check_identifier(&reg_key).map_err(|e| anyhow::anyhow!("the reg_key {e}"))?;
            let context = context_of(account, course)?;
            let expires_at = now + REGISTRATION_LIFETIME;
            store
                .create_registration(NewRegistration {
                    reg_key: reg_key.clone(),
                    reg_password: Secret::new(reg_password.into_bytes()),
                    context,
                    tool_url: None,
                    now,
                    expires_at,
                })
                .await?;
            print_json(&json!({"reg_key": reg_key, "context": context, "expires_at": expires_at}));
        }
        AdminCommand::Registration {
            command:
                RegistrationCommand::Start {
                    account,
                    course,
                    tool_url,
                    base_url,
                    html,
                },
        } => {
            let context = context_of(account, course)?;
            let base_url = match base_url {
                Some(b) => crate::config::parse_base_url(&b)?,
                None => settings
                    .base_urls
                    .first()
                    .cloned()
                    .unwrap_or_else(|| format!("http://{}", settings.listen)),
            };
            let launch =
                crate::registration::start(store.as_ref(), context, &tool_url, &base_url, now)
                    .await?;
            let params = launch.params;
            if html {
                use std::io::Write;
                let _ = write!(
                    std::io::stdout().lock(),
                    "{}",
                    auto_submit_form(&tool_url, &params)
                );
            } else {
                let mut obj = serde_json::Map::new();
                for (k, v) in &params {
                    obj.insert((*k).to_owned(), json!(v));
                }
                print_json(&json!({
                    "tool_url": tool_url,
                    "expires_at": launch.expires_at,
                    "launch_params": obj,
                }));
            }
        }
        AdminCommand::Import { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let doc = crate::import::parse(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let base = file.parent().map(|p| p.to_path_buf()).unwrap_or_default();
            let files = crate::import::FileStore::new(&settings.data_dir);
            let summary = crate::import::run(store.as_ref(), &files, doc, Some(&base), now)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            print_json(&json!({"imported": summary}));
        }
        AdminCommand::Submission {
            command:
                SubmissionCommand::Create {
                    assignment,
                    user,
                    files,
                    content_type,
                    body,
                    submission_type,
                    submitted_at,
                    group,
                    eula,
                },
        } => {
            let out = create_submission_attempt(
                store.as_ref(),
                settings,
                SubmissionAttempt {
                    assignment,
                    user,
                    files,
                    content_type,
                    body,
                    submission_type,
                    submitted_at,
                    group,
                    eula,
                },
                now,
            )
            .await?;
            print_json(&out);
        }
        AdminCommand::Submission {
            command: SubmissionCommand::Resubmit { submission },
        } => {
            let event = store.resubmit(submission, now).await?;
            print_json(
                &json!({"submission_id": submission, "event": "plagiarism_resubmit", "event_id": event}),
            );
        }
        AdminCommand::Deliveries {
            command: DeliveriesCommand::List { failed, limit },
        } => {
            print_json(&json!(
                store
                    .list_deliveries(failed, limit.clamp(1, 10_000))
                    .await?
            ));
        }
        AdminCommand::Tcp { command } => match command {
            TcpCommand::Create {
                developer_key,
                uuid,
                services,
                capabilities,
            } => {
                if let Some(u) = &uuid {
                    check_identifier(u).map_err(|e| anyhow::anyhow!("the uuid {e}"))?;
                }
                let services = if services.is_empty() && capabilities.is_empty() {
                    restricted_services().map(str::to_owned).collect()
                } else {
                    services
                };
                let capabilities = if capabilities.is_empty() {
                    restricted_capabilities().map(str::to_owned).collect()
                } else {
                    capabilities
                };
                for s in &services {
                    if !restricted_services().any(|r| r == s) {
                        bail!(
                            "'{s}' is not a restricted service; choose from: {}",
                            restricted_services().collect::<Vec<_>>().join(", ")
                        );
                    }
                }
                for c in &capabilities {
                    if !is_restricted_capability(c) {
                        bail!(
                            "'{c}' is not a restricted capability; choose from: {}",
                            restricted_capabilities().collect::<Vec<_>>().join(", ")
                        );
                    }
                }
                let uuid = uuid.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                if uuid.is_empty() || uuid.contains(['/', '?', '#', ' ']) {
                    bail!("the uuid must be one URL path segment");
                }
                let tcp = ToolConsumerProfileRecord {
                    uuid,
                    developer_key_id: developer_key,
                    services,
                    capabilities,
                    created_at: now,
                };
                store.create_tool_consumer_profile(&tcp).await?;
                print_json(&json!(tcp));
            }
            TcpCommand::List => print_json(&json!(store.list_tool_consumer_profiles().await?)),
        },
        AdminCommand::SigningKey { command } => match command {
            SigningKeyCommand::Rotate => {
                let key = new_signing_key();
                store.add_signing_key(&key, now).await?;
                print_json(&json!({"kid": key.kid, "active": true}));
            }
            SigningKeyCommand::List => print_json(&json!(store.list_signing_keys().await?)),
            SigningKeyCommand::Remove { kid } => {
                store.remove_signing_key(&kid).await?;
                print_json(&json!({"removed": kid}));
            }
        },
        AdminCommand::JtiStore { command } => {
            use crate::store::redis_nonces::{is_redis_url, jti_store_name, JTI_STORE_SETTING};
            match command {
                JtiStoreCommand::Show => {
                    // Null until the first server records its own.
                    let recorded = store.setting(JTI_STORE_SETTING).await?;
                    print_json(&json!({"jti_store": recorded}));
                }
                JtiStoreCommand::Set { store: name } => {
                    let value = match name.as_str() {
                        "database" => jti_store_name(None),
                        u if is_redis_url(u) => jti_store_name(Some(u)),
                        other => bail!("'{other}' is not `database` or a redis:// URL"),
                    };
                    store.put_setting(JTI_STORE_SETTING, &value).await?;
                    print_json(&json!({"jti_store": value}));
                }
            }
        }
    }
    Ok(())
}

/// A media type from a file name's extension (the common submission formats), else
/// `application/octet-stream`.
fn content_type_of(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" => "text/plain",
        "html" | "htm" => "text/html",
        "pdf" => "application/pdf",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "odt" => "application/vnd.oasis.opendocument.text",
        "rtf" => "application/rtf",
        "md" => "text/markdown",
        _ => "application/octet-stream",
    }
}

struct SubmissionAttempt {
    assignment: i64,
    user: i64,
    files: Vec<PathBuf>,
    content_type: Option<String>,
    body: Option<String>,
    submission_type: Option<String>,
    submitted_at: Option<String>,
    group: Option<i64>,
    eula: Option<String>,
}

/// `admin submission create`: the next attempt of (assignment, user), through the importer.
async fn create_submission_attempt(
    store: &dyn Store,
    settings: &Settings,
    a: SubmissionAttempt,
    now: i64,
) -> anyhow::Result<serde_json::Value> {
    if a.files.is_empty() && a.body.is_none() {
        bail!("give at least one --file or a --body");
    }
    let submitted_at = match &a.submitted_at {
        Some(t) => crate::import::parse_time(t).map_err(anyhow::Error::msg)?,
        None => now,
    };
    // Picking the next ids and writing them is one step for every console run at once.
    let _lock = store.exclusive("submission create").await?;
    let (max_submission, max_attachment) = store.max_ids().await?;
    let existing = store.submission_for(a.assignment, a.user).await?;
    let (submission_id, attempt, group) = match &existing {
        Some(s) => (
            s.id,
            s.history.iter().map(|v| v.attempt).max().unwrap_or(0) + 1,
            a.group.or(s.group_id),
        ),
        None => (
            max_submission
                .checked_add(1)
                .with_context(|| format!("no submission id is left above {max_submission}"))?,
            1,
            a.group,
        ),
    };
    if max_attachment.checked_add(a.files.len() as i64).is_none() {
        bail!("no attachment id is left above {max_attachment}");
    }
    let submission_type = a.submission_type.clone().unwrap_or_else(|| {
        if a.files.is_empty() {
            "online_text_entry".into()
        } else {
            "online_upload".into()
        }
    });
    let mut attachments = Vec::new();
    for (i, f) in a.files.iter().enumerate() {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("file-{i}"));
        let abs =
            std::fs::canonicalize(f).with_context(|| format!("cannot read {}", f.display()))?;
        attachments.push(json!({
            "id": max_attachment + 1 + i as i64,
            "filename": name,
            "display_name": name,
            "content_type": a.content_type.clone().unwrap_or_else(|| content_type_of(&name).into()),
            "path": abs.to_string_lossy(),
        }));
    }
    let doc = json!({"submissions": [{
        "id": submission_id,
        "assignment_id": a.assignment,
        "user_id": a.user,
        "group_id": group,
        "eula_agreement_timestamp": a.eula,
        "history": [{
            "attempt": attempt,
            "submitted_at": crate::import::format_time(submitted_at),
            "submission_type": submission_type,
            "body": a.body,
            "workflow_state": "submitted",
            "attachments": attachments,
        }],
    }]});
    let parsed =
        crate::import::parse(doc.to_string().as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let files = crate::import::FileStore::new(&settings.data_dir);
    crate::import::run(store, &files, parsed, Some(Path::new("/")), now)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let saved = store
        .submission(submission_id)
        .await?
        .context("the submission was not stored")?;
    let current: Vec<serde_json::Value> = saved
        .current_attachments()
        .iter()
        .map(|x| json!({"id": x.id, "filename": x.filename, "size": x.size, "sha256": x.sha256, "content_type": x.content_type}))
        .collect();
    Ok(json!({
        "submission_id": saved.id,
        "assignment_id": saved.assignment_id,
        "user_id": saved.user_id,
        "attempt": saved.attempt,
        "submitted_at": saved.submitted_at.map(crate::import::format_time),
        "submission_type": saved.submission_type,
        "attachments": current,
    }))
}

/// Confirms a waiting re-registration to the tool (PUT to its `VND-IMS-CONFIRM-URL`, 10 s
/// timeout), then applies it; prints what happened. A tool that does not answer 2xx leaves the
/// update waiting and the old secret in force (an error).
async fn accept_update(
    store: &dyn Store,
    guid: &str,
    skip_confirmation: bool,
    now: i64,
) -> anyhow::Result<()> {
    let update = crate::registration::pending_update(store, guid).await?;
    let url = &update.acknowledgement_url;
    let ack = if skip_confirmation {
        json!({"url": url, "skipped": true})
    } else {
        let sent = reqwest::Client::new()
            .put(url)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                json!({"url": url, "status": r.status().as_u16(), "ok": true})
            }
            Ok(r) => bail!(
                "the tool answered {} to the confirmation PUT {url}: the update is still waiting and the old secret stays in force",
                r.status().as_u16()
            ),
            Err(e) => bail!(
                "the confirmation PUT {url} failed ({e}): the update is still waiting and the old secret stays in force"
            ),
        }
    };
    crate::registration::apply_update(store, &update, now).await?;
    print_json(&json!({"guid": guid, "update_applied": true, "acknowledgement": ack}));
    Ok(())
}

/// Runs `lti2 token`; returns the process exit code.
pub async fn token(args: TokenArgs) -> anyhow::Result<i32> {
    let grant = match args.grant {
        Some(Grant::JwtBearer) => JWT_BEARER,
        Some(Grant::AuthorizationCode) => AUTHORIZATION_CODE,
        None if args.code.is_some() => AUTHORIZATION_CODE,
        None => JWT_BEARER,
    };
    let mut builder = AssertionBuilder::new(&args.sub, &args.url).lifetime(args.lifetime);
    if args.string_sub {
        builder = builder.string_sub();
    }
    let assertion = builder.sign(args.secret.as_bytes(), system_now());
    let encoding = if args.multipart {
        BodyEncoding::Multipart
    } else {
        BodyEncoding::Form
    };
    let http = reqwest::Client::new();
    match request_token(
        &http,
        &args.url,
        grant,
        &assertion,
        args.code.as_deref(),
        encoding,
    )
    .await
    {
        Ok(resp) => {
            print_json(&json!(resp));
            Ok(0)
        }
        Err(ClientError::Refused { status, body }) => {
            eprintln!("error: the platform answered {status}");
            eprintln!("{body}");
            Ok(1)
        }
        Err(e) => Err(e).context("the token request failed"),
    }
}

/// Runs `lti2 jwt …`; returns the process exit code.
pub fn jwt(cmd: JwtCommand) -> anyhow::Result<i32> {
    match cmd {
        JwtCommand::Decode { token } => {
            let (header, claims) = jose::decode_unchecked(&token).context("not a JWT")?;
            print_json(&json!({"header": header, "claims": claims, "signature": "not verified"}));
            Ok(0)
        }
        JwtCommand::Verify { token, secret } => {
            let jws = jose::parse(token.trim(), &[Alg::HS256, Alg::HS384, Alg::HS512])
                .context("not an HMAC-signed JWT")?;
            let ok = jws.verify(secret.as_bytes());
            print_json(
                &json!({"valid": ok, "alg": jws.alg.as_str(), "header": jws.header, "claims": jws.claims}),
            );
            Ok(if ok { 0 } else { 1 })
        }
    }
}
