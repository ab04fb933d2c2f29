// The options page: the daemon's WebSocket URL and token, kept in
// `storage.local`; saving makes the background reconnect at once.
(function () {
  "use strict";
  const api = globalThis.browser || globalThis.chrome;
  const KEYS = { url: "daemon_url", token: "daemon_token" };
  const $ = (id) => document.getElementById(id);

  function problem(url) {
    if (!url) return null;
    let u;
    try {
      u = new URL(url);
    } catch (_) {
      return "Not a URL.";
    }
    return u.protocol === "ws:" || u.protocol === "wss:" ? null : "The URL must start with ws:// or wss://.";
  }

  // `data-ready` once the stored values are shown (tests wait for it, so
  // what they type is not overwritten by the late read).
  api.storage.local.get([KEYS.url, KEYS.token]).then((got) => {
    $("url").value = got[KEYS.url] || "";
    $("token").value = got[KEYS.token] || "";
    document.body.dataset.ready = "1";
  });

  $("form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const url = $("url").value.trim();
    const token = $("token").value.trim();
    const bad = problem(url);
    if (bad) {
      $("saved").textContent = bad;
      return;
    }
    await api.storage.local.set({ [KEYS.url]: url, [KEYS.token]: token });
    $("saved").textContent = "Saved.";
  });
})();
