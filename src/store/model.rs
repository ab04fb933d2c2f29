//! Plain row types and enumerations of the store. They carry data between the
//! store and the thread roles that use it; none of them knows a wire shape
//! (the HTTP and bridge layers render them), which keeps the schema free to
//! change without touching the API.

use std::fmt;

/// System-wide automation switch (docs/RENEWAL.md "System: `automation_state`").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutomationState {
    Running,
    Paused,
    Draining,
}

impl AutomationState {
    pub const ALL: [&'static str; 3] = ["running", "paused", "draining"];

    pub fn as_str(self) -> &'static str {
        match self {
            AutomationState::Running => "running",
            AutomationState::Paused => "paused",
            AutomationState::Draining => "draining",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(AutomationState::Running),
            "paused" => Some(AutomationState::Paused),
            "draining" => Some(AutomationState::Draining),
            _ => None,
        }
    }
}

/// The persisted system state with the reason given when it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemState {
    pub automation_state: AutomationState,
    pub automation_reason: Option<String>,
    pub updated_at: Option<i64>,
}

impl Default for SystemState {
    fn default() -> Self {
        SystemState { automation_state: AutomationState::Running, automation_reason: None, updated_at: None }
    }
}

/// Per-conversation automation switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationStatus {
    Manual,
    Auto,
    Paused,
}

impl ConversationStatus {
    pub const ALL: [&'static str; 3] = ["manual", "auto", "paused"];

    pub fn as_str(self) -> &'static str {
        match self {
            ConversationStatus::Manual => "manual",
            ConversationStatus::Auto => "auto",
            ConversationStatus::Paused => "paused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "manual" => Some(ConversationStatus::Manual),
            "auto" => Some(ConversationStatus::Auto),
            "paused" => Some(ConversationStatus::Paused),
            _ => None,
        }
    }
}

/// Renewal job lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Running,
    Done,
    Failed,
}

impl JobStatus {
    pub const ALL: [&'static str; 4] = ["pending", "running", "done", "failed"];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(JobStatus::Pending),
            "running" => Some(JobStatus::Running),
            "done" => Some(JobStatus::Done),
            "failed" => Some(JobStatus::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A conversation's execution lock (docs/RENEWAL.md "Conversation:
/// `execution_state`"): two automations never act on one conversation at
/// once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionState {
    Idle,
    RenewalRunning,
    InstructionRunning,
}

impl ExecutionState {
    pub const ALL: [&'static str; 3] = ["idle", "renewal_running", "instruction_running"];

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionState::Idle => "idle",
            ExecutionState::RenewalRunning => "renewal_running",
            ExecutionState::InstructionRunning => "instruction_running",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "idle" => Some(ExecutionState::Idle),
            "renewal_running" => Some(ExecutionState::RenewalRunning),
            "instruction_running" => Some(ExecutionState::InstructionRunning),
            _ => None,
        }
    }
}

/// How a job's `payload` is stored: the text itself, or a JSON document
/// whose `text` is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    Text,
    Json,
}

impl PayloadKind {
    pub const ALL: [&'static str; 2] = ["text", "json"];

    pub fn as_str(self) -> &'static str {
        match self {
            PayloadKind::Text => "text",
            PayloadKind::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(PayloadKind::Text),
            "json" => Some(PayloadKind::Json),
            _ => None,
        }
    }
}

/// The pause reasons the daemon sets itself (docs/RENEWAL.md "Conversation:
/// `pause_reason`"); a person's pause may carry any text instead, so the
/// column stays text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    /// `POST …/paused` without a reason.
    User,
    /// `consecutive_failure_count` reached `renewal.failure_pause_threshold`.
    ExecutionFailure,
    /// The same assistant text `renewal.repeat_pause_threshold` times in a row.
    RepeatedMessage,
    /// The same renewed summary `renewal.repeat_pause_threshold` times in a row.
    RepeatedRenewal,
}

impl PauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::User => "user",
            PauseReason::ExecutionFailure => "execution_failure",
            PauseReason::RepeatedMessage => "repeated_message",
            PauseReason::RepeatedRenewal => "repeated_renewal",
        }
    }
}

/// Why the projector made no job of a message (docs/RENEWAL.md "The projector",
/// in the order the rules apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    NonAssistant,
    MissingLocalConversation,
    AutomationManual,
    AutomationPaused,
    Superseded,
    Cooldown,
    RouteUnavailable,
    Duplicate,
    /// The message's instruction blocks were recorded: the `[baa]` reply
    /// keeps the conversation going (docs/BAA.md).
    BaaInstructions,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NonAssistant => "non_assistant",
            SkipReason::MissingLocalConversation => "missing_local_conversation",
            SkipReason::AutomationManual => "automation_manual",
            SkipReason::AutomationPaused => "automation_paused",
            SkipReason::Superseded => "superseded",
            SkipReason::Cooldown => "cooldown",
            SkipReason::RouteUnavailable => "route_unavailable",
            SkipReason::Duplicate => "duplicate",
            SkipReason::BaaInstructions => "baa_instructions",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub message_id: String,
    pub platform: String,
    pub conversation_id: String,
    pub role: String,
    /// Present on single reads and ingest answers; lists leave it out.
    pub raw_text: Option<String>,
    pub summary: Option<String>,
    pub page_url: Option<String>,
    pub page_title: Option<String>,
    pub tab_id: Option<i64>,
    pub client_id: Option<String>,
    pub organization_id: Option<String>,
    pub observed_at: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub link_id: String,
    pub local_conversation_id: String,
    pub platform: String,
    pub client_id: Option<String>,
    pub remote_conversation_id: String,
    pub page_url: Option<String>,
    pub page_title: Option<String>,
    pub route_path: Option<String>,
    pub route_pattern: Option<String>,
    /// JSON text of an object, as stored.
    pub route_params: Option<String>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    /// JSON text of an object, as stored.
    pub target_payload: Option<String>,
    pub is_active: bool,
    pub observed_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub local_conversation_id: String,
    pub platform: String,
    pub automation_status: ConversationStatus,
    pub last_non_paused_automation_status: ConversationStatus,
    pub pause_reason: Option<String>,
    pub last_error: Option<String>,
    pub execution_state: ExecutionState,
    pub consecutive_failure_count: i64,
    pub repeated_message_count: i64,
    pub repeated_renewal_count: i64,
    pub last_message_fingerprint: Option<String>,
    pub last_renewal_fingerprint: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub last_message_id: Option<String>,
    pub last_message_at: Option<i64>,
    pub cooldown_until: Option<i64>,
    pub paused_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub active_link: Option<Link>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub job_id: String,
    pub local_conversation_id: String,
    pub message_id: String,
    pub status: JobStatus,
    pub payload_kind: PayloadKind,
    pub payload: String,
    pub target_snapshot: Option<String>,
    pub attempt_count: i64,
    pub max_attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    pub log_path: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Route of the page a message was seen on (docs/BRIDGE.md `route`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteInfo {
    pub path: Option<String>,
    pub pattern: Option<String>,
    /// JSON text of an object.
    pub params: Option<String>,
}

/// Everything `browser.final_message` and `POST /v1/messages` carry, already
/// validated by the layer that parsed the wire shape.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub platform: String,
    pub conversation_id: String,
    pub message_id: String,
    pub role: String,
    pub text: String,
    pub observed_at: i64,
    pub page_url: Option<String>,
    pub page_title: Option<String>,
    pub tab_id: Option<i64>,
    pub route: Option<RouteInfo>,
    pub organization_id: Option<String>,
    pub shell_page: bool,
    pub client_id: Option<String>,
}

/// Settings the ingest transaction needs from the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IngestSettings {
    pub summary_limit: usize,
    pub repeat_pause_threshold: u32,
    /// Instruction blocks (docs/BAA.md): read and recorded only when set, that is
    /// with `baa.enabled` on a primary node.
    pub baa: Option<BaaIngest>,
}

/// What ingest needs to record a message's instruction blocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaaIngest {
    pub max_blocks: usize,
    /// Of the reply job made at once for a message whose blocks are all
    /// invalid (`renewal.max_attempts`).
    pub max_attempts: u32,
}

impl IngestSettings {
    pub fn from_config(config: &crate::config::Config) -> IngestSettings {
        let primary = config.role == crate::config::Role::Primary;
        IngestSettings {
            summary_limit: config.renewal.summary_limit,
            repeat_pause_threshold: config.renewal.repeat_pause_threshold,
            baa: (config.baa.enabled && primary).then_some(BaaIngest {
                max_blocks: config.baa.max_blocks_per_message,
                max_attempts: config.renewal.max_attempts,
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct IngestOutcome {
    pub message: Message,
    pub local_conversation_id: Option<String>,
    pub link_id: Option<String>,
    pub duplicate: bool,
    /// True when this ingest paused an `auto` conversation (repeated message),
    /// so connected plugins must be told.
    pub automation_changed: bool,
    /// Instruction blocks recorded for execution (docs/BAA.md "What happens to a message").
    pub recorded_blocks: usize,
}

/// Result of a state transition asked of one resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition<T> {
    Changed(T),
    NotFound,
    /// The resource exists but its state forbids the change; carries the state.
    InvalidState(String),
}

/// Page of a list query: `limit` items starting at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub offset: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    pub platform: Option<String>,
    pub conversation_id: Option<String>,
    pub role: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationFilter {
    pub platform: Option<String>,
    pub status: Option<ConversationStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkFilter {
    pub platform: Option<String>,
    pub remote_conversation_id: Option<String>,
    pub local_conversation_id: Option<String>,
    pub client_id: Option<String>,
    pub active: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub local_conversation_id: Option<String>,
    pub message_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub pending: i64,
    pub running: i64,
    pub done: i64,
    pub failed: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub messages: i64,
    pub conversations: i64,
    pub jobs: JobCounts,
}

/// A conversation under automation, as the plugins' state snapshot shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutomatedConversation {
    pub local_conversation_id: String,
    pub platform: String,
    pub remote_conversation_id: Option<String>,
    pub automation_status: ConversationStatus,
    pub pause_reason: Option<String>,
    pub execution_state: ExecutionState,
}

/// What one projector run needs (docs/RENEWAL.md "The projector").
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectSettings {
    pub now: i64,
    pub settle_delay_ms: i64,
    pub max_messages: usize,
    pub template: String,
    pub summary_limit: usize,
    pub max_attempts: u32,
    /// `PUBLIC_BASE/artifact/msg/`: a message's `{link}` is this plus its
    /// encoded id and `.txt`.
    pub link_base: String,
    /// The day's JSONL log file, recorded on each new job.
    pub log_path: Option<String>,
}

/// The fate of one examined message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    Skipped { message_id: String, reason: SkipReason },
    Projected { message_id: String, job_id: String, local_conversation_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionReport {
    pub outcomes: Vec<Projection>,
    /// The cursor after this run, when it moved: ingest sequence number
    /// and message id.
    pub cursor: Option<(i64, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    /// `summary` is the renewed content, for the repeated-renewal counter.
    Success { summary: String },
    /// `retry_at` applies when the job is not finished by this failure.
    Failure { error: String, terminal: bool, retry_at: i64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct FinishAttempt {
    pub job_id: String,
    pub local_conversation_id: String,
    pub now: i64,
    pub result: AttemptResult,
    pub cooldown_ms: i64,
    pub failure_pause_threshold: u32,
    pub repeat_pause_threshold: u32,
    /// The day's JSONL file, recorded as the job's `log_path`.
    pub log_path: Option<String>,
    /// `target_snapshot` of the link the delivery used (RENEWAL.md step
    /// 7), which may have moved since the claim; `None` keeps the stored
    /// one.
    pub target_snapshot: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishOutcome {
    /// The job's status afterwards: `done`, `pending` (retry scheduled) or
    /// `failed` when recorded; otherwise whatever it is now (`None` when it
    /// no longer exists).
    pub job_status: Option<JobStatus>,
    /// The pause reason when this attempt paused the conversation.
    pub paused: Option<PauseReason>,
    /// False when the job was no longer pending or running, so nothing was
    /// written (it was cancelled meanwhile).
    pub recorded: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub recovered_execution_state_count: i64,
    pub requeued_renewal_job_count: i64,
    pub recovery_next_attempt_at: Option<i64>,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneBatch {
    pub jobs_finished_before: i64,
    pub messages_observed_before: Option<i64>,
    pub batch: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub jobs: i64,
    pub messages: i64,
}
