//! System routes: the daemon's own state, the durable automation switch
//! (pause, resume, drain; every change is pushed to plugins via the hook),
//! and online backups, which the daemon writes only under
//! `STATE_DIR/backups/` with a name it chooses: a web request never names a
//! path on the host.

use serde_json::json;

use crate::http::api::{ApiError, ApiRequest, Reply};
use crate::http::body::opt_reason;
use crate::http::ctx::Ctx;
use crate::ops;
use crate::store::{self, AutomationState, BackupError};
use crate::util::now_ms;

pub fn handle_read(ctx: &Ctx, _req: &ApiRequest) -> Result<Reply, ApiError> {
    Ok(Reply::Json(summary(ctx)?))
}

/// The `/v1/system` object; also what the `conductor.status` instruction
/// answers (docs/BAA.md), so the two can never differ.
pub fn summary(ctx: &Ctx) -> Result<serde_json::Value, ApiError> {
    let state = ctx.store.system_state()?;
    let counts = ctx.store.counts()?;
    // Drained means: draining, and nothing left to finish.
    let drained = state.automation_state == AutomationState::Draining
        && counts.jobs.pending == 0
        && counts.jobs.running == 0;
    let now = now_ms();
    Ok(json!({
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
        // What an assistant may do here once its conversation is `auto`:
        // the status page asks before that switch when this is on.
        "instruction_blocks": {
            "enabled": ctx.config.baa.enabled,
            "allowed_tools": ctx.config.baa.allowed_tools,
        },
    }))
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

pub fn handle_backup(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    let body = req.json_object()?;
    if let Some(field) = body.keys().next() {
        return Err(ApiError::invalid(
            field,
            format!("Field \"{field}\" is not accepted: the daemon chooses where a backup goes (STATE_DIR/backups/)."),
        ));
    }
    let Some(_one_at_a_time) = ctx.backup.try_lock() else {
        return Err(ApiError::new(
            409,
            "backup_running",
            "Another backup is being written; try again when it is done.",
            json!({}),
        ));
    };
    let dir = ops::backups_dir(&ctx.config.state_dir);
    ops::private_dir(&dir).map_err(|e| {
        log::error!("backup: cannot create {}: {e}", dir.display());
        ApiError::internal()
    })?;
    let started_at = now_ms();
    let file = ops::backup_file_name(started_at);
    let report = store::backup(ctx.store.path(), &dir.join(&file)).map_err(|e| match e {
        BackupError::Store(e) => ApiError::from(e),
        other => {
            log::error!("backup failed: {other}");
            ApiError::internal()
        }
    })?;
    log::info!("backup: wrote {} ({} bytes) ({})", report.path.display(), report.bytes, req.request_id);
    Ok(Reply::Json(json!({
        "file": file,
        "path": report.path.display().to_string(),
        "bytes": report.bytes,
        "schema_version": report.schema_version,
        "integrity": "ok",
        "started_at": started_at,
        "finished_at": now_ms(),
    })))
}
