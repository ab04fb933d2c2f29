//! `GET /v1/messages?q=…` (docs/API.md "Search"): full-text search over
//! message text through the real HTTP API — every word required, ranked,
//! a snippet with the matches marked, the list filters and pagination
//! still applying, search syntax taken as text, and a message searchable
//! as soon as its ingest is acknowledged.

mod support;

use serde_json::{json, Value};
use support::*;

fn ingest(d: &Daemon, platform: &str, conversation: &str, id: &str, text: &str) {
    d.post_json("/v1/messages", &message_body(platform, conversation, id, text)).data();
}

fn search(d: &Daemon, query: &str) -> Value {
    d.get(&format!("/v1/messages?{query}")).data()
}

fn ids(data: &Value) -> Vec<String> {
    data["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_string())
        .collect()
}

fn corpus(d: &Daemon) {
    ingest(
        d,
        "chatgpt",
        "c1",
        "plan-1",
        "Here is the plan we discussed: first write the tests, then the renewal code.",
    );
    ingest(d, "claude", "c2", "plan-2", "Renewal plan: renewal every morning, renewal every evening.");
    ingest(d, "chatgpt", "c1", "other", "Nothing relevant here, only weather and coffee.");
    ingest(d, "gemini", "c3", "accents", "Le café était fermé; Über-Lösung für das Problem.");
    for i in 0..6 {
        ingest(d, "claude", "c4", &format!("bulk-{i}"), &format!("bulk entry number {i} about the renewal"));
    }
}

#[test]
fn every_word_is_required_and_the_best_match_comes_first() {
    let d = Daemon::start(DaemonOpts::new());
    corpus(&d);
    let data = search(&d, "q=renewal%20plan");
    // plan-2 says "renewal" three times in a short text: it ranks first.
    assert_eq!(ids(&data), ["plan-2", "plan-1"]);
    assert_eq!(data["count"], 2);
    assert_eq!(data["filters"]["q"], "renewal plan");
    let first = &data["messages"][0];
    assert!(first.get("raw_text").is_none(), "lists leave the text out");
    assert!(
        first["search"]["score"].as_f64().unwrap()
            >= data["messages"][1]["search"]["score"].as_f64().unwrap()
    );
    let snippet = first["search"]["snippet"].as_str().unwrap();
    assert!(snippet.contains("«Renewal» «plan»"), "{snippet}");
    let parts = first["search"]["snippet_parts"].as_array().unwrap();
    let marked: Vec<&str> =
        parts.iter().filter(|p| p["match"] == true).map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(marked.first().copied(), Some("Renewal"));
    let joined: String = parts.iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(joined, snippet.replace(['«', '»'], ""));
    // Diacritics and case do not matter; a trailing * is a prefix.
    assert_eq!(ids(&search(&d, "q=CAFE%20uber")), ["accents"]);
    assert_eq!(ids(&search(&d, "q=lösung")), ["accents"]);
    assert_eq!(ids(&search(&d, "q=wea*")), ["other"]);
    assert!(ids(&search(&d, "q=wea")).is_empty(), "without * a word is whole");
}

#[test]
fn filters_and_pages_apply_to_a_search() {
    let d = Daemon::start(DaemonOpts::new());
    corpus(&d);
    assert_eq!(ids(&search(&d, "q=renewal&platform=chatgpt")), ["plan-1"]);
    assert_eq!(ids(&search(&d, "q=renewal&conversation_id=c2")), ["plan-2"]);
    assert!(ids(&search(&d, "q=renewal&role=user")).is_empty());
    // Eight messages say "renewal": three pages of three.
    let mut seen = Vec::new();
    let mut offset = Some(0);
    while let Some(o) = offset {
        let page = search(&d, &format!("q=renewal&limit=3&offset={o}"));
        assert!(page["count"].as_u64().unwrap() <= 3);
        seen.extend(ids(&page));
        offset = page["next_offset"].as_u64();
    }
    assert_eq!(seen.len(), 8, "{seen:?}");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8, "no message twice across pages");
    assert_eq!(search(&d, "q=renewal&limit=3&offset=6")["next_offset"], Value::Null);
}

#[test]
fn search_syntax_is_text_and_a_bad_query_is_named() {
    let d = Daemon::start(DaemonOpts::new());
    corpus(&d);
    ingest(&d, "chatgpt", "c9", "syntax", "use NEAR(a b) and col:value -x with \"quotes\"");
    for q in ["%22NEAR(", "col%3Avalue", "-x", "%22quotes%22", "AND", "(", "*"] {
        let r = d.get(&format!("/v1/messages?q={q}"));
        assert!(r.status == 200 || (q == "*" && r.status == 400), "q={q}: {} {}", r.status, r.text());
    }
    assert_eq!(ids(&search(&d, "q=col%3Avalue")), ["syntax"]);
    assert_eq!(ids(&search(&d, "q=NEAR%28a%20b%29")), ["syntax"]);
    for q in ["", "%20%20", "*"] {
        let r = d.get(&format!("/v1/messages?q={q}"));
        assert_eq!(r.error(400, "invalid_request")["details"]["field"], "q", "q={q}");
    }
    let long = "a".repeat(600);
    assert_eq!(
        d.get(&format!("/v1/messages?q={long}")).error(400, "invalid_request")["details"]["field"],
        "q"
    );
}

#[test]
fn an_acknowledged_message_is_found_at_once_and_a_duplicate_is_not_indexed_twice() {
    let d = Daemon::start(DaemonOpts::new());
    for i in 0..20 {
        let id = format!("fresh-{i}");
        ingest(&d, "claude", "c", &id, &format!("zebra{i} appears"));
        assert_eq!(ids(&search(&d, &format!("q=zebra{i}"))), vec![id]);
    }
    let again = d.post_json("/v1/messages", &message_body("claude", "c", "fresh-0", "zebra0 appears")).data();
    assert_eq!(again["duplicate"], true);
    assert_eq!(ids(&search(&d, "q=zebra0")), ["fresh-0"]);
    // Without q the list is the plain newest-first list, with no search fields.
    let plain = search(&d, "limit=1");
    assert_eq!(ids(&plain), ["fresh-19"]);
    assert!(plain["messages"][0].get("search").is_none());
    assert_eq!(plain["filters"]["q"], json!(null));
}
