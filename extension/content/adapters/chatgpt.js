// ChatGPT (https://chatgpt.com), a React app. What it relies on, from
// public exporters and automation scripts that read the live page (see
// docs/EXTENSION.md for the list and how to fix a selector):
// - each message is `[data-message-author-role][data-message-id]` inside a
//   turn `[data-testid^="conversation-turn-"]` (an <article>);
// - an assistant turn is finished when its action bar appears:
//   `button[data-testid="copy-turn-action-button"]`; while a reply streams
//   the composer shows `button[data-testid="stop-button"]`;
// - the composer is a ProseMirror editor `div#prompt-textarea` (a hidden
//   fallback <textarea> is a decoy), and `button[data-testid="send-button"]`
//   exists only while the composer holds text; Enter sends.
(function (root) {
  "use strict";
  const A = root.BaaAdapters;
  const T = root.BaaText;

  const S = {
    message: '[data-message-author-role="assistant"]',
    userMessage: '[data-message-author-role="user"]',
    turn: '[data-testid^="conversation-turn-"], article',
    finished: 'button[data-testid="copy-turn-action-button"]',
    streamingMarkdown: ".streaming-animation, .result-streaming",
    body: ".markdown",
    composer: ['div#prompt-textarea[contenteditable="true"]', 'div.ProseMirror[contenteditable="true"]'],
    send: ['button[data-testid="send-button"]', "button#composer-submit-button"],
    stop: ['button[data-testid="stop-button"]'],
    loginButton: 'button[data-testid="login-button"], a[href*="/auth/login"]',
    profileButton: '[data-testid="accounts-profile-button"]',
    // Left out of a message's text: the action bar and the reasoning
    // summary shown with some answers.
    skip: '[aria-label="Response actions"], section[aria-label="Reasoning details"]',
  };

  // The language label in a code block's header, inside the <pre> beside
  // the copy button and above the CodeMirror viewer (older builds put a
  // `language-x` class on <code> instead, which the extractor reads itself).
  function language(pre) {
    const walker = pre.ownerDocument.createTreeWalker(pre, 4 /* text */);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const host = n.parentElement;
      if (!host || host.closest(".cm-editor, code, button")) continue;
      const word = n.nodeValue.trim();
      if (word) return /^[\w#+.-]{1,30}$/.test(word) ? word.toLowerCase() : "";
    }
    return "";
  }

  const adapter = {
    platform: "chatgpt",
    selectors: S,

    messages: (doc) => Array.from(doc.querySelectorAll(S.message)),

    ownId: (el) => el.getAttribute("data-message-id") || null,

    isFinal(el, index, all, doc) {
      const last = index === all.length - 1;
      const body = el.querySelector(S.body);
      if (body && body.matches(S.streamingMarkdown)) return false;
      if (last && A.first(doc, S.stop)) return false;
      const turn = el.closest(S.turn);
      return !!(turn && turn.querySelector(S.finished)) || !last;
    },

    text(el) {
      const body = el.querySelector(S.body) || el;
      return T.extract(body, { skip: S.skip, language });
    },

    isStreaming: (doc) => !!A.first(doc, S.stop),

    login(doc) {
      if (doc.querySelector(S.loginButton)) return { logged_in: false, account: {} };
      if (doc.querySelector(S.profileButton) || A.first(doc, S.composer)) return { logged_in: true, account: {} };
      return { logged_in: null, account: {} };
    },
  };

  A.register(adapter);
})(globalThis);
