//! The daemon's configuration: the typed settings every other module reads,
//! the command line, the environment and the JSON config file they come
//! from, and the validation that turns a bad value into one clear exit-2
//! line naming the key (docs/CONFIG.md). Everything is parsed and checked once,
//! at start, so the rest of the daemon can trust these values and never has
//! to handle a zero period, an inverted range or an open non-loopback API.
//!
//! The module is split in four: this file holds the types and defaults,
//! `cli` the command line, environment and assembly, `file` the walk over
//! the JSON config file, and `validate` the rules.

mod cli;
mod file;
mod suggest;
mod validate;

#[cfg(test)]
mod tests;

pub use cli::{default_state_dir, help_text, parse_command};
pub use validate::{is_loopback, validate};

use serde::{Serialize, Serializer};
use std::fmt;
use std::path::{Path, PathBuf};

/// The placeholders a renewal template may use (docs/RENEWAL.md), without braces.
pub const TEMPLATE_PLACEHOLDERS: [&str; 5] = ["summary", "link", "message_id", "platform", "conversation_id"];

/// The tools of target `conductor` (docs/CONFIG.md, `baa`) that `baa.allowed_tools` may
/// name. A misspelt tool would otherwise be silently disabled, so the list
/// is checked; extend it when a tool is added.
pub const BAA_TOOLS: [&str; 8] = [
    "describe",
    "status",
    "exec",
    "files.read",
    "files.write",
    "renewal.pause",
    "renewal.auto",
    "renewal.manual",
];

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Serve(Config),
    CheckConfig(Config),
    /// `backup PATH`: copy the database to PATH (a new file, or a
    /// directory to create one in).
    Backup(Config, PathBuf),
    /// `service install|uninstall|status [--user]`.
    Service(Box<ServiceRequest>),
    Version,
    Help,
}

/// What `service install|uninstall|status` was asked, with what the unit
/// needs to start the daemon the way this command line would.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRequest {
    pub config: Config,
    pub action: ServiceAction,
    /// A per-user service (`--user`) rather than a system-wide one.
    pub user: bool,
    /// `(flag, value)` of the settings given by flag or environment
    /// variable (not the token), to repeat on the service's command line.
    pub overrides: Vec<(&'static str, String)>,
    /// The token was given by flag or `BAA_TOKEN`, so the service needs it
    /// in a private environment file.
    pub token_outside_file: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceAction {
    Install,
    Uninstall,
    Status,
}

impl ServiceAction {
    pub const ALL: [ServiceAction; 3] =
        [ServiceAction::Install, ServiceAction::Uninstall, ServiceAction::Status];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceAction::Install => "install",
            ServiceAction::Uninstall => "uninstall",
            ServiceAction::Status => "status",
        }
    }

    pub fn parse(word: &str) -> Option<ServiceAction> {
        ServiceAction::ALL.into_iter().find(|a| a.as_str() == word)
    }
}

/// A configuration or command-line problem; the daemon prints it as one
/// line on stderr and exits with code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The dotted config key (`renewal.max_attempts`), the flag (`--listen`)
    /// or the environment variable the problem is about.
    pub key: String,
    /// Why, always with the offending value except for secrets.
    pub message: String,
    /// Where the offending value was set when that is not obvious from
    /// `key`: `in FILE` for a config file, `set by BAA_LISTEN` for the
    /// environment, `set by --listen` for a flag.
    pub origin: Option<String>,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { key: key.into(), message: message.into(), origin: None }
    }

    /// The same error, saying where its value came from (kept if already known).
    pub fn with_origin(mut self, origin: impl Into<String>) -> ConfigError {
        self.origin.get_or_insert_with(|| origin.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config: {} {}", self.key, self.message)?;
        match &self.origin {
            Some(origin) => write!(f, " ({origin})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The effective configuration. Field names are exactly the JSON keys of
/// docs/CONFIG.md, so `to_json` doubles as the `check-config` output.
#[derive(Clone, PartialEq, Serialize)]
pub struct Config {
    #[serde(serialize_with = "ser_path")]
    pub state_dir: PathBuf,
    /// The config file actually read, if any.
    #[serde(serialize_with = "ser_opt_path")]
    pub config_path: Option<PathBuf>,
    pub listen: String,
    pub ws_listen: String,
    pub node_id: String,
    pub role: Role,
    /// Shared secret; serialised as `"***"` so it never reaches output.
    #[serde(serialize_with = "ser_secret")]
    pub token: Option<String>,
    /// Base for artifact links, without a trailing slash; None = HTTP base.
    pub public_base_url: Option<String>,
    /// Extra web origins allowed to call the API, lower-case, no trailing slash.
    pub allowed_origins: Vec<String>,
    /// Extra `Host` names (`name` or `name:port`, lower-case) accepted besides
    /// loopback and the bound addresses: the DNS-rebinding guard.
    pub allowed_hosts: Vec<String>,
    pub limits: Limits,
    pub timed_jobs: TimedJobs,
    pub renewal: Renewal,
    pub messages: Messages,
    pub policy: Policy,
    pub baa: Baa,
    pub bridge: Bridge,
}

/// `primary` runs the timed jobs; `standby` serves the API with them idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    pub http_threads: usize,
    pub max_body_bytes: usize,
    pub max_ws_clients: usize,
    pub max_ws_frame_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimedJobs {
    pub interval_ms: u64,
    pub settle_delay_ms: u64,
    pub max_messages_per_tick: usize,
    pub max_tasks_per_tick: usize,
    pub log_retention_days: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Renewal {
    pub template: String,
    pub summary_limit: usize,
    pub max_attempts: u32,
    pub execution_timeout_ms: u64,
    pub retry_base_delay_ms: u64,
    pub retry_max_delay_ms: u64,
    pub retry_jitter_ratio: f64,
    pub inter_job_jitter_ms: [u64; 2],
    pub recheck_delay_ms: u64,
    pub recovery_delay_ms: u64,
    pub cooldown_ms: u64,
    pub failure_pause_threshold: u32,
    pub repeat_pause_threshold: u32,
    pub retention_days: u64,
}

impl Renewal {
    /// A recheck sooner than the next tick could not run anyway.
    pub fn effective_recheck_delay_ms(&self, interval_ms: u64) -> u64 {
        self.recheck_delay_ms.max(interval_ms)
    }

    /// A recovery sooner than the next tick could not run anyway.
    pub fn effective_recovery_delay_ms(&self, interval_ms: u64) -> u64 {
        self.recovery_delay_ms.max(interval_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Messages {
    /// None keeps messages forever.
    pub retention_days: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub rate_limit: RateLimit,
    pub backoff: Backoff,
    pub circuit_breaker: CircuitBreaker,
    pub jitter: Jitter,
    pub stale_lease: StaleLease,
    pub waiter_timeout_ms: u64,
    pub persistence_debounce_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimit {
    pub requests_per_minute_per_platform: u32,
    pub window_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backoff {
    pub base_ms: u64,
    pub max_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CircuitBreaker {
    pub failure_threshold: u32,
    pub open_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Jitter {
    pub min_ms: u64,
    pub max_ms: u64,
    pub mu_ms: u64,
    pub sigma_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StaleLease {
    pub idle_ms: u64,
    pub sweep_interval_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Baa {
    pub enabled: bool,
    pub allowed_tools: Vec<String>,
    /// Absolute paths; a leading `~` is expanded when the config is parsed.
    pub allowed_roots: Vec<String>,
    pub max_blocks_per_message: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bridge {
    pub heartbeat_ms: u64,
    pub client_timeout_ms: u64,
    pub hello_timeout_ms: u64,
    pub login_fresh_ms: u64,
}

impl Config {
    /// Every docs/CONFIG.md default, with the given state directory.
    pub fn with_state_dir(state_dir: PathBuf) -> Config {
        Config {
            state_dir,
            config_path: None,
            listen: "127.0.0.1:4317".to_string(),
            ws_listen: "127.0.0.1:4318".to_string(),
            node_id: "local".to_string(),
            role: Role::Primary,
            token: None,
            public_base_url: None,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            limits: Limits::default(),
            timed_jobs: TimedJobs::default(),
            renewal: Renewal::default(),
            messages: Messages { retention_days: None },
            policy: Policy::default(),
            baa: Baa::default(),
            bridge: Bridge::default(),
        }
    }
}

/// Uses the process environment for the state directory. Without HOME or
/// XDG_STATE_HOME (where `parse_command` refuses to start) it falls back to
/// a directory under the system temp dir, because `Default` cannot fail;
/// the daemon itself always goes through `parse_command`.
impl Default for Config {
    fn default() -> Config {
        let env = |key: &str| std::env::var(key).ok();
        let state_dir =
            default_state_dir(&env).unwrap_or_else(|_| std::env::temp_dir().join("baa-conductor"));
        Config::with_state_dir(state_dir)
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            http_threads: 4,
            max_body_bytes: 1_048_576,
            max_ws_clients: 64,
            max_ws_frame_bytes: 8_388_608,
        }
    }
}

impl Default for TimedJobs {
    fn default() -> TimedJobs {
        TimedJobs {
            interval_ms: 10_000,
            settle_delay_ms: 10_000,
            max_messages_per_tick: 10,
            max_tasks_per_tick: 10,
            log_retention_days: 14,
        }
    }
}

impl Default for Renewal {
    fn default() -> Renewal {
        Renewal {
            template: "[renewal] {summary}\n{link}".to_string(),
            summary_limit: 200,
            max_attempts: 3,
            execution_timeout_ms: 20_000,
            retry_base_delay_ms: 30_000,
            retry_max_delay_ms: 300_000,
            retry_jitter_ratio: 0.2,
            inter_job_jitter_ms: [0, 0],
            recheck_delay_ms: 10_000,
            recovery_delay_ms: 60_000,
            cooldown_ms: 0,
            failure_pause_threshold: 3,
            repeat_pause_threshold: 3,
            retention_days: 30,
        }
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            rate_limit: RateLimit { requests_per_minute_per_platform: 10, window_ms: 60_000 },
            backoff: Backoff { base_ms: 5_000, max_ms: 300_000 },
            circuit_breaker: CircuitBreaker { failure_threshold: 5, open_ms: 60_000 },
            jitter: Jitter { min_ms: 0, max_ms: 0, mu_ms: 0, sigma_ms: 0 },
            stale_lease: StaleLease { idle_ms: 300_000, sweep_interval_ms: 30_000 },
            waiter_timeout_ms: 120_000,
            persistence_debounce_ms: 25,
        }
    }
}

impl Default for Baa {
    fn default() -> Baa {
        Baa {
            enabled: false,
            allowed_tools: vec!["describe".to_string(), "status".to_string(), "files.read".to_string()],
            allowed_roots: Vec::new(),
            max_blocks_per_message: 8,
        }
    }
}

impl Default for Bridge {
    fn default() -> Bridge {
        Bridge {
            heartbeat_ms: 15_000,
            client_timeout_ms: 45_000,
            hello_timeout_ms: 10_000,
            login_fresh_ms: 900_000,
        }
    }
}

/// Written by hand rather than derived so that a `{:?}` in a log line can
/// never print the token.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("state_dir", &self.state_dir)
            .field("config_path", &self.config_path)
            .field("listen", &self.listen)
            .field("ws_listen", &self.ws_listen)
            .field("node_id", &self.node_id)
            .field("role", &self.role)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("public_base_url", &self.public_base_url)
            .field("allowed_origins", &self.allowed_origins)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("limits", &self.limits)
            .field("timed_jobs", &self.timed_jobs)
            .field("renewal", &self.renewal)
            .field("messages", &self.messages)
            .field("policy", &self.policy)
            .field("baa", &self.baa)
            .field("bridge", &self.bridge)
            .finish()
    }
}

/// The effective configuration as JSON, for `check-config`: every key,
/// `state_dir` and `config_path` included, the token shown as `"***"`.
pub fn to_json(config: &Config) -> serde_json::Value {
    // Paths are written lossily and the token by hand, so serialising
    // cannot fail; Null is only a guard against a future field that could.
    serde_json::to_value(config).unwrap_or(serde_json::Value::Null)
}

// Paths serialise lossily: serde's own impl fails on non-UTF-8 paths, and
// check-config must still be able to show them.
fn ser_path<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

fn ser_opt_path<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => ser_path(p, s),
        None => s.serialize_none(),
    }
}

fn ser_secret<S: Serializer>(token: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match token {
        Some(_) => s.serialize_str("***"),
        None => s.serialize_none(),
    }
}
