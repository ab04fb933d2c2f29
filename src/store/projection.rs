//! The projector's write: settled assistant messages of `auto`
//! conversations become renewal jobs, in one writer transaction with the
//! cursor, so a message is projected at most once even across restarts;
//! and the two rules it shares with the dispatcher: where a link delivers
//! ([`link_route`]: its tab, and the organization the frame carries) and
//! how a follow-up template is filled ([`render_template`]). docs/RENEWAL.md "The projector" is the contract.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use super::job_doc::{self, INSERT_JOB};
use super::model::*;
use super::read::projection_target;
use super::StoreError;
use crate::util::{new_id, summary};

const CURSOR_KEY: &str = "renewal.projector.cursor";

fn load_cursor(conn: &Connection) -> Result<i64, StoreError> {
    let json: Option<String> = conn
        .prepare_cached("SELECT value_json FROM kv WHERE key = ?1")?
        .query_row(params![CURSOR_KEY], |r| r.get(0))
        .optional()?;
    let value: Value = json.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or(Value::Null);
    Ok(value.get("seq").and_then(Value::as_i64).unwrap_or(0))
}

fn save_cursor(conn: &Connection, seq: i64, message_id: &str, now: i64) -> Result<(), StoreError> {
    let value = json!({ "seq": seq, "message_id": message_id }).to_string();
    conn.prepare_cached(
        "INSERT INTO kv (key, value_json, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value_json = excluded.value_json, updated_at = excluded.updated_at",
    )?
    .execute(params![CURSOR_KEY, value, now])?;
    Ok(())
}

/// Projects up to `max_messages` settled messages after the cursor, in
/// ingest order. The cursor is the ingest sequence number, not
/// `(observed_at, id)`: a message that arrives after others with a later
/// `observed_at` would otherwise be passed over for good. A message is
/// settled once its `observed_at` or its arrival (`created_at`) is
/// `settle_delay_ms` old; the scan stops at the first unsettled one, so
/// nothing behind it is skipped, and the arrival time guarantees progress
/// even for a message stamped in the future.
pub(super) fn project(conn: &Connection, s: &ProjectSettings) -> Result<ProjectionReport, StoreError> {
    let cursor = load_cursor(conn)?;
    let settled_before = s.now - s.settle_delay_ms;
    let mut stmt = conn.prepare_cached(
        "SELECT seq, id, platform, conversation_id, role, raw_text, observed_at, created_at FROM messages
         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    // Rows are read one at a time and the scan stops at the first unsettled
    // message before reading its text: with a settle delay of 500 ms and a
    // tick every 10 ms, collecting the whole page first read each message
    // about fifty times before it settled.
    let mut rows = stmt.query(params![cursor, s.max_messages as i64])?;
    let mut outcomes = Vec::new();
    let mut last: Option<(i64, String)> = None;
    while let Some(r) = rows.next()? {
        let (observed_at, created_at): (i64, i64) = (r.get(6)?, r.get(7)?);
        if observed_at.min(created_at) > settled_before {
            break;
        }
        let m = Candidate {
            seq: r.get(0)?,
            id: r.get(1)?,
            platform: r.get(2)?,
            conversation_id: r.get(3)?,
            role: r.get(4)?,
            text: r.get(5)?,
            observed_at,
        };
        // Writing jobs while this read is open is fine: SQLite keeps a
        // cursor on `messages` valid across writes to other tables.
        outcomes.push(project_one(conn, &m, s)?);
        last = Some((m.seq, m.id));
    }
    drop(rows);
    drop(stmt);
    if let Some((seq, id)) = &last {
        save_cursor(conn, *seq, id, s.now)?;
    }
    Ok(ProjectionReport { outcomes, cursor: last })
}

struct Candidate {
    seq: i64,
    id: String,
    platform: String,
    conversation_id: String,
    role: String,
    text: String,
    observed_at: i64,
}

/// The ordered skip rules, then the job. The first rule that applies decides.
fn project_one(conn: &Connection, m: &Candidate, s: &ProjectSettings) -> Result<Projection, StoreError> {
    let skip = |reason: SkipReason| Ok(Projection::Skipped { message_id: m.id.clone(), reason });
    if m.role != "assistant" {
        return skip(SkipReason::NonAssistant);
    }
    let Some(target) = projection_target(conn, &m.platform, &m.conversation_id)? else {
        return skip(SkipReason::MissingLocalConversation);
    };
    match target.automation_status {
        ConversationStatus::Manual => return skip(SkipReason::AutomationManual),
        ConversationStatus::Paused => return skip(SkipReason::AutomationPaused),
        ConversationStatus::Auto => {}
    }
    // Its instruction blocks were recorded: the `[baa]` reply keeps the
    // conversation going (docs/BAA.md), not a renewal.
    if super::executions::has_executions(conn, &m.id)? {
        return skip(SkipReason::BaaInstructions);
    }
    if target.last_message_id.as_deref() != Some(m.id.as_str()) {
        return skip(SkipReason::Superseded);
    }
    if target.cooldown_until.is_some_and(|until| until > s.now) {
        return skip(SkipReason::Cooldown);
    }
    let Some(link) = target.active_link.as_ref().filter(|l| link_route(l).is_some()) else {
        return skip(SkipReason::RouteUnavailable);
    };
    let local_id = target.local_conversation_id;
    match insert_job(conn, m, link, &local_id, s)? {
        Some(job_id) => {
            Ok(Projection::Projected { message_id: m.id.clone(), job_id, local_conversation_id: local_id })
        }
        // The message already has a job (the unique message_id).
        None => skip(SkipReason::Duplicate),
    }
}

/// Where a link delivers: its tab, and the page's `organizationId` as the
/// plugin reported it (`proxy_delivery` carries it; `null` when absent).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRoute {
    pub tab_id: i64,
    pub organization_id: Value,
}

/// The fields of a link's `target_payload` that routing reads. Each is a
/// `Value`, so one of an unexpected type reads as absent instead of
/// failing the rest; the other fields are skipped, not built.
#[derive(Default, serde::Deserialize)]
struct TargetFields {
    #[serde(rename = "tabId")]
    tab_id: Option<Value>,
    #[serde(rename = "shellPage")]
    shell_page: Option<Value>,
    #[serde(rename = "organizationId")]
    organization_id: Option<Value>,
}

/// The route of a link that can deliver: `target_kind` must be
/// `browser.proxy_delivery`, not a shell page, with a positive tab id from
/// `target_payload.tabId`, else parsed from `target_id` `tab:<n>`. The
/// payload is read once, for the tab and the organization both (the
/// dispatcher routes every job right before its delivery).
pub fn link_route(link: &Link) -> Option<LinkRoute> {
    if link.target_kind.as_deref() != Some("browser.proxy_delivery") {
        return None;
    }
    let fields: TargetFields =
        link.target_payload.as_deref().and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default();
    if fields.shell_page.as_ref().and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let from_payload = fields.tab_id.as_ref().and_then(Value::as_i64);
    let from_id =
        link.target_id.as_deref().and_then(|t| t.strip_prefix("tab:")).and_then(|n| n.parse::<i64>().ok());
    let tab_id = from_payload.or(from_id).filter(|t| *t > 0)?;
    Some(LinkRoute { tab_id, organization_id: fields.organization_id.unwrap_or(Value::Null) })
}

/// Inserts the message's job; `None` when the message already has one.
fn insert_job(
    conn: &Connection,
    m: &Candidate,
    link: &Link,
    local_id: &str,
    s: &ProjectSettings,
) -> Result<Option<String>, StoreError> {
    let summary = summary(&m.text, s.summary_limit);
    let link_url = format!("{}{}.txt", s.link_base, crate::percent::percent_encode(&m.id));
    let text = render_template(
        &s.template,
        &[
            ("summary", &summary),
            ("link", &link_url),
            ("message_id", &m.id),
            ("platform", &m.platform),
            ("conversation_id", &m.conversation_id),
        ],
    );
    let source = job_doc::Source {
        id: &m.id,
        platform: &m.platform,
        conversation_id: &m.conversation_id,
        observed_at: m.observed_at,
    };
    let payload = job_doc::payload(&text, &source);
    let snapshot = job_doc::snapshot(link);
    let job_id = new_id("job_");
    let inserted = conn.prepare_cached(INSERT_JOB)?.execute(params![
        job_id,
        local_id,
        m.id,
        payload,
        snapshot,
        s.max_attempts,
        s.now,
        s.log_path
    ])?;
    Ok((inserted == 1).then_some(job_id))
}

/// Replaces `{name}` placeholders in one pass, so text substituted for one
/// placeholder (a summary that contains "{link}") is never expanded again.
pub fn render_template(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let hit = after
            .find('}')
            .and_then(|close| values.iter().find(|(k, _)| *k == &after[..close]).map(|(_, v)| (close, v)));
        match hit {
            Some((close, value)) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tab of [`link_route`].
    fn route_tab(link: &Link) -> Option<i64> {
        link_route(link).map(|r| r.tab_id)
    }

    fn settings(now: i64) -> ProjectSettings {
        ProjectSettings {
            now,
            settle_delay_ms: 500,
            max_messages: 10,
            template: "[renewal] {summary} {link}".into(),
            summary_limit: 100,
            max_attempts: 3,
            link_base: "http://127.0.0.1/artifact/msg/".into(),
            log_path: None,
        }
    }

    /// A message of chatgpt conversation `c1`, with its ingest sequence number.
    fn message(conn: &Connection, seq: i64, id: &str, role: &str, observed_at: i64, created_at: i64) {
        conn.execute(
            "INSERT INTO messages (seq, id, platform, conversation_id, role, raw_text, observed_at, created_at)
                 VALUES (?1, ?2, 'chatgpt', 'c1', ?3, 'the answer', ?4, ?5)",
            params![seq, id, role, observed_at, created_at],
        )
        .unwrap();
    }

    /// The ids of the messages a projection run examined, in order.
    fn examined(report: &ProjectionReport) -> Vec<String> {
        let id = |p: &Projection| match p {
            Projection::Skipped { message_id, .. } | Projection::Projected { message_id, .. } => {
                message_id.clone()
            }
        };
        report.outcomes.iter().map(id).collect()
    }

    /// docs/RENEWAL.md "The projector": a message is settled once the earlier
    /// of its `observed_at` and its arrival is `settle_delay_ms` old (exactly
    /// that old counts); the scan stops at the first unsettled message, and
    /// the stored cursor makes the next scan start after the last one examined.
    #[test]
    fn projection_settles_in_arrival_order_and_resumes_after_its_cursor() {
        let (_dir, conn) = crate::store::test_dir::migrated_writer("project-cursor");
        // Settled before 9_500 at now = 10_000.
        message(&conn, 1, "m1", "user", 9_000, 9_000);
        message(&conn, 2, "m2", "user", 9_500, 20_000);
        // Stamped in the future, but it arrived long enough ago.
        message(&conn, 3, "m3", "user", 20_000, 9_400);
        message(&conn, 4, "m4", "user", 9_501, 9_501);
        // Settled, but behind an unsettled one: it waits its turn.
        message(&conn, 5, "m5", "user", 1, 1);

        let first = project(&conn, &settings(10_000)).unwrap();
        assert_eq!(examined(&first), ["m1", "m2", "m3"]);
        assert_eq!(first.cursor, Some((3, "m3".into())));

        let again = project(&conn, &settings(10_000)).unwrap();
        assert_eq!((examined(&again), again.cursor), (vec![], None));

        let later = project(&conn, &settings(20_000)).unwrap();
        assert_eq!(examined(&later), ["m4", "m5"]);
        assert_eq!(later.cursor, Some((5, "m5".into())));
    }

    /// Conversation `lc_p`, linked to chatgpt `c1` by an active link to tab 7,
    /// its last message `m1`.
    fn linked_conversation(conn: &Connection, status: &str) {
        conn.execute_batch(&format!(
            "INSERT INTO local_conversations (local_conversation_id, platform, automation_status, last_message_id,
                 created_at, updated_at) VALUES ('lc_p', 'chatgpt', '{status}', 'm1', 1, 1);
             INSERT INTO conversation_links (link_id, local_conversation_id, platform, client_id,
                 remote_conversation_id, target_kind, target_id, target_payload, is_active, observed_at,
                 created_at, updated_at)
                 VALUES ('l1', 'lc_p', 'chatgpt', 'client_1', 'c1', 'browser.proxy_delivery', 'tab:7',
                     '{{\"tabId\":7}}', 1, 1, 1, 1);"
        ))
        .unwrap();
    }

    fn candidate(id: &str, role: &str, conversation_id: &str) -> Candidate {
        Candidate {
            seq: 1,
            id: id.into(),
            platform: "chatgpt".into(),
            conversation_id: conversation_id.into(),
            role: role.into(),
            text: "the answer".into(),
            observed_at: 1,
        }
    }

    fn skip_reason(conn: &Connection, m: &Candidate, now: i64) -> Option<SkipReason> {
        match project_one(conn, m, &settings(now)).unwrap() {
            Projection::Skipped { reason, .. } => Some(reason),
            Projection::Projected { .. } => None,
        }
    }

    /// docs/RENEWAL.md "The projector": the ordered skip rules.
    #[test]
    fn each_skip_rule_holds_a_message_back() {
        let (_dir, conn) = crate::store::test_dir::migrated_writer("project-skips");
        linked_conversation(&conn, "manual");
        let m1 = candidate("m1", "assistant", "c1");
        let set = |sql: &str| conn.execute_batch(sql).unwrap();
        assert_eq!(skip_reason(&conn, &candidate("m1", "user", "c1"), 100), Some(SkipReason::NonAssistant));
        let unknown = candidate("m1", "assistant", "c2");
        assert_eq!(skip_reason(&conn, &unknown, 100), Some(SkipReason::MissingLocalConversation));
        assert_eq!(skip_reason(&conn, &m1, 100), Some(SkipReason::AutomationManual));
        set("UPDATE local_conversations SET automation_status = 'paused'");
        assert_eq!(skip_reason(&conn, &m1, 100), Some(SkipReason::AutomationPaused));
        set("UPDATE local_conversations SET automation_status = 'auto', last_message_id = 'm2'");
        assert_eq!(skip_reason(&conn, &m1, 100), Some(SkipReason::Superseded));
        set("UPDATE local_conversations SET last_message_id = 'm1', cooldown_until = 101");
        assert_eq!(skip_reason(&conn, &m1, 100), Some(SkipReason::Cooldown));
        set("UPDATE conversation_links SET target_payload = '{\"tabId\":7,\"shellPage\":true}'");
        // A cooldown that ends now no longer holds the message back.
        assert_eq!(skip_reason(&conn, &m1, 101), Some(SkipReason::RouteUnavailable));
    }

    /// A message that passes every rule becomes one pending job, due now,
    /// under the id the projection reports; the same message again is a
    /// duplicate.
    #[test]
    fn a_message_that_passes_every_rule_becomes_one_pending_job() {
        let (_dir, conn) = crate::store::test_dir::migrated_writer("project-job");
        linked_conversation(&conn, "auto");
        let m1 = candidate("m1", "assistant", "c1");
        let Projection::Projected { message_id, job_id, local_conversation_id } =
            project_one(&conn, &m1, &settings(100)).unwrap()
        else {
            panic!("not projected");
        };
        assert_eq!((message_id.as_str(), local_conversation_id.as_str()), ("m1", "lc_p"));
        let (stored_id, status, next, payload): (String, String, i64, String) = conn
            .query_row(
                "SELECT job_id, status, next_attempt_at, payload FROM renewal_jobs WHERE message_id = 'm1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert!(job_id.starts_with("job_"), "{job_id}");
        assert_eq!((stored_id, status.as_str(), next), (job_id, "pending", 100));
        assert!(payload.contains("[renewal] the answer http://127.0.0.1/artifact/msg/m1.txt"), "{payload}");
        assert_eq!(skip_reason(&conn, &m1, 100), Some(SkipReason::Duplicate));
    }

    fn link(kind: Option<&str>, target_id: Option<&str>, payload: Option<&str>) -> Link {
        Link {
            link_id: "l1".into(),
            local_conversation_id: "lc_p".into(),
            platform: "chatgpt".into(),
            client_id: None,
            remote_conversation_id: "c1".into(),
            page_url: None,
            page_title: None,
            route_path: None,
            route_pattern: None,
            route_params: None,
            target_kind: kind.map(Into::into),
            target_id: target_id.map(Into::into),
            target_payload: payload.map(Into::into),
            is_active: true,
            observed_at: 1,
            created_at: 1,
            updated_at: 1,
        }
    }

    /// The tab a link delivers to (docs/RENEWAL.md "Routes").
    #[test]
    fn route_tab_takes_a_positive_tab_of_a_proxy_delivery_link() {
        let kind = Some("browser.proxy_delivery");
        assert_eq!(route_tab(&link(kind, Some("tab:9"), Some(r#"{"tabId":7}"#))), Some(7));
        assert_eq!(route_tab(&link(kind, Some("tab:9"), None)), Some(9));
        assert_eq!(route_tab(&link(kind, Some("tab:9"), Some(r#"{"shellPage":false}"#))), Some(9));
        assert_eq!(route_tab(&link(kind, Some("tab:9"), Some(r#"{"shellPage":true}"#))), None);
        assert_eq!(route_tab(&link(Some("browser.shell"), Some("tab:9"), None)), None);
        assert_eq!(route_tab(&link(None, Some("tab:9"), None)), None);
        assert_eq!(route_tab(&link(kind, Some("tab:0"), None)), None);
        assert_eq!(route_tab(&link(kind, None, Some(r#"{"tabId":-3}"#))), None);
        assert_eq!(route_tab(&link(kind, None, None)), None);
    }

    /// The tab and the organization come from one read of the payload; a
    /// field of an unexpected type reads as absent, the others still count.
    #[test]
    fn link_route_reads_the_tab_and_the_organization() {
        let kind = Some("browser.proxy_delivery");
        let route = |id: Option<&str>, payload: &str| link_route(&link(kind, id, Some(payload)));
        let org = |tab_id: i64, org: Value| Some(LinkRoute { tab_id, organization_id: org });
        assert_eq!(route(None, r#"{"tabId":7,"organizationId":"o-1","x":[1,{}]}"#), org(7, json!("o-1")));
        assert_eq!(route(None, r#"{"tabId":7,"organizationId":null}"#), org(7, Value::Null));
        assert_eq!(route(None, r#"{"tabId":7}"#), org(7, Value::Null));
        assert_eq!(route(Some("tab:9"), r#"{"tabId":"7","organizationId":"o-2"}"#), org(9, json!("o-2")));
        assert_eq!(route(Some("tab:9"), r#"{"tabId":7.5,"shellPage":"yes"}"#), org(9, Value::Null));
        assert_eq!(route(Some("tab:9"), r#"[7]"#), org(9, Value::Null));
        assert_eq!(route(Some("tab:9"), "not json"), org(9, Value::Null));
        assert_eq!(route(Some("tab:9"), r#"{"tabId":7,"shellPage":true,"organizationId":"o-3"}"#), None);
    }

    #[test]
    fn template_is_one_pass() {
        let out = render_template(
            "[renewal] {summary}\n{link} {unknown} {",
            &[("summary", "a {link} b"), ("link", "L")],
        );
        assert_eq!(out, "[renewal] a {link} b\nL {unknown} {");
    }
}
