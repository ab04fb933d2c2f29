//! Execution routes (docs/BAA.md "Looking at what happened"): the instruction blocks the daemon ran
//! or refused, newest first, and one by its instruction id. Read-only: a
//! block is run by the worker, never through the API.

use serde_json::json;

use crate::http::api::{encode_text, ApiError, ApiRequest, Reply};
use crate::http::ctx::Ctx;
use crate::http::views;
use crate::store::{ExecutionFilter, ExecutionStatus};

pub fn handle_list(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    let page = req.page()?;
    let filter = ExecutionFilter {
        message_id: req.text_filter("message_id")?,
        local_conversation_id: req.text_filter("local_conversation_id")?,
        status: req.enum_filter("status", &ExecutionStatus::ALL, ExecutionStatus::parse)?,
        tool: req.text_filter("tool")?,
    };
    ctx.cached_page(req, || {
        let (items, next) = ctx.store.executions(&filter, page)?;
        let filters = json!({
            "message_id": filter.message_id, "local_conversation_id": filter.local_conversation_id,
            "status": filter.status.map(|s| s.as_str()), "tool": filter.tool,
            "limit": page.limit, "offset": page.offset,
        });
        let items = items.iter().map(|e| views::execution(e, &ctx.public_base)).collect();
        encode_text(&views::list("executions", items, filters, next))
    })
}

pub fn handle_read(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    let id = req.param("instruction_id");
    match ctx.store.execution(id)? {
        Some(e) => Reply::encode(&views::execution(&e, &ctx.public_base)),
        None => Err(ApiError::resource_not_found("execution", id)),
    }
}
