//! `/metrics`: the daemon's live state in the Prometheus text exposition
//! format (0.0.4), not enveloped: scrapers expect the bare format.
//! `promtool check metrics` accepts it (`scripts/api_checks`).

use std::fmt::Write as _;

use crate::http::api::{ApiError, ApiRequest, Reply};
use crate::http::ctx::Ctx;
use crate::policy::{CircuitState, PolicyView, TargetView};
use crate::store::{AutomationState, JobStatus};
use crate::util::now_ms;

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn gauge(out: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    family(out, name, "gauge", help, samples);
}

fn counter(out: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    family(out, name, "counter", help, samples);
}

/// One metric family: its HELP and TYPE lines, then a line per sample.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
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
    let runs: Vec<(String, f64)> =
        runners.iter().map(|r| (format!("{{runner=\"{}\"}}", r.name), r.runs as f64)).collect();
    counter(&mut out, "baa_timed_job_runs_total", "Runs started per timed-job runner.", &runs);
    let (hits, shared, renders) = ctx.cache.counts();
    let served = [("cached", hits), ("shared", shared), ("rendered", renders)];
    let served: Vec<(String, f64)> =
        served.iter().map(|(how, n)| (format!("{{served=\"{how}\"}}"), *n as f64)).collect();
    let help = "List pages by how they were served: from the read cache, by waiting for another \
                request's rendering of the same page, or rendered.";
    counter(&mut out, "baa_read_cache_requests_total", help, &served);
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
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
