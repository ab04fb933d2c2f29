//! The self-describing probes built from the route table and live state:
//! `/v1/openapi.json` (an OpenAPI 3.1 document of exactly the routes
//! served) and `/metrics` (Prometheus text exposition). Neither is
//! enveloped: their consumers expect the bare formats.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use crate::http::api::{ApiError, ApiRequest, Reply};
use crate::http::ctx::Ctx;
use crate::http::routes::{Kind, ROUTES};
use crate::policy::{CircuitState, PolicyView, TargetView};
use crate::store::{AutomationState, JobStatus};
use crate::util::now_ms;

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

fn operation(route: &crate::http::routes::Route, params: &[String]) -> Value {
    let path = params
        .iter()
        .map(|p| json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } }));
    let query = route
        .query
        .iter()
        .map(|q| json!({ "name": q, "in": "query", "required": false, "schema": { "type": "string" } }));
    let parameters: Vec<Value> = path.chain(query).collect();
    let mut op = json!({
        "operationId": route.id,
        "summary": route.summary(),
        "tags": [route.id.split('.').next().unwrap_or("api")],
        "parameters": parameters,
        "responses": {
            "200": { "description": "Success.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Success" } } } },
            "default": { "description": "Error envelope.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        },
    });
    if route.kind == Kind::Write {
        op["requestBody"] = json!({ "required": false, "content": { "application/json": { "schema": { "type": "object" } } } });
    }
    if route.open {
        op["security"] = json!([]);
    }
    op
}

pub fn handle_openapi(ctx: &Ctx, _req: &ApiRequest) -> Result<Reply, ApiError> {
    let mut paths = Map::new();
    for route in ROUTES {
        let (path, params) = openapi_path(route.path);
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        entry[route.method.to_ascii_lowercase()] = operation(route, &params);
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": { "title": "baa-conductor", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Local HTTP API of baa-conductor (see docs/API.md)." },
        "servers": [{ "url": ctx.http_base }],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Success": { "type": "object", "required": ["ok", "request_id", "data"],
                    "properties": { "ok": { "const": true }, "request_id": { "type": "string" }, "data": {} } },
                "Error": { "type": "object", "required": ["ok", "request_id", "error"],
                    "properties": { "ok": { "const": false }, "request_id": { "type": "string" },
                        "error": { "type": "object", "required": ["code", "message", "details"],
                            "properties": { "code": { "type": "string" }, "message": { "type": "string" }, "details": { "type": "object" } } } } },
            },
        },
    });
    if ctx.config.token.is_some() {
        doc["security"] = json!([{ "bearer": [] }]);
    }
    let body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    Ok(Reply::text("application/json; charset=utf-8", body))
}

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn gauge(out: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

pub fn handle_metrics(ctx: &Ctx, _req: &ApiRequest) -> Result<Reply, ApiError> {
    let mut out = String::with_capacity(4096);
    let uptime = (now_ms() - ctx.started_at) as f64 / 1000.0;
    gauge(&mut out, "baa_uptime_seconds", "Seconds since the daemon started.", &[(String::new(), uptime)]);
    store_metrics(ctx, &mut out)?;
    let clients = one(ctx.hub.connected_count() as i64);
    gauge(&mut out, "baa_plugin_clients_connected", "Connected browser plugins.", &clients);
    policy_metrics(&ctx.policy.view(None), &mut out);
    let runners = ctx.timed.runners.lock().clone();
    let _ = writeln!(out, "# HELP baa_timed_job_runs_total Runs started per timed-job runner.\n# TYPE baa_timed_job_runs_total counter");
    for r in &runners {
        let _ = writeln!(out, "baa_timed_job_runs_total{{runner=\"{}\"}} {}", r.name, r.runs as f64);
    }
    Ok(Reply::text("text/plain; version=0.0.4; charset=utf-8", out.into_bytes()))
}

/// One unlabelled sample.
fn one(v: i64) -> Vec<(String, f64)> {
    vec![(String::new(), v as f64)]
}

/// What the store counts, and the system automation state.
fn store_metrics(ctx: &Ctx, out: &mut String) -> Result<(), ApiError> {
    let counts = ctx.store.counts()?;
    let system = ctx.store.system_state()?;
    gauge(out, "baa_messages", "Messages stored.", &one(counts.messages));
    gauge(out, "baa_conversations", "Local conversations stored.", &one(counts.conversations));
    let jobs = [
        (JobStatus::Pending, counts.jobs.pending),
        (JobStatus::Running, counts.jobs.running),
        (JobStatus::Done, counts.jobs.done),
        (JobStatus::Failed, counts.jobs.failed),
    ];
    let samples: Vec<(String, f64)> =
        jobs.iter().map(|(s, n)| (format!("{{status=\"{s}\"}}"), *n as f64)).collect();
    gauge(out, "baa_renewal_jobs", "Renewal jobs by status.", &samples);
    let samples: Vec<(String, f64)> = ctx
        .store
        .execution_counts()?
        .iter()
        .map(|(tool, status, n)| (format!("{{tool=\"{}\",status=\"{status}\"}}", label(tool)), *n as f64))
        .collect();
    let help = "Instruction blocks by tool and status (tool \"\" = unreadable).";
    gauge(out, "baa_executions", help, &samples);
    let states = [AutomationState::Running, AutomationState::Paused, AutomationState::Draining];
    let samples: Vec<(String, f64)> = states
        .iter()
        .map(|s| {
            (format!("{{state=\"{}\"}}", s.as_str()), f64::from(u8::from(system.automation_state == *s)))
        })
        .collect();
    gauge(out, "baa_automation_state", "1 for the current system automation state.", &samples);
    Ok(())
}

/// The request policy's targets and platforms.
fn policy_metrics(view: &PolicyView, out: &mut String) {
    let target_samples = |f: &dyn Fn(&TargetView) -> f64| -> Vec<(String, f64)> {
        view.targets
            .iter()
            .map(|t| {
                (
                    format!("{{client_id=\"{}\",platform=\"{}\"}}", label(&t.client_id), label(&t.platform)),
                    f(t),
                )
            })
            .collect()
    };
    gauge(
        out,
        "baa_policy_circuit_open",
        "1 while a target's circuit is open or half-open.",
        &target_samples(&|t| f64::from(u8::from(t.circuit_state != CircuitState::Closed))),
    );
    gauge(
        out,
        "baa_policy_consecutive_failures",
        "Consecutive failures of a target.",
        &target_samples(&|t| f64::from(t.consecutive_failures)),
    );
    gauge(
        out,
        "baa_policy_waiting",
        "Requests waiting for a target.",
        &target_samples(&|t| t.waiting as f64),
    );
    let samples: Vec<(String, f64)> = view
        .platforms
        .iter()
        .map(|p| (format!("{{platform=\"{}\"}}", label(&p.platform)), p.recent_dispatch_count as f64))
        .collect();
    gauge(out, "baa_policy_recent_dispatches", "Dispatches in the platform's rate window.", &samples);
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
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
