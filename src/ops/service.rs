//! `baa-conductor service install|uninstall|status [--user]`: runs the
//! daemon under the system's service manager — systemd on Linux (a unit
//! in `~/.config/systemd/user/` with `--user`, else `/etc/systemd/system/`),
//! launchd on macOS (`~/Library/LaunchAgents/` or `/Library/LaunchDaemons/`)
//! — with this binary, the state dir and settings of this command line,
//! and restart on failure. A token given by flag or `BAA_TOKEN` goes to a
//! private file, never into the unit.
//!
//! Two environment variables make it testable and packageable:
//! `BAA_SERVICE_DIR` puts the file in another directory, and
//! `BAA_SERVICE_CTL` names the program run instead of `systemctl` /
//! `launchctl` (`none`: run nothing, print what would run).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::unit::{self, Spec, LABEL, NAME};
use crate::config::{ServiceAction, ServiceRequest};

/// An environment lookup, e.g. `&|k| std::env::var(k).ok()`.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Which service manager, and where its files go.
struct Manager {
    launchd: bool,
    user: bool,
    file: PathBuf,
    /// `systemctl`, `launchctl`, a stand-in, or None for `none`.
    ctl: Option<String>,
}

impl Manager {
    fn new(req: &ServiceRequest, env: Env) -> Result<Manager, String> {
        let launchd = cfg!(target_os = "macos");
        let home = || env("HOME").filter(|h| !h.is_empty()).ok_or("HOME is not set".to_string());
        let dir = match env("BAA_SERVICE_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None if launchd && req.user => PathBuf::from(home()?).join("Library/LaunchAgents"),
            None if launchd => PathBuf::from("/Library/LaunchDaemons"),
            None if req.user => match env("XDG_CONFIG_HOME").filter(|x| x.starts_with('/')) {
                Some(xdg) => PathBuf::from(xdg).join("systemd/user"),
                None => PathBuf::from(home()?).join(".config/systemd/user"),
            },
            None => PathBuf::from("/etc/systemd/system"),
        };
        let file =
            if launchd { dir.join(format!("{LABEL}.plist")) } else { dir.join(format!("{NAME}.service")) };
        let ctl = match env("BAA_SERVICE_CTL").filter(|c| !c.is_empty()) {
            Some(c) if c == "none" => None,
            Some(c) => Some(c),
            None => Some(if launchd { "launchctl" } else { "systemctl" }.to_string()),
        };
        Ok(Manager { launchd, user: req.user, file, ctl })
    }

    /// The manager's commands for one step, as argument lists.
    fn commands(&self, action: ServiceAction, uid: &str) -> Vec<Vec<String>> {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let unit = format!("{NAME}.service");
        if self.launchd {
            let domain = if self.user { format!("gui/{uid}") } else { "system".to_string() };
            let file = self.file.to_string_lossy().into_owned();
            return match action {
                ServiceAction::Install => vec![words(&["bootstrap", &domain, &file])],
                ServiceAction::Uninstall => vec![words(&["bootout", &format!("{domain}/{LABEL}")])],
                ServiceAction::Status => vec![words(&["print", &format!("{domain}/{LABEL}")])],
            };
        }
        let scope: &[&str] = if self.user { &["--user"] } else { &[] };
        let with = |w: &[&str]| [scope, w].concat().iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match action {
            ServiceAction::Install => vec![with(&["daemon-reload"]), with(&["enable", "--now", &unit])],
            ServiceAction::Uninstall => vec![with(&["disable", "--now", &unit]), with(&["daemon-reload"])],
            ServiceAction::Status => vec![with(&["status", "--no-pager", &unit])],
        }
    }

    /// Runs one command of the manager; its exit code, or what went wrong.
    fn run(&self, args: &[String]) -> Result<i32, String> {
        let Some(ctl) = &self.ctl else {
            println!(
                "would run: {} {}",
                if self.launchd { "launchctl" } else { "systemctl" },
                args.join(" ")
            );
            return Ok(0);
        };
        let status = Command::new(ctl).args(args).status().map_err(|e| format!("cannot run {ctl}: {e}"))?;
        Ok(status.code().unwrap_or(1))
    }
}

/// Carries out the request; the process's exit code, or an error line.
pub fn run(req: &ServiceRequest, env: Env) -> Result<u8, String> {
    let manager = Manager::new(req, env)?;
    let uid = user_id();
    match req.action {
        ServiceAction::Install => install(req, &manager, &uid),
        ServiceAction::Uninstall => uninstall(req, &manager, &uid),
        ServiceAction::Status => {
            let installed = if manager.file.exists() { "installed" } else { "not installed" };
            println!("service file: {} ({installed})", manager.file.display());
            let mut code = 0;
            for cmd in manager.commands(ServiceAction::Status, &uid) {
                code = manager.run(&cmd)?;
            }
            Ok(u8::try_from(code).unwrap_or(1))
        }
    }
}

fn install(req: &ServiceRequest, m: &Manager, uid: &str) -> Result<u8, String> {
    let config = &req.config;
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| format!("cannot find this program's path: {e}"))?;
    let args = serve_args(req);
    let env_path = config.state_dir.join("service.env");
    let token = req.token_outside_file.then(|| config.token.clone()).flatten();
    fs::create_dir_all(&config.state_dir)
        .map_err(|e| format!("cannot create {}: {e}", config.state_dir.display()))?;
    let mut env = Vec::new();
    if let Some(token) = &token {
        if m.launchd {
            env.push(("BAA_TOKEN", token.clone()));
        } else {
            write_private(&env_path, &unit::env_line("BAA_TOKEN", token))?;
        }
    }
    let logs = config.state_dir.join("logs");
    let run_as = user_name();
    let spec = Spec {
        exe: &exe,
        args: &args,
        env_file: (token.is_some() && !m.launchd).then_some(env_path.as_path()),
        env: &env,
        per_user: req.user,
        run_as: run_as.as_deref(),
        log_file: &logs.join("daemon.log"),
    };
    let text = if m.launchd { unit::launchd_plist(&spec) } else { unit::systemd_unit(&spec) };
    if let Some(dir) = m.file.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // The plist may hold the token: private. A unit never does.
    if m.launchd {
        write_private(&m.file, &text)?
    } else {
        write_file(&m.file, &text)?
    };
    println!("wrote {}", m.file.display());
    activate(m, uid)?;
    let scope = if req.user { " --user" } else { "" };
    println!(
        "installed: it starts now and at every {}; `baa-conductor service status{scope}` shows it",
        if req.user { "login" } else { "boot" }
    );
    Ok(0)
}

/// The daemon's command line in the service file: `serve`, the state
/// directory, and the settings given on the `service install` line.
fn serve_args(req: &ServiceRequest) -> Vec<String> {
    let mut args =
        vec!["serve".to_string(), "--state-dir".to_string(), req.config.state_dir.to_string_lossy().into()];
    for (flag, value) in &req.overrides {
        args.extend([flag.to_string(), value.clone()]);
    }
    args
}

/// Runs the service manager's commands that load and start the written file.
fn activate(m: &Manager, uid: &str) -> Result<(), String> {
    for cmd in m.commands(ServiceAction::Install, uid) {
        let code = m.run(&cmd)?;
        if code != 0 {
            return Err(format!(
                "`{}` failed (exit {code}); the service file stays at {}",
                cmd.join(" "),
                m.file.display()
            ));
        }
    }
    Ok(())
}

fn uninstall(req: &ServiceRequest, m: &Manager, uid: &str) -> Result<u8, String> {
    if !m.file.exists() {
        println!("not installed: {} does not exist", m.file.display());
        return Ok(0);
    }
    let mut failed = None;
    for cmd in m.commands(ServiceAction::Uninstall, uid) {
        // A service that is not running is no reason to keep its file.
        if let Ok(code) = m.run(&cmd) {
            if code != 0 {
                failed.get_or_insert(format!("`{}` exited {code}", cmd.join(" ")));
            }
        }
    }
    fs::remove_file(&m.file).map_err(|e| format!("cannot remove {}: {e}", m.file.display()))?;
    let _ = fs::remove_file(req.config.state_dir.join("service.env"));
    println!("removed {}", m.file.display());
    if let Some(why) = failed {
        println!("note: {why}");
    }
    Ok(0)
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Writes a file only its owner can read, created so from the start.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        if path.exists() {
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
        }
    }
    let mut file = options.open(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The numeric user id (launchd's `gui/<uid>` domain), from `id -u`.
fn user_id() -> String {
    command_output("id", &["-u"]).unwrap_or_else(|| "0".to_string())
}

/// Who a system-wide service runs as: whoever installs it.
fn user_name() -> Option<String> {
    command_output("id", &["-un"])
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}
