//! Row types of the `executions` table (docs/BAA.md "What happens to a message"), kept apart
//! from `model.rs` so the instruction feature's types sit together. Plain
//! data: the HTTP layer renders them, the worker fills them.

/// An execution's lifecycle: `pending` → `running` → `succeeded` | `failed`;
/// `invalid` and `rejected` are final from the start or at the block's turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Rejected,
    Invalid,
}

impl ExecutionStatus {
    pub const ALL: [&'static str; 6] = ["pending", "running", "succeeded", "failed", "rejected", "invalid"];

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Pending => "pending",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Rejected => "rejected",
            ExecutionStatus::Invalid => "invalid",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(ExecutionStatus::Pending),
            "running" => Some(ExecutionStatus::Running),
            "succeeded" => Some(ExecutionStatus::Succeeded),
            "failed" => Some(ExecutionStatus::Failed),
            "rejected" => Some(ExecutionStatus::Rejected),
            "invalid" => Some(ExecutionStatus::Invalid),
            _ => None,
        }
    }

    /// Whether the execution is over (nothing more will happen to it).
    pub fn is_final(self) -> bool {
        !matches!(self, ExecutionStatus::Pending | ExecutionStatus::Running)
    }
}

/// How a block's params were written (docs/BAA.md "Writing a block").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamsKind {
    Json,
    Text,
}

impl ParamsKind {
    pub const ALL: [&'static str; 2] = ["json", "text"];

    pub fn as_str(self) -> &'static str {
        match self {
            ParamsKind::Json => "json",
            ParamsKind::Text => "text",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(ParamsKind::Json),
            "text" => Some(ParamsKind::Text),
            _ => None,
        }
    }
}

/// One row of `executions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub instruction_id: String,
    pub message_id: String,
    pub local_conversation_id: String,
    pub block_index: i64,
    pub target: Option<String>,
    pub tool: Option<String>,
    /// `json` or `text`; null for a block that could not be read (its raw
    /// text is then in `params`).
    pub params_kind: Option<ParamsKind>,
    pub params: Option<String>,
    pub status: ExecutionStatus,
    pub summary: Option<String>,
    pub result_json: Option<String>,
    pub error: Option<String>,
    pub artifact_path: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub created_at: i64,
}

/// A block as ingest records it: `pending`, or already final (`invalid`,
/// `rejected` for `too_many_blocks`) with its error and summary.
#[derive(Debug, Clone, PartialEq)]
pub struct NewExecution {
    pub instruction_id: String,
    pub block_index: i64,
    pub target: Option<String>,
    pub tool: Option<String>,
    pub params_kind: Option<ParamsKind>,
    pub params: Option<String>,
    pub status: ExecutionStatus,
    pub summary: Option<String>,
    pub error: Option<String>,
}

/// How a block ended, as the worker records it.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockResult {
    pub status: ExecutionStatus,
    pub summary: Option<String>,
    pub result_json: Option<String>,
    pub error: Option<String>,
    pub artifact_path: Option<String>,
}

/// What the transaction that ends a message's last block also does: the
/// conversation's lock is released and the `[baa]` reply job created.
#[derive(Debug, Clone)]
pub struct ReplySettings {
    /// `PUBLIC_BASE/artifact/` — artifact paths are appended to it.
    pub artifact_base: String,
    pub max_attempts: u32,
}

/// A message whose blocks are all final.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageDone {
    pub message_id: String,
    /// The reply job, unless every block was stopped by the automation
    /// gate (then the person switched automation off; nothing is typed).
    pub reply_job_id: Option<String>,
}

/// The worker's attempt to take a message's conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// The conversation is now `instruction_running`; these blocks are the
    /// message's pending ones, in order.
    Locked(Vec<Execution>),
    /// Another automation holds the conversation (`renewal_running`).
    Busy,
    /// Automation is off for it: its pending blocks are rejected.
    Stopped(MessageDone),
}

/// Whether a block may start.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    Go,
    /// Automation was switched off: this block and the message's other
    /// pending ones are rejected.
    Stopped(MessageDone),
}

/// Recovery of the executions at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionRecovery {
    /// Blocks found `running`, now `failed` with `interrupted`.
    pub interrupted: usize,
    /// Messages whose last block was the interrupted one: their reply is
    /// created now.
    pub replies: Vec<String>,
}

/// Filters of `GET /v1/executions`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionFilter {
    pub message_id: Option<String>,
    pub local_conversation_id: Option<String>,
    pub status: Option<ExecutionStatus>,
    pub tool: Option<String>,
}
