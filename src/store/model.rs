//! Plain row types of the store, and (re-exported from states.rs) its
//! states and reasons. They carry data between the store and the thread
//! roles that use it; none of them knows a wire shape (the HTTP and bridge
//! layers render them), which keeps the schema free to change without
//! touching the API.

pub use super::states::*;

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
