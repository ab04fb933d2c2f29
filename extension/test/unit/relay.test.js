// The raw relay's page side (content/relay.js) with a stand-in fetch: plain
// answers, streams numbered 1..n+1, the body cap, the timeout, paths that
// would leave the page's origin, and the page's credentials.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fixture, loadPage } from "./page.js";

function relayWith(fetchImpl) {
  const { g } = loadPage(fixture("claude.html"), "https://claude.ai/chat/c-1234567");
  g.fetch = fetchImpl;
  return (req) => {
    const frames = [];
    return g.BaaRelay.perform({ request_id: "ar_1", timeout_ms: 5000, ...req }, (f) => frames.push(JSON.parse(JSON.stringify(f))), new URL("https://claude.ai/chat/c-1234567")).then(() => frames);
  };
}

function streamOf(chunks, { delayMs = 0, failAfter = null } = {}) {
  let i = 0;
  return new ReadableStream({
    async pull(ctl) {
      // unref: a stream nobody reads any more must not hold the test process.
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs).unref());
      if (failAfter !== null && i === failAfter) return ctl.error(new Error("connection reset"));
      if (i >= chunks.length) return ctl.close();
      ctl.enqueue(new TextEncoder().encode(chunks[i++]));
    },
  });
}

test("plain GET: the page's origin, its cookies, JSON body, kept headers only", async () => {
  let seen;
  const relay = relayWith(async (url, init) => {
    seen = { url, init };
    return new Response(JSON.stringify([{ uuid: "org-1" }]), { status: 200, headers: { "content-type": "application/json", "x-secret": "no" } });
  });
  const [f] = await relay({ method: "GET", path: "/api/organizations", headers: { Cookie: "stolen=1", "X-Trace": "t" } });
  assert.equal(seen.url, "https://claude.ai/api/organizations");
  assert.equal(seen.init.credentials, "include");
  assert.deepEqual({ ...seen.init.headers }, { "X-Trace": "t" });
  assert.deepEqual(f, { type: "api_response", request_id: "ar_1", status: 200, headers: { "content-type": "application/json" }, body: [{ uuid: "org-1" }] });
});

test("a JSON body is sent as JSON; upstream status is data", async () => {
  let seen;
  const relay = relayWith(async (url, init) => {
    seen = init;
    return new Response("nope", { status: 404, headers: { "content-type": "text/plain" } });
  });
  const [f] = await relay({ method: "POST", path: "/x", body: { q: 1 } });
  assert.equal(seen.body, '{"q":1}');
  assert.equal(seen.headers["content-type"], "application/json");
  assert.equal(f.status, 404);
  assert.equal(f.body, "nope");
});

test("a path that leaves the page's origin is refused", async () => {
  const relay = relayWith(async () => assert.fail("must not fetch"));
  for (const path of ["//evil.example/x", "https://evil.example/x", "x"]) {
    const [f] = await relay({ method: "GET", path });
    assert.equal(f.status, 400);
    assert.equal(f.body.error, "invalid_path");
  }
});

test("a body over the cap is not relayed", async () => {
  const { g } = loadPage(fixture("claude.html"), "https://claude.ai/chat/c-1234567");
  const big = "x".repeat(g.BaaRelay.LIMITS.maxBodyBytes + 1);
  const relay = relayWith(async () => new Response(big, { status: 200 }));
  const [f] = await relay({ method: "GET", path: "/big" });
  assert.equal(f.status, 502);
  assert.equal(f.body.error, "body_too_large");
});

test("a stream: events seq 1..n, then stream_end with seq n+1 and the status", async () => {
  const relay = relayWith(async () => new Response(streamOf(["a", "b", "c"]), { status: 200 }));
  const frames = await relay({ method: "GET", path: "/s", stream: true });
  assert.deepEqual(frames.map((f) => [f.type, f.seq, f.data ?? f.status]), [
    ["stream_event", 1, "a"], ["stream_event", 2, "b"], ["stream_event", 3, "c"], ["stream_end", 4, 200],
  ]);
});

test("a stream cut upstream ends with stream_error after the events", async () => {
  const relay = relayWith(async () => new Response(streamOf(["a", "b"], { failAfter: 2 }), { status: 200 }));
  const frames = await relay({ method: "GET", path: "/s", stream: true });
  assert.deepEqual(frames.map((f) => [f.type, f.seq]), [["stream_event", 1], ["stream_event", 2], ["stream_error", 3]]);
  assert.equal(frames[2].code, "upstream_reset");
});

test("timeout_ms is honoured: plain → 504, stream → stream_error timeout", async () => {
  const hang = (url, init) => new Promise((_, reject) => init.signal.addEventListener("abort", () => reject(new Error("aborted"))));
  const plain = await relayWith(hang)({ method: "GET", path: "/slow", timeout_ms: 300 });
  assert.equal(plain[0].status, 504);
  assert.equal(plain[0].body.error, "timeout");
  const slowStream = relayWith(async (url, init) => new Response(streamOf(["a", "b"], { delayMs: 5000 }), { status: 200 }));
  const started = Date.now();
  const frames = await slowStream({ method: "GET", path: "/s", stream: true, timeout_ms: 300 });
  assert.ok(Date.now() - started < 4000, "the timeout, not the upstream, ended it");
  assert.deepEqual(frames.map((f) => [f.type, f.code]), [["stream_error", "timeout"]]);
});
