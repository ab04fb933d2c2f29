//! Renewal routes: local conversations and their automation switch, links,
//! and renewal jobs with their manual retry and cancel.

use serde_json::json;
use serde_json::value::to_raw_value;

use crate::http::api::{encode_text, ApiError, ApiRequest, Reply};
use crate::http::body::opt_reason;
use crate::http::ctx::Ctx;
use crate::http::views;
use crate::store::{ConversationFilter, ConversationStatus, JobFilter, JobStatus, LinkFilter, Transition};

pub fn handle_conversations_list(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    let page = req.page()?;
    let filter = ConversationFilter {
        platform: req.text_filter("platform")?,
        status: req.enum_filter("status", &ConversationStatus::ALL, ConversationStatus::parse)?,
    };
    ctx.cached_page(req, || {
        let (items, next) = ctx.store.conversations(&filter, page)?;
        let filters = json!({
            "platform": filter.platform, "status": filter.status.map(|s| s.as_str()),
            "limit": page.limit, "offset": page.offset,
        });
        encode_text(&views::list(
            "conversations",
            items.iter().map(views::conversation).collect(),
            filters,
            next,
        ))
    })
}

fn read_conversation(ctx: &Ctx, id: &str) -> Result<Reply, ApiError> {
    match ctx.store.conversation(id)? {
        Some(c) => Reply::encode(&views::conversation(&c)),
        None => Err(ApiError::resource_not_found("local_conversation", id)),
    }
}

pub fn handle_conversations_read(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    read_conversation(ctx, req.param("local_conversation_id"))
}

fn switch(ctx: &Ctx, req: &ApiRequest, status: ConversationStatus) -> Result<Reply, ApiError> {
    let id = req.param("local_conversation_id");
    // Every switch validates its body (a malformed one is a 400 even where
    // no field is read); only `paused` takes a field.
    let body = req.json_object()?;
    let reason = if status == ConversationStatus::Paused { opt_reason(&body)? } else { None };
    match ctx.store.set_conversation_status(id, status, reason)? {
        Transition::Changed(()) => {
            log::info!("renewal: conversation {id} -> {} ({})", status.as_str(), req.request_id);
            ctx.automation_changed();
            read_conversation(ctx, id)
        }
        Transition::NotFound => Err(ApiError::resource_not_found("local_conversation", id)),
        Transition::InvalidState(state) => Err(ApiError::invalid_state(
            "local_conversation",
            id,
            &state,
            "Conversation cannot be switched now.",
        )),
    }
}

pub fn handle_conversations_manual(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    switch(ctx, req, ConversationStatus::Manual)
}

pub fn handle_conversations_auto(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    switch(ctx, req, ConversationStatus::Auto)
}

pub fn handle_conversations_paused(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    switch(ctx, req, ConversationStatus::Paused)
}

pub fn handle_links_list(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    let page = req.page()?;
    let filter = LinkFilter {
        platform: req.text_filter("platform")?,
        remote_conversation_id: req.text_filter("remote_conversation_id")?,
        local_conversation_id: req.text_filter("local_conversation_id")?,
        client_id: req.text_filter("client_id")?,
        active: req.bool_filter("active")?,
    };
    ctx.cached_page(req, || {
        let (items, next) = ctx.store.links(&filter, page)?;
        let filters = json!({
            "platform": filter.platform, "remote_conversation_id": filter.remote_conversation_id,
            "local_conversation_id": filter.local_conversation_id, "client_id": filter.client_id,
            "active": filter.active, "limit": page.limit, "offset": page.offset,
        });
        encode_text(&views::list("links", items.iter().map(views::link).collect(), filters, next))
    })
}

pub fn handle_jobs_list(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    let page = req.page()?;
    let filter = JobFilter {
        status: req.enum_filter("status", &JobStatus::ALL, JobStatus::parse)?,
        local_conversation_id: req.text_filter("local_conversation_id")?,
        message_id: req.text_filter("message_id")?,
    };
    ctx.cached_page(req, || {
        let (items, next) = ctx.store.jobs(&filter, page)?;
        let filters = json!({
            "status": filter.status.map(|s| s.as_str()), "local_conversation_id": filter.local_conversation_id,
            "message_id": filter.message_id, "limit": page.limit, "offset": page.offset,
        });
        let texts = ctx.job_texts.texts(&items, |j| &j.job_id, |j| to_raw_value(&views::job(j))).map_err(|e| {
            log::error!("cannot serialise a job: {e}");
            ApiError::internal()
        })?;
        encode_text(&views::list("jobs", texts, filters, next))
    })
}

fn read_job(ctx: &Ctx, id: &str) -> Result<Reply, ApiError> {
    match ctx.store.job(id)? {
        Some(j) => Reply::encode(&views::job(&j)),
        None => Err(ApiError::resource_not_found("renewal_job", id)),
    }
}

pub fn handle_jobs_read(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    read_job(ctx, req.param("job_id"))
}

fn transition(ctx: &Ctx, id: &str, result: Transition<()>, needs: &str) -> Result<Reply, ApiError> {
    match result {
        Transition::Changed(()) => read_job(ctx, id),
        Transition::NotFound => Err(ApiError::resource_not_found("renewal_job", id)),
        Transition::InvalidState(state) => Err(ApiError::invalid_state(
            "renewal_job",
            id,
            &state,
            format!("Job is {state}; only a {needs} job can be changed this way."),
        )),
    }
}

pub fn handle_jobs_retry(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    req.json_object()?;
    let id = req.param("job_id");
    let result = ctx.store.retry_job(id)?;
    transition(ctx, id, result, "failed")
}

pub fn handle_jobs_cancel(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    req.json_object()?;
    let id = req.param("job_id");
    let result = ctx.store.cancel_job(id)?;
    transition(ctx, id, result, "pending")
}
