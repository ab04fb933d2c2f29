// Raw relay (docs/BRIDGE.md `api_request`): performs the daemon's HTTP
// request from this page's own origin, so the person's session applies
// (`credentials: "include"`), and answers with `api_response`, or with
// `stream_event` frames (seq 1..n) closed by `stream_end`/`stream_error`.
// In Firefox a content script's own fetch is the extension's; `content.fetch`
// is the page's, which is what a relay must use. Defines `globalThis.BaaRelay`.
(function (root) {
  "use strict";

  const LIMITS = Object.freeze({
    maxBodyBytes: 4 * 1024 * 1024, // a plain answer's body (the daemon's frame cap is 8 MiB)
    maxStreamBytes: 32 * 1024 * 1024, // a whole stream
    maxEventBytes: 64 * 1024, // one stream_event's data
  });
  // Response headers worth passing on; the rest (and any credential) stay.
  const KEEP_HEADERS = new Set([
    "content-type", "content-length", "content-language", "cache-control", "etag", "last-modified",
    "retry-after", "x-request-id",
  ]);
  // Request headers a relay may not set: the page's session is the
  // credential, not something a script passes in.
  const DROP_HEADERS = new Set(["cookie", "authorization", "host", "origin", "referer"]);

  function pageFetch() {
    // eslint-disable-next-line no-undef
    if (typeof content === "object" && content && typeof content.fetch === "function") return content.fetch.bind(content);
    return root.fetch.bind(root);
  }

  function requestInit(req, signal) {
    const method = String(req.method || "GET").toUpperCase();
    const headers = {};
    for (const [k, v] of Object.entries(req.headers || {})) {
      if (typeof v === "string" && !DROP_HEADERS.has(k.toLowerCase())) headers[k] = v;
    }
    let body;
    if (req.body !== null && req.body !== undefined && method !== "GET" && method !== "HEAD") {
      if (typeof req.body === "string") body = req.body;
      else {
        body = JSON.stringify(req.body);
        if (!Object.keys(headers).some((k) => k.toLowerCase() === "content-type")) {
          headers["content-type"] = "application/json";
        }
      }
    }
    return { method, headers, body, credentials: "include", redirect: "follow", signal };
  }

  function keptHeaders(response) {
    const out = {};
    response.headers.forEach((value, key) => {
      if (KEEP_HEADERS.has(key.toLowerCase())) out[key.toLowerCase()] = value;
    });
    return out;
  }

  /** Reads at most `max` bytes; null when the body is larger. */
  async function readCapped(response, max) {
    const reader = response.body.getReader();
    const chunks = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > max) {
        reader.cancel().catch(() => {});
        return null;
      }
      chunks.push(value);
    }
    const all = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.byteLength;
    }
    return new TextDecoder().decode(all);
  }

  function bodyValue(text, contentType) {
    if (/\bjson\b/i.test(contentType || "")) {
      try {
        return JSON.parse(text);
      } catch (_) {
        // Not what it said it was: hand over the text.
      }
    }
    return text;
  }

  /**
   * Runs `req` (an api_request frame) and calls `emit(frame)` for each
   * answer frame, in order. Never throws: every failure becomes a frame.
   * `cancel` (an AbortSignal) stops the request when nobody listens any more.
   */
  async function perform(req, emit, loc, cancel) {
    const id = req.request_id;
    const timeoutMs = Math.max(100, Number(req.timeout_ms) || 60000);
    // Answer a little before the daemon gives up on us, so the caller sees why.
    const budget = Math.max(50, timeoutMs - Math.min(500, timeoutMs / 10));
    const controller = new AbortController();
    let reader = null;
    // A timeout aborts the fetch and the body being read (a read waiting on
    // a silent upstream would not notice the abort by itself).
    const abort = () => {
      controller.abort();
      if (reader) reader.cancel().catch(() => {});
    };
    if (cancel) cancel.addEventListener("abort", abort, { once: true });
    let timer = setTimeout(abort, budget);
    const rearm = () => {
      clearTimeout(timer);
      timer = setTimeout(abort, budget);
    };
    const plainError = (status, error, message) =>
      emit({ type: "api_response", request_id: id, status, headers: {}, body: { error, message } });
    let url;
    try {
      url = new URL(String(req.path || ""), loc.origin);
    } catch (_) {
      url = null;
    }
    if (!url || url.origin !== loc.origin || !String(req.path || "").startsWith("/")) {
      clearTimeout(timer);
      return plainError(400, "invalid_path", "path must be a path on the page's own origin");
    }
    const stream = req.stream === true;
    let seq = 0;
    try {
      const response = await pageFetch()(url.href, requestInit(req, controller.signal));
      if (!stream) {
        const text = await readCapped(response, LIMITS.maxBodyBytes);
        clearTimeout(timer);
        if (text === null) {
          return plainError(502, "body_too_large", `upstream body over ${LIMITS.maxBodyBytes} bytes`);
        }
        const headers = keptHeaders(response);
        return emit({ type: "api_response", request_id: id, status: response.status, headers,
          body: bodyValue(text, headers["content-type"]) });
      }
      reader = response.body.getReader();
      const decoder = new TextDecoder();
      let total = 0;
      for (;;) {
        rearm();
        const { done, value } = await reader.read();
        if (controller.signal.aborted) throw new Error("aborted");
        if (done) break;
        total += value.byteLength;
        if (total > LIMITS.maxStreamBytes) {
          reader.cancel().catch(() => {});
          clearTimeout(timer);
          return emit({ type: "stream_error", request_id: id, seq: ++seq, code: "body_too_large",
            message: `stream over ${LIMITS.maxStreamBytes} bytes` });
        }
        const data = decoder.decode(value, { stream: true });
        for (let at = 0; at < data.length; at += LIMITS.maxEventBytes) {
          emit({ type: "stream_event", request_id: id, seq: ++seq, data: data.slice(at, at + LIMITS.maxEventBytes) });
        }
      }
      const rest = decoder.decode();
      if (rest) emit({ type: "stream_event", request_id: id, seq: ++seq, data: rest });
      clearTimeout(timer);
      return emit({ type: "stream_end", request_id: id, seq: ++seq, status: response.status });
    } catch (err) {
      clearTimeout(timer);
      const timedOut = controller.signal.aborted;
      const code = timedOut ? "timeout" : seq > 0 ? "upstream_reset" : "fetch_failed";
      const message = timedOut ? `no answer within ${budget} ms` : String((err && err.message) || err);
      if (stream) return emit({ type: "stream_error", request_id: id, seq: ++seq, code, message });
      return plainError(timedOut ? 504 : 502, code, message);
    }
  }

  root.BaaRelay = Object.freeze({ perform, LIMITS });
})(globalThis);
