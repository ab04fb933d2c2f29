// End to end in Debian's Chromium with the unpacked extension, against the
// real daemon binary and HTTPS stand-ins of chatgpt.com, claude.ai and
// gemini.google.com. One browser session runs the scenarios in order:
// hello + tabs + login state; a streamed reply becomes exactly one message
// with its full text, per site, and a reload adds none; the raw relay,
// plain and streamed, through the page; tab actions; renewal (auto →
// typed and sent in the stand-in → job done); daemon restart → reconnect
// and re-report; token → connects, wrong token → the popup says refused.
// A second Chromium, driven over raw CDP so no DevTools attach to its
// service worker, idles 40 s meanwhile against its own daemon: it must
// stay connected, and once its worker is stopped the next page message
// must wake it and get through.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { makeCert } from "./lib/cert.js";
import { startStandin, HOSTS } from "./lib/standin_server.js";
import { startDaemon, until } from "./lib/daemon.js";
import { launchChromium, EXTENSION_ID } from "./lib/chromium.js";
import { launchRawChromium } from "./lib/cdp.js";
import { PLATFORMS, conversations, reply, clients, rawText, waitMessages, parseSse, renewalRoundTrip } from "./lib/scenarios.js";

const CONFIG = {
  timed_jobs: { interval_ms: 300, settle_delay_ms: 1500 },
  renewal: { retry_base_delay_ms: 1000, retry_max_delay_ms: 2000, recovery_delay_ms: 1000 },
  policy: { rate_limit: { requests_per_minute_per_platform: 200 }, backoff: { base_ms: 200, max_ms: 1000 } },
};
const IDLE_MS = 40000;
const OPTIONS_URL = `chrome-extension://${EXTENSION_ID}/options/options.html`;
const POPUP_URL = `chrome-extension://${EXTENSION_ID}/popup/popup.html`;

let cert, standin, daemon, browser, conv, pages;
const idle = {}; // the raw-CDP browser's own world

async function setOptions(page, url, token = "") {
  await page.goto(OPTIONS_URL);
  await page.waitForSelector("body[data-ready]");
  await page.fill("#url", url);
  await page.fill("#token", token);
  await page.click("#save");
  await until("options saved", async () => (await page.textContent("#saved")) === "Saved.");
}

async function ourClient(d = daemon) {
  return (await clients(d)).find((c) => c.status === "connected" && c.tabs.some((t) => t.url === conv.urls.chatgpt));
}

before(async () => {
  cert = makeCert(Object.keys(HOSTS));
  standin = await startStandin(cert);
  // The idle browser first, so its 40 s overlap the other scenarios.
  idle.daemon = await startDaemon({ config: CONFIG });
  idle.browser = await launchRawChromium({ standinPort: standin.port, spki: cert.spki });
  idle.options = await idle.browser.open(OPTIONS_URL);
  await until("idle options page", () => idle.options.evaluate("!!document.querySelector('body[data-ready]')"));
  await idle.options.evaluate(`document.querySelector('#url').value = ${JSON.stringify(idle.daemon.ws)}; document.querySelector('#save').click()`);
  await until("idle options saved", async () => (await idle.options.evaluate("document.querySelector('#saved').textContent")) === "Saved.");
  idle.conv = conversations();
  idle.page = await idle.browser.open(idle.conv.urls.chatgpt);
  idle.client = await until("idle browser connected", async () =>
    (await clients(idle.daemon)).find((c) => c.status === "connected" && c.tabs.some((t) => t.url === idle.conv.urls.chatgpt)), 30000);
  idle.since = Date.now();

  daemon = await startDaemon({ config: CONFIG });
  browser = await launchChromium({ standinPort: standin.port, spki: cert.spki });
  const options = await browser.context.newPage();
  await setOptions(options, daemon.ws);
  await options.close();
  conv = conversations();
  pages = {};
  for (const p of PLATFORMS) {
    pages[p] = await browser.context.newPage();
    await pages[p].goto(conv.urls[p]);
  }
});

after(async () => {
  await browser?.close();
  await idle.browser?.close();
  for (const d of [daemon, idle.daemon, idle.tokenDaemon]) {
    if (!d) continue;
    await d.stop();
    d.cleanup();
  }
  await standin?.close();
});

test("hello, tabs and login state are visible in GET /v1/browser", async () => {
  const client = await until("client with three tabs", async () => {
    const c = await ourClient();
    return c && c.tabs.length === 3 ? c : null;
  }, 30000);
  assert.match(client.client_id, /^chromium-[0-9a-f]{12}$/);
  assert.equal(client.browser, "chromium");
  assert.equal(client.version, "0.1.0");
  assert.deepEqual(client.platforms, PLATFORMS);
  for (const p of PLATFORMS) {
    const tab = client.tabs.find((t) => t.platform === p);
    assert.equal(tab.url, conv.urls[p]);
    assert.equal(tab.conversation_id, conv.ids[p]);
    assert.ok(tab.tab_id > 0);
  }
  const logins = await until("three login states", async () => {
    const r = (await daemon.get("/v1/browser")).data.login_states.filter((l) => l.client_id === client.client_id);
    return r.length === 3 ? r : null;
  });
  for (const l of logins) {
    assert.equal(l.status, "fresh");
    assert.match(l.fingerprint, /^sha256:[0-9a-f]{64}$/);
  }
  assert.deepEqual(logins.find((l) => l.platform === "gemini").account, { email_hint: "t***@example.com" });
});

test("a streamed reply becomes exactly one message with its full final text, per site; a reload adds none", async () => {
  for (const p of PLATFORMS) await pages[p].evaluate((src) => window.standin.reply(src), reply(p, 1));
  const first = {};
  for (const p of PLATFORMS) {
    const [m] = await waitMessages(daemon, p, conv.ids[p], 1);
    assert.equal(await rawText(daemon, m.message_id), reply(p, 1), p);
    assert.equal(m.page_url, conv.urls[p]);
    assert.ok(m.tab_id > 0);
    first[p] = m.message_id;
  }
  assert.match(first.claude, /^claude-h-[0-9a-f]{16}$/);
  assert.match(first.gemini, /^r_[0-9a-f]{16}$/);
  // A second reply: still nothing but whole messages (a prefix or a repeat would show).
  for (const p of PLATFORMS) await pages[p].evaluate((src) => window.standin.reply(src), reply(p, 2));
  for (const p of PLATFORMS) await waitMessages(daemon, p, conv.ids[p], 2);
  // Reload: the server renders the same turns again (with the sites' own
  // ids for ChatGPT and Gemini; Claude's are hashes). A third reply comes
  // after the reloaded page's first scan: a duplicate would be there by then.
  for (const p of PLATFORMS) {
    await pages[p].reload();
    await pages[p].evaluate((src) => window.standin.reply(src), reply(p, 3));
  }
  for (const p of PLATFORMS) {
    const all = await waitMessages(daemon, p, conv.ids[p], 3);
    assert.ok(all.some((m) => m.message_id === first[p]), `${p}: the first message kept its id`);
  }
});

test("raw relay: a GET through the page carries the page's session; a streamed relay arrives in order", async () => {
  const plain = await daemon.post("/v1/browser/request", { platform: "claude", method: "GET", path: "/api/organizations" });
  assert.equal(plain.status, 200, JSON.stringify(plain));
  assert.equal(plain.data.status, 200);
  assert.deepEqual(plain.data.body, [{ uuid: "org-standin-1", name: "Stand-in org" }]);
  const who = await daemon.post("/v1/browser/request", { platform: "gemini", method: "GET", path: "/standin-api/whoami" });
  assert.equal(who.data.body.cookie_present, true, "credentials: include sent the page's cookie");
  assert.equal(who.data.body.host, "gemini.google.com");
  assert.equal(who.data.body.sec_fetch_site, "same-origin");

  const res = await daemon.raw("/v1/browser/request", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ platform: "chatgpt", method: "GET", path: "/standin-api/stream?n=5&delay=60", stream: true }),
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /text\/event-stream/);
  const events = parseSse(await res.text());
  const end = events.at(-1);
  assert.equal(end.event, "stream_end", JSON.stringify(events));
  assert.equal(end.data.status, 200);
  const data = events.filter((e) => e.event === "stream_event");
  assert.deepEqual(data.map((e) => e.data.seq), data.map((_, i) => i + 1));
  assert.equal(end.data.seq, data.length + 1);
  assert.equal(data.map((e) => e.data.data).join(""), [1, 2, 3, 4, 5].map((i) => `data: chunk-${i}\n\n`).join(""));
});

test("actions: tab_focus is carried out, an unknown action is refused", async () => {
  const client = await ourClient();
  const tab = client.tabs.find((t) => t.platform === "gemini");
  const ok = await daemon.post("/v1/browser/actions", { action: "tab_focus", platform: "gemini", tab_id: tab.tab_id, client_id: client.client_id });
  assert.equal(ok.status, 200, JSON.stringify(ok));
  assert.deepEqual([ok.data.accepted, ok.data.completed, ok.data.failed], [true, true, false]);
  const bad = await daemon.post("/v1/browser/actions", { action: "tab_dance", platform: "gemini", tab_id: tab.tab_id, client_id: client.client_id });
  assert.deepEqual([bad.data.accepted, bad.data.failed, bad.data.reason], [false, true, "unknown_action"]);
});

test("renewal: an auto conversation's next reply is typed and sent in the stand-in, and the job ends done", async () => {
  const { job } = await renewalRoundTrip(daemon, "chatgpt", conv.ids.chatgpt, (src) => pages.chatgpt.evaluate((s) => window.standin.reply(s), src), 4);
  const sent = await pages.chatgpt.evaluate(() => window.standin.sent());
  assert.equal(sent.length, 1, JSON.stringify(sent));
  assert.equal(sent[0], job.payload_text.trim());
  assert.match(sent[0], /^\[renewal\] Reply 4 from the chatgpt stand-in/);
  assert.ok(sent[0].includes("\n"), "the multi-line renewal text kept its line break");
});

test("the daemon restarts: the extension reconnects and reports tabs and login state again", async () => {
  const before = await ourClient();
  const wsPort = new URL(daemon.ws).port;
  await daemon.stop();
  daemon = await startDaemon({ config: CONFIG, stateDir: daemon.dir, ws: `127.0.0.1:${wsPort}` });
  const after = await until("reconnected with tabs", async () => {
    const c = await ourClient();
    return c && c.tabs.length === 3 ? c : null;
  }, 30000);
  assert.equal(after.client_id, before.client_id);
  assert.notEqual(after.connection_id, before.connection_id);
  await until("login states again", async () =>
    (await daemon.get("/v1/browser")).data.login_states.filter((l) => l.client_id === after.client_id && l.status === "fresh").length === 3);
});

test("a token: the right one connects, a wrong one makes the popup say refused", async () => {
  idle.tokenDaemon = await startDaemon({ config: CONFIG, token: "e2e-token-7" });
  const page = await browser.context.newPage();
  await setOptions(page, idle.tokenDaemon.ws, "e2e-token-7");
  await until("connected with the token", async () => (await ourClient(idle.tokenDaemon))?.tabs.length === 3, 30000);
  await setOptions(page, idle.tokenDaemon.ws, "not-the-token");
  await page.goto(POPUP_URL);
  await until("popup says refused", async () => {
    const state = await page.textContent("#state");
    if (/Refused by the daemon: HTTP 401 unauthorized/.test(state)) return true;
    throw new Error(`popup: ${state} / ${await page.textContent("#error")}`);
  }, 30000);
  assert.match(await page.textContent("#detail"), /A valid token is required/);
  assert.match(await page.textContent("#client"), /^chromium-[0-9a-f]{12}$/);
  assert.match(await page.textContent("#error"), /refused: unauthorized/);
  assert.equal((await clients(idle.tokenDaemon)).filter((c) => c.status === "connected").length, 0);
  // Back to the main daemon; the popup follows.
  await setOptions(page, daemon.ws, "");
  await page.goto(POPUP_URL);
  await until("popup says connected", async () => (await page.textContent("#state")) === "Connected", 30000);
  assert.equal(await page.textContent("#tabs"), "3");
  await page.close();
});

test("idle 40 s with no DevTools on the worker: still connected; a stopped worker is woken by the next page message", async () => {
  await until("40 s of idling", () => Date.now() - idle.since >= IDLE_MS, IDLE_MS + 5000, 500);
  const still = (await clients(idle.daemon)).find((c) => c.client_id === idle.client.client_id);
  assert.equal(still.status, "connected");
  assert.equal(still.connection_id, idle.client.connection_id, "the same connection: the worker was never stopped");
  const act = await idle.daemon.post("/v1/browser/actions", { action: "tab_focus", platform: "chatgpt", client_id: idle.client.client_id });
  assert.equal(act.data.completed, true, JSON.stringify(act));

  // Stop the worker the way DevTools' Application panel does, from the
  // extension's own page (same origin), not attached to the worker.
  await idle.browser.send("ServiceWorker.enable", {}, idle.options.sessionId);
  await idle.browser.send("ServiceWorker.stopAllWorkers", {}, idle.options.sessionId);
  await until("the daemon saw it go", async () =>
    (await clients(idle.daemon)).find((c) => c.client_id === idle.client.client_id)?.status === "lost", 20000);
  await idle.page.evaluate(`window.standin.reply(${JSON.stringify(reply("chatgpt", 9))})`);
  const [m] = await waitMessages(idle.daemon, "chatgpt", idle.conv.ids.chatgpt, 1, 30000);
  assert.equal(await rawText(idle.daemon, m.message_id), reply("chatgpt", 9));
  const back = (await clients(idle.daemon)).find((c) => c.client_id === idle.client.client_id);
  assert.equal(back.status, "connected");
  assert.notEqual(back.connection_id, idle.client.connection_id);
});
