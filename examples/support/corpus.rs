#![allow(dead_code)]
//! A deterministic chat-like corpus for the search benchmark: a vocabulary
//! of 20,000 made-up words whose frequencies follow Zipf's law (the k-th
//! most common word is about k times rarer than the first, as in natural
//! language), messages of 10 to 120 words, and two-word queries drawn from
//! a band of ranks. Included with `#[path]` by `bench_fill` (which writes the
//! messages) and `bench_search` (which reads the queries), each of which also
//! includes `support/rng.rs`.

pub const VOCABULARY: usize = 20_000;

pub use crate::rng::Rng;

const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "du", "ga", "be", "zo", "fi", "hu", "ja", "ko",
    "le", "ma", "no", "pe", "ru", "si", "to",
];

/// The word of rank `rank` (0 = most common): distinct for every rank.
pub fn word(rank: usize) -> String {
    let mut n = rank + SYLLABLES.len();
    let mut out = String::new();
    while n > 0 {
        out.push_str(SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
    }
    out
}

/// Draws word ranks with Zipf frequencies (exponent 1).
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub fn new() -> Zipf {
        let mut total = 0.0;
        let cumulative = (1..=VOCABULARY)
            .map(|r| {
                total += 1.0 / r as f64;
                total
            })
            .collect::<Vec<_>>();
        let cumulative = cumulative.iter().map(|c| c / total).collect();
        Zipf { cumulative }
    }

    pub fn rank(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cumulative.partition_point(|c| *c < u).min(VOCABULARY - 1)
    }
}

/// One message: 10 to 120 words.
pub fn message(rng: &mut Rng, zipf: &Zipf) -> String {
    let words = 10 + (rng.next() % 111) as usize;
    (0..words).map(|_| word(zipf.rank(rng))).collect::<Vec<_>>().join(" ")
}

/// `n` queries of two distinct words with ranks in `lo..hi`.
pub fn queries(rng: &mut Rng, n: usize, lo: usize, hi: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let a = lo + (rng.next() as usize) % (hi - lo);
            let mut b = lo + (rng.next() as usize) % (hi - lo);
            if b == a {
                b = if a + 1 < hi { a + 1 } else { lo };
            }
            format!("{} {}", word(a), word(b))
        })
        .collect()
}
