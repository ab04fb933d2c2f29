//! What every handler can reach: the configuration, the store, facts about
//! this daemon process, and the seams later thread roles plug into (the
//! bridge fills `hooks`). Handlers get `&Ctx` and nothing else, so a test can
//! build one over a temp store and call them without sockets.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::store::{IngestSettings, Store};

/// Callbacks into other thread roles. The defaults do nothing, which is the
/// truth while no bridge is running.
pub struct Hooks {
    /// Called after any automation change (system or conversation), so the
    /// bridge can push a `state_snapshot` to connected plugins.
    pub automation_changed: Box<dyn Fn() + Send + Sync>,
    /// Number of connected plugins, for `/v1/system`.
    pub connected_clients: Box<dyn Fn() -> usize + Send + Sync>,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks { automation_changed: Box::new(|| {}), connected_clients: Box::new(|| 0) }
    }
}

pub struct Ctx {
    pub config: Arc<Config>,
    pub store: Store,
    pub started_at: i64,
    pub pid: u32,
    /// `http://HOST:PORT` as bound.
    pub http_base: String,
    /// `ws://HOST:PORT/ws/browser` as bound.
    pub ws_url: String,
    /// Base of artifact links: `public_base_url`, else `http_base`.
    pub public_base: String,
    pub artifacts_dir: PathBuf,
    pub hooks: Hooks,
}

impl Ctx {
    pub fn new(config: Arc<Config>, store: Store, http_base: String, ws_url: String) -> Ctx {
        let public_base = config.public_base_url.clone().unwrap_or_else(|| http_base.clone());
        let artifacts_dir = config.state_dir.join("artifacts");
        Ctx {
            config,
            store,
            started_at: crate::util::now_ms(),
            pid: std::process::id(),
            http_base,
            ws_url,
            public_base,
            artifacts_dir,
            hooks: Hooks::default(),
        }
    }

    pub fn ingest_settings(&self) -> IngestSettings {
        IngestSettings {
            summary_limit: self.config.renewal.summary_limit,
            repeat_pause_threshold: self.config.renewal.repeat_pause_threshold,
        }
    }
}

pub type SharedCtx = Arc<Ctx>;
