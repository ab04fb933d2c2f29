// The open tabs of supported sites as the protocol's `tabs` frame wants
// them, sent whenever they change (debounced) and after every hello_ack.

import "../lib/sites.js";

const Sites = globalThis.BaaSites;
const DEBOUNCE_MS = 200;

/** The protocol's view of one browser tab, or null if it is no supported site. */
export function tabEntry(tab) {
  if (!tab || typeof tab.id !== "number" || tab.id <= 0 || !tab.url) return null;
  const here = Sites.route(tab.url);
  if (!here) return null;
  return {
    tab_id: tab.id,
    platform: here.platform,
    url: tab.url,
    title: tab.title || "",
    conversation_id: here.conversation_id,
  };
}

export class Tabs {
  constructor(api, onChange) {
    this.api = api;
    this.onChange = onChange;
    this.timer = null;
    this.last = null; // JSON of the list last handed to onChange
    this.count = 0;
  }

  async list() {
    const tabs = await this.api.tabs.query({ url: Sites.matchPatterns() });
    return tabs.map(tabEntry).filter(Boolean).sort((a, b) => a.tab_id - b.tab_id);
  }

  /** Soon, and only if the list changed (or `force`). */
  changed(force = false) {
    if (force) this.last = null;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), DEBOUNCE_MS);
  }

  async flush() {
    const list = await this.list();
    const json = JSON.stringify(list);
    if (json === this.last) return;
    if (await this.onChange(list)) {
      this.last = json;
      this.count = list.length;
    }
  }

  /** The supported tab `tabId` (fresh from the browser) or null. */
  async get(tabId) {
    if (typeof tabId !== "number") return null;
    try {
      return tabEntry(await this.api.tabs.get(tabId));
    } catch (_) {
      return null;
    }
  }

  /** The tab to act in for `platform`: the active one, else the most recently used. */
  async pick(platform) {
    const origin = Sites.origin(platform);
    if (!origin) return null;
    const tabs = await this.api.tabs.query({ url: `${origin}/*` });
    tabs.sort((a, b) => Number(b.active) - Number(a.active) || (b.lastAccessed || 0) - (a.lastAccessed || 0));
    return tabs.length ? tabEntry(tabs[0]) : null;
  }
}
