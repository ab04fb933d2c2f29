//! Tests of the command line, the config file, the precedence between
//! them, and every validation rule. The environment is always a fake map
//! and files live in unique directories under the system temp dir.
//!
//! The tests are split by topic: `defaults` (with the state dir),
//! `precedence`, `command_line`, `file`, `validation` (with the security
//! rule) and `output`. This file holds the helpers they share.

use super::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

mod command_line;
mod defaults;
mod file;
mod output;
mod precedence;
mod props;
mod validation;

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

/// The error's line without where the value came from (a scratch path).
fn bare(e: &ConfigError) -> String {
    ConfigError { origin: None, ..e.clone() }.to_string()
}

/// One edit to a default config, for the table-driven rule tests.
type Change = fn(&mut Config);

/// Validates defaults with one change applied.
fn invalid(change: impl FnOnce(&mut Config)) -> ConfigError {
    let mut c = Config::with_state_dir(PathBuf::from("/tmp/x"));
    change(&mut c);
    validate(&c).expect_err("expected a validation error")
}
