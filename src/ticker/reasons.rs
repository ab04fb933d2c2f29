//! Why the dispatcher put a job back or failed it (docs/RENEWAL.md "The
//! dispatcher", by step): one enum each, with the one `as_str` the log's
//! `result` and a job's `last_error` are written with. A new reason is a
//! variant here; the compiler then names every place that must handle it.

use crate::bridge::RequestError;
use crate::policy::RefusalCode;
use crate::store::{Conversation, ConversationStatus};

/// A deferral: the job goes back to `pending` without an attempt counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferral {
    /// Step 2: the conversation is `paused`.
    AutomationPaused,
    /// Step 2: the conversation is `manual`.
    AutomationManual,
    /// Step 3: another automation holds the conversation's lock.
    ExecutionBusy,
    /// Step 9: the request policy refused the target.
    Refused(RefusalCode),
    /// The daemon is stopping.
    ShuttingDown,
}

impl Deferral {
    pub fn as_str(self) -> &'static str {
        match self {
            Deferral::AutomationPaused => "automation_paused",
            Deferral::AutomationManual => "automation_manual",
            Deferral::ExecutionBusy => "execution_busy",
            Deferral::Refused(code) => code.as_str(),
            Deferral::ShuttingDown => RequestError::ShuttingDown.code(),
        }
    }

    /// Step 2: why a conversation that is no longer `auto` defers its job;
    /// `None` while it is `auto`.
    pub fn stopped(conv: &Conversation) -> Option<Deferral> {
        match conv.automation_status {
            ConversationStatus::Paused => Some(Deferral::AutomationPaused),
            ConversationStatus::Manual => Some(Deferral::AutomationManual),
            ConversationStatus::Auto => None,
        }
    }
}

/// A failed attempt (counted, retried with backoff unless terminal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Step 1: the conversation is gone (the job fails without an attempt).
    MissingLocalConversation,
    /// Step 4: the conversation has no active link.
    MissingActiveLink,
    /// Step 4: the active link has no usable route.
    RouteUnavailable,
    /// Step 5: a JSON payload that is not an object.
    InvalidPayload,
    /// Step 5: no non-blank text to deliver.
    MissingPayloadText,
    /// Step 6: no plugin to deliver to.
    NoActiveClient,
    /// Step 12: the hub gave up on the request (the plugin left, was
    /// replaced, or did not answer in time).
    Request(RequestError),
    /// Step 12: the plugin's verdict — its own `reason`,
    /// `upstream_http_<status>` or `delivery_failed`.
    Verdict(String),
}

impl Failure {
    pub fn as_str(&self) -> &str {
        match self {
            Failure::MissingLocalConversation => "missing_local_conversation",
            Failure::MissingActiveLink => "missing_active_link",
            Failure::RouteUnavailable => "route_unavailable",
            Failure::InvalidPayload => "invalid_payload",
            Failure::MissingPayloadText => "missing_payload_text",
            Failure::NoActiveClient => "no_active_client",
            Failure::Request(e) => e.code(),
            Failure::Verdict(reason) => reason,
        }
    }

    /// Whether the job fails for good at once, whatever attempts are left:
    /// nothing about it can change by waiting.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Failure::MissingLocalConversation | Failure::InvalidPayload | Failure::MissingPayloadText
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_waiting_cannot_change_is_terminal() {
        let all = [
            Failure::MissingLocalConversation,
            Failure::MissingActiveLink,
            Failure::RouteUnavailable,
            Failure::InvalidPayload,
            Failure::MissingPayloadText,
            Failure::NoActiveClient,
            Failure::Request(RequestError::ClientDisconnected),
            Failure::Verdict("tab_closed".into()),
        ];
        let terminal: Vec<&str> = all.iter().filter(|f| f.is_terminal()).map(Failure::as_str).collect();
        assert_eq!(terminal, ["missing_local_conversation", "invalid_payload", "missing_payload_text"]);
        assert_eq!(Deferral::Refused(RefusalCode::RateLimited).as_str(), "rate_limited");
        assert_eq!(Deferral::ShuttingDown.as_str(), "shutting_down");
    }
}
