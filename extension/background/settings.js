// What the background keeps in extension storage: the daemon's WebSocket
// URL and token (set in the options page) and this browser's client id,
// generated once. The token never leaves storage except in the WebSocket
// URL and the refusal probe's Authorization header.

export const DEFAULT_URL = "ws://127.0.0.1:4318/ws/browser";
export const KEYS = Object.freeze({ url: "daemon_url", token: "daemon_token", clientId: "client_id" });

/** "firefox" or "chromium": Firefox alone has `runtime.getBrowserInfo`. */
export function browserName(api) {
  return api.runtime && typeof api.runtime.getBrowserInfo === "function" ? "firefox" : "chromium";
}

/** `{url, token}`: the stored ones, else the daemon's defaults (no token). */
export async function loadSettings(api) {
  const got = await api.storage.local.get([KEYS.url, KEYS.token]);
  const url = typeof got[KEYS.url] === "string" && got[KEYS.url].trim() ? got[KEYS.url].trim() : DEFAULT_URL;
  const token = typeof got[KEYS.token] === "string" && got[KEYS.token] ? got[KEYS.token] : null;
  return { url, token };
}

/** Checks a URL typed in the options page; null when fine, else why not. */
export function urlProblem(url) {
  let u;
  try {
    u = new URL(url);
  } catch (_) {
    return "not a URL";
  }
  if (u.protocol !== "ws:" && u.protocol !== "wss:") return "must start with ws:// or wss://";
  return null;
}

function randomHex(bytes) {
  const a = new Uint8Array(bytes);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** `chromium-<12 hex>` / `firefox-<12 hex>`, made once and kept. */
export async function clientId(api) {
  const got = await api.storage.local.get(KEYS.clientId);
  const have = got[KEYS.clientId];
  if (typeof have === "string" && /^[A-Za-z0-9._:-]{1,128}$/.test(have)) return have;
  const id = `${browserName(api)}-${randomHex(6)}`;
  await api.storage.local.set({ [KEYS.clientId]: id });
  return id;
}

/** The WebSocket URL with the token as `?token=` (browsers cannot set headers on a WebSocket). */
export function socketUrl(url, token) {
  if (!token) return url;
  const u = new URL(url);
  u.searchParams.set("token", token);
  return u.href;
}
