// Delivery into a composer, on the fixtures: every refusal reason, and the
// typed-then-sent path. linkedom has no editing commands, so each test
// stands in for the editor's side of `execCommand("insertText")` (what a
// ProseMirror or Quill editor does with it is covered in the browser tests).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { fixture, loadPage } from "./page.js";

const SITES = {
  chatgpt: {
    file: "chatgpt.html",
    url: "https://chatgpt.com/c/conv-1234567",
    finish(doc) {
      doc.querySelector(".streaming-animation").classList.remove("streaming-animation");
      doc.querySelector('[data-testid="stop-button"]').remove();
    },
    // The send button exists only while the composer holds text.
    showSend(doc, onClick) {
      doc.querySelector("#trailing").innerHTML = '<button data-testid="send-button" aria-label="Send prompt"></button>';
      doc.querySelector('[data-testid="send-button"]').addEventListener("click", onClick);
    },
    addUser(doc) {
      doc.querySelector("#thread").insertAdjacentHTML("beforeend", '<article><div data-message-author-role="user" data-message-id="u-9">x</div></article>');
    },
  },
  claude: {
    file: "claude.html",
    url: "https://claude.ai/chat/conv-1234567",
    finish(doc) {
      doc.querySelectorAll("[data-is-streaming]")[1].setAttribute("data-is-streaming", "false");
      doc.querySelector("#trailing").innerHTML = '<button aria-label="Send message" type="button" disabled></button>';
    },
    showSend(doc, onClick) {
      const b = doc.querySelector('button[aria-label="Send message"]');
      b.removeAttribute("disabled");
      b.addEventListener("click", onClick);
    },
    addUser(doc) {
      doc.querySelector("main div").insertAdjacentHTML("beforeend", '<div data-testid="user-message">x</div>');
    },
  },
  gemini: {
    file: "gemini.html",
    url: "https://gemini.google.com/app/conv-1234567",
    finish(doc) {
      doc.querySelectorAll(".markdown")[1].setAttribute("aria-busy", "false");
      doc.querySelector(".send-button-container").innerHTML = "";
    },
    showSend(doc, onClick) {
      doc.querySelector(".send-button-container").innerHTML = '<button class="send-button submit" aria-label="Send message" aria-disabled="false"></button>';
      doc.querySelector(".send-button").addEventListener("click", onClick);
    },
    addUser(doc) {
      doc.querySelector("#chat-history").insertAdjacentHTML("beforeend", "<user-query>x</user-query>");
    },
  },
};

/** Makes `execCommand("insertText")` fill the composer as an editor would. */
function editorAccepts(doc, adapter, after) {
  doc.execCommand = (cmd, _ui, text) => {
    if (cmd !== "insertText") return false;
    const ed = adapter.composer(doc);
    ed.innerHTML = text.split("\n").map((l) => `<p>${l || "<br>"}</p>`).join("");
    if (after) after();
    return true;
  };
}

async function deliver(g, doc, platform, text, extra = {}) {
  const adapter = g.BaaAdapters.get(platform);
  const state = extra.state || { lastTyped: null };
  const res = await g.BaaComposer.deliver(doc, adapter, { text, conversationId: "conv-1234567", timeoutMs: 1200, ...extra }, state);
  return { ...res };
}

describe("deliver", { concurrency: true }, () => {
for (const [platform, s] of Object.entries(SITES)) describe(platform, { concurrency: true }, () => {
  test(`${platform}: a reply still streaming refuses with busy_streaming`, async () => {
    const { g, document } = loadPage(fixture(s.file), s.url);
    assert.equal((await deliver(g, document, platform, "hi")).reason, "busy_streaming");
  });

  test(`${platform}: no composer → composer_not_found`, async () => {
    const { g, document } = loadPage(fixture(s.file), s.url);
    s.finish(document);
    for (const e of document.querySelectorAll('[contenteditable="true"]')) e.remove();
    assert.equal((await deliver(g, document, platform, "hi")).reason, "composer_not_found");
  });

  test(`${platform}: a person's draft is never overwritten (composer_not_empty)`, async () => {
    const { g, document } = loadPage(fixture(s.file), s.url);
    s.finish(document);
    const adapter = g.BaaAdapters.get(platform);
    adapter.composer(document).innerHTML = "<p>my own half-written question</p>";
    editorAccepts(document, adapter);
    const res = await deliver(g, document, platform, "hi");
    assert.equal(res.reason, "composer_not_empty");
    assert.equal(g.BaaText.composerText(adapter.composer(document)), "my own half-written question");
  });

  test(`${platform}: another conversation in the tab → conversation_mismatch`, async () => {
    const { g, document } = loadPage(fixture(s.file), s.url);
    s.finish(document);
    assert.equal((await deliver(g, document, platform, "hi", { conversationId: "other-conv-99" })).reason, "conversation_mismatch");
  });

  test(`${platform}: typed but the send button never enables → send_disabled`, async () => {
    const { g, document } = loadPage(fixture(s.file), s.url);
    s.finish(document);
    editorAccepts(document, g.BaaAdapters.get(platform));
    assert.equal((await deliver(g, document, platform, "line one\nline two")).reason, "send_disabled");
  });

  test(`${platform}: an editor that ignores the input → input_rejected`, async () => {
    const { g, document } = loadPage(fixture(s.file), s.url);
    s.finish(document);
    document.execCommand = () => true; // claims success, changes nothing
    assert.equal((await deliver(g, document, platform, "hi")).reason, "input_rejected");
  });

  test(`${platform}: typed into an empty composer, sent with the send button`, async () => {
    const { g, document } = loadPage(fixture(s.file), s.url);
    s.finish(document);
    const adapter = g.BaaAdapters.get(platform);
    let clicks = 0;
    editorAccepts(document, adapter, () =>
      s.showSend(document, () => {
        clicks++;
        adapter.composer(document).innerHTML = "<p><br></p>";
        s.addUser(document);
      }),
    );
    const res = await deliver(g, document, platform, "[renewal] keep going\nhttps://example.test/a");
    assert.deepEqual(res, { ok: true });
    assert.equal(clicks, 1);
  });

  test(`${platform}: the page never takes the message → timeout`, async () => {
    const { g, document } = loadPage(fixture(s.file), s.url);
    s.finish(document);
    const adapter = g.BaaAdapters.get(platform);
    editorAccepts(document, adapter, () => s.showSend(document, () => {}));
    assert.equal((await deliver(g, document, platform, "hi")).reason, "timeout");
  });
});
});

test("a retry may replace the text an earlier attempt left, not a draft", async () => {
  const s = SITES.claude;
  const { g, document } = loadPage(fixture(s.file), s.url);
  s.finish(document);
  const adapter = g.BaaAdapters.get("claude");
  editorAccepts(document, adapter);
  const state = { lastTyped: null };
  assert.equal((await deliver(g, document, "claude", "first try", { state })).reason, "send_disabled");
  assert.equal(g.BaaText.composerText(adapter.composer(document)), "first try");
  assert.equal((await deliver(g, document, "claude", "second try", { state })).reason, "send_disabled");
  assert.equal(g.BaaText.composerText(adapter.composer(document)), "second try");
});

test("chatgpt: a signed-out page refuses with not_logged_in", async () => {
  const { g, document } = loadPage(fixture("chatgpt_logged_out.html"), "https://chatgpt.com/c/conv-1234567");
  assert.equal((await deliver(g, document, "chatgpt", "hi")).reason, "not_logged_in");
});
