// Stand-in for claude.ai (docs/EXTENSION.md, Claude), built from scratch:
// each reply in a wrapper whose data-is-streaming is "true" while it
// streams and "false" once final, around .font-claude-response; person's
// turns as [data-testid="user-message"]; code blocks as a language label,
// a copy button and <pre class="code-block__code"><code class="language-x">;
// a ProseMirror composer; "Send message" disabled while the composer is
// empty, "Stop response" while a reply streams.
import { el, renderInto, installDriver } from "./common.js";
import { mountEditor } from "./prosemirror_editor.js";

const thread = document.getElementById("thread");
const trailing = document.getElementById("trailing");
let streaming = false;

function code(b) {
  return el("div", { class: "relative group/copy rounded-lg" }, [
    el("div", { class: "text-text-500 font-small p-3.5 pb-0", text: b.lang }),
    el("div", { class: "sticky opacity-0 group-hover/copy:opacity-100" }, [el("button", { text: "Copy" })]),
    el("pre", { class: "code-block__code" }, [el("code", { class: b.lang ? `language-${b.lang}` : null, text: b.code })]),
  ]);
}

export function renderAssistant(src, final) { // Claude shows no message ids
  const md = el("div", { class: "standard-markdown grid-cols-1 grid" });
  renderInto(md, src, code);
  const wrapper = el("div", { "data-is-streaming": final ? "false" : "true", class: "group relative pb-3" }, [
    el("div", { class: "font-claude-response relative leading-[1.65rem]" }, [md]),
  ]);
  const row = el("div", { "data-test-render-count": "1" }, [wrapper]);
  thread.append(row);
  return { wrapper, md };
}

export function renderUser(text) {
  const lines = text.split("\n").map((l) => el("p", { class: "whitespace-pre-wrap break-words", text: l }));
  thread.append(el("div", { "data-test-render-count": "1" }, [
    el("div", { class: "group relative inline-flex" }, [el("div", { "data-testid": "user-message", class: "font-user-message" }, lines)]),
  ]));
}

let editor;
function updateButtons() {
  const text = editor.text();
  const btn = streaming
    ? el("button", { "aria-label": "Stop response", type: "button" })
    : el("button", { "aria-label": "Send message", type: "button", disabled: !text });
  trailing.replaceChildren(btn);
  if (!streaming) btn.addEventListener("click", () => driver.send());
}

editor = mountEditor(document.getElementById("editor-place"), {
  attributes: { "aria-label": "Write your prompt to Claude", role: "textbox", "aria-multiline": "true", translate: "no" },
  placeholder: "How can I help you today?",
  onChange: updateButtons,
  onEnter: () => driver.send(),
});

const driver = installDriver({
  addUser: renderUser,
  startReply() {
    const { wrapper, md } = renderAssistant("", false);
    return {
      update: (src) => renderInto(md, src, code),
      finish: (src) => {
        renderInto(md, src, code);
        wrapper.setAttribute("data-is-streaming", "false");
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
  else renderAssistant(m.text, true);
}
updateButtons();
