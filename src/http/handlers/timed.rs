//! `GET /v1/timed-jobs`: the ticker's runners, their last results and the
//! recovery summary of this start.

use crate::http::api::{ApiError, ApiRequest, Reply};
use crate::http::ctx::Ctx;

pub fn handle_read(ctx: &Ctx, _req: &ApiRequest) -> Result<Reply, ApiError> {
    Ok(Reply::Json(ctx.timed.to_json()))
}
