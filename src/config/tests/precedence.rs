//! Tests of the precedence flag > environment > config file > default.

use super::*;

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
    let env = with(&[("BAA_LISTEN", "127.0.0.1:1002"), ("BAA_TOKEN", "env-token")], s.env());
    let c = config_of(&[&state_arg], &env);
    assert_eq!((c.listen.as_str(), c.ws_listen.as_str()), ("127.0.0.1:1002", "127.0.0.1:2001"));
    assert_eq!(c.token.as_deref(), Some("env-token"));

    // A flag overrides the environment.
    let c = config_of(&[&state_arg, "--listen", "127.0.0.1:1003", "--token=flag-token"], &env);
    assert_eq!(c.listen, "127.0.0.1:1003");
    assert_eq!(c.token.as_deref(), Some("flag-token"));
}

#[test]
fn state_dir_flag_over_env() {
    let s = Scratch::new();
    let (a, b) = (s.dir.join("a"), s.dir.join("b"));
    let env = with(&[("BAA_STATE_DIR", a.to_str().unwrap())], s.env());
    assert_eq!(config_of(&[], &env).state_dir, a);
    assert_eq!(config_of(&["--state-dir", b.to_str().unwrap()], &env).state_dir, b);
}

#[test]
fn config_flag_over_env_over_state_dir_file() {
    let s = Scratch::new();
    let state = s.dir.join("state");
    s.write("state/config.json", r#"{"node_id": "from-state"}"#);
    let env_file = s.write("env.json", r#"{"node_id": "from-env"}"#);
    let flag_file = s.write("flag.json", r#"{"node_id": "from-flag"}"#);
    let env = with(
        &[("BAA_STATE_DIR", state.to_str().unwrap()), ("BAA_CONFIG", env_file.to_str().unwrap())],
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
    assert_eq!(config_of(&["--ws-listen=127.0.0.1:5002"], &env).ws_listen, "127.0.0.1:5002");
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
