//! The command line and the environment, and the assembly of the effective
//! configuration from them: flag > environment > config file > default.
//! The environment is read through an injected lookup so that tests never
//! touch (or race on) the real process environment.

use super::{file, validate, Command, Config, ConfigError, ServiceAction, ServiceRequest};
use std::path::{Path, PathBuf};

/// An environment lookup, e.g. `&|k| std::env::var(k).ok()`.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

const HELP: &str = "\
baa-conductor - local daemon between an AI-chat browser plugin and your scripts

Usage:
  baa-conductor [serve] [FLAGS]          run the daemon (the default command)
  baa-conductor check-config [FLAGS]     validate the configuration, print it as JSON
  baa-conductor backup PATH [FLAGS]      copy the database to PATH (a new file, or a
                                         directory to create a dated file in); safe
                                         while the daemon runs
  baa-conductor service install|uninstall|status [--user] [FLAGS]
                                         run the daemon as a systemd (Linux) or launchd
                                         (macOS) service with these flags; --user for
                                         a per-user service
  baa-conductor --version | -V           print the version and the database schema
  baa-conductor --help | -h              print this help

Flags (also accepted as --flag=value):
  --config FILE           JSON config file (default: STATE_DIR/config.json if it exists)
  --state-dir DIR         state directory (default: $XDG_STATE_HOME/baa-conductor,
                          else ~/.local/state/baa-conductor;
                          macOS: ~/Library/Application Support/baa-conductor)
  --listen HOST:PORT      HTTP API address (default 127.0.0.1:4317; port 0 = any free port)
  --ws-listen HOST:PORT   plugin WebSocket address (default 127.0.0.1:4318)
  --token TOKEN           shared secret for the API and the WebSocket; required
                          when either address is not a loopback address

Environment (an empty variable counts as unset):
  BAA_CONFIG, BAA_STATE_DIR, BAA_LISTEN, BAA_WS_LISTEN, BAA_TOKEN
                          same as the flags above
  RUST_LOG                log filter (default info)
  BAA_SERVICE_DIR         service: where to write the unit/plist instead of the
                          service manager's directory
  BAA_SERVICE_CTL         service: program run instead of systemctl/launchctl
                          (none = run nothing, print the commands)

Precedence: flag > environment > config file > default.

Exit codes:
  0  clean stop
  1  any other fatal error
  2  bad configuration or command line (one line on stderr naming the key)
";

/// Usage text: commands, flags, environment variables, exit codes.
pub fn help_text() -> &'static str {
    HELP
}

/// The values the flags (or their environment variables) may set.
#[derive(Default)]
struct Flags {
    config: Option<String>,
    state_dir: Option<String>,
    listen: Option<String>,
    ws_listen: Option<String>,
    token: Option<String>,
}

impl Flags {
    fn slot(&mut self, flag: &str) -> Option<&mut Option<String>> {
        match flag {
            "--config" => Some(&mut self.config),
            "--state-dir" => Some(&mut self.state_dir),
            "--listen" => Some(&mut self.listen),
            "--ws-listen" => Some(&mut self.ws_listen),
            "--token" => Some(&mut self.token),
            _ => None,
        }
    }
}

enum Parsed {
    Help,
    Version,
    Flags(Flags),
}

/// The command word and what follows it.
enum Verb {
    Serve,
    CheckConfig,
    Backup(String),
    Service(ServiceAction, bool),
}

const COMMANDS: &str = "serve, check-config, backup or service";

/// Splits off the command word (and a command's own arguments: backup's
/// PATH, service's action and `--user`), leaving the flags.
fn verb(args: &[String]) -> Result<(Verb, Vec<String>), ConfigError> {
    let rest = |from: usize| args.get(from..).unwrap_or_default().to_vec();
    match args.first().map(String::as_str) {
        Some("serve") => Ok((Verb::Serve, rest(1))),
        Some("check-config") => Ok((Verb::CheckConfig, rest(1))),
        Some("backup") => match args.get(1) {
            Some(path) if !path.starts_with('-') => Ok((Verb::Backup(path.clone()), rest(2))),
            _ => Err(ConfigError::new("backup", "needs a destination: baa-conductor backup PATH [FLAGS]")),
        },
        Some("service") => {
            let action = args.get(1).and_then(|w| ServiceAction::parse(w)).ok_or_else(|| {
                ConfigError::new("service", "needs an action: install, uninstall or status (see --help)")
            })?;
            let flags: Vec<String> = rest(2);
            let user = flags.iter().any(|a| a == "--user");
            Ok((Verb::Service(action, user), flags.into_iter().filter(|a| a != "--user").collect()))
        }
        Some(word) if !word.starts_with('-') => {
            let message =
                match super::suggest::closest(word, COMMANDS.split(", ").flat_map(|w| w.split(" or "))) {
                    Some(known) => format!("is not a known command; did you mean {known}? (see --help)"),
                    None => format!("is not a known command (expected {COMMANDS}; see --help)"),
                };
            Err(ConfigError::new(word, message))
        }
        _ => Ok((Verb::Serve, args.to_vec())),
    }
}

/// Parses the arguments (without `argv[0]`), reads the config file, applies
/// the environment and validates the result.
pub fn parse_command(args: &[String], env: Env) -> Result<Command, ConfigError> {
    let (verb, rest) = verb(args)?;
    let flags = match parse_flags(&rest)? {
        Parsed::Help => return Ok(Command::Help),
        Parsed::Version => return Ok(Command::Version),
        Parsed::Flags(flags) => flags,
    };
    let (config, origins) = build(&flags, env)?;
    validate(&config).map_err(|e| origins.annotate(e))?;
    Ok(match verb {
        Verb::Serve => Command::Serve(config),
        Verb::CheckConfig => Command::CheckConfig(config),
        Verb::Backup(path) => Command::Backup(config, absolute(Path::new(&path), "backup")?),
        Verb::Service(action, user) => {
            let mut overrides: Vec<(&'static str, String)> = Vec::new();
            for (key, _) in &origins.overridden {
                let value = match *key {
                    "listen" => config.listen.clone(),
                    "ws_listen" => config.ws_listen.clone(),
                    _ => continue,
                };
                overrides.push((flag_of(key), value));
            }
            if let Some(path) =
                config.config_path.as_ref().filter(|p| **p != config.state_dir.join("config.json"))
            {
                overrides.push(("--config", path.to_string_lossy().into_owned()));
            }
            let token_outside_file = origins.overridden.iter().any(|(k, _)| *k == "token");
            Command::Service(Box::new(ServiceRequest { config, action, user, overrides, token_outside_file }))
        }
    })
}

fn flag_of(key: &str) -> &'static str {
    match key {
        "listen" => "--listen",
        _ => "--ws-listen",
    }
}

/// Where the values that can come from several places came from, so that a
/// validation error can say which setting to fix.
#[derive(Default)]
struct Origins {
    /// The config file, as read.
    file: Option<(PathBuf, serde_json::Value)>,
    /// `(key, flag or variable)` for the keys a flag or variable set.
    overridden: Vec<(&'static str, &'static str)>,
}

impl Origins {
    fn annotate(&self, err: ConfigError) -> ConfigError {
        // `allowed_hosts[2]` was set wherever `allowed_hosts` was.
        let key = err.key.split('[').next().unwrap_or(&err.key).to_string();
        if let Some((_, by)) = self.overridden.iter().find(|(k, _)| *k == key) {
            return err.with_origin(format!("set by {by}"));
        }
        match &self.file {
            Some((path, root)) if file_has(root, &key) => err.with_origin(format!("in {}", path.display())),
            _ => err,
        }
    }
}

/// True when the file's JSON sets the dotted `key`.
fn file_has(root: &serde_json::Value, key: &str) -> bool {
    let mut node = root;
    for part in key.split('.') {
        match node.get(part) {
            Some(next) => node = next,
            None => return false,
        }
    }
    true
}

/// Left to right, so `--help` after a bad flag reports the bad flag.
/// A following argument that starts with `--` is taken as a missing value
/// rather than swallowed (`--listen --token x`); such a value can still be
/// given as `--flag=--value`.
fn parse_flags(args: &[String]) -> Result<Parsed, ConfigError> {
    let mut flags = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        match arg {
            "--help" | "-h" => return Ok(Parsed::Help),
            "--version" | "-V" => return Ok(Parsed::Version),
            _ if !arg.starts_with('-') => {
                return Err(ConfigError::new(arg, "is an unexpected argument (see --help)"))
            }
            _ => {}
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (arg, None),
        };
        if inline.is_some() && matches!(name, "--help" | "-h" | "--version" | "-V") {
            return Err(ConfigError::new(name, "does not take a value"));
        }
        let slot = flags.slot(name).ok_or_else(|| unknown_flag(name))?;
        let value = match inline {
            Some(value) => value,
            None => {
                i += 1;
                args.get(i).filter(|v| !v.starts_with("--")).cloned().unwrap_or_default()
            }
        };
        if value.is_empty() {
            return Err(ConfigError::new(name, "needs a value"));
        }
        if slot.is_some() {
            return Err(ConfigError::new(name, "is given more than once"));
        }
        *slot = Some(value);
        i += 1;
    }
    Ok(Parsed::Flags(flags))
}

const FLAGS: [&str; 5] = ["--config", "--state-dir", "--listen", "--ws-listen", "--token"];

fn unknown_flag(name: &str) -> ConfigError {
    match super::suggest::closest(name, FLAGS) {
        Some(flag) => {
            ConfigError::new(name, format!("is not a known flag; did you mean {flag}? (see --help)"))
        }
        None => ConfigError::new(name, "is not a known flag (see --help)"),
    }
}

/// The environment with empty variables treated as unset, which is what
/// `BAA_TOKEN= baa-conductor` is meant to say.
fn lookup(env: Env, key: &str) -> Option<String> {
    env(key).filter(|v| !v.is_empty())
}

/// The flag if given, else the environment variable, with the name of the
/// one that won (for error messages).
fn pick(
    flag: &Option<String>,
    flag_name: &'static str,
    env: Env,
    var: &'static str,
) -> Option<(String, &'static str)> {
    match flag {
        Some(v) => Some((v.clone(), flag_name)),
        None => lookup(env, var).map(|v| (v, var)),
    }
}

fn build(flags: &Flags, env: Env) -> Result<(Config, Origins), ConfigError> {
    let state_dir = match pick(&flags.state_dir, "--state-dir", env, "BAA_STATE_DIR") {
        Some((dir, source)) => absolute(Path::new(&dir), source)?,
        None => default_state_dir(env)?,
    };
    let mut config = Config::with_state_dir(state_dir);
    let mut origins = Origins::default();
    if let Some((path, source)) = config_file(flags, env, &config.state_dir)? {
        let root = file::read(&path, source)?;
        file::apply(&mut config, &root).map_err(|e| e.with_origin(format!("in {}", path.display())))?;
        config.config_path = Some(path.clone());
        origins.file = Some((path, root));
    }
    if let Some((v, by)) = pick(&flags.listen, "--listen", env, "BAA_LISTEN") {
        config.listen = v;
        origins.overridden.push(("listen", by));
    }
    if let Some((v, by)) = pick(&flags.ws_listen, "--ws-listen", env, "BAA_WS_LISTEN") {
        config.ws_listen = v;
        origins.overridden.push(("ws_listen", by));
    }
    if let Some((v, by)) = pick(&flags.token, "--token", env, "BAA_TOKEN") {
        config.token = Some(v);
        origins.overridden.push(("token", by));
    }
    normalize(&mut config, env).map_err(|e| origins.annotate(e))?;
    Ok((config, origins))
}

/// The config file to read, if any, and the setting that named it. An
/// explicitly named file must exist; the default one is optional.
fn config_file(
    flags: &Flags,
    env: Env,
    state_dir: &Path,
) -> Result<Option<(PathBuf, &'static str)>, ConfigError> {
    if let Some((path, source)) = pick(&flags.config, "--config", env, "BAA_CONFIG") {
        return Ok(Some((absolute(Path::new(&path), source)?, source)));
    }
    let default = state_dir.join("config.json");
    Ok(default.exists().then_some((default, "config_file")))
}

/// Relative paths are made absolute once, here, so that check-config,
/// `conductor.json` and `/v1/system` all show where state really lives.
fn absolute(path: &Path, source: &str) -> Result<PathBuf, ConfigError> {
    std::path::absolute(path)
        .map_err(|e| ConfigError::new(source, format!("cannot be made absolute ({}): {e}", path.display())))
}

/// `$XDG_STATE_HOME/baa-conductor` when XDG_STATE_HOME is set to an
/// absolute path (the XDG spec says to ignore relative ones), else the
/// platform's per-user state location under HOME.
pub fn default_state_dir(env: Env) -> Result<PathBuf, ConfigError> {
    if let Some(xdg) = lookup(env, "XDG_STATE_HOME").filter(|x| Path::new(x).is_absolute()) {
        return Ok(PathBuf::from(xdg).join("baa-conductor"));
    }
    let home = lookup(env, "HOME").ok_or_else(|| {
        ConfigError::new(
            "state_dir",
            "cannot be determined: neither HOME nor XDG_STATE_HOME is set (use --state-dir or BAA_STATE_DIR)",
        )
    })?;
    let base = PathBuf::from(home);
    Ok(if cfg!(target_os = "macos") {
        base.join("Library/Application Support/baa-conductor")
    } else {
        base.join(".local/state/baa-conductor")
    })
}

/// Canonical forms, so that consumers compare and concatenate without
/// second-guessing: one trailing `/` is dropped from the public base URL
/// and from origins, origins are lower-cased (browsers send them so), and
/// a leading `~` in a BAA root is expanded with HOME.
fn normalize(config: &mut Config, env: Env) -> Result<(), ConfigError> {
    if let Some(url) = config.public_base_url.as_mut() {
        strip_one_slash(url);
    }
    for origin in config.allowed_origins.iter_mut() {
        *origin = origin.to_ascii_lowercase();
        strip_one_slash(origin);
    }
    for host in config.allowed_hosts.iter_mut() {
        *host = host.to_ascii_lowercase();
    }
    for (i, root) in config.baa.allowed_roots.iter_mut().enumerate() {
        if let Some(expanded) = expand_home(root, env, i)? {
            *root = expanded;
        }
    }
    Ok(())
}

/// Drops one trailing `/` unless that would eat into `scheme://`.
fn strip_one_slash(url: &mut String) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    if url.ends_with('/') && url.len() > after_scheme + 1 {
        url.pop();
    }
}

fn expand_home(root: &str, env: Env, index: usize) -> Result<Option<String>, ConfigError> {
    let rest = match root.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => return Ok(None),
    };
    let home = lookup(env, "HOME").ok_or_else(|| {
        ConfigError::new(
            format!("baa.allowed_roots[{index}]"),
            format!("uses ~ but HOME is not set (got {root:?})"),
        )
    })?;
    let expanded = format!("{}{rest}", home.trim_end_matches('/'));
    Ok(Some(if expanded.is_empty() { "/".to_string() } else { expanded }))
}
