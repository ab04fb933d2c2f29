//! The dispatcher's random delays. When a failed attempt is tried again
//! (docs/RENEWAL.md "Retries, backoff and jitter"): exponential backoff from
//! `retry_base_delay_ms`, capped at `retry_max_delay_ms`, spread by ±
//! `retry_jitter_ratio` so that jobs that failed together do not come back
//! together. And the pause between two deliveries, anywhere in
//! `inter_job_jitter_ms`. Pure functions of a uniform draw, so the tests
//! pin each end of each band.

use crate::config::Renewal;

/// `min(max, base * 2^(attempt-1))`, then ± `retry_jitter_ratio`: `unit`
/// (uniform in [0, 1)) picks the point in the jitter band, 0.5 its middle.
pub(super) fn retry_delay_ms(r: &Renewal, attempt: i64, unit: f64) -> i64 {
    let failures = u32::try_from(attempt.max(1)).unwrap_or(u32::MAX);
    let base = crate::policy::backoff_ms(r.retry_base_delay_ms, r.retry_max_delay_ms, failures) as f64;
    let jitter = 1.0 + r.retry_jitter_ratio * (2.0 * unit - 1.0);
    (base * jitter).round().max(0.0) as i64
}

/// The pause between two deliveries: `unit` (uniform in [0, 1)) picks its
/// point in `inter_job_jitter_ms` = `[low, high]`, 0 the low end.
pub(super) fn inter_job_pause_ms(r: &Renewal, unit: f64) -> u64 {
    let [low, high] = r.inter_job_jitter_ms;
    low + ((high - low) as f64 * unit) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renewal(base: u64, max: u64, ratio: f64) -> Renewal {
        Renewal {
            retry_base_delay_ms: base,
            retry_max_delay_ms: max,
            retry_jitter_ratio: ratio,
            ..Default::default()
        }
    }

    #[test]
    fn the_delay_doubles_up_to_the_cap() {
        let r = renewal(1_000, 5_000, 0.0);
        let delays: Vec<i64> = (1..=5).map(|attempt| retry_delay_ms(&r, attempt, 0.9)).collect();
        assert_eq!(delays, [1_000, 2_000, 4_000, 5_000, 5_000]);
        assert_eq!(retry_delay_ms(&r, 0, 0.5), 1_000, "attempt 0 counts as the first");
    }

    #[test]
    fn jitter_spreads_the_delay_over_the_whole_band() {
        let r = renewal(1_000, 1_000, 0.5);
        assert_eq!(retry_delay_ms(&r, 1, 0.0), 500);
        assert_eq!(retry_delay_ms(&r, 1, 0.5), 1_000);
        assert_eq!(retry_delay_ms(&r, 1, 0.75), 1_250);
        assert!((1_499..=1_500).contains(&retry_delay_ms(&r, 1, 0.999_999)));
    }

    #[test]
    fn the_inter_job_pause_spreads_over_its_whole_range() {
        let r = Renewal { inter_job_jitter_ms: [200, 1_000], ..Default::default() };
        assert_eq!(inter_job_pause_ms(&r, 0.0), 200);
        assert_eq!(inter_job_pause_ms(&r, 0.25), 400);
        assert_eq!(inter_job_pause_ms(&r, 0.5), 600);
        assert!((999..=1_000).contains(&inter_job_pause_ms(&r, 0.999_999)));
        let fixed = Renewal { inter_job_jitter_ms: [250, 250], ..Default::default() };
        assert_eq!(inter_job_pause_ms(&fixed, 0.7), 250);
    }
}
