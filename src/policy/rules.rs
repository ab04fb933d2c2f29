//! The stateless arithmetic of the policy's rules (docs/POLICY.md): backoff
//! growth, the sliding-window rate-limit delay, jitter sampling, window
//! pruning and the ms conversions. These are pure functions of their
//! arguments, kept apart from the [`Controller`](super::Controller) state
//! machine so each formula can be read and tested on its own; the first
//! three are re-exported from `policy` for that reason.

use crate::config;

/// `min(max_ms, base_ms * 2^(failures-1))`, saturating; 0 failures = 0.
pub fn backoff_ms(base_ms: u64, max_ms: u64, failures: u32) -> u64 {
    if failures == 0 {
        return 0;
    }
    let factor = 1u64.checked_shl(failures - 1).unwrap_or(0);
    if factor == 0 {
        return max_ms;
    }
    base_ms.saturating_mul(factor).min(max_ms)
}

/// How long a new admission must wait so that no `window_ms` holds more
/// than `limit` dispatches: 0 while fewer than `limit` remain in the window,
/// else until the `limit`-th most recent charged dispatch leaves it.
/// `dispatches` must be sorted and pruned to `(now - window_ms, ∞)`.
pub fn rate_limit_delay_ms(dispatches: &[i64], now: i64, limit: u32, window_ms: u64) -> u64 {
    let limit = limit.max(1) as usize;
    if dispatches.len() < limit {
        return 0;
    }
    let basis = dispatches[dispatches.len() - limit];
    diff(basis.saturating_add(ms(window_ms)), now)
}

/// normal(mu, sigma) by Box–Muller, rounded and clamped to [min, max].
/// With `max_ms == 0` (jitter off) it is 0 and no random number is drawn;
/// with `sigma_ms == 0` it is `mu` clamped.
pub fn sample_jitter_ms(jitter: &config::Jitter, random: &mut dyn FnMut() -> f64) -> u64 {
    let (lo, hi) = (jitter.min_ms.min(jitter.max_ms), jitter.max_ms);
    if hi == 0 {
        return 0;
    }
    if jitter.sigma_ms == 0 {
        return jitter.mu_ms.clamp(lo, hi);
    }
    let u1 = (1.0 - random()).clamp(f64::MIN_POSITIVE, 1.0); // (0, 1]
    let u2 = random();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let value = jitter.mu_ms as f64 + jitter.sigma_ms as f64 * z;
    if !value.is_finite() {
        return lo;
    }
    value.round().clamp(lo as f64, hi as f64) as u64
}

/// Drops dispatch times at or before `now - window_ms` from a sorted list,
/// and all but the `limit` most recent: the delay depends only on the
/// `limit`-th most recent one, so older entries are dead weight — with a
/// generous limit they made the persisted document grow to megabytes and
/// the writer rewrote it every debounce.
pub(super) fn prune(dispatches: &mut Vec<i64>, now: i64, window_ms: i64, limit: u32) {
    let start = now.saturating_sub(window_ms);
    let stale = dispatches.partition_point(|&t| t <= start);
    let excess = dispatches.len().saturating_sub(limit.max(1) as usize);
    dispatches.drain(..stale.max(excess));
}

pub(super) fn ready_at(admitted_at: i64, delay_ms: u64, jitter_ms: u64) -> i64 {
    admitted_at.saturating_add(ms(delay_ms.saturating_add(jitter_ms)))
}

/// A config duration as a signed timestamp offset.
pub(super) fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `later - earlier` in ms, 0 if negative.
pub(super) fn diff(later: i64, earlier: i64) -> u64 {
    u64::try_from(later.saturating_sub(earlier)).unwrap_or(0)
}
