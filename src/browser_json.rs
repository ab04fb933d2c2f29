//! Parsing JSON text that a browser produced. `JSON.stringify` writes a
//! string holding half of a UTF-16 surrogate pair (text cut in the middle of
//! an emoji) as a lone `\ud83d` escape: valid JSON, but not text a Rust
//! `String` can hold, so serde_json refuses the whole document. Rather than
//! lose a message over half an emoji, the plugin's frames and the API's
//! request bodies are read with such escapes turned into U+FFFD, the
//! replacement character; everything else is kept exactly as sent. Shared
//! by `bridge/` and `http/` so the two doors accept the same text. Also
//! shared: what counts as an integer in a body (`integer`), and what a
//! parsed document holds in memory (`held_bytes`).

use serde_json::Value;

/// Parses `bytes`; only if that fails, and only because of lone surrogate
/// escapes, parses again with them replaced.
pub fn from_slice(bytes: &[u8]) -> serde_json::Result<Value> {
    serde_json::from_slice(bytes).or_else(|err| match replace_lone_surrogates(bytes) {
        Some(fixed) => serde_json::from_slice(&fixed),
        None => Err(err),
    })
}

const REPLACEMENT: &[u8] = b"\\ufffd";

/// The text with every `\uD800`–`\uDFFF` escape that is not half of a
/// high-low pair replaced by `\ufffd`; `None` when there is none.
fn replace_lone_surrogates(bytes: &[u8]) -> Option<Vec<u8>> {
    let (mut out, mut changed, mut in_string, mut i) = (Vec::with_capacity(bytes.len()), false, false, 0);
    while i < bytes.len() {
        let b = bytes[i];
        if !in_string || b != b'\\' {
            if b == b'"' {
                in_string = !in_string;
            }
            out.push(b);
            i += 1;
            continue;
        }
        let unit = code_unit(bytes, i);
        let step = match unit {
            Some(0xD800..=0xDBFF) if matches!(code_unit(bytes, i + 6), Some(0xDC00..=0xDFFF)) => 12,
            Some(0xD800..=0xDFFF) => {
                out.extend_from_slice(REPLACEMENT);
                changed = true;
                i += 6;
                continue;
            }
            Some(_) => 6,
            // Any other escape: the backslash and the byte it escapes.
            None => 2,
        };
        let end = (i + step).min(bytes.len());
        out.extend_from_slice(&bytes[i..end]);
        i = end;
    }
    changed.then_some(out)
}

/// The code unit of a `\uXXXX` escape starting at `i`.
fn code_unit(bytes: &[u8], i: usize) -> Option<u16> {
    let esc = bytes.get(i..i + 6)?;
    if &esc[..2] != b"\\u" || !esc[2..].iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::from_str_radix(std::str::from_utf8(&esc[2..]).ok()?, 16).ok()
}

/// A JSON number with no fractional part, as an `i64`: `17` and `17.0` are
/// the same number in JSON (and JSON Schema's `integer` takes both; Python
/// writes floats that way), so both are accepted; `17.5` is not.
pub fn integer(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        let f = v.as_f64()?;
        // The cast saturates; the bounds keep it exact.
        (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
    })
}

/// About how many bytes `value` holds in memory once parsed: each node's
/// own size, the text of its strings and keys, and a map entry's key
/// header. A bound on what waits in memory must count this rather than the
/// JSON text: `[0,0,…]` is 2 bytes of text per element and 32 bytes parsed,
/// 16 times as much. (Allocator slack and spare capacity are left out; it
/// is an estimate from below.)
pub fn held_bytes(value: &Value) -> usize {
    const NODE: usize = std::mem::size_of::<Value>();
    const KEY: usize = std::mem::size_of::<String>();
    NODE + match value {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(held_bytes).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| KEY + k.len() + held_bytes(v)).sum(),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::{from_slice, held_bytes, integer};
    use serde_json::{json, Value};

    #[test]
    fn integers_may_be_written_with_a_zero_fraction() {
        assert_eq!(integer(&json!(17)), Some(17));
        assert_eq!(integer(&json!(17.0)), Some(17));
        assert_eq!(integer(&json!(-3.0)), Some(-3));
        for not in [json!(17.5), json!("17"), json!(1e300), json!(null), json!(u64::MAX)] {
            assert_eq!(integer(&not), None, "{not}");
        }
    }

    #[test]
    fn lone_surrogates_become_the_replacement_character() {
        let v = from_slice(br#"{"text": "cut \ud83d", "t": "\ude00 x \ud83d\ude00", "n": 1}"#).unwrap();
        assert_eq!(v, json!({"text": "cut \u{fffd}", "t": "\u{fffd} x 😀", "n": 1}));
        // Two high halves in a row, and one at the very end of a string.
        assert_eq!(
            from_slice(br#"["\ud83d\ud83d\ude00", "\udbff"]"#).unwrap(),
            json!(["\u{fffd}😀", "\u{fffd}"])
        );
    }

    #[test]
    fn everything_else_is_kept_or_refused_as_before() {
        // An escaped backslash before "ud83d" is not an escape.
        assert_eq!(from_slice(br#"{"a": "\\ud83d \" \n \u00e9"}"#).unwrap(), json!({"a": "\\ud83d \" \n é"}));
        // Keys too; and text outside strings is left to serde_json.
        assert_eq!(from_slice(br#"{"\ud800": 1}"#).unwrap(), json!({"\u{fffd}": 1}));
        assert!(from_slice(br#"{"a": "\ud83d"#).is_err());
        assert!(from_slice(br#"{"a": "\uzzzz"}"#).is_err());
        assert!(from_slice(b"\\ud83d").is_err());
    }

    #[test]
    fn held_bytes_counts_what_parsing_makes_not_the_text() {
        let node = std::mem::size_of::<Value>();
        assert_eq!(held_bytes(&json!(null)), node);
        assert_eq!(held_bytes(&json!("abcd")), node + 4);
        // 20,001 bytes of text, 10,000 nodes in memory.
        let zeros = format!("[{}]", vec!["0"; 10_000].join(","));
        let parsed: Value = serde_json::from_str(&zeros).unwrap();
        assert_eq!(held_bytes(&parsed), node * 10_001);
        assert!(held_bytes(&parsed) >= 10 * zeros.len());
        // Keys count with their headers; nesting is summed.
        let obj = json!({"ab": [1, "xyz"]});
        assert_eq!(held_bytes(&obj), node + std::mem::size_of::<String>() + 2 + node + node + node + 3);
    }
}
