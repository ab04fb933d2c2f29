// Types a text into a site's composer and presses its send button, the way
// a person would, and says why when it cannot. The composers are
// contenteditable editors (ProseMirror on ChatGPT and Claude, Quill on
// Gemini) that keep their own document model and ignore a plain `.value`
// or `textContent` write: text goes in through `execCommand("insertText")`,
// which the browser turns into real input events that both editors read,
// with a synthetic paste (which both editors also accept) as the fallback;
// either way the composer is read back and must hold exactly the text.
// Defines `globalThis.BaaComposer`.
(function (root) {
  "use strict";
  const T = root.BaaText;

  // Failure reasons sent in action_result.reason (docs/EXTENSION.md).
  const REASONS = Object.freeze({
    NOT_LOGGED_IN: "not_logged_in",
    CONVERSATION_MISMATCH: "conversation_mismatch",
    BUSY_STREAMING: "busy_streaming",
    COMPOSER_NOT_FOUND: "composer_not_found",
    COMPOSER_NOT_EMPTY: "composer_not_empty",
    INPUT_REJECTED: "input_rejected",
    SEND_DISABLED: "send_disabled",
    TIMEOUT: "timeout",
  });

  /** Polls `check` until it returns a truthy value or `ms` pass. */
  async function waitFor(check, ms, every = 50) {
    const end = Date.now() + Math.max(0, ms);
    for (;;) {
      const value = check();
      if (value) return value;
      if (Date.now() >= end) return null;
      await new Promise((r) => setTimeout(r, every));
    }
  }

  function selectAll(doc, editor) {
    editor.focus();
    const sel = doc.getSelection ? doc.getSelection() : null;
    if (!sel || !doc.createRange) return;
    const range = doc.createRange();
    range.selectNodeContents(editor);
    sel.removeAllRanges();
    sel.addRange(range);
  }

  function paste(doc, editor, text) {
    const win = doc.defaultView;
    let data;
    try {
      data = new win.DataTransfer();
      data.setData("text/plain", text);
    } catch (_) {
      return false;
    }
    const event = new win.ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true });
    editor.dispatchEvent(event);
    return true;
  }

  /**
   * Replaces the composer's content with `text`; true once the composer
   * (looked up again: editors may re-render) reads back exactly `text`.
   */
  async function typeText(doc, adapter, text) {
    const want = T.normalize(text);
    const holds = () => {
      const ed = adapter.composer(doc);
      return !!ed && T.composerText(ed) === want;
    };
    const attempts = [
      (ed) => doc.execCommand("insertText", false, text),
      (ed) => paste(doc, ed, text),
    ];
    for (const attempt of attempts) {
      const editor = adapter.composer(doc);
      if (!editor) return false;
      selectAll(doc, editor);
      try {
        attempt(editor);
      } catch (_) {
        // An editor that throws on one path may accept the other.
      }
      if (await waitFor(holds, 500)) return true;
    }
    return false;
  }

  /**
   * Delivers `text` into this page's conversation: `{ok: true}` or
   * `{ok: false, reason, detail}`. `lastTyped` is what an earlier attempt
   * left in the composer (it may be replaced; a person's draft may not).
   */
  async function deliver(doc, adapter, { text, conversationId, timeoutMs }, state) {
    const deadline = Date.now() + Math.max(1000, timeoutMs || 20000);
    const left = () => deadline - Date.now();
    const fail = (reason, detail) => ({ ok: false, reason, detail: detail || null });

    const login = adapter.login(doc);
    if (login.logged_in === false) return fail(REASONS.NOT_LOGGED_IN);
    const here = root.BaaSites.route(doc.location.href);
    if (conversationId && (!here || here.conversation_id !== conversationId)) {
      return fail(REASONS.CONVERSATION_MISMATCH, `tab shows ${here && here.conversation_id}`);
    }
    if (adapter.isStreaming(doc)) return fail(REASONS.BUSY_STREAMING);
    const editor = adapter.composer(doc);
    if (!editor) return fail(REASONS.COMPOSER_NOT_FOUND);
    const draft = T.composerText(editor);
    if (draft && draft !== state.lastTyped) return fail(REASONS.COMPOSER_NOT_EMPTY, "the composer holds a draft");

    if (!(await typeText(doc, adapter, text))) return fail(REASONS.INPUT_REJECTED);
    state.lastTyped = T.normalize(text);

    const button = await waitFor(() => {
      const b = adapter.sendButton(doc);
      return b && adapter.sendEnabled(b) ? b : null;
    }, Math.min(5000, left()));
    if (!button) return fail(REASONS.SEND_DISABLED);

    const usersBefore = adapter.userMessageCount(doc);
    button.click();
    const sent = await waitFor(() => {
      const ed = adapter.composer(doc);
      const emptied = !ed || T.composerText(ed) === "";
      return adapter.userMessageCount(doc) > usersBefore || (emptied && adapter.isStreaming(doc));
    }, left());
    if (!sent) return fail(REASONS.TIMEOUT, "the page did not take the message");
    state.lastTyped = null;
    return { ok: true };
  }

  root.BaaComposer = Object.freeze({ deliver, typeText, waitFor, REASONS });
})(globalThis);
