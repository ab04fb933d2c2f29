// Stand-in for gemini.google.com (docs/EXTENSION.md, Gemini), built from
// scratch: turns as div.conversation-container with user-query and
// model-response; reply text in message-content#message-content-id-r_<hex>
// > .markdown (aria-busy while streaming), .response-footer.complete when
// done; code blocks with the language in .code-block-decoration; a Quill
// composer in rich-textarea (plus Quill's off-screen .ql-clipboard, also
// contenteditable); the send button only while the composer holds text,
// "Stop response" in its place while a reply streams; Enter does not send.
import { el, renderInto, installDriver, hexId } from "./common.js";

const history = document.getElementById("chat-history");
const slot = document.getElementById("send-slot");
let streaming = false;

function code(b) {
  return el("code-block", {}, [
    el("div", { class: "code-block" }, [
      el("div", { class: "code-block-decoration header-formatted gds-title-s" }, [
        el("span", { text: b.lang ? b.lang[0].toUpperCase() + b.lang.slice(1) : "" }),
        el("div", { class: "buttons" }, [el("button", { "aria-label": "Copy code" }, [el("mat-icon", { text: "content_copy" })])]),
      ]),
      el("div", { class: "formatted-code-block-internal-container" }, [
        el("div", { class: "animated-opacity" }, [
          el("pre", {}, [el("code", { class: "code-container formatted", "data-test-id": "code-content", text: b.code })]),
        ]),
      ]),
    ]),
  ]);
}

function container() {
  const c = el("div", { class: "conversation-container message-actions-hover-boundary", id: hexId() });
  history.append(c);
  return c;
}

function footer() {
  return el("div", { class: "response-footer complete" }, [
    el("message-actions", {}, [
      el("button", { "aria-label": "Good response" }),
      el("button", { "aria-label": "Bad response" }),
      el("button", { "aria-label": "Copy" }),
    ]),
  ]);
}

export function renderTurn(userText, src, final, id) {
  const c = container();
  c.append(el("user-query", {}, [
    el("user-query-content", {}, [
      el("div", { class: "query-content" }, [
        el("span", { class: "cdk-visually-hidden", text: "You said" }),
        el("div", { class: "query-text" }, userText.split("\n").map((l) => el("p", { class: "query-text-line", text: l }))),
      ]),
    ]),
  ]));
  const rid = id || `r_${hexId()}`;
  const md = el("div", { id: `model-response-message-content${rid}`, class: "markdown markdown-main-panel", "aria-busy": final ? "false" : "true" });
  const response = el("model-response", {}, [
    el("div", { class: "response-container" }, [
      el("div", { class: "response-content" }, [
        el("structured-content-container", { class: "model-response-text processing-state-visible" }, [
          el("message-content", { id: `message-content-id-${rid}`, class: "model-response-text" }, [md]),
        ]),
      ]),
    ]),
  ]);
  const fill = (s) => {
    renderInto(md, s, code);
    md.prepend(el("span", { class: "cdk-visually-hidden", text: "Gemini said" }));
  };
  fill(src);
  if (final) response.append(footer());
  c.append(response);
  return { response, md, fill, rid };
}

const quill = new window.Quill(document.getElementById("quill-place"), { modules: { toolbar: false }, placeholder: "Ask Gemini" });
const editorEl = quill.root;
editorEl.setAttribute("role", "textbox");
editorEl.setAttribute("aria-label", "Enter a prompt for Gemini");
editorEl.classList.add("textarea", "new-input-ui");

const text = () => quill.getText().replace(/\n+$/, "").trim();

function updateButtons() {
  let btn = null;
  if (streaming) btn = el("button", { class: "send-button stop", "aria-label": "Stop response" });
  else if (text()) {
    btn = el("button", { class: "send-button submit", "aria-label": "Send message", "aria-disabled": "false" });
    btn.addEventListener("click", () => driver.send());
  }
  slot.replaceChildren(...(btn ? [btn] : []));
}
quill.on("text-change", updateButtons);

let pendingUser = "";
const driver = installDriver({
  addUser: (t) => (pendingUser = t),
  startReply() {
    const { response, md, fill, rid } = renderTurn(pendingUser, "", false);
    return {
      update: (src) => fill(src),
      finish: (src) => {
        fill(src);
        md.setAttribute("aria-busy", "false");
        response.append(footer());
        return rid;
      },
    };
  },
  setStreaming(on) {
    streaming = on;
    updateButtons();
  },
  composerText: text,
  clearComposer: () => quill.setText(""),
  typeAsPerson: (t) => quill.insertText(quill.getLength() - 1, t, "user"),
});

// Turns as the server keeps them: a reply follows its question (a reply
// started from the test with no question gets an empty one).
let question = "";
for (const m of window.STANDIN_INITIAL || []) {
  if (m.role === "user") question = m.text;
  else {
    renderTurn(question, m.text, true, m.id);
    question = "";
  }
}
updateButtons();
