//! Tests of the random jitter: off, normal and clamped, and added to leases.

use super::*;

#[test]
fn jitter_is_zero_when_off_and_draws_nothing() {
    let draws = std::cell::Cell::new(0);
    let mut counting = || {
        draws.set(draws.get() + 1);
        0.5
    };
    assert_eq!(sample_jitter_ms(&jitter(0, 0, 0, 0), &mut counting), 0);
    assert_eq!(sample_jitter_ms(&jitter(0, 0, 500, 100), &mut counting), 0);
    assert_eq!(draws.get(), 0);
    // sigma 0: mu, clamped.
    assert_eq!(sample_jitter_ms(&jitter(0, 1_000, 300, 0), &mut counting), 300);
    assert_eq!(sample_jitter_ms(&jitter(0, 200, 300, 0), &mut counting), 200);
    assert_eq!(sample_jitter_ms(&jitter(400, 900, 300, 0), &mut counting), 400);
    assert_eq!(draws.get(), 0);
}

#[test]
fn jitter_is_normal_and_clamped() {
    // Extremes of the uniform inputs stay clamped and finite.
    let j = jitter(100, 900, 500, 200);
    for (u1, u2) in [(0.0, 0.0), (0.999_999_999, 0.0), (0.999_999_999, 0.5), (0.5, 0.25), (0.0, 0.5)] {
        let mut seq = [u1, u2].into_iter();
        let v = sample_jitter_ms(&j, &mut || seq.next().unwrap());
        assert!((100..=900).contains(&v), "{v}");
    }
    // 1 - u1 = 1 → z = 0 → exactly mu.
    let mut seq = [0.0, 0.3].into_iter();
    assert_eq!(sample_jitter_ms(&j, &mut || seq.next().unwrap()), 500);
    // u1 → tiny, u2 = 0 → z large positive → max; u2 = 0.5 → min.
    let mut seq = [0.999_999_999, 0.0].into_iter();
    assert_eq!(sample_jitter_ms(&j, &mut || seq.next().unwrap()), 900);
    let mut seq = [0.999_999_999, 0.5].into_iter();
    assert_eq!(sample_jitter_ms(&j, &mut || seq.next().unwrap()), 100);
    // Distribution: mean ≈ mu, sd ≈ sigma when the clamp is wide.
    let wide = jitter(0, 100_000, 5_000, 1_000);
    let mut rnd = seeded(42);
    let samples: Vec<f64> = (0..20_000).map(|_| sample_jitter_ms(&wide, &mut rnd) as f64).collect();
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    let sd = (samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    assert!((mean - 5_000.0).abs() < 30.0, "mean {mean}");
    assert!((sd - 1_000.0).abs() < 30.0, "sd {sd}");
}

#[test]
fn jitter_is_added_to_the_lease_and_counts_against_max_delay() {
    let mut c = cfg();
    c.jitter = jitter(250, 250, 250, 0);
    let mut ctl = Controller::new(c);
    let t = claude();
    let g = grant(&mut ctl, &t, T0);
    assert_eq!((g.rate_limit_delay_ms, g.jitter_ms, g.ready_at()), (0, 250, T0 + 250));
    ctl.complete(&t, g.lease_id, &Outcome::Success, T0);
    // Jitter alone over max_delay: refused rate_limited, retry_after = the
    // rate-limit delay (0 here), nothing charged.
    assert_eq!(
        ctl.try_admit(&t, "r", T0, 249, None),
        Admission::Refused(Refusal { code: RefusalCode::RateLimited, retry_after_ms: 0 })
    );
    assert_eq!(pv(&ctl, "claude", T0).recent_dispatch_count, 1);
    assert!(matches!(ctl.try_admit(&t, "r", T0, 250, None), Admission::Granted(_)));
}
