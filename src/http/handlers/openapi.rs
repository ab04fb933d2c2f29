//! `GET /v1/openapi.json`: an OpenAPI 3.1 document of exactly the routes
//! served, built from the route table — each row's pattern, query
//! parameters and `Io` schemas (`http/schema`). Not enveloped: its
//! consumers expect the bare format. Path parameters carry an `example`
//! taken from the daemon's own data (its newest message, conversation,
//! job, execution and artifact), so a tool that reads the document reaches
//! those routes' real answers, not only their 404s.

use serde_json::{json, Map, Value};

use crate::http::api::{ApiError, ApiRequest, Reply};
use crate::http::ctx::Ctx;
use crate::http::routes::{Route, ROUTES};
use crate::http::schema;
use crate::store::{ConversationFilter, ExecutionFilter, JobFilter, MessageFilter, Page};

/// `/v1/messages/:message_id` → `/v1/messages/{message_id}`, and the
/// parameter names in order.
fn openapi_path(pattern: &str) -> (String, Vec<String>) {
    let mut names = Vec::new();
    let segments: Vec<String> = pattern
        .split('/')
        .map(|seg| {
            let Some(spec) = seg.strip_prefix(':').or_else(|| seg.strip_prefix('*')) else {
                return seg.to_string();
            };
            let (name, suffix) =
                spec.split_once('.').map_or((spec, String::new()), |(n, s)| (n, format!(".{s}")));
            names.push(name.to_string());
            format!("{{{name}}}{suffix}")
        })
        .collect();
    (segments.join("/"), names)
}

/// Example values of path parameters, by name, from the newest rows.
fn examples(ctx: &Ctx) -> Result<Map<String, Value>, ApiError> {
    let page = Page { limit: 50, offset: 0 };
    let mut out = Map::new();
    let one = Page { limit: 1, offset: 0 };
    if let Some(m) = ctx.store.messages(&MessageFilter::default(), one)?.0.first() {
        out.insert("message_id".into(), json!(m.message_id));
    }
    if let Some(c) = ctx.store.conversations(&ConversationFilter::default(), one)?.0.first() {
        out.insert("local_conversation_id".into(), json!(c.local_conversation_id));
    }
    if let Some(j) = ctx.store.jobs(&JobFilter::default(), one)?.0.first() {
        out.insert("job_id".into(), json!(j.job_id));
    }
    let executions = ctx.store.executions(&ExecutionFilter::default(), page)?.0;
    if let Some(e) = executions.first() {
        out.insert("instruction_id".into(), json!(e.instruction_id));
    }
    if let Some(path) = executions.iter().find_map(|e| e.artifact_path.as_deref()) {
        out.insert("path".into(), json!(path.strip_prefix("artifacts/").unwrap_or(path)));
    }
    Ok(out)
}

fn parameters(route: &Route, names: &[String], examples: &Map<String, Value>) -> Vec<Value> {
    let path = names.iter().map(|p| {
        let mut param = json!({ "name": p, "in": "path", "required": true,
                                "schema": { "type": "string", "minLength": 1 } });
        if let Some(example) = examples.get(p.as_str()) {
            param["example"] = example.clone();
        }
        param
    });
    let query = route.query.iter().map(|q| {
        json!({ "name": q, "in": "query", "required": false, "schema": schema::query_param(q, route.io.status) })
    });
    path.chain(query).collect()
}

fn operation(route: &Route, names: &[String], examples: &Map<String, Value>) -> Value {
    let error = json!({ "application/json": { "schema": schema::r("Error") } });
    let mut op = json!({
        "operationId": route.id,
        "summary": route.summary(),
        "tags": [route.id.split('.').next().unwrap_or("api")],
        "parameters": parameters(route, names, examples),
        "responses": {
            "200": { "description": "Success.", "content": (route.io.ok)() },
            "default": { "description": "Error envelope (docs/API.md \"Errors\").", "content": error },
        },
    });
    if let Some(body) = route.io.body {
        // An empty body is read as `{}`: it may be left out unless the
        // schema requires a field.
        let schema = body();
        let required = schema["required"].as_array().is_some_and(|r| !r.is_empty());
        op["requestBody"] =
            json!({ "required": required, "content": { "application/json": { "schema": schema } } });
    }
    if route.open {
        op["security"] = json!([]);
    }
    op
}

pub fn handle_openapi(ctx: &Ctx, _req: &ApiRequest) -> Result<Reply, ApiError> {
    let examples = examples(ctx)?;
    let mut paths = Map::new();
    for route in ROUTES {
        let (path, names) = openapi_path(route.path);
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        entry[route.method.to_ascii_lowercase()] = operation(route, &names, &examples);
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": { "title": "baa-conductor", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Local HTTP API of baa-conductor (see docs/API.md)." },
        "servers": [{ "url": ctx.http_base }],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schema::components(),
        },
    });
    if ctx.config.token.is_some() {
        doc["security"] = json!([{ "bearer": [] }]);
    }
    let body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    Ok(Reply::text("application/json; charset=utf-8", body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_openapi_templates() {
        assert_eq!(
            openapi_path("/v1/messages/:message_id"),
            ("/v1/messages/{message_id}".into(), vec!["message_id".into()])
        );
        assert_eq!(openapi_path("/artifact/msg/:message_id.txt").0, "/artifact/msg/{message_id}.txt");
        assert_eq!(openapi_path("/artifact/*path").0, "/artifact/{path}");
    }
}
