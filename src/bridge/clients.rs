//! What the hub knows about each plugin client — its `hello`, tabs, login
//! states, and whether it is connected or lost since when — and the bounds
//! on how much of it is kept (docs/BRIDGE.md "Bounds"): every client is
//! listed in `GET /v1/browser`, so what plugins send, and how many client
//! ids come and go, must not grow it without limit. The tab and `account`
//! bounds are applied where frames are parsed (`frames.rs`); the hub keeps
//! the number of lost clients and of login states per client.

use std::collections::{BTreeMap, HashMap};

use crossbeam_channel::Sender;
use serde_json::Value;

use super::writer::Out;

/// Disconnected clients kept (for `login_fresh_ms` each) at most; past it
/// the longest lost is forgotten first (docs/BRIDGE.md "Bounds").
pub const MAX_LOST_CLIENTS: usize = 32;

/// Platforms a client may report login states for, at most (as many as a
/// `hello` may list).
pub const MAX_LOGIN_STATES: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct Tab {
    pub tab_id: i64,
    pub platform: String,
    pub url: Option<String>,
    pub title: Option<String>,
    pub conversation_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoginState {
    pub platform: String,
    pub captured_at: i64,
    pub fingerprint: Option<String>,
    /// Metadata only: credential keys were dropped before it got here.
    pub account: Value,
}

/// What `hello` told us about a client.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    pub client_id: String,
    pub browser: Option<String>,
    pub version: Option<String>,
    pub platforms: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Client {
    pub hello: Hello,
    pub connection_id: String,
    pub connected_at: i64,
    pub last_seen_at: i64,
    /// Set when the connection ended; the entry is forgotten after
    /// `login_fresh_ms`.
    pub lost_at: Option<i64>,
    pub tabs: Vec<Tab>,
    pub login_states: BTreeMap<String, LoginState>,
    /// The connection's outbox while it is connected.
    pub(super) outbox: Option<Sender<Out>>,
}

impl Client {
    pub fn connected(&self) -> bool {
        self.outbox.is_some()
    }
}

/// Forgets the clients lost longest ago while more than `MAX_LOST_CLIENTS`
/// are lost (ties: the smaller id first, never map order).
pub(super) fn forget_oldest_lost(clients: &mut HashMap<String, Client>) {
    let mut lost: Vec<(i64, String)> =
        clients.values().filter_map(|c| Some((c.lost_at?, c.hello.client_id.clone()))).collect();
    if lost.len() <= MAX_LOST_CLIENTS {
        return;
    }
    lost.sort();
    for (_, id) in lost.drain(..lost.len() - MAX_LOST_CLIENTS) {
        log::info!("bridge: forgetting lost client {id}: more than {MAX_LOST_CLIENTS} are lost");
        clients.remove(&id);
    }
}
