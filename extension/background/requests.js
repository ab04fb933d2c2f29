// Daemon → plugin requests (docs/BRIDGE.md): `proxy_delivery`, `action`
// and `api_request`. Every one is answered by its `request_id`, also when
// it fails, with a reason; a delivery is carried out at most once per
// `request_id` (the record survives a service-worker restart in
// `storage.session`), and an unknown action is refused, never faked.

import "../lib/sites.js";

const Sites = globalThis.BaaSites;
const DELIVERY_KEY = "deliveries";
const DELIVERY_KEEP = 200;

export const REASONS = Object.freeze({
  TAB_NOT_FOUND: "tab_not_found",
  TAB_NOT_READY: "tab_not_ready",
  UNKNOWN_ACTION: "unknown_action",
  INVALID_URL: "invalid_url",
  INTERRUPTED: "delivery_interrupted",
  ACTION_FAILED: "action_failed",
});

export class Requests {
  /** `conn`: the Connection; `tabs`: the Tabs tracker; `clientId()`: this browser's id. */
  constructor(api, conn, tabs, clientId) {
    this.api = api;
    this.conn = conn;
    this.tabs = tabs;
    this.clientId = clientId;
    this.deliveries = null; // request_id -> {state: "started"|"done", result}
    this.running = new Set(); // deliveries this worker is carrying out
  }

  handle(frame) {
    if (typeof frame.request_id !== "string") return;
    const run =
      frame.type === "proxy_delivery" ? this.delivery(frame)
      : frame.type === "action" ? this.action(frame)
      : this.relay(frame);
    run.catch((err) => {
      // A bug or a browser API failure: still answer.
      if (frame.type === "api_request") this.relayError(frame, 502, "extension_error", err.message);
      else this.conn.send(this.result(frame, frame.type === "action" ? frame.action : "proxy_delivery", { failed: REASONS.ACTION_FAILED, detail: err.message }));
    });
  }

  result(frame, action, { failed = null, detail = null, result = {}, accepted = true } = {}) {
    return {
      type: "action_result",
      request_id: frame.request_id,
      action,
      accepted,
      completed: !failed,
      failed: !!failed,
      reason: failed,
      received_at: Date.now(),
      result: detail ? { ...result, detail } : result,
      target: { client_id: this.clientId(), platform: frame.platform || null, tab_id: frame.tab_id ?? null },
    };
  }

  // --- proxy_delivery -----------------------------------------------------

  async loadDeliveries() {
    if (this.deliveries) return;
    const got = await this.api.storage.session.get(DELIVERY_KEY);
    this.deliveries = new Map(Object.entries(got[DELIVERY_KEY] || {}));
  }

  async saveDeliveries() {
    const entries = Array.from(this.deliveries.entries()).slice(-DELIVERY_KEEP);
    this.deliveries = new Map(entries);
    await this.api.storage.session.set({ [DELIVERY_KEY]: Object.fromEntries(entries) });
  }

  async delivery(frame) {
    await this.loadDeliveries();
    const id = frame.request_id;
    const seen = this.deliveries.get(id);
    if (seen && seen.state === "done") return this.conn.send(seen.result);
    if (seen && this.running.has(id)) return; // the first one will answer
    if (seen) {
      // Started by a worker that was stopped mid-way: it may have sent.
      return this.finish(id, this.result(frame, "proxy_delivery", { failed: REASONS.INTERRUPTED }));
    }
    this.running.add(id);
    this.deliveries.set(id, { state: "started", at: Date.now() });
    await this.saveDeliveries();
    try {
      const answer = await this.deliverInTab(frame);
      const result = answer.ok
        ? this.result(frame, "proxy_delivery")
        : this.result(frame, "proxy_delivery", { failed: answer.reason || "delivery_failed", detail: answer.detail });
      await this.finish(id, result);
    } finally {
      this.running.delete(id);
    }
  }

  async finish(id, result) {
    this.deliveries.set(id, { state: "done", result });
    await this.saveDeliveries();
    this.conn.send(result);
  }

  async deliverInTab(frame) {
    const tab = await this.tabs.get(frame.tab_id);
    if (!tab) return { ok: false, reason: REASONS.TAB_NOT_FOUND, detail: `no tab ${frame.tab_id}` };
    if (frame.platform && tab.platform !== frame.platform) {
      return { ok: false, reason: REASONS.TAB_NOT_FOUND, detail: `tab ${frame.tab_id} is ${tab.platform}` };
    }
    const message = {
      kind: "deliver",
      request_id: frame.request_id,
      text: String(frame.message_text || ""),
      conversation_id: frame.conversation_id || null,
      timeout_ms: Number(frame.timeout_ms) || 20000,
    };
    const answer = await this.toTab(tab.tab_id, message);
    return answer || { ok: false, reason: REASONS.TAB_NOT_READY, detail: "the page's script does not answer" };
  }

  /** tabs.sendMessage, injecting the content scripts once if the tab has none. */
  async toTab(tabId, message) {
    try {
      return await this.api.tabs.sendMessage(tabId, message);
    } catch (_) {
      if (!(await injectInto(this.api, tabId))) return null;
      try {
        return await this.api.tabs.sendMessage(tabId, message);
      } catch (_) {
        return null;
      }
    }
  }

  // --- action ---------------------------------------------------------------

  async action(frame) {
    const name = typeof frame.action === "string" ? frame.action : "";
    const payload = frame.payload && typeof frame.payload === "object" ? frame.payload : {};
    const fail = (reason, detail) => this.conn.send(this.result(frame, name, { failed: reason, detail }));
    const done = (result) => this.conn.send(this.result(frame, name, { result }));
    if (name === "tab_open") {
      const url = typeof payload.url === "string" ? payload.url : "";
      if (!Sites.platformOf(url)) return fail(REASONS.INVALID_URL, "payload.url must be a ChatGPT, Claude or Gemini URL");
      const tab = await this.api.tabs.create({ url, active: payload.active !== false });
      return done({ tab_id: tab.id });
    }
    const acts = {
      tab_focus: async (tab) => {
        const t = await this.api.tabs.update(tab.tab_id, { active: true });
        if (t && typeof t.windowId === "number" && this.api.windows) {
          await this.api.windows.update(t.windowId, { focused: true }).catch(() => {});
        }
      },
      tab_reload: (tab) => this.api.tabs.reload(tab.tab_id),
      tab_close: (tab) => this.api.tabs.remove(tab.tab_id),
    };
    if (!acts[name]) {
      return this.conn.send(this.result(frame, name, { failed: REASONS.UNKNOWN_ACTION, accepted: false, detail: `unknown action "${name}"` }));
    }
    // Only tabs of supported sites: the daemon may not steer other tabs.
    const tab = typeof frame.tab_id === "number" ? await this.tabs.get(frame.tab_id) : await this.tabs.pick(frame.platform);
    if (!tab || (frame.platform && tab.platform !== frame.platform)) return fail(REASONS.TAB_NOT_FOUND, `no ${frame.platform || "supported"} tab ${frame.tab_id ?? ""}`.trim());
    await acts[name](tab);
    return done({ tab_id: tab.tab_id });
  }

  // --- api_request ----------------------------------------------------------

  relayError(frame, status, code, message) {
    if (frame.stream === true) {
      this.conn.send({ type: "stream_error", request_id: frame.request_id, seq: 1, code, message });
    } else {
      this.conn.send({ type: "api_response", request_id: frame.request_id, status, headers: {}, body: { error: code, message } });
    }
  }

  async relay(frame) {
    const tab = await this.tabs.pick(frame.platform);
    if (!tab) return this.relayError(frame, 503, REASONS.TAB_NOT_FOUND, `no open ${frame.platform} tab`);
    let port = this.openPort(tab.tab_id);
    let lastSeq = 0;
    let ended = false;
    const listen = (p) =>
      new Promise((resolve) => {
        p.onMessage.addListener((msg) => {
          if (msg && msg.frame) {
            lastSeq = msg.frame.seq || lastSeq;
            ended = ended || msg.frame.type !== "stream_event";
            this.conn.send(msg.frame);
          }
          if (msg && msg.done) {
            p.disconnect();
            resolve(true);
          }
        });
        p.onDisconnect.addListener(() => resolve(false));
      });
    const ask = (p) => {
      if (!p) return false;
      const answered = listen(p);
      p.postMessage({ request: frame });
      return answered;
    };
    const finished = await ask(port);
    // No script in the tab (open since before the install): add it, ask again.
    if (!finished && lastSeq === 0 && !ended && (await injectInto(this.api, tab.tab_id))) {
      port = this.openPort(tab.tab_id);
      await ask(port);
    }
    if (!ended) {
      if (frame.stream === true && lastSeq > 0) {
        this.conn.send({ type: "stream_error", request_id: frame.request_id, seq: lastSeq + 1, code: "tab_gone", message: "the tab went away mid-stream" });
      } else if (!lastSeq) this.relayError(frame, 503, REASONS.TAB_NOT_READY, "the page's script does not answer");
    }
  }

  openPort(tabId) {
    try {
      return this.api.tabs.connect(tabId, { name: "baa-relay" });
    } catch (_) {
      return null;
    }
  }
}

/** Injects the manifest's content scripts into an open tab; false if it cannot. */
export async function injectInto(api, tabId) {
  if (!api.scripting) return false;
  const files = api.runtime.getManifest().content_scripts[0].js;
  try {
    await api.scripting.executeScript({ target: { tabId }, files });
    return true;
  } catch (_) {
    return false;
  }
}
