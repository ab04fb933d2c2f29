//! splitmix64, seeded: the benchmark tools' one source of reproducible
//! randomness (ids, picks, ranges, the corpus's Zipf draws), so a fill
//! writes the same rows on every run. Included with `#[path]`, since each
//! example is a crate of its own; not every tool uses every method.
#![allow(dead_code)]

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `prefix` and 16 random hex digits.
    pub fn id(&mut self, prefix: &str) -> String {
        format!("{prefix}{:016x}", self.next())
    }

    /// Uniform in [lo, hi) (`lo` when the range is empty).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo).max(1) as u64) as i64
    }
}
