// Site adapters on saved DOM fixtures: final vs streaming, several
// messages, code blocks and line breaks, ids stable across a reload,
// login, composer found / missing / empty.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fixture, loadPage, scanAll } from "./page.js";

const CASES = {
  chatgpt: {
    file: "chatgpt.html",
    url: "https://chatgpt.com/c/6f1c2a9e-0000-4c7e-9a51-3b2e8f0c1a00",
    firstText:
      "Here is one way:\n\n```python\ndef double(x):\n    # keep the sign\n    return x * 2\n```\n\n" +
      "It works for int and float.\nCall it as double(3).\n\n- fast\n- simple",
    firstId: "6f1c2a9e-0d4b-4c7e-9a51-3b2e8f0c1a01",
    finishStreaming(doc) {
      const last = doc.querySelectorAll('[data-message-author-role="assistant"]')[1];
      last.querySelector(".markdown").innerHTML = "<p>In Rust you would write:</p><p>x * 2</p>";
      last.querySelector(".markdown").classList.remove("streaming-animation");
      last.closest("article").insertAdjacentHTML("beforeend", '<div aria-label="Response actions" role="group"><button data-testid="copy-turn-action-button"></button></div>');
      doc.querySelector('[data-testid="stop-button"]').remove();
    },
    secondText: "In Rust you would write:\n\nx * 2",
  },
  claude: {
    file: "claude.html",
    url: "https://claude.ai/chat/1e2d3c4b-5a69-4788-9a0b-c1d2e3f40516",
    firstText: "A loop in Python:\n\n```python\nfor i in range(3):\n    print(i)\n```\n\n1. It prints 0.\n2. Then 1 and 2.",
    firstId: null, // claude gives none: a hash
    finishStreaming(doc) {
      const w = doc.querySelectorAll("[data-is-streaming]")[1];
      w.querySelector(".standard-markdown").innerHTML = "<p>A while loop runs while its condition holds.</p>";
      w.setAttribute("data-is-streaming", "false");
      doc.querySelector('button[aria-label="Stop response"]').remove();
    },
    secondText: "A while loop runs while its condition holds.",
  },
  gemini: {
    file: "gemini.html",
    url: "https://gemini.google.com/app/3b9f1c2d4e5a6b7c",
    firstText: "Use the sort package:\n\n```go\nsort.Ints(xs)\nfmt.Println(xs)\n```\n\nThat sorts in place.",
    firstId: "r_9f2c61d0b84e7a35",
    finishStreaming(doc) {
      const r = doc.querySelectorAll("model-response")[1];
      const md = r.querySelector(".markdown");
      md.innerHTML = "<p>Use sort.Slice with a greater-than.</p>";
      md.setAttribute("aria-busy", "false");
      r.insertAdjacentHTML("beforeend", '<div class="response-footer complete"><message-actions></message-actions></div>');
      doc.querySelector('button[aria-label="Stop response"]').remove();
    },
    secondText: "Use sort.Slice with a greater-than.",
  },
};

for (const [platform, c] of Object.entries(CASES)) {
  const conv = () => new URL(c.url).pathname.split("/").pop();

  test(`${platform}: only the final message is handed out while the next streams`, () => {
    const { g, document } = loadPage(fixture(c.file), c.url);
    const { ready, waiting } = scanAll(g, platform, document, conv());
    assert.equal(ready.length, 1);
    assert.equal(waiting, true, "the streaming reply keeps the scanner waiting");
    assert.equal(ready[0].text, c.firstText);
    if (c.firstId) assert.equal(ready[0].id, c.firstId);
    else assert.match(ready[0].id, new RegExp(`^${platform}-h-[0-9a-f]{16}$`));
  });

  test(`${platform}: the streaming reply is handed out once, when final, with its full text`, () => {
    const { g, document } = loadPage(fixture(c.file), c.url);
    const first = scanAll(g, platform, document, conv());
    // Scanning again mid-stream gives nothing new: no prefix, no repeat.
    assert.equal(first.scanner.scan(document, conv()).ready.length, 0);
    c.finishStreaming(document);
    const second = first.scanner.scan(document, conv());
    assert.equal(second.ready.length, 1);
    assert.equal(second.ready[0].text, c.secondText);
    assert.notEqual(second.ready[0].id, first.ready[0].id);
    assert.equal(second.waiting, false);
    assert.equal(first.scanner.scan(document, conv()).ready.length, 0);
  });

  test(`${platform}: a reload finds the same message ids (no duplicates)`, () => {
    const ids = [];
    for (let load = 0; load < 2; load++) {
      const { g, document } = loadPage(fixture(c.file), c.url);
      c.finishStreaming(document);
      ids.push(Array.from(scanAll(g, platform, document, conv()).ready, (m) => m.id));
    }
    assert.equal(ids[0].length, 2);
    assert.equal(new Set(ids[0]).size, 2);
    assert.deepEqual(ids[1], ids[0]);
  });

  test(`${platform}: login seen, composer found and empty`, () => {
    const { g, document } = loadPage(fixture(c.file), c.url);
    const a = g.BaaAdapters.get(platform);
    assert.equal(a.login(document).logged_in, true);
    const composer = a.composer(document);
    assert.ok(composer, "composer found");
    assert.ok(!composer.classList.contains("ql-clipboard"), "not Quill's clipboard decoy");
    assert.equal(g.BaaText.composerText(composer), "");
    assert.equal(a.isStreaming(document), true);
  });

  test(`${platform}: a missing composer is reported as missing`, () => {
    const { g, document } = loadPage(fixture(c.file), c.url);
    const a = g.BaaAdapters.get(platform);
    for (const e of document.querySelectorAll('[contenteditable="true"]')) e.remove();
    assert.equal(a.composer(document), null);
  });
}

test("gemini: the account hint is a masked e-mail", () => {
  const c = CASES.gemini;
  const { g, document } = loadPage(fixture(c.file), c.url);
  assert.deepEqual({ ...g.BaaAdapters.get("gemini").login(document).account }, { email_hint: "t***@example.com" });
});

test("chatgpt: a signed-out page is not logged in", () => {
  const { g, document } = loadPage(fixture("chatgpt_logged_out.html"), "https://chatgpt.com/");
  assert.equal(g.BaaAdapters.get("chatgpt").login(document).logged_in, false);
});

test("a message whose text changes is handed out only after it settles", () => {
  const c = CASES.claude;
  const { g, document } = loadPage(fixture(c.file), c.url);
  let now = 1000;
  const scanner = new g.BaaAdapters.Scanner(g.BaaAdapters.get("claude"), { settleMs: 500, now: () => now });
  assert.equal(scanner.scan(document, "x").ready.length, 0, "first sight starts the settle clock");
  now += 499;
  assert.equal(scanner.scan(document, "x").ready.length, 0);
  now += 1;
  assert.equal(scanner.scan(document, "x").ready.length, 1);
});

test("a hand-out that failed is handed out again; a delivered one never", () => {
  const c = CASES.gemini;
  const { g, document } = loadPage(fixture(c.file), c.url);
  const { scanner, ready } = scanAll(g, "gemini", document, "x");
  scanner.retry(ready[0].el);
  const again = scanner.scan(document, "x").ready;
  assert.equal(again.length, 1);
  assert.equal(again[0].id, ready[0].id);
  scanner.done(again[0].el);
  scanner.retry(again[0].el);
  assert.equal(scanner.scan(document, "x").ready.length, 0);
});
