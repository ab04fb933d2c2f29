//! The self-describing routes: `/v1/openapi.json` lists exactly the routes of
//! `/v1/describe`, `/metrics` is Prometheus text reflecting live state, and
//! the status page is a self-contained HTML page served without the token.

mod support;

use serde_json::json;
use support::{Daemon, DaemonOpts};

#[test]
fn openapi_lists_exactly_the_described_routes() {
    let d = Daemon::start(DaemonOpts::new());
    let r = d.get("/v1/openapi.json");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap_or("").starts_with("application/json"));
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0", "not enveloped");
    let described = d.get("/v1/describe").data()["routes"].as_array().unwrap().clone();
    let mut ops = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops += 1;
            let id = op["operationId"].as_str().unwrap();
            let route =
                described.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("{id} not described"));
            assert_eq!(route["method"].as_str().unwrap().to_ascii_lowercase(), *method, "{id}");
            let params: Vec<&str> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            for p in &params {
                assert!(path.contains(&format!("{{{p}}}")), "{id}: {p} in {path}");
            }
        }
    }
    assert_eq!(ops, described.len(), "one operation per described route");
    assert_eq!(doc["paths"]["/v1/messages/{message_id}"]["get"]["operationId"], "messages.read");
    assert_eq!(doc["paths"]["/artifact/msg/{message_id}.txt"]["get"]["operationId"], "artifact.message");
}

#[test]
fn metrics_reflect_live_state() {
    let d = Daemon::start(DaemonOpts::new());
    let body = json!({"platform":"chatgpt","conversation_id":"c","message_id":"m1","text":"hi"});
    assert_eq!(d.post_json("/v1/messages", &body).status, 200);
    assert_eq!(d.post_json("/v1/system/pause", &json!({})).status, 200);
    let r = d.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap_or("").starts_with("text/plain; version=0.0.4"));
    let text = r.text();
    assert!(text.contains("\nbaa_messages 1\n"), "{text}");
    assert!(text.contains("\nbaa_conversations 1\n"), "{text}");
    assert!(text.contains("baa_renewal_jobs{status=\"pending\"} 0"), "{text}");
    assert!(text.contains("baa_automation_state{state=\"paused\"} 1"), "{text}");
    assert!(text.contains("baa_automation_state{state=\"running\"} 0"), "{text}");
    assert!(text.contains("baa_plugin_clients_connected 0"), "{text}");
    // Every sample line is `name{labels} value` with a numeric value.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
    }
}

#[test]
fn status_page_is_self_contained_and_needs_no_token() {
    let d = Daemon::start(DaemonOpts::new().token("s3cret-token-for-page"));
    let r = d.request("GET", "/", &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = r.header("content-security-policy").unwrap_or("");
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"), "{csp}");
    let html = r.text();
    assert!(html.contains("/v1/system") && html.contains("/v1/browser"), "uses the API");
    for external in ["src=\"http", "href=\"http", "@import", "<link "] {
        assert!(!html.contains(external), "no external assets ({external})");
    }
    assert!(!html.contains("s3cret-token-for-page"));
    // The data behind the page still needs the token.
    assert_eq!(d.request("GET", "/v1/system", &[], None).status, 401);
    // A web origin is refused even for the page.
    assert_eq!(d.request("GET", "/", &[("Origin", "https://evil.example")], None).status, 403);
}
