//! Row types of the `executions` table (BAA.md "Execution"), kept apart
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
