//! Probe routes: liveness and the self-description built from the route table.

use serde_json::{json, Value};

use crate::http::api::{ApiError, ApiRequest, Reply};
use crate::http::ctx::Ctx;
use crate::http::routes::ROUTES;

pub fn handle_health(_ctx: &Ctx, _req: &ApiRequest) -> Result<Reply, ApiError> {
    Ok(Reply::Json(json!({ "status": "ok" })))
}

pub fn handle_describe(_ctx: &Ctx, _req: &ApiRequest) -> Result<Reply, ApiError> {
    let routes: Vec<Value> = ROUTES
        .iter()
        .map(|r| json!({ "id": r.id, "kind": r.kind.as_str(), "method": r.method, "path": r.path, "summary": r.summary() }))
        .collect();
    Ok(Reply::Json(
        json!({ "name": "baa-conductor", "version": env!("CARGO_PKG_VERSION"), "routes": routes }),
    ))
}
