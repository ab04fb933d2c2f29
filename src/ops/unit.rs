//! The texts of the service files `service install` writes: a systemd unit
//! (Linux) and a launchd property list (macOS). Pure functions of what the
//! service must run, so they are tested as text; `service.rs` writes them
//! and talks to the service manager.

use std::path::Path;

/// The service's name in both managers.
pub const NAME: &str = "baa-conductor";
/// The launchd label.
pub const LABEL: &str = "local.baa-conductor";

/// What the service runs, and as whom.
pub struct Spec<'a> {
    /// The daemon binary, absolute.
    pub exe: &'a Path,
    /// Its arguments (`serve --state-dir …`).
    pub args: &'a [String],
    /// A private file with `BAA_TOKEN`, when the token does not come from
    /// the config file (systemd only; launchd gets `env` below).
    pub env_file: Option<&'a Path>,
    /// Environment for launchd's plist (which is then made private).
    pub env: &'a [(&'a str, String)],
    /// A per-user service; otherwise system-wide, run as `run_as`.
    pub per_user: bool,
    pub run_as: Option<&'a str>,
    /// launchd's stdout/stderr file (systemd uses the journal).
    pub log_file: &'a Path,
}

/// A systemd unit that starts the daemon at boot (or login, for a user
/// unit) and restarts it when it fails — except on exit code 2, a bad
/// configuration that a restart cannot fix.
pub fn systemd_unit(spec: &Spec) -> String {
    let mut exec = vec![systemd_quote(&spec.exe.to_string_lossy())];
    exec.extend(spec.args.iter().map(|a| systemd_quote(a)));
    let mut out = String::new();
    out.push_str(
        "# Written by `baa-conductor service install`; `baa-conductor service uninstall` removes it.\n",
    );
    out.push_str("[Unit]\n");
    out.push_str("Description=baa-conductor: AI-chat renewal, relay and request policy for your browser\n");
    out.push_str("After=network.target\n\n");
    out.push_str("[Service]\nType=simple\n");
    out.push_str(&format!("ExecStart={}\n", exec.join(" ")));
    if let Some(file) = spec.env_file {
        out.push_str(&format!("EnvironmentFile={}\n", specifiers(&file.to_string_lossy())));
    }
    if let (false, Some(user)) = (spec.per_user, spec.run_as) {
        out.push_str(&format!("User={user}\n"));
    }
    out.push_str("Restart=on-failure\nRestartSec=2\n");
    out.push_str("# Exit code 2 is a bad configuration: restarting cannot fix it.\n");
    out.push_str("RestartPreventExitStatus=2\n");
    out.push_str("# The daemon stops within 5 s of SIGTERM (requests in flight get that long).\n");
    out.push_str("TimeoutStopSec=20\n");
    out.push_str("UMask=0077\nNoNewPrivileges=yes\n\n");
    let target = if spec.per_user { "default.target" } else { "multi-user.target" };
    out.push_str(&format!("[Install]\nWantedBy={target}\n"));
    out
}

/// One `ExecStart` word: `%` and `$` are taken literally, and a word with
/// blanks, quotes or backslashes is double-quoted with C escapes.
pub fn systemd_quote(word: &str) -> String {
    let word = specifiers(word).replace('$', "$$");
    if !word.is_empty() && !word.contains([' ', '\t', '"', '\'', '\\']) {
        return word;
    }
    let escaped = word.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// `%` starts a systemd specifier; `%%` is a literal one.
fn specifiers(text: &str) -> String {
    text.replace('%', "%%")
}

/// A line of a systemd environment file: the value double-quoted, with
/// the characters that are special inside double quotes escaped.
pub fn env_line(key: &str, value: &str) -> String {
    let mut escaped = String::new();
    for ch in value.chars() {
        if matches!(ch, '\\' | '"' | '$' | '`') {
            escaped.push('\\');
        }
        escaped.push(ch);
    }
    format!("{key}=\"{escaped}\"\n")
}

/// A launchd property list: started at load (login, or boot for a system
/// daemon) and started again when it exits with a failure.
pub fn launchd_plist(spec: &Spec) -> String {
    let mut args = vec![xml(&spec.exe.to_string_lossy())];
    args.extend(spec.args.iter().map(|a| xml(a)));
    let args: String = args.iter().map(|a| format!("    <string>{a}</string>\n")).collect();
    let log = xml(&spec.log_file.to_string_lossy());
    let mut out =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\">\n<dict>\n");
    out.push_str(&format!("  <key>Label</key>\n  <string>{LABEL}</string>\n"));
    out.push_str(&format!("  <key>ProgramArguments</key>\n  <array>\n{args}  </array>\n"));
    out.push_str("  <key>RunAtLoad</key>\n  <true/>\n");
    out.push_str(
        "  <key>KeepAlive</key>\n  <dict>\n    <key>SuccessfulExit</key>\n    <false/>\n  </dict>\n",
    );
    out.push_str("  <key>ThrottleInterval</key>\n  <integer>5</integer>\n");
    out.push_str(&format!("  <key>StandardOutPath</key>\n  <string>{log}</string>\n"));
    out.push_str(&format!("  <key>StandardErrorPath</key>\n  <string>{log}</string>\n"));
    if let (false, Some(user)) = (spec.per_user, spec.run_as) {
        out.push_str(&format!("  <key>UserName</key>\n  <string>{}</string>\n", xml(user)));
    }
    if !spec.env.is_empty() {
        out.push_str("  <key>EnvironmentVariables</key>\n  <dict>\n");
        for (k, v) in spec.env {
            out.push_str(&format!("    <key>{}</key>\n    <string>{}</string>\n", xml(k), xml(v)));
        }
        out.push_str("  </dict>\n");
    }
    out.push_str("</dict>\n</plist>\n");
    out
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(args: &'a [String], env: &'a [(&'a str, String)], per_user: bool) -> Spec<'a> {
        Spec {
            exe: Path::new("/opt/baa/bin/baa-conductor"),
            args,
            env_file: Some(Path::new("/home/me/state dir/service.env")),
            env,
            per_user,
            run_as: Some("me"),
            log_file: Path::new("/home/me/state/logs/daemon.log"),
        }
    }

    #[test]
    fn exec_words_are_quoted_for_systemd() {
        assert_eq!(systemd_quote("/usr/bin/x"), "/usr/bin/x");
        assert_eq!(systemd_quote("/a b/c"), "\"/a b/c\"");
        assert_eq!(systemd_quote("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
        assert_eq!(systemd_quote("100%"), "100%%");
        assert_eq!(systemd_quote("$HOME"), "$$HOME");
        assert_eq!(systemd_quote(""), "\"\"");
    }

    #[test]
    fn a_user_unit_restarts_on_failure_and_keeps_the_token_out() {
        let args = vec!["serve".to_string(), "--state-dir".into(), "/home/me/state dir".into()];
        let unit = systemd_unit(&spec(&args, &[], true));
        assert!(
            unit.contains(
                "\nExecStart=/opt/baa/bin/baa-conductor serve --state-dir \"/home/me/state dir\"\n"
            ),
            "{unit}"
        );
        assert!(unit.contains("\nRestart=on-failure\n"));
        assert!(unit.contains("\nRestartPreventExitStatus=2\n"));
        assert!(unit.contains("\nEnvironmentFile=/home/me/state dir/service.env\n"));
        assert!(unit.contains("\nWantedBy=default.target\n"));
        assert!(!unit.contains("User="), "a user unit runs as its user");
        let system = systemd_unit(&spec(&args, &[], false));
        assert!(system.contains("\nUser=me\n") && system.contains("\nWantedBy=multi-user.target\n"));
    }

    #[test]
    fn env_lines_escape_what_double_quotes_treat_specially() {
        assert_eq!(env_line("BAA_TOKEN", "a$b\"c\\d`e"), "BAA_TOKEN=\"a\\$b\\\"c\\\\d\\`e\"\n");
    }

    #[test]
    fn the_plist_keeps_it_alive_on_failure_only() {
        let args = vec!["serve".to_string(), "--state-dir".into(), "/x<&>".into()];
        let env = [("BAA_TOKEN", "t&k".to_string())];
        let plist = launchd_plist(&spec(&args, &env, true));
        assert!(plist.contains("<key>SuccessfulExit</key>\n    <false/>"), "{plist}");
        assert!(plist.contains("<string>/x&lt;&amp;&gt;</string>"));
        assert!(plist.contains("<key>BAA_TOKEN</key>\n    <string>t&amp;k</string>"));
        assert!(!plist.contains("UserName"));
        assert!(
            launchd_plist(&spec(&args, &[], false)).contains("<key>UserName</key>\n  <string>me</string>")
        );
    }
}
