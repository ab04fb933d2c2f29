//! System routes: the daemon's own state and the durable automation switch
//! (pause, resume, drain). Every change is pushed to plugins via the hook.

use serde_json::json;

use crate::http::api::{ApiError, ApiRequest, Reply};
use crate::http::body::opt_reason;
use crate::http::ctx::Ctx;
use crate::store::AutomationState;
use crate::util::now_ms;

pub fn handle_read(ctx: &Ctx, _req: &ApiRequest) -> Result<Reply, ApiError> {
    let state = ctx.store.system_state()?;
    let counts = ctx.store.counts()?;
    // Drained means: draining, and nothing left to finish.
    let drained = state.automation_state == AutomationState::Draining
        && counts.jobs.pending == 0
        && counts.jobs.running == 0;
    let now = now_ms();
    Ok(Reply::Json(json!({
        "node_id": ctx.config.node_id,
        "role": ctx.config.role,
        "version": env!("CARGO_PKG_VERSION"),
        "automation_state": state.automation_state.as_str(),
        "automation_reason": state.automation_reason,
        "drained": drained,
        "started_at": ctx.started_at,
        "uptime_ms": (now - ctx.started_at).max(0),
        "pid": ctx.pid,
        "state_dir": ctx.config.state_dir.display().to_string(),
        "http_base": ctx.http_base,
        "ws_url": ctx.ws_url,
        "counts": {
            "messages": counts.messages,
            "conversations": counts.conversations,
            "jobs": {
                "pending": counts.jobs.pending, "running": counts.jobs.running,
                "done": counts.jobs.done, "failed": counts.jobs.failed,
            },
        },
        "clients": ctx.hub.connected_count(),
    })))
}

fn set_state(ctx: &Ctx, req: &ApiRequest, state: AutomationState) -> Result<Reply, ApiError> {
    let body = req.json_object()?;
    let reason = opt_reason(&body)?;
    ctx.store.set_system_state(state, reason)?;
    log::info!("system: automation_state -> {} ({})", state.as_str(), req.request_id);
    ctx.automation_changed();
    handle_read(ctx, req)
}

pub fn handle_pause(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    set_state(ctx, req, AutomationState::Paused)
}

pub fn handle_resume(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    set_state(ctx, req, AutomationState::Running)
}

pub fn handle_drain(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    set_state(ctx, req, AutomationState::Draining)
}
