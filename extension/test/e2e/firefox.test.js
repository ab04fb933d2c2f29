// End to end in Debian's Firefox ESR over WebDriver BiDi, the extension
// installed as a temporary add-on (`webExtension.install`), against the
// real daemon and the HTTPS stand-ins (on a random 127.x.y.z:443, every
// name resolved there by network.dns.forceResolve): hello + tabs + login
// state; a streamed reply becomes exactly one message with its full text,
// per site; a renewal typed into each site's editor (ProseMirror, Quill)
// and sent, the job done; the relay through the page (Firefox needs the
// page's own `content.fetch` for the session to apply); the event page
// still connected, on the same connection, after 40 s; and, the daemon
// restarted, reconnected as the same client.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { makeCert } from "./lib/cert.js";
import { startStandin, HOSTS } from "./lib/standin_server.js";
import { startDaemon, until } from "./lib/daemon.js";
import { launchFirefox, randomLoopback } from "./lib/firefox.js";
import { PLATFORMS, conversations, reply, clients, rawText, waitMessages, parseSse, renewalRoundTrip } from "./lib/scenarios.js";

const CONFIG = {
  timed_jobs: { interval_ms: 300, settle_delay_ms: 1500 },
  renewal: { retry_base_delay_ms: 1000, retry_max_delay_ms: 2000, recovery_delay_ms: 1000 },
  policy: { rate_limit: { requests_per_minute_per_platform: 200 }, backoff: { base_ms: 200, max_ms: 1000 } },
};
const IDLE_MS = 40000;

let standin, daemon, browser, conv, pages, first;

/** Binds the stand-in to port 443 of a random loopback address (retrying a taken one). */
async function bindStandin(cert) {
  for (let i = 0; ; i++) {
    const address = randomLoopback();
    try {
      return await startStandin(cert, address, 443);
    } catch (err) {
      if (err.code !== "EADDRINUSE" || i > 20) throw err;
    }
  }
}

async function ourClient() {
  return (await clients(daemon)).find((c) => c.status === "connected" && c.browser === "firefox" && c.tabs.length === 3);
}

before(async () => {
  standin = await bindStandin(makeCert(Object.keys(HOSTS)));
  daemon = await startDaemon({ config: CONFIG });
  browser = await launchFirefox({ standinAddress: standin.host });
  // A fresh install opens the options page: set the daemon's URL there.
  const options = await until("the options page opened on install", async () => {
    const tree = await browser.send("browsingContext.getTree", {});
    return tree.contexts.find((c) => c.url.endsWith("/options/options.html"));
  }, 30000);
  const opt = browser.page(options.context);
  await until("options ready", () => opt.evaluate("!!document.querySelector('body[data-ready]')"));
  await opt.evaluate(`(document.querySelector('#url').value = ${JSON.stringify(daemon.ws)}, document.querySelector('#save').click(), true)`);
  await until("options saved", async () => (await opt.evaluate("document.querySelector('#saved').textContent")) === "Saved.");
  conv = conversations();
  pages = {};
  for (const p of PLATFORMS) pages[p] = await browser.open(conv.urls[p]);
});

after(async () => {
  await browser?.close();
  if (daemon) {
    await daemon.stop();
    daemon.cleanup();
  }
  await standin?.close();
});

test("firefox: hello, tabs and login state are visible in GET /v1/browser", async () => {
  const client = await until("firefox client with three tabs", ourClient, 30000);
  first = { client, at: Date.now() };
  assert.match(client.client_id, /^firefox-[0-9a-f]{12}$/);
  assert.equal(client.version, "0.1.0");
  for (const p of PLATFORMS) {
    const tab = client.tabs.find((t) => t.platform === p);
    assert.equal(tab.url, conv.urls[p]);
    assert.equal(tab.conversation_id, conv.ids[p]);
  }
  const logins = await until("three login states", async () => {
    const r = (await daemon.get("/v1/browser")).data.login_states.filter((l) => l.client_id === client.client_id);
    return r.length === 3 ? r : null;
  });
  assert.deepEqual(logins.find((l) => l.platform === "gemini").account, { email_hint: "t***@example.com" });
});

test("firefox: a streamed reply becomes exactly one message with its full final text, per site", async () => {
  for (const p of PLATFORMS) await pages[p].evaluate(`window.standin.reply(${JSON.stringify(reply(p, 1))})`);
  for (const p of PLATFORMS) {
    const [m] = await waitMessages(daemon, p, conv.ids[p], 1);
    assert.equal(await rawText(daemon, m.message_id), reply(p, 1), p);
  }
  for (const p of PLATFORMS) await pages[p].evaluate(`window.standin.reply(${JSON.stringify(reply(p, 2))})`);
  for (const p of PLATFORMS) await waitMessages(daemon, p, conv.ids[p], 2);
});

test("firefox: renewal is typed into each site's editor and sent; the jobs end done", async () => {
  for (const p of PLATFORMS) {
    const { job } = await renewalRoundTrip(daemon, p, conv.ids[p], (src) => pages[p].evaluate(`window.standin.reply(${JSON.stringify(src)})`), 3);
    const sent = await pages[p].evaluate("window.standin.sent()");
    assert.deepEqual(sent, [job.payload_text.trim()], p);
    assert.match(sent[0], new RegExp(`^\\[renewal\\] Reply 3 from the ${p} stand-in`));
  }
});

test("firefox: raw relay, plain and streamed, through the page with its session", async () => {
  const who = await daemon.post("/v1/browser/request", { platform: "claude", method: "GET", path: "/standin-api/whoami" });
  assert.equal(who.status, 200, JSON.stringify(who));
  assert.equal(who.data.body.cookie_present, true);
  assert.equal(who.data.body.sec_fetch_site, "same-origin");
  const res = await daemon.raw("/v1/browser/request", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ platform: "gemini", method: "GET", path: "/standin-api/stream?n=4&delay=50", stream: true }),
  });
  const events = parseSse(await res.text());
  assert.equal(events.at(-1).event, "stream_end", JSON.stringify(events));
  const data = events.filter((e) => e.event === "stream_event");
  assert.equal(data.map((e) => e.data.data).join(""), [1, 2, 3, 4].map((i) => `data: chunk-${i}\n\n`).join(""));
});

test("firefox: after 40 s the event page is still connected on the same connection", async () => {
  await until("40 s since the client connected", () => Date.now() - first.at >= IDLE_MS, IDLE_MS + 5000, 500);
  const now = (await clients(daemon)).find((c) => c.client_id === first.client.client_id);
  assert.equal(now.status, "connected");
  assert.equal(now.connection_id, first.client.connection_id);
});

test("firefox: the daemon restarts: the event page reconnects as the same client and reports tabs and login state again", async () => {
  const before = await until("connected", ourClient);
  const wsPort = new URL(daemon.ws).port;
  await daemon.stop();
  daemon = await startDaemon({ config: CONFIG, stateDir: daemon.dir, ws: `127.0.0.1:${wsPort}` });
  const after = await until("reconnected with tabs", ourClient, 30000);
  assert.equal(after.client_id, before.client_id);
  assert.notEqual(after.connection_id, before.connection_id);
  await until("login states again", async () =>
    (await daemon.get("/v1/browser")).data.login_states.filter((l) => l.client_id === after.client_id && l.status === "fresh").length === 3);
});
