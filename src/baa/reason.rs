//! Why an execution did not succeed: the `error` code stored with an
//! `invalid`, `rejected` or `failed` execution (docs/BAA.md lists them).
//! One enum, so the parser, the tools, the worker and recovery never spell a
//! code twice.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    // invalid: the block cannot be read or names nothing runnable.
    MissingHeader,
    InvalidHeader,
    InvalidJson,
    UnclosedBlock,
    UnknownTarget,
    UnknownTool,
    InvalidParams,
    // rejected: the block is fine, the settings or the moment say no.
    TooManyBlocks,
    ToolNotAllowed,
    PathOutsideRoots,
    Disabled,
    AutomationPaused,
    AutomationManual,
    SystemPaused,
    ConversationMissing,
    // failed: the tool ran (or tried to) and did not succeed.
    ExitCode(i32),
    Signal(i32),
    Timeout,
    FileTooLarge,
    NotFound,
    NotAFile,
    NotUtf8,
    Io,
    SpawnFailed,
    Interrupted,
    StoreError,
}

impl Reason {
    /// The stored code, e.g. `path_outside_roots`, `exit_code_2`.
    pub fn code(self) -> Cow<'static, str> {
        let fixed = match self {
            Reason::MissingHeader => "missing_header",
            Reason::InvalidHeader => "invalid_header",
            Reason::InvalidJson => "invalid_json",
            Reason::UnclosedBlock => "unclosed_block",
            Reason::UnknownTarget => "unknown_target",
            Reason::UnknownTool => "unknown_tool",
            Reason::InvalidParams => "invalid_params",
            Reason::TooManyBlocks => "too_many_blocks",
            Reason::ToolNotAllowed => "tool_not_allowed",
            Reason::PathOutsideRoots => "path_outside_roots",
            Reason::Disabled => "baa_disabled",
            Reason::AutomationPaused => "automation_paused",
            Reason::AutomationManual => "automation_manual",
            Reason::SystemPaused => "system_paused",
            Reason::ConversationMissing => "missing_local_conversation",
            Reason::ExitCode(n) => return Cow::Owned(format!("exit_code_{n}")),
            Reason::Signal(n) => return Cow::Owned(format!("signal_{n}")),
            Reason::Timeout => "timeout",
            Reason::FileTooLarge => "file_too_large",
            Reason::NotFound => "not_found",
            Reason::NotAFile => "not_a_file",
            Reason::NotUtf8 => "not_utf8",
            Reason::Io => "io_error",
            Reason::SpawnFailed => "spawn_failed",
            Reason::Interrupted => "interrupted",
            Reason::StoreError => "store_error",
        };
        Cow::Borrowed(fixed)
    }

    /// The status an execution ends in for this reason.
    pub fn status(self) -> crate::store::ExecutionStatus {
        use crate::store::ExecutionStatus as S;
        match self {
            Reason::MissingHeader
            | Reason::InvalidHeader
            | Reason::InvalidJson
            | Reason::UnclosedBlock
            | Reason::UnknownTarget
            | Reason::UnknownTool
            | Reason::InvalidParams => S::Invalid,
            Reason::TooManyBlocks
            | Reason::ToolNotAllowed
            | Reason::PathOutsideRoots
            | Reason::Disabled
            | Reason::AutomationPaused
            | Reason::AutomationManual
            | Reason::SystemPaused
            | Reason::ConversationMissing => S::Rejected,
            _ => S::Failed,
        }
    }

    /// The reasons that stop a block because automation was switched off
    /// for it, not because of anything in the block.
    pub const GATE: [Reason; 5] = [
        Reason::AutomationPaused,
        Reason::AutomationManual,
        Reason::SystemPaused,
        Reason::ConversationMissing,
        Reason::Disabled,
    ];

    /// Whether a stored `error` is one of the `GATE` reasons.
    pub fn is_gate_code(code: &str) -> bool {
        Reason::GATE.iter().any(|r| r.code() == code)
    }
}
