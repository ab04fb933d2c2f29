//! The store's states and reasons, each an enum with its one `as_str` and
//! `parse`: the system's automation state and pause reasons, a
//! conversation's automation status and execution state, a job's status and
//! payload kind, and why the projector skipped a message. Columns hold them
//! through columns.rs; the compiler finds every place a new value must be
//! handled.

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
