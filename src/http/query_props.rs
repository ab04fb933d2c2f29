//! Property tests of the request-target parser (`query.rs`, and the
//! percent-decoding of `percent.rs` it uses): decoding checked against a
//! reference written from RFC 3986 ("%" and two hex digits), encode →
//! decode and render → split round trips, and no panic or allocation
//! beyond the target's own size for any target. The reference is kept
//! apart from the decoder on purpose: it is the oracle. Cases per
//! property: 256, or `PROPTEST_CASES` (docs/RELIABILITY.md).

use proptest::prelude::*;

use super::query::split_target;
use crate::percent::percent_decode;
use crate::percent::percent_encode;
use crate::test_alloc::peak_during;

/// RFC 3986 §2.1: a percent-encoded octet is "%" HEXDIG HEXDIG.
fn reference_decode(s: &str, plus_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (hi, lo) = (*bytes.get(i + 1)?, *bytes.get(i + 2)?);
                let digit = |b: u8| (b as char).to_digit(16);
                out.push((digit(hi)? * 16 + digit(lo)?) as u8);
                i += 3;
            }
            b'+' if plus_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Targets with many escapes, broken ones included.
fn target_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z]{1,4}",
        Just("%".to_string()),
        "%[0-9a-fA-F]{2}",
        "%[-+ 0-9a-zA-Z]{0,2}",
        "%[-+][0-9a-fA-F]",
        Just("+".to_string()),
        Just("&".to_string()),
        Just("=".to_string()),
        Just("?".to_string()),
        ".{0,3}",
    ];
    proptest::collection::vec(piece, 0..30).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn decoding_follows_the_rfc(s in target_like(), plus_space in any::<bool>()) {
        let (decoded, peak) = peak_during(|| percent_decode(&s, plus_space));
        prop_assert!(peak <= 2 * s.len() + 64, "allocated {peak} for {} bytes", s.len());
        prop_assert_eq!(decoded, reference_decode(&s, plus_space), "{:?}", s);
    }

    #[test]
    fn encoded_text_decodes_to_itself(s in ".{0,40}", plus_space in any::<bool>()) {
        let encoded = percent_encode(&s);
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~:%".contains(&b)));
        prop_assert_eq!(percent_decode(&encoded, plus_space), Some(s));
    }

    #[test]
    fn a_rendered_target_splits_back(
        path in "/[a-z0-9/._-]{0,30}",
        pairs in proptest::collection::vec((".{1,12}", ".{0,12}"), 0..8),
    ) {
        let query: Vec<String> =
            pairs.iter().map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v))).collect();
        let target = if pairs.is_empty() { path.clone() } else { format!("{path}?{}", query.join("&")) };
        prop_assert_eq!(split_target(&target), (path, pairs));
    }

    #[test]
    fn splitting_never_panics_nor_grows(target in prop_oneof![target_like(), ".{0,200}"]) {
        let ((path, pairs), peak) = peak_during(|| split_target(&target));
        let kept = path.len() + pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        prop_assert!(kept <= target.len());
        prop_assert!(peak <= split_bound(&target, pairs.len()), "allocated {peak}");
        prop_assert!(target.starts_with(&path));
    }
}

/// What splitting `target` into `pairs` pairs may allocate at its peak: the
/// decoded text (at most the target's size, with slack for each piece's
/// own growth), and the pairs' vector, which grows by doubling: while it
/// moves, the old buffer and the new one (up to twice the pairs) are both
/// alive, three pairs' worth of 48-byte slots per pair.
fn split_bound(target: &str, pairs: usize) -> usize {
    4 * target.len() + 3 * 48 * pairs + 256
}

/// Cases proptest found where the pairs' vector, mid-growth, took more than
/// one slot per pair (580 bytes against an earlier bound of 536).
#[test]
fn many_empty_pairs_stay_within_the_bound() {
    for target in ["?=&a&a&a&a", "?&&&&&&&&&&&&&&&&", "/p?a&b&c&d&e&f&g&h&i"] {
        let ((_, pairs), peak) = peak_during(|| split_target(target));
        assert!(peak <= split_bound(target, pairs.len()), "{target:?}: allocated {peak}");
    }
}
