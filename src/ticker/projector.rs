//! `renewal.projector`: turns settled assistant messages of `auto`
//! conversations into renewal jobs. All rules run inside one store-writer
//! transaction (`store::projection::project`); this runner supplies the
//! settings, honours the system state and logs every examined message.

use std::sync::Arc;

use serde_json::json;

use super::log::LogSink;
use super::{RunContext, RunOutcome, RunResult, Runner};
use crate::config::Config;
use crate::store::{AutomationState, CommitHook, ProjectSettings, Projection, ProjectionReport, Store};

pub struct Projector {
    pub store: Store,
    pub config: Arc<Config>,
    /// `PUBLIC_BASE/artifact/msg/`.
    pub link_base: String,
}

/// Messages examined per store transaction.
const CHUNK: usize = 256;

impl Projector {
    fn settings(&self, ctx: &RunContext, max_messages: usize) -> ProjectSettings {
        ProjectSettings {
            now: ctx.now,
            settle_delay_ms: ctx.settle_delay_ms as i64,
            max_messages,
            template: self.config.renewal.template.clone(),
            summary_limit: self.config.renewal.summary_limit,
            max_attempts: self.config.renewal.max_attempts,
            link_base: self.link_base.clone(),
            log_path: Some(ctx.log.path_for(ctx.now).display().to_string()),
        }
    }
}

impl Projector {
    pub const NAME: &'static str = "renewal.projector";
}

impl Runner for Projector {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&mut self, ctx: &RunContext) -> RunOutcome {
        // Paused or draining: nothing is projected and the cursor stays.
        let skip = match ctx.system {
            AutomationState::Running => None,
            AutomationState::Paused => Some(RunResult::SystemPaused),
            AutomationState::Draining => Some(RunResult::SystemDraining),
        };
        if let Some(reason) = skip {
            ctx.log("scan_skipped", reason.as_str(), json!({}));
            return RunOutcome { result: reason, details: json!({}) };
        }
        // Each chunk's lines are logged by the writer right after its commit
        // (`Store::project`), before the dispatcher can claim its jobs.
        let (sink, runner, batch_id) = (ctx.log.clone(), ctx.runner, ctx.batch_id.clone());
        let on_commit: CommitHook<ProjectionReport> =
            Arc::new(move |part: &ProjectionReport| log_outcomes(&sink, runner, &batch_id, part));
        let mut report = ProjectionReport { outcomes: Vec::new(), cursor: None };
        // In chunks, each its own transaction, so a large tick never holds
        // the store writer for long (deliveries' commits interleave).
        while report.outcomes.len() < ctx.max_messages_per_tick {
            let chunk = (ctx.max_messages_per_tick - report.outcomes.len()).min(CHUNK);
            let part = match self.store.project(self.settings(ctx, chunk), on_commit.clone()) {
                Ok(part) => part,
                Err(e) => {
                    ::log::error!("projector: {e}");
                    ctx.log("scan_failed", RunResult::StoreError.as_str(), json!({ "error": e.to_string() }));
                    return RunOutcome {
                        result: RunResult::StoreError,
                        details: json!({ "error": e.to_string() }),
                    };
                }
            };
            let short = part.outcomes.len() < chunk;
            report.outcomes.extend(part.outcomes);
            report.cursor = part.cursor.or(report.cursor);
            if short {
                break;
            }
        }
        let projected = report.outcomes.iter().filter(|o| matches!(o, Projection::Projected { .. })).count();
        let skipped = report.outcomes.len() - projected;
        let details = json!({
            "examined": report.outcomes.len(), "projected": projected, "skipped": skipped,
            "cursor": report.cursor.map(|(seq, id)| json!({ "seq": seq, "message_id": id })),
        });
        // An idle scan is not logged: one line per tick would bury the log.
        if !report.outcomes.is_empty() {
            ctx.log("scan_completed", RunResult::Ok.as_str(), details.clone());
        }
        RunOutcome { result: RunResult::Ok, details }
    }
}

/// The line of every message a projection examined.
fn log_outcomes(sink: &LogSink, runner: &'static str, batch_id: &str, part: &ProjectionReport) {
    for outcome in &part.outcomes {
        match outcome {
            Projection::Skipped { message_id, reason } => {
                sink.run_line(
                    runner,
                    batch_id,
                    "message_skipped",
                    reason.as_str(),
                    json!({ "message_id": message_id }),
                );
            }
            Projection::Projected { message_id, job_id, local_conversation_id } => {
                sink.run_line(runner, batch_id, "job_projected", "job_created", json!({
                    "message_id": message_id, "job_id": job_id, "local_conversation_id": local_conversation_id,
                }));
            }
        }
    }
}
