//! Tests of the output: the check-config JSON hides the token, and the
//! error display format.

use super::*;

#[test]
fn check_config_json_hides_the_token() {
    let s = Scratch::new();
    let state = s.dir.join("st");
    let args = ["check-config", "--token", "hunter2-secret", "--state-dir", state.to_str().unwrap()];
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
    assert_eq!(e.to_string(), "config: renewal.max_attempts must be >= 1 (got 0)");
    let _: &dyn std::error::Error = &e;
}
