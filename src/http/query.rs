//! Request-target parsing and the validation shared by every list route:
//! query parameters (decoded with `crate::percent`), `limit`/`offset` pagination and
//! enumerated filters, each failing with a 400 that names the parameter.

use super::api::{ApiError, ApiRequest};
use crate::percent::percent_decode;
use crate::store::Page;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;
/// Longest free-text filter value: the longest id the daemon stores (a
/// message's or conversation's id may be 512 bytes), so that anything it
/// stored can be filtered by.
pub const MAX_FILTER_BYTES: usize = 512;

/// Splits a raw request-target into its path and decoded query pairs.
/// Undecodable query pairs are kept raw: unknown parameters are ignored
/// anyway, and a known one then fails its own validation with its name.
pub fn split_target(target: &str) -> (String, Vec<(String, String)>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let pairs = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(k, true).unwrap_or_else(|| k.to_string());
            let value = percent_decode(v, true).unwrap_or_else(|| v.to_string());
            (key, value)
        })
        .collect();
    (path.to_string(), pairs)
}

/// Refuses a query parameter the route does not take (docs/API.md
/// "Lists: pagination and filters"): a misspelt filter (`?platfrom=`) would
/// otherwise be ignored and the route answer every row, which a script
/// might then act on. The 400 names the parameter and lists the route's own.
pub fn only_known(query: &[(String, String)], allowed: &[&str]) -> Result<(), ApiError> {
    let Some((name, _)) = query.iter().find(|(k, _)| !allowed.contains(&k.as_str())) else {
        return Ok(());
    };
    let shown = crate::util::cut_chars(name, 64);
    let takes = if allowed.is_empty() {
        "this route takes none".to_string()
    } else {
        format!("this route takes {}", allowed.join(", "))
    };
    let mut err = ApiError::invalid(name, format!("Unknown query parameter \"{shown}\"; {takes}."));
    err.details["allowed"] = serde_json::json!(allowed);
    Err(err)
}

/// An integer query value: ASCII digits only. `str::parse` alone would also
/// take a leading `+` (`?limit=%2B5`), which docs/API.md does not allow.
fn digits<T: std::str::FromStr>(raw: &str) -> Option<T> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

impl ApiRequest {
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `limit` (default 50, 1..=500) and `offset` (default 0, >= 0).
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = match self.query_param("limit") {
            None => DEFAULT_LIMIT,
            Some(raw) => match digits::<u32>(raw) {
                Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::invalid(
                        "limit",
                        format!(
                        "Query parameter \"limit\" must be an integer from 1 to {MAX_LIMIT} (got \"{raw}\")."
                    ),
                    ))
                }
            },
        };
        let offset = match self.query_param("offset") {
            None => 0,
            Some(raw) => digits::<u64>(raw).filter(|n| *n <= i64::MAX as u64).ok_or_else(|| {
                ApiError::invalid(
                    "offset",
                    format!("Query parameter \"offset\" must be a non-negative integer (got \"{raw}\")."),
                )
            })?,
        };
        Ok(Page { limit, offset })
    }

    /// An optional free-text filter; present but empty is an error, since it
    /// can only be a mistake in the caller's script.
    pub fn text_filter(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.query_param(name) {
            None => Ok(None),
            Some("") => {
                Err(ApiError::invalid(name, format!("Query parameter \"{name}\" must not be empty.")))
            }
            Some(v) if v.len() > MAX_FILTER_BYTES => Err(ApiError::invalid(
                name,
                format!("Query parameter \"{name}\" is longer than {MAX_FILTER_BYTES} bytes."),
            )),
            Some(v) => Ok(Some(v.to_string())),
        }
    }

    /// An optional filter restricted to `allowed` values.
    pub fn enum_filter<T>(
        &self,
        name: &str,
        allowed: &[&str],
        parse: fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ApiError> {
        match self.query_param(name) {
            None => Ok(None),
            Some(v) => parse(v).map(Some).ok_or_else(|| {
                ApiError::invalid(
                    name,
                    format!("Query parameter \"{name}\" must be one of {}.", allowed.join(", ")),
                )
            }),
        }
    }

    pub fn bool_filter(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.enum_filter(name, &["true", "false"], |v| match v {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str) -> ApiRequest {
        let (path, query) = split_target(target);
        let mut r = ApiRequest::new("GET", &path);
        r.query = query;
        r
    }

    #[test]
    fn page_defaults_and_bounds() {
        assert_eq!(req("/x").page().unwrap(), Page { limit: 50, offset: 0 });
        assert_eq!(req("/x?limit=500&offset=7").page().unwrap(), Page { limit: 500, offset: 7 });
        for bad in ["limit=0", "limit=501", "limit=abc", "limit=-1", "limit=1.5", "limit=%2B5", "limit=+5"] {
            let err = req(&format!("/x?{bad}")).page().unwrap_err();
            assert_eq!(err.details["field"], "limit", "{bad}");
        }
        for bad in ["offset=-1", "offset=x", "offset=99999999999999999999", "offset=%2B1", "offset=+1"] {
            let err = req(&format!("/x?{bad}")).page().unwrap_err();
            assert_eq!(err.details["field"], "offset", "{bad}");
        }
    }

    #[test]
    fn unknown_parameters_are_named_with_the_allowed_ones() {
        assert!(only_known(&req("/x?limit=5&platform=a").query, &["platform", "limit"]).is_ok());
        let err = only_known(&req("/x?limit=5&platfrom=a").query, &["platform", "limit"]).unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.details["field"], "platfrom");
        assert_eq!(err.details["allowed"], serde_json::json!(["platform", "limit"]));
        let err = only_known(&req("/x?a%20b=1").query, &[]).unwrap_err();
        assert_eq!(err.details["field"], "a b");
        assert!(err.message.contains("takes none"), "{}", err.message);
    }

    #[test]
    fn enum_filter_names_allowed_values() {
        let r = req("/x?status=weird");
        let err = r.enum_filter("status", &["a", "b"], |v| (v == "a").then_some(1)).unwrap_err();
        assert!(err.message.contains("one of a, b"));
        assert_eq!(req("/x?active=true").bool_filter("active").unwrap(), Some(true));
        assert!(req("/x?active=yes").bool_filter("active").is_err());
    }
}
