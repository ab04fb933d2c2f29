//! The load loop every mode shares: closed or open-loop pacing over a set
//! of callers, latency percentiles (from the write, and from the scheduled
//! time), and the rate ladder with its "sustained" verdict.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::die;

const SUSTAINED_SHARE: f64 = 0.97;
const SUSTAINED_P99_MS: f64 = 10.0;

#[derive(Clone, Copy, Debug)]
pub(super) enum Pace {
    Closed,
    Rate(f64),
}

/// One caller's way of making one round trip.
pub(super) trait Caller: Send {
    fn call(&mut self) -> Result<(), String>;
}

#[derive(Default)]
pub(super) struct Sample {
    /// Microseconds from write to answer.
    service: Vec<u64>,
    /// Microseconds from the scheduled time to the answer (open loop only).
    sched: Vec<u64>,
    /// Microseconds the send left after its scheduled time.
    lag: Vec<u64>,
    /// Completion offsets from the start, ms.
    done_at_ms: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

pub(super) struct RunResult {
    pace: Pace,
    secs: f64,
    ok: u64,
    errors: u64,
    scheduled: u64,
    service: Vec<u64>,
    sched: Vec<u64>,
    lag: Vec<u64>,
    per_sec: Vec<u64>,
    first_error: Option<String>,
}

pub(super) fn run_load(callers: &mut [Box<dyn Caller>], pace: Pace, secs: f64) -> RunResult {
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + Duration::from_secs_f64(secs);
    let hard_end = end + Duration::from_secs(1);
    let tickets = Arc::new(AtomicU64::new(0));
    let samples: Vec<Sample> = std::thread::scope(|s| {
        let handles: Vec<_> = callers
            .iter_mut()
            .map(|caller| {
                let tickets = tickets.clone();
                s.spawn(move || {
                    let mut sample = Sample::default();
                    loop {
                        let scheduled = match pace {
                            Pace::Closed => {
                                let now = Instant::now();
                                if now < start {
                                    std::thread::sleep(start - now);
                                }
                                if Instant::now() >= end {
                                    break;
                                }
                                None
                            }
                            Pace::Rate(r) => {
                                let i = tickets.fetch_add(1, Ordering::Relaxed);
                                let at = start + Duration::from_secs_f64(i as f64 / r);
                                if at >= end {
                                    break;
                                }
                                let now = Instant::now();
                                if at > now {
                                    std::thread::sleep(at - now);
                                }
                                Some(at)
                            }
                        };
                        if Instant::now() >= hard_end {
                            // Hopelessly behind: the rest counts as not answered.
                            break;
                        }
                        let t0 = Instant::now();
                        let result = caller.call();
                        let t1 = Instant::now();
                        match result {
                            Ok(()) => {
                                sample.service.push((t1 - t0).as_micros() as u64);
                                if let Some(at) = scheduled {
                                    sample.sched.push((t1 - at).as_micros() as u64);
                                    sample.lag.push(t0.saturating_duration_since(at).as_micros() as u64);
                                }
                                sample
                                    .done_at_ms
                                    .push(t1.saturating_duration_since(start).as_millis() as u64);
                            }
                            Err(e) => {
                                sample.errors += 1;
                                if sample.first_error.is_none() {
                                    sample.first_error = Some(e);
                                }
                                // A broken connection would spin: pause a little.
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                    sample
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("caller thread panicked")).collect()
    });
    let scheduled = match pace {
        Pace::Rate(r) => (secs * r).ceil() as u64,
        Pace::Closed => 0,
    };
    let mut result = RunResult {
        pace,
        secs,
        ok: 0,
        errors: 0,
        scheduled,
        service: Vec::new(),
        sched: Vec::new(),
        lag: Vec::new(),
        per_sec: vec![0; secs.ceil() as usize + 1],
        first_error: None,
    };
    for s in samples {
        result.ok += s.service.len() as u64;
        result.errors += s.errors;
        result.service.extend(s.service);
        result.sched.extend(s.sched);
        result.lag.extend(s.lag);
        for ms in s.done_at_ms {
            let i = ((ms / 1000) as usize).min(result.per_sec.len() - 1);
            result.per_sec[i] += 1;
        }
        if result.first_error.is_none() {
            result.first_error = s.first_error;
        }
    }
    result.service.sort_unstable();
    result.sched.sort_unstable();
    result.lag.sort_unstable();
    result
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

impl RunResult {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.secs
    }

    fn sustained(&self) -> bool {
        match self.pace {
            Pace::Closed => true,
            Pace::Rate(_) => {
                self.errors == 0
                    && self.ok as f64 >= SUSTAINED_SHARE * self.scheduled as f64
                    && pct(&self.sched, 99.0) <= SUSTAINED_P99_MS
            }
        }
    }

    fn print(&self, prefix: &str) {
        let p = |k: &str, v: String| println!("{prefix}{k}={v}");
        let offered = match self.pace {
            Pace::Closed => "closed".to_string(),
            Pace::Rate(r) => format!("{r}"),
        };
        p("offered", offered);
        p("ok", self.ok.to_string());
        p("errors", self.errors.to_string());
        p("secs", format!("{:.2}", self.secs));
        p("rate", format!("{:.0}", self.rate()));
        for (k, q) in [("p50_ms", 50.0), ("p90_ms", 90.0), ("p99_ms", 99.0), ("p999_ms", 99.9)] {
            p(k, format!("{:.3}", pct(&self.service, q)));
        }
        p("max_ms", format!("{:.3}", self.service.last().map_or(f64::NAN, |m| *m as f64 / 1000.0)));
        if matches!(self.pace, Pace::Rate(_)) {
            p("sched_p50_ms", format!("{:.3}", pct(&self.sched, 50.0)));
            p("sched_p99_ms", format!("{:.3}", pct(&self.sched, 99.0)));
            p("lag_p99_ms", format!("{:.3}", pct(&self.lag, 99.0)));
            p("sustained", if self.sustained() { "yes" } else { "no" }.to_string());
        }
        let per_sec: Vec<String> = self.per_sec.iter().map(u64::to_string).collect();
        p("per_sec", per_sec.join(","));
        p("first_error", self.first_error.clone().unwrap_or_else(|| "-".into()).replace('\n', " "));
    }
}

pub(super) fn parse_pace(s: &str) -> Vec<Pace> {
    if s == "closed" {
        return vec![Pace::Closed];
    }
    if let Some(r) = s.strip_prefix("rate:") {
        return vec![Pace::Rate(r.parse().unwrap_or_else(|_| die(format!("bad rate {r}"))))];
    }
    if let Some(list) = s.strip_prefix("ladder:") {
        return list
            .split(',')
            .map(|r| Pace::Rate(r.parse().unwrap_or_else(|_| die(format!("bad rate {r}")))))
            .collect();
    }
    die(format!("bad PACE {s}: closed | rate:R | ladder:R1,R2,..."))
}

/// Warm-up, then each pace in turn; a ladder stops after its second
/// unsustained step and reports the highest sustained rate.
pub(super) fn run_paces(callers: &mut [Box<dyn Caller>], paces: &[Pace], secs: f64) {
    let _ = run_load(callers, Pace::Closed, 0.5);
    if paces.len() == 1 {
        run_load(callers, paces[0], secs).print("");
        return;
    }
    let mut best: Option<(f64, f64)> = None;
    let mut misses = 0;
    for (i, pace) in paces.iter().enumerate() {
        // A step that misses is run once more (a burst of other load on the
        // machine should not end the ladder); two missed steps in a row end it.
        let mut r = run_load(callers, *pace, secs);
        if !r.sustained() {
            std::thread::sleep(Duration::from_millis(300));
            r.print(&format!("step{i}.first_try."));
            r = run_load(callers, *pace, secs);
        }
        r.print(&format!("step{i}."));
        if let Pace::Rate(rate) = pace {
            if r.sustained() {
                misses = 0;
                if best.is_none_or(|(b, _)| *rate > b) {
                    best = Some((*rate, pct(&r.service, 99.0)));
                }
            } else {
                misses += 1;
                if misses >= 2 {
                    break;
                }
            }
        }
        // Let queues drain between steps.
        std::thread::sleep(Duration::from_millis(300));
    }
    match best {
        Some((rate, p99)) => {
            println!("max_sustained={rate}");
            println!("max_sustained_p99_ms={p99:.3}");
        }
        None => println!("max_sustained=0"),
    }
}
