//! The dispatcher's delivery itself (docs/RENEWAL.md steps 4, 5 and 10): the
//! link, tab and text a job is delivered with, and the `proxy_delivery`
//! round trip through the hub with the plugin's verdict. `dispatcher.rs`
//! decides when and whether a job goes out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::reasons::Failure;
use crate::bridge::frames::{delivery_verdict, plan_id, proxy_delivery, ProxyDelivery};
use crate::bridge::Hub;
use crate::store::{link_route, Conversation, Job, Link, LinkRoute, PayloadKind};
use crate::util::now_ms;

/// A job that passed the checks: what its delivery needs.
pub(super) struct Ready {
    pub job: Job,
    pub conv: Conversation,
    pub link: Link,
    /// The link's tab and organization, read from it once.
    pub route: LinkRoute,
    pub text: String,
    pub client: String,
    /// The renewed message's `{summary}`, for the repeated-renewal counter;
    /// read while checking, off the delivery path.
    pub summary: String,
}

impl Ready {
    /// Step 10: `proxy_delivery` and the plugin's verdict.
    pub fn send(&self, hub: &Arc<Hub>, timeout_ms: u64) -> Result<(), SendFailure> {
        let Ready { job, conv, link, route, text, client, .. } = self;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let delivery = ProxyDelivery {
            platform: &link.platform,
            tab_id: route.tab_id,
            conversation_id: &link.remote_conversation_id,
            organization_id: &route.organization_id,
            page_url: link.page_url.as_deref(),
            page_title: link.page_title.as_deref(),
            // docs/BRIDGE.md: the payload text, trimmed.
            message_text: text.trim(),
            assistant_message_id: &job.message_id,
            plan_id: plan_id(&job.message_id, now_ms()),
            timeout_ms,
            local_conversation_id: &conv.local_conversation_id,
        };
        let pending = hub
            .request(Some(&link.platform), Some(client), "pd_", |request_id| {
                proxy_delivery(request_id, &delivery)
            })
            .map_err(|e| SendFailure { reason: Failure::Request(e), sent: false })?;
        let frame =
            pending.next(deadline).map_err(|e| SendFailure { reason: Failure::Request(e), sent: true })?;
        delivery_verdict(&frame)
            .map_err(|reason| SendFailure { reason: Failure::Verdict(reason), sent: true })
    }
}

/// A delivery that failed, and whether its frame had reached the plugin's
/// outbox (then it may have been delivered).
pub(super) struct SendFailure {
    pub reason: Failure,
    pub sent: bool,
}

/// Steps 4–5: the link, its route and the text, or the failure.
pub(super) fn prepare(job: &Job, conv: &Conversation) -> Result<(Link, LinkRoute, String), Failure> {
    let (link, route) = route(conv)?;
    let text = payload_text(job)?;
    Ok((link, route, text))
}

/// Step 4: the conversation's active link and its route, or the failure.
pub(super) fn route(conv: &Conversation) -> Result<(Link, LinkRoute), Failure> {
    let link = conv.active_link.clone().ok_or(Failure::MissingActiveLink)?;
    let route = link_route(&link).ok_or(Failure::RouteUnavailable)?;
    Ok((link, route))
}

/// Step 5: the text to deliver, or a terminal failure.
pub(super) fn payload_text(job: &Job) -> Result<String, Failure> {
    let text = match job.payload_kind {
        PayloadKind::Text => job.payload.clone(),
        PayloadKind::Json => {
            let value: Value = serde_json::from_str(&job.payload).map_err(|_| Failure::InvalidPayload)?;
            let obj = value.as_object().ok_or(Failure::InvalidPayload)?;
            obj.get("text").and_then(Value::as_str).unwrap_or("").to_string()
        }
    };
    if text.trim().is_empty() {
        return Err(Failure::MissingPayloadText);
    }
    Ok(text)
}
