//! `renewal.dispatcher`: delivers due renewal jobs into their tabs through
//! the plugin (`proxy_delivery`), one at a time, each under a policy lease
//! and the conversation's execution lock. Deferrals (paused, busy, policy
//! refusal) move the job without counting an attempt; failures count, back
//! off with jitter, and pause the conversation at the failure threshold.
//! docs/RENEWAL.md "The dispatcher" is the contract, step by step.
//!
//! Jobs go in chunks of up to `CLAIM_BATCH`, so the store writer commits a
//! chunk's claims together instead of one by one: (1) each job's
//! conversation and link are read afresh and checked; (2) the ready ones are
//! claimed — `running`, conversation locked — in one commit; (3) each in
//! turn is read once more (a pause or a moved link since the claim counts),
//! leased and delivered (a policy refusal puts its claim back, without
//! counting an attempt), and its outcome queued to the writer as soon as
//! the delivery ends; (4) the outcomes are confirmed and logged. Deliveries
//! happen strictly one after another, after their claim is durable, so a
//! crash leaves them `running` for the recovery delay (at-least-once).
//! `pipeline` decides the order of these steps across chunks, so that one
//! chunk's commits overlap another's deliveries.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::delivery::{payload_text, prepare, route, Ready, SendFailure};
use super::job_lines::{log_job, log_outcome, Fate, Tally};
use super::pipeline::{Pipeline, Steps};
use super::reasons::{Deferral, Failure};
use super::retry::{inter_job_pause_ms, retry_delay_ms};
use super::{RunContext, RunOutcome, RunResult, Runner};
use crate::bridge::{Hub, RequestError};
use crate::config::Config;
use crate::policy::{AdmitOptions, Lease, Outcome, Policy, Target};
use crossbeam_channel::Receiver;

use crate::store::{
    target_snapshot, AttemptResult, AutomationState, ExecutionState, FinishAttempt, FinishOutcome, Job,
    PauseReason, Store, StoreError,
};
use crate::util::{nap_until, now_ms, random_unit, summary};

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
    pub sent_in_run: std::sync::atomic::AtomicBool,
}

/// A delivered job and the outcome to record.
struct Delivered {
    ready: Ready,
    finish: FinishAttempt,
}

/// A chunk's claims, queued to the writer, with the answers to come.
struct Claiming {
    items: Vec<(Ready, Receiver<Result<bool, StoreError>>)>,
}

/// A chunk's outcomes, queued to the writer, with the answers to come.
pub(super) struct Recording {
    items: Vec<(Delivered, Receiver<Result<FinishOutcome, StoreError>>)>,
}

/// One run of the dispatcher, as the pipeline drives it.
struct Run<'a> {
    d: &'a Dispatcher,
    ctx: &'a RunContext,
}

impl Steps for Run<'_> {
    type Claimed = Ready;
    type Queued = Recording;

    /// Steps 1–7.
    fn prepare(&self, chunk: &[Job], tally: &mut Tally) -> Vec<Ready> {
        let claims = self.d.check_and_claim(self.ctx, chunk, tally);
        self.d.claimed(self.ctx, claims, tally)
    }

    /// Steps 8–10 (each outcome queued to the store).
    fn deliver(&self, claimed: Vec<Ready>, tally: &mut Tally) -> Recording {
        self.d.deliver_all(self.ctx, claimed, tally)
    }

    /// Steps 11–13, confirmed.
    fn confirm(&self, queued: Recording, tally: &mut Tally) {
        self.d.recorded(self.ctx, queued, tally)
    }
}

impl Dispatcher {
    pub const NAME: &'static str = "renewal.dispatcher";
}

impl Runner for Dispatcher {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&mut self, ctx: &RunContext) -> RunOutcome {
        if ctx.system == AutomationState::Paused {
            ctx.log("scan_skipped", RunResult::SystemPaused.as_str(), json!({}));
            return RunOutcome { result: RunResult::SystemPaused, details: json!({}) };
        }
        let jobs = match self.store.due_jobs(ctx.now, ctx.max_tasks_per_tick) {
            Ok(jobs) => jobs,
            Err(e) => {
                ::log::error!("dispatcher: {e}");
                return RunOutcome {
                    result: RunResult::StoreError,
                    details: json!({ "error": e.to_string() }),
                };
            }
        };
        self.sent_in_run.store(false, std::sync::atomic::Ordering::Relaxed);
        let tally = Pipeline::run(&Run { d: self, ctx }, &jobs);
        let details = json!({
            "due_jobs": jobs.len(), "successful_jobs": tally.succeeded, "retried_jobs": tally.retried,
            "failed_jobs": tally.failed, "skipped_jobs": tally.skipped,
        });
        // An idle scan is not logged: one line per tick would bury the log.
        if !jobs.is_empty() {
            ctx.log("scan_completed", RunResult::Ok.as_str(), details.clone());
        }
        RunOutcome { result: RunResult::Ok, details }
    }
}

impl Dispatcher {
    /// Steps 1–6 for each job of a chunk, then step 7's claims for the
    /// ready ones, queued at once so the writer commits them together.
    fn check_and_claim(&self, ctx: &RunContext, chunk: &[Job], tally: &mut Tally) -> Claiming {
        let mut ready = Vec::new();
        for job in chunk {
            // Once the daemon stops, the rest of the scan is left as it is
            // (pending, untouched): checking it would fail jobs for the
            // plugins that are about to disconnect.
            if self.stopping(ctx) {
                tally.count(Fate::Skipped);
                continue;
            }
            match self.check(ctx, job) {
                Ok(r) => ready.push(r),
                Err(fate) => tally.count(fate),
            }
        }
        let now = now_ms();
        let items = ready
            .into_iter()
            .map(|r| {
                let answer = self.store.start_attempt_async(
                    &r.job.job_id,
                    &r.conv.local_conversation_id,
                    self.log_path(ctx),
                    Some(target_snapshot(&r.link)),
                    now,
                );
                (r, answer)
            })
            .collect();
        Claiming { items }
    }

    /// Why a claim found its conversation no longer `auto` and idle.
    fn lost_claim_reason(&self, job: &Job) -> Deferral {
        let conv = self.store.conversation(&job.local_conversation_id);
        conv.ok().flatten().as_ref().and_then(Deferral::stopped).unwrap_or(Deferral::ExecutionBusy)
    }

    /// Steps 8–10 for each claimed job of a chunk, in order. Each
    /// outcome is queued to the writer as soon as its delivery ends, not
    /// with the chunk's: a conversation's cooldown and counters must be in
    /// the store before its assistant answers the renewal, or the projector
    /// turns that answer into a job the cooldown should have held back.
    /// The answers are confirmed later (`recorded`), so the writer still
    /// commits while the next job is delivered.
    fn deliver_all(&self, ctx: &RunContext, claimed: Vec<Ready>, tally: &mut Tally) -> Recording {
        let mut items = Vec::with_capacity(claimed.len());
        for r in claimed {
            match self.deliver(ctx, r) {
                Ok(d) => {
                    let answer = self.store.finish_attempt_async(d.finish.clone());
                    items.push((d, answer));
                }
                Err(fate) => tally.count(fate),
            }
        }
        Recording { items }
    }

    /// Step 8: steps 2, 4 and 6 again on a fresh read, right before the delivery: a
    /// chunk's jobs are checked and claimed together (pipeline.rs), and a
    /// conversation paused, switched to manual or moved to another tab or
    /// client meanwhile must be seen (docs/RENEWAL.md: the conversation and its
    /// link are read afresh for every job). The claim holds the
    /// conversation's lock, so only its status and its link can change.
    fn refresh(&self, ctx: &RunContext, mut r: Ready) -> Result<Ready, Fate> {
        let conv = match self.store.conversation(&r.job.local_conversation_id) {
            Ok(Some(conv)) => conv,
            // Conversations are never deleted; a failed read keeps the
            // copy checked a moment ago.
            Ok(None) => return Ok(r),
            Err(e) => {
                ::log::error!("dispatcher: cannot re-read {}: {e}", r.job.local_conversation_id);
                return Ok(r);
            }
        };
        if let Some(reason) = Deferral::stopped(&conv) {
            return Err(self.release(ctx, &r.job, self.recheck_at(ctx), reason));
        }
        // Step 5 depends on the job alone, which is not read again: its
        // text stands as checked.
        let (link, route) = match route(&conv) {
            Ok(plan) => plan,
            Err(failure) => return Err(self.finish_failure(ctx, &r.job, failure)),
        };
        if link.link_id != r.link.link_id || link.client_id != r.link.client_id {
            let client =
                link.client_id.clone().or_else(|| self.hub.chosen_client(Some(&link.platform), None));
            let Some(client) = client else {
                if self.stopping(ctx) {
                    return Err(self.release(ctx, &r.job, now_ms(), Deferral::ShuttingDown));
                }
                return Err(self.finish_failure(ctx, &r.job, Failure::NoActiveClient));
            };
            r.client = client;
        }
        (r.conv, r.link, r.route) = (conv, link, route);
        Ok(r)
    }

    /// The random pause between two deliveries, in naps that end it when
    /// the daemon begins to stop (it may last seconds).
    fn inter_job_pause(&self, ctx: &RunContext) {
        let ms = inter_job_pause_ms(&self.config.renewal, random_unit());
        let until = std::time::Instant::now() + Duration::from_millis(ms);
        // Stopped early: the caller looks at `stopping` next.
        let _ = nap_until(until, || self.stopping(ctx).then_some(()));
    }

    fn log_path(&self, ctx: &RunContext) -> Option<String> {
        Some(ctx.log.path_for(now_ms()).display().to_string())
    }

    fn recheck_at(&self, ctx: &RunContext) -> i64 {
        now_ms() + self.config.renewal.effective_recheck_delay_ms(ctx.interval_ms) as i64
    }

    /// Steps 1–6, on a fresh read of the
    /// conversation and its link: the job is ready, or its turn is over.
    fn check(&self, ctx: &RunContext, job: &Job) -> Result<Ready, Fate> {
        let conv = match self.store.conversation(&job.local_conversation_id) {
            Ok(Some(conv)) => conv,
            Ok(None) => {
                let reason = Failure::MissingLocalConversation;
                let _ = self.store.fail_job(&job.job_id, reason.as_str(), self.log_path(ctx));
                log_job(ctx, job, "job_failed", reason.as_str(), json!({ "terminal": reason.is_terminal() }));
                return Err(Fate::Failed);
            }
            Err(e) => {
                ::log::error!("dispatcher: {e}");
                return Err(Fate::Skipped);
            }
        };
        let busy = conv.execution_state != ExecutionState::Idle;
        let deferred = Deferral::stopped(&conv).or(busy.then_some(Deferral::ExecutionBusy));
        if let Some(reason) = deferred {
            return Err(self.defer(ctx, job, self.recheck_at(ctx), reason));
        }
        let (link, route, text) = match prepare(job, &conv) {
            Ok(plan) => plan,
            Err(failure) => return Err(self.finish_failure(ctx, job, failure)),
        };
        let client = link.client_id.clone().or_else(|| self.hub.chosen_client(Some(&link.platform), None));
        let Some(client) = client else {
            // The stop may have begun since the scan looked (the plugins
            // leave as it proceeds): the job is left as it is, not failed.
            if self.stopping(ctx) {
                return Err(Fate::Skipped);
            }
            return Err(self.finish_failure(ctx, job, Failure::NoActiveClient));
        };
        let summary = self.renewed_summary(job);
        Ok(Ready { job: job.clone(), conv, link, route, text, client, summary })
    }

    /// Like `defer`, for a job already claimed (its conversation locked):
    /// the claim is put back, due at `at`, no attempt counted.
    fn release(&self, ctx: &RunContext, job: &Job, at: i64, reason: Deferral) -> Fate {
        if let Err(e) = self.store.release_claim(job, at, self.log_path(ctx)) {
            ::log::error!("dispatcher: cannot release {}: {e}", job.job_id);
        }
        log_job(ctx, job, "job_deferred", reason.as_str(), json!({ "next_attempt_at": at }));
        Fate::Skipped
    }

    fn defer(&self, ctx: &RunContext, job: &Job, at: i64, reason: Deferral) -> Fate {
        if let Err(e) = self.store.defer_job(&job.job_id, at, self.log_path(ctx)) {
            ::log::error!("dispatcher: cannot defer {}: {e}", job.job_id);
        }
        log_job(ctx, job, "job_deferred", reason.as_str(), json!({ "next_attempt_at": at }));
        Fate::Skipped
    }

    /// The end of step 7: waits for a chunk's claims to be committed.
    /// Returns the jobs actually claimed.
    fn claimed(&self, ctx: &RunContext, claims: Claiming, tally: &mut Tally) -> Vec<Ready> {
        let mut claimed = Vec::with_capacity(claims.items.len());
        for (r, answer) in claims.items {
            match answer.recv().unwrap_or(Err(StoreError::Closed)) {
                Ok(true) => claimed.push(r),
                // The conversation was paused, switched or taken (or the
                // job cancelled) between the check and the claim.
                Ok(false) => {
                    let reason = self.lost_claim_reason(&r.job);
                    tally.count(self.defer(ctx, &r.job, self.recheck_at(ctx), reason))
                }
                Err(e) => {
                    ::log::error!("dispatcher: cannot start {}: {e}", r.job.job_id);
                    tally.count(Fate::Skipped);
                }
            }
        }
        claimed
    }

    /// Steps 8–10 for one claimed job: the fresh read (`refresh`), the
    /// lease and its delay, the delivery, the lease's outcome. A refusal,
    /// a pause meanwhile or a stop puts the claim back (a deferral).
    fn deliver(&self, ctx: &RunContext, r: Ready) -> Result<Delivered, Fate> {
        if self.sent_in_run.load(std::sync::atomic::Ordering::Relaxed) {
            self.inter_job_pause(ctx);
        }
        if self.stopping(ctx) {
            return Err(self.release(ctx, &r.job, now_ms(), Deferral::ShuttingDown));
        }
        // After the pause, which may last seconds (`inter_job_jitter_ms`).
        let r = self.refresh(ctx, r)?;
        let lease = self.lease(ctx, &r)?;
        let attempt = r.job.attempt_count + 1;
        log_job(
            ctx,
            &r.job,
            "job_attempt_started",
            "attempt_started",
            json!({ "attempt": attempt, "client_id": r.client, "tab_id": r.route.tab_id }),
        );
        // The pause goes between two deliveries, not around deferrals.
        self.sent_in_run.store(true, std::sync::atomic::Ordering::Relaxed);
        let sent = r.send(&self.hub, self.config.renewal.execution_timeout_ms);
        let result = self.settle(ctx, &r, lease, sent, attempt)?;
        let mut finish = self.finish(ctx, &r.job, result);
        // The link may have moved since the claim (`refresh`): the job shows
        // where its text actually went.
        finish.target_snapshot = Some(target_snapshot(&r.link));
        Ok(Delivered { ready: r, finish })
    }

    /// Step 9's lease for a claimed job, its delay waited out; a refusal
    /// or a stop or pause during the wait puts the claim back.
    fn lease(&self, ctx: &RunContext, r: &Ready) -> Result<Lease, Fate> {
        let opts = AdmitOptions {
            max_wait: MAX_TARGET_WAIT,
            max_delay_ms: MAX_INLINE_DELAY_MS,
            one_deadline: false,
        };
        let target = Target::new(r.client.clone(), r.link.platform.clone());
        let lease = self.policy.admit(target, &r.job.job_id, opts).map_err(|refusal| {
            let at = now_ms() + refusal.retry_after_ms as i64;
            self.release(ctx, &r.job, at, Deferral::Refused(refusal.code))
        })?;
        if let Err(fate) = self.wait_out(ctx, r, &lease) {
            lease.complete(Outcome::Cancelled);
            return Err(fate);
        }
        Ok(lease)
    }

    /// Steps 11–12: the attempt's result, and the lease's outcome (step 13).
    fn settle(
        &self,
        ctx: &RunContext,
        r: &Ready,
        lease: Lease,
        sent: Result<(), SendFailure>,
        attempt: i64,
    ) -> Result<AttemptResult, Fate> {
        match sent {
            Ok(()) => {
                lease.complete(Outcome::Success);
                Ok(AttemptResult::Success { summary: r.summary.clone() })
            }
            Err(SendFailure { reason: Failure::Request(RequestError::ShuttingDown), sent }) => {
                // The daemon is stopping: not the target's failure nor a
                // counted attempt; the job goes back to pending. A frame
                // that reached the plugin may have been delivered, so it
                // is due again only after the recovery delay, as after a
                // crash (at least once, with that delay as the guard).
                lease.complete(Outcome::Cancelled);
                let after = if sent {
                    self.config.renewal.effective_recovery_delay_ms(ctx.interval_ms) as i64
                } else {
                    0
                };
                Err(self.release(ctx, &r.job, now_ms() + after, Deferral::ShuttingDown))
            }
            Err(SendFailure { reason, .. }) => {
                lease.complete(Outcome::failure(reason.as_str().to_string()));
                Ok(AttemptResult::Failure {
                    error: reason.as_str().to_string(),
                    terminal: reason.is_terminal(),
                    retry_at: now_ms() + self.retry_delay_ms(attempt),
                })
            }
        }
    }

    /// The daemon is stopping (the ticker was told, or the bridge is
    /// closing): deliveries in flight finish, no new one starts.
    fn stopping(&self, ctx: &RunContext) -> bool {
        ctx.stopping() || self.hub.is_closing()
    }

    /// Waits out the lease's delay (rate limit and jitter, which has no
    /// upper bound here) in short naps that watch for a stop — also when
    /// there is no delay: the admission itself may have waited (up to 1 s
    /// queued behind another request) while the stop began. After a wait,
    /// the conversation's status is read again, so a pause meanwhile is
    /// seen. (A link moved during the wait is not followed: the lease is
    /// for the link's client; the next job of the conversation uses the
    /// new link.)
    fn wait_out(&self, ctx: &RunContext, r: &Ready, lease: &Lease) -> Result<(), Fate> {
        let waits = lease.remaining_delay_ms() > 0;
        if nap_until(lease.ready_instant(), || self.stopping(ctx).then_some(())).is_err() {
            return Err(self.release(ctx, &r.job, now_ms(), Deferral::ShuttingDown));
        }
        if !waits {
            return Ok(());
        }
        let conv = self.store.conversation(&r.job.local_conversation_id);
        match conv.ok().flatten().as_ref().and_then(Deferral::stopped) {
            Some(reason) => Err(self.release(ctx, &r.job, self.recheck_at(ctx), reason)),
            None => Ok(()),
        }
    }

    /// Steps 11–13 for a chunk: each outcome confirmed and logged.
    fn recorded(&self, ctx: &RunContext, outcomes: Recording, tally: &mut Tally) {
        for (d, answer) in outcomes.items {
            let job = &d.ready.job;
            let fate = match answer.recv().unwrap_or(Err(StoreError::Closed)) {
                Ok(outcome) => {
                    self.after_pause(outcome.paused);
                    log_outcome(ctx, job, &d.finish.result, &outcome)
                }
                Err(e) => {
                    ::log::error!("dispatcher: cannot record the outcome of {}: {e}", job.job_id);
                    Fate::Skipped
                }
            };
            tally.count(fate);
        }
    }

    /// Step 12 for a job that failed before any delivery (no route, no
    /// client, bad payload): count the attempt; retry with backoff, or fail
    /// for good.
    fn finish_failure(&self, ctx: &RunContext, job: &Job, failure: Failure) -> Fate {
        let attempt = job.attempt_count + 1;
        let result = AttemptResult::Failure {
            error: failure.as_str().to_string(),
            terminal: failure.is_terminal(),
            retry_at: now_ms() + self.retry_delay_ms(attempt),
        };
        let finish = self.finish(ctx, job, result);
        match self.store.finish_attempt(finish.clone()) {
            Ok(outcome) => {
                self.after_pause(outcome.paused);
                log_outcome(ctx, job, &finish.result, &outcome)
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
            target_snapshot: None,
        }
    }

    fn after_pause(&self, paused: Option<PauseReason>) {
        if paused.is_some() {
            self.hub.notify_automation_changed();
        }
    }

    fn retry_delay_ms(&self, attempt: i64) -> i64 {
        retry_delay_ms(&self.config.renewal, attempt, random_unit())
    }

    /// The renewed assistant content (its `{summary}`), for the
    /// repeated-renewal counter: links and ids must not hide a loop.
    fn renewed_summary(&self, job: &Job) -> String {
        let limit = self.config.renewal.summary_limit;
        match self.store.message(&job.message_id) {
            Ok(Some(m)) => summary(m.raw_text.as_deref().unwrap_or(""), limit),
            _ => payload_text(job).unwrap_or_default(),
        }
    }
}
