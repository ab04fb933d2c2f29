//! The renewal API as the tests call it: jobs and conversations, waits on
//! their state, ingesting messages, and conversations made routable.

use serde_json::{json, Value};

use super::log::{job_story, log_tail};
use super::WAIT;
use crate::support::{enc, wait_until, Daemon};

pub fn job(d: &Daemon, job_id: &str) -> Value {
    d.get(&format!("/v1/renewal/jobs/{}", enc(job_id))).data()
}

pub fn jobs_for_message(d: &Daemon, message_id: &str) -> Vec<Value> {
    let data = d.get(&format!("/v1/renewal/jobs?message_id={}&limit=500", enc(message_id))).data();
    data["jobs"].as_array().unwrap().clone()
}

pub fn all_jobs(d: &Daemon) -> Vec<Value> {
    let data = d.get("/v1/renewal/jobs?limit=500").data();
    data["jobs"].as_array().unwrap().clone()
}

pub fn conversation(d: &Daemon, lc: &str) -> Value {
    d.get(&format!("/v1/renewal/conversations/{}", enc(lc))).data()
}

/// Waits until the job satisfies `pred`; panics with the job and its log.
pub fn wait_job(d: &Daemon, job_id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(WAIT, || {
        last = job(d, job_id);
        pred(&last)
    });
    if !ok {
        panic!("job {job_id} not {what} within {WAIT:?}: {last}\nits log: {:?}", job_story(d, job_id));
    }
    last
}

/// Waits until the conversation satisfies `pred`.
pub fn wait_conversation(d: &Daemon, lc: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(WAIT, || {
        last = conversation(d, lc);
        pred(&last)
    });
    assert!(ok, "conversation {lc} not {what} within {WAIT:?}: {last}");
    last
}

/// Waits for the one job of a message and returns it.
pub fn wait_job_for_message(d: &Daemon, message_id: &str) -> Value {
    let mut jobs = Vec::new();
    let ok = wait_until(WAIT, || {
        jobs = jobs_for_message(d, message_id);
        !jobs.is_empty()
    });
    if !ok {
        panic!("no job for message {message_id} within {WAIT:?}; log tail:\n{}", log_tail(d, 40));
    }
    assert_eq!(jobs.len(), 1, "one job per message: {jobs:?}");
    jobs[0].clone()
}

/// `POST /v1/messages`; returns `data`.
pub fn ingest(d: &Daemon, body: &Value) -> Value {
    d.post_json("/v1/messages", body).data()
}

/// A `POST /v1/messages` body with a route and (optionally) a tab and client.
pub fn message(
    platform: &str,
    conversation_id: &str,
    message_id: &str,
    role: &str,
    text: &str,
    client_id: Option<&str>,
    tab_id: Option<i64>,
) -> Value {
    json!({
        "platform": platform,
        "conversation_id": conversation_id,
        "message_id": message_id,
        "role": role,
        "text": text,
        "page_url": format!("https://{platform}.example/c/{conversation_id}"),
        "page_title": format!("Title {conversation_id}"),
        "tab_id": tab_id,
        "client_id": client_id,
        "route": {
            "path": format!("/c/{conversation_id}"),
            "pattern": "/c/:conversationId",
            "params": { "conversationId": conversation_id }
        }
    })
}

/// Creates a local conversation whose active link points at `tab_id` of
/// `client_id` (by ingesting a *user* message, which the projector skips),
/// switches it to `auto` and returns its id.
pub fn auto_conversation(
    d: &Daemon,
    platform: &str,
    conversation_id: &str,
    client_id: Option<&str>,
    tab_id: Option<i64>,
) -> String {
    let lc = new_conversation(d, platform, conversation_id, client_id, tab_id);
    set_status(d, &lc, "auto");
    lc
}

/// Like `auto_conversation` but leaves it `manual`.
pub fn new_conversation(
    d: &Daemon,
    platform: &str,
    conversation_id: &str,
    client_id: Option<&str>,
    tab_id: Option<i64>,
) -> String {
    let mid = format!("user-{conversation_id}");
    let data =
        ingest(d, &message(platform, conversation_id, &mid, "user", "open the page", client_id, tab_id));
    data["local_conversation_id"].as_str().unwrap().to_string()
}

/// `POST /v1/renewal/conversations/:id/<status>` (auto, manual, paused).
pub fn set_status(d: &Daemon, lc: &str, status: &str) -> Value {
    d.post_json(&format!("/v1/renewal/conversations/{}/{status}", enc(lc)), &json!({})).data()
}

/// `POST /v1/system/<action>` (pause, resume, drain).
pub fn system(d: &Daemon, action: &str) -> Value {
    d.post_json(&format!("/v1/system/{action}"), &json!({})).data()
}

pub fn timed_jobs(d: &Daemon) -> Value {
    d.get("/v1/timed-jobs").data()
}

/// The `/v1/timed-jobs` entry of one runner.
pub fn runner(d: &Daemon, name: &str) -> Value {
    let data = timed_jobs(d);
    data["runners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no runner {name}: {data}"))
        .clone()
}

/// Waits until `name` has *finished* `n` more runs than it had when called
/// (its `runs` grew by `n + 1`, so the `n`-th new run has certainly ended).
pub fn wait_runs(d: &Daemon, name: &str, n: u64) {
    let start = runner(d, name)["runs"].as_u64().unwrap();
    let ok = wait_until(WAIT, || runner(d, name)["runs"].as_u64().unwrap() > start + n);
    assert!(ok, "{name} did not run {n} more times within {WAIT:?}: {}", runner(d, name));
}
