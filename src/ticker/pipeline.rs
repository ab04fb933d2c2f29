//! How the dispatcher walks one scan's due jobs: in chunks, with the store
//! commits of one chunk overlapping the deliveries of another.
//!
//! Why: deliveries go one at a time (the policy leases one request per
//! target), and each chunk needs store commits — its claims before its
//! deliveries, each job's outcome after its own. Waiting for those commits
//! in line took about half of the dispatcher's time while ingest kept the
//! writer busy (docs/BENCHMARKS_RUNTIME.md). So while chunk k is delivered,
//! chunk k+1 is already checked and its claims are queued, and the outcomes
//! are queued as each delivery ends and confirmed later; the dispatcher
//! only waits for a commit when it needs its answer. Each job re-reads its
//! conversation and link just before its delivery (the dispatcher's
//! `refresh`), so a chunk claimed early still delivers to the link as it is.
//!
//! The pipeline knows the dispatcher only through [`Steps`]: it decides the
//! order, the dispatcher does the work.
//!
//! The checks and claims of the next chunk, and the confirmation and
//! logging of the previous chunk's outcomes, run on a short-lived scoped
//! thread (`dispatch-prepare`), so the dispatcher's own thread does little
//! but deliver: deliveries are strictly sequential (one lease per target),
//! and every microsecond between two of them is a microsecond of
//! throughput lost.
//!
//! What holds throughout: a job is delivered only after its claim is
//! committed (a crash leaves it `running` for recovery: at-least-once), and
//! a conversation's job is checked only after every earlier job of that
//! conversation has its outcome committed — a chunk that shares a
//! conversation with a chunk still in flight waits for it.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use parking_lot::Mutex;

use super::job_lines::Tally;
use crate::store::Job;

/// Jobs claimed (and later recorded) per store commit.
pub const CLAIM_BATCH: usize = 32;

/// The work of a run, in the steps the pipeline orders (the dispatcher's
/// steps, docs/RENEWAL.md "The dispatcher"). Each adds the fate of every job
/// it ends to `tally`.
pub(super) trait Steps: Sync {
    /// A job claimed and ready to deliver.
    type Claimed: Send;
    /// A chunk's outcomes queued to the store, to be confirmed.
    type Queued: Send;
    /// Checks a chunk's jobs, claims the ready ones and waits until the
    /// claims are committed; returns the jobs claimed.
    fn prepare(&self, chunk: &[Job], tally: &mut Tally) -> Vec<Self::Claimed>;
    /// Delivers the claimed jobs one after another, queueing each outcome
    /// as its delivery ends.
    fn deliver(&self, claimed: Vec<Self::Claimed>, tally: &mut Tally) -> Self::Queued;
    /// Waits for queued outcomes to be committed, and logs them.
    fn confirm(&self, queued: Self::Queued, tally: &mut Tally);
}

/// Splits the due jobs, in order, into chunks of at most `CLAIM_BATCH` in
/// which no conversation appears twice: a conversation's next job must see
/// its previous one finished (lock released, cooldown and counters set), so
/// it starts a later chunk.
pub fn chunks(jobs: &[Job]) -> Vec<&[Job]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut seen = HashSet::new();
    for (i, job) in jobs.iter().enumerate() {
        if i - start == CLAIM_BATCH || !seen.insert(job.local_conversation_id.as_str()) {
            out.push(&jobs[start..i]);
            start = i;
            seen.clear();
            seen.insert(job.local_conversation_id.as_str());
        }
    }
    if start < jobs.len() {
        out.push(&jobs[start..]);
    }
    out
}

fn conversations(chunk: &[Job]) -> HashSet<&str> {
    chunk.iter().map(|j| j.local_conversation_id.as_str()).collect()
}

fn shares(chunk: &[Job], in_flight: &HashSet<&str>) -> bool {
    chunk.iter().any(|j| in_flight.contains(j.local_conversation_id.as_str()))
}

/// The helper's work for one round: confirm the outcomes of the chunk
/// before the one being delivered, then prepare the next chunk (if it may
/// be prepared early). Confirming first is what lets a chunk that shares a
/// conversation with the one before the current one be prepared here.
struct HelperWork<'j, S: Steps> {
    previous: Option<S::Queued>,
    next: Option<&'j [Job]>,
}

/// What the helper hands back: the next chunk's claimed jobs, if it
/// prepared them, and the fates it counted.
type HelperDone<S> = (Option<Vec<<S as Steps>::Claimed>>, Tally);

fn help<S: Steps>(steps: &S, work: Option<HelperWork<'_, S>>) -> HelperDone<S> {
    let mut tally = Tally::default();
    let Some(HelperWork { previous, next }) = work else { return (None, tally) };
    if let Some(queued) = previous {
        steps.confirm(queued, &mut tally);
    }
    let claimed = next.map(|chunk| steps.prepare(chunk, &mut tally));
    (claimed, tally)
}

/// The helper of one round: a scoped `dispatch-prepare` thread, or — with
/// no thread to spare — the same work already done in line.
enum Helper<'scope, S: Steps> {
    Thread(ScopedJoinHandle<'scope, HelperDone<S>>),
    Done(HelperDone<S>),
}

impl<'scope, S: Steps> Helper<'scope, S> {
    fn start<'env: 'scope, 'j: 'scope>(
        scope: &'scope Scope<'scope, 'env>,
        steps: &'env S,
        work: HelperWork<'j, S>,
    ) -> Self {
        // Shared so that the work is still here if the thread cannot start.
        let work = Arc::new(Mutex::new(Some(work)));
        let theirs = Arc::clone(&work);
        let spawned = std::thread::Builder::new()
            .name("dispatch-prepare".into())
            .spawn_scoped(scope, move || help(steps, theirs.lock().take()));
        match spawned {
            Ok(handle) => Helper::Thread(handle),
            Err(e) => {
                ::log::warn!("dispatcher: cannot start the helper thread ({e}); working in line");
                Helper::Done(help(steps, work.lock().take()))
            }
        }
    }

    fn finish(self) -> HelperDone<S> {
        match self {
            Helper::Thread(handle) => handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Helper::Done(done) => done,
        }
    }
}

/// One run's walk through its chunks.
pub(super) struct Pipeline<'a, S: Steps> {
    steps: &'a S,
    tally: Tally,
    /// The outcomes of the chunk delivered last, not yet confirmed.
    queued: Option<S::Queued>,
}

impl<'a, S: Steps> Pipeline<'a, S> {
    /// Runs every chunk through check → claim → deliver → record, overlapped
    /// as the module documentation describes: while this thread delivers
    /// chunk k, a scoped helper thread confirms chunk k-1's outcomes and
    /// then checks and claims chunk k+1. Returns each job's fate, counted.
    pub fn run(steps: &'a S, jobs: &[Job]) -> Tally {
        let mut p = Pipeline { steps, tally: Tally::default(), queued: None };
        let mut rest = chunks(jobs).into_iter();
        let Some(first) = rest.next() else { return p.tally };
        let mut current = Some((first, p.prepare(first)));
        std::thread::scope(|scope| {
            while let Some((chunk, claimed)) = current.take() {
                let next = rest.next();
                // Prepared early unless it shares a conversation with this chunk.
                let early = next.filter(|n| !shares(n, &conversations(chunk)));
                let work = HelperWork { previous: p.queued.take(), next: early };
                let helper = Helper::start(scope, steps, work);
                p.queued = Some(steps.deliver(claimed, &mut p.tally));
                let (prepared, more) = helper.finish();
                p.tally.add(more);
                current = next.map(|n| (n, prepared.unwrap_or_else(|| p.prepare_after_current(n))));
            }
        });
        p.confirm();
        p.tally
    }

    fn prepare(&mut self, chunk: &[Job]) -> Vec<S::Claimed> {
        self.steps.prepare(chunk, &mut self.tally)
    }

    /// A chunk that shares a conversation with the chunk just delivered:
    /// that chunk's outcomes are committed first.
    fn prepare_after_current(&mut self, chunk: &[Job]) -> Vec<S::Claimed> {
        self.confirm();
        self.prepare(chunk)
    }

    fn confirm(&mut self) {
        if let Some(queued) = self.queued.take() {
            self.steps.confirm(queued, &mut self.tally);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, lc: &str) -> Job {
        Job {
            job_id: id.into(),
            local_conversation_id: lc.into(),
            message_id: id.into(),
            status: crate::store::JobStatus::Pending,
            payload_kind: crate::store::PayloadKind::Text,
            payload: "x".into(),
            target_snapshot: None,
            attempt_count: 0,
            max_attempts: 3,
            next_attempt_at: Some(0),
            last_attempt_at: None,
            last_error: None,
            log_path: None,
            started_at: None,
            finished_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn chunks_never_hold_a_conversation_twice_and_keep_order() {
        let jobs: Vec<Job> = [("a", "1"), ("b", "2"), ("c", "1"), ("d", "3"), ("e", "3")]
            .iter()
            .map(|(i, l)| job(i, l))
            .collect();
        let ids: Vec<Vec<&str>> =
            chunks(&jobs).iter().map(|c| c.iter().map(|j| j.job_id.as_str()).collect()).collect();
        assert_eq!(ids, vec![vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
        let many: Vec<Job> = (0..70).map(|i| job(&i.to_string(), &i.to_string())).collect();
        let sizes: Vec<usize> = chunks(&many).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![CLAIM_BATCH, CLAIM_BATCH, 70 - 2 * CLAIM_BATCH]);
        assert!(chunks(&[]).is_empty());
    }

    #[test]
    fn sharing_is_by_conversation() {
        let a = [job("a", "1"), job("b", "2")];
        let b = [job("c", "3"), job("d", "2")];
        let c = [job("e", "4")];
        assert!(shares(&b, &conversations(&a)));
        assert!(!shares(&c, &conversations(&a)));
    }

    /// Records the order of the steps; each delivered job succeeds.
    #[derive(Default)]
    struct Recorder(parking_lot::Mutex<Vec<String>>);

    fn ids(jobs: &[Job]) -> String {
        jobs.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>().join(",")
    }

    impl Steps for Recorder {
        type Claimed = Job;
        type Queued = Vec<Job>;

        fn prepare(&self, chunk: &[Job], _: &mut Tally) -> Vec<Job> {
            self.0.lock().push(format!("prepare {}", ids(chunk)));
            chunk.to_vec()
        }

        fn deliver(&self, claimed: Vec<Job>, _: &mut Tally) -> Vec<Job> {
            self.0.lock().push(format!("deliver {}", ids(&claimed)));
            claimed
        }

        fn confirm(&self, queued: Vec<Job>, tally: &mut Tally) {
            self.0.lock().push(format!("confirm {}", ids(&queued)));
            for _ in &queued {
                tally.count(super::super::job_lines::Fate::Succeeded);
            }
        }
    }

    #[test]
    fn a_chunk_sharing_a_conversation_waits_for_the_outcomes_before_it() {
        let jobs = [job("a", "1"), job("b", "2"), job("c", "1"), job("d", "3")];
        let steps = Recorder::default();
        let tally = Pipeline::run(&steps, &jobs);
        assert_eq!(tally.succeeded, 4);
        assert_eq!(
            *steps.0.lock(),
            ["prepare a,b", "deliver a,b", "confirm a,b", "prepare c,d", "deliver c,d", "confirm c,d"]
        );
    }

    #[test]
    fn chunks_are_prepared_delivered_and_confirmed_in_order_and_every_job_counted_once() {
        let jobs: Vec<Job> = (0..70).map(|i| job(&i.to_string(), &i.to_string())).collect();
        let steps = Recorder::default();
        let tally = Pipeline::run(&steps, &jobs);
        assert_eq!(tally, Tally { succeeded: 70, ..Tally::default() });
        let events = steps.0.lock().clone();
        let at = |e: &str| events.iter().position(|x| x.starts_with(e)).unwrap_or_else(|| panic!("{e}"));
        let chunks: Vec<String> = chunks(&jobs).iter().map(|c| ids(c)).collect();
        for (k, chunk) in chunks.iter().enumerate() {
            assert!(at(&format!("prepare {chunk}")) < at(&format!("deliver {chunk}")), "{events:?}");
            assert!(at(&format!("deliver {chunk}")) < at(&format!("confirm {chunk}")), "{events:?}");
            // Deliveries go strictly in order.
            if let Some(next) = chunks.get(k + 1) {
                assert!(at(&format!("deliver {chunk}")) < at(&format!("deliver {next}")), "{events:?}");
            }
        }
        assert_eq!(events.len(), 3 * chunks.len());
    }
}
