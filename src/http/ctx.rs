//! What every handler can reach: the configuration, the store, the bridge's
//! hub, and facts about this daemon process. Handlers get `&Ctx` and nothing else, so a test can
//! build one over a temp store and call them without sockets.

use std::path::PathBuf;
use std::sync::Arc;

use crate::bridge::Hub;
use crate::config::Config;
use crate::http::api::{ApiError, ApiRequest, Reply};
use crate::http::cache::ReadCache;
use crate::http::row_texts::RowTexts;
use crate::policy::Policy;
use crate::store::{IngestSettings, Job, Store};

/// Relays open at once (waiting or streaming; see `handlers::relay`).
pub const MAX_RELAYS: usize = 64;

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
    /// The bridge's hub: connected plugins, requests to them, state pushes.
    pub hub: Arc<Hub>,
    /// The request policy every platform-bound action passes.
    pub policy: Arc<Policy>,
    /// Open raw relays, bounded (see `handlers::relay`).
    pub relays: Arc<crate::util::Permits>,
    /// The ticker's runners and last recovery, for `/v1/timed-jobs`.
    pub timed: Arc<crate::ticker::Status>,
    /// Rendered list pages, reused until the next commit.
    pub cache: ReadCache,
    /// Rendered jobs of list pages, reused while their row is unchanged.
    pub job_texts: RowTexts<Job>,
    /// The `Host` values this daemon answers to (loopback only until the
    /// daemon sets the bound addresses and `allowed_hosts`).
    pub hosts: crate::auth::HostPolicy,
    /// Held while `POST /v1/system/backup` copies: one backup at a time.
    pub backup: parking_lot::Mutex<()>,
}

impl Ctx {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        hub: Arc<Hub>,
        policy: Arc<Policy>,
        timed: Arc<crate::ticker::Status>,
        http_base: String,
        ws_url: String,
    ) -> Ctx {
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
            hub,
            policy,
            relays: crate::util::Permits::new(MAX_RELAYS),
            timed,
            cache: ReadCache::default(),
            job_texts: RowTexts::default(),
            hosts: crate::auth::HostPolicy::default(),
            backup: parking_lot::Mutex::new(()),
        }
    }

    pub fn ingest_settings(&self) -> IngestSettings {
        IngestSettings::from_config(&self.config)
    }
}

pub type SharedCtx = Arc<Ctx>;

impl Ctx {
    /// A page whose `data` depends on nothing but the store's contents and
    /// the request's path and query: served from the read cache while no
    /// commit has happened since `render` last ran for the same request.
    pub fn cached_page(
        &self,
        req: &ApiRequest,
        render: impl FnOnce() -> Result<Arc<str>, ApiError>,
    ) -> Result<Reply, ApiError> {
        // Read before `render` queries the store; see `Store::generation`.
        let generation = self.store.generation();
        // JSON keeps the key unambiguous whatever the decoded values hold.
        let key = format!("{}{}", req.path, serde_json::to_string(&req.query).unwrap_or_default());
        self.cache.get_or_render(key, generation, render).map(Reply::Encoded)
    }

    /// Tells connected plugins that automation changed (state push).
    pub fn automation_changed(&self) {
        self.hub.notify_automation_changed();
    }
}
