//! Browser routes: what the bridge knows about plugins (clients, tabs, login
//! states) with the request policy's view, and plugin actions forwarded
//! through the hub — under a policy lease when they name a platform.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::bridge::final_message::{valid_platform, valid_token_id};
use crate::bridge::hub::Client;
use crate::bridge::RequestError;
use crate::http::api::{ApiError, ApiRequest, Reply};
use crate::http::body::{opt_str, Object};
use crate::http::ctx::Ctx;
use crate::http::leased::{admit, policy_outcome, timeout_ms, unsent};
use crate::policy::Outcome;
use crate::util::now_ms;

pub const LOGIN_STATUSES: [&str; 3] = ["fresh", "stale", "lost"];

pub fn handle_read(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    let platform = req.text_filter("platform")?;
    let status =
        req.enum_filter("status", &LOGIN_STATUSES, |s| LOGIN_STATUSES.iter().find(|x| **x == s).copied())?;
    let now = now_ms();
    let clients = ctx.hub.clients();
    let listed = |c: &&Client| platform.as_ref().is_none_or(|p| c.hello.platforms.contains(p));
    let client_views: Vec<Value> = clients.iter().filter(listed).map(client_view).collect();
    let mut logins = Vec::new();
    for c in &clients {
        for login in c.login_states.values() {
            let login_status = login_status(c, login.captured_at, now, ctx.hub.login_fresh_ms());
            if platform.as_ref().is_some_and(|p| *p != login.platform)
                || status.is_some_and(|s| s != login_status)
            {
                continue;
            }
            logins.push(json!({
                "client_id": c.hello.client_id, "platform": login.platform, "status": login_status,
                "captured_at": login.captured_at, "fingerprint": login.fingerprint, "account": login.account,
            }));
        }
    }
    let policy = serde_json::to_value(ctx.policy.view(platform.as_deref())).unwrap_or(Value::Null);
    Ok(Reply::Json(json!({ "clients": client_views, "login_states": logins, "policy": policy })))
}

/// fresh: captured within `login_fresh_ms` and connected; stale: older;
/// lost: the client is disconnected.
fn login_status(c: &Client, captured_at: i64, now: i64, fresh_ms: i64) -> &'static str {
    if !c.connected() {
        "lost"
    } else if now - captured_at <= fresh_ms {
        "fresh"
    } else {
        "stale"
    }
}

fn client_view(c: &Client) -> Value {
    let tabs: Vec<Value> = c
        .tabs
        .iter()
        .map(|t| {
            json!({ "tab_id": t.tab_id, "platform": t.platform, "url": t.url, "title": t.title,
                    "conversation_id": t.conversation_id })
        })
        .collect();
    json!({
        "client_id": c.hello.client_id, "connection_id": c.connection_id, "browser": c.hello.browser,
        "version": c.hello.version, "platforms": c.hello.platforms, "connected_at": c.connected_at,
        "last_seen_at": c.last_seen_at, "status": if c.connected() { "connected" } else { "lost" }, "tabs": tabs,
    })
}

fn valid_action(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && s.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

/// `POST /v1/browser/actions`' body.
struct ActionInput {
    action: String,
    platform: Option<String>,
    client_id: Option<String>,
    tab_id: Option<i64>,
    payload: Value,
}

fn parse_action(body: &Object) -> Result<ActionInput, ApiError> {
    let action = opt_str(body, "action", 64)?.filter(|a| valid_action(a));
    let action = action.ok_or_else(|| {
        ApiError::invalid("action", "Field \"action\" is required and must match [a-z][a-z0-9_.]{0,63}.")
    })?;
    let platform = opt_str(body, "platform", 32)?;
    if platform.as_deref().is_some_and(|p| !valid_platform(p)) {
        return Err(ApiError::invalid("platform", "Field \"platform\" must match [a-z0-9_-]{1,32}."));
    }
    let client_id = opt_str(body, "client_id", 128)?;
    if client_id.as_deref().is_some_and(|c| !valid_token_id(c)) {
        return Err(ApiError::invalid("client_id", "Field \"client_id\" must match [A-Za-z0-9._:-]{1,128}."));
    }
    let tab_id =
        match body.get("tab_id") {
            None | Some(Value::Null) => None,
            Some(v) => Some(crate::browser_json::integer(v).filter(|t| *t > 0).ok_or_else(|| {
                ApiError::invalid("tab_id", "Field \"tab_id\" must be a positive integer.")
            })?),
        };
    let payload = match body.get("payload") {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(ApiError::invalid("payload", "Field \"payload\" must be an object.")),
    };
    Ok(ActionInput { action, platform, client_id, tab_id, payload })
}

pub fn handle_actions(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    let body = req.json_object()?;
    let ActionInput { action, platform, client_id, tab_id, payload } = parse_action(&body)?;
    let timeout = timeout_ms(&body, ctx.config.renewal.execution_timeout_ms)?;
    let deadline = Instant::now() + Duration::from_millis(timeout);
    // A platform-bound action passes the policy like any other.
    // The action goes to the client whose lease was granted, not to whoever
    // is most recently seen after the admission's rate delay.
    let (lease, send_to) = match &platform {
        Some(p) => {
            let client =
                ctx.hub.chosen_client(Some(p), client_id.as_deref()).ok_or(RequestError::NoActiveClient)?;
            (Some(admit(ctx, &client, p, &req.request_id, deadline)?), Some(client))
        }
        None => (None, client_id.clone()),
    };
    let pending = ctx
        .hub
        .request(platform.as_deref(), send_to.as_deref(), "act_", |request_id| {
            json!({ "type": "action", "request_id": request_id, "action": action, "platform": platform,
                    "tab_id": tab_id, "payload": payload })
            .to_string()
        })
        // Unsent: the lease (if any) is dropped, which counts as cancelled.
        .map_err(|e| if lease.is_some() { unsent(e) } else { e })?;
    let answer = pending.next(deadline);
    if let Some(lease) = lease {
        lease.complete(match &answer {
            Ok(frame) => match crate::bridge::frames::delivery_verdict(frame) {
                Ok(()) => Outcome::Success,
                Err(reason) => Outcome::failure(reason),
            },
            Err(e) => policy_outcome(*e),
        });
    }
    let frame = answer?;
    let field = |k: &str| frame.get(k).cloned().unwrap_or(Value::Null);
    Ok(Reply::Json(json!({
        "accepted": field("accepted"), "completed": field("completed"), "failed": field("failed"),
        "reason": field("reason"), "target": field("target"), "result": field("result"),
        "client_id": pending.client_id, "connection_id": pending.connection_id, "request_id": pending.request_id,
    })))
}
