//! Tests of every validation rule, including the security rule (a
//! non-loopback listen address requires a token).

use super::*;

#[test]
fn periods_must_be_positive() {
    let e = file_error(r#"{"timed_jobs": {"interval_ms": 0}}"#);
    assert_eq!(bare(&e), "config: timed_jobs.interval_ms must be > 0 (got 0)");
    let cases: [(&str, Change); 15] = [
        ("bridge.heartbeat_ms", |c| c.bridge.heartbeat_ms = 0),
        ("bridge.client_timeout_ms", |c| c.bridge.client_timeout_ms = 0),
        ("bridge.hello_timeout_ms", |c| c.bridge.hello_timeout_ms = 0),
        ("bridge.login_fresh_ms", |c| c.bridge.login_fresh_ms = 0),
        ("policy.rate_limit.window_ms", |c| c.policy.rate_limit.window_ms = 0),
        ("policy.stale_lease.sweep_interval_ms", |c| c.policy.stale_lease.sweep_interval_ms = 0),
        ("policy.stale_lease.idle_ms", |c| c.policy.stale_lease.idle_ms = 0),
        ("renewal.execution_timeout_ms", |c| c.renewal.execution_timeout_ms = 0),
        ("policy.waiter_timeout_ms", |c| c.policy.waiter_timeout_ms = 0),
        ("policy.circuit_breaker.open_ms", |c| c.policy.circuit_breaker.open_ms = 0),
        ("policy.backoff.base_ms", |c| c.policy.backoff.base_ms = 0),
        ("policy.backoff.max_ms", |c| c.policy.backoff.max_ms = 0),
        ("renewal.retry_base_delay_ms", |c| c.renewal.retry_base_delay_ms = 0),
        ("renewal.retry_max_delay_ms", |c| c.renewal.retry_max_delay_ms = 0),
        ("timed_jobs.interval_ms", |c| c.timed_jobs.interval_ms = 0),
    ];
    for (key, change) in cases {
        let e = invalid(change);
        assert_eq!(e.key, key);
        assert_eq!(e.message, "must be > 0 (got 0)");
    }
}

#[test]
fn switchable_delays_may_be_zero_but_not_huge() {
    let c = from_file(
        r#"{"timed_jobs": {"settle_delay_ms": 0}, "renewal": {"cooldown_ms": 0, "recheck_delay_ms": 0,
            "recovery_delay_ms": 0, "retry_jitter_ratio": 0}, "policy": {"persistence_debounce_ms": 0}}"#,
    );
    assert!(c.is_ok(), "{c:?}");
    let e = invalid(|c| c.renewal.cooldown_ms = u64::MAX);
    assert_eq!(e.key, "renewal.cooldown_ms");
    assert!(e.message.contains(&u64::MAX.to_string()), "{e}");
}

#[test]
fn counts_must_be_at_least_one() {
    let e = file_error(r#"{"renewal": {"max_attempts": 0}}"#);
    assert_eq!(bare(&e), "config: renewal.max_attempts must be >= 1 (got 0)");
    let cases: [(&str, Change); 16] = [
        ("limits.http_threads", |c| c.limits.http_threads = 0),
        ("limits.max_body_bytes", |c| c.limits.max_body_bytes = 0),
        ("limits.max_ws_clients", |c| c.limits.max_ws_clients = 0),
        ("limits.max_ws_frame_bytes", |c| c.limits.max_ws_frame_bytes = 0),
        ("timed_jobs.max_messages_per_tick", |c| c.timed_jobs.max_messages_per_tick = 0),
        ("timed_jobs.max_tasks_per_tick", |c| c.timed_jobs.max_tasks_per_tick = 0),
        ("timed_jobs.log_retention_days", |c| c.timed_jobs.log_retention_days = 0),
        ("renewal.summary_limit", |c| c.renewal.summary_limit = 0),
        ("renewal.max_attempts", |c| c.renewal.max_attempts = 0),
        ("renewal.failure_pause_threshold", |c| c.renewal.failure_pause_threshold = 0),
        ("renewal.repeat_pause_threshold", |c| c.renewal.repeat_pause_threshold = 0),
        ("renewal.retention_days", |c| c.renewal.retention_days = 0),
        ("messages.retention_days", |c| c.messages.retention_days = Some(0)),
        ("policy.rate_limit.requests_per_minute_per_platform", |c| {
            c.policy.rate_limit.requests_per_minute_per_platform = 0
        }),
        ("policy.circuit_breaker.failure_threshold", |c| c.policy.circuit_breaker.failure_threshold = 0),
        ("baa.max_blocks_per_message", |c| c.baa.max_blocks_per_message = 0),
    ];
    for (key, change) in cases {
        let e = invalid(change);
        assert_eq!(e.key, key);
        assert_eq!(e.message, "must be >= 1 (got 0)");
    }
    assert_eq!(invalid(|c| c.limits.http_threads = 5000).key, "limits.http_threads");
    assert_eq!(invalid(|c| c.renewal.retention_days = u64::MAX).key, "renewal.retention_days");
}

#[test]
fn ranges_must_be_ordered() {
    let e = invalid(|c| (c.policy.jitter.min_ms, c.policy.jitter.max_ms) = (5, 3));
    assert_eq!(e.to_string(), "config: policy.jitter.min_ms must be <= policy.jitter.max_ms (got 5 > 3)");
    let e = file_error(r#"{"renewal": {"inter_job_jitter_ms": [9, 1]}}"#);
    assert_eq!(e.key, "renewal.inter_job_jitter_ms");
    assert!(e.message.contains("[9, 1]"), "{e}");
    assert_eq!(invalid(|c| c.policy.backoff.base_ms = 400_000).key, "policy.backoff.base_ms");
    assert_eq!(invalid(|c| c.renewal.retry_base_delay_ms = 400_000).key, "renewal.retry_base_delay_ms");
    let e = file_error(r#"{"renewal": {"retry_jitter_ratio": 1.5}}"#);
    assert_eq!(bare(&e), "config: renewal.retry_jitter_ratio must be between 0 and 1 (got 1.5)");
    assert_eq!(invalid(|c| c.renewal.retry_jitter_ratio = -0.1).key, "renewal.retry_jitter_ratio");
    assert_eq!(invalid(|c| c.renewal.retry_jitter_ratio = f64::NAN).key, "renewal.retry_jitter_ratio");
    let ok = from_file(r#"{"renewal": {"retry_jitter_ratio": 1, "inter_job_jitter_ms": [3, 3]}}"#);
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn client_timeout_must_exceed_heartbeat() {
    let e = invalid(|c| c.bridge.client_timeout_ms = 15_000);
    assert_eq!(e.key, "bridge.client_timeout_ms");
    assert!(e.message.contains("15000 <= 15000"), "{e}");
}

#[test]
fn node_id_rules() {
    assert!(from_file(r#"{"node_id": "Node-1.a_b:c"}"#).is_ok());
    for bad in ["", "has space", "ünïcode", &"x".repeat(65)] {
        let e = invalid(|c| c.node_id = bad.to_string());
        assert_eq!(e.key, "node_id", "{bad:?}");
    }
    assert!(from_file(&format!(r#"{{"node_id": "{}"}}"#, "x".repeat(64))).is_ok());
}

#[test]
fn template_placeholders() {
    let all = r#"{"renewal": {"template": "{summary} {link} {message_id} {platform} {conversation_id} { } {{ json: 1 }"}}"#;
    assert!(from_file(all).is_ok());
    let e = file_error(r#"{"renewal": {"template": "{summary} {url}"}}"#);
    assert_eq!(e.key, "renewal.template");
    assert!(e.message.contains("{url}"), "{e}");
    assert_eq!(invalid(|c| c.renewal.template = "{Summary}".into()).key, "renewal.template");
    assert_eq!(invalid(|c| c.renewal.template = "  ".into()).key, "renewal.template");
}

#[test]
fn listen_addresses_must_resolve() {
    assert_eq!(error_of(&["--listen", "nonsense"], &Scratch::new().env()).key, "listen");
    assert_eq!(invalid(|c| c.ws_listen = "127.0.0.1:99999".into()).key, "ws_listen");
    assert_eq!(invalid(|c| c.ws_listen = c.listen.clone()).key, "ws_listen");
    let both_any = Config {
        listen: "127.0.0.1:0".into(),
        ws_listen: "127.0.0.1:0".into(),
        ..Config::with_state_dir("/tmp/x".into())
    };
    assert_eq!(validate(&both_any), Ok(()));
}

#[test]
fn public_base_url_rules() {
    let c = from_file(r#"{"public_base_url": "http://host:8080/"}"#).unwrap();
    assert_eq!(c.public_base_url.as_deref(), Some("http://host:8080"));
    for bad in
        ["ftp://x", "host.example", "http://", "https:///path", "http://x//", "http://x/?a=1", "http://a b"]
    {
        let json = format!(r#"{{"public_base_url": {}}}"#, serde_json::Value::from(bad));
        assert_eq!(file_error(&json).key, "public_base_url", "{bad}");
    }
}

#[test]
fn allowed_origin_rules() {
    let ok = r#"{"allowed_origins": ["http://localhost:3000", "https://app.example",
        "chrome-extension://abcdefgh", "http://[::1]:8080", "https://a.example/"]}"#;
    let c = from_file(ok).unwrap();
    assert_eq!(c.allowed_origins[4], "https://a.example");
    for bad in [
        "app.example",
        "https://app.example/path",
        "https://",
        "https://x:0",
        "https://x:99999",
        "null",
        "https://u@x",
    ] {
        let json =
            format!(r#"{{"allowed_origins": ["http://ok.example", {}]}}"#, serde_json::Value::from(bad));
        assert_eq!(file_error(&json).key, "allowed_origins[1]", "{bad}");
    }
}

#[test]
fn allowed_host_rules() {
    let c = from_file(
        r#"{"allowed_hosts": ["Conductor.LAN", "box.example:8080", "[fd00::1]:4317", "10.0.0.2"]}"#,
    )
    .unwrap();
    assert_eq!(c.allowed_hosts, ["conductor.lan", "box.example:8080", "[fd00::1]:4317", "10.0.0.2"]);
    for bad in ["", "http://x", "x/y", "x:0", "x:99999", "u@x", "a b", "*.example"] {
        let json = format!(r#"{{"allowed_hosts": ["ok.example", {}]}}"#, serde_json::Value::from(bad));
        assert_eq!(file_error(&json).key, "allowed_hosts[1]", "{bad}");
    }
}

#[test]
fn baa_tools_and_roots() {
    let s = Scratch::new();
    let path = s.write(
        "c.json",
        r#"{"baa": {"allowed_tools": ["exec", "files.write"], "allowed_roots": ["~/notes", "/srv"]}}"#,
    );
    let c = config_of(&["--config", path.to_str().unwrap()], &s.env());
    assert_eq!(c.baa.allowed_roots[0], format!("{}/notes", s.dir.display()));
    assert_eq!(file_error(r#"{"baa": {"allowed_tools": ["status", "rm"]}}"#).key, "baa.allowed_tools[1]");
    assert_eq!(file_error(r#"{"baa": {"allowed_roots": ["relative/dir"]}}"#).key, "baa.allowed_roots[0]");
}

#[test]
fn token_rules_never_echo_the_token() {
    let s = Scratch::new();
    for bad in ["has space", &"x".repeat(257), "tab\there", "ünï"] {
        let e = error_of(&["--token", bad], &s.env());
        assert_eq!(e.key, "token");
        assert!(!e.to_string().contains(bad), "{e}");
    }
    assert_eq!(error_of(&["--token="], &s.env()).key, "--token");
    assert_eq!(file_error(r#"{"token": ""}"#).key, "token");
    assert!(config_of(&["--token", &"x".repeat(256)], &s.env()).token.is_some());
}

// ---- the security rule ----------------------------------------------------

#[test]
fn non_loopback_listen_requires_a_token() {
    let s = Scratch::new();
    let e = error_of(&["--listen", "0.0.0.0:4317"], &s.env());
    assert_eq!(
        e.to_string(),
        "config: token is required when listen (0.0.0.0:4317) is not a loopback address"
    );
    let e = error_of(&["--ws-listen", "0.0.0.0:4318"], &s.env());
    assert_eq!(e.key, "token");
    assert!(e.message.contains("ws_listen (0.0.0.0:4318)"), "{e}");
    let c = config_of(&["--listen", "0.0.0.0:4317", "--token", "s3cret"], &s.env());
    assert_eq!(c.listen, "0.0.0.0:4317");
    assert!(config_of(&["--listen", "[::1]:0", "--ws-listen", "localhost:0"], &s.env()).token.is_none());
}

#[test]
fn loopback_detection() {
    assert!(is_loopback("127.0.0.1:4317"));
    assert!(is_loopback("[::1]:0"));
    assert!(is_loopback("localhost:0"));
    assert!(is_loopback("[::ffff:127.0.0.1]:1"));
    assert!(!is_loopback("0.0.0.0:4317"));
    assert!(!is_loopback("[::]:0"));
    assert!(!is_loopback("192.168.1.2:80"));
    assert!(!is_loopback("not an address"));
}
