// Shared by the three stand-in sites (test pages that reproduce how
// chatgpt.com, claude.ai and gemini.google.com are built, for the browser
// tests; nothing here is a copy of those sites). A tiny Markdown renderer
// whose output our extractor reads back to the same text, the streaming
// driver, and the test hooks on `window.standin`. Each site module supplies
// `render*` functions for its own DOM.

/** Blocks of a reply: paragraphs (lines joined by <br>), ``` fences, "- " lists. */
export function parseBlocks(src) {
  const blocks = [];
  const lines = src.replace(/\r\n/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const lang = line.slice(3).trim();
      const code = [];
      i++;
      while (i < lines.length && !lines[i].startsWith("```")) code.push(lines[i++]);
      const closed = i < lines.length;
      i++;
      blocks.push({ kind: "code", lang, code: code.join("\n"), closed });
    } else if (line.startsWith("- ")) {
      const items = [];
      while (i < lines.length && lines[i].startsWith("- ")) items.push(lines[i++].slice(2));
      blocks.push({ kind: "list", items });
    } else if (line.trim() === "") {
      i++;
    } else {
      const para = [];
      while (i < lines.length && lines[i].trim() !== "" && !lines[i].startsWith("```") && !lines[i].startsWith("- ")) {
        para.push(lines[i++]);
      }
      blocks.push({ kind: "para", lines: para });
    }
  }
  return blocks;
}

export function el(tag, attrs = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of [].concat(children)) if (c) e.append(c);
  return e;
}

export function paragraph(lines) {
  const p = el("p");
  lines.forEach((line, n) => {
    if (n) p.append(el("br"));
    p.append(document.createTextNode(line));
  });
  return p;
}

export function list(items) {
  return el("ul", {}, items.map((t) => el("li", { text: t })));
}

/** Renders blocks with a site-specific `code(block)`. */
export function renderInto(container, src, code) {
  container.replaceChildren(
    ...parseBlocks(src).map((b) => (b.kind === "code" ? code(b) : b.kind === "list" ? list(b.items) : paragraph(b.lines))),
  );
}

export function hexId(n = 16) {
  const a = new Uint8Array(n / 2);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function uuid() {
  return crypto.randomUUID();
}

/** Keeps a turn on the server, so a reload shows the conversation again (as the sites do). */
export function record(entry) {
  return fetch(`/standin-api/transcript?path=${encodeURIComponent(location.pathname)}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(entry),
  });
}

/**
 * Drives a site: `site` has `addUser(text)`, `startReply()` → handle with
 * `update(srcSoFar)` and `finish(src)`, `setStreaming(bool)`,
 * `composerText()`, `clearComposer()`. Exposes `window.standin`.
 */
export function installDriver(site) {
  const state = { sent: [], queue: [], replying: false, chunkDelayMs: 120, chunks: 6 };

  async function reply(src, opts = {}) {
    state.replying = true;
    site.setStreaming(true);
    const handle = site.startReply();
    state.lastReply = src;
    const chunks = opts.chunks || state.chunks;
    const delay = opts.chunkDelayMs ?? state.chunkDelayMs;
    const step = Math.max(1, Math.ceil(src.length / chunks));
    for (let at = step; at < src.length + step; at += step) {
      await new Promise((r) => setTimeout(r, delay));
      handle.update(src.slice(0, Math.min(at, src.length)));
    }
    await new Promise((r) => setTimeout(r, delay));
    const id = handle.finish(src);
    await record({ role: "assistant", text: src, id: id || null });
    site.setStreaming(false);
    state.replying = false;
  }

  function send() {
    const text = site.composerText();
    if (!text || state.replying) return false;
    state.sent.push(text);
    record({ role: "user", text });
    site.addUser(text);
    site.clearComposer();
    const next = state.queue.shift();
    reply(next !== undefined ? next : `You said:\n${text}`);
    return true;
  }

  window.standin = {
    state,
    send,
    reply: (src, opts) => reply(src, opts),
    queueReply: (src) => state.queue.push(src),
    sent: () => state.sent.slice(),
    composerText: () => site.composerText(),
    typeAsPerson: (text) => site.typeAsPerson(text),
    site,
  };
  return window.standin;
}
