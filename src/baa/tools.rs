//! The tools of target `conductor` (docs/BAA.md "Tools"): what each accepts, the
//! checks a block passes before anything runs (`check`: known tool, allowed
//! tool, valid params, paths inside the roots), and running it (`run`).
//! Nothing here logs a block's text or output: they may hold secrets.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::exec;
#[cfg(test)]
use super::files::MAX_READ_BYTES;
use super::files::{read_file, write_file};
use super::params::Params;
use super::paths::{resolve_inside, PathError};
use super::reply::excerpt;
use super::result::{failed, succeeded};
use super::Reason;
use crate::http::Ctx;
use crate::store::{BlockResult, ConversationStatus, Execution, Transition};

const DEFAULT_TIMEOUT_MS: u64 = 30_000;
const MAX_TIMEOUT_MS: u64 = 600_000;

/// One tool as `describe` lists it.
pub struct Spec {
    pub name: &'static str,
    pub params: &'static str,
    pub does: &'static str,
}

/// Every tool, in `config::BAA_TOOLS` order.
pub const SPECS: [Spec; 8] = [
    Spec { name: "describe", params: "none", does: "lists the enabled tools and their params" },
    Spec { name: "status", params: "none", does: "the daemon's /v1/system summary" },
    Spec {
        name: "exec",
        params: "text = command, or {\"command\", \"cwd\"?, \"timeout_ms\"?}",
        does: "runs sh -c with a timeout (default 30000 ms, max 600000); exit code, stdout, stderr",
    },
    Spec {
        name: "files.read",
        params: "{\"path\"} or text = path",
        does: "reads a UTF-8 file of at most 1 MiB",
    },
    Spec {
        name: "files.write",
        params: "{\"path\", \"content\", \"append\"?}",
        does: "writes (or appends to) a file, creating parent directories",
    },
    Spec { name: "renewal.pause", params: "none", does: "pauses renewal of this conversation" },
    Spec { name: "renewal.auto", params: "none", does: "switches this conversation to auto" },
    Spec { name: "renewal.manual", params: "none", does: "switches this conversation to manual" },
];

/// What a block that passed the checks will do.
#[derive(Debug, PartialEq)]
pub enum Plan {
    Describe,
    Status,
    Exec { command: String, cwd: PathBuf, timeout: Duration },
    Read { path: PathBuf },
    Write { path: PathBuf, content: String, append: bool },
    Switch(ConversationStatus),
}

/// Why a block does not run: its reason (which decides `invalid` or
/// `rejected`) and a sentence for the person and the assistant.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub reason: Reason,
    pub summary: String,
}

fn refuse(reason: Reason, summary: impl Into<String>) -> Refusal {
    Refusal { reason, summary: summary.into() }
}

pub struct Tools {
    pub ctx: Arc<Ctx>,
    /// `$HOME`, for `~/…` paths.
    pub home: Option<String>,
}

impl Tools {
    /// Every check, before anything is opened, created or run.
    pub fn check(&self, e: &Execution) -> Result<Plan, Refusal> {
        let baa = &self.ctx.config.baa;
        if !baa.enabled {
            return Err(refuse(Reason::Disabled, "instruction blocks are switched off (baa.enabled)"));
        }
        let (target, tool) = (e.target.as_deref().unwrap_or(""), e.tool.as_deref().unwrap_or(""));
        if target != "conductor" {
            return Err(refuse(Reason::UnknownTarget, format!("unknown target {target:?}: only conductor")));
        }
        if !SPECS.iter().any(|s| s.name == tool) {
            let names: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
            return Err(refuse(
                Reason::UnknownTool,
                format!("unknown tool {tool:?}; tools: {}", names.join(", ")),
            ));
        }
        if !baa.allowed_tools.iter().any(|t| t == tool) {
            return Err(refuse(Reason::ToolNotAllowed, format!("{tool} is not in baa.allowed_tools")));
        }
        let params = Params::read(e).map_err(|m| refuse(Reason::InvalidParams, m))?;
        let invalid = |m: String| refuse(Reason::InvalidParams, format!("{tool}: {m}"));
        match tool {
            "describe" => params.none().map(|()| Plan::Describe).map_err(invalid),
            "status" => params.none().map(|()| Plan::Status).map_err(invalid),
            "renewal.pause" => {
                params.none().map(|()| Plan::Switch(ConversationStatus::Paused)).map_err(invalid)
            }
            "renewal.auto" => params.none().map(|()| Plan::Switch(ConversationStatus::Auto)).map_err(invalid),
            "renewal.manual" => {
                params.none().map(|()| Plan::Switch(ConversationStatus::Manual)).map_err(invalid)
            }
            "exec" => self.check_exec(params).map_err(|r| r.or_invalid(tool)),
            "files.read" => {
                let raw = params.path().map_err(invalid)?;
                Ok(Plan::Read { path: self.inside(&raw)? })
            }
            "files.write" => {
                let (raw, content, append) = params.write().map_err(invalid)?;
                Ok(Plan::Write { path: self.inside(&raw)?, content, append })
            }
            // A tool in `SPECS` without its arm here: refused, never run as
            // another tool (`tools_tests.rs` plans every tool).
            _ => Err(refuse(Reason::UnknownTool, format!("tool {tool:?} has no plan"))),
        }
    }

    fn check_exec(&self, params: Params) -> Result<Plan, Checked> {
        let (command, cwd, timeout_ms) = params.exec().map_err(Checked::Invalid)?;
        let timeout_ms = timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(Checked::Invalid(format!(
                "timeout_ms must be 1..={MAX_TIMEOUT_MS} (got {timeout_ms})"
            )));
        }
        let roots = &self.ctx.config.baa.allowed_roots;
        let cwd = match (cwd, roots.first()) {
            (Some(cwd), _) => self.inside(&cwd).map_err(Checked::Refused)?,
            // The first root is where relative paths live.
            (None, Some(root)) => self.inside(root).map_err(Checked::Refused)?,
            (None, None) => PathBuf::from(self.home.clone().unwrap_or_else(|| "/".into())),
        };
        if !cwd.is_dir() {
            let summary = format!("cwd {} is not a directory", cwd.display());
            return Err(Checked::Refused(refuse(Reason::NotFound, summary)));
        }
        Ok(Plan::Exec { command, cwd, timeout: Duration::from_millis(timeout_ms) })
    }

    /// Resolves a path and requires it inside `baa.allowed_roots`.
    fn inside(&self, raw: &str) -> Result<PathBuf, Refusal> {
        let roots = &self.ctx.config.baa.allowed_roots;
        resolve_inside(raw, roots, self.home.as_deref()).map_err(|e| match e {
            PathError::Outside(p) => refuse(
                Reason::PathOutsideRoots,
                format!("{raw:?} resolves to {}, outside baa.allowed_roots", p.display()),
            ),
            PathError::Dangling(p) => refuse(
                Reason::PathOutsideRoots,
                format!("{raw:?}: {} is a symbolic link to nothing", p.display()),
            ),
            PathError::Unanchored => refuse(
                Reason::PathOutsideRoots,
                format!("{raw:?} cannot be resolved: no baa.allowed_roots (or no HOME for ~)"),
            ),
            PathError::Io(m) => refuse(Reason::Io, format!("{raw:?}: {m}")),
        })
    }

    /// Runs a block that passed `check`. `inbox` is the worker's, watched
    /// by a long `exec` for the daemon's stop.
    pub fn run<M>(
        &self,
        plan: Plan,
        e: &Execution,
        inbox: &crossbeam_channel::Receiver<M>,
        is_stop: fn(&M) -> bool,
    ) -> BlockResult {
        match plan {
            Plan::Describe => self.describe(),
            Plan::Status => match crate::http::handlers::system::summary(&self.ctx) {
                Ok(v) => succeeded(v.to_string(), v, None),
                Err(err) => failed(Reason::StoreError, err.message, None, None),
            },
            Plan::Switch(status) => self.switch(e, status),
            Plan::Read { path } => read_file(&path),
            Plan::Write { path, content, append } => {
                write_file(&path, &content, append, &self.ctx.config.baa.allowed_roots)
            }
            Plan::Exec { command, cwd, timeout } => {
                let req = exec::Request {
                    command: &command,
                    cwd: &cwd,
                    timeout,
                    instruction_id: &e.instruction_id,
                };
                let dir = self.ctx.artifacts_dir.join("exec");
                match exec::run(&req, inbox, is_stop) {
                    Ok(out) => exec_result(&req, &out, exec::write_artifact(&dir, &req, &out)),
                    Err(err) => failed(Reason::SpawnFailed, format!("cannot start sh: {err}"), None, None),
                }
            }
        }
    }

    fn describe(&self) -> BlockResult {
        let baa = &self.ctx.config.baa;
        let tools: Vec<&Spec> =
            SPECS.iter().filter(|s| baa.allowed_tools.iter().any(|t| t == s.name)).collect();
        let mut summary = String::from("tools (write a ```baa block: @conductor.<tool> then params):\n");
        for s in &tools {
            summary.push_str(&format!("- {}: {} — {}\n", s.name, s.params, s.does));
        }
        let roots =
            if baa.allowed_roots.is_empty() { "none".to_string() } else { baa.allowed_roots.join(", ") };
        summary.push_str(&format!(
            "allowed roots: {roots}; at most {} blocks per message",
            baa.max_blocks_per_message
        ));
        let result = json!({
            "target": "conductor",
            "tools": tools.iter().map(|s| json!({"name": s.name, "params": s.params, "does": s.does})).collect::<Vec<_>>(),
            "allowed_roots": baa.allowed_roots,
            "max_blocks_per_message": baa.max_blocks_per_message,
        });
        succeeded(summary, result, None)
    }

    fn switch(&self, e: &Execution, status: ConversationStatus) -> BlockResult {
        let reason = (status == ConversationStatus::Paused).then(|| "baa".to_string());
        let lc = &e.local_conversation_id;
        match self.ctx.store.set_conversation_status(lc, status, reason) {
            Ok(Transition::Changed(())) => {
                self.ctx.automation_changed();
                let result = json!({ "local_conversation_id": lc, "automation_status": status.as_str() });
                succeeded(format!("this conversation is now {}", status.as_str()), result, None)
            }
            Ok(_) => failed(Reason::ConversationMissing, format!("conversation {lc} is gone"), None, None),
            Err(err) => failed(Reason::StoreError, err.to_string(), None, None),
        }
    }
}

/// A check's failure inside `exec`: bad params are `invalid`, the rest
/// keep their own reason.
enum Checked {
    Invalid(String),
    Refused(Refusal),
}

impl Checked {
    fn or_invalid(self, tool: &str) -> Refusal {
        match self {
            Checked::Invalid(m) => refuse(Reason::InvalidParams, format!("{tool}: {m}")),
            Checked::Refused(r) => r,
        }
    }
}

/// The result of a refused block.
pub fn refused(r: Refusal) -> BlockResult {
    failed(r.reason, r.summary, None, None)
}

/// `exec`'s result: `{exit_code, stdout, stderr, truncated}` (docs/BAA.md), the
/// verdict, and the artifact.
fn exec_result(
    req: &exec::Request<'_>,
    out: &exec::Outcome,
    artifact: std::io::Result<PathBuf>,
) -> BlockResult {
    let cut = |c: &exec::Captured| {
        String::from_utf8_lossy(&c.kept[..c.kept.len().min(exec::RESULT_BYTES)]).into_owned()
    };
    let (stdout, stderr) = (cut(&out.stdout), cut(&out.stderr));
    let truncated =
        [&out.stdout, &out.stderr].iter().any(|c| c.total > exec::RESULT_BYTES as u64 || c.abandoned);
    let exit_code = match out.ended {
        exec::Ended::Exited(code) => Some(code),
        _ => None,
    };
    let result =
        json!({ "exit_code": exit_code, "stdout": stdout, "stderr": stderr, "truncated": truncated });
    let mut summary = String::new();
    summary.push_str(excerpt(&stdout));
    if !stderr.is_empty() && summary.len() < super::reply::EXCERPT_BYTES {
        if !summary.is_empty() && !summary.ends_with('\n') {
            summary.push('\n');
        }
        summary.push_str("[stderr]\n");
        summary.push_str(excerpt(&stderr));
    }
    let artifact_path = match artifact {
        Ok(_) => Some(format!("artifacts/exec/{}.txt", req.instruction_id)),
        Err(e) => {
            log::error!("baa: cannot write the artifact of {}: {e}", req.instruction_id);
            None
        }
    };
    match out.ended {
        exec::Ended::Exited(0) => succeeded(summary, result, artifact_path),
        exec::Ended::Exited(code) => failed(Reason::ExitCode(code), summary, Some(result), artifact_path),
        exec::Ended::Signalled(sig) => failed(Reason::Signal(sig), summary, Some(result), artifact_path),
        exec::Ended::TimedOut => {
            let summary = format!("timed out after {} ms\n{summary}", req.timeout.as_millis());
            failed(Reason::Timeout, summary, Some(result), artifact_path)
        }
        exec::Ended::Interrupted => failed(Reason::Interrupted, summary, Some(result), artifact_path),
    }
}

#[cfg(test)]
#[path = "tools_tests.rs"]
mod tests;
