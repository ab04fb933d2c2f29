//! How the dispatcher walks one scan's due jobs: in chunks, with the store
//! commits of one chunk overlapping the deliveries of another.
//!
//! Why: deliveries go one at a time (the policy leases one request per
//! target), and each chunk needs two store commits — its claims before its
//! deliveries, its outcomes after. Waiting for those commits in line took
//! about half of the dispatcher's time while ingest kept the writer busy
//! (docs/BENCHMARKS_RUNTIME.md). So while chunk k is delivered, chunk k+1
//! is already checked and its claims are queued, and chunk k-1's outcomes
//! are being committed; the dispatcher only waits for a commit when it
//! needs its answer.
//!
//! What stays as before: a job is delivered only after its claim is
//! committed (a crash leaves it `running` for recovery: at-least-once), and
//! a conversation's job is checked only after every earlier job of that
//! conversation has its outcome committed — a chunk that shares a
//! conversation with a chunk still in flight waits for it.

use std::collections::HashSet;

use super::dispatcher::{Claiming, Dispatcher, Recording};
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

/// Runs every chunk through check → claim → deliver → record, overlapped
/// as the module documentation describes. `counts` gets each job's fate.
pub fn run(d: &Dispatcher, ctx: &RunContext, jobs: &[Job], counts: &mut [u64; 4]) {
    let mut rest = chunks(jobs).into_iter();
    let Some(first) = rest.next() else { return };
    // (chunk, its queued claims) and (chunk, its queued outcomes).
    let mut claiming: Option<(&[Job], Claiming)> = Some((first, d.check_and_claim(ctx, first, counts)));
    let mut recording: Option<(&[Job], Recording)> = None;
    while let Some((chunk, claims)) = claiming.take() {
        let claimed = d.claimed(ctx, claims, counts);
        let mut next = rest.next();
        if let Some(n) = next.filter(|n| !shares(n, &conversations(chunk))) {
            if recording.as_ref().is_some_and(|(prev, _)| shares(n, &conversations(prev))) {
                let (_, outcomes) = recording.take().expect("checked above");
                d.recorded(ctx, outcomes, counts);
            }
            claiming = Some((n, d.check_and_claim(ctx, n, counts)));
            next = None;
        }
        let delivered = d.deliver_all(ctx, claimed, counts);
        if let Some((_, outcomes)) = recording.take() {
            d.recorded(ctx, outcomes, counts);
        }
        recording = Some((chunk, d.record(delivered)));
        if let Some(n) = next {
            // It shares a conversation with the chunk just delivered: that
            // chunk's outcomes must be committed before it is checked.
            let (_, outcomes) = recording.take().expect("set above");
            d.recorded(ctx, outcomes, counts);
            claiming = Some((n, d.check_and_claim(ctx, n, counts)));
        }
    }
    if let Some((_, outcomes)) = recording.take() {
        d.recorded(ctx, outcomes, counts);
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
            status: "pending".into(),
            payload_kind: "text".into(),
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
        let jobs: Vec<Job> = [("a", "1"), ("b", "2"), ("c", "1"), ("d", "3"), ("e", "3")].iter().map(|(i, l)| job(i, l)).collect();
        let ids: Vec<Vec<&str>> = chunks(&jobs).iter().map(|c| c.iter().map(|j| j.job_id.as_str()).collect()).collect();
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
