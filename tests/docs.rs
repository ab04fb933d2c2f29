//! The documentation is checked against the daemon, so it stays complete
//! and self-contained: every route a running daemon describes is in
//! docs/API.md, every error code the source can answer with is in its error
//! table with its status, every config key, flag and environment variable
//! is in docs/CONFIG.md, and no file of the repository points the reader
//! outside it (no path out of the tree, no link to a page that is not here).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every text file of the tree that a reader or the build sees.
fn repo_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "node_modules") {
                repo_files(&path, out);
            }
        } else if fs::read_to_string(&path).is_ok() {
            out.push(path);
        }
    }
}

#[test]
fn nothing_points_outside_the_repository() {
    // Names spelled in pieces so this file does not match itself.
    let outside = [
        format!("{}/{}", "shared", "spec"),
        format!("../{}", "shared"),
        format!("../{}", "seeds"),
        format!("{}_API.md", "HTTP"),
        format!("{}_PROTOCOL.md", "BRIDGE"),
        format!("{}VIEW.md", "OVER"),
    ];
    let mut files = Vec::new();
    repo_files(root(), &mut files);
    assert!(files.len() > 50, "walked the tree: {}", files.len());
    let mut found = Vec::new();
    for path in &files {
        let text = fs::read_to_string(path).unwrap();
        for needle in &outside {
            if text.contains(needle.as_str()) {
                found.push(format!("{}: {needle}", path.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(found.is_empty(), "references outside the repository:\n{}", found.join("\n"));
}

/// Every relative link of the README and docs/ leads to a file of the
/// tree, and no link leaves the project for the web.
#[test]
fn markdown_links_stay_inside_and_resolve() {
    let mut pages = vec![root().join("README.md")];
    for entry in fs::read_dir(root().join("docs")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            pages.push(entry.path());
        }
    }
    let mut bad = Vec::new();
    for page in &pages {
        let text = fs::read_to_string(page).unwrap();
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let target = &rest[..rest.find(')').unwrap_or(rest.len())];
            let file = target.split('#').next().unwrap_or("");
            let shown = page.strip_prefix(root()).unwrap().display();
            if target.contains("://") {
                bad.push(format!("{shown}: links out: {target}"));
            } else if !file.is_empty() && !page.parent().unwrap().join(file).exists() {
                bad.push(format!("{shown}: no such file: {target}"));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn every_route_is_in_the_api_page() {
    let api = read("docs/API.md");
    let d = Daemon::start(DaemonOpts::new());
    let routes = d.get("/v1/describe").data()["routes"].as_array().unwrap().clone();
    assert!(routes.len() >= 28, "{routes:?}");
    for r in &routes {
        let (method, path, id) =
            (r["method"].as_str().unwrap(), r["path"].as_str().unwrap(), r["id"].as_str().unwrap());
        let row = format!("| {method} | `{path}` | `{id}` |");
        assert!(api.contains(&row), "docs/API.md lists {row}");
        let heading = format!("`{method} {path}`");
        let section = format!("`{method} {}", path.rsplit_once('/').map_or(path, |(head, _)| head));
        assert!(
            api.contains(&heading) || api.contains(&section) || method == "POST",
            "docs/API.md has a section for {method} {path}"
        );
    }
}

/// `(status, code)` of every `ApiError::new(STATUS, "code", …)` in `src/`,
/// and the codes of the plugin and policy failures that become API errors.
fn error_codes() -> Vec<(String, String)> {
    let mut files = Vec::new();
    repo_files(&root().join("src"), &mut files);
    let mut codes = Vec::new();
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
        let text = fs::read_to_string(path).unwrap();
        for (i, _) in text.match_indices("ApiError::new(") {
            let args = text[i + "ApiError::new(".len()..].trim_start();
            let Some((status, rest)) = args.split_once(',') else { continue };
            let rest = rest.trim_start();
            if status.len() == 3 && status.bytes().all(|b| b.is_ascii_digit()) && rest.starts_with('"') {
                let code = &rest[1..rest[1..].find('"').unwrap() + 1];
                codes.push((status.to_string(), code.to_string()));
            }
        }
    }
    for (file, status_of) in [("src/bridge/hub.rs", "RequestError::"), ("src/policy/mod.rs", "RefusalCode::")]
    {
        let text = read(file);
        for line in text.lines().filter(|l| l.trim_start().starts_with(status_of) && l.contains("=> \"")) {
            let code = line.split('"').nth(1).unwrap().to_string();
            codes.push((String::new(), code));
        }
    }
    codes.sort();
    codes.dedup();
    codes
}

#[test]
fn every_error_code_is_in_the_api_page() {
    let api = read("docs/API.md");
    let table = &api[api.find("## Errors").expect("an Errors section")..];
    let codes = error_codes();
    assert!(codes.len() >= 20, "found the codes: {codes:?}");
    for (status, code) in codes {
        let row =
            if status.is_empty() { format!("| `{code}` |") } else { format!("| {status} | `{code}` |") };
        assert!(table.contains(&row), "docs/API.md's error table has {row}");
    }
}

/// The daemon's effective configuration with every default
/// (`check-config` on an empty state dir) and its keys, flattened with dots.
fn default_config() -> (Value, Vec<String>) {
    let tmp = TempDir::new("docs-config");
    let state = tmp.path().display().to_string();
    let o = run_to_exit(command(&["check-config", "--state-dir", &state]), Duration::from_secs(10));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut keys = Vec::new();
    flatten("", &config, &mut keys);
    (config, keys)
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(obj) => {
            for (k, v) in obj {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[test]
fn every_setting_flag_and_variable_is_in_the_config_page() {
    let doc = read("docs/CONFIG.md");
    let (_, mut keys) = default_config();
    keys.retain(|k| k != "state_dir" && k != "config_path");
    assert!(keys.len() > 50, "{keys:?}");
    for key in keys {
        assert!(doc.contains(&format!("| `{key}` |")), "docs/CONFIG.md has a row for {key}");
    }
    let help = String::from_utf8(run_to_exit(command(&["--help"]), Duration::from_secs(10)).stdout).unwrap();
    let words = help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    let named =
        |w: &&str| (w.starts_with("--") && *w != "--flag") || w.starts_with("BAA_") || *w == "RUST_LOG";
    for word in words.filter(named) {
        assert!(doc.contains(word), "docs/CONFIG.md mentions {word}");
    }
}

/// docs/SECURITY.md names settings and their defaults: each named setting
/// exists, and the defaults it quotes are the daemon's.
#[test]
fn the_security_page_names_real_settings_and_their_defaults() {
    let doc = read("docs/SECURITY.md");
    let (config, keys) = default_config();
    let sections: Vec<&str> = keys.iter().filter_map(|k| k.split_once('.').map(|(s, _)| s)).collect();
    let setting = |span: &str| {
        let plain = span.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.');
        plain && span.split_once('.').is_some_and(|(s, rest)| sections.contains(&s) && !rest.is_empty())
    };
    let spans: Vec<&str> = doc.split('`').skip(1).step_by(2).collect();
    let named: Vec<&&str> = spans.iter().filter(|s| setting(s)).collect();
    assert!(named.len() >= 6, "{named:?}");
    for span in named.into_iter().chain(&["token", "allowed_hosts", "allowed_origins", "public_base_url"]) {
        assert!(keys.iter().any(|k| k == span), "docs/SECURITY.md names `{span}`, not a setting");
    }
    let defaults = [
        ("limits.max_ws_frame_bytes", 8 << 20, "(8 MiB)"),
        ("limits.max_body_bytes", 1 << 20, "(1 MiB)"),
        ("bridge.hello_timeout_ms", 10_000, "(10 s)"),
    ];
    for (key, value, quoted) in defaults {
        let pointer = format!("/{}", key.replace('.', "/"));
        assert_eq!(config.pointer(&pointer), Some(&Value::from(value)), "{key}");
        assert!(doc.contains(&format!("`{key}` {quoted}")), "docs/SECURITY.md quotes {key} as {quoted}");
    }
}
