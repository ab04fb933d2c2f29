// Gemini (https://gemini.google.com), an Angular app. What it relies on
// (see docs/EXTENSION.md):
// - each turn is `div.conversation-container` holding `user-query` and
//   `model-response`; the reply text is `message-content .markdown`, and
//   `message-content` carries the reply's own id: `message-content-id-r_<hex>`;
// - a reply is final once `.response-footer.complete` is under its
//   `model-response` and its markdown is no longer `aria-busy="true"`;
//   while it streams the composer's send slot shows
//   `button[aria-label="Stop response"]`;
// - the composer is a Quill editor `rich-textarea .ql-editor` (Quill's
//   off-screen `.ql-clipboard` is also contenteditable: a decoy); the send
//   button `button[aria-label="Send message"]` exists only while the editor
//   holds text, and Enter does not send;
// - the signed-in account is named by the avatar link
//   `a[aria-label^="Google Account"]` ("Google Account: Name (email)").
(function (root) {
  "use strict";
  const A = root.BaaAdapters;
  const T = root.BaaText;

  const S = {
    message: "model-response",
    content: 'message-content[id^="message-content-id-"]',
    body: "message-content .markdown",
    footerComplete: ".response-footer.complete",
    userMessage: "user-query",
    composer: ['rich-textarea .ql-editor[contenteditable="true"]', '.ql-editor[contenteditable="true"]:not(.ql-clipboard)'],
    send: ['button.send-button[aria-label="Send message"]', 'button[aria-label="Send message"]'],
    stop: ['button[aria-label="Stop response"]', "button.send-button.stop"],
    account: 'a[aria-label^="Google Account"]',
    signIn: 'a[href*="accounts.google.com/ServiceLogin"], a[href*="accounts.google.com/v3/signin"]',
    // The code block's language label and its copy/download buttons.
    skip: ".code-block-decoration, message-actions, .response-footer",
  };

  function language(pre) {
    const block = pre.closest(".code-block");
    const label = block && block.querySelector(".code-block-decoration");
    // The header also holds copy/download buttons; extract() leaves those out.
    return label ? T.extract(label).split("\n")[0].trim().toLowerCase() : "";
  }

  const adapter = {
    platform: "gemini",
    selectors: S,

    messages: (doc) => Array.from(doc.querySelectorAll(S.message)),

    ownId(el) {
      const content = el.querySelector(S.content);
      if (!content) return null;
      const id = content.id.slice("message-content-id-".length);
      return id || null;
    },

    isFinal(el, index, all, doc) {
      const body = el.querySelector(S.body);
      if (!body || body.getAttribute("aria-busy") === "true") return false;
      if (index === all.length - 1 && A.first(doc, S.stop)) return false;
      return !!el.querySelector(S.footerComplete);
    },

    text(el) {
      const body = el.querySelector(S.body);
      return body ? T.extract(body, { skip: S.skip, language }) : "";
    },

    isStreaming: (doc) => !!A.first(doc, S.stop),

    login(doc) {
      const avatar = doc.querySelector(S.account);
      if (avatar) {
        const label = avatar.getAttribute("aria-label") || "";
        const email = /\(([^()\s]+@[^()\s]+)\)/.exec(label);
        const hint = email && A.maskEmail(email[1]);
        return { logged_in: true, account: hint ? { email_hint: hint } : {} };
      }
      if (doc.querySelector(S.signIn)) return { logged_in: false, account: {} };
      return { logged_in: null, account: {} };
    },
  };

  A.register(adapter);
})(globalThis);
