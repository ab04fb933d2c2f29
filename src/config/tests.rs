//! Tests of the command line, the config file, the precedence between
//! them, and every validation rule. The environment is always a fake map
//! and files live in unique directories under the system temp dir.

use super::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A unique scratch directory, removed on drop. It also serves as HOME so
/// that the default state dir never points at the real user's.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("baa-config-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("HOME".to_string(), self.dir.to_string_lossy().into_owned())]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(args: &[&str], env: &[(String, String)]) -> Result<Command, ConfigError> {
    let map: HashMap<String, String> = env.iter().cloned().collect();
    let lookup = move |k: &str| map.get(k).cloned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    parse_command(&args, &lookup)
}

fn config_of(args: &[&str], env: &[(String, String)]) -> Config {
    match run(args, env) {
        Ok(Command::Serve(c)) | Ok(Command::CheckConfig(c)) => c,
        other => panic!("expected a config, got {other:?}"),
    }
}

fn error_of(args: &[&str], env: &[(String, String)]) -> ConfigError {
    match run(args, env) {
        Err(e) => e,
        Ok(other) => panic!("expected an error, got {other:?}"),
    }
}

fn with(extra: &[(&str, &str)], base: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut env = base;
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// Parses a config file body with every other setting at its default.
fn from_file(json: &str) -> Result<Config, ConfigError> {
    let s = Scratch::new();
    let path = s.write("c.json", json);
    let path = path.to_string_lossy().into_owned();
    match run(&["--config", &path], &s.env()) {
        Ok(Command::Serve(c)) => Ok(c),
        Ok(other) => panic!("unexpected {other:?}"),
        Err(e) => Err(e),
    }
}

fn file_error(json: &str) -> ConfigError {
    from_file(json).expect_err("expected an error")
}

/// One edit to a default config, for the table-driven rule tests.
type Change = fn(&mut Config);

/// Validates defaults with one change applied.
fn invalid(change: impl FnOnce(&mut Config)) -> ConfigError {
    let mut c = Config::with_state_dir(PathBuf::from("/tmp/x"));
    change(&mut c);
    validate(&c).expect_err("expected a validation error")
}

// ---- defaults -------------------------------------------------------------

#[test]
fn defaults_equal_config_md() {
    let s = Scratch::new();
    let c = config_of(&[], &s.env());
    assert_eq!(c.state_dir, s.dir.join(".local/state/baa-conductor"));
    assert_eq!(c.config_path, None);
    let mut json = to_json(&c);
    let obj = json.as_object_mut().unwrap();
    obj.remove("state_dir");
    let expected = serde_json::json!({
        "config_path": null,
        "listen": "127.0.0.1:4317", "ws_listen": "127.0.0.1:4318",
        "node_id": "local", "role": "primary", "token": null,
        "public_base_url": null, "allowed_origins": [],
        "limits": {"http_threads": 4, "max_body_bytes": 1048576, "max_ws_clients": 64, "max_ws_frame_bytes": 8388608},
        "timed_jobs": {"interval_ms": 10000, "settle_delay_ms": 10000, "max_messages_per_tick": 10,
                       "max_tasks_per_tick": 10, "log_retention_days": 14},
        "renewal": {"template": "[renewal] {summary}\n{link}", "summary_limit": 200, "max_attempts": 3,
                    "execution_timeout_ms": 20000, "retry_base_delay_ms": 30000, "retry_max_delay_ms": 300000,
                    "retry_jitter_ratio": 0.2, "inter_job_jitter_ms": [0, 0], "recheck_delay_ms": 10000,
                    "recovery_delay_ms": 60000, "cooldown_ms": 0, "failure_pause_threshold": 3,
                    "repeat_pause_threshold": 3, "retention_days": 30},
        "messages": {"retention_days": null},
        "policy": {"rate_limit": {"requests_per_minute_per_platform": 10, "window_ms": 60000},
                   "backoff": {"base_ms": 5000, "max_ms": 300000},
                   "circuit_breaker": {"failure_threshold": 5, "open_ms": 60000},
                   "jitter": {"min_ms": 0, "max_ms": 0, "mu_ms": 0, "sigma_ms": 0},
                   "stale_lease": {"idle_ms": 300000, "sweep_interval_ms": 30000},
                   "waiter_timeout_ms": 120000, "persistence_debounce_ms": 25},
        "baa": {"enabled": false, "allowed_tools": ["describe", "status", "files.read"],
                "allowed_roots": [], "max_blocks_per_message": 8},
        "bridge": {"heartbeat_ms": 15000, "client_timeout_ms": 45000, "hello_timeout_ms": 10000,
                   "login_fresh_ms": 900000}
    });
    assert_eq!(json, expected);
    assert_eq!(validate(&Config::default()), Ok(()));
}

#[test]
fn effective_delays_are_at_least_the_interval() {
    let r = Renewal::default();
    assert_eq!(r.effective_recheck_delay_ms(10_000), 10_000);
    assert_eq!(r.effective_recheck_delay_ms(25_000), 25_000);
    assert_eq!(r.effective_recovery_delay_ms(10_000), 60_000);
    assert_eq!(r.effective_recovery_delay_ms(90_000), 90_000);
}

// ---- state dir ------------------------------------------------------------

#[test]
fn state_dir_prefers_absolute_xdg_over_home() {
    let s = Scratch::new();
    let xdg = s.dir.join("xdg");
    let env = with(&[("XDG_STATE_HOME", xdg.to_str().unwrap())], s.env());
    assert_eq!(config_of(&[], &env).state_dir, xdg.join("baa-conductor"));
    let relative = with(&[("XDG_STATE_HOME", "rel/xdg")], s.env());
    assert_eq!(
        config_of(&[], &relative).state_dir,
        s.dir.join(".local/state/baa-conductor")
    );
    let empty = with(&[("XDG_STATE_HOME", "")], s.env());
    assert_eq!(
        config_of(&[], &empty).state_dir,
        s.dir.join(".local/state/baa-conductor")
    );
}

#[test]
fn state_dir_without_home_or_xdg_is_an_error() {
    assert_eq!(error_of(&[], &[]).key, "state_dir");
    let s = Scratch::new();
    let dir = s.dir.join("st");
    let c = config_of(&["--state-dir", dir.to_str().unwrap()], &[]);
    assert_eq!(c.state_dir, dir);
}

#[test]
fn relative_state_dir_is_made_absolute() {
    let c = config_of(&["--state-dir", "some/dir"], &[]);
    assert!(c.state_dir.is_absolute());
    assert!(c.state_dir.ends_with("some/dir"));
}

// ---- precedence -----------------------------------------------------------

#[test]
fn precedence_flag_over_env_over_file_over_default() {
    let s = Scratch::new();
    let state = s.dir.join("state");
    s.write(
        "state/config.json",
        r#"{"listen": "127.0.0.1:1001", "ws_listen": "127.0.0.1:2001", "token": "file-token"}"#,
    );
    let state_arg = format!("--state-dir={}", state.display());

    // The default config file in the state dir overrides the defaults.
    let c = config_of(&[&state_arg], &s.env());
    assert_eq!(c.listen, "127.0.0.1:1001");
    assert_eq!(c.token.as_deref(), Some("file-token"));
    assert_eq!(c.config_path, Some(state.join("config.json")));

    // The environment overrides the file.
    let env = with(
        &[("BAA_LISTEN", "127.0.0.1:1002"), ("BAA_TOKEN", "env-token")],
        s.env(),
    );
    let c = config_of(&[&state_arg], &env);
    assert_eq!(
        (c.listen.as_str(), c.ws_listen.as_str()),
        ("127.0.0.1:1002", "127.0.0.1:2001")
    );
    assert_eq!(c.token.as_deref(), Some("env-token"));

    // A flag overrides the environment.
    let c = config_of(
        &[
            &state_arg,
            "--listen",
            "127.0.0.1:1003",
            "--token=flag-token",
        ],
        &env,
    );
    assert_eq!(c.listen, "127.0.0.1:1003");
    assert_eq!(c.token.as_deref(), Some("flag-token"));
}

#[test]
fn state_dir_flag_over_env() {
    let s = Scratch::new();
    let (a, b) = (s.dir.join("a"), s.dir.join("b"));
    let env = with(&[("BAA_STATE_DIR", a.to_str().unwrap())], s.env());
    assert_eq!(config_of(&[], &env).state_dir, a);
    assert_eq!(
        config_of(&["--state-dir", b.to_str().unwrap()], &env).state_dir,
        b
    );
}

#[test]
fn config_flag_over_env_over_state_dir_file() {
    let s = Scratch::new();
    let state = s.dir.join("state");
    s.write("state/config.json", r#"{"node_id": "from-state"}"#);
    let env_file = s.write("env.json", r#"{"node_id": "from-env"}"#);
    let flag_file = s.write("flag.json", r#"{"node_id": "from-flag"}"#);
    let env = with(
        &[
            ("BAA_STATE_DIR", state.to_str().unwrap()),
            ("BAA_CONFIG", env_file.to_str().unwrap()),
        ],
        s.env(),
    );
    assert_eq!(config_of(&[], &env).node_id, "from-env");
    let c = config_of(&["--config", flag_file.to_str().unwrap()], &env);
    assert_eq!(c.node_id, "from-flag");
    assert_eq!(c.config_path, Some(flag_file));
}

#[test]
fn ws_listen_env_and_flag() {
    let s = Scratch::new();
    let env = with(&[("BAA_WS_LISTEN", "127.0.0.1:5001")], s.env());
    assert_eq!(config_of(&[], &env).ws_listen, "127.0.0.1:5001");
    assert_eq!(
        config_of(&["--ws-listen=127.0.0.1:5002"], &env).ws_listen,
        "127.0.0.1:5002"
    );
}

#[test]
fn empty_env_var_counts_as_unset() {
    let s = Scratch::new();
    let env = with(&[("BAA_TOKEN", ""), ("BAA_LISTEN", "")], s.env());
    let c = config_of(&[], &env);
    assert_eq!(c.token, None);
    assert_eq!(c.listen, "127.0.0.1:4317");
}

#[test]
fn missing_explicit_config_file_names_flag_and_path() {
    let s = Scratch::new();
    let path = s.dir.join("nope.json");
    let e = error_of(&["--config", path.to_str().unwrap()], &s.env());
    assert_eq!(e.key, "--config");
    assert!(e.message.contains(path.to_str().unwrap()), "{e}");
    let env = with(&[("BAA_CONFIG", path.to_str().unwrap())], s.env());
    assert_eq!(error_of(&[], &env).key, "BAA_CONFIG");
}

// ---- command line ---------------------------------------------------------

#[test]
fn commands_and_info_flags() {
    let s = Scratch::new();
    assert!(matches!(run(&[], &s.env()), Ok(Command::Serve(_))));
    assert!(matches!(run(&["serve"], &s.env()), Ok(Command::Serve(_))));
    assert!(matches!(
        run(&["check-config"], &s.env()),
        Ok(Command::CheckConfig(_))
    ));
    for (arg, want) in [
        ("--version", Command::Version),
        ("-V", Command::Version),
        ("--help", Command::Help),
        ("-h", Command::Help),
    ] {
        assert_eq!(run(&[arg], &[]), Ok(want.clone()));
        assert_eq!(run(&["check-config", arg], &[]), Ok(want));
    }
    let help = help_text();
    for word in [
        "serve",
        "check-config",
        "--config",
        "--state-dir",
        "--listen",
        "--ws-listen",
        "--token",
        "BAA_TOKEN",
        "RUST_LOG",
        "Exit codes",
    ] {
        assert!(help.contains(word), "help lacks {word}");
    }
}

#[test]
fn command_line_errors_name_the_argument() {
    let s = Scratch::new();
    let env = s.env();
    let e = error_of(&["--frob"], &env);
    assert_eq!(e.key, "--frob");
    assert_eq!(
        e.to_string(),
        "config: --frob is not a known flag (see --help)"
    );
    assert_eq!(error_of(&["--frob=1"], &env).key, "--frob");
    assert_eq!(error_of(&["-x"], &env).key, "-x");
    assert_eq!(error_of(&["start"], &env).key, "start");
    assert_eq!(error_of(&["serve", "extra"], &env).key, "extra");
    assert_eq!(
        error_of(&["--listen"], &env).to_string(),
        "config: --listen needs a value"
    );
    assert_eq!(
        error_of(&["--listen", "--token", "x"], &env).key,
        "--listen"
    );
    assert_eq!(error_of(&["--listen="], &env).key, "--listen");
    assert_eq!(error_of(&["--help=1"], &env).key, "--help");
    let e = error_of(&["--listen", "127.0.0.1:1", "--listen=127.0.0.1:2"], &env);
    assert_eq!(e.key, "--listen");
}

#[test]
fn equals_form_works_for_every_flag() {
    let s = Scratch::new();
    let file = s.write("c.json", r#"{"node_id": "eq"}"#);
    let state = s.dir.join("st");
    let c = config_of(
        &[
            &format!("--config={}", file.display()),
            &format!("--state-dir={}", state.display()),
            "--listen=127.0.0.1:0",
            "--ws-listen=127.0.0.1:0",
            "--token=a=b",
        ],
        &[],
    );
    assert_eq!(c.node_id, "eq");
    assert_eq!(c.state_dir, state);
    assert_eq!(c.listen, "127.0.0.1:0");
    assert_eq!(c.ws_listen, "127.0.0.1:0");
    assert_eq!(c.token.as_deref(), Some("a=b"));
}

// ---- config file ----------------------------------------------------------

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
    assert_eq!(
        c.allowed_origins,
        vec!["https://app.example:8443".to_string()]
    );
    assert_eq!(c.limits.http_threads, 8);
    assert_eq!(c.limits.max_body_bytes, 1_048_576);
    assert_eq!(c.renewal.retry_jitter_ratio, 0.0);
    assert_eq!(c.renewal.inter_job_jitter_ms, [5, 10]);
    assert_eq!(c.messages.retention_days, Some(7));
    assert_eq!(c.policy.jitter.max_ms, 100);
    assert!(c.baa.enabled);
    assert_eq!(c.bridge.login_fresh_ms, 1);
    let c =
        from_file(r#"{"messages": {"retention_days": null}, "public_base_url": null}"#).unwrap();
    assert_eq!(c.messages.retention_days, None);
    assert_eq!(c.public_base_url, None);
}

#[test]
fn unknown_keys_are_named_by_dotted_path() {
    assert_eq!(
        file_error(r#"{"listne": "x"}"#).to_string(),
        "config: listne is not a known key"
    );
    assert_eq!(
        file_error(r#"{"limits": {"max_threads": 2}}"#).to_string(),
        "config: limits.max_threads is not a known key"
    );
    assert_eq!(
        file_error(r#"{"policy": {"jitter": {"mean_ms": 1}}}"#).key,
        "policy.jitter.mean_ms"
    );
    assert_eq!(
        file_error(r#"{"policy": {"rate_limit": {"base_ms": 1}}}"#).key,
        "policy.rate_limit.base_ms"
    );
    assert_eq!(
        file_error(r#"{"messages": {"keep": 1}}"#).key,
        "messages.keep"
    );
    assert_eq!(file_error(r#"{"state_dir": "/x"}"#).key, "state_dir");
    assert_eq!(file_error(r#"{"config": "/x"}"#).key, "config");
}

#[test]
fn wrong_types_name_key_and_expected_type() {
    assert_eq!(
        file_error(r#"{"limits": {"http_threads": "4"}}"#).to_string(),
        r#"config: limits.http_threads must be a positive integer (got "4")"#
    );
    let cases = [
        (r#"{"listen": 4317}"#, "listen", "a string"),
        (
            r#"{"role": "leader"}"#,
            "role",
            "\"primary\" or \"standby\"",
        ),
        (r#"{"limits": 4}"#, "limits", "an object"),
        (
            r#"{"timed_jobs": {"settle_delay_ms": -1}}"#,
            "timed_jobs.settle_delay_ms",
            "a non-negative integer",
        ),
        (
            r#"{"renewal": {"max_attempts": 2.5}}"#,
            "renewal.max_attempts",
            "a positive integer",
        ),
        (
            r#"{"renewal": {"max_attempts": 4294967296}}"#,
            "renewal.max_attempts",
            "<= 4294967295",
        ),
        (
            r#"{"renewal": {"retry_jitter_ratio": "0.2"}}"#,
            "renewal.retry_jitter_ratio",
            "a number",
        ),
        (
            r#"{"renewal": {"inter_job_jitter_ms": [1]}}"#,
            "renewal.inter_job_jitter_ms",
            "two non-negative",
        ),
        (
            r#"{"messages": {"retention_days": "7"}}"#,
            "messages.retention_days",
            "a positive integer or null",
        ),
        (
            r#"{"baa": {"enabled": "yes"}}"#,
            "baa.enabled",
            "true or false",
        ),
        (
            r#"{"allowed_origins": "http://x"}"#,
            "allowed_origins",
            "an array of strings",
        ),
        (
            r#"{"baa": {"allowed_tools": ["status", 3]}}"#,
            "baa.allowed_tools[1]",
            "a string",
        ),
        (
            r#"{"public_base_url": 1}"#,
            "public_base_url",
            "a string or null",
        ),
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

// ---- validation -----------------------------------------------------------

#[test]
fn periods_must_be_positive() {
    let e = file_error(r#"{"timed_jobs": {"interval_ms": 0}}"#);
    assert_eq!(
        e.to_string(),
        "config: timed_jobs.interval_ms must be > 0 (got 0)"
    );
    let cases: [(&str, Change); 15] = [
        ("bridge.heartbeat_ms", |c| c.bridge.heartbeat_ms = 0),
        ("bridge.client_timeout_ms", |c| {
            c.bridge.client_timeout_ms = 0
        }),
        ("bridge.hello_timeout_ms", |c| c.bridge.hello_timeout_ms = 0),
        ("bridge.login_fresh_ms", |c| c.bridge.login_fresh_ms = 0),
        ("policy.rate_limit.window_ms", |c| {
            c.policy.rate_limit.window_ms = 0
        }),
        ("policy.stale_lease.sweep_interval_ms", |c| {
            c.policy.stale_lease.sweep_interval_ms = 0
        }),
        ("policy.stale_lease.idle_ms", |c| {
            c.policy.stale_lease.idle_ms = 0
        }),
        ("renewal.execution_timeout_ms", |c| {
            c.renewal.execution_timeout_ms = 0
        }),
        ("policy.waiter_timeout_ms", |c| {
            c.policy.waiter_timeout_ms = 0
        }),
        ("policy.circuit_breaker.open_ms", |c| {
            c.policy.circuit_breaker.open_ms = 0
        }),
        ("policy.backoff.base_ms", |c| c.policy.backoff.base_ms = 0),
        ("policy.backoff.max_ms", |c| c.policy.backoff.max_ms = 0),
        ("renewal.retry_base_delay_ms", |c| {
            c.renewal.retry_base_delay_ms = 0
        }),
        ("renewal.retry_max_delay_ms", |c| {
            c.renewal.retry_max_delay_ms = 0
        }),
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
    assert_eq!(
        e.to_string(),
        "config: renewal.max_attempts must be >= 1 (got 0)"
    );
    let cases: [(&str, Change); 16] = [
        ("limits.http_threads", |c| c.limits.http_threads = 0),
        ("limits.max_body_bytes", |c| c.limits.max_body_bytes = 0),
        ("limits.max_ws_clients", |c| c.limits.max_ws_clients = 0),
        ("limits.max_ws_frame_bytes", |c| {
            c.limits.max_ws_frame_bytes = 0
        }),
        ("timed_jobs.max_messages_per_tick", |c| {
            c.timed_jobs.max_messages_per_tick = 0
        }),
        ("timed_jobs.max_tasks_per_tick", |c| {
            c.timed_jobs.max_tasks_per_tick = 0
        }),
        ("timed_jobs.log_retention_days", |c| {
            c.timed_jobs.log_retention_days = 0
        }),
        ("renewal.summary_limit", |c| c.renewal.summary_limit = 0),
        ("renewal.max_attempts", |c| c.renewal.max_attempts = 0),
        ("renewal.failure_pause_threshold", |c| {
            c.renewal.failure_pause_threshold = 0
        }),
        ("renewal.repeat_pause_threshold", |c| {
            c.renewal.repeat_pause_threshold = 0
        }),
        ("renewal.retention_days", |c| c.renewal.retention_days = 0),
        ("messages.retention_days", |c| {
            c.messages.retention_days = Some(0)
        }),
        ("policy.rate_limit.requests_per_minute_per_platform", |c| {
            c.policy.rate_limit.requests_per_minute_per_platform = 0
        }),
        ("policy.circuit_breaker.failure_threshold", |c| {
            c.policy.circuit_breaker.failure_threshold = 0
        }),
        ("baa.max_blocks_per_message", |c| {
            c.baa.max_blocks_per_message = 0
        }),
    ];
    for (key, change) in cases {
        let e = invalid(change);
        assert_eq!(e.key, key);
        assert_eq!(e.message, "must be >= 1 (got 0)");
    }
    assert_eq!(
        invalid(|c| c.limits.http_threads = 5000).key,
        "limits.http_threads"
    );
    assert_eq!(
        invalid(|c| c.renewal.retention_days = u64::MAX).key,
        "renewal.retention_days"
    );
}

#[test]
fn ranges_must_be_ordered() {
    let e = invalid(|c| (c.policy.jitter.min_ms, c.policy.jitter.max_ms) = (5, 3));
    assert_eq!(
        e.to_string(),
        "config: policy.jitter.min_ms must be <= policy.jitter.max_ms (got 5 > 3)"
    );
    let e = file_error(r#"{"renewal": {"inter_job_jitter_ms": [9, 1]}}"#);
    assert_eq!(e.key, "renewal.inter_job_jitter_ms");
    assert!(e.message.contains("[9, 1]"), "{e}");
    assert_eq!(
        invalid(|c| c.policy.backoff.base_ms = 400_000).key,
        "policy.backoff.base_ms"
    );
    assert_eq!(
        invalid(|c| c.renewal.retry_base_delay_ms = 400_000).key,
        "renewal.retry_base_delay_ms"
    );
    let e = file_error(r#"{"renewal": {"retry_jitter_ratio": 1.5}}"#);
    assert_eq!(
        e.to_string(),
        "config: renewal.retry_jitter_ratio must be between 0 and 1 (got 1.5)"
    );
    assert_eq!(
        invalid(|c| c.renewal.retry_jitter_ratio = -0.1).key,
        "renewal.retry_jitter_ratio"
    );
    assert_eq!(
        invalid(|c| c.renewal.retry_jitter_ratio = f64::NAN).key,
        "renewal.retry_jitter_ratio"
    );
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
    assert_eq!(
        invalid(|c| c.renewal.template = "{Summary}".into()).key,
        "renewal.template"
    );
    assert_eq!(
        invalid(|c| c.renewal.template = "  ".into()).key,
        "renewal.template"
    );
}

#[test]
fn listen_addresses_must_resolve() {
    assert_eq!(
        error_of(&["--listen", "nonsense"], &Scratch::new().env()).key,
        "listen"
    );
    assert_eq!(
        invalid(|c| c.ws_listen = "127.0.0.1:99999".into()).key,
        "ws_listen"
    );
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
    for bad in [
        "ftp://x",
        "host.example",
        "http://",
        "https:///path",
        "http://x//",
        "http://x/?a=1",
        "http://a b",
    ] {
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
        let json = format!(
            r#"{{"allowed_origins": ["http://ok.example", {}]}}"#,
            serde_json::Value::from(bad)
        );
        assert_eq!(file_error(&json).key, "allowed_origins[1]", "{bad}");
    }
}

#[test]
fn baa_tools_and_roots() {
    let s = Scratch::new();
    let path = s.write("c.json", r#"{"baa": {"allowed_tools": ["exec", "files.write"], "allowed_roots": ["~/notes", "/srv"]}}"#);
    let c = config_of(&["--config", path.to_str().unwrap()], &s.env());
    assert_eq!(c.baa.allowed_roots[0], format!("{}/notes", s.dir.display()));
    assert_eq!(
        file_error(r#"{"baa": {"allowed_tools": ["status", "rm"]}}"#).key,
        "baa.allowed_tools[1]"
    );
    assert_eq!(
        file_error(r#"{"baa": {"allowed_roots": ["relative/dir"]}}"#).key,
        "baa.allowed_roots[0]"
    );
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
    assert!(config_of(&["--token", &"x".repeat(256)], &s.env())
        .token
        .is_some());
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
    assert!(config_of(
        &["--listen", "[::1]:0", "--ws-listen", "localhost:0"],
        &s.env()
    )
    .token
    .is_none());
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

// ---- output ---------------------------------------------------------------

#[test]
fn check_config_json_hides_the_token() {
    let s = Scratch::new();
    let state = s.dir.join("st");
    let args = [
        "check-config",
        "--token",
        "hunter2-secret",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let c = match run(&args, &s.env()) {
        Ok(Command::CheckConfig(c)) => c,
        other => panic!("{other:?}"),
    };
    let json = to_json(&c);
    assert_eq!(json["token"], "***");
    assert_eq!(json["state_dir"], state.to_str().unwrap());
    assert!(json.get("config_path").is_some());
    assert!(!json.to_string().contains("hunter2"));
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn error_display_format() {
    let e = ConfigError::new("renewal.max_attempts", "must be >= 1 (got 0)");
    assert_eq!(
        e.to_string(),
        "config: renewal.max_attempts must be >= 1 (got 0)"
    );
    let _: &dyn std::error::Error = &e;
}
