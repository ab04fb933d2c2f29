//! "Did you mean …?" for a misspelt config key or flag. The known keys are
//! read off the serialised default configuration, so a key added to
//! `Config` is suggested without being listed twice; a key is matched by
//! its whole dotted path first, then by its last segment (a right key in the
//! wrong object, `interval_ms` at the top level).

use std::path::PathBuf;

use serde_json::Value;

use super::Config;

/// Every dotted key of the config file (`timed_jobs.interval_ms`, …).
pub fn known_keys() -> Vec<String> {
    let defaults = super::to_json(&Config::with_state_dir(PathBuf::new()));
    let mut keys = Vec::new();
    if let Value::Object(top) = defaults {
        for (name, value) in top {
            // Set by flags or found by the daemon, never in the file.
            if name != "state_dir" && name != "config_path" {
                flatten(&name, &value, &mut keys);
            }
        }
    }
    keys
}

fn flatten(path: &str, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(obj) => {
            for (name, v) in obj {
                flatten(&format!("{path}.{name}"), v, out);
            }
        }
        _ => out.push(path.to_string()),
    }
}

/// The closest of `candidates` to `word`, if close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for cand in candidates {
        let d = distance(word, cand);
        if d <= tolerance(word) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, cand));
        }
    }
    best.map(|(_, c)| c)
}

/// The known key a misspelt dotted key most likely meant.
pub fn key(unknown: &str) -> Option<String> {
    let known = known_keys();
    if let Some(hit) = closest(unknown, known.iter().map(String::as_str)) {
        return Some(hit.to_string());
    }
    let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    let tail = last(unknown);
    let tails: Vec<String> = known.iter().map(|k| last(k)).collect();
    let hit = closest(&tail, tails.iter().map(String::as_str))?;
    known.into_iter().find(|k| last(k) == hit)
}

/// How many edits still count as a typo: one for short words, more for long.
fn tolerance(word: &str) -> usize {
    match word.chars().count() {
        0..=4 => 1,
        5..=11 => 2,
        _ => 3,
    }
}

/// Edit distance counting a swap of two neighbours as one edit (optimal
/// string alignment), since `listne` for `listen` is one slip, not two.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_cover_nested_sections_and_leave_out_paths() {
        let keys = known_keys();
        for k in
            ["listen", "allowed_hosts", "timed_jobs.interval_ms", "policy.jitter.sigma_ms", "baa.enabled"]
        {
            assert!(keys.iter().any(|x| x == k), "{k} in {keys:?}");
        }
        assert!(!keys.iter().any(|x| x == "state_dir" || x == "config_path"));
    }

    #[test]
    fn typos_find_their_key() {
        assert_eq!(key("listne").as_deref(), Some("listen"));
        assert_eq!(key("timed_jobs.intervall_ms").as_deref(), Some("timed_jobs.interval_ms"));
        assert_eq!(key("renewal.max_atempts").as_deref(), Some("renewal.max_attempts"));
        // The right name in the wrong object.
        assert_eq!(key("interval_ms").as_deref(), Some("timed_jobs.interval_ms"));
        assert_eq!(key("policy.rate_limit.base_ms").as_deref(), Some("policy.backoff.base_ms"));
        // Nothing close: no guess.
        assert_eq!(key("colour"), None);
        assert_eq!(key("limits.max_threads"), None);
    }

    #[test]
    fn distance_counts_a_swap_once() {
        assert_eq!(distance("listne", "listen"), 1);
        assert_eq!(distance("abc", "abc"), 0);
        assert_eq!(distance("", "ab"), 2);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
