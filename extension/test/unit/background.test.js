// The background's pieces without a browser: reconnect delays, the
// connection's protocol handling against a stand-in WebSocket, the refusal
// probe, and daemon requests answered by request_id (once per delivery,
// unknown actions refused).
import { test } from "node:test";
import assert from "node:assert/strict";
import { retryDelay, BACKOFF } from "../../background/backoff.js";
import { Connection, STATES } from "../../background/connection.js";
import { probe } from "../../background/probe.js";
import { Requests } from "../../background/requests.js";
import { socketUrl, urlProblem } from "../../background/settings.js";
import { tabEntry } from "../../background/tabs.js";

test("backoff grows exponentially, is capped, and jitters within ±20%", () => {
  assert.equal(retryDelay(0, () => 0.5), BACKOFF.baseMs);
  assert.equal(retryDelay(3, () => 0.5), 8000);
  assert.equal(retryDelay(50, () => 0.999), BACKOFF.capMs);
  assert.equal(retryDelay(2, () => 0), 3200);
  assert.equal(retryDelay(2, () => 1), 4800);
  const spread = new Set(Array.from({ length: 50 }, () => retryDelay(1)));
  assert.ok(spread.size > 10, "random jitter, not one fixed delay");
});

test("settings: the token travels as ?token=, URLs are checked", () => {
  assert.equal(socketUrl("ws://127.0.0.1:4318/ws/browser", null), "ws://127.0.0.1:4318/ws/browser");
  assert.equal(socketUrl("ws://127.0.0.1:4318/ws/browser", "a b&c"), "ws://127.0.0.1:4318/ws/browser?token=a+b%26c");
  assert.equal(urlProblem("ws://localhost:1/ws/browser"), null);
  assert.match(urlProblem("http://localhost:1/"), /ws:\/\//);
  assert.match(urlProblem("nope"), /not a URL/);
});

test("tabs: only supported sites, with the conversation from the URL", () => {
  assert.deepEqual(tabEntry({ id: 7, url: "https://claude.ai/chat/1e2d3c4b-5a69", title: "T" }), {
    tab_id: 7, platform: "claude", url: "https://claude.ai/chat/1e2d3c4b-5a69", title: "T", conversation_id: "1e2d3c4b-5a69",
  });
  assert.equal(tabEntry({ id: 8, url: "https://example.com/c/abc" }), null);
  assert.equal(tabEntry({ id: 9, url: "https://chatgpt.com.evil.test/c/abcdef" }), null);
  assert.equal(tabEntry({ id: 10, url: "https://gemini.google.com/app" }).conversation_id, null);
});

class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.readyState = 0;
    FakeSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.fireClose(1000);
  }
  open() {
    this.readyState = 1;
    this.onopen();
  }
  receive(frame) {
    this.onmessage({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }
  fireClose(code, reason = "") {
    this.readyState = 3;
    this.onclose({ code, reason });
  }
}

function connection(extra = {}) {
  FakeSocket.all = [];
  const seen = { ready: 0, requests: [] };
  const conn = new Connection({
    WebSocket: FakeSocket,
    settings: async () => ({ url: "ws://127.0.0.1:9/ws/browser", token: extra.token || null }),
    hello: () => ({ type: "hello", client_id: "chromium-test", protocol_version: 1 }),
    onReady: () => seen.ready++,
    onRequest: (f) => seen.requests.push(f),
    probe: extra.probe || (async () => null),
    random: () => 0.5,
  });
  return { conn, seen };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

test("connection: hello on open, ready on hello_ack, requests routed, unknown frames ignored", async () => {
  const { conn, seen } = connection({ token: "s3cret" });
  await conn.connect();
  const ws = FakeSocket.all[0];
  assert.equal(ws.url, "ws://127.0.0.1:9/ws/browser?token=s3cret");
  ws.open();
  assert.deepEqual(ws.sent, [{ type: "hello", client_id: "chromium-test", protocol_version: 1 }]);
  ws.receive({ type: "hello_ack", connection_id: "conn_1", heartbeat_ms: 15000 });
  await tick();
  assert.equal(conn.status().state, STATES.CONNECTED);
  assert.equal(seen.ready, 1);
  ws.receive({ type: "state_snapshot", system: {} });
  ws.receive({ type: "some_future_frame", x: 1 });
  ws.receive("not json at all");
  ws.receive({ type: "action", request_id: "act_1", action: "tab_focus" });
  assert.deepEqual(seen.requests.map((f) => f.request_id), ["act_1"]);
  conn.tick();
  assert.deepEqual(ws.sent.at(-1), { type: "ping" });
  clearTimeout(conn.retryTimer);
});

test("connection: a request is matched to its ack by id; a close fails it at once", async () => {
  const { conn } = connection();
  await conn.connect();
  const ws = FakeSocket.all[0];
  ws.open();
  ws.receive({ type: "hello_ack", connection_id: "conn_1" });
  const a = conn.request({ type: "tabs", tabs: [] });
  const b = conn.request({ type: "login_state", platform: "claude" });
  const [fa, fb] = ws.sent.slice(1);
  ws.receive({ type: "ack", id: fb.id, dropped: [] });
  ws.receive({ type: "error", id: fa.id, code: "invalid_frame", message: "bad" });
  assert.equal((await b).id, fb.id);
  await assert.rejects(a, /invalid_frame/);
  const c = conn.request({ type: "tabs", tabs: [] });
  conn.attempt = 10; // a 30 s retry: it cannot fire while the test looks
  ws.fireClose(1001, "going away");
  await assert.rejects(c, /closed by the daemon/);
  assert.equal(conn.status().state, STATES.RECONNECTING);
  assert.ok(conn.status().next_retry_at > Date.now());
  clearTimeout(conn.retryTimer);
});

test("connection: a refused handshake shows the daemon's reason and keeps retrying", async () => {
  const { conn } = connection({ probe: async () => ({ status: 401, code: "unauthorized", message: "A valid token is required." }) });
  await conn.connect();
  conn.attempt = 10; // a 30 s retry: it cannot fire (and reconnect) while the test looks
  FakeSocket.all[0].fireClose(1006);
  await tick();
  await tick();
  const s = conn.status();
  assert.equal(s.state, STATES.REFUSED);
  assert.equal(s.refusal.code, "unauthorized");
  assert.match(s.last_error, /refused: unauthorized/);
  assert.ok(s.next_retry_at, "still retries (the token may be fixed)");
  clearTimeout(conn.retryTimer);
});

test("probe: the daemon's JSON reason, 426 = fine, no answer = unreachable", async () => {
  const calls = [];
  const fake = (status, body) => async (url, init) => {
    calls.push({ url, init });
    return new Response(JSON.stringify(body), { status });
  };
  const refused = await probe("ws://127.0.0.1:9/ws/browser?token=x", "tok", fake(401, { ok: false, error: { code: "unauthorized", message: "A valid token is required." } }));
  assert.deepEqual(refused, { status: 401, code: "unauthorized", message: "A valid token is required." });
  assert.equal(calls[0].url, "http://127.0.0.1:9/ws/browser");
  assert.equal(calls[0].init.headers.authorization, "Bearer tok");
  assert.equal(await probe("ws://127.0.0.1:9/ws/browser", null, fake(426, { ok: false, error: { code: "upgrade_required" } })), null);
  const down = await probe("ws://127.0.0.1:9/ws/browser", null, async () => {
    throw new TypeError("fetch failed");
  });
  assert.match(down.unreachable, /nothing answers/);
});

function fakeBrowser(tabs) {
  const store = {};
  const calls = { sent: [], created: [], removed: [] };
  const api = {
    storage: { session: { get: async (k) => ({ [k]: store[k] }), set: async (o) => Object.assign(store, o) } },
    tabs: {
      get: async (id) => {
        const t = tabs.find((x) => x.id === id);
        if (!t) throw new Error("No tab with id");
        return t;
      },
      query: async () => tabs,
      sendMessage: async (id, msg) => {
        calls.sent.push({ id, msg });
        await new Promise((r) => setTimeout(r, 20));
        return { ok: true };
      },
      create: async (o) => (calls.created.push(o), { id: 99 }),
      update: async (id) => ({ id, windowId: 1 }),
      reload: async () => {},
      remove: async (id) => calls.removed.push(id),
    },
    windows: { update: async () => {} },
    runtime: { getManifest: () => ({ content_scripts: [{ js: [] }] }) },
  };
  return { api, calls, store };
}

function requestsWith(tabs) {
  const b = fakeBrowser(tabs);
  const out = [];
  const conn = { send: (f) => (out.push(f), true) };
  const tabsTracker = {
    get: async (id) => {
      try {
        return tabEntry(await b.api.tabs.get(id));
      } catch (_) {
        return null;
      }
    },
    pick: async () => null,
  };
  return { r: new Requests(b.api, conn, tabsTracker, () => "chromium-test"), out, ...b };
}

const until = async (check) => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
};

test("proxy_delivery: carried out once per request_id; a repeat gets the same answer", async () => {
  const { r, out, calls } = requestsWith([{ id: 5, url: "https://claude.ai/chat/abcdef12", title: "x" }]);
  const frame = { type: "proxy_delivery", request_id: "pd_1", platform: "claude", tab_id: 5, conversation_id: "abcdef12", message_text: "[renewal] go", timeout_ms: 2000 };
  r.handle(frame);
  r.handle(frame); // while the first runs
  await until(() => out.length === 1);
  r.handle(frame); // after it finished
  await until(() => out.length === 2);
  assert.equal(calls.sent.length, 1, "typed into the tab once");
  assert.equal(calls.sent[0].msg.text, "[renewal] go");
  assert.equal(out.length, 2);
  assert.deepEqual(out[1], out[0]);
  assert.equal(out[0].type, "action_result");
  assert.equal(out[0].request_id, "pd_1");
  assert.deepEqual([out[0].accepted, out[0].completed, out[0].failed, out[0].reason], [true, true, false, null]);
  assert.deepEqual(out[0].target, { client_id: "chromium-test", platform: "claude", tab_id: 5 });
});

test("proxy_delivery: a started one whose worker died is never typed again", async () => {
  const { r, out, calls, store } = requestsWith([{ id: 5, url: "https://claude.ai/chat/abcdef12" }]);
  store.deliveries = { pd_2: { state: "started", at: 1 } };
  r.handle({ type: "proxy_delivery", request_id: "pd_2", platform: "claude", tab_id: 5, message_text: "x" });
  await until(() => out.length === 1);
  assert.equal(calls.sent.length, 0);
  assert.equal(out[0].reason, "delivery_interrupted");
});

test("proxy_delivery: a missing tab or another site's tab → tab_not_found", async () => {
  const { r, out } = requestsWith([{ id: 5, url: "https://chatgpt.com/c/abcdef12" }]);
  r.handle({ type: "proxy_delivery", request_id: "pd_3", platform: "claude", tab_id: 5, message_text: "x" });
  r.handle({ type: "proxy_delivery", request_id: "pd_4", platform: "claude", tab_id: 77, message_text: "x" });
  await until(() => out.length === 2);
  assert.deepEqual(out.map((f) => [f.request_id, f.failed, f.reason]).sort(), [["pd_3", true, "tab_not_found"], ["pd_4", true, "tab_not_found"]]);
});

test("actions: tab_close/tab_open work on supported tabs; unknown → unknown_action, never a false success", async () => {
  const { r, out, calls } = requestsWith([{ id: 5, url: "https://gemini.google.com/app/abcdef12" }, { id: 6, url: "https://bank.example/" }]);
  r.handle({ type: "action", request_id: "act_1", action: "tab_close", platform: "gemini", tab_id: 5 });
  r.handle({ type: "action", request_id: "act_2", action: "tab_close", tab_id: 6 });
  r.handle({ type: "action", request_id: "act_3", action: "tab_dance", tab_id: 5 });
  r.handle({ type: "action", request_id: "act_4", action: "tab_open", payload: { url: "https://claude.ai/new" } });
  r.handle({ type: "action", request_id: "act_5", action: "tab_open", payload: { url: "file:///etc/passwd" } });
  await until(() => out.length === 5);
  const by = Object.fromEntries(out.map((f) => [f.request_id, f]));
  assert.deepEqual([by.act_1.completed, by.act_1.failed], [true, false]);
  assert.deepEqual(calls.removed, [5], "only the supported tab was closed");
  assert.equal(by.act_2.reason, "tab_not_found");
  assert.deepEqual([by.act_3.accepted, by.act_3.completed, by.act_3.failed, by.act_3.reason], [false, false, true, "unknown_action"]);
  assert.equal(by.act_4.result.tab_id, 99);
  assert.equal(by.act_5.reason, "invalid_url");
  assert.equal(calls.created.length, 1);
});

test("api_request with no open tab for the platform is still answered", async () => {
  const { r, out } = requestsWith([]);
  r.handle({ type: "api_request", request_id: "ar_1", platform: "claude", method: "GET", path: "/x", stream: false });
  r.handle({ type: "api_request", request_id: "ar_2", platform: "claude", method: "GET", path: "/x", stream: true });
  await until(() => out.length === 2);
  const by = Object.fromEntries(out.map((f) => [f.request_id, f]));
  assert.equal(by.ar_1.type, "api_response");
  assert.equal(by.ar_1.status, 503);
  assert.deepEqual([by.ar_2.type, by.ar_2.seq, by.ar_2.code], ["stream_error", 1, "tab_not_found"]);
});
