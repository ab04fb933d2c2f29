// The popup: what the background says about the daemon connection,
// refreshed every second while open.
(function () {
  "use strict";
  const api = globalThis.browser || globalThis.chrome;
  const $ = (id) => document.getElementById(id);

  function describe(s) {
    if (s.state === "connected") return ["Connected", s.connection_id ? `connection ${s.connection_id}` : ""];
    const next = s.next_retry_at ? Math.max(0, Math.ceil((s.next_retry_at - Date.now()) / 1000)) : null;
    const retry = next === null ? "" : `next try in ${next} s`;
    if (s.state === "refused" && s.refusal) {
      const how = s.refusal.status ? `HTTP ${s.refusal.status} ` : "";
      return [`Refused by the daemon: ${how}${s.refusal.code}`, [s.refusal.message, retry].filter(Boolean).join(" — ")];
    }
    if (s.state === "reconnecting") return [`Reconnecting${next === null ? "" : ` (next try in ${next} s)`}`, ""];
    return ["Connecting…", ""];
  }

  async function refresh() {
    let s;
    try {
      s = await api.runtime.sendMessage({ kind: "status" });
    } catch (err) {
      $("state").textContent = "The extension's background is not answering.";
      return;
    }
    if (!s) return;
    const [line, detail] = describe(s);
    $("state").textContent = line;
    $("state").dataset.state = s.state;
    $("detail").textContent = detail;
    $("url").textContent = s.url || "—";
    $("client").textContent = s.client_id || "—";
    $("tabs").textContent = String(s.tabs_reported ?? 0);
    const logins = Object.entries(s.logins || {}).filter(([, v]) => v).map(([p]) => p);
    $("logins").textContent = logins.length ? logins.join(", ") : "none seen";
    $("error").textContent = s.last_error || "none";
  }

  $("options").addEventListener("click", (ev) => {
    ev.preventDefault();
    api.runtime.openOptionsPage();
  });
  refresh();
  setInterval(refresh, 1000);
})();
