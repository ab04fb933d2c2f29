//! Tests of the default configuration and of how the state dir is chosen.

use super::*;

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
        "public_base_url": null, "allowed_origins": [], "allowed_hosts": [],
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
    assert_eq!(config_of(&[], &relative).state_dir, s.dir.join(".local/state/baa-conductor"));
    let empty = with(&[("XDG_STATE_HOME", "")], s.env());
    assert_eq!(config_of(&[], &empty).state_dir, s.dir.join(".local/state/baa-conductor"));
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
