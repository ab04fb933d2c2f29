// Why a WebSocket did not open. A browser shows a refused handshake only as
// a close with code 1006, never the daemon's answer; the daemon answers a
// plain GET on its WebSocket path with the same checks (Host, Origin, token,
// capacity) and its JSON reason, or 426 when an upgrade would be accepted
// (docs/BRIDGE.md). So after a failed open the background asks once and
// shows the reason: a wrong token reads "refused: unauthorized".

const PROBE_TIMEOUT_MS = 3000;

function httpUrl(wsUrl) {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  u.searchParams.delete("token");
  return u.href;
}

/**
 * `{status, code, message}` when the daemon refuses, `{unreachable}` when
 * nothing answers, null when an upgrade would be accepted (a passing
 * failure: retry).
 */
export async function probe(wsUrl, token, fetchImpl = globalThis.fetch) {
  let url;
  try {
    url = httpUrl(wsUrl);
  } catch (_) {
    return { status: null, code: "invalid_url", message: `not a URL: ${wsUrl}` };
  }
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  let res;
  try {
    res = await fetchImpl(url, { headers, cache: "no-store", credentials: "omit", signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
  } catch (_) {
    return { unreachable: `nothing answers at ${wsUrl} (is the daemon running?)` };
  }
  if (res.status === 426) return null;
  let body = null;
  try {
    body = await res.json();
  } catch (_) {
    // Not the daemon, or not a version that explains itself.
  }
  const err = body && body.error;
  if (err && typeof err.code === "string") {
    return { status: res.status, code: err.code, message: String(err.message || "") };
  }
  return { status: res.status, code: `http_${res.status}`, message: `${url} answered HTTP ${res.status}; is this the daemon's ws_url?` };
}
