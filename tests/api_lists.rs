//! Pagination and filters on every list route (docs/API.md "Lists: pagination and
//! filters"): limit/offset validation, enumerated filters, next_offset,
//! newest-first ordering with the id tie-break, and the filters echo.

mod support;

use serde_json::{json, Value};
use support::{enc, exec_sql, message_body, quiet_timed_jobs, seed_job, Daemon, DaemonOpts, JobSeed};

/// (path, list key, id field) of every list route.
const LISTS: &[(&str, &str, &str)] = &[
    ("/v1/messages", "messages", "message_id"),
    ("/v1/renewal/conversations", "conversations", "local_conversation_id"),
    ("/v1/renewal/links", "links", "link_id"),
    ("/v1/renewal/jobs", "jobs", "job_id"),
];

fn daemon() -> Daemon {
    Daemon::start(DaemonOpts::new().config(quiet_timed_jobs()))
}

fn ingest(d: &Daemon, body: &Value) -> Value {
    d.post_json("/v1/messages", body).data()
}

fn sep(path: &str) -> &'static str {
    if path.contains('?') {
        "&"
    } else {
        "?"
    }
}

fn ids(page: &Value, key: &str, id_field: &str) -> Vec<String> {
    page[key].as_array().unwrap().iter().map(|v| v[id_field].as_str().unwrap().to_string()).collect()
}

/// Pages through `path` with every limit from 1 to len+1 and checks each
/// page's count and next_offset and that the pages add up to `expected`.
fn check_pagination(d: &Daemon, path: &str, key: &str, id_field: &str, expected: &[String]) {
    let all = d.get(&format!("{path}{}limit=500", sep(path))).data();
    assert_eq!(ids(&all, key, id_field), expected, "{path}: full order");
    assert_eq!(all["next_offset"], Value::Null);
    for limit in 1..=expected.len() + 1 {
        let mut offset = 0usize;
        let mut seen = Vec::new();
        loop {
            let page = d.get(&format!("{path}{}limit={limit}&offset={offset}", sep(path))).data();
            let got = ids(&page, key, id_field);
            let want_len = limit.min(expected.len().saturating_sub(offset));
            assert_eq!(page["count"], got.len(), "{path} limit {limit} offset {offset}");
            assert_eq!(got.len(), want_len, "{path} limit {limit} offset {offset}");
            assert_eq!(page["filters"]["limit"], limit);
            assert_eq!(page["filters"]["offset"], offset);
            seen.extend(got);
            if offset + limit < expected.len() {
                assert_eq!(page["next_offset"], offset + limit, "{path} limit {limit} offset {offset}");
                offset += limit;
            } else {
                assert_eq!(
                    page["next_offset"],
                    Value::Null,
                    "{path} limit {limit} offset {offset}: last page"
                );
                break;
            }
        }
        assert_eq!(seen, expected, "{path} limit {limit}: pages add up");
    }
    // Past the end: an empty page, no next.
    for offset in [expected.len(), expected.len() + 10, 1_000_000] {
        let page = d.get(&format!("{path}{}offset={offset}", sep(path))).data();
        assert_eq!(page["count"], 0);
        assert_eq!(page[key], json!([]));
        assert_eq!(page["next_offset"], Value::Null);
    }
}

// ---------------------------------------------------------------------------
// Validation common to every list route
// ---------------------------------------------------------------------------

#[test]
fn limit_and_offset_are_validated_on_every_list() {
    let d = daemon();
    for (path, key, _) in LISTS {
        let page = d.get(path).data();
        assert_eq!(page["filters"]["limit"], 50, "{path}: default limit");
        assert_eq!(page["filters"]["offset"], 0, "{path}: default offset");
        assert_eq!(page["count"], 0);
        assert_eq!(page[*key], json!([]));
        assert_eq!(page["next_offset"], Value::Null);
        for good in ["1", "500", "50"] {
            let page = d.get(&format!("{path}?limit={good}")).data();
            assert_eq!(page["filters"]["limit"], good.parse::<u64>().unwrap(), "{path}");
        }
        // `%2B5` is `+5`, which Rust's integer parse alone would take.
        for bad in ["0", "501", "-1", "abc", "1.5", "", "4294967297", "1e2", "%20", "%2B5", "+5", "5%20"] {
            let r = d.get(&format!("{path}?limit={bad}"));
            let e = r.error(400, "invalid_request");
            assert_eq!(e["details"]["field"], "limit", "{path}?limit={bad}");
            assert!(e["message"].as_str().unwrap().contains("limit"), "{e}");
        }
        for bad in ["-1", "x", "1.5", "", "99999999999999999999", "9223372036854775808", "%2B1", "+1"] {
            let e = d.get(&format!("{path}?offset={bad}")).error(400, "invalid_request");
            assert_eq!(e["details"]["field"], "offset", "{path}?offset={bad}");
        }
        // A bad limit is reported even when other parameters are fine.
        let e = d.get(&format!("{path}?offset=0&limit=0")).error(400, "invalid_request");
        assert_eq!(e["details"]["field"], "limit");
        // Unknown parameters are refused, named (tests/api_query.rs).
        let e = d.get(&format!("{path}?limit=2&foo=bar&x")).error(400, "invalid_request");
        assert_eq!(e["details"]["field"], "foo", "{path}");
    }
}

/// Ingest accepts ids of up to 512 bytes; a filter must take any id the
/// daemon stored, and refuse (naming itself) only what it could not hold.
#[test]
fn the_longest_stored_ids_can_be_filtered_by() {
    let d = daemon();
    let (conv, msg) = ("c".repeat(512), "m".repeat(512));
    ingest(&d, &message_body("chatgpt", &conv, &msg, "hi"));
    for (path, key, count) in [
        (format!("/v1/messages?conversation_id={conv}"), "messages", 1),
        (format!("/v1/renewal/links?remote_conversation_id={conv}"), "links", 1),
        (format!("/v1/renewal/jobs?message_id={msg}"), "jobs", 0),
    ] {
        let page = d.get(&path).data();
        assert_eq!(page[key].as_array().unwrap().len(), count, "{path}");
        let too_long =
            path.replacen(&"c".repeat(512), &"c".repeat(513), 1).replacen(&msg, &"m".repeat(513), 1);
        let field = too_long.split('?').nth(1).unwrap().split('=').next().unwrap().to_string();
        let e = d.get(&too_long).error(400, "invalid_request");
        assert_eq!(e["details"]["field"], field.as_str());
    }
}

#[test]
fn enumerated_filters_reject_unknown_values_naming_the_allowed_ones() {
    let d = daemon();
    let cases = [
        (
            "/v1/renewal/conversations",
            "status",
            "manual, auto, paused",
            &["weird", "AUTO", "", "paused,auto"][..],
        ),
        (
            "/v1/renewal/jobs",
            "status",
            "pending, running, done, failed",
            &["weird", "Pending", "", "cancelled"][..],
        ),
        ("/v1/renewal/links", "active", "true, false", &["yes", "1", "TRUE", ""][..]),
    ];
    for (path, field, allowed, bads) in cases {
        for bad in bads {
            let e = d.get(&format!("{path}?{field}={}", enc(bad))).error(400, "invalid_request");
            assert_eq!(e["details"]["field"], field, "{path}?{field}={bad}");
            let message = e["message"].as_str().unwrap();
            assert!(message.contains(allowed), "{path}: {message:?} names {allowed}");
        }
    }
    // Every allowed value is accepted and echoed.
    for status in ["manual", "auto", "paused"] {
        let page = d.get(&format!("/v1/renewal/conversations?status={status}")).data();
        assert_eq!(page["filters"]["status"], status);
    }
    for status in ["pending", "running", "done", "failed"] {
        let page = d.get(&format!("/v1/renewal/jobs?status={status}")).data();
        assert_eq!(page["filters"]["status"], status);
    }
    for active in [true, false] {
        let page = d.get(&format!("/v1/renewal/links?active={active}")).data();
        assert_eq!(page["filters"]["active"], active);
    }
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

#[test]
fn messages_page_newest_first_and_filter() {
    let d = daemon();
    // (id, platform, conversation, role, observed_at): ties on observed_at
    // are broken by id, descending.
    let rows = [
        ("m_a", "chatgpt", "c1", "assistant", 100),
        ("m_b", "chatgpt", "c1", "user", 300),
        ("m_c", "chatgpt", "c2", "assistant", 200),
        ("m_d", "claude", "c1", "assistant", 300),
        ("m_e", "claude", "c3", "user", 300),
        ("m_f", "chatgpt", "c1", "assistant", 50),
        ("m_g", "claude", "c3", "assistant", 200),
    ];
    for (id, platform, conv, role, at) in rows {
        let mut body = message_body(platform, conv, id, "text");
        body["role"] = json!(role);
        body["observed_at"] = json!(at);
        ingest(&d, &body);
    }
    type MessageRow<'a> = (&'a str, &'a str, &'a str, &'a str, i32);
    let expect = |pred: &dyn Fn(&MessageRow) -> bool| -> Vec<String> {
        let mut v: Vec<_> = rows.iter().filter(|r| pred(r)).collect();
        v.sort_by(|a, b| b.4.cmp(&a.4).then(b.0.cmp(a.0)));
        v.iter().map(|r| r.0.to_string()).collect()
    };
    let all = expect(&|_| true);
    assert_eq!(all, ["m_e", "m_d", "m_b", "m_g", "m_c", "m_a", "m_f"]);
    check_pagination(&d, "/v1/messages", "messages", "message_id", &all);

    check_pagination(
        &d,
        "/v1/messages?platform=chatgpt",
        "messages",
        "message_id",
        &expect(&|r| r.1 == "chatgpt"),
    );
    check_pagination(
        &d,
        "/v1/messages?conversation_id=c1",
        "messages",
        "message_id",
        &expect(&|r| r.2 == "c1"),
    );
    check_pagination(&d, "/v1/messages?role=user", "messages", "message_id", &expect(&|r| r.3 == "user"));
    let both = expect(&|r| r.1 == "claude" && r.2 == "c3" && r.3 == "assistant");
    let page =
        d.get("/v1/messages?platform=claude&conversation_id=c3&role=assistant&limit=5&offset=0").data();
    assert_eq!(ids(&page, "messages", "message_id"), both);
    assert_eq!(
        page["filters"],
        json!({"q": null, "platform": "claude", "conversation_id": "c3", "role": "assistant", "limit": 5, "offset": 0})
    );
    let page = d.get("/v1/messages").data();
    assert_eq!(
        page["filters"],
        json!({"q": null, "platform": null, "conversation_id": null, "role": null, "limit": 50, "offset": 0})
    );
    let page = d.get("/v1/messages?platform=nobody").data();
    assert_eq!(page["count"], 0);
    assert_eq!(page["next_offset"], Value::Null);
}

// ---------------------------------------------------------------------------
// Conversations
// ---------------------------------------------------------------------------

#[test]
fn conversations_page_by_updated_at_and_filter() {
    let d = daemon();
    let mut convs = Vec::new();
    for (i, platform) in ["chatgpt", "chatgpt", "claude", "chatgpt", "claude", "gemini"].iter().enumerate() {
        let data = ingest(&d, &message_body(platform, &format!("c{i}"), &format!("m{i}"), "x"));
        convs.push((data["local_conversation_id"].as_str().unwrap().to_string(), platform.to_string()));
    }
    d.post_empty(&format!("/v1/renewal/conversations/{}/auto", convs[1].0)).data();
    d.post_empty(&format!("/v1/renewal/conversations/{}/auto", convs[4].0)).data();
    d.post_empty(&format!("/v1/renewal/conversations/{}/paused", convs[3].0)).data();
    // Fix updated_at (with ties) so the order is known.
    let updated = [10, 30, 20, 30, 30, 5];
    for ((id, _), at) in convs.iter().zip(updated) {
        exec_sql(
            &d.db_path(),
            &format!("UPDATE local_conversations SET updated_at = {at} WHERE local_conversation_id = '{id}'"),
        );
    }
    let status = |i: usize| match i {
        1 | 4 => "auto",
        3 => "paused",
        _ => "manual",
    };
    let expect = |pred: &dyn Fn(usize) -> bool| -> Vec<String> {
        let mut v: Vec<usize> = (0..convs.len()).filter(|i| pred(*i)).collect();
        v.sort_by(|a, b| updated[*b].cmp(&updated[*a]).then(convs[*b].0.cmp(&convs[*a].0)));
        v.iter().map(|i| convs[*i].0.clone()).collect()
    };
    let key = "conversations";
    let id = "local_conversation_id";
    check_pagination(&d, "/v1/renewal/conversations", key, id, &expect(&|_| true));
    check_pagination(
        &d,
        "/v1/renewal/conversations?platform=chatgpt",
        key,
        id,
        &expect(&|i| convs[i].1 == "chatgpt"),
    );
    for s in ["manual", "auto", "paused"] {
        let path = format!("/v1/renewal/conversations?status={s}");
        check_pagination(&d, &path, key, id, &expect(&|i| status(i) == s));
    }
    let page = d.get("/v1/renewal/conversations?platform=claude&status=auto").data();
    assert_eq!(ids(&page, key, id), vec![convs[4].0.clone()]);
    assert_eq!(page["filters"], json!({"platform": "claude", "status": "auto", "limit": 50, "offset": 0}));
    let page = d.get("/v1/renewal/conversations").data();
    assert_eq!(page["filters"], json!({"platform": null, "status": null, "limit": 50, "offset": 0}));
}

// ---------------------------------------------------------------------------
// Links
// ---------------------------------------------------------------------------

#[test]
fn links_page_by_observed_at_and_filter() {
    let d = daemon();
    // (conversation, platform, client, tab, observed_at)
    let rows = [
        ("c1", "chatgpt", Some("ff-1"), 1, 100),
        ("c1", "chatgpt", Some("ff-1"), 2, 200), // makes the first inactive
        ("c2", "chatgpt", Some("ff-2"), 3, 200),
        ("c3", "claude", None, 4, 200),
        ("c4", "claude", Some("ff-1"), 5, 50),
    ];
    let mut links = Vec::new(); // (link_id, local id, row index)
    for (i, (conv, platform, client, tab, at)) in rows.iter().enumerate() {
        let mut body = message_body(platform, conv, &format!("m{i}"), "x");
        body["tab_id"] = json!(tab);
        body["observed_at"] = json!(at);
        if let Some(c) = client {
            body["client_id"] = json!(c);
        }
        let data = ingest(&d, &body);
        links.push((
            data["link_id"].as_str().unwrap().to_string(),
            data["local_conversation_id"].as_str().unwrap().to_string(),
            i,
        ));
    }
    let active = |i: usize| i != 0;
    let expect = |pred: &dyn Fn(usize) -> bool| -> Vec<String> {
        let mut v: Vec<&(String, String, usize)> = links.iter().filter(|l| pred(l.2)).collect();
        v.sort_by(|a, b| rows[b.2].4.cmp(&rows[a.2].4).then(b.0.cmp(&a.0)));
        v.iter().map(|l| l.0.clone()).collect()
    };
    let key = "links";
    let id = "link_id";
    check_pagination(&d, "/v1/renewal/links", key, id, &expect(&|_| true));
    check_pagination(&d, "/v1/renewal/links?platform=claude", key, id, &expect(&|i| rows[i].1 == "claude"));
    check_pagination(
        &d,
        "/v1/renewal/links?remote_conversation_id=c1",
        key,
        id,
        &expect(&|i| rows[i].0 == "c1"),
    );
    let lc1 = &links[0].1;
    check_pagination(
        &d,
        &format!("/v1/renewal/links?local_conversation_id={lc1}"),
        key,
        id,
        &expect(&|i| rows[i].0 == "c1"),
    );
    check_pagination(
        &d,
        "/v1/renewal/links?client_id=ff-1",
        key,
        id,
        &expect(&|i| rows[i].2 == Some("ff-1")),
    );
    check_pagination(&d, "/v1/renewal/links?active=true", key, id, &expect(&active));
    check_pagination(&d, "/v1/renewal/links?active=false", key, id, &expect(&|i| !active(i)));
    let page =
        d.get("/v1/renewal/links?platform=chatgpt&client_id=ff-1&active=false&limit=3&offset=0").data();
    assert_eq!(ids(&page, key, id), vec![links[0].0.clone()]);
    assert_eq!(
        page["filters"],
        json!({"platform": "chatgpt", "remote_conversation_id": null, "local_conversation_id": null,
               "client_id": "ff-1", "active": false, "limit": 3, "offset": 0})
    );
    let page = d
        .get(&format!("/v1/renewal/links?remote_conversation_id=c2&local_conversation_id={}", links[2].1))
        .data();
    assert_eq!(page["filters"]["remote_conversation_id"], "c2");
    assert_eq!(page["filters"]["local_conversation_id"], links[2].1.as_str());
    assert_eq!(page["filters"]["active"], Value::Null);
    assert_eq!(ids(&page, key, id), vec![links[2].0.clone()]);
}

// ---------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------

#[test]
fn jobs_page_by_created_at_and_filter() {
    let d = daemon();
    // (id, status, conversation, created_at)
    let rows = [
        ("job_a", "pending", "lc_1", 100),
        ("job_b", "failed", "lc_1", 300),
        ("job_c", "done", "lc_2", 300),
        ("job_d", "pending", "lc_2", 200),
        ("job_e", "running", "lc_1", 300),
        ("job_f", "pending", "lc_3", 50),
        ("job_g", "failed", "lc_2", 200),
    ];
    for (id, status, lc, at) in rows {
        let mut job = JobSeed::new(id, status);
        job.local_conversation_id = lc.into();
        job.created_at = at;
        job.updated_at = at;
        seed_job(&d.db_path(), &job);
    }
    type JobRow<'a> = (&'a str, &'a str, &'a str, i64);
    let expect = |pred: &dyn Fn(&JobRow) -> bool| -> Vec<String> {
        let mut v: Vec<_> = rows.iter().filter(|r| pred(r)).collect();
        v.sort_by(|a, b| b.3.cmp(&a.3).then(b.0.cmp(a.0)));
        v.iter().map(|r| r.0.to_string()).collect()
    };
    let key = "jobs";
    let id = "job_id";
    let all = expect(&|_| true);
    assert_eq!(all, ["job_e", "job_c", "job_b", "job_g", "job_d", "job_a", "job_f"]);
    check_pagination(&d, "/v1/renewal/jobs", key, id, &all);
    for s in ["pending", "running", "done", "failed"] {
        check_pagination(&d, &format!("/v1/renewal/jobs?status={s}"), key, id, &expect(&|r| r.1 == s));
    }
    check_pagination(&d, "/v1/renewal/jobs?local_conversation_id=lc_2", key, id, &expect(&|r| r.2 == "lc_2"));
    let page = d.get("/v1/renewal/jobs?message_id=msg_job_d").data();
    assert_eq!(ids(&page, key, id), vec!["job_d".to_string()]);
    assert_eq!(
        page["filters"],
        json!({"status": null, "local_conversation_id": null, "message_id": "msg_job_d", "limit": 50, "offset": 0})
    );
    let page = d.get("/v1/renewal/jobs?status=pending&local_conversation_id=lc_1&offset=0&limit=10").data();
    assert_eq!(ids(&page, key, id), vec!["job_a".to_string()]);
    assert_eq!(
        page["filters"],
        json!({"status": "pending", "local_conversation_id": "lc_1", "message_id": null, "limit": 10, "offset": 0})
    );
}

#[test]
fn list_items_follow_the_id_tie_break_exactly() {
    // Many rows with one timestamp: the order is the ids, descending, and
    // paging never repeats or skips one.
    let d = daemon();
    let mut expected = Vec::new();
    for i in 0..23 {
        let id = format!("m{i:02}");
        let mut body = message_body("chatgpt", "same", &id, &format!("t{i}"));
        body["observed_at"] = json!(42);
        ingest(&d, &body);
        expected.push(id);
    }
    expected.reverse();
    let mut seen = Vec::new();
    let mut offset = Some(0u64);
    while let Some(o) = offset {
        let page = d.get(&format!("/v1/messages?limit=5&offset={o}")).data();
        seen.extend(ids(&page, "messages", "message_id"));
        offset = page["next_offset"].as_u64();
    }
    assert_eq!(seen, expected);
}

/// List pages are served from a cache of rendered text (http::cache); a
/// write acknowledged over HTTP must show in the very next read of the
/// same page, every time, for messages, conversations and jobs.
#[test]
fn a_cached_list_page_never_lags_an_acknowledged_write() {
    let d = daemon();
    for i in 0..8 {
        seed_job(&d.db_path(), &JobSeed::new(&format!("job_{i}"), "pending"));
    }
    for i in 0..25 {
        let id = format!("msg_{i:03}");
        ingest(&d, &message_body("claude", &format!("conv_{i}"), &id, "hello"));
        let page = d.get("/v1/messages?limit=1").data();
        assert_eq!(page["messages"][0]["message_id"], id.as_str(), "round {i}");
        let page = d.get("/v1/renewal/conversations?limit=500").data();
        assert_eq!(page["count"], i + 1, "round {i}");
    }
    // A job's rendered text is also kept on its own (http::row_texts), so
    // a page that still lists the job must show it changed.
    let status_of = |id: &str| {
        let all = d.get("/v1/renewal/jobs?limit=500").data();
        let job = all["jobs"].as_array().unwrap().iter().find(|j| j["job_id"] == id).cloned();
        job.unwrap()["status"].as_str().unwrap().to_owned()
    };
    for i in 0..8 {
        let id = format!("job_{i}");
        let before = d.get("/v1/renewal/jobs?status=pending").data();
        assert_eq!(before["count"], 8 - i);
        assert_eq!(status_of(&id), "pending");
        let cancelled = d.post_empty(&format!("/v1/renewal/jobs/{id}/cancel")).data();
        assert_ne!(cancelled["status"], "pending");
        let after = d.get("/v1/renewal/jobs?status=pending").data();
        assert_eq!(after["count"], 7 - i, "cancel {i} not visible at once");
        assert!(!ids(&after, "jobs", "job_id").contains(&id));
        assert_eq!(
            status_of(&id),
            cancelled["status"],
            "cancel {i} not visible in the page that lists every job"
        );
    }
}
