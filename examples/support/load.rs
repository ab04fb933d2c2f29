//! Mixed load against a running daemon, shared by the chaos and soak
//! harnesses: simulated plugins (WebSocket: hello, tabs, login state, final
//! messages pipelined, every `proxy_delivery` and `api_request` answered),
//! HTTP ingest clients, relay clients, and a switcher that flips
//! conversations between auto, manual and paused and pauses and resumes
//! the system. Everything acknowledged is written down in a `Ledger` (when
//! `record` is on) so the chaos harness can check it against the database
//! after a `kill -9`. Included with `#[path]`, next to `http1.rs` and
//! `daemon.rs`.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use baa_conductor::bridge::plugin_answers::{Answerer, Mode};
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use super::daemon::{now_ms, Rng};
use super::http1::Client;

pub const PLATFORM: &str = "chatgpt";

#[derive(Clone)]
pub struct LoadConfig {
    /// Names the run: client ids are `RUN-pK` in every cycle.
    pub run: String,
    /// Prefix of every message id this load makes (unique per run and cycle).
    pub tag: String,
    pub plugins: usize,
    pub ingest_clients: usize,
    pub relay_clients: usize,
    /// Clients reading the list and status routes in a loop.
    pub reader_clients: usize,
    pub switcher: bool,
    pub conversations_per_plugin: usize,
    /// Pause between two messages of one sender, ms (uniform in the range).
    pub message_gap_ms: (u64, u64),
    /// Share of deliveries a plugin answers as failed (`tab_closed`).
    pub fail_percent: u64,
    /// Keep every acknowledged id (chaos); counts only otherwise (soak).
    pub record: bool,
    pub seed: u64,
}

#[derive(Default)]
pub struct Counts {
    pub acked: AtomicU64,
    pub rejected: AtomicU64,
    pub deliveries: AtomicU64,
    pub relays_ok: AtomicU64,
    pub relays_failed: AtomicU64,
    pub reads: AtomicU64,
    pub switches: AtomicU64,
    pub system_switches: AtomicU64,
    pub connects: AtomicU64,
    pub http_errors: AtomicU64,
}

/// What the daemon acknowledged, and what the plugins received and answered.
#[derive(Default)]
pub struct Ledger {
    pub counts: Counts,
    pub acked: Mutex<Vec<String>>,
    /// `proxy_delivery` frames received per assistant message id.
    pub deliveries: Mutex<HashMap<String, u32>>,
    /// (client id, ms) of every answer to a policy-bound request.
    pub answers: Mutex<Vec<(String, i64)>>,
    /// The last system state acknowledged, and whether a later request was
    /// still unanswered when the load stopped.
    pub system: Mutex<(Option<String>, bool)>,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    pub fn start(config: &LoadConfig, http: SocketAddr, ws_url: &str, ledger: &Arc<Ledger>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut seeds = Rng::new(config.seed);
        let mut spawn = |name: String, f: Box<dyn FnOnce(Rng) + Send>| {
            let rng = Rng::new(seeds.next());
            threads.push(std::thread::Builder::new().name(name).spawn(move || f(rng)).expect("thread"));
        };
        for k in 0..config.plugins {
            let (c, s, l, url) = (config.clone(), stop.clone(), ledger.clone(), ws_url.to_string());
            spawn(format!("plugin-{k}"), Box::new(move |rng| Plugin::new(c, k, rng).run(&url, &s, &l)));
        }
        for h in 0..config.ingest_clients {
            let (c, s, l) = (config.clone(), stop.clone(), ledger.clone());
            spawn(format!("ingest-{h}"), Box::new(move |rng| ingest(&c, h, http, rng, &s, &l)));
        }
        for r in 0..config.relay_clients {
            let (c, s, l) = (config.clone(), stop.clone(), ledger.clone());
            spawn(format!("relay-{r}"), Box::new(move |rng| relay(&c, http, rng, &s, &l)));
        }
        for r in 0..config.reader_clients {
            let (s, l) = (stop.clone(), ledger.clone());
            spawn(format!("reader-{r}"), Box::new(move |rng| reader(http, rng, &s, &l)));
        }
        if config.switcher {
            let (s, l) = (stop.clone(), ledger.clone());
            spawn("switcher".to_string(), Box::new(move |rng| switcher(http, rng, &s, &l)));
        }
        Load { stop, threads }
    }

    /// Stops every thread and waits for it.
    pub fn stop(self) {
        self.stop.store(true, Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

pub fn client_id(run: &str, k: usize) -> String {
    format!("{run}-p{k}")
}

/// Conversation `j` of plugin `k` (the same across cycles: the local
/// conversations, their links and their automation state carry over).
fn conversation(k: usize, j: usize) -> String {
    format!("conv-p{k}-{j}")
}

fn tab_of(k: usize, j: usize) -> i64 {
    (k * 1000 + j + 1) as i64
}

fn message(config: &LoadConfig, id: &str, k: usize, j: usize, with_client: bool) -> Value {
    let mut m = json!({
        "platform": PLATFORM, "conversation_id": conversation(k, j), "message_id": id,
        "role": "assistant", "observed_at": now_ms(), "tab_id": tab_of(k, j),
        "page_url": format!("https://chatgpt.com/c/{}", conversation(k, j)), "page_title": "chaos",
        "text": format!("Answer {id}: text that changes every time, so no repeat guard trips ({}).", config.tag),
    });
    if with_client {
        m["client_id"] = json!(client_id(&config.run, k));
    }
    m
}

struct Plugin {
    config: LoadConfig,
    k: usize,
    rng: Rng,
    client: String,
    sent: u64,
}

/// Unanswered final messages one plugin keeps in flight at most.
const WINDOW: usize = 32;

impl Plugin {
    fn new(config: LoadConfig, k: usize, rng: Rng) -> Plugin {
        let client = client_id(&config.run, k);
        Plugin { config, k, rng, client, sent: 0 }
    }

    fn run(mut self, url: &str, stop: &AtomicBool, ledger: &Ledger) {
        while !stop.load(Relaxed) {
            let Some(mut ws) = connect(url) else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            ledger.counts.connects.fetch_add(1, Relaxed);
            if self.session(&mut ws, stop, ledger).is_ok() {
                let _ = ws.close(None);
                let _ = ws.flush();
                return;
            }
        }
    }

    fn introduce(&self, ws: &mut WebSocket<TcpStream>) -> Result<(), String> {
        let hello = json!({"type": "hello", "client_id": self.client, "platforms": [PLATFORM],
                           "protocol_version": 1, "browser": "chaos", "version": "0"});
        let tabs: Vec<Value> = (0..self.config.conversations_per_plugin)
            .map(|j| json!({"tab_id": tab_of(self.k, j), "platform": PLATFORM, "conversation_id": conversation(self.k, j),
                            "url": format!("https://chatgpt.com/c/{}", conversation(self.k, j))}))
            .collect();
        send(ws, &hello)?;
        send(ws, &json!({"type": "tabs", "tabs": tabs}))?;
        send(ws, &json!({"type": "login_state", "platform": PLATFORM, "account": {"plan": "chaos"}}))
    }

    /// One connection's life; `Ok` when asked to stop, `Err` when the
    /// connection broke (the daemon died).
    fn session(
        &mut self,
        ws: &mut WebSocket<TcpStream>,
        stop: &AtomicBool,
        ledger: &Ledger,
    ) -> Result<(), String> {
        self.introduce(ws)?;
        let mut pending: HashSet<String> = HashSet::new();
        let mut next_send = Instant::now();
        while !stop.load(Relaxed) {
            if Instant::now() >= next_send && pending.len() < WINDOW {
                let j = self.rng.range(0, self.config.conversations_per_plugin as u64) as usize;
                let id = format!("{}-p{}-{}", self.config.tag, self.k, self.sent);
                self.sent += 1;
                let mut frame = message(&self.config, &id, self.k, j, false);
                frame["type"] = json!("browser.final_message");
                frame["id"] = json!(id);
                send(ws, &frame)?;
                pending.insert(id);
                let (lo, hi) = self.config.message_gap_ms;
                next_send = Instant::now() + Duration::from_millis(self.rng.range(lo, hi + 1));
            }
            match ws.read() {
                Ok(Message::Text(text)) => {
                    let frame: Value = serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
                    self.on_frame(ws, &frame, &mut pending, ledger)?;
                }
                Ok(Message::Close(_)) => return Err("closed".to_string()),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }

    fn on_frame(
        &mut self,
        ws: &mut WebSocket<TcpStream>,
        frame: &Value,
        pending: &mut HashSet<String>,
        ledger: &Ledger,
    ) -> Result<(), String> {
        let id = frame["id"].as_str().unwrap_or_default();
        match frame["type"].as_str().unwrap_or_default() {
            "ack" if pending.remove(id) => {
                ledger.counts.acked.fetch_add(1, Relaxed);
                if self.config.record {
                    ledger.acked.lock().unwrap().push(id.to_string());
                }
            }
            "error" if pending.remove(id) => {
                ledger.counts.rejected.fetch_add(1, Relaxed);
            }
            "proxy_delivery" => {
                ledger.counts.deliveries.fetch_add(1, Relaxed);
                if self.config.record {
                    let message = frame["assistant_message_id"].as_str().unwrap_or_default().to_string();
                    *ledger.deliveries.lock().unwrap().entry(message).or_default() += 1;
                }
                let mode = match self.rng.chance(self.config.fail_percent) {
                    true => Mode::Fail("tab_closed".into()),
                    false => Mode::Succeed,
                };
                self.answer(ws, ledger, frame, &mode)?;
            }
            "api_request" => self.answer(ws, ledger, frame, &Mode::Succeed)?,
            _ => {}
        }
        Ok(())
    }

    /// Answers a request the way the plugin simulator does (one place for
    /// the plugin's answers: `bridge::plugin_answers`).
    fn answer(
        &self,
        ws: &mut WebSocket<TcpStream>,
        ledger: &Ledger,
        request: &Value,
        mode: &Mode,
    ) -> Result<(), String> {
        let answerer = Answerer { client_id: Some(&self.client), default_platform: Some(PLATFORM), mode };
        let frames = answerer.answer(request)?;
        self.answered(ledger);
        for frame in &frames {
            send(ws, frame)?;
        }
        Ok(())
    }

    /// Written down before the answer is sent: the daemon cannot complete
    /// the lease earlier than this.
    fn answered(&self, ledger: &Ledger) {
        if self.config.record {
            ledger.answers.lock().unwrap().push((self.client.clone(), now_ms()));
        }
    }
}

fn connect(url: &str) -> Option<WebSocket<TcpStream>> {
    let hostport = url.strip_prefix("ws://")?.split('/').next()?;
    let tcp = TcpStream::connect(hostport).ok()?;
    tcp.set_nodelay(true).ok();
    tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let (ws, _) = tungstenite::client::client(url, tcp).ok()?;
    // Short reads from here on: the plugin also has messages to send.
    ws.get_ref().set_read_timeout(Some(Duration::from_millis(5))).ok()?;
    Some(ws)
}

fn send(ws: &mut WebSocket<TcpStream>, frame: &Value) -> Result<(), String> {
    ws.send(Message::text(frame.to_string())).map_err(|e| e.to_string())
}

fn ingest(config: &LoadConfig, h: usize, http: SocketAddr, mut rng: Rng, stop: &AtomicBool, ledger: &Ledger) {
    let mut client = Client::new(http, Duration::from_secs(5));
    let mut n = 0u64;
    while !stop.load(Relaxed) {
        let k = rng.range(0, config.plugins.max(1) as u64) as usize;
        let j = rng.range(0, config.conversations_per_plugin as u64) as usize;
        let id = format!("{}-h{h}-{n}", config.tag);
        n += 1;
        let body = message(config, &id, k, j, config.plugins > 0).to_string();
        match client.call("POST", "/v1/messages", Some(&body)) {
            Ok((200, _)) => {
                ledger.counts.acked.fetch_add(1, Relaxed);
                if config.record {
                    ledger.acked.lock().unwrap().push(id);
                }
            }
            Ok(_) => {
                ledger.counts.rejected.fetch_add(1, Relaxed);
            }
            Err(_) => {
                ledger.counts.http_errors.fetch_add(1, Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let (lo, hi) = config.message_gap_ms;
        std::thread::sleep(Duration::from_millis(rng.range(lo, hi + 1)));
    }
}

fn relay(config: &LoadConfig, http: SocketAddr, mut rng: Rng, stop: &AtomicBool, ledger: &Ledger) {
    let mut client = Client::new(http, Duration::from_secs(5));
    while !stop.load(Relaxed) {
        let k = rng.range(0, config.plugins.max(1) as u64) as usize;
        let body = json!({"platform": PLATFORM, "method": "GET", "path": "/backend-api/me",
                          "client_id": client_id(&config.run, k), "timeout_ms": 3000})
        .to_string();
        match client.call("POST", "/v1/browser/request", Some(&body)) {
            Ok((200, _)) => ledger.counts.relays_ok.fetch_add(1, Relaxed),
            Ok(_) => ledger.counts.relays_failed.fetch_add(1, Relaxed),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                ledger.counts.http_errors.fetch_add(1, Relaxed)
            }
        };
        std::thread::sleep(Duration::from_millis(rng.range(5, 40)));
    }
}

/// What a status page or a script polls.
const READS: &[&str] = &[
    "/v1/messages?limit=50",
    "/v1/renewal/jobs?limit=50",
    "/v1/renewal/jobs?status=pending&limit=20",
    "/v1/renewal/conversations?limit=100",
    "/v1/browser",
    "/v1/system",
    "/v1/timed-jobs",
    "/healthz",
];

fn reader(http: SocketAddr, mut rng: Rng, stop: &AtomicBool, ledger: &Ledger) {
    let mut client = Client::new(http, Duration::from_secs(5));
    while !stop.load(Relaxed) {
        let path = READS[rng.range(0, READS.len() as u64) as usize];
        match client.call("GET", path, None) {
            Ok((200, _)) => ledger.counts.reads.fetch_add(1, Relaxed),
            Ok(_) | Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                ledger.counts.http_errors.fetch_add(1, Relaxed)
            }
        };
        std::thread::sleep(Duration::from_millis(rng.range(20, 120)));
    }
}

/// Flips conversations (mostly to auto, so renewals flow) and now and then
/// pauses the system, resuming it on the next turn.
fn switcher(http: SocketAddr, mut rng: Rng, stop: &AtomicBool, ledger: &Ledger) {
    let mut client = Client::new(http, Duration::from_secs(5));
    let mut conversations: Vec<String> = Vec::new();
    // The first turn resumes: a pause acknowledged just before an earlier
    // kill must not keep this load from renewing anything.
    let mut paused = true;
    while !stop.load(Relaxed) {
        if conversations.is_empty() || rng.chance(5) {
            if let Ok((200, body)) = client.call("GET", "/v1/renewal/conversations?limit=500", None) {
                let doc: Value = serde_json::from_slice(&body).unwrap_or_default();
                conversations = doc["data"]["conversations"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|c| c["local_conversation_id"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
            }
        }
        if !conversations.is_empty() {
            let id = &conversations[rng.range(0, conversations.len() as u64) as usize];
            let to = match rng.range(0, 10) {
                0 => "manual",
                1 => "paused",
                _ => "auto",
            };
            if let Ok((200, _)) =
                client.call("POST", &format!("/v1/renewal/conversations/{id}/{to}"), Some("{}"))
            {
                ledger.counts.switches.fetch_add(1, Relaxed);
            }
        }
        if paused || rng.chance(5) {
            let to = if paused { "resume" } else { "pause" };
            ledger.system.lock().unwrap().1 = true;
            if let Ok((200, _)) = client.call("POST", &format!("/v1/system/{to}"), Some("{}")) {
                let state = if paused { "running" } else { "paused" };
                *ledger.system.lock().unwrap() = (Some(state.to_string()), false);
                ledger.counts.system_switches.fetch_add(1, Relaxed);
                paused = !paused;
            }
        }
        std::thread::sleep(Duration::from_millis(rng.range(10, 40)));
    }
}
