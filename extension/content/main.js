// The content script's entry: picks this site's adapter, watches the page
// (a MutationObserver, throttled), reports the page's state (URL,
// conversation, login) and every final assistant message to the
// background, and runs what the background asks of this tab: a delivery
// into the composer, a relayed request. Loaded last, after the adapters.
(function (root) {
  "use strict";
  if (root.__baaContentLoaded) return; // injected again into an open tab
  root.__baaContentLoaded = true;

  const api = root.browser || root.chrome;
  const platform = root.BaaSites.platformOf(location.href);
  const adapter = root.BaaAdapters.get(platform);
  if (!adapter || !api || !api.runtime) return;

  const SCAN_DELAY_MS = 150;
  const RETRY_MIN_MS = 2000;
  const RETRY_MAX_MS = 30000;
  const scanner = new root.BaaAdapters.Scanner(adapter, { settleMs: 500 });
  const delivery = { lastTyped: null, handled: new Map() };
  let timer = null;
  let retryMs = RETRY_MIN_MS;
  const PAGE_EVERY_MS = 10000;
  const MESSAGE = adapter.selectors.message;
  let refresh = true; // look the message elements up again on the next scan
  let lastPage = "";
  let lastHref = "";
  let lastTitle = "";
  let lastPageAt = 0;

  function schedule(ms) {
    if (timer !== null) return;
    timer = setTimeout(run, ms);
  }

  function run() {
    timer = null;
    // The page's state is cheap to compare but its login check walks the
    // document: only when the URL or title changed, or every 10 s.
    const now = Date.now();
    if (location.href !== lastHref || document.title !== lastTitle || now - lastPageAt >= PAGE_EVERY_MS) {
      refresh = true;
      reportPage(false);
    }
    scanMessages();
  }

  function send(message) {
    try {
      return Promise.resolve(api.runtime.sendMessage(message));
    } catch (err) {
      // The extension was reloaded or removed: this script is orphaned.
      return Promise.reject(err);
    }
  }

  function pageState() {
    const here = root.BaaSites.route(location.href);
    return {
      platform,
      url: location.href,
      title: document.title,
      conversation_id: here ? here.conversation_id : null,
      login: adapter.login(document),
    };
  }

  function reportPage(force) {
    lastHref = location.href;
    lastTitle = document.title;
    lastPageAt = Date.now();
    const page = pageState();
    const key = JSON.stringify(page);
    if (!force && key === lastPage) return;
    lastPage = key;
    send({ kind: "page", page }).catch(() => {});
  }

  function scanMessages() {
    const here = root.BaaSites.route(location.href);
    // A new chat has no conversation id until the site gives it a URL.
    if (!here || !here.conversation_id) return;
    const { ready, waiting } = scanner.scan(document, here.conversation_id, refresh);
    refresh = false;
    for (const m of ready) report(m, here);
    if (waiting) schedule(scanner.settleMs);
  }

  function report(m, here) {
    const message = {
      platform,
      conversation_id: here.conversation_id,
      message_id: m.id,
      role: "assistant",
      text: m.text,
      observed_at: Date.now(),
      page_url: location.href,
      page_title: document.title,
      route: { path: here.path, pattern: here.pattern, params: here.params },
      organization_id: null,
      shell_page: false,
    };
    send({ kind: "final_message", message }).then(
      (answer) => {
        if (answer && answer.ok) {
          scanner.done(m.el);
          retryMs = RETRY_MIN_MS;
        } else retryLater(m.el);
      },
      () => retryLater(m.el),
    );
  }

  // The background could not get it to the daemon (offline, restarting):
  // hand it out again later, backing off.
  function retryLater(el) {
    scanner.retry(el);
    const wait = retryMs;
    retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
    setTimeout(() => schedule(0), wait);
  }

  function onDeliver(req) {
    // Once per request_id, whatever asks twice.
    if (!delivery.handled.has(req.request_id)) {
      const run = root.BaaComposer.deliver(
        document,
        adapter,
        { text: req.text, conversationId: req.conversation_id, timeoutMs: req.timeout_ms },
        delivery,
      ).catch((err) => ({ ok: false, reason: "content_error", detail: String(err && err.message) }));
      delivery.handled.set(req.request_id, run);
    }
    return delivery.handled.get(req.request_id);
  }

  api.runtime.onMessage.addListener((msg, _sender, sendResponse) => {
    if (!msg || typeof msg.kind !== "string") return false;
    if (msg.kind === "deliver") {
      onDeliver(msg).then(sendResponse);
      return true;
    }
    if (msg.kind === "resync") {
      refresh = true;
      reportPage(true);
      schedule(0);
      sendResponse({ ok: true, page: pageState() });
      return false;
    }
    return false;
  });

  api.runtime.onConnect.addListener((port) => {
    if (port.name !== "baa-relay") return;
    const cancel = new AbortController();
    port.onDisconnect.addListener(() => cancel.abort());
    port.onMessage.addListener((msg) => {
      if (!msg || !msg.request) return;
      const emit = (frame) => {
        try {
          port.postMessage({ frame });
        } catch (_) {
          cancel.abort();
        }
      };
      root.BaaRelay.perform(msg.request, emit, location, cancel.signal).finally(() => {
        try {
          port.postMessage({ done: true });
        } catch (_) {
          // The background went away; nothing to tell.
        }
      });
    });
  });

  /** Did these changes add or remove a message element? */
  function touchesMessages(records) {
    for (const r of records) {
      for (const list of [r.addedNodes, r.removedNodes]) {
        for (const n of list) if (n.nodeType === 1 && (n.matches(MESSAGE) || n.querySelector(MESSAGE))) return true;
      }
    }
    return false;
  }

  // Structure and the sites' "finished" attributes, not every text change:
  // a reply's last words are caught by the rescans while it settles.
  new MutationObserver((records) => {
    if (!refresh && touchesMessages(records)) refresh = true;
    schedule(SCAN_DELAY_MS);
  }).observe(document.documentElement, {
    childList: true,
    subtree: true,
    attributes: true,
    attributeFilter: ["data-is-streaming", "aria-busy", "disabled", "aria-disabled"],
  });
  addEventListener("popstate", () => schedule(0));
  reportPage(true);
  schedule(0);
})(globalThis);
