"use strict";
// The status page's script. It reads and switches state through the public
// JSON API only (docs/API.md) and holds nothing of its own but the token the
// person types. Everything the daemon says — message text above all, which an
// assistant or a hostile page may have written — is inserted as text nodes
// (`append(string)`, `textContent`), never parsed as HTML.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "baa-conductor.token";
// The page's own settings live in the address's fragment, which is never
// sent to the daemon: `#c=<local_conversation_id>` the selected conversation,
// `refresh=MS` how often to read (250 ms to 60 s, default 3 s).
const hash = new URLSearchParams(location.hash.slice(1));
const REFRESH_MS = Math.min(60000, Math.max(250, Number(hash.get("refresh")) || 3000));
// A request with no answer after this long counts as "not answering".
const TIMEOUT_MS = Math.min(6000, Math.max(2000, REFRESH_MS * 4));

class ApiError extends Error {
  constructor(status, code, message) { super(code + ": " + message); this.status = status; this.code = code; }
}
class Unreachable extends Error {}

const state = { selected: null, lastOk: 0, failingSince: 0, busy: false, again: false, convs: new Map(), texts: new Map(), open: new Set(), system: null };

// ---- the token -------------------------------------------------------------

function token() { return sessionStorage.getItem(TOKEN_KEY) || localStorage.getItem(TOKEN_KEY) || ""; }

function showTokenState() {
  const where = localStorage.getItem(TOKEN_KEY) ? "saved in this browser" : sessionStorage.getItem(TOKEN_KEY) ? "set for this tab" : "none set";
  $("token-state").textContent = "Token: " + where;
  $("remember").checked = !!localStorage.getItem(TOKEN_KEY);
}

function useToken() {
  const value = $("token").value.trim();
  sessionStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(TOKEN_KEY);
  if (value) ($("remember").checked ? localStorage : sessionStorage).setItem(TOKEN_KEY, value);
  $("token").value = "";
  showTokenState();
  refresh();
}

function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(TOKEN_KEY);
  $("token").value = "";
  showTokenState();
  refresh();
}

// ---- the API ---------------------------------------------------------------

async function api(path, method, body) {
  const headers = {};
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
  let res, doc;
  try {
    res = await fetch(path, { method: method || "GET", headers, body: body === undefined ? undefined : JSON.stringify(body), signal: ctl.signal, cache: "no-store" });
    doc = await res.json().catch(() => null);
  } catch (e) {
    throw new Unreachable(e.name === "AbortError" ? "no answer within " + TIMEOUT_MS / 1000 + " s" : "the connection failed");
  } finally {
    clearTimeout(timer);
  }
  if (!doc || typeof doc.ok !== "boolean") throw new ApiError(res.status, "bad_answer", "HTTP " + res.status + " without the API's JSON envelope");
  if (!doc.ok) throw new ApiError(res.status, doc.error.code, doc.error.message);
  return doc.data;
}

const q = (path, query) => path + "?" + new URLSearchParams(query).toString();
const enc = encodeURIComponent;

// ---- building the page with text only --------------------------------------

/** An element; string children become text nodes, `on*` props listeners. */
function h(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat()) if (kid !== undefined && kid !== null) e.append(kid instanceof Node ? kid : String(kid));
  return e;
}

const show = (v) => (v === null || v === undefined || v === "" ? "—" : String(v));
const td = (v, cls) => h("td", { class: cls }, v instanceof Node ? v : show(v));
const clip = (s, n) => (s && s.length > n ? s.slice(0, n - 1) + "…" : s);
const statusClass = (s) => ({ done: "ok", succeeded: "ok", connected: "ok", fresh: "ok", closed: "ok", running: "ok",
  failed: "bad", rejected: "bad", invalid: "bad", lost: "bad", open: "bad", paused: "warn", stale: "warn", draining: "warn" })[s];

function ago(ms) {
  if (!ms) return "—";
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < -1) return "in " + duration(-s);
  return s < 2 ? "just now" : duration(s) + " ago";
}
function duration(s) {
  return s < 90 ? s + " s" : s < 5400 ? Math.round(s / 60) + " min" : s < 129600 ? Math.round(s / 3600) + " h" : Math.round(s / 86400) + " d";
}
/** A time cell: relative, with the full local time as its tooltip. */
const when = (ms) => h("td", { title: ms ? new Date(ms).toLocaleString() : null }, ago(ms));

function table(id, headings, rows, render, empty) {
  const t = $(id);
  const body = h("tbody");
  if (!rows.length) body.append(h("tr", {}, h("td", { colspan: headings.length, class: "muted" }, empty || "none")));
  for (const row of rows) for (const tr of [].concat(render(row))) body.append(tr);
  t.replaceChildren(h("thead", {}, h("tr", {}, headings.map((x) => h("th", {}, x)))), body);
}

/** The conversation a message belongs to, by its platform and remote id. */
const convKey = (platform, remote) => platform + "\u0000" + remote;
function convButton(lc, label) {
  return h("button", { type: "button", class: "link", "data-conversation": lc, onclick: () => select(lc) }, show(label));
}
function convCell(platform, remote) {
  const c = state.convs.get(convKey(platform, remote));
  return c ? td(convButton(c.local_conversation_id, c.title || remote)) : td(remote);
}
function convCellById(lc) {
  const c = [...state.convs.values()].find((x) => x.local_conversation_id === lc);
  return td(lc ? convButton(lc, c ? c.title || lc : lc) : null);
}

// ---- the sections ----------------------------------------------------------

function renderSystem(sys) {
  state.system = sys;
  $("version").textContent = "v" + sys.version + " · " + sys.node_id + " · " + sys.role + " · up " + duration(Math.round(sys.uptime_ms / 1000));
  const a = $("automation");
  a.textContent = sys.automation_state + (sys.drained ? " (drained)" : "");
  a.className = statusClass(sys.automation_state) || "";
  $("automation-reason").textContent = sys.automation_reason ? "— reason: " + sys.automation_reason : "";
  const j = sys.counts.jobs;
  $("counts").textContent = " · " + sys.counts.messages + " messages · " + sys.counts.conversations + " conversations · jobs " +
    j.pending + " pending, " + j.running + " running, " + j.done + " done, " + j.failed + " failed · " + sys.clients + " plugin(s) connected";
  setControls();
}

/** The system buttons follow the state; all are off while the data is stale. */
function setControls() {
  const live = !document.body.classList.contains("stale") && state.system;
  const s = state.system ? state.system.automation_state : null;
  $("pause-open").disabled = !live || s === "paused";
  $("drain-open").disabled = !live || s !== "running";
  $("resume").disabled = !live || s === "running";
  $("confirm-yes").disabled = !live;
  $("auto-confirm-yes").disabled = !live;
  for (const b of document.querySelectorAll("#detail button[data-switch]")) b.disabled = !live || b.dataset.current === "1";
}

function renderMessages(list) {
  table("messages", ["seen", "conversation", "platform", "role", "text"], list.messages, (m) =>
    h("tr", {}, when(m.observed_at), convCell(m.platform, m.conversation_id), td(m.platform), td(m.role), td(m.summary, "text")),
  "no messages yet");
}

function renderConversations(list) {
  state.convs = new Map();
  for (const c of list.conversations) if (c.active_link) state.convs.set(convKey(c.platform, c.active_link.remote_conversation_id), c);
  table("conversations", ["conversation", "platform", "automation", "pause reason", "state", "last message"], list.conversations, (c) =>
    h("tr", { class: c.local_conversation_id === state.selected ? "selected" : null },
      td(convButton(c.local_conversation_id, c.title || c.local_conversation_id)), td(c.platform),
      td(c.automation_status, statusClass(c.automation_status)), td(c.pause_reason), td(c.execution_state), when(c.last_message_at)),
  "no conversations yet");
}

function executionRow(x, withConversation) {
  const cells = [when(x.created_at), td(x.tool), td(x.status, statusClass(x.status)), td(x.error), td(clip(x.summary, 300), "text")];
  if (withConversation) cells.push(convCellById(x.local_conversation_id), td(x.message_id));
  return h("tr", {}, cells);
}

function renderExecutions(list) {
  table("executions", ["created", "tool", "status", "error", "summary", "conversation", "message"], list.executions,
    (x) => executionRow(x, true), "no instruction blocks yet");
}

function jobRow(j, withConversation) {
  const cells = [when(j.created_at), td(j.job_id), td(j.status, statusClass(j.status)), td(j.attempt_count + "/" + j.max_attempts),
    td(j.last_error), td(clip(j.payload_text, 300), "text")];
  if (withConversation) cells.splice(2, 0, convCellById(j.local_conversation_id));
  return h("tr", {}, cells);
}

function renderJobs(list) {
  table("jobs", ["created", "job", "conversation", "status", "attempts", "last error", "text"], list.jobs, (j) => jobRow(j, true), "no renewal jobs yet");
}

function renderBrowser(b) {
  const logins = b.login_states.slice().sort((x, y) => x.platform.localeCompare(y.platform) || x.client_id.localeCompare(y.client_id));
  table("logins", ["platform", "status", "client", "account", "captured"], logins, (l) =>
    h("tr", {}, td(l.platform), td(l.status, statusClass(l.status)), td(l.client_id), td(l.account && l.account.email_hint), when(l.captured_at)),
  "no login state reported");
  table("clients", ["client", "status", "browser", "platforms", "tabs", "last seen"], b.clients, (c) =>
    h("tr", {}, td(c.client_id), td(c.status, statusClass(c.status)), td(c.browser), td(c.platforms.join(", ")),
      td(c.tabs.map((t) => t.tab_id + ": " + t.platform + (t.title ? " — " + t.title : "")).join("; ")), when(c.last_seen_at)),
  "no plugin connected");
  const targets = b.policy ? b.policy.targets : [];
  table("targets", ["client", "platform", "circuit", "failures", "backoff until", "in flight", "waiting", "last error"], targets, (t) =>
    h("tr", {}, td(t.client_id), td(t.platform), td(t.circuit_state, statusClass(t.circuit_state)), td(t.consecutive_failures),
      when(t.backoff_until), td(t.in_flight), td(t.waiting), td(t.last_error)));
}

function renderTimed(t) {
  const r = t.last_recovery;
  $("timed-meta").textContent = "— every " + t.interval_ms / 1000 + " s, role " + t.role +
    (r ? " · start-up recovery " + ago(r.at) + ": " + r.requeued_renewal_job_count + " job(s) requeued" : "");
  table("runners", ["runner", "runs", "last result", "last run", "took", "next run", "details"], t.runners, (x) =>
    h("tr", {}, td(x.name), td(x.runs), td(x.last_result, x.last_result === "ok" ? "ok" : x.last_result ? "warn" : null),
      when(x.last_started_at), td(x.last_finished_at && x.last_started_at ? x.last_finished_at - x.last_started_at + " ms" : null),
      when(x.next_run_at), td(x.last_details ? JSON.stringify(x.last_details) : null, "text")),
  "no runners");
}

// ---- one conversation ------------------------------------------------------

function select(lc) {
  state.selected = lc;
  if (lc) hash.set("c", lc);
  else hash.delete("c");
  history.replaceState(null, "", location.pathname + location.search + (hash.size ? "#" + hash : ""));
  for (const tr of document.querySelectorAll("#conversations tr")) {
    const b = tr.querySelector("button[data-conversation]");
    tr.classList.toggle("selected", !!b && b.dataset.conversation === lc);
  }
  $("detail").hidden = !lc;
  $("auto-confirm").hidden = true; // it was asked about the conversation shown before
  if (lc) refreshDetail().then(() => $("detail").scrollIntoView({ block: "nearest" }), problem);
}

async function refreshDetail() {
  const lc = state.selected;
  if (!lc) return;
  const c = await api("/v1/renewal/conversations/" + enc(lc));
  let remote = c.active_link && c.active_link.remote_conversation_id;
  if (!remote) {
    const links = await api(q("/v1/renewal/links", { local_conversation_id: lc, limit: 1 }));
    remote = links.links.length ? links.links[0].remote_conversation_id : null;
  }
  const [msgs, jobs, execs] = await Promise.all([
    remote ? api(q("/v1/messages", { platform: c.platform, conversation_id: remote, limit: 20 })) : { messages: [] },
    api(q("/v1/renewal/jobs", { local_conversation_id: lc, limit: 20 })),
    api(q("/v1/executions", { local_conversation_id: lc, limit: 20 })),
  ]);
  if (state.selected !== lc) return;
  renderDetail(c, remote, msgs, jobs, execs);
}

function renderDetail(c, remote, msgs, jobs, execs) {
  $("detail").hidden = false;
  $("detail-title").textContent = c.title || c.local_conversation_id;
  $("detail-meta").textContent = c.local_conversation_id + " · " + c.platform + " " + show(remote) + " · automation " + c.automation_status +
    (c.pause_reason ? " (" + c.pause_reason + ")" : "") + " · " + c.execution_state + (c.last_error ? " · last error: " + c.last_error : "");
  for (const b of document.querySelectorAll("#detail button[data-switch]")) b.dataset.current = b.dataset.switch === c.automation_status ? "1" : "";
  table("detail-messages", ["seen", "role", "text", ""], msgs.messages, messageRows, "no messages");
  table("detail-jobs", ["created", "job", "status", "attempts", "last error", "text"], jobs.jobs, (j) => jobRow(j, false), "no renewal jobs");
  table("detail-executions", ["created", "tool", "status", "error", "summary"], execs.executions, (x) => executionRow(x, false), "no executions");
  setControls();
}

/** A message row; its full text below it once asked for (texts never change). */
function messageRows(m) {
  const open = state.open.has(m.message_id);
  const button = h("button", { type: "button", "data-message": m.message_id, onclick: () => toggleText(m.message_id) }, open ? "Hide text" : "Full text");
  const rows = [h("tr", {}, when(m.observed_at), td(m.role), td(m.summary, "text"), td(button))];
  if (open && state.texts.has(m.message_id)) {
    rows.push(h("tr", { class: "full-text" }, h("td", { colspan: 4 }, h("pre", { class: "full" }, state.texts.get(m.message_id)))));
  }
  return rows;
}

async function toggleText(id) {
  if (state.open.delete(id)) return refreshDetail().catch(problem);
  try {
    if (!state.texts.has(id)) state.texts.set(id, (await api("/v1/messages/" + enc(id))).raw_text);
    state.open.add(id);
    await refreshDetail();
  } catch (e) {
    problem(e);
  }
}

/**
 * Switches the selected conversation. With instruction blocks on, `auto`
 * lets the assistant run the allowed tools on this machine, so that switch
 * asks first and names them.
 */
async function switchConversation(target, confirmed = false) {
  const lc = state.selected;
  if (!lc) return;
  const blocks = state.system && state.system.instruction_blocks;
  if (target === "auto" && blocks && blocks.enabled && !confirmed) {
    $("auto-confirm-text").textContent = "Switch to auto? Instruction blocks are on: the assistant in this " +
      "conversation can then run " + (blocks.allowed_tools.join(", ") || "no tool") +
      " on this machine, and each reply is sent back into the chat without asking.";
    $("auto-confirm").hidden = false;
    return;
  }
  $("auto-confirm").hidden = true;
  await act(() => api("/v1/renewal/conversations/" + enc(lc) + "/" + target, "POST"));
}

// ---- the system switches ---------------------------------------------------

let pending = null; // "pause" or "drain" while the confirmation is open

function askConfirm(what) {
  pending = what;
  $("confirm-text").textContent = what === "pause"
    ? "Pause all automation? Nothing is renewed or delivered, and no instruction block runs, until you resume (this survives restarts)."
    : "Drain? Nothing new is projected; jobs already pending are still delivered.";
  $("confirm-yes").textContent = what === "pause" ? "Confirm pause" : "Confirm drain";
  $("confirm-reason").value = "";
  $("confirm").hidden = false;
  $("confirm-reason").focus();
}

function closeConfirm() {
  pending = null;
  $("confirm").hidden = true;
}

async function confirmed() {
  const what = pending;
  if (!what) return;
  const reason = $("confirm-reason").value.trim();
  closeConfirm();
  await act(() => api("/v1/system/" + what, "POST", reason ? { reason } : {}));
}

/** Runs a switch, shows its error if any, and refreshes. */
async function act(call) {
  $("action-error").textContent = "";
  try {
    await call();
  } catch (e) {
    $("action-error").textContent = "Not done — " + (e.message || e);
  }
  await refresh();
}

// ---- polling and the daemon-gone state -------------------------------------

function problem(e) {
  if (!state.failingSince) state.failingSince = Date.now();
  const banner = $("banner");
  const since = new Date(state.failingSince || Date.now()).toLocaleTimeString();
  const last = state.lastOk ? "Everything below is what it said at " + new Date(state.lastOk).toLocaleTimeString() + " and may be out of date." : "Nothing has been read from it yet.";
  let text;
  if (e instanceof Unreachable) text = "The daemon is not answering (" + e.message + ") since " + since + ". " + last + " Retrying every " + REFRESH_MS / 1000 + " s.";
  else if (e.code === "unauthorized") text = "The daemon needs a token: type it in the token box above. " + last;
  else if (e.code === "shutting_down") text = "The daemon is shutting down. " + last;
  else text = "The daemon answered with an error: " + (e.message || e) + ". " + last;
  banner.textContent = text;
  banner.className = e instanceof Unreachable ? "" : "info";
  banner.hidden = false;
  document.body.classList.add("stale");
  $("updated").textContent = state.lastOk ? "last answer " + ago(state.lastOk) : "";
  setControls();
}

function healthy() {
  state.lastOk = Date.now();
  state.failingSince = 0;
  $("banner").hidden = true;
  document.body.classList.remove("stale");
  $("updated").textContent = "updated " + new Date(state.lastOk).toLocaleTimeString() + " · every " + REFRESH_MS / 1000 + " s";
  setControls();
}

async function refresh() {
  if (state.busy) {
    state.again = true; // a switch or the token changed meanwhile: read again right after
    return;
  }
  state.busy = true;
  try {
    const [sys, convs, msgs, execs, jobs, browser, timed] = await Promise.all([
      api("/v1/system"), api(q("/v1/renewal/conversations", { limit: 100 })), api(q("/v1/messages", { limit: 20 })),
      api(q("/v1/executions", { limit: 20 })), api(q("/v1/renewal/jobs", { limit: 20 })), api("/v1/browser"), api("/v1/timed-jobs"),
    ]);
    renderConversations(convs); // first: the other tables name conversations
    renderSystem(sys);
    renderMessages(msgs);
    renderExecutions(execs);
    renderJobs(jobs);
    renderBrowser(browser);
    renderTimed(timed);
    await refreshDetail().catch((e) => {
      if (e.code !== "not_found") throw e;
      select(null); // the conversation is gone (pruned)
    });
    healthy();
    document.body.dataset.loaded = "1";
  } catch (e) {
    problem(e);
  } finally {
    state.busy = false;
    if (state.again) {
      state.again = false;
      refresh();
    }
  }
}

// ---- wiring ----------------------------------------------------------------

$("token-use").addEventListener("click", useToken);
$("token").addEventListener("keydown", (e) => { if (e.key === "Enter") useToken(); });
$("token-forget").addEventListener("click", forgetToken);
$("pause-open").addEventListener("click", () => askConfirm("pause"));
$("drain-open").addEventListener("click", () => askConfirm("drain"));
$("confirm-yes").addEventListener("click", confirmed);
$("confirm-reason").addEventListener("keydown", (e) => { if (e.key === "Enter") confirmed(); if (e.key === "Escape") closeConfirm(); });
$("confirm-no").addEventListener("click", closeConfirm);
$("resume").addEventListener("click", () => act(() => api("/v1/system/resume", "POST")));
for (const b of document.querySelectorAll("#detail button[data-switch]")) b.addEventListener("click", () => switchConversation(b.dataset.switch));
$("detail-close").addEventListener("click", () => select(null));
$("auto-confirm-yes").addEventListener("click", () => switchConversation("auto", true));
$("auto-confirm-no").addEventListener("click", () => { $("auto-confirm").hidden = true; });

state.selected = hash.get("c");
showTokenState();
setControls();
refresh();
setInterval(refresh, REFRESH_MS);
