// The HTTPS server behind the stand-in sites: one server answers for
// chatgpt.com, claude.ai and gemini.google.com by the request's Host, with
// a certificate made at test time. It serves each site's page (any path:
// the page reads its conversation from the URL like the real ones), the
// stand-in scripts, the editors from node_modules (ProseMirror, Quill), and
// a few API routes for the relay tests. Bound to port 0 (Chromium maps the
// names to it) or to a given address's port 443 (Firefox).
import https from "node:https";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXT = path.resolve(HERE, "../../..");
const STANDIN = path.join(EXT, "test/standin");
const MODULES = path.join(EXT, "node_modules");
const ALLOWED_MODULES = ["prosemirror-model", "prosemirror-state", "prosemirror-view", "prosemirror-transform", "orderedmap", "quill"];

export const HOSTS = { "chatgpt.com": "chatgpt", "claude.ai": "claude", "gemini.google.com": "gemini" };
const COOKIE = "standin_session";

const IMPORTMAP = JSON.stringify({
  imports: Object.fromEntries(
    ["prosemirror-model", "prosemirror-state", "prosemirror-view", "prosemirror-transform", "orderedmap"].map((m) => [m, `/node_modules/${m}/dist/index.js`]),
  ),
});

const BODIES = {
  chatgpt: `<div id="page-header"><button data-testid="accounts-profile-button" aria-label="Open profile menu">T</button></div>
<main><div id="thread"></div>
<form data-type="unified-composer" onsubmit="return false"><div id="editor-place"></div>
<textarea name="prompt-textarea" class="fallbackTextarea" style="display:none"></textarea>
<div id="trailing"></div></form></main>`,
  claude: `<nav><button data-testid="user-menu-button" aria-label="Open menu">T</button></nav>
<main><div id="thread" class="flex-1 max-w-3xl mx-auto"></div>
<fieldset class="flex w-full"><div data-testid="chat-input"><div id="editor-place"></div></div><div id="trailing"></div></fieldset></main>`,
  gemini: `<header><a class="gb_A" aria-label="Google Account: Test Person (test.person@example.com)" href="https://accounts.google.com/SignOutOptions">T</a></header>
<chat-window><infinite-scroller class="chat-history" data-test-id="chat-history-container"><div id="chat-history"></div></infinite-scroller>
<input-container><input-area-v2 class="new-input-ui"><rich-textarea><div id="quill-place"></div></rich-textarea>
<div class="ql-clipboard" contenteditable="true" tabindex="-1" style="position:absolute;left:-99166px;height:1px;overflow-y:hidden"></div>
<div id="send-slot" class="send-button-container"></div></input-area-v2></input-container></chat-window>`,
};

const TITLES = { chatgpt: "ChatGPT", claude: "Claude", gemini: "Google Gemini" };

function page(platform, initial) {
  const head =
    platform === "gemini"
      ? `<link rel="stylesheet" href="/node_modules/quill/dist/quill.core.css"><script src="/node_modules/quill/dist/quill.js"></script>`
      : `<script type="importmap">${IMPORTMAP}</script>`;
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${TITLES[platform]}</title>${head}
<script>window.STANDIN_INITIAL = ${JSON.stringify(initial).replace(/</g, "\\u003c")};</script></head>
<body>${BODIES[platform]}<script type="module" src="/standin/${platform}.js"></script></body></html>`;
}

/** `n` earlier turns (user + assistant) for a page opened with `?standin_messages=n`. */
export function history(n) {
  const out = [];
  for (let i = 1; i <= n; i++) {
    out.push({ role: "user", text: `Question ${i}?` });
    out.push({ role: "assistant", text: `Answer ${i}: a paragraph of text that stands for an assistant reply.\n\n\`\`\`js\nconsole.log(${i});\n\`\`\`\n\n- point one\n- point two` });
  }
  return out;
}

function send(res, status, type, body, headers = {}) {
  res.writeHead(status, { "content-type": type, "cache-control": "no-store", ...headers });
  res.end(body);
}

function serveFile(res, file) {
  fs.readFile(file, (err, data) => {
    if (err) return send(res, 404, "text/plain", "not found");
    const type = file.endsWith(".css") ? "text/css" : "text/javascript";
    send(res, 200, type, data);
  });
}

// What each stand-in conversation holds, by host and path: kept for the
// server's life so a reloaded page shows the same turns.
const transcripts = new Map();

function api(req, res, url, platform) {
  const cookie = (req.headers.cookie || "").split(/;\s*/).some((c) => c.startsWith(`${COOKIE}=`));
  if (url.pathname === "/standin-api/whoami") {
    return send(res, 200, "application/json", JSON.stringify({
      platform, method: req.method, host: req.headers.host, cookie_present: cookie,
      origin: req.headers.origin || null, sec_fetch_site: req.headers["sec-fetch-site"] || null,
    }));
  }
  if (url.pathname === "/api/organizations" && platform === "claude") {
    if (!cookie) return send(res, 401, "application/json", JSON.stringify({ error: "not signed in" }));
    return send(res, 200, "application/json", JSON.stringify([{ uuid: "org-standin-1", name: "Stand-in org" }]));
  }
  if (url.pathname === "/standin-api/transcript" && req.method === "POST") {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const key = `${platform}:${url.searchParams.get("path")}`;
      if (!transcripts.has(key)) transcripts.set(key, []);
      transcripts.get(key).push(JSON.parse(body));
      send(res, 204, "text/plain", "");
    });
    return;
  }
  if (url.pathname === "/standin-api/echo") {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => send(res, 200, "application/json", JSON.stringify({ method: req.method, body, content_type: req.headers["content-type"] || null })));
    return;
  }
  if (url.pathname === "/standin-api/stream") {
    const n = Number(url.searchParams.get("n") || 5);
    const delay = Number(url.searchParams.get("delay") || 50);
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store" });
    let i = 0;
    const tick = () => {
      if (i >= n) return res.end();
      res.write(`data: chunk-${++i}\n\n`);
      setTimeout(tick, delay);
    };
    return tick();
  }
  if (url.pathname === "/standin-api/big") {
    return send(res, 200, "text/plain", "x".repeat(Number(url.searchParams.get("bytes") || 0)));
  }
  return send(res, 404, "application/json", JSON.stringify({ error: "no such stand-in route" }));
}

function handler(req, res) {
  const host = String(req.headers.host || "").replace(/:\d+$/, "");
  const platform = HOSTS[host];
  if (!platform) return send(res, 421, "text/plain", `no stand-in for ${host}`);
  const url = new URL(req.url, `https://${host}`);
  if (url.pathname.startsWith("/standin/")) {
    const file = path.join(STANDIN, path.basename(url.pathname));
    return serveFile(res, file);
  }
  if (url.pathname.startsWith("/node_modules/")) {
    const rel = path.normalize(url.pathname.slice("/node_modules/".length));
    if (!ALLOWED_MODULES.includes(rel.split(path.sep)[0]) || rel.includes("..")) return send(res, 404, "text/plain", "not found");
    return serveFile(res, path.join(MODULES, rel));
  }
  if (url.pathname.startsWith("/standin-api/") || url.pathname.startsWith("/api/")) return api(req, res, url, platform);
  if (url.pathname === "/favicon.ico") return send(res, 404, "text/plain", "");
  const n = Number(url.searchParams.get("standin_messages") || 0);
  const kept = transcripts.get(`${platform}:${url.pathname}`) || [];
  return send(res, 200, "text/html; charset=utf-8", page(platform, [...history(n), ...kept]), {
    "set-cookie": `${COOKIE}=standin-${platform}; Path=/; Secure; HttpOnly; SameSite=Lax`,
  });
}

/** Starts the server on `host:port` (port 0: any); resolves with `{server, port, close()}`. */
export function startStandin({ key, cert }, host = "127.0.0.1", port = 0) {
  const server = https.createServer({ key, cert }, handler);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      resolve({
        server,
        host,
        port: server.address().port,
        close: () => new Promise((r) => (server.closeAllConnections(), server.close(() => r()))),
      });
    });
  });
}
