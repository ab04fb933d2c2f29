//! `GET /v1/timed-jobs`: the ticker's runners, their last results and the
//! recovery summary of this start. The ticker keeps the figures; their
//! shape on the wire is made here.

use serde_json::{json, Value};

use crate::http::api::{ApiError, ApiRequest, Reply};
use crate::http::ctx::Ctx;
use crate::ticker::Status;

pub fn handle_read(ctx: &Ctx, _req: &ApiRequest) -> Result<Reply, ApiError> {
    Ok(Reply::Json(render(&ctx.timed)))
}

fn render(status: &Status) -> Value {
    let recovery = status.last_recovery.lock().clone();
    let runners: Vec<Value> = status
        .runners
        .lock()
        .iter()
        .map(|r| {
            json!({
                "name": r.name, "runs": r.runs, "last_started_at": r.last_started_at,
                "last_finished_at": r.last_finished_at, "last_result": r.last_result.map(|r| r.as_str()),
                "last_details": r.last_details, "next_run_at": r.next_run_at,
            })
        })
        .collect();
    json!({
        "interval_ms": status.interval_ms,
        "role": status.role,
        "log_dir": status.log_dir,
        "last_recovery": recovery.map(|r| json!({
            "recovered_execution_state_count": r.recovered_execution_state_count,
            "requeued_renewal_job_count": r.requeued_renewal_job_count,
            "recovery_next_attempt_at": r.recovery_next_attempt_at,
            "at": r.at,
        })),
        "runners": runners,
    })
}
