//! The browser bridge thread role: the plugin WebSocket endpoint on its own
//! listener (`ws_listen`), one reader and one writer thread per connection,
//! the [`Hub`] through which other threads send requests to plugins and wait
//! for answers, and the state pusher. [`start`] spawns the accept loop and
//! returns its [`Handle`]. docs/BRIDGE.md is the contract;
//! docs/ARCHITECTURE.md explains the threads.

mod clients;
mod conn;
pub mod final_message;
pub mod frames;
pub mod hub;
mod lobby;
mod mailbox;
pub mod plugin_answers;
#[cfg(test)]
mod props;
mod push;
mod upgrade;
pub mod writer;

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use hub::{Answer, Hub, PendingRequest, RequestError};

use crate::accept_errors::{AcceptFailures, LogLimiter};
use crate::auth::{HostPolicy, OriginPolicy};
use crate::config::Config;
use crate::store::{IngestSettings, Store};
use crate::util::JoinOnDrop;
use writer::Out;

/// What every connection thread needs.
pub struct BridgeCtx {
    pub config: Arc<Config>,
    pub store: Store,
    pub hub: Arc<Hub>,
    pub origins: OriginPolicy,
    pub hosts: HostPolicy,
    pub ingest_settings: IngestSettings,
}

/// The running bridge: its accept and push threads. Dropping it is
/// [`Handle::shutdown`].
pub struct Handle {
    stopping: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
    hub: Arc<Hub>,
    accept: Option<JoinOnDrop<()>>,
    push: Option<push::Handle>,
}

/// Creates the hub before anything else, so the HTTP API can hold it.
/// Also returns the state pusher's inbox, which the hub rings, for `start`.
pub fn new_hub(config: &Config) -> (Arc<Hub>, push::Inbox) {
    let pushes = push::Inbox::new();
    let hub = Hub::new(config.limits.max_ws_clients, config.bridge.login_fresh_ms as i64, pushes.bell());
    (hub, pushes)
}

pub fn start(listener: TcpListener, ctx: BridgeCtx, pushes: push::Inbox) -> std::io::Result<Handle> {
    let addr = listener.local_addr()?;
    let ctx = Arc::new(ctx);
    let stopping = Arc::new(AtomicBool::new(false));
    let push = push::spawn(ctx.hub.clone(), ctx.store.clone(), pushes)?;
    let lobby = lobby::Lobby::new(lobby_cap(&ctx.config));
    let accept = {
        let (ctx, stopping) = (ctx.clone(), stopping.clone());
        JoinOnDrop::spawn("bridge-accept", move || accept_loop(listener, ctx, lobby, stopping))?
    };
    Ok(Handle { stopping, addr, hub: ctx.hub.clone(), accept: Some(accept), push: Some(push) })
}

/// Connections that have not said hello yet, at most: as many as plugins
/// may be connected, and never fewer than 16 (docs/DECISIONS.md).
pub fn lobby_cap(config: &Config) -> usize {
    config.limits.max_ws_clients.max(16)
}

/// Accepts until stopped. An accept error (out of file descriptors, say)
/// is logged and waited out; it never ends the loop.
fn accept_loop(
    listener: TcpListener,
    ctx: Arc<BridgeCtx>,
    lobby: Arc<lobby::Lobby>,
    stopping: Arc<AtomicBool>,
) {
    let mut evictions = LogLimiter::default();
    let mut failures = AcceptFailures::new("bridge");
    for stream in listener.incoming() {
        if stopping.load(Ordering::Acquire) {
            return;
        }
        match stream {
            Ok(tcp) => {
                failures.recovered();
                let Ok((ticket, evicted)) = lobby.enter(&tcp) else { continue };
                if let Some(old) = evicted {
                    // At most one line a second: a flood is one line, not thousands.
                    evictions.warn(format_args!(
                        "bridge: too many connections without hello; closed the oldest ({old})"
                    ));
                }
                spawn_connection(tcp, ticket, &ctx)
            }
            Err(e) => failures.back_off(&e),
        }
    }
}

fn spawn_connection(tcp: TcpStream, ticket: lobby::Ticket, ctx: &Arc<BridgeCtx>) {
    let ctx = ctx.clone();
    let spawned = std::thread::Builder::new()
        .name("ws-read".into())
        .stack_size(256 * 1024)
        .spawn(move || conn::serve(tcp, ticket, ctx));
    if let Err(e) = spawned {
        log::error!("bridge: cannot spawn connection thread: {e}");
    }
}

impl Handle {
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Stops accepting, closes every plugin connection with 1001, and waits
    /// (bounded) for the connection threads to end.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        // Wakes the blocking accept so the loop sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(push) = self.push.take() {
            push.shutdown();
        }
        for outbox in self.hub.outboxes() {
            let _ = outbox.try_send(Out::Close { code: 1001, reason: "shutting down".into() });
        }
        if let Some(join) = self.accept.take() {
            join.join();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.hub.connected_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
