// The one WebSocket to the daemon (docs/BRIDGE.md): hello with this
// browser's client id, reconnect with capped exponential backoff and jitter
// after any close, an application `{"type":"ping"}` every 20 s (Chromium
// stops an idle MV3 service worker after ~30 s and counts JSON messages as
// activity, not WebSocket pings), frames answered by `id` matched to their
// sender, daemon requests handed to `onRequest`, unknown frame types
// ignored. It also keeps what the popup shows: the state, the next retry,
// a refusal with the daemon's own reason, the last error.

import { retryDelay } from "./backoff.js";
import { socketUrl } from "./settings.js";

export const KEEPALIVE_MS = 20000;
const REQUEST_TIMEOUT_MS = 15000;
const REQUEST_TYPES = new Set(["proxy_delivery", "action", "api_request"]);

export const STATES = Object.freeze({
  CONNECTING: "connecting",
  CONNECTED: "connected",
  RECONNECTING: "reconnecting",
  REFUSED: "refused",
});

export class Connection {
  /**
   * `settings()` → `{url, token}`; `hello()` → the hello frame;
   * `onReady()` after each hello_ack; `onRequest(frame)` for daemon
   * requests; `probe(url, token)` → a refusal `{status, code, message}`,
   * `{unreachable: message}` or null, asked when a socket closes before
   * it opened; `keepAwake()` is called on each keepalive tick while not
   * connected (an extension API call keeps a worker alive meanwhile).
   */
  constructor(opts) {
    this.opts = opts;
    this.WebSocket = opts.WebSocket || globalThis.WebSocket;
    this.random = opts.random || Math.random;
    this.ws = null;
    this.state = STATES.CONNECTING;
    this.attempt = 0;
    this.retryTimer = null;
    this.nextRetryAt = null;
    this.refusal = null;
    this.lastError = null;
    this.connectionId = null;
    this.connectedAt = null;
    this.url = null;
    this.seq = 0;
    this.pending = new Map(); // frame id -> {resolve, reject, timer}
    this.waiters = []; // callers of whenConnected()
    this.keepalive = null;
    this.generation = 0; // bumped by restart(): older sockets' closes are stale
  }

  start() {
    if (!this.keepalive) this.keepalive = setInterval(() => this.tick(), KEEPALIVE_MS);
    this.connect();
  }

  /** Settings changed: drop the socket and connect again at once. */
  restart() {
    this.generation++;
    this.attempt = 0;
    this.refusal = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      try {
        ws.close(1000, "settings changed");
      } catch (_) {
        // Already closing.
      }
    }
    this.closed("settings changed");
    this.connect();
  }

  tick() {
    if (this.isConnected()) this.send({ type: "ping" });
    else if (this.opts.keepAwake) this.opts.keepAwake();
  }

  isConnected() {
    return this.state === STATES.CONNECTED && !!this.ws && this.ws.readyState === 1;
  }

  async connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.nextRetryAt = null;
    const { url, token } = await this.opts.settings();
    this.url = url;
    let ws;
    try {
      ws = new this.WebSocket(socketUrl(url, token));
    } catch (err) {
      this.lastError = `cannot open ${url}: ${err.message}`;
      this.refusal = { status: null, code: "invalid_url", message: this.lastError };
      this.state = STATES.REFUSED;
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    if (this.state !== STATES.REFUSED) this.state = this.attempt ? STATES.RECONNECTING : STATES.CONNECTING;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      ws.send(JSON.stringify(this.opts.hello()));
    };
    ws.onmessage = (ev) => {
      if (ws === this.ws) this.onText(ev.data);
    };
    ws.onerror = () => {};
    ws.onclose = (ev) => {
      if (ws === this.ws) this.onClose(ev, opened, url, token);
    };
  }

  onText(text) {
    let f;
    try {
      f = JSON.parse(text);
    } catch (_) {
      return;
    }
    if (!f || typeof f !== "object" || typeof f.type !== "string") return;
    if (f.type === "hello_ack") return this.onHelloAck(f);
    if (f.type === "ack" || f.type === "error") return this.onAnswer(f);
    if (REQUEST_TYPES.has(f.type)) return this.opts.onRequest(f);
    // pong, state_snapshot and anything newer: nothing to do.
  }

  onHelloAck(f) {
    this.state = STATES.CONNECTED;
    this.attempt = 0;
    this.refusal = null;
    this.connectionId = typeof f.connection_id === "string" ? f.connection_id : null;
    this.connectedAt = Date.now();
    for (const w of this.waiters.splice(0)) w.resolve();
    Promise.resolve()
      .then(() => this.opts.onReady())
      .catch((err) => (this.lastError = `after hello: ${err.message}`));
  }

  onAnswer(f) {
    const p = f.id !== undefined && f.id !== null ? this.pending.get(f.id) : null;
    if (!p) {
      if (f.type === "error") this.lastError = `daemon: ${f.code}: ${f.message}`;
      return;
    }
    this.pending.delete(f.id);
    clearTimeout(p.timer);
    if (f.type === "ack") p.resolve(f);
    else p.reject(new Error(`${f.code}: ${f.message}`));
  }

  async onClose(ev, opened, url, token) {
    const generation = this.generation;
    this.ws = null;
    const why = opened
      ? `closed by the daemon (${ev.code}${ev.reason ? ` ${ev.reason}` : ""})`
      : `could not connect to ${url}`;
    this.closed(why);
    this.lastError = why;
    if (ev.code === 4000) this.lastError = "replaced: another connection said hello with this client id";
    if (!opened && this.opts.probe) {
      const verdict = await this.opts.probe(url, token);
      if (verdict && verdict.code) {
        this.refusal = verdict;
        this.state = STATES.REFUSED;
        this.lastError = `refused: ${verdict.code}: ${verdict.message}`;
      } else if (verdict && verdict.unreachable) {
        this.refusal = null;
        this.lastError = verdict.unreachable;
      }
    }
    if (generation !== this.generation) return; // a restart() took over meanwhile
    this.scheduleRetry();
  }

  /** Ends what depended on the socket: keepalive state, pending answers. */
  closed(why) {
    this.connectionId = null;
    this.connectedAt = null;
    if (this.state === STATES.CONNECTED) this.state = STATES.RECONNECTING;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error(why));
    }
    this.pending.clear();
  }

  scheduleRetry() {
    const wait = retryDelay(this.attempt++, this.random);
    if (this.state !== STATES.REFUSED) this.state = STATES.RECONNECTING;
    this.nextRetryAt = Date.now() + wait;
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }

  /** Sends a frame now if connected; false otherwise. */
  send(frame) {
    if (!this.isConnected()) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Resolves once connected, or rejects after `ms`. */
  whenConnected(ms) {
    if (this.isConnected()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = { resolve: () => (clearTimeout(t), resolve()) };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error("not connected to the daemon"));
      }, ms);
      this.waiters.push(w);
    });
  }

  /** Sends `frame` with a fresh `id` and resolves with the daemon's ack. */
  request(frame, timeoutMs = REQUEST_TIMEOUT_MS) {
    const id = `b-${++this.seq}`;
    return new Promise((resolve, reject) => {
      if (!this.send({ ...frame, id })) return reject(new Error("not connected to the daemon"));
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error("no answer from the daemon"));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  status() {
    return {
      state: this.state,
      url: this.url,
      connection_id: this.connectionId,
      connected_at: this.connectedAt,
      next_retry_at: this.state === STATES.CONNECTED ? null : this.nextRetryAt,
      refusal: this.refusal,
      last_error: this.lastError,
    };
  }
}
