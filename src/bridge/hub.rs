//! The hub: the one registry of plugin clients (connected and recently lost,
//! with their tabs and login states) and of requests waiting for a plugin's
//! answer. Any thread can ask it to send `proxy_delivery`, `action` or
//! `api_request` to a chosen client and then wait in the request's own
//! mailbox (`bridge/mailbox.rs`) for the answer (or a stream of frames). The
//! mutex guards only map updates: frames are handed to a connection's
//! writer thread through its outbox after the lock is released (but for
//! the `hello_ack`, queued on the fresh outbox before it is visible, see
//! [`Hub::register`]), and nobody ever waits while holding it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};
use parking_lot::Mutex;
use serde_json::Value;

use super::clients::forget_oldest_lost;
pub use super::clients::{Client, Hello, LoginState, Tab, MAX_LOGIN_STATES, MAX_LOST_CLIENTS};
use super::mailbox;
use super::writer::Out;
use crate::util::{new_id, now_ms};

/// Why a request to a plugin did not get its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    NoActiveClient,
    ClientDisconnected,
    ClientReplaced,
    Timeout,
    /// The daemon is stopping and will not wait for the answer.
    ShuttingDown,
    /// The answers of a stream piled up past `MAX_BUFFERED_ANSWER_BYTES`:
    /// whoever waits for them (a relay's HTTP caller) does not keep up.
    CallerTooSlow,
}

impl RequestError {
    pub fn code(self) -> &'static str {
        match self {
            RequestError::NoActiveClient => "no_active_client",
            RequestError::ClientDisconnected => "client_disconnected",
            RequestError::ClientReplaced => "client_replaced",
            RequestError::Timeout => "delivery_timeout",
            RequestError::ShuttingDown => "shutting_down",
            RequestError::CallerTooSlow => "caller_too_slow",
        }
    }
}

/// How many bytes of a request's answers may wait (each counted as the
/// larger of its text and what it holds parsed, `browser_json::held_bytes`)
/// for their reader. A streamed relay whose HTTP caller falls behind stops
/// here, failed with `caller_too_slow`, instead of growing without bound
/// (an audit took the daemon from 79 MB to 850 MB with 90k unread 8 KB
/// events). A caller that reads at all drains this at once; it fills only
/// once the socket buffers towards the caller are full too.
pub const MAX_BUFFERED_ANSWER_BYTES: usize = 1 << 20;

/// What arrives in a pending request's mailbox.
#[derive(Debug, Clone)]
pub enum Answer {
    Frame(Value),
    Failed(RequestError),
}

struct PendingEntry {
    connection_id: String,
    /// Closes the request's mailbox when the entry goes.
    tx: mailbox::Owner<Answer>,
}

#[derive(Default)]
struct State {
    clients: HashMap<String, Client>,
    pending: HashMap<String, PendingEntry>,
}

/// What the hub calls when automation changed: it asks for a state push
/// and never blocks.
pub type Bell = Box<dyn Fn() + Send + Sync>;

pub struct Hub {
    state: Mutex<State>,
    /// `max_ws_clients`: connected clients (after hello) at most.
    max_clients: usize,
    login_fresh_ms: i64,
    /// Rings the state pusher (`push::Inbox::bell`).
    push: Bell,
    /// Set by `fail_all_pending`: the daemon is stopping.
    closing: AtomicBool,
}

/// A registered connection: its id and what the replaced one (if any) needs.
pub struct Registered {
    pub connection_id: String,
    /// Outbox of the connection this one replaced, to close it with 4000.
    pub replaced: Option<Sender<Out>>,
}

impl Hub {
    pub fn new(max_connections: usize, login_fresh_ms: i64, push: Bell) -> Arc<Hub> {
        let hub = Hub {
            state: Mutex::new(State::default()),
            max_clients: max_connections,
            login_fresh_ms,
            push,
            closing: AtomicBool::new(false),
        };
        Arc::new(hub)
    }

    pub fn connected_count(&self) -> usize {
        self.state.lock().clients.values().filter(|c| c.connected()).count()
    }

    /// Asks the state pusher for a `state_snapshot` to every plugin.
    pub fn notify_automation_changed(&self) {
        (self.push)();
    }

    /// Registers a client after its `hello`: this is where a plugin takes
    /// its slot under `max_ws_clients`, so only a plugin that said hello
    /// holds one (`Err(Full)` when they are all taken). A connected client
    /// with the same id is replaced, in its slot: its pending requests fail
    /// with `client_replaced` now.
    ///
    /// `greeting(connection_id)` (the `hello_ack`) is queued on `outbox`
    /// before the outbox becomes visible to other threads, so it is always
    /// the connection's first frame: once registered, the pusher and any
    /// request may write to the outbox at once. (A `try_send` on the fresh
    /// outbox: it cannot wait, so the lock is not held across a wait.)
    pub fn register(
        &self,
        hello: Hello,
        outbox: Sender<Out>,
        greeting: impl FnOnce(&str) -> String,
    ) -> Result<Registered, Full> {
        let now = now_ms();
        let connection_id = new_id("conn_");
        let mut failed = Vec::new();
        let replaced = {
            let mut st = self.state.lock();
            let others =
                st.clients.values().filter(|c| c.connected() && c.hello.client_id != hello.client_id);
            if others.count() >= self.max_clients {
                return Err(Full);
            }
            let previous = st.clients.remove(&hello.client_id);
            let replaced = previous.as_ref().and_then(|p| p.outbox.clone());
            if let Some(prev) = &previous {
                failed = take_pending_of(&mut st, &prev.connection_id);
            }
            let client = Client {
                hello: hello.clone(),
                connection_id: connection_id.clone(),
                connected_at: now,
                last_seen_at: now,
                lost_at: None,
                tabs: previous.as_ref().map(|p| p.tabs.clone()).unwrap_or_default(),
                login_states: previous.map(|p| p.login_states).unwrap_or_default(),
                outbox: Some(outbox.clone()),
            };
            let _ = outbox.try_send(Out::Text(greeting(&connection_id)));
            st.clients.insert(hello.client_id.clone(), client);
            replaced
        };
        for tx in failed {
            tx.0.send(Answer::Failed(RequestError::ClientReplaced));
        }
        Ok(Registered { connection_id, replaced })
    }

    /// Marks the connection's client lost (unless a newer connection took its
    /// place) and fails every request pending on it at once.
    pub fn disconnect(&self, client_id: &str, connection_id: &str) {
        let failed = {
            let mut st = self.state.lock();
            if let Some(c) = st.clients.get_mut(client_id) {
                if c.connection_id == connection_id {
                    c.outbox = None;
                    c.lost_at = Some(now_ms());
                }
            }
            forget_oldest_lost(&mut st.clients);
            take_pending_of(&mut st, connection_id)
        };
        for tx in failed {
            tx.0.send(Answer::Failed(RequestError::ClientDisconnected));
        }
    }

    /// Fails every pending request with `shutting_down`, so that whoever
    /// waits on one (an HTTP relay, an action, a delivery) answers now
    /// instead of being cut off when the shutdown grace runs out, and marks
    /// the hub closing: later requests are refused with `shutting_down`,
    /// and HTTP callers still queued for a target or waiting out a rate
    /// delay give up too (`is_closing`). The connections close after this.
    pub fn fail_all_pending(&self) {
        let failed: Vec<_> = {
            let mut st = self.state.lock();
            self.closing.store(true, Ordering::SeqCst);
            st.pending.drain().map(|(_, p)| p.tx).collect()
        };
        if !failed.is_empty() {
            log::info!("bridge: {} pending request(s) failed: shutting down", failed.len());
        }
        for tx in failed {
            tx.0.send(Answer::Failed(RequestError::ShuttingDown));
        }
    }

    /// Whether the daemon is stopping (see `fail_all_pending`).
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Any frame from a client counts as a sign of life.
    pub fn touch(&self, client_id: &str, connection_id: &str) {
        let mut st = self.state.lock();
        if let Some(c) = st.clients.get_mut(client_id).filter(|c| c.connection_id == connection_id) {
            c.last_seen_at = now_ms();
        }
    }

    pub fn set_tabs(&self, client_id: &str, tabs: Vec<Tab>) {
        if let Some(c) = self.state.lock().clients.get_mut(client_id) {
            c.tabs = tabs;
        }
    }

    /// Keeps a client's login state for its platform; false (nothing kept)
    /// for a platform past the client's `MAX_LOGIN_STATES`.
    pub fn set_login_state(&self, client_id: &str, login: LoginState) -> bool {
        let mut st = self.state.lock();
        let Some(c) = st.clients.get_mut(client_id) else { return true };
        let states = &mut c.login_states;
        if states.len() >= MAX_LOGIN_STATES && !states.contains_key(&login.platform) {
            return false;
        }
        states.insert(login.platform.clone(), login);
        true
    }

    /// Routes a plugin's answer (`text_len` bytes of JSON) to whoever waits
    /// for it. Answers for unknown or expired ids, or from another
    /// connection, are dropped (logged). A request whose answers pile up
    /// past `MAX_BUFFERED_ANSWER_BYTES` fails with `caller_too_slow`: its
    /// waiter gets what was buffered, then the failure; later answers are
    /// dropped like any for an expired id.
    pub fn answer(&self, connection_id: &str, request_id: &str, frame: Value, text_len: usize, last: bool) {
        let (tx, removed) = {
            let mut st = self.state.lock();
            match st.pending.get(request_id) {
                Some(p) if p.connection_id == connection_id => {
                    let tx = p.tx.0.clone();
                    // The last answer closes the mailbox, after it is in it.
                    let removed = if last { st.pending.remove(request_id) } else { None };
                    (Some(tx), removed)
                }
                _ => (None, None),
            }
        };
        match tx {
            Some(tx) if last => tx.send(Answer::Frame(frame)),
            Some(tx) => {
                // What waits is the parsed frame, which can be many times
                // its text (small numbers): the bound counts the larger.
                let size = text_len.max(crate::browser_json::held_bytes(&frame));
                if tx.send_within(Answer::Frame(frame), size, MAX_BUFFERED_ANSWER_BYTES).is_err() {
                    self.fail_too_slow(request_id);
                }
            }
            None => ignored_answer(request_id),
        }
        drop(removed);
    }

    fn fail_too_slow(&self, request_id: &str) {
        let removed = self.state.lock().pending.remove(request_id);
        if let Some(entry) = removed {
            log::warn!("bridge: request {request_id} failed: its answers are not read (caller_too_slow)");
            entry.tx.0.send(Answer::Failed(RequestError::CallerTooSlow));
        }
    }

    /// The client a request for `(platform, client_id?)` goes to: the named
    /// client if one is given (and connected; never another in its place,
    /// docs/DECISIONS.md "A named client is not replaced"); else the most
    /// recently seen connected client that lists the platform (any client
    /// when no platform is given).
    fn choose<'a>(st: &'a State, platform: Option<&str>, client_id: Option<&str>) -> Option<&'a Client> {
        if let Some(id) = client_id {
            return st.clients.get(id).filter(|c| c.connected());
        }
        st.clients
            .values()
            .filter(|c| c.connected())
            .filter(|c| platform.is_none_or(|p| c.hello.platforms.iter().any(|x| x == p)))
            // Ties (same millisecond) go to the newer connection, then by id,
            // so the choice never depends on map order.
            .max_by(|a, b| {
                (a.last_seen_at, a.connected_at)
                    .cmp(&(b.last_seen_at, b.connected_at))
                    .then_with(|| b.hello.client_id.cmp(&a.hello.client_id))
            })
    }

    /// The client id a request would go to now, without sending anything.
    pub fn chosen_client(&self, platform: Option<&str>, client_id: Option<&str>) -> Option<String> {
        let st = self.state.lock();
        Self::choose(&st, platform, client_id).map(|c| c.hello.client_id.clone())
    }

    /// Whether the client has reported a login state for the platform.
    pub fn has_login(&self, client_id: &str, platform: &str) -> bool {
        self.state.lock().clients.get(client_id).is_some_and(|c| c.login_states.contains_key(platform))
    }

    /// Sends a request frame built by `build(request_id)` to the chosen
    /// client and returns the handle to wait on.
    pub fn request(
        self: &Arc<Self>,
        platform: Option<&str>,
        client_id: Option<&str>,
        id_prefix: &str,
        build: impl FnOnce(&str) -> String,
    ) -> Result<PendingRequest, RequestError> {
        let request_id = new_id(id_prefix);
        let (tx, rx) = mailbox::new();
        let (outbox, client_id, connection_id) = {
            let mut st = self.state.lock();
            // Checked under the lock `fail_all_pending` sets it under: a
            // request is either failed there or refused here, never left.
            if self.is_closing() {
                return Err(RequestError::ShuttingDown);
            }
            let client = Self::choose(&st, platform, client_id).ok_or(RequestError::NoActiveClient)?;
            let found = (client.outbox.clone(), client.hello.client_id.clone(), client.connection_id.clone());
            st.pending.insert(request_id.clone(), PendingEntry { connection_id: found.2.clone(), tx });
            found
        };
        let pending = PendingRequest { hub: self.clone(), request_id, client_id, connection_id, rx };
        let frame = build(&pending.request_id);
        match outbox.map(|o| o.try_send(Out::Push(frame))) {
            Some(Ok(())) => Ok(pending),
            // The connection is gone or so far behind that its outbox is
            // full; either way it will not deliver this in time.
            Some(Err(TrySendError::Full(_))) | Some(Err(TrySendError::Disconnected(_))) | None => {
                Err(RequestError::ClientDisconnected)
            }
        }
    }

    fn forget(&self, request_id: &str) {
        // Dropped after the hub's lock: dropping the entry closes its
        // mailbox, which takes the mailbox's own lock and wakes its waiter.
        let removed = self.state.lock().pending.remove(request_id);
        drop(removed);
    }

    /// Every client still worth showing, forgetting the ones lost for longer
    /// than `login_fresh_ms`.
    pub fn clients(&self) -> Vec<Client> {
        let now = now_ms();
        let mut st = self.state.lock();
        let fresh = self.login_fresh_ms;
        st.clients.retain(|_, c| c.lost_at.is_none_or(|at| now - at < fresh));
        let mut list: Vec<Client> = st.clients.values().cloned().collect();
        list.sort_by(|a, b| {
            b.last_seen_at.cmp(&a.last_seen_at).then_with(|| a.hello.client_id.cmp(&b.hello.client_id))
        });
        list
    }

    /// Outboxes of every connected client, for broadcasts.
    pub fn outboxes(&self) -> Vec<Sender<Out>> {
        self.state.lock().clients.values().filter_map(|c| c.outbox.clone()).collect()
    }

    pub fn login_fresh_ms(&self) -> i64 {
        self.login_fresh_ms
    }
}

/// Logs an answer nobody waits for, at most once a second: a plugin that
/// streams on after its request failed must not flood the log.
fn ignored_answer(request_id: &str) {
    static LAST_MS: AtomicI64 = AtomicI64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let now = now_ms();
    let last = LAST_MS.load(Ordering::Relaxed);
    if now - last < 1000 || LAST_MS.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
    {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let more = SUPPRESSED.swap(0, Ordering::Relaxed);
    log::info!("bridge: ignoring answer for unknown or expired request {request_id} (and {more} more since)");
}

fn take_pending_of(st: &mut State, connection_id: &str) -> Vec<mailbox::Owner<Answer>> {
    let ids: Vec<String> = st
        .pending
        .iter()
        .filter(|(_, p)| p.connection_id == connection_id)
        .map(|(id, _)| id.clone())
        .collect();
    ids.into_iter().filter_map(|id| st.pending.remove(&id)).map(|p| p.tx).collect()
}

/// Every slot under `max_ws_clients` is taken by a connected plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A request sent to a plugin. Dropping it forgets the request, so a late
/// answer is ignored rather than piling up.
pub struct PendingRequest {
    hub: Arc<Hub>,
    pub request_id: String,
    pub client_id: String,
    pub connection_id: String,
    rx: Arc<mailbox::Mailbox<Answer>>,
}

impl PendingRequest {
    /// The next frame for this request, or why none will come.
    pub fn next(&self, deadline: Instant) -> Result<Value, RequestError> {
        match self.rx.recv_deadline(deadline) {
            Ok(Answer::Frame(frame)) => Ok(frame),
            Ok(Answer::Failed(err)) => Err(err),
            Err(mailbox::RecvError::Timeout) => Err(RequestError::Timeout),
            Err(mailbox::RecvError::Closed) => Err(RequestError::ClientDisconnected),
        }
    }
}

impl Drop for PendingRequest {
    fn drop(&mut self) {
        self.hub.forget(&self.request_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hub with client `ff` registered, its outbox, and its registration.
    fn hub_with_client() -> (Arc<Hub>, crossbeam_channel::Receiver<Out>, Registered) {
        let config = crate::config::Config::with_state_dir(std::path::PathBuf::from("/nonexistent"));
        let (hub, _) = crate::bridge::new_hub(&config);
        let (tx, rx) = crossbeam_channel::bounded(8);
        let hello = Hello { client_id: "ff".into(), browser: None, version: None, platforms: vec![] };
        let registered = hub.register(hello, tx, |id| format!("ack {id}")).ok().unwrap();
        (hub, rx, registered)
    }

    /// Once registered, the pusher (or a request) may write to the outbox
    /// at once; the hello_ack is still the connection's first frame.
    #[test]
    fn the_greeting_is_queued_before_anyone_else_can_write() {
        let (hub, rx, registered) = hub_with_client();
        for outbox in hub.outboxes() {
            outbox.try_send(Out::Push("snapshot".into())).unwrap();
        }
        let first = match rx.try_recv().unwrap() {
            Out::Text(text) => text,
            _ => panic!("the first frame is not the greeting"),
        };
        assert_eq!(first, format!("ack {}", registered.connection_id));
        assert!(matches!(rx.try_recv(), Ok(Out::Push(_))));
    }

    /// The bound on a stream's unread answers counts what they hold
    /// parsed: events of small numbers (16 KiB of text, 256 KiB parsed
    /// each) stop after about 1 MiB of the latter, not 64 of them.
    #[test]
    fn unread_answers_are_bounded_by_what_they_hold_parsed() {
        let (hub, _outbox, registered) = hub_with_client();
        let pending = hub.request(None, Some("ff"), "req_", |id| id.to_string()).unwrap();
        let text = format!("[{}]", vec!["0"; 8 * 1024].join(","));
        let data: Value = serde_json::from_str(&text).unwrap();
        for seq in 1..=64 {
            let frame = serde_json::json!({"type": "stream_event", "seq": seq, "data": data.clone()});
            hub.answer(&registered.connection_id, &pending.request_id, frame, text.len() + 64, false);
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let mut kept = 0;
        let failure = loop {
            match pending.next(deadline) {
                Ok(_) => kept += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(failure, RequestError::CallerTooSlow);
        let held = crate::browser_json::held_bytes(&data);
        assert!(held > 200 * 1024, "{held}");
        assert!(kept <= MAX_BUFFERED_ANSWER_BYTES / held + 1, "{kept} events of {held} bytes were kept");
    }
}
