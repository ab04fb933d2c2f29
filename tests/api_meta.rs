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
    // A list page twice with no commit between: rendered once, then cached.
    let cache = |text: &str, served: &str| -> u64 {
        let name = format!("baa_read_cache_requests_total{{served=\"{served}\"}} ");
        let line = text.lines().find(|l| l.starts_with(&name)).unwrap_or_else(|| panic!("{name}: {text}"));
        line[name.len()..].parse().unwrap()
    };
    let (cached, rendered) = (cache(&text, "cached"), cache(&text, "rendered"));
    assert_eq!(d.get("/v1/renewal/jobs?limit=7").status, 200);
    assert_eq!(d.get("/v1/renewal/jobs?limit=7").status, 200);
    let text = d.get("/metrics").text();
    assert_eq!((cache(&text, "cached"), cache(&text, "rendered")), (cached + 1, rendered + 1), "{text}");
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

/// Every body and answer is described (issue 18: schemathesis must find a
/// schema-valid request accepted and an invalid one refused): write routes
/// have a body schema, required fields make the body required, each 200
/// names its media type, and query filters carry the daemon's bounds.
#[test]
fn openapi_describes_bodies_answers_and_parameters() {
    let d = Daemon::start(DaemonOpts::new());
    let doc = d.get("/v1/openapi.json").json();
    let described = d.get("/v1/describe").data()["routes"].as_array().unwrap().clone();
    let op = |method: &str, path: &str| doc["paths"][path][method].clone();
    for r in &described {
        let path = r["path"].as_str().unwrap().replace(":message_id.txt", "{message_id}.txt");
        let path = path.split('/').map(|s| match s.strip_prefix([':', '*']) {
            Some(name) => format!("{{{name}}}"),
            None => s.to_string(),
        });
        let path: Vec<String> = path.collect();
        let o = op(&r["method"].as_str().unwrap().to_ascii_lowercase(), &path.join("/"));
        let id = r["id"].as_str().unwrap();
        assert!(o["responses"]["200"]["content"].as_object().is_some_and(|c| !c.is_empty()), "{id}");
        assert_eq!(
            o["requestBody"].is_object(),
            r["kind"] == "write",
            "{id} has a body schema iff it writes"
        );
    }
    let ingest = op("post", "/v1/messages")["requestBody"].clone();
    assert_eq!(ingest["required"], true);
    let schema = &ingest["content"]["application/json"]["schema"];
    assert_eq!(schema["required"], json!(["platform", "conversation_id", "message_id", "text"]));
    assert_eq!(schema["properties"]["platform"]["pattern"], "^[a-z0-9_-]{1,32}$");
    assert_eq!(op("post", "/v1/system/pause")["requestBody"]["required"], false);
    assert_eq!(
        op("post", "/v1/system/backup")["requestBody"]["content"]["application/json"]["schema"]
            ["maxProperties"],
        0
    );
    let jobs = op("get", "/v1/renewal/jobs")["parameters"].as_array().unwrap().clone();
    let status = jobs.iter().find(|p| p["name"] == "status").unwrap();
    assert_eq!(status["schema"]["enum"], json!(["pending", "running", "done", "failed"]));
    let limit = jobs.iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!(
        (limit["schema"]["minimum"].clone(), limit["schema"]["maximum"].clone()),
        (json!(1), json!(500))
    );
    assert!(op("get", "/metrics")["responses"]["200"]["content"]["text/plain"].is_object());
    assert!(op("get", "/")["responses"]["200"]["content"]["text/html"].is_object());
    assert_eq!(doc["components"]["schemas"]["Job"]["properties"]["status"]["enum"], status["schema"]["enum"]);
}

/// Path parameters carry an example from the daemon's own data, so a tool
/// reading the document reaches the routes' real answers.
#[test]
fn openapi_path_examples_are_live_ids() {
    let d = Daemon::start(DaemonOpts::new());
    let example =
        |doc: &serde_json::Value, path: &str| doc["paths"][path]["get"]["parameters"][0]["example"].clone();
    let doc = d.get("/v1/openapi.json").json();
    assert!(example(&doc, "/v1/messages/{message_id}").is_null(), "no data, no example");
    let body =
        json!({"platform": "chatgpt", "conversation_id": "c", "message_id": "m-example", "text": "hi"});
    let ingested = d.post_json("/v1/messages", &body).data();
    let doc = d.get("/v1/openapi.json").json();
    assert_eq!(example(&doc, "/v1/messages/{message_id}"), "m-example");
    assert_eq!(example(&doc, "/artifact/msg/{message_id}.txt"), "m-example");
    let lc = ingested["local_conversation_id"].clone();
    assert!(lc.is_string());
    assert_eq!(example(&doc, "/v1/renewal/conversations/{local_conversation_id}"), lc);
    let path = format!("/v1/messages/{}", example(&doc, "/v1/messages/{message_id}").as_str().unwrap());
    assert_eq!(d.get(&path).status, 200, "the example is reached");
    // A body the document allows with a zero fraction (`17.0` is an integer
    // in JSON Schema) is accepted.
    let body = json!({"platform": "chatgpt", "conversation_id": "c", "message_id": "m-2", "text": "hi", "tab_id": 17.0});
    assert_eq!(d.post_json("/v1/messages", &body).data()["message"]["tab_id"], 17);
}
