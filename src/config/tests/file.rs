//! Tests of the JSON config file: nested values, unknown keys, wrong types
//! and malformed JSON.

use super::*;

#[test]
fn file_sets_nested_values_and_nulls() {
    let c = from_file(
        r#"{"role": "standby", "token": null, "public_base_url": "https://x.example/base/",
            "allowed_origins": ["HTTPS://App.Example:8443/"],
            "limits": {"http_threads": 8}, "renewal": {"retry_jitter_ratio": 0, "inter_job_jitter_ms": [5, 10]},
            "messages": {"retention_days": 7}, "policy": {"jitter": {"max_ms": 100}},
            "baa": {"enabled": true, "allowed_roots": ["/srv"]}, "bridge": {"login_fresh_ms": 1}}"#,
    )
    .unwrap();
    assert_eq!(c.role, Role::Standby);
    assert_eq!(c.public_base_url.as_deref(), Some("https://x.example/base"));
    assert_eq!(c.allowed_origins, vec!["https://app.example:8443".to_string()]);
    assert_eq!(c.limits.http_threads, 8);
    assert_eq!(c.limits.max_body_bytes, 1_048_576);
    assert_eq!(c.renewal.retry_jitter_ratio, 0.0);
    assert_eq!(c.renewal.inter_job_jitter_ms, [5, 10]);
    assert_eq!(c.messages.retention_days, Some(7));
    assert_eq!(c.policy.jitter.max_ms, 100);
    assert!(c.baa.enabled);
    assert_eq!(c.bridge.login_fresh_ms, 1);
    let c = from_file(r#"{"messages": {"retention_days": null}, "public_base_url": null}"#).unwrap();
    assert_eq!(c.messages.retention_days, None);
    assert_eq!(c.public_base_url, None);
}

#[test]
fn unknown_keys_are_named_by_dotted_path() {
    assert_eq!(bare(&file_error(r#"{"colour": "x"}"#)), "config: colour is not a known key");
    assert_eq!(
        bare(&file_error(r#"{"limits": {"max_threads": 2}}"#)),
        "config: limits.max_threads is not a known key"
    );
    assert_eq!(file_error(r#"{"policy": {"jitter": {"mean_ms": 1}}}"#).key, "policy.jitter.mean_ms");
    assert_eq!(file_error(r#"{"policy": {"rate_limit": {"base_ms": 1}}}"#).key, "policy.rate_limit.base_ms");
    assert_eq!(file_error(r#"{"messages": {"keep": 1}}"#).key, "messages.keep");
    assert_eq!(file_error(r#"{"state_dir": "/x"}"#).key, "state_dir");
    assert_eq!(file_error(r#"{"config": "/x"}"#).key, "config");
}

#[test]
fn wrong_types_name_key_and_expected_type() {
    assert_eq!(
        bare(&file_error(r#"{"limits": {"http_threads": "4"}}"#)),
        r#"config: limits.http_threads must be a positive integer (got "4")"#
    );
    let cases = [
        (r#"{"listen": 4317}"#, "listen", "a string"),
        (r#"{"role": "leader"}"#, "role", "\"primary\" or \"standby\""),
        (r#"{"limits": 4}"#, "limits", "an object"),
        (
            r#"{"timed_jobs": {"settle_delay_ms": -1}}"#,
            "timed_jobs.settle_delay_ms",
            "a non-negative integer",
        ),
        (r#"{"renewal": {"max_attempts": 2.5}}"#, "renewal.max_attempts", "a positive integer"),
        (r#"{"renewal": {"max_attempts": 4294967296}}"#, "renewal.max_attempts", "<= 4294967295"),
        (r#"{"renewal": {"retry_jitter_ratio": "0.2"}}"#, "renewal.retry_jitter_ratio", "a number"),
        (r#"{"renewal": {"inter_job_jitter_ms": [1]}}"#, "renewal.inter_job_jitter_ms", "two non-negative"),
        (r#"{"messages": {"retention_days": "7"}}"#, "messages.retention_days", "a positive integer or null"),
        (r#"{"baa": {"enabled": "yes"}}"#, "baa.enabled", "true or false"),
        (r#"{"allowed_origins": "http://x"}"#, "allowed_origins", "an array of strings"),
        (r#"{"baa": {"allowed_tools": ["status", 3]}}"#, "baa.allowed_tools[1]", "a string"),
        (r#"{"public_base_url": 1}"#, "public_base_url", "a string or null"),
    ];
    for (json, key, expected) in cases {
        let e = file_error(json);
        assert_eq!(e.key, key, "{json}");
        assert!(e.message.contains(expected), "{json}: {e}");
    }
}

#[test]
fn wrong_token_type_does_not_echo_the_value() {
    let e = file_error(r#"{"token": 123456789}"#);
    assert_eq!(e.key, "token");
    assert!(!e.to_string().contains("123456789"), "{e}");
}

#[test]
fn malformed_json_reports_line_and_column() {
    let e = file_error("{\n  \"listen\": \"x\",\n}");
    assert_eq!(e.key, "config_file");
    assert!(e.message.contains("line 3"), "{e}");
    assert!(e.message.contains("column"), "{e}");
    assert_eq!(file_error("[1, 2]").key, "config_file");
}

#[test]
fn a_repeated_key_is_an_error_not_the_last_one_winning() {
    // Last-one-wins would leave the API open here.
    let e = file_error("{\"token\": \"s3cret-token\",\n \"token\": null}");
    assert_eq!(e.key, "config_file");
    assert!(e.message.contains("\"token\" appears twice") && e.message.contains("line 2"), "{e}");
    assert!(!e.to_string().contains("s3cret-token"), "{e}");
    let e = file_error(r#"{"limits": {"http_threads": 4, "http_threads": 8}}"#);
    assert!(e.message.contains("\"http_threads\" appears twice"), "{e}");
    // Equal keys in different objects are fine, and so are arrays of objects.
    from_file(r#"{"limits": {"http_threads": 4}, "policy": {"jitter": {"max_ms": 4}}}"#).unwrap();
    let c = from_file(r#"{"allowed_origins": ["https://a.example", "https://b.example"], "token": "x"}"#)
        .unwrap();
    assert_eq!(c.token.as_deref(), Some("x"));
}

#[test]
fn a_misspelt_key_gets_the_closest_known_one() {
    let e = file_error(r#"{"timed_jobs": {"intervall_ms": 5}}"#);
    assert_eq!(
        bare(&e),
        "config: timed_jobs.intervall_ms is not a known key; did you mean timed_jobs.interval_ms?"
    );
    assert_eq!(file_error(r#"{"listne": "x"}"#).message, "is not a known key; did you mean listen?");
    // The right key in the wrong object.
    let e = file_error(r#"{"interval_ms": 5}"#);
    assert_eq!(e.message, "is not a known key; did you mean timed_jobs.interval_ms?");
}

/// A bad value names the file it was read from, whether the walk over the
/// file or a later rule refused it; a flag or variable names itself.
#[test]
fn errors_say_where_the_value_came_from() {
    let s = Scratch::new();
    let path = s.write("conf.json", r#"{"renewal": {"max_attempts": 0}}"#);
    let shown = path.display().to_string();
    let e = error_of(&["--config", &shown], &s.env());
    assert_eq!(e.to_string(), format!("config: renewal.max_attempts must be >= 1 (got 0) (in {shown})"));
    let path = s.write("typo.json", r#"{"bridge": {"heartbeat": 5}}"#);
    let e = error_of(&["--config", &path.display().to_string()], &s.env());
    assert_eq!(e.origin, Some(format!("in {}", path.display())));
    // The default config file in the state dir is named too.
    s.write("state/config.json", r#"{"allowed_hosts": ["ok.example", "Bad Host"]}"#);
    let state = s.dir.join("state").display().to_string();
    let e = error_of(&["--state-dir", &state], &s.env());
    assert_eq!(e.key, "allowed_hosts[1]");
    assert_eq!(e.origin, Some(format!("in {state}/config.json")));
    // The environment beats the file, and is the one blamed.
    let path = s.write("listen.json", r#"{"listen": "127.0.0.1:4000"}"#);
    let env = with(&[("BAA_LISTEN", "nowhere")], s.env());
    let e = error_of(&["--config", &path.display().to_string()], &env);
    assert_eq!((e.key.as_str(), e.origin.as_deref()), ("listen", Some("set by BAA_LISTEN")));
    let e = error_of(&["--listen", "nowhere"], &env);
    assert_eq!(e.origin.as_deref(), Some("set by --listen"));
    // A default that a rule refuses has no origin to name.
    let e = error_of(&["--listen", "0.0.0.0:0"], &s.env());
    assert_eq!((e.key.as_str(), e.origin.as_deref()), ("token", None));
}

#[test]
fn a_misspelt_flag_gets_the_closest_known_one() {
    let s = Scratch::new();
    let e = error_of(&["--lisen", "x"], &s.env());
    assert_eq!(e.to_string(), "config: --lisen is not a known flag; did you mean --listen? (see --help)");
    assert_eq!(error_of(&["--frobnicate"], &s.env()).message, "is not a known flag (see --help)");
}
