// Claude (https://claude.ai), a React app. What it relies on (see
// docs/EXTENSION.md):
// - each assistant reply sits in an element carrying `data-is-streaming`,
//   "true" while it streams and "false" once it is final, around a body
//   `.font-claude-response` (older builds: `.font-claude-message`); the
//   person's turns are `[data-testid="user-message"]`;
// - the page gives replies no id of their own, so ids are hashes of
//   conversation, position and text (docs/EXTENSION.md, "Message ids");
// - the composer is a ProseMirror (tiptap) editor
//   `div.ProseMirror[contenteditable="true"]`; `button[aria-label="Send message"]`
//   is disabled while it is empty; `button[aria-label="Stop response"]`
//   shows while a reply streams.
(function (root) {
  "use strict";
  const A = root.BaaAdapters;
  const T = root.BaaText;

  const BODY = ".font-claude-response, .font-claude-message";
  const S = {
    message: "[data-is-streaming]",
    body: BODY,
    userMessage: '[data-testid="user-message"]',
    composer: [
      '[data-testid="chat-input"] div.ProseMirror[contenteditable="true"]',
      'fieldset div.ProseMirror[contenteditable="true"]',
      'div.ProseMirror[contenteditable="true"]',
    ],
    send: ['button[aria-label="Send message"]', 'button[aria-label="Send Message"]'],
    stop: ['button[aria-label="Stop response"]'],
    userMenu: '[data-testid="user-menu-button"]',
    skip: '[data-testid="action-bar"], [role="group"][aria-label="Message actions"]',
  };

  const adapter = {
    platform: "claude",
    selectors: S,

    // Only the streaming wrappers that hold a reply body: user turns may
    // carry the attribute too in some builds.
    messages: (doc) => Array.from(doc.querySelectorAll(S.message)).filter((el) => el.querySelector(BODY)),

    ownId: () => null,

    isFinal: (el) => el.getAttribute("data-is-streaming") === "false",

    text: (el) => T.extract(el.querySelector(BODY) || el, { skip: S.skip }),

    isStreaming: (doc) => !!A.first(doc, S.stop) || !!doc.querySelector('[data-is-streaming="true"]'),

    login(doc) {
      const path = (doc.location && doc.location.pathname) || "";
      if (path.startsWith("/login") || path.startsWith("/logout")) return { logged_in: false, account: {} };
      if (doc.querySelector(S.userMenu) || A.first(doc, S.composer)) return { logged_in: true, account: {} };
      return { logged_in: null, account: {} };
    },
  };

  A.register(adapter);
})(globalThis);
