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
//! conversation and link just before its delivery (`Dispatcher::refresh`),
//! so a chunk claimed early still delivers to the link as it is.
//!
//! The checks and claims of the next chunk, and the confirmation and
//! logging of the previous chunk's outcomes, run on a short-lived scoped
//! thread (`dispatch-prepare`), so the dispatcher's own thread does little
//! but deliver: deliveries are strictly sequential (one lease per target),
//! and every microsecond between two of them is a microsecond of
//! throughput lost.
//!
//! What stays as before: a job is delivered only after its claim is
//! committed (a crash leaves it `running` for recovery: at-least-once), and
//! a conversation's job is checked only after every earlier job of that
//! conversation has its outcome committed — a chunk that shares a
//! conversation with a chunk still in flight waits for it.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;

use super::dispatcher::{Dispatcher, Ready, Recording};
use super::job_lines::Tally;
use super::RunContext;
use crate::store::Job;

/// Jobs claimed (and later recorded) per store commit.
pub const CLAIM_BATCH: usize = 32;

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

/// A chunk's jobs claimed and ready to deliver, with the fates counted
/// while preparing them.
type Prepared = (Vec<Ready>, Tally);

/// Steps 1–7 for a chunk: checks, claims, and the wait for the claims'
/// commit. Runs on the preparing thread while the previous chunk is
/// delivered.
fn prepare(d: &Dispatcher, ctx: &RunContext, chunk: &[Job]) -> Prepared {
    let mut tally = Tally::default();
    let claims = d.check_and_claim(ctx, chunk, &mut tally);
    let ready = d.claimed(ctx, claims, &mut tally);
    (ready, tally)
}

/// The helper's work for one round: confirm and log the outcomes of the
/// chunk before the one being delivered, then prepare the next chunk (if it
/// may be prepared early). Confirming first is what lets a chunk that shares
/// a conversation with the one before the current one be prepared here.
type HelperWork<'a> = (Option<Recording>, Option<&'a [Job]>);

fn help(d: &Dispatcher, ctx: &RunContext, work: Option<HelperWork<'_>>) -> (Option<Vec<Ready>>, Tally) {
    let mut tally = Tally::default();
    let Some((previous, next)) = work else { return (None, tally) };
    if let Some(outcomes) = previous {
        d.recorded(ctx, outcomes, &mut tally);
    }
    let ready = next.map(|n| {
        let (ready, more) = prepare(d, ctx, n);
        tally.add(more);
        ready
    });
    (ready, tally)
}

/// Runs every chunk through check → claim → deliver → record, overlapped
/// as the module documentation describes: while this thread delivers chunk
/// k, a scoped helper thread confirms chunk k-1's outcomes and then checks
/// and claims chunk k+1. `tally` gets each job's fate.
pub fn run(d: &Dispatcher, ctx: &RunContext, jobs: &[Job], tally: &mut Tally) {
    let mut rest = chunks(jobs).into_iter();
    let Some(first) = rest.next() else { return };
    let (ready, more) = prepare(d, ctx, first);
    tally.add(more);
    let mut current: Option<(&[Job], Vec<Ready>)> = Some((first, ready));
    let mut recording: Option<Recording> = None;
    std::thread::scope(|scope| {
        while let Some((chunk, claimed)) = current.take() {
            let next = rest.next();
            // Prepared early unless it shares a conversation with this chunk.
            let early = next.filter(|n| !shares(n, &conversations(chunk)));
            let work = Arc::new(Mutex::new(Some((recording.take(), early))));
            let theirs = Arc::clone(&work);
            let spawned = std::thread::Builder::new()
                .name("dispatch-prepare".into())
                .spawn_scoped(scope, move || help(d, ctx, theirs.lock().take()));
            let helper = match spawned {
                Ok(handle) => Ok(handle),
                // No thread to spare: the same work, here, in line.
                Err(e) => {
                    ::log::warn!("dispatcher: cannot start the helper thread ({e}); working in line");
                    Err(help(d, ctx, work.lock().take()))
                }
            };
            recording = Some(d.deliver_all(ctx, claimed, tally));
            let (ready, more) = match helper {
                Ok(handle) => handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(done) => done,
            };
            tally.add(more);
            current = match (ready, next) {
                (Some(ready), Some(n)) => Some((n, ready)),
                (None, Some(n)) => {
                    // It shares a conversation with the chunk just
                    // delivered: that chunk's outcomes are committed first.
                    if let Some(outcomes) = recording.take() {
                        d.recorded(ctx, outcomes, tally);
                    }
                    let (ready, more) = prepare(d, ctx, n);
                    tally.add(more);
                    Some((n, ready))
                }
                _ => None,
            };
        }
    });
    if let Some(outcomes) = recording.take() {
        d.recorded(ctx, outcomes, tally);
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
}
