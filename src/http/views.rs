//! JSON renderings of store rows: the API's object shapes (docs/API.md
//! "Message object", "Conversation object", "Link object", "Job object").
//! Every documented field is always present, `null` when unknown, so
//! `jq .data.finished_at` works on every object.
//!
//! The views borrow the row and serialise straight into the response
//! bytes; JSON columns the store keeps as text (payloads, snapshots, route
//! params) are copied through as they are, after a validating parse that
//! allocates nothing. Building a `serde_json::Value` tree first made list
//! pages allocation-bound: a 50-job page was ~6,000 small allocations
//! (docs/BENCHMARKS.md, "List route").

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::store::{Conversation, Execution, Job, Link, Message, ParamsKind, PayloadKind, SearchHit};
pub use crate::util::artifact_url;

/// Stored JSON text, written as it is when it parses, as a JSON string when
/// it is damaged (one bad row must not fail a whole page), and as `null` or
/// `{}` when absent, whichever the field documents.
struct Stored<'a> {
    text: Option<&'a str>,
    empty_object: bool,
}

impl Serialize for Stored<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.text {
            None if self.empty_object => s.serialize_map(Some(0))?.end(),
            None => s.serialize_none(),
            Some(text) => match serde_json::from_str::<&RawValue>(text) {
                Ok(raw) => raw.serialize(s),
                Err(_) => s.serialize_str(text),
            },
        }
    }
}

fn stored(text: &Option<String>) -> Stored<'_> {
    Stored { text: text.as_deref(), empty_object: false }
}

fn stored_object(text: &Option<String>) -> Stored<'_> {
    Stored { text: text.as_deref(), empty_object: true }
}

#[derive(Serialize)]
pub struct MessageView<'a> {
    message_id: &'a str,
    platform: &'a str,
    conversation_id: &'a str,
    role: &'a str,
    summary: &'a Option<String>,
    page_url: &'a Option<String>,
    page_title: &'a Option<String>,
    tab_id: Option<i64>,
    client_id: &'a Option<String>,
    organization_id: &'a Option<String>,
    observed_at: i64,
    created_at: i64,
    artifact_url: String,
    /// Single reads and ingest answers carry the text; lists leave it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_text: &'a Option<String>,
}

pub fn message<'a>(m: &'a Message, public_base: &str) -> MessageView<'a> {
    MessageView {
        message_id: &m.message_id,
        platform: &m.platform,
        conversation_id: &m.conversation_id,
        role: &m.role,
        summary: &m.summary,
        page_url: &m.page_url,
        page_title: &m.page_title,
        tab_id: m.tab_id,
        client_id: &m.client_id,
        organization_id: &m.organization_id,
        observed_at: m.observed_at,
        created_at: m.created_at,
        artifact_url: artifact_url(public_base, &m.message_id),
        raw_text: &m.raw_text,
    }
}

/// A search result: the message as in a list, and how it matched.
#[derive(Serialize)]
pub struct SearchHitView<'a> {
    #[serde(flatten)]
    message: MessageView<'a>,
    search: SearchView,
}

#[derive(Serialize)]
struct SearchView {
    score: f64,
    /// The matches between `«` and `»`, for reading.
    snippet: String,
    /// The same text in parts, for rendering without parsing markers.
    snippet_parts: Vec<SnippetPart>,
}

#[derive(Serialize)]
struct SnippetPart {
    text: String,
    #[serde(rename = "match")]
    is_match: bool,
}

pub fn search_hit<'a>(m: &'a Message, hit: &SearchHit, public_base: &str) -> SearchHitView<'a> {
    let snippet = hit.snippet.iter().map(|(t, on)| if *on { format!("«{t}»") } else { t.clone() }).collect();
    let snippet_parts =
        hit.snippet.iter().map(|(text, on)| SnippetPart { text: text.clone(), is_match: *on }).collect();
    SearchHitView {
        message: message(m, public_base),
        search: SearchView { score: hit.score, snippet, snippet_parts },
    }
}

#[derive(Serialize)]
pub struct LinkView<'a> {
    link_id: &'a str,
    local_conversation_id: &'a str,
    platform: &'a str,
    client_id: &'a Option<String>,
    remote_conversation_id: &'a str,
    page_url: &'a Option<String>,
    page_title: &'a Option<String>,
    route_path: &'a Option<String>,
    route_pattern: &'a Option<String>,
    route_params: Stored<'a>,
    target_kind: &'a Option<String>,
    target_id: &'a Option<String>,
    target_payload: Stored<'a>,
    is_active: bool,
    observed_at: i64,
    created_at: i64,
    updated_at: i64,
}

pub fn link(l: &Link) -> LinkView<'_> {
    LinkView {
        link_id: &l.link_id,
        local_conversation_id: &l.local_conversation_id,
        platform: &l.platform,
        client_id: &l.client_id,
        remote_conversation_id: &l.remote_conversation_id,
        page_url: &l.page_url,
        page_title: &l.page_title,
        route_path: &l.route_path,
        route_pattern: &l.route_pattern,
        route_params: stored_object(&l.route_params),
        target_kind: &l.target_kind,
        target_id: &l.target_id,
        target_payload: stored_object(&l.target_payload),
        is_active: l.is_active,
        observed_at: l.observed_at,
        created_at: l.created_at,
        updated_at: l.updated_at,
    }
}

#[derive(Serialize)]
pub struct ConversationView<'a> {
    local_conversation_id: &'a str,
    platform: &'a str,
    automation_status: &'a str,
    last_non_paused_automation_status: &'a str,
    pause_reason: &'a Option<String>,
    last_error: &'a Option<String>,
    execution_state: &'a str,
    consecutive_failure_count: i64,
    repeated_message_count: i64,
    repeated_renewal_count: i64,
    title: &'a Option<String>,
    summary: &'a Option<String>,
    last_message_id: &'a Option<String>,
    last_message_at: Option<i64>,
    cooldown_until: Option<i64>,
    paused_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
    active_link: Option<LinkView<'a>>,
}

pub fn conversation(c: &Conversation) -> ConversationView<'_> {
    ConversationView {
        local_conversation_id: &c.local_conversation_id,
        platform: &c.platform,
        automation_status: c.automation_status.as_str(),
        last_non_paused_automation_status: c.last_non_paused_automation_status.as_str(),
        pause_reason: &c.pause_reason,
        last_error: &c.last_error,
        execution_state: c.execution_state.as_str(),
        consecutive_failure_count: c.consecutive_failure_count,
        repeated_message_count: c.repeated_message_count,
        repeated_renewal_count: c.repeated_renewal_count,
        title: &c.title,
        summary: &c.summary,
        last_message_id: &c.last_message_id,
        last_message_at: c.last_message_at,
        cooldown_until: c.cooldown_until,
        paused_at: c.paused_at,
        created_at: c.created_at,
        updated_at: c.updated_at,
        active_link: c.active_link.as_ref().map(link),
    }
}

#[derive(Serialize)]
pub struct JobView<'a> {
    job_id: &'a str,
    local_conversation_id: &'a str,
    message_id: &'a str,
    status: &'a str,
    payload_kind: &'a str,
    payload: PayloadView<'a>,
    payload_text: PayloadText<'a>,
    target_snapshot: Stored<'a>,
    attempt_count: i64,
    max_attempts: i64,
    next_attempt_at: Option<i64>,
    last_attempt_at: Option<i64>,
    last_error: &'a Option<String>,
    log_path: &'a Option<String>,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

/// A job's payload: the stored JSON for `json` payloads, the text itself
/// for `text` payloads.
struct PayloadView<'a>(&'a Job);

impl Serialize for PayloadView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.payload_kind {
            PayloadKind::Json => Stored { text: Some(&self.0.payload), empty_object: false }.serialize(s),
            PayloadKind::Text => s.serialize_str(&self.0.payload),
        }
    }
}

/// The text that will be delivered: the payload itself for `text`
/// payloads, the payload's string field `text` for `json` ones, else null.
struct PayloadText<'a>(&'a Job);

/// Only the `text` field of a json payload, borrowed as its raw JSON so a
/// string is copied through without unescaping and escaping it again.
#[derive(Deserialize)]
struct TextField<'a> {
    #[serde(borrow)]
    text: Option<&'a RawValue>,
}

impl Serialize for PayloadText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let job = self.0;
        match job.payload_kind {
            PayloadKind::Text => s.serialize_str(&job.payload),
            PayloadKind::Json => match serde_json::from_str::<TextField>(&job.payload) {
                Ok(TextField { text: Some(raw) }) if raw.get().starts_with('"') => raw.serialize(s),
                _ => s.serialize_none(),
            },
        }
    }
}

pub fn job(j: &Job) -> JobView<'_> {
    JobView {
        job_id: &j.job_id,
        local_conversation_id: &j.local_conversation_id,
        message_id: &j.message_id,
        status: j.status.as_str(),
        payload_kind: j.payload_kind.as_str(),
        payload: PayloadView(j),
        payload_text: PayloadText(j),
        target_snapshot: stored(&j.target_snapshot),
        attempt_count: j.attempt_count,
        max_attempts: j.max_attempts,
        next_attempt_at: j.next_attempt_at,
        last_attempt_at: j.last_attempt_at,
        last_error: &j.last_error,
        log_path: &j.log_path,
        started_at: j.started_at,
        finished_at: j.finished_at,
        created_at: j.created_at,
        updated_at: j.updated_at,
    }
}

/// An execution (docs/BAA.md): every column, `result_json` as `result`
/// (the stored object, or null), `params` parsed when its kind is `json`,
/// and `artifact_url` beside `artifact_path` (null without an artifact).
#[derive(Serialize)]
pub struct ExecutionView<'a> {
    instruction_id: &'a str,
    message_id: &'a str,
    local_conversation_id: &'a str,
    block_index: i64,
    target: &'a Option<String>,
    tool: &'a Option<String>,
    params_kind: Option<&'static str>,
    params: ParamsView<'a>,
    status: &'static str,
    summary: &'a Option<String>,
    result: Stored<'a>,
    error: &'a Option<String>,
    artifact_path: &'a Option<String>,
    artifact_url: Option<String>,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    created_at: i64,
}

/// A block's params: the object for `json`, else the text (or null).
struct ParamsView<'a>(&'a Execution);

impl Serialize for ParamsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.0.params_kind, &self.0.params) {
            (Some(ParamsKind::Json), params) => stored(params).serialize(s),
            (_, Some(text)) => s.serialize_str(text),
            (_, None) => s.serialize_none(),
        }
    }
}

pub fn execution<'a>(e: &'a Execution, public_base: &str) -> ExecutionView<'a> {
    let artifact_url = e.artifact_path.as_deref().map(|p| {
        let rel = p.strip_prefix("artifacts/").unwrap_or(p);
        format!("{public_base}/artifact/{rel}")
    });
    ExecutionView {
        instruction_id: &e.instruction_id,
        message_id: &e.message_id,
        local_conversation_id: &e.local_conversation_id,
        block_index: e.block_index,
        target: &e.target,
        tool: &e.tool,
        params_kind: e.params_kind.map(ParamsKind::as_str),
        params: ParamsView(e),
        status: e.status.as_str(),
        summary: &e.summary,
        result: stored(&e.result_json),
        error: &e.error,
        artifact_path: &e.artifact_path,
        artifact_url,
        started_at: e.started_at,
        finished_at: e.finished_at,
        created_at: e.created_at,
    }
}

/// The list envelope of docs/API.md "Lists: pagination and filters": `count`,
/// `filters`, `next_offset`, and the items under `key`.
pub struct ListView<T> {
    pub key: &'static str,
    pub items: Vec<T>,
    pub filters: Value,
    pub next_offset: Option<u64>,
}

impl<T: Serialize> Serialize for ListView<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("count", &self.items.len())?;
        map.serialize_entry("filters", &self.filters)?;
        map.serialize_entry("next_offset", &self.next_offset)?;
        map.serialize_entry(self.key, &self.items)?;
        map.end()
    }
}

pub fn list<T: Serialize>(
    key: &'static str,
    items: Vec<T>,
    filters: Value,
    next_offset: Option<u64>,
) -> ListView<T> {
    ListView { key, items, filters, next_offset }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JobStatus;

    fn job_row(kind: &str, payload: &str, snapshot: Option<&str>) -> Job {
        Job {
            job_id: "job_1".into(),
            local_conversation_id: "lc_1".into(),
            message_id: "msg_1".into(),
            status: JobStatus::Pending,
            payload_kind: PayloadKind::parse(kind).unwrap(),
            payload: payload.into(),
            target_snapshot: snapshot.map(String::from),
            attempt_count: 0,
            max_attempts: 3,
            next_attempt_at: Some(5),
            last_attempt_at: None,
            last_error: None,
            log_path: None,
            started_at: None,
            finished_at: None,
            created_at: 1,
            updated_at: 2,
        }
    }

    fn render(j: &Job) -> Value {
        serde_json::to_value(job(j)).unwrap()
    }

    #[test]
    fn json_payload_is_copied_through_and_its_text_extracted() {
        let v = render(&job_row("json", r#"{"text":"hi \"you\"\n","version":1}"#, Some(r#"{"a":[1,2]}"#)));
        assert_eq!(v["payload"]["version"], 1);
        assert_eq!(v["payload_text"], "hi \"you\"\n");
        assert_eq!(v["target_snapshot"]["a"][1], 2);
        assert_eq!(v["finished_at"], Value::Null);
    }

    #[test]
    fn text_payloads_and_damaged_json_stay_readable() {
        let v = render(&job_row("text", "plain words", None));
        assert_eq!(v["payload"], "plain words");
        assert_eq!(v["payload_text"], "plain words");
        assert_eq!(v["target_snapshot"], Value::Null);

        let v = render(&job_row("json", "{broken", Some("also {broken")));
        assert_eq!(v["payload"], "{broken");
        assert_eq!(v["payload_text"], Value::Null);
        assert_eq!(v["target_snapshot"], "also {broken");

        let v = render(&job_row("json", r#"{"text":42}"#, None));
        assert_eq!(v["payload_text"], Value::Null);
        let v = render(&job_row("json", r#"[1,2]"#, None));
        assert_eq!(v["payload"][0], 1);
        assert_eq!(v["payload_text"], Value::Null);
    }

    #[test]
    fn absent_link_objects_render_as_empty_objects() {
        let l = Link {
            link_id: "link_1".into(),
            local_conversation_id: "lc_1".into(),
            platform: "claude".into(),
            client_id: None,
            remote_conversation_id: "r".into(),
            page_url: None,
            page_title: None,
            route_path: None,
            route_pattern: None,
            route_params: None,
            target_kind: None,
            target_id: None,
            target_payload: Some(r#"{"tabId":3}"#.into()),
            is_active: true,
            observed_at: 1,
            created_at: 1,
            updated_at: 1,
        };
        let v = serde_json::to_value(link(&l)).unwrap();
        assert_eq!(v["route_params"], serde_json::json!({}));
        assert_eq!(v["target_payload"]["tabId"], 3);
        assert_eq!(v["client_id"], Value::Null);
    }

    #[test]
    fn list_envelope_counts_its_items() {
        let j = job_row("text", "x", None);
        let v = serde_json::to_value(list("jobs", vec![job(&j)], serde_json::json!({"limit": 1}), Some(1)))
            .unwrap();
        assert_eq!(v["count"], 1);
        assert_eq!(v["next_offset"], 1);
        assert_eq!(v["jobs"][0]["job_id"], "job_1");
        assert_eq!(v["filters"]["limit"], 1);
    }
}
