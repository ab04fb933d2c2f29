//! `store.pruner`: deletes finished jobs past `renewal.retention_days` and,
//! when `messages.retention_days` is set, old messages no job references —
//! in batches of at most 1000 rows per transaction, so the store writer is
//! never held for long and other writes interleave.

use std::sync::Arc;

use serde_json::json;

use super::{RunContext, RunOutcome, RunResult, Runner};
use crate::config::Config;
use crate::store::{PruneBatch, Store};

const BATCH: usize = 1000;
const DAY_MS: i64 = 86_400_000;

pub struct Pruner {
    pub store: Store,
    pub config: Arc<Config>,
}

impl Pruner {
    pub const NAME: &'static str = "store.pruner";
}

impl Runner for Pruner {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&mut self, ctx: &RunContext) -> RunOutcome {
        let batch = PruneBatch {
            jobs_finished_before: ctx.now - self.config.renewal.retention_days as i64 * DAY_MS,
            messages_observed_before: self
                .config
                .messages
                .retention_days
                .map(|d| ctx.now - d as i64 * DAY_MS),
            batch: BATCH,
        };
        let (mut jobs, mut messages) = (0, 0);
        loop {
            match self.store.prune(batch.clone()) {
                Ok(report) => {
                    jobs += report.jobs;
                    messages += report.messages;
                    if ((report.jobs + report.messages) as usize) < BATCH {
                        break;
                    }
                }
                Err(e) => {
                    ::log::error!("pruner: {e}");
                    ctx.log(
                        "prune_failed",
                        RunResult::StoreError.as_str(),
                        json!({ "error": e.to_string() }),
                    );
                    return RunOutcome {
                        result: RunResult::StoreError,
                        details: json!({ "error": e.to_string() }),
                    };
                }
            }
        }
        let details = json!({ "pruned_jobs": jobs, "pruned_messages": messages });
        if jobs > 0 || messages > 0 {
            ctx.log("pruned", RunResult::Ok.as_str(), details.clone());
        }
        RunOutcome { result: RunResult::Ok, details }
    }
}
