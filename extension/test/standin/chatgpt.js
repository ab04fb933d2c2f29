// Stand-in for chatgpt.com: the elements and behaviour the extension reads
// (docs/EXTENSION.md, ChatGPT), built from scratch: turns as
// <article data-testid="conversation-turn-N">, messages with
// data-message-author-role/data-message-id, the reply's markdown marked
// `streaming-animation` until done, then the turn's action bar with
// copy-turn-action-button; code blocks as a CodeMirror viewer under a
// header; a ProseMirror composer #prompt-textarea; send-button only while
// the composer holds text, stop-button while a reply streams.
import { el, renderInto, installDriver, uuid } from "./common.js";
import { mountEditor } from "./prosemirror_editor.js";

const thread = document.getElementById("thread");
const trailing = document.getElementById("trailing");
let turns = thread.querySelectorAll("article").length;
let streaming = false;

function code(b) {
  const lines = (b.code === "" ? [""] : b.code.split("\n")).map((l) => el("div", { class: "cm-line", text: l }));
  return el("pre", { class: "overflow-visible!" }, [
    el("div", { class: "contain-inline-size rounded-2xl" }, [
      el("div", { class: "sticky top-9" }, [
        el("div", { class: "flex items-center justify-between" }, [
          el("div", { class: "flex items-center text-sm", text: b.lang }),
          el("button", { "aria-label": "Copy", text: "Copy code" }),
        ]),
      ]),
      el("div", { class: "overflow-y-auto p-4", dir: "ltr" }, [
        el("div", { id: "code-block-viewer", class: "cm-editor" }, [
          el("div", { class: "cm-scroller" }, [el("div", { class: "cm-content" }, lines)]),
        ]),
      ]),
    ]),
  ]);
}

function actions() {
  return el("div", { "aria-label": "Response actions", role: "group", class: "flex" }, [
    el("button", { "data-testid": "copy-turn-action-button", "aria-label": "Copy response" }, [el("span", { text: "⧉" })]),
    el("button", { "data-testid": "good-response-turn-action-button", "aria-label": "Good response" }),
    el("button", { "data-testid": "bad-response-turn-action-button", "aria-label": "Bad response" }),
  ]);
}

function turn(role, body, id) {
  turns += 1;
  const msg = el("div", { "data-message-author-role": role, "data-message-id": id || uuid(), "data-message-model-slug": role === "assistant" ? "gpt-5" : null }, [body]);
  const article = el("article", { "data-testid": `conversation-turn-${turns}`, "data-turn": role }, [
    el("h6", { class: "sr-only", text: role === "user" ? "You said:" : "ChatGPT said:" }),
    msg,
  ]);
  thread.append(article);
  return article;
}

export function renderAssistant(src, final, id) {
  const md = el("div", { class: final ? "markdown prose" : "markdown prose streaming-animation" });
  renderInto(md, src, code);
  const article = turn("assistant", md, id);
  if (final) article.append(actions());
  return { article, md };
}

export function renderUser(text) {
  turn("user", el("div", { class: "whitespace-pre-wrap", text }));
}

let editor;
function updateButtons() {
  const text = editor.text();
  trailing.replaceChildren(
    streaming
      ? el("button", { "data-testid": "stop-button", "aria-label": "Stop streaming", id: "composer-submit-button" })
      : text
        ? el("button", { "data-testid": "send-button", "aria-label": "Send prompt", id: "composer-submit-button" })
        : el("button", { "data-testid": "composer-speech-button", "aria-label": "Start voice mode" }),
  );
  const b = trailing.querySelector('[data-testid="send-button"]');
  if (b) b.addEventListener("click", () => driver.send());
}

editor = mountEditor(document.getElementById("editor-place"), {
  attributes: { id: "prompt-textarea", "aria-label": "Chat with ChatGPT" },
  placeholder: "Ask anything",
  onChange: updateButtons,
  onEnter: () => driver.send(),
});

const driver = installDriver({
  addUser: renderUser,
  startReply() {
    const { article, md } = renderAssistant("", false);
    return {
      update: (src) => renderInto(md, src, code),
      finish: (src) => {
        renderInto(md, src, code);
        md.classList.remove("streaming-animation");
        article.append(actions());
        return article.querySelector("[data-message-id]").getAttribute("data-message-id");
      },
    };
  },
  setStreaming(on) {
    streaming = on;
    updateButtons();
  },
  composerText: () => editor.text(),
  clearComposer: () => editor.clear(),
  typeAsPerson: (t) => editor.type(t),
});

for (const m of window.STANDIN_INITIAL || []) {
  if (m.role === "user") renderUser(m.text);
  else renderAssistant(m.text, true, m.id);
}
updateButtons();
