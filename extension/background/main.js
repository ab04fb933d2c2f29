// The background entry (a service worker in Chromium, an event page in
// Firefox: the same module). Listeners are registered synchronously at the
// top so an event that wakes a stopped worker is not missed; then it
// connects to the daemon. Content scripts report pages and final messages
// here; the popup asks for the status; the options page changes settings.

import "../lib/sites.js";
import { Connection } from "./connection.js";
import { Logins } from "./login.js";
import { probe } from "./probe.js";
import { Requests, injectInto } from "./requests.js";
import { KEYS, browserName, clientId, loadSettings } from "./settings.js";
import { Tabs } from "./tabs.js";

const api = globalThis.browser || globalThis.chrome;
const PLATFORMS = globalThis.BaaSites.NAMES;
const MESSAGE_WAIT_MS = 10000;
const ACKED_KEEP = 5000;

let myClientId = null;
const idReady = clientId(api).then((id) => (myClientId = id));
const acked = new Map(); // message_id -> true, oldest first

const conn = new Connection({
  settings: () => loadSettings(api),
  hello: () => ({
    type: "hello",
    client_id: myClientId,
    browser: browserName(api),
    version: api.runtime.getManifest().version,
    platforms: PLATFORMS,
    protocol_version: 1,
  }),
  onReady: async () => {
    tabs.changed(true);
    await logins.reportAll();
    await resyncTabs();
  },
  onRequest: (frame) => requests.handle(frame),
  probe: (url, token) => probe(url, token),
  keepAwake: () => api.runtime.getPlatformInfo().catch(() => {}),
});
const tabs = new Tabs(api, async (list) => conn.send({ type: "tabs", tabs: list }));
const logins = new Logins(api, conn);
const requests = new Requests(api, conn, tabs, () => myClientId);

/** Asks every supported tab's script to report its page and pending messages again. */
async function resyncTabs() {
  const open = await api.tabs.query({ url: globalThis.BaaSites.matchPatterns() });
  await Promise.all(
    open.map(async (t) => {
      try {
        const answer = await api.tabs.sendMessage(t.id, { kind: "resync" });
        if (answer && answer.page) await logins.seen(answer.page.platform, answer.page.login);
      } catch (_) {
        // No script in that tab (yet): it reports itself when it loads.
      }
    }),
  );
}

async function onFinalMessage(message, tab) {
  if (acked.has(message.message_id)) return { ok: true, duplicate: true };
  await conn.whenConnected(MESSAGE_WAIT_MS);
  const frame = { type: "browser.final_message", ...message };
  if (tab && typeof tab.id === "number" && tab.id > 0) frame.tab_id = tab.id;
  const ack = await conn.request(frame);
  acked.set(message.message_id, true);
  if (acked.size > ACKED_KEEP) acked.delete(acked.keys().next().value);
  return { ok: true, duplicate: !!ack.duplicate };
}

function status() {
  return { ...conn.status(), client_id: myClientId, tabs_reported: tabs.count, logins: logins.summary() };
}

api.runtime.onMessage.addListener((msg, sender, sendResponse) => {
  if (!msg || typeof msg.kind !== "string") return false;
  const answer = (p) => {
    Promise.resolve(p).then(sendResponse, (err) => sendResponse({ ok: false, error: String(err && err.message) }));
    return true;
  };
  switch (msg.kind) {
    case "final_message":
      return answer(idReady.then(() => onFinalMessage(msg.message, sender.tab)));
    case "page":
      tabs.changed();
      return answer(logins.seen(msg.page.platform, msg.page.login).then(() => ({ ok: true })));
    case "status":
      return answer(idReady.then(status));
    default:
      return false;
  }
});

api.tabs.onUpdated.addListener((_id, change) => {
  if (change.url !== undefined || change.title !== undefined || change.status === "complete") tabs.changed();
});
api.tabs.onRemoved.addListener(() => tabs.changed());
api.tabs.onCreated.addListener(() => tabs.changed());
if (api.tabs.onReplaced) api.tabs.onReplaced.addListener(() => tabs.changed());

api.storage.onChanged.addListener((changes, area) => {
  if (area === "local" && (changes[KEYS.url] || changes[KEYS.token])) conn.restart();
});

// Tabs opened before the extension was installed have no content script.
// A fresh install also shows the options page: the daemon's address and
// token are the first thing a person may need to set.
api.runtime.onInstalled.addListener(async (details) => {
  if (details && details.reason === "install") api.runtime.openOptionsPage().catch(() => {});
  const open = await api.tabs.query({ url: globalThis.BaaSites.matchPatterns() });
  await Promise.all(open.map((t) => injectInto(api, t.id)));
});

idReady.then(() => conn.start());
