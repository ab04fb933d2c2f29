//! Unknown query parameters are refused (docs/API.md "Lists: pagination and
//! filters"): a misspelt filter must never answer — or let a script act
//! on — every row. The 400 names the parameter and lists the route's own.

mod support;

use serde_json::{json, Value};
use support::{message_body, quiet_timed_jobs, Daemon, DaemonOpts};

fn daemon() -> Daemon {
    Daemon::start(DaemonOpts::new().config(quiet_timed_jobs()))
}

fn allowed(err: &Value) -> Vec<String> {
    err["details"]["allowed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

#[test]
fn a_misspelt_filter_is_a_400_naming_it_not_every_row() {
    let d = daemon();
    for (platform, id) in [("chatgpt", "m-1"), ("claude", "m-2")] {
        d.post_json("/v1/messages", &message_body(platform, "c", id, "hi")).data();
    }
    let r = d.get("/v1/messages?platfrom=chatgpt");
    let err = r.error(400, "invalid_request");
    assert_eq!(err["details"]["field"], "platfrom", "{err}");
    assert_eq!(allowed(&err), ["q", "platform", "conversation_id", "role", "limit", "offset"]);
    assert!(err["message"].as_str().unwrap().contains("\"platfrom\""), "{err}");
    assert!(!r.text().contains("m-1"), "no row may come with the refusal");
    // The original system's camelCase name is unknown here too.
    let err = d.get("/v1/renewal/jobs?localConversationId=lc_1").error(400, "invalid_request");
    assert_eq!(err["details"]["field"], "localConversationId");
    assert_eq!(allowed(&err), ["status", "local_conversation_id", "message_id", "limit", "offset"]);
    // The right spelling still filters.
    let page = d.get("/v1/messages?platform=chatgpt&limit=5").data();
    assert_eq!(page["count"], 1, "{page}");
}

#[test]
fn every_route_takes_only_its_own_parameters() {
    let d = daemon();
    for (path, field, want) in [
        ("/v1/renewal/conversations?state=auto", "state", json!(["platform", "status", "limit", "offset"])),
        (
            "/v1/renewal/links?is_active=true",
            "is_active",
            json!([
                "platform",
                "remote_conversation_id",
                "local_conversation_id",
                "client_id",
                "active",
                "limit",
                "offset"
            ]),
        ),
        ("/v1/browser?client=x", "client", json!(["platform", "status"])),
        ("/v1/system?verbose=1", "verbose", json!([])),
        ("/v1/messages/m-1?raw=1", "raw", json!([])),
        ("/healthz?probe", "probe", json!([])),
    ] {
        let err = d.get(path).error(400, "invalid_request");
        assert_eq!(err["details"]["field"], field, "{path}: {err}");
        assert_eq!(err["details"]["allowed"], want, "{path}: {err}");
    }
    // Writes too: a query on a POST is refused before anything changes.
    let err = d.post_empty("/v1/system/pause?force=1").error(400, "invalid_request");
    assert_eq!(err["details"]["field"], "force");
    assert_eq!(d.get("/v1/system").data()["automation_state"], "running");
}

#[test]
fn the_openapi_document_lists_the_query_parameters() {
    let d = daemon();
    let doc = d.get("/v1/openapi.json").json();
    let params = &doc["paths"]["/v1/renewal/jobs"]["get"]["parameters"];
    let names: Vec<&str> = params
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["status", "local_conversation_id", "message_id", "limit", "offset"]);
}
