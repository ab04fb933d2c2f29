// Login state per platform, from what the tabs' content scripts see on the
// page: logged in or not, and an account hint (a masked e-mail where the
// page shows one). Metadata only: the extension never reads a cookie, a
// token or an authorization header, so it has none to send. Kept in
// `storage.session` so a restarted service worker can report it again.

const KEY = "logins";

async function fingerprint(platform, account) {
  const data = new TextEncoder().encode(`${platform}|${JSON.stringify(account || {})}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return `sha256:${Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export class Logins {
  constructor(api, conn) {
    this.api = api;
    this.conn = conn;
    this.byPlatform = null; // platform -> {logged_in, account, fingerprint, captured_at}
    this.sent = new Map(); // platform -> fingerprint sent on this connection
  }

  async load() {
    if (this.byPlatform) return;
    const got = await this.api.storage.session.get(KEY);
    this.byPlatform = new Map(Object.entries(got[KEY] || {}));
  }

  /** A tab reported `login` ({logged_in, account}) for `platform`. */
  async seen(platform, login) {
    await this.load();
    if (!login || login.logged_in === null || login.logged_in === undefined) return;
    const account = login.account && typeof login.account === "object" ? login.account : {};
    const fp = await fingerprint(platform, account);
    const before = this.byPlatform.get(platform);
    if (before && before.logged_in === !!login.logged_in && before.fingerprint === fp) return this.report(platform);
    this.byPlatform.set(platform, { logged_in: !!login.logged_in, account, fingerprint: fp, captured_at: Date.now() });
    await this.api.storage.session.set({ [KEY]: Object.fromEntries(this.byPlatform) });
    return this.report(platform);
  }

  /** Sends `login_state` for `platform` if logged in and not yet sent on this connection. */
  async report(platform) {
    const s = this.byPlatform.get(platform);
    if (!s || !s.logged_in || this.sent.get(platform) === s.fingerprint) return;
    const frame = { type: "login_state", platform, captured_at: s.captured_at, fingerprint: s.fingerprint, account: s.account };
    try {
      await this.conn.request(frame);
      this.sent.set(platform, s.fingerprint);
    } catch (_) {
      // Not connected: the next hello_ack reports it.
    }
  }

  /** After hello_ack: everything again, on the new connection. */
  async reportAll() {
    await this.load();
    this.sent.clear();
    await Promise.all(Array.from(this.byPlatform.keys(), (p) => this.report(p)));
  }

  summary() {
    return Object.fromEntries(Array.from((this.byPlatform || new Map()).entries(), ([p, s]) => [p, s.logged_in]));
  }
}
