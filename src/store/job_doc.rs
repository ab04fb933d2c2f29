//! What creating a renewal job writes (docs/RENEWAL.md "The projector"):
//! the insert statement, shared by the projector (projection.rs) and the
//! `[baa]` reply (executions.rs), and the two JSON documents every job
//! holds: the payload with the follow-up text, and the snapshot of the link
//! the job was made for.
//!
//! They are serialised from borrowed structs rather than built as
//! `serde_json::Value` trees, and the link's own stored JSON (route params,
//! target payload) is copied through as raw text instead of being parsed
//! and printed again: the projector runs on the store writer, the one
//! serial stage of renewal, once per message. Field order is alphabetical,
//! as `json!` produced it before, so the stored text did not change.

use std::sync::OnceLock;

use serde::Serialize;
use serde_json::value::RawValue;

use super::model::Link;

/// Inserts a pending job; a message already holding one keeps it.
pub(super) const INSERT_JOB: &str = "INSERT INTO renewal_jobs (job_id, local_conversation_id, message_id, status, payload,
    payload_kind, target_snapshot, attempt_count, max_attempts, next_attempt_at, log_path, created_at, updated_at)
 VALUES (?1, ?2, ?3, 'pending', ?4, 'json', ?5, 0, ?6, ?7, ?8, ?7, ?7)
 ON CONFLICT (message_id) DO NOTHING";

/// What the payload says about the message it renews.
pub(super) struct Source<'a> {
    pub id: &'a str,
    pub platform: &'a str,
    pub conversation_id: &'a str,
    pub observed_at: i64,
}

#[derive(Serialize)]
struct Payload<'a> {
    kind: &'static str,
    #[serde(rename = "sourceMessage")]
    source_message: SourceDoc<'a>,
    template: &'static str,
    text: &'a str,
    version: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SourceDoc<'a> {
    conversation_id: &'a str,
    id: &'a str,
    observed_at: i64,
    platform: &'a str,
}

/// `{"kind":"renewal.message","sourceMessage":{…},"template":"summary_with_link","text":…,"version":1}`
pub(super) fn payload(text: &str, source: &Source<'_>) -> String {
    let doc = Payload {
        kind: "renewal.message",
        source_message: SourceDoc {
            conversation_id: source.conversation_id,
            id: source.id,
            observed_at: source.observed_at,
            platform: source.platform,
        },
        template: "summary_with_link",
        text,
        version: 1,
    };
    serde_json::to_string(&doc).expect("plain strings and numbers serialise")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Snapshot<'a> {
    client_id: Option<&'a str>,
    link_id: &'a str,
    page_title: Option<&'a str>,
    page_url: Option<&'a str>,
    platform: &'a str,
    route: Route<'a>,
    target: Target<'a>,
}

#[derive(Serialize)]
struct Route<'a> {
    params: &'a RawValue,
    path: Option<&'a str>,
    pattern: Option<&'a str>,
}

#[derive(Serialize)]
struct Target<'a> {
    id: Option<&'a str>,
    kind: Option<&'a str>,
    payload: &'a RawValue,
}

/// The link as the job will see it, whatever happens to the link later.
pub(super) fn snapshot(link: &Link) -> String {
    let doc = Snapshot {
        client_id: link.client_id.as_deref(),
        link_id: &link.link_id,
        page_title: link.page_title.as_deref(),
        page_url: link.page_url.as_deref(),
        platform: &link.platform,
        route: Route {
            params: stored_json(&link.route_params),
            path: link.route_path.as_deref(),
            pattern: link.route_pattern.as_deref(),
        },
        target: Target {
            id: link.target_id.as_deref(),
            kind: link.target_kind.as_deref(),
            payload: stored_json(&link.target_payload),
        },
    };
    serde_json::to_string(&doc).expect("strings and valid raw JSON serialise")
}

/// A stored JSON column as it is, or `{}` when it is missing or not JSON.
fn stored_json(text: &Option<String>) -> &RawValue {
    static EMPTY: OnceLock<Box<RawValue>> = OnceLock::new();
    text.as_deref()
        .and_then(|t| serde_json::from_str::<&RawValue>(t).ok())
        .unwrap_or_else(|| EMPTY.get_or_init(|| RawValue::from_string("{}".into()).expect("valid JSON")))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn link(route_params: Option<&str>, target_payload: Option<&str>) -> Link {
        Link {
            link_id: "link_1".into(),
            local_conversation_id: "lc_1".into(),
            platform: "chatgpt".into(),
            client_id: Some("firefox".into()),
            remote_conversation_id: "abc".into(),
            page_url: Some("https://chatgpt.com/c/abc".into()),
            page_title: None,
            route_path: Some("/c/abc".into()),
            route_pattern: None,
            route_params: route_params.map(str::to_string),
            target_kind: Some("browser.proxy_delivery".into()),
            target_id: Some("tab:7".into()),
            target_payload: target_payload.map(str::to_string),
            is_active: true,
            observed_at: 1,
            created_at: 1,
            updated_at: 1,
        }
    }

    /// The document the projector wrote before, built with `json!`.
    fn snapshot_as_before(link: &Link) -> String {
        let parse = |t: &Option<String>| t.as_deref().and_then(|x| serde_json::from_str::<Value>(x).ok());
        json!({
            "platform": link.platform, "linkId": link.link_id, "clientId": link.client_id,
            "pageUrl": link.page_url, "pageTitle": link.page_title,
            "route": { "path": link.route_path, "pattern": link.route_pattern, "params": parse(&link.route_params).unwrap_or(json!({})) },
            "target": { "kind": link.target_kind, "id": link.target_id, "payload": parse(&link.target_payload).unwrap_or(json!({})) },
        })
        .to_string()
    }

    #[test]
    fn the_snapshot_is_the_text_it_was_before() {
        for (params, payload) in [
            (None, None),
            (Some(r#"{"conversationId":"abc"}"#), Some(r#"{"clientId":"firefox","tabId":7}"#)),
            (Some("not json"), Some("[1, 2")),
            (Some("null"), Some("{}")),
        ] {
            let l = link(params, payload);
            assert_eq!(snapshot(&l), snapshot_as_before(&l), "{params:?} {payload:?}");
        }
    }

    #[test]
    fn the_payload_is_the_text_it_was_before() {
        let source = Source { id: "m\"1", platform: "claude", conversation_id: "c", observed_at: 42 };
        let before = json!({
            "kind": "renewal.message", "version": 1, "template": "summary_with_link", "text": "hi\n{link}",
            "sourceMessage": { "id": "m\"1", "platform": "claude", "conversationId": "c", "observedAt": 42 },
        })
        .to_string();
        assert_eq!(payload("hi\n{link}", &source), before);
    }
}
