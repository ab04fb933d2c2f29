// The three supported sites: which origin is which platform, and how a
// page URL names its conversation. Plain script (no import/export) so the
// same file runs as a content script, is imported by the background module
// for its side effect, and loads in node for the unit tests; it defines
// `globalThis.BaaSites` and nothing else.
(function (root) {
  "use strict";

  // Each route: a path pattern of literal segments and `:name` captures,
  // matched against the page path (an optional `/u/N` account prefix, as
  // Google uses for a second signed-in account, is ignored first).
  const PLATFORMS = {
    chatgpt: {
      origin: "https://chatgpt.com",
      routes: ["/c/:conversationId", "/g/:gizmoId/c/:conversationId"],
    },
    claude: {
      origin: "https://claude.ai",
      routes: ["/chat/:conversationId"],
    },
    gemini: {
      origin: "https://gemini.google.com",
      routes: ["/app/:conversationId", "/gem/:gemId/:conversationId"],
    },
  };

  const NAMES = Object.keys(PLATFORMS);
  // Conversation ids seen on these sites are UUIDs or hex strings; anything
  // else in that position ("new", "recents") is a page, not a conversation.
  const ID_RE = /^[A-Za-z0-9_-]{6,128}$/;
  const RESERVED = new Set(["new", "recents", "projects", "settings", "login", "logout"]);

  function parse(url) {
    try {
      return new URL(url);
    } catch (_) {
      return null;
    }
  }

  /** The platform serving `url`, or null. Only the exact HTTPS origin counts. */
  function platformOf(url) {
    const u = parse(url);
    if (!u) return null;
    return NAMES.find((name) => PLATFORMS[name].origin === u.origin) || null;
  }

  function matchPattern(pattern, segments) {
    const parts = pattern.split("/").filter(Boolean);
    if (parts.length !== segments.length) return null;
    const params = {};
    for (let i = 0; i < parts.length; i++) {
      if (parts[i].startsWith(":")) params[parts[i].slice(1)] = decodeURIComponent(segments[i]);
      else if (parts[i] !== segments[i]) return null;
    }
    return params;
  }

  /**
   * Where `url` is: `{platform, conversation_id, path, pattern, params}`;
   * `conversation_id` is null on a page that is not a conversation (a new
   * chat, settings). Null for a URL of no supported platform.
   */
  function route(url) {
    const u = parse(url);
    const platform = u && platformOf(url);
    if (!platform) return null;
    let segments = u.pathname.split("/").filter(Boolean);
    if (segments[0] === "u" && /^\d+$/.test(segments[1] || "")) segments = segments.slice(2);
    for (const pattern of PLATFORMS[platform].routes) {
      const params = matchPattern(pattern, segments);
      const id = params && params.conversationId;
      if (id && ID_RE.test(id) && !RESERVED.has(id)) {
        return { platform, conversation_id: id, path: u.pathname, pattern, params };
      }
    }
    return { platform, conversation_id: null, path: u.pathname, pattern: null, params: {} };
  }

  /** Match patterns for the tabs and scripting APIs. */
  function matchPatterns() {
    return NAMES.map((name) => `${PLATFORMS[name].origin}/*`);
  }

  root.BaaSites = Object.freeze({
    NAMES,
    origin: (platform) => (PLATFORMS[platform] ? PLATFORMS[platform].origin : null),
    platformOf,
    route,
    matchPatterns,
  });
})(globalThis);
