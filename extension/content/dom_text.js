// Turns a rendered assistant message into plain text the same way in every
// browser and in the unit tests' DOM: paragraphs and list items on their own
// lines, `<br>` as a line break, code blocks kept verbatim as fenced blocks
// (with their language when the page names it), and page chrome (buttons,
// icons, screen-reader-only labels) left out. It walks the DOM itself rather
// than reading `innerText`, which depends on CSS and layout. Defines
// `globalThis.BaaText`.
(function (root) {
  "use strict";

  const BLOCK = new Set([
    "ADDRESS", "ARTICLE", "ASIDE", "DD", "DETAILS", "DIV", "DL", "DT", "FIELDSET", "FIGCAPTION",
    "FIGURE", "FOOTER", "FORM", "HEADER", "LI", "MAIN", "NAV", "SECTION", "SUMMARY", "TR",
  ]);
  // Blocks set apart by a blank line, as in Markdown.
  const PARAGRAPH = new Set(["P", "H1", "H2", "H3", "H4", "H5", "H6", "UL", "OL", "TABLE", "BLOCKQUOTE", "HR"]);
  const NEVER = new Set([
    "BUTTON", "SVG", "STYLE", "SCRIPT", "NOSCRIPT", "TEMPLATE", "TEXTAREA", "INPUT", "SELECT",
    "MAT-ICON", "IMG", "VIDEO", "AUDIO", "CANVAS", "IFRAME",
  ]);
  // Text for screen readers only ("Claude responded:", "Gemini said").
  const HIDDEN = ".sr-only, .cdk-visually-hidden, .visually-hidden, [aria-hidden='true'], [hidden]";

  class Out {
    constructor() {
      this.parts = [];
      this.pending = 0; // newlines owed before the next text
    }
    text(s) {
      if (!s) return;
      if (this.pending && this.parts.length) this.parts.push("\n".repeat(this.pending));
      this.pending = 0;
      if (this.atLineStart()) s = s.replace(/^ +/, "");
      if (s) this.parts.push(s);
    }
    raw(s) {
      if (this.pending && this.parts.length) this.parts.push("\n".repeat(this.pending));
      this.pending = 0;
      this.parts.push(s);
    }
    atLineStart() {
      const last = this.parts[this.parts.length - 1];
      return last === undefined || last.endsWith("\n");
    }
    newline(n) {
      this.pending = Math.max(this.pending, n);
    }
    toString() {
      return this.parts
        .join("")
        .split("\n")
        .map((line) => line.replace(/[ \t]+$/, ""))
        .join("\n")
        .replace(/\n{3,}/g, "\n\n")
        .trim();
    }
  }

  function tag(el) {
    return (el.tagName || "").toUpperCase();
  }

  /** The text of a code block: CodeMirror lines, a `<code>`, or the block. */
  function codeText(pre, opts) {
    const cm = pre.querySelector(".cm-content");
    if (cm) {
      const lines = cm.querySelectorAll(".cm-line");
      if (lines.length) return Array.from(lines, (l) => l.textContent).join("\n");
      return cm.textContent;
    }
    const code = pre.querySelector("code");
    if (code) return code.textContent;
    const out = new Out();
    walkChildren(pre, out, opts, true);
    return out.parts.join("");
  }

  function codeLanguage(pre, opts) {
    const given = opts && opts.language ? opts.language(pre) : "";
    if (given) return given;
    const code = pre.querySelector("code") || pre;
    const named = code.getAttribute("data-language") || pre.getAttribute("data-language");
    if (named) return named.trim();
    const cls = (code.getAttribute("class") || "").split(/\s+/).find((c) => c.startsWith("language-"));
    return cls ? cls.slice("language-".length) : "";
  }

  /** Text of `el` a person would read: without buttons' labels. */
  function ownText(el) {
    let t = el.textContent;
    for (const b of el.querySelectorAll("button")) t = t.replace(b.textContent, "");
    return t.trim();
  }

  /**
   * A label before a code block that only repeats the block's language
   * (siblings in between that hold nothing but buttons do not count).
   */
  function isLanguageLabel(el, opts) {
    if (el.querySelector("pre")) return false;
    let next = el.nextElementSibling;
    while (next && !next.querySelector("pre") && tag(next) !== "PRE" && ownText(next) === "") next = next.nextElementSibling;
    if (!next) return false;
    const pre = tag(next) === "PRE" ? next : next.querySelector("pre");
    if (!pre) return false;
    const lang = codeLanguage(pre, opts);
    return lang !== "" && el.textContent.trim().toLowerCase() === lang.toLowerCase();
  }

  function walkChildren(el, out, opts, inPre) {
    for (let node = el.firstChild; node; node = node.nextSibling) walk(node, out, opts, inPre);
  }

  function walk(node, out, opts, inPre) {
    if (node.nodeType === 3) {
      if (inPre) out.raw(node.nodeValue);
      else out.text(node.nodeValue.replace(/\s+/g, " "));
      return;
    }
    if (node.nodeType !== 1) return;
    const name = tag(node);
    if (NEVER.has(name) || node.matches(HIDDEN) || (opts.skip && node.matches(opts.skip))) return;
    if (name === "BR") {
      out.raw("\n");
      return;
    }
    if (name === "PRE" && !inPre) return emitCode(node, out, opts);
    if (!inPre && isLanguageLabel(node, opts)) return;
    if (name === "LI") return emitItem(node, out, opts);
    if (name === "TR") return emitRow(node, out, opts);
    const gap = PARAGRAPH.has(name) ? 2 : BLOCK.has(name) ? 1 : 0;
    if (gap) out.newline(gap);
    if (name === "HR") out.text("---");
    walkChildren(node, out, opts, inPre);
    if (gap) out.newline(gap);
  }

  function emitCode(pre, out, opts) {
    const code = codeText(pre, opts).replace(/\n$/, "");
    out.newline(2);
    out.raw("```" + codeLanguage(pre, opts) + "\n" + code + "\n```");
    out.newline(2);
  }

  function emitItem(li, out, opts) {
    const list = li.parentElement;
    let marker = "- ";
    if (list && tag(list) === "OL") {
      const start = parseInt(list.getAttribute("start") || "1", 10) || 1;
      marker = `${start + Array.prototype.indexOf.call(list.children, li)}. `;
    }
    out.newline(1);
    out.text(marker);
    walkChildren(li, out, opts, false);
    out.newline(1);
  }

  function emitRow(tr, out, opts) {
    const cells = Array.from(tr.children).map((cell) => {
      const sub = new Out();
      walkChildren(cell, sub, opts, false);
      return sub.toString().replace(/\n+/g, " ");
    });
    out.newline(1);
    out.text(cells.join(" | "));
    out.newline(1);
  }

  /**
   * The message text of `el`. `opts.skip`: a selector of elements to leave
   * out (a site's code-block header, its action bar); `opts.language(pre)`:
   * a code block's language where the site shows it outside `<code>`.
   */
  function extract(el, opts) {
    const out = new Out();
    walkChildren(el, out, opts || {}, false);
    return out.toString();
  }

  /**
   * What a composer (ProseMirror, Quill, tiptap) holds: its paragraphs
   * joined by line breaks, `<br>` as a line break; placeholders (drawn with
   * CSS from an attribute) hold no text.
   */
  function composerText(editor) {
    if (typeof editor.value === "string" && tag(editor) === "TEXTAREA") return normalize(editor.value);
    const blocks = Array.from(editor.children).filter((c) => tag(c) !== "BR");
    if (!blocks.length) return normalize(editor.textContent || "");
    return normalize(blocks.map(blockText).join("\n"));
  }

  function blockText(block) {
    let s = "";
    for (let n = block.firstChild; n; n = n.nextSibling) {
      if (n.nodeType === 3) s += n.nodeValue;
      else if (n.nodeType === 1 && tag(n) === "BR") s += n.nextSibling ? "\n" : "";
      else if (n.nodeType === 1 && tag(n) !== "IMG") s += blockText(n);
    }
    return s;
  }

  /** Line endings, non-breaking spaces, trailing blanks: what editors change. */
  function normalize(s) {
    return s
      .replace(/\r\n?/g, "\n")
      .replace(/\u00a0/g, " ")
      .replace(/\u200b/g, "")
      .split("\n")
      .map((l) => l.replace(/[ \t]+$/, ""))
      .join("\n")
      .trim();
  }

  root.BaaText = Object.freeze({ extract, composerText, normalize });
})(globalThis);
