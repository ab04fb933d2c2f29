// The site-adapter registry and what every adapter shares: selector helpers,
// the message id rule, and the scanner that turns a page into final
// assistant messages exactly once each. An adapter (chatgpt.js, claude.js,
// gemini.js) only knows its site's DOM; docs/EXTENSION.md lists the
// interface and each site's elements. Defines `globalThis.BaaAdapters`.
(function (root) {
  "use strict";

  const registry = {};

  /** The first element matching any of `selectors` (tried in order). */
  function first(scope, selectors) {
    for (const sel of selectors) {
      const el = scope.querySelector(sel);
      if (el) return el;
    }
    return null;
  }

  /** A button a person could press: present, not disabled, not aria-disabled. */
  function enabled(btn) {
    return !!btn && !btn.disabled && btn.getAttribute("aria-disabled") !== "true" && !btn.hasAttribute("disabled");
  }

  /** `a***@example.com`: enough to tell accounts apart, not to address anyone. */
  function maskEmail(email) {
    const m = /^([^@\s]+)@([^@\s]+)$/.exec((email || "").trim());
    if (!m) return null;
    return `${m[1].slice(0, 1)}***@${m[2]}`;
  }

  /**
   * The message id rule: the page's own id when it has one; else a stable
   * hash of conversation, position among the assistant messages, and text,
   * so a reload finds the same ids and the daemon stores no duplicate.
   */
  function messageId(adapter, el, index, text, conversationId) {
    const own = adapter.ownId(el);
    if (own) return own;
    return `${adapter.platform}-h-${root.BaaHash.hash64(`${conversationId}\n${index}\n${text}`)}`;
  }

  /**
   * Finds final assistant messages not yet handed out. A message is handed
   * out once its adapter says it is final and its text has stayed the same
   * for `settleMs` (so a site that drops its "streaming" marker a moment
   * before the last words land cannot give a prefix). Messages already
   * handed out are never read again, which keeps a scan of a long
   * conversation cheap.
   */
  class Scanner {
    constructor(adapter, { settleMs = 500, now = () => Date.now() } = {}) {
      this.adapter = adapter;
      this.settleMs = settleMs;
      this.now = now;
      this.seen = new WeakMap();
      this.els = null; // the page's message elements at the last refresh
    }

    /**
     * `{ready: [{el, index, id, text}], waiting}`; `waiting`: scan again
     * later. `refresh` false reuses the message list of the last scan (the
     * caller knows no message element was added or removed since): looking
     * the messages up walks the whole document, checking them does not.
     */
    scan(doc, conversationId, refresh = true) {
      if (refresh || !this.els) this.els = this.adapter.messages(doc);
      const els = this.els;
      const ready = [];
      let waiting = false;
      for (let i = 0; i < els.length; i++) {
        const el = els[i];
        const st = this.seen.get(el);
        if (st && (st.handed || st.done)) continue;
        if (!this.adapter.isFinal(el, i, els, doc)) {
          waiting = true;
          continue;
        }
        const text = this.adapter.text(el);
        const t = this.now();
        if (!text) {
          waiting = true;
          continue;
        }
        if (!st || st.text !== text) {
          this.seen.set(el, { text, since: t, handed: false, done: false });
          if (this.settleMs > 0) {
            waiting = true;
            continue;
          }
        } else if (t - st.since < this.settleMs) {
          waiting = true;
          continue;
        }
        const entry = this.seen.get(el);
        entry.handed = true;
        ready.push({ el, index: i, id: messageId(this.adapter, el, i, text, conversationId), text });
      }
      return { ready, waiting };
    }

    /** The daemon has it: never hand it out again. */
    done(el) {
      const st = this.seen.get(el);
      if (st) st.done = true;
    }

    /** Delivery failed: hand it out again on a later scan. */
    retry(el) {
      const st = this.seen.get(el);
      if (st && !st.done) st.handed = false;
    }
  }

  /**
   * What the composer (composer.js) asks of an adapter, made from its
   * `selectors` (`composer`, `send`: lists tried in order; `userMessage`)
   * unless the adapter defines its own.
   */
  const FROM_SELECTORS = {
    composer: (a) => (doc) => first(doc, a.selectors.composer),
    sendButton: (a) => (doc) => first(doc, a.selectors.send),
    sendEnabled: () => enabled,
    userMessageCount: (a) => (doc) => doc.querySelectorAll(a.selectors.userMessage).length,
  };

  function register(adapter) {
    for (const [name, make] of Object.entries(FROM_SELECTORS)) {
      if (!adapter[name]) adapter[name] = make(adapter);
    }
    registry[adapter.platform] = adapter;
  }

  root.BaaAdapters = {
    register,
    get: (platform) => registry[platform] || null,
    all: () => Object.values(registry),
    first,
    enabled,
    maskEmail,
    messageId,
    Scanner,
  };
})(globalThis);
