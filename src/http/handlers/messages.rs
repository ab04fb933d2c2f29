//! Message routes: list, read, and ingest. Ingest parses the same wire shape
//! as the bridge's `browser.final_message` and calls the same store function,
//! so both paths have identical effects.

use serde::Serialize;
use serde_json::json;

use crate::bridge::final_message::parse_final_message;
use crate::http::api::{encode_text, ApiError, ApiRequest, Reply};
use crate::http::ctx::Ctx;
use crate::http::views;
use crate::store::{fts_query, MessageFilter};
use crate::util::now_ms;

pub fn handle_list(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    let page = req.page()?;
    let filter = MessageFilter {
        platform: req.text_filter("platform")?,
        conversation_id: req.text_filter("conversation_id")?,
        role: req.text_filter("role")?,
    };
    let q = req.text_filter("q")?;
    let query = match &q {
        Some(q) => Some(fts_query(q).ok_or_else(|| {
            ApiError::invalid("q", "Query parameter \"q\" must contain a word to search for.")
        })?),
        None => None,
    };
    ctx.cached_page(req, || {
        let filters = json!({
            "q": q, "platform": filter.platform, "conversation_id": filter.conversation_id, "role": filter.role,
            "limit": page.limit, "offset": page.offset,
        });
        if let Some(query) = &query {
            let (hits, next) = ctx.store.search_messages(query, &filter, page)?;
            let items = hits.iter().map(|(m, hit)| views::search_hit(m, hit, &ctx.public_base)).collect();
            return encode_text(&views::list("messages", items, filters, next));
        }
        let (items, next) = ctx.store.messages(&filter, page)?;
        let items = items.iter().map(|m| views::message(m, &ctx.public_base)).collect();
        encode_text(&views::list("messages", items, filters, next))
    })
}

pub fn handle_read(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    let id = req.param("message_id");
    match ctx.store.message(id)? {
        Some(m) => Reply::encode(&views::message(&m, &ctx.public_base)),
        None => Err(ApiError::resource_not_found("message", id)),
    }
}

pub fn handle_ingest(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    let body = req.json_object()?;
    let input =
        parse_final_message(&body, true, now_ms()).map_err(|e| ApiError::invalid(&e.field, e.message))?;
    let outcome = ctx.store.ingest(input, ctx.ingest_settings())?;
    if outcome.automation_changed {
        ctx.automation_changed();
    }
    // Serialised straight from the views: this answer is on the path of
    // every ingested message, and a `json!` tree costs an allocation per key.
    Reply::encode(&IngestView {
        message: views::message(&outcome.message, &ctx.public_base),
        local_conversation_id: &outcome.local_conversation_id,
        link_id: &outcome.link_id,
        duplicate: outcome.duplicate,
    })
}

#[derive(Serialize)]
struct IngestView<'a> {
    message: views::MessageView<'a>,
    local_conversation_id: &'a Option<String>,
    link_id: &'a Option<String>,
    duplicate: bool,
}
