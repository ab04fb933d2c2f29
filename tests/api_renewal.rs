//! The renewal routes (docs/API.md "Renewal"): conversations and their
//! switches, links, and jobs (read, retry, cancel, list).

mod api_support;
mod support;

use api_support::*;
use serde_json::{json, Value};
use support::{exec_sql, message_body, now_ms, seed_job, JobSeed, JOB_KEYS};

// ---------------------------------------------------------------------------
// Renewal conversations and links
// ---------------------------------------------------------------------------

#[test]
fn conversation_switches_manual_auto_paused() {
    let d = daemon();
    let a = ingest(&d, &message_body("chatgpt", "c", "m1", "same"));
    ingest(&d, &message_body("chatgpt", "c", "m2", "same"));
    let lc = a["local_conversation_id"].as_str().unwrap().to_string();
    let db = d.db_path();
    exec_sql(
        &db,
        &format!("UPDATE local_conversations SET consecutive_failure_count = 2, repeated_renewal_count = 2 WHERE local_conversation_id = '{lc}'"),
    );

    // paused without a reason: "user".
    let before = now_ms();
    let r = d.post_empty(&format!("/v1/renewal/conversations/{lc}/paused"));
    assert_json_response(&r);
    let conv = r.data();
    assert_keys(&conv, CONVERSATION_KEYS);
    assert_eq!(conv["automation_status"], "paused");
    assert_eq!(conv["pause_reason"], "user");
    assert_eq!(conv["last_non_paused_automation_status"], "manual");
    assert!(conv["paused_at"].as_i64().unwrap() >= before);
    assert_eq!(conv["consecutive_failure_count"], 2, "pausing keeps the counters");
    assert_eq!(conversation(&d, &lc), conv, "the answer is the stored conversation");

    // paused with a reason.
    let conv =
        d.post_json(&format!("/v1/renewal/conversations/{lc}/paused"), &json!({"reason": "lunch"})).data();
    assert_eq!(conv["pause_reason"], "lunch");
    // A blank reason is no reason: the default again.
    let conv = d.post_json(&format!("/v1/renewal/conversations/{lc}/paused"), &json!({"reason": " "})).data();
    assert_eq!(conv["pause_reason"], "user");

    // auto: the pause and every counter are cleared.
    let conv = d.post_empty(&format!("/v1/renewal/conversations/{lc}/auto")).data();
    assert_eq!(conv["automation_status"], "auto");
    assert_eq!(conv["last_non_paused_automation_status"], "auto");
    assert_eq!(conv["pause_reason"], Value::Null);
    assert_eq!(conv["paused_at"], Value::Null);
    assert_eq!(conv["consecutive_failure_count"], 0);
    assert_eq!(conv["repeated_message_count"], 0);
    assert_eq!(conv["repeated_renewal_count"], 0);

    // paused remembers auto as the last non-paused status.
    let conv = d.post_empty(&format!("/v1/renewal/conversations/{lc}/paused")).data();
    assert_eq!(conv["last_non_paused_automation_status"], "auto");

    // manual: the same reset.
    exec_sql(&db, &format!("UPDATE local_conversations SET consecutive_failure_count = 3 WHERE local_conversation_id = '{lc}'"));
    let conv = d.post_empty(&format!("/v1/renewal/conversations/{lc}/manual")).data();
    assert_eq!(conv["automation_status"], "manual");
    assert_eq!(conv["last_non_paused_automation_status"], "manual");
    assert_eq!(conv["pause_reason"], Value::Null);
    assert_eq!(conv["paused_at"], Value::Null);
    assert_eq!(conv["consecutive_failure_count"], 0);
    assert!(conv["updated_at"].as_i64().unwrap() >= before);

    // Errors: a reason of the wrong type, unknown ids.
    let e = d
        .post_json(&format!("/v1/renewal/conversations/{lc}/paused"), &json!({"reason": 1}))
        .error(400, "invalid_request");
    assert_eq!(e["details"]["field"], "reason");
    for action in ["", "/manual", "/auto", "/paused"] {
        let path = format!("/v1/renewal/conversations/lc_missing{action}");
        let r = if action.is_empty() { d.get(&path) } else { d.post_empty(&path) };
        let e = r.error(404, "not_found");
        assert_eq!(e["details"]["resource"], "local_conversation", "{path}");
        assert_eq!(e["details"]["resource_id"], "lc_missing", "{path}");
    }
}

#[test]
fn conversations_list_shows_active_links() {
    let d = daemon();
    let a = ingest(&d, &full_message("m1", 1000));
    let data = d.get("/v1/renewal/conversations").data();
    assert_keys(&data, &["count", "filters", "next_offset", "conversations"]);
    assert_eq!(data["count"], 1);
    let conv = &data["conversations"][0];
    assert_keys(conv, CONVERSATION_KEYS);
    assert_eq!(conv["local_conversation_id"], a["local_conversation_id"]);
    assert_eq!(conv["active_link"]["link_id"], a["link_id"]);
    // Two conversations: each row carries its own link, exactly as the
    // conversation's own route shows it.
    let mut other = full_message("m2", 2000);
    other["conversation_id"] = json!("def");
    other["page_url"] = json!("https://chatgpt.com/c/def");
    let b = ingest(&d, &other);
    assert_ne!(a["link_id"], b["link_id"]);
    let data = d.get("/v1/renewal/conversations").data();
    assert_eq!(data["count"], 2);
    for conv in data["conversations"].as_array().unwrap() {
        let id = conv["local_conversation_id"].as_str().unwrap();
        assert_eq!(conv, &conversation(&d, id), "{id}");
    }
    let links: Vec<&Value> =
        data["conversations"].as_array().unwrap().iter().map(|c| &c["active_link"]["link_id"]).collect();
    assert_eq!(links, [&b["link_id"], &a["link_id"]]);
}

#[test]
fn links_list_renders_links() {
    let d = daemon();
    let a = ingest(&d, &full_message("m1", 1000));
    let data = d.get("/v1/renewal/links").data();
    assert_keys(&data, &["count", "filters", "next_offset", "links"]);
    assert_eq!(data["count"], 1);
    let link = &data["links"][0];
    assert_keys(link, LINK_KEYS);
    assert_eq!(link["link_id"], a["link_id"]);
    assert_eq!(link, &conversation(&d, a["local_conversation_id"].as_str().unwrap())["active_link"]);
}

// ---------------------------------------------------------------------------
// Renewal jobs
// ---------------------------------------------------------------------------

#[test]
fn job_read_shows_every_field_with_explicit_nulls() {
    let d = daemon();
    let mut job = JobSeed::new("job_1", "pending");
    job.target_snapshot = Some(json!({"platform": "chatgpt", "linkId": "link_1"}).to_string());
    seed_job(&d.db_path(), &job);
    let r = d.get("/v1/renewal/jobs/job_1");
    assert_json_response(&r);
    let v = r.json();
    let data = &v["data"];
    assert_keys(data, JOB_KEYS);
    assert_eq!(data["job_id"], "job_1");
    assert_eq!(data["local_conversation_id"], "lc_seed");
    assert_eq!(data["message_id"], "msg_job_1");
    assert_eq!(data["status"], "pending");
    assert_eq!(data["payload_kind"], "json");
    assert_eq!(data["payload"]["kind"], "renewal.message", "payload parsed: {data}");
    assert_eq!(data["payload_text"], "renew job_1");
    assert_eq!(data["target_snapshot"], json!({"platform": "chatgpt", "linkId": "link_1"}));
    assert_eq!(data["attempt_count"], 0);
    assert_eq!(data["max_attempts"], 3);
    assert_eq!(data["next_attempt_at"], job.next_attempt_at.unwrap());
    // `jq .data.finished_at` works on a fresh job: present, null.
    for null in ["finished_at", "started_at", "last_attempt_at", "last_error", "log_path"] {
        assert_eq!(data.get(null), Some(&Value::Null), "{null}");
    }

    // A text payload is its own text; an unparsable json payload is shown as text.
    let mut text_job = JobSeed::new("job_text", "pending");
    text_job.payload_kind = "text".into();
    text_job.payload = "plain words".into();
    seed_job(&d.db_path(), &text_job);
    let data = d.get("/v1/renewal/jobs/job_text").data();
    assert_eq!(data["payload"], "plain words");
    assert_eq!(data["payload_text"], "plain words");
    assert_eq!(data["target_snapshot"], Value::Null);
    let mut broken = JobSeed::new("job_broken", "pending");
    broken.payload = "{not json".into();
    seed_job(&d.db_path(), &broken);
    let data = d.get("/v1/renewal/jobs/job_broken").data();
    assert_eq!(data["payload"], "{not json");
    assert_eq!(data["payload_text"], Value::Null);

    let e = d.get("/v1/renewal/jobs/nope").error(404, "not_found");
    assert_eq!(e["details"]["resource"], "renewal_job");
    assert_eq!(e["details"]["resource_id"], "nope");
}

#[test]
fn job_retry_moves_failed_to_pending() {
    let d = daemon();
    let db = d.db_path();
    let t = now_ms() - 10_000;
    let mut exhausted = JobSeed::new("job_exhausted", "failed");
    exhausted.attempt_count = 3;
    exhausted.max_attempts = 3;
    exhausted.last_error = Some("delivery_timeout".into());
    exhausted.started_at = Some(t);
    exhausted.last_attempt_at = Some(t);
    exhausted.finished_at = Some(t + 1);
    seed_job(&db, &exhausted);
    let mut terminal = JobSeed::new("job_early", "failed");
    terminal.attempt_count = 1;
    terminal.max_attempts = 3;
    terminal.last_error = Some("invalid_payload".into());
    terminal.finished_at = Some(t);
    seed_job(&db, &terminal);

    let before = now_ms();
    let r = d.post_empty("/v1/renewal/jobs/job_exhausted/retry");
    assert_json_response(&r);
    let job = r.data();
    let after = now_ms();
    assert_keys(&job, JOB_KEYS);
    assert_eq!(job["status"], "pending");
    assert_eq!(job["attempt_count"], 3, "attempts are kept");
    assert_eq!(job["max_attempts"], 4, "raised by one when exhausted");
    let due = job["next_attempt_at"].as_i64().unwrap();
    assert!(due >= before && due <= after, "due now: {due} not in {before}..={after}");
    assert_eq!(job["finished_at"], Value::Null);
    assert_eq!(d.get("/v1/renewal/jobs/job_exhausted").data(), job, "the answer is the stored job");

    let job = d.post_empty("/v1/renewal/jobs/job_early/retry").data();
    assert_eq!(job["status"], "pending");
    assert_eq!(job["attempt_count"], 1);
    assert_eq!(job["max_attempts"], 3, "not exhausted: unchanged");

    // Retry of anything but failed: 409 invalid_state naming the state.
    seed_job(&db, &JobSeed::new("job_running", "running"));
    seed_job(&db, &JobSeed::new("job_done", "done"));
    for (id, state) in [("job_exhausted", "pending"), ("job_running", "running"), ("job_done", "done")] {
        let r = d.post_empty(&format!("/v1/renewal/jobs/{id}/retry"));
        assert_json_response(&r);
        let e = r.error(409, "invalid_state");
        assert_eq!(e["details"]["resource"], "renewal_job");
        assert_eq!(e["details"]["resource_id"], id);
        assert_eq!(e["details"]["state"], state);
        assert_eq!(d.get(&format!("/v1/renewal/jobs/{id}")).data()["status"], state, "unchanged");
    }
    let e = d.post_empty("/v1/renewal/jobs/nope/retry").error(404, "not_found");
    assert_eq!(e["details"]["resource"], "renewal_job");
    assert_eq!(e["details"]["resource_id"], "nope");
}

#[test]
fn job_cancel_moves_pending_to_failed() {
    let d = daemon();
    let db = d.db_path();
    seed_job(&db, &JobSeed::new("job_p", "pending"));
    let before = now_ms();
    let job = d.post_empty("/v1/renewal/jobs/job_p/cancel").data();
    assert_eq!(job["status"], "failed");
    assert_eq!(job["last_error"], "cancelled");
    assert_eq!(job["next_attempt_at"], Value::Null);
    let finished = job["finished_at"].as_i64().unwrap();
    assert!(finished >= before && finished <= now_ms());
    assert_eq!(d.get("/v1/renewal/jobs/job_p").data(), job);

    // A cancelled job can be retried.
    assert_eq!(d.post_empty("/v1/renewal/jobs/job_p/retry").data()["status"], "pending");

    seed_job(&db, &JobSeed::new("job_r", "running"));
    seed_job(&db, &JobSeed::new("job_d", "done"));
    seed_job(&db, &JobSeed::new("job_f", "failed"));
    for (id, state) in [("job_r", "running"), ("job_d", "done"), ("job_f", "failed")] {
        let e = d.post_empty(&format!("/v1/renewal/jobs/{id}/cancel")).error(409, "invalid_state");
        assert_eq!(e["details"]["resource"], "renewal_job");
        assert_eq!(e["details"]["resource_id"], id);
        assert_eq!(e["details"]["state"], state);
    }
    let e = d.post_empty("/v1/renewal/jobs/nope/cancel").error(404, "not_found");
    assert_eq!(e["details"]["resource"], "renewal_job");
}

#[test]
fn jobs_list_renders_jobs() {
    let d = daemon();
    seed_job(&d.db_path(), &JobSeed::new("job_1", "pending"));
    let data = d.get("/v1/renewal/jobs").data();
    assert_keys(&data, &["count", "filters", "next_offset", "jobs"]);
    assert_eq!(data["count"], 1);
    assert_eq!(data["jobs"][0], d.get("/v1/renewal/jobs/job_1").data());
}
