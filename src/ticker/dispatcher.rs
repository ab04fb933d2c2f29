//! `renewal.dispatcher`: delivers due renewal jobs into their tabs through
//! the plugin (`proxy_delivery`), one at a time, each under a policy lease
//! and the conversation's execution lock. The conversation and its link are
//! read afresh for every job. Deferrals (paused, busy, policy refusal) move
//! the job without counting an attempt; failures count, back off with
//! jitter, and pause the conversation at the failure threshold. RENEWAL.md
//! "Dispatcher" is the contract, step by step.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{RunContext, RunOutcome, Runner};
use crate::bridge::frames::delivery_verdict;
use crate::bridge::Hub;
use crate::config::Config;
use crate::policy::{AdmitOptions, Outcome, Policy, Target};
use crate::store::{route_tab, AttemptResult, AutomationState, Conversation, FinishAttempt, Job, Link, Store};
use crate::util::{collapse_whitespace, cut_chars, now_ms, random_unit};

/// A rate-limit delay longer than this defers the job instead of waiting.
const MAX_INLINE_DELAY_MS: u64 = 1000;
/// How long the dispatcher queues behind another request on the same target.
const MAX_TARGET_WAIT: Duration = Duration::from_secs(1);

pub struct Dispatcher {
    pub store: Store,
    pub config: Arc<Config>,
    pub hub: Arc<Hub>,
    pub policy: Arc<Policy>,
    /// Whether this run already sent a delivery: the inter-job jitter goes
    /// between two deliveries, not before the first or around deferrals.
    pub sent_in_run: std::cell::Cell<bool>,
    /// The last successful delivery's bookkeeping, sent to the writer but not
    /// yet confirmed. The next job's `start_attempt` is queued right behind
    /// it, so both share one commit; it is confirmed (and logged) then.
    pub pending_finish: std::cell::RefCell<Option<PendingFinish>>,
}

/// A `finish_attempt` on its way to the store.
pub struct PendingFinish {
    answer: crossbeam_channel::Receiver<Result<crate::store::FinishOutcome, crate::store::StoreError>>,
    job_id: String,
    local_conversation_id: String,
    attempt: i64,
}

/// How one job's turn ended, for the run summary.
enum Fate {
    Succeeded,
    Retried,
    Failed,
    Skipped,
}

impl Runner for Dispatcher {
    fn name(&self) -> &'static str {
        "renewal.dispatcher"
    }

    fn run(&mut self, ctx: &RunContext) -> RunOutcome {
        if ctx.system == AutomationState::Paused {
            ctx.log("scan_skipped", "system_paused", json!({}));
            return RunOutcome { result: "system_paused".into(), details: json!({}) };
        }
        let jobs = match self.store.due_jobs(ctx.now, ctx.max_tasks_per_tick) {
            Ok(jobs) => jobs,
            Err(e) => {
                ::log::error!("dispatcher: {e}");
                return RunOutcome { result: "store_error".into(), details: json!({ "error": e.to_string() }) };
            }
        };
        let mut counts = [0u64; 4];
        self.sent_in_run.set(false);
        for job in &jobs {
            if self.pending_finish.borrow().as_ref().is_some_and(|p| p.local_conversation_id == job.local_conversation_id) {
                // This job's conversation must be read after the previous
                // success is committed (its lock released, its cooldown set).
                self.settle_finish(ctx, &mut counts);
            }
            if let Some(fate) = self.dispatch(ctx, job, &mut counts) {
                counts[fate as usize] += 1;
            }
        }
        self.settle_finish(ctx, &mut counts);
        let details = json!({
            "due_jobs": jobs.len(), "successful_jobs": counts[0], "retried_jobs": counts[1],
            "failed_jobs": counts[2], "skipped_jobs": counts[3],
        });
        // An idle scan is not logged: one line per tick would bury the log.
        if !jobs.is_empty() {
            ctx.log("scan_completed", "ok", details.clone());
        }
        RunOutcome { result: "ok".into(), details }
    }
}

impl Dispatcher {
    fn inter_job_pause(&self) {
        let [low, high] = self.config.renewal.inter_job_jitter_ms;
        let ms = low + ((high - low) as f64 * random_unit()) as u64;
        if ms > 0 {
            std::thread::sleep(Duration::from_millis(ms));
        }
    }

    fn log_path(&self, ctx: &RunContext) -> Option<String> {
        Some(ctx.log.path_for(now_ms()).display().to_string())
    }

    /// One job's turn; `None` when its success is still being committed
    /// (counted by `settle_finish`).
    fn dispatch(&self, ctx: &RunContext, job: &Job, counts: &mut [u64; 4]) -> Option<Fate> {
        let log = |stage, result: &str, extra: Value| {
            let mut details = json!({ "job_id": job.job_id, "local_conversation_id": job.local_conversation_id });
            if let (Value::Object(d), Value::Object(e)) = (&mut details, extra) {
                d.extend(e);
            }
            ctx.log(stage, result, details);
        };
        let conv = match self.store.conversation(&job.local_conversation_id) {
            Ok(Some(conv)) => conv,
            Ok(None) => {
                let _ = self.store.fail_job(&job.job_id, "missing_local_conversation", self.log_path(ctx));
                log("job_failed", "missing_local_conversation", json!({ "terminal": true }));
                return Some(Fate::Failed);
            }
            Err(e) => {
                ::log::error!("dispatcher: {e}");
                return Some(Fate::Skipped);
            }
        };
        let recheck = now_ms() + self.config.renewal.effective_recheck_delay_ms(ctx.interval_ms) as i64;
        let deferred = match (conv.automation_status.as_str(), conv.execution_state.as_str()) {
            ("paused", _) => Some("automation_paused"),
            ("manual", _) => Some("automation_manual"),
            (_, "idle") => None,
            _ => Some("execution_busy"),
        };
        if let Some(reason) = deferred {
            return Some(self.defer(ctx, job, recheck, reason, &log));
        }
        match self.prepare(job, &conv) {
            Ok(plan) => self.deliver(ctx, job, &conv, plan, &log, counts),
            Err((error, terminal)) => Some(self.finish_failure(ctx, job, &error, terminal, &log)),
        }
    }

    fn defer(&self, ctx: &RunContext, job: &Job, at: i64, reason: &str, log: &dyn Fn(&'static str, &str, Value)) -> Fate {
        if let Err(e) = self.store.defer_job(&job.job_id, at, self.log_path(ctx)) {
            ::log::error!("dispatcher: cannot defer {}: {e}", job.job_id);
        }
        log("job_deferred", reason, json!({ "next_attempt_at": at }));
        Fate::Skipped
    }

    /// Steps 4–5: the route and the text, or the failure and whether it is
    /// terminal.
    fn prepare<'a>(&self, job: &Job, conv: &'a Conversation) -> Result<Plan<'a>, (String, bool)> {
        let link = conv.active_link.as_ref().ok_or(("missing_active_link".to_string(), false))?;
        let tab_id = route_tab(link).ok_or(("route_unavailable".to_string(), false))?;
        let text = payload_text(job)?;
        Ok(Plan { link, tab_id, text })
    }

    fn deliver(
        &self,
        ctx: &RunContext,
        job: &Job,
        conv: &Conversation,
        plan: Plan<'_>,
        log: &dyn Fn(&'static str, &str, Value),
        counts: &mut [u64; 4],
    ) -> Option<Fate> {
        let platform = plan.link.platform.clone();
        let client = plan.link.client_id.clone().or_else(|| self.hub.chosen_client(Some(&platform), None));
        let Some(client) = client else {
            return Some(self.finish_failure(ctx, job, "no_active_client", false, log));
        };
        if self.sent_in_run.replace(true) {
            self.inter_job_pause();
        }
        let opts = AdmitOptions { max_wait: MAX_TARGET_WAIT, max_delay_ms: MAX_INLINE_DELAY_MS };
        let lease = match self.policy.admit(Target::new(client.clone(), platform.clone()), &job.job_id, opts) {
            Ok(lease) => lease,
            Err(refusal) => {
                let at = now_ms() + refusal.retry_after_ms as i64;
                return Some(self.defer(ctx, job, at, refusal.code.as_str(), log));
            }
        };
        let started = now_ms();
        let started_ok = self.store.start_attempt(&job.job_id, &conv.local_conversation_id, self.log_path(ctx), started);
        // Committed together with the previous success, if one was pending.
        self.settle_finish(ctx, counts);
        match started_ok {
            Ok(true) => {}
            // Someone else took the conversation (or the job) meanwhile; the
            // dropped lease is completed as cancelled.
            Ok(false) => {
                let at = now_ms() + self.config.renewal.effective_recheck_delay_ms(ctx.interval_ms) as i64;
                return Some(self.defer(ctx, job, at, "execution_busy", log));
            }
            Err(e) => {
                ::log::error!("dispatcher: cannot start {}: {e}", job.job_id);
                return Some(Fate::Skipped);
            }
        }
        log("job_attempt_started", "attempt_started", json!({ "attempt": job.attempt_count + 1, "client_id": client, "tab_id": plan.tab_id }));
        lease.sleep_until_ready();
        let result = self.send(job, conv, &plan, &client);
        match result {
            Ok(()) => {
                lease.complete(Outcome::Success);
                self.finish_success(ctx, job, counts);
                None
            }
            Err(reason) => {
                lease.complete(Outcome::failure(reason.clone()));
                Some(self.finish_failure(ctx, job, &reason, false, log))
            }
        }
    }

    /// Step 8: `proxy_delivery` and the plugin's verdict.
    fn send(&self, job: &Job, conv: &Conversation, plan: &Plan<'_>, client: &str) -> Result<(), String> {
        let timeout_ms = self.config.renewal.execution_timeout_ms;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let link = plan.link;
        let organization = link
            .target_payload
            .as_deref()
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
            .and_then(|p| p.get("organizationId").cloned())
            .unwrap_or(Value::Null);
        let pending = self
            .hub
            .request(Some(&link.platform), Some(client), "pd_", |request_id| {
                json!({
                    "type": "proxy_delivery", "request_id": request_id, "platform": link.platform,
                    "tab_id": plan.tab_id, "conversation_id": link.remote_conversation_id,
                    "organization_id": organization, "page_url": link.page_url, "page_title": link.page_title,
                    "message_text": plan.text, "assistant_message_id": job.message_id,
                    "plan_id": format!("renewal_{}_{}", job.message_id, now_ms()),
                    "timeout_ms": timeout_ms, "shell_page": false,
                    "local_conversation_id": conv.local_conversation_id,
                })
                .to_string()
            })
            .map_err(|e| e.code().to_string())?;
        let frame = pending.next(deadline).map_err(|e| e.code().to_string())?;
        delivery_verdict(&frame)
    }

    /// Step 9, sent to the writer without waiting: the next job's start
    /// shares its commit, and `settle_finish` confirms and logs it.
    fn finish_success(&self, ctx: &RunContext, job: &Job, counts: &mut [u64; 4]) {
        self.settle_finish(ctx, counts);
        let finish = self.finish(ctx, job, AttemptResult::Success { summary: self.renewed_summary(job) });
        let answer = self.store.finish_attempt_async(finish);
        *self.pending_finish.borrow_mut() = Some(PendingFinish {
            answer,
            job_id: job.job_id.clone(),
            local_conversation_id: job.local_conversation_id.clone(),
            attempt: job.attempt_count + 1,
        });
    }

    /// Waits for the pending success (if any), logs it and counts it.
    fn settle_finish(&self, ctx: &RunContext, counts: &mut [u64; 4]) {
        let Some(p) = self.pending_finish.borrow_mut().take() else { return };
        let details = |paused: Option<&str>| {
            json!({ "job_id": p.job_id, "local_conversation_id": p.local_conversation_id,
                    "attempt": p.attempt, "paused": paused })
        };
        match p.answer.recv().unwrap_or(Err(crate::store::StoreError::Closed)) {
            Ok(outcome) => {
                self.after_pause(outcome.paused);
                ctx.log("job_completed", "attempt_succeeded", details(outcome.paused));
                counts[Fate::Succeeded as usize] += 1;
            }
            Err(e) => {
                ::log::error!("dispatcher: cannot record success of {}: {e}", p.job_id);
                counts[Fate::Skipped as usize] += 1;
            }
        }
    }

    /// Step 10: count the attempt; retry with backoff, or fail for good.
    fn finish_failure(&self, ctx: &RunContext, job: &Job, error: &str, terminal: bool, log: &dyn Fn(&'static str, &str, Value)) -> Fate {
        let attempt = job.attempt_count + 1;
        let retry_at = now_ms() + self.retry_delay_ms(attempt);
        let result = AttemptResult::Failure { error: error.to_string(), terminal, retry_at };
        match self.store.finish_attempt(self.finish(ctx, job, result)) {
            Ok(outcome) => {
                self.after_pause(outcome.paused);
                if outcome.job_status == "failed" {
                    log("job_failed", error, json!({ "attempt": attempt, "terminal": terminal, "paused": outcome.paused }));
                    Fate::Failed
                } else {
                    log("job_retry_scheduled", error, json!({ "attempt": attempt, "next_attempt_at": retry_at, "paused": outcome.paused }));
                    Fate::Retried
                }
            }
            Err(e) => {
                ::log::error!("dispatcher: cannot record failure of {}: {e}", job.job_id);
                Fate::Skipped
            }
        }
    }

    fn finish(&self, ctx: &RunContext, job: &Job, result: AttemptResult) -> FinishAttempt {
        let log_path = ctx.log.path_for(now_ms()).display().to_string();
        let r = &self.config.renewal;
        FinishAttempt {
            job_id: job.job_id.clone(),
            local_conversation_id: job.local_conversation_id.clone(),
            now: now_ms(),
            result,
            cooldown_ms: r.cooldown_ms as i64,
            failure_pause_threshold: r.failure_pause_threshold,
            repeat_pause_threshold: r.repeat_pause_threshold,
            log_path: Some(log_path),
        }
    }

    fn after_pause(&self, paused: Option<&'static str>) {
        if paused.is_some() {
            self.hub.notify_automation_changed();
        }
    }

    /// `min(max, base * 2^(attempt-1))`, then ± `retry_jitter_ratio`.
    fn retry_delay_ms(&self, attempt: i64) -> i64 {
        let r = &self.config.renewal;
        let exp = (attempt - 1).clamp(0, 40) as u32;
        let base = r.retry_base_delay_ms.saturating_mul(1u64 << exp).min(r.retry_max_delay_ms) as f64;
        let jitter = 1.0 + r.retry_jitter_ratio * (2.0 * random_unit() - 1.0);
        (base * jitter).round().max(0.0) as i64
    }

    /// The renewed assistant content (its `{summary}`), for the
    /// repeated-renewal counter: links and ids must not hide a loop.
    fn renewed_summary(&self, job: &Job) -> String {
        let limit = self.config.renewal.summary_limit;
        match self.store.message(&job.message_id) {
            Ok(Some(m)) => cut_chars(&collapse_whitespace(m.raw_text.as_deref().unwrap_or("")), limit),
            _ => payload_text(job).unwrap_or_default(),
        }
    }
}

struct Plan<'a> {
    link: &'a Link,
    tab_id: i64,
    text: String,
}

/// Step 5: the text to deliver, or a terminal failure.
fn payload_text(job: &Job) -> Result<String, (String, bool)> {
    let text = if job.payload_kind == "text" {
        job.payload.clone()
    } else {
        let value: Value = serde_json::from_str(&job.payload).map_err(|_| ("invalid_payload".to_string(), true))?;
        let obj = value.as_object().ok_or(("invalid_payload".to_string(), true))?;
        obj.get("text").and_then(Value::as_str).unwrap_or("").to_string()
    };
    if text.trim().is_empty() {
        return Err(("missing_payload_text".to_string(), true));
    }
    Ok(text)
}
