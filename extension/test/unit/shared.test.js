// lib/: which site a URL is and which conversation it shows; the
// message-id hash, pinned so an update can never re-id stored messages.
import { test } from "node:test";
import assert from "node:assert/strict";
import "../../lib/sites.js";
import "../../lib/hash.js";

const { BaaSites, BaaHash } = globalThis;

test("routes of the three sites", () => {
  const r = (u) => {
    const x = BaaSites.route(u);
    return x && [x.platform, x.conversation_id, x.pattern];
  };
  assert.deepEqual(r("https://chatgpt.com/c/6aa1deb0-11a2-4b3c-8d4e-5f6a7b8c9d0e"), ["chatgpt", "6aa1deb0-11a2-4b3c-8d4e-5f6a7b8c9d0e", "/c/:conversationId"]);
  assert.deepEqual(r("https://chatgpt.com/g/g-p-67a1b2c3d4/c/6aa1deb0-11a2"), ["chatgpt", "6aa1deb0-11a2", "/g/:gizmoId/c/:conversationId"]);
  assert.deepEqual(r("https://chatgpt.com/"), ["chatgpt", null, null]);
  assert.deepEqual(r("https://claude.ai/chat/1e2d3c4b-5a69-4788-9a0b-c1d2e3f40516?x=1#y"), ["claude", "1e2d3c4b-5a69-4788-9a0b-c1d2e3f40516", "/chat/:conversationId"]);
  assert.deepEqual(r("https://claude.ai/new"), ["claude", null, null]);
  assert.deepEqual(r("https://gemini.google.com/app/cbb342fdc6010a5e"), ["gemini", "cbb342fdc6010a5e", "/app/:conversationId"]);
  assert.deepEqual(r("https://gemini.google.com/u/1/app/cbb342fdc6010a5e"), ["gemini", "cbb342fdc6010a5e", "/app/:conversationId"]);
  assert.deepEqual(r("https://gemini.google.com/gem/coding-partner/cbb342fdc6010a5e"), ["gemini", "cbb342fdc6010a5e", "/gem/:gemId/:conversationId"]);
  assert.equal(r("http://chatgpt.com/c/abcdef"), null, "plain http is not the site");
  assert.equal(r("https://claude.ai.evil.test/chat/abcdef"), null);
  assert.equal(r("not a url"), null);
});

test("the message-id hash is stable and spreads", () => {
  assert.equal(BaaHash.hash64("a"), "579640c7706df448");
  assert.equal(BaaHash.hash64("conv\n0\nHello"), BaaHash.hash64("conv\n0\nHello"));
  const ids = new Set(Array.from({ length: 2000 }, (_, i) => BaaHash.hash64(`conv\n${i}\nsame text`)));
  assert.equal(ids.size, 2000);
});
