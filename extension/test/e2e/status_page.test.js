// The daemon's status page (`GET /`) in Debian's Chromium, against the real
// daemon binary with a token configured and the plugin simulator
// (baa-plugin-sim) as the browser: the token box (wrong, right, remembered,
// forgotten); the page empty, then filled over the HTTP API and the
// simulator (messages, conversations, login state, jobs, executions, timed
// runners), with a hostile message shown as text and never run; selecting
// a conversation (its messages, full text, jobs, executions, switches);
// pause with a reason behind a confirmation, drain, resume; and the daemon
// gone — stopped (no answer) and killed (refused) — said plainly with the
// old data greyed out, then live again once it is back on its port.
// The page polls every 500 ms here (`#refresh=500`); every wait has a deadline.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { startDaemon, daemonBinary, until } from "./lib/daemon.js";
import { chromiumPath } from "./lib/chromium.js";

const TOKEN = "status-page-token-9f2c";
const CONFIG = { timed_jobs: { interval_ms: 300, settle_delay_ms: 300 }, baa: { enabled: true } };
const HOSTILE = `<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b>bold?</b>`;
const BAA_TEXT = "Let me check.\n\n```baa\n@conductor.status\n```\n\n```baa\n@conductor.exec ls\n```\n";

let daemon, sim, browser, context, page, lc, other;
const cspErrors = [];
const pageErrors = [];

function startSim(d) {
  const bin = path.join(path.dirname(daemonBinary()), "baa-plugin-sim");
  if (!fs.existsSync(bin)) execFileSync("cargo", ["build", "--bin", "baa-plugin-sim"], { stdio: "inherit" });
  const child = spawn(bin, ["--quiet", "--url", d.ws, "--token", TOKEN, "--client-id", "sim-1", "--platform", "chatgpt",
    "--tab", "17:chatgpt:abc", "--login", "chatgpt", "--conversation", "abc", "--message", "Here is the plan we discussed."],
  { stdio: ["ignore", "ignore", "pipe"] });
  return child;
}

const ingest = (body) => daemon.post("/v1/messages", { platform: "chatgpt", conversation_id: "abc", tab_id: 17, client_id: "sim-1", ...body });
const text = (sel) => page.textContent(sel);
const has = async (sel, ...words) => { const t = await text(sel); return words.every((w) => t.includes(w)) && t; };
const stale = () => page.evaluate(() => document.body.classList.contains("stale"));
const bannerText = () => page.evaluate(() => { const b = document.getElementById("banner"); return b.hidden ? "" : b.textContent; });
const live = () => until("the page live", async () => !(await stale()) && (await bannerText()) === "" && (await page.$("body[data-loaded]")));

async function openPage(p) {
  p.on("console", (m) => { if (/Content.Security.Policy/i.test(m.text())) cspErrors.push(m.text()); });
  p.on("pageerror", (e) => pageErrors.push(String(e)));
  await p.goto(daemon.http + "/#refresh=500");
  return p;
}

before(async () => {
  daemon = await startDaemon({ config: CONFIG, token: TOKEN });
  browser = await chromium.launch({ executablePath: chromiumPath(), headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  page = await openPage(await context.newPage());
});

after(async () => {
  sim?.kill("SIGKILL");
  await browser?.close();
  if (daemon) {
    try { daemon.child.kill("SIGCONT"); } catch (_) {}
    await daemon.stop();
    daemon.cleanup();
  }
});

test("without a token the page says it needs one; a wrong one is refused; the right one is kept for the tab", async () => {
  await until("asks for the token", async () => (await bannerText()).includes("needs a token"));
  assert.ok(await stale(), "nothing read yet is shown as stale");
  const refused = page.waitForResponse((r) => r.request().headers().authorization === "Bearer wrong-token" && r.status() === 401);
  await page.fill("#token", "wrong-token");
  await page.click("#token-use");
  await refused;
  await until("still asks", async () => (await bannerText()).includes("needs a token"));
  await page.fill("#token", TOKEN);
  await page.click("#token-use");
  await live();
  assert.equal(await page.inputValue("#token"), "", "the token is not left in the box");
  assert.match(await text("#token-state"), /set for this tab/);
  assert.equal(await page.evaluate(() => localStorage.length), 0, "not remembered unless asked");
  assert.ok(!(await page.content()).includes(TOKEN), "the token is never shown");
  await page.reload();
  await live();
});

test("renders empty", async () => {
  await until("empty tables", () => has("#messages", "no messages yet"));
  for (const [sel, empty] of [["#conversations", "no conversations yet"], ["#executions", "no instruction blocks yet"],
    ["#jobs", "no renewal jobs yet"], ["#logins", "no login state reported"], ["#clients", "no plugin connected"]]) {
    assert.ok((await text(sel)).includes(empty), `${sel} says ${empty}`);
  }
  assert.equal(await text("#automation"), "running");
  assert.match(await text("#counts"), /0 messages · 0 conversations/);
  await until("the timed runners", () => has("#runners", "renewal.projector", "renewal.dispatcher", "store.pruner", "ok"));
  assert.ok(await page.isDisabled("#resume"), "resume is off while running");
});

test("renders filled: messages, conversations, login states, plugins, jobs, executions", async () => {
  sim = startSim(daemon);
  await until("the simulator's message", async () => (await daemon.get("/v1/messages")).data.count === 1);
  lc = (await daemon.get("/v1/renewal/conversations")).data.conversations[0].local_conversation_id;
  assert.equal((await ingest({ message_id: "m-hostile", text: HOSTILE, page_title: "Simulated" })).status, 200);
  assert.equal((await ingest({ message_id: "m-lines", text: "Line one\n\nLine two <i>not italic</i>" })).status, 200);
  const o = await daemon.post("/v1/messages", { platform: "claude", conversation_id: "zzz", message_id: "m-claude", text: "A claude answer.", page_title: "Other chat" });
  other = o.data.local_conversation_id;
  assert.equal((await daemon.post(`/v1/renewal/conversations/${lc}/auto`)).status, 200);
  assert.equal((await ingest({ message_id: "m-baa", text: BAA_TEXT })).status, 200);

  await until("messages", () => has("#messages", "Here is the plan we discussed.", "A claude answer.", "Let me check."));
  await until("conversations", () => has("#conversations", "Other chat", "auto", "manual"));
  await until("login state", () => has("#logins", "chatgpt", "fresh", "sim-1", "s***@example.com"));
  await until("plugin", () => has("#clients", "sim-1", "connected", "17: chatgpt"));
  await until("executions", () => has("#executions", "status", "succeeded", "exec", "rejected", "tool_not_allowed", "m-baa"));
  await until("the [baa] reply job done", () => has("#jobs", "done", "[baa] status: ok"));
  await until("runners that ran", async () => (await text("#runners")).match(/renewal\.dispatcher\d+ok/));
  assert.match(await text("#counts"), /5 messages · 2 conversations/);
});

test("message text is shown as text, never run or parsed as HTML", async () => {
  await until("the hostile text, as text", () => has("#messages", "<img src=x onerror=", "<script>window.__pwned=2</script>", "<b>bold?</b>"));
  const found = await page.evaluate(() => ({
    pwned: window.__pwned, img: document.querySelectorAll("img").length, b: document.querySelectorAll("b").length, scripts: document.scripts.length,
  }));
  assert.deepEqual(found, { pwned: undefined, img: 0, b: 0, scripts: 1 });
});

test("selecting a conversation shows its messages, full text, jobs and executions; its switches work", async () => {
  await page.click(`#conversations button[data-conversation="${lc}"]`);
  await until("the detail", async () => !(await page.isHidden("#detail")) && has("#detail-messages", "Here is the plan", "Let me check."));
  const detail = await text("#detail-messages");
  assert.ok(!detail.includes("A claude answer."), "only this conversation's messages");
  await until("its executions", () => has("#detail-executions", "succeeded", "rejected"));
  await until("its jobs", () => has("#detail-jobs", "[baa] status: ok"));
  assert.ok(page.url().endsWith("#refresh=500&c=" + lc), "the selection is in the address, beside the refresh");
  assert.ok(await page.$eval(`#conversations button[data-conversation="${lc}"]`, (b) => b.closest("tr").classList.contains("selected")));

  await page.click('#detail-messages button[data-message="m-lines"]');
  await until("the full text", async () => (await page.$eval("#detail-messages pre.full", (p) => p.textContent).catch(() => "")) === "Line one\n\nLine two <i>not italic</i>");
  assert.equal(await page.evaluate(() => document.querySelectorAll("i").length), 0);
  await page.click('#detail-messages button[data-message="m-lines"]');
  await until("the full text hidden", async () => (await page.$("#detail-messages pre.full")) === null);

  assert.ok(await page.isDisabled('#detail button[data-switch="auto"]'), "the current state's switch is off");
  await page.click('#detail button[data-switch="manual"]');
  await until("switched to manual", async () => (await daemon.get(`/v1/renewal/conversations/${lc}`)).data.automation_status === "manual");
  await until("the page shows it", () => has("#detail-meta", "automation manual"));

  // Instruction blocks are on: auto asks first, naming the tools an assistant could run.
  const status = async () => (await daemon.get(`/v1/renewal/conversations/${lc}`)).data.automation_status;
  await page.click('#detail button[data-switch="auto"]');
  await until("the auto confirmation", () => page.isVisible("#auto-confirm"));
  assert.ok(await has("#auto-confirm-text", "Instruction blocks are on", "describe, status, files.read"));
  assert.equal(await status(), "manual", "asking changes nothing");
  await page.click("#auto-confirm-no");
  assert.ok(await page.isHidden("#auto-confirm"));
  assert.equal(await status(), "manual", "cancel changes nothing");
  await page.click('#detail button[data-switch="auto"]');
  await page.click("#auto-confirm-yes");
  await until("switched to auto", async () => (await status()) === "auto");
  await until("the page shows it, the question gone", async () => (await has("#detail-meta", "automation auto")) && page.isHidden("#auto-confirm"));

  // A message's conversation link selects that conversation; reloading keeps it.
  await page.click(`#messages button[data-conversation="${other}"]`);
  await until("the other conversation", () => has("#detail-messages", "A claude answer."));
  await page.reload();
  await until("still selected after a reload", () => has("#detail-title", "Other chat"));
  await page.click("#detail-close");
  await until("closed", () => page.isHidden("#detail"));
  assert.ok(page.url().endsWith("/#refresh=500"), "the selection left the address");
});

test("pause asks for a confirmation and takes a reason; drain and resume", async () => {
  const system = async () => (await daemon.get("/v1/system")).data;
  await page.click("#pause-open");
  assert.ok(await page.isVisible("#confirm"));
  await page.fill("#confirm-reason", "not this");
  await page.click("#confirm-no");
  assert.ok(await page.isHidden("#confirm"));
  assert.equal((await system()).automation_state, "running", "cancel changes nothing");

  await page.click("#pause-open");
  assert.equal(await page.inputValue("#confirm-reason"), "", "a fresh reason each time");
  await page.fill("#confirm-reason", "lunch break");
  await page.click("#confirm-yes");
  await until("paused with the reason", async () => { const s = await system(); return s.automation_state === "paused" && s.automation_reason === "lunch break"; });
  await until("the page shows it", async () => (await text("#automation")) === "paused" && (await has("#automation-reason", "lunch break")));
  await until("pause off, resume on", async () => (await page.isDisabled("#pause-open")) && !(await page.isDisabled("#resume")));

  await page.click("#resume");
  await until("running", async () => (await system()).automation_state === "running");
  await until("the page shows it", async () => (await text("#automation")) === "running" && (await text("#automation-reason")) === "");

  await page.click("#drain-open");
  await page.click("#confirm-yes");
  await until("draining", async () => (await system()).automation_state === "draining");
  await until("the page shows it", async () => (await text("#automation")).startsWith("draining"));
  await page.click("#resume");
  await until("running again", async () => (await system()).automation_state === "running");
});

test("forget and remember the token", async () => {
  await page.click("#token-forget");
  await until("asks again", async () => (await bannerText()).includes("needs a token") && (await stale()));
  await page.fill("#token", TOKEN);
  await page.check("#remember");
  await page.click("#token-use");
  await live();
  assert.match(await text("#token-state"), /saved in this browser/);
  // A new tab has its own sessionStorage: only a remembered token reaches it.
  const second = await openPage(await context.newPage());
  await until("a new tab reads with the remembered token", () => second.$("body[data-loaded]"));
  await second.click("#token-forget");
  await second.close();
  await page.reload();
  await until("forgotten everywhere", async () => (await bannerText()).includes("needs a token"));
  await page.fill("#token", TOKEN);
  await page.click("#token-use");
  await live();
});

test("the daemon gone: said plainly, data greyed out and switches off, live again when it is back", async () => {
  await until("filled", () => has("#messages", "Here is the plan"));
  const greyed = async () => {
    if (!(await stale())) return false;
    const style = await page.$eval("main", (m) => ({ opacity: Number(getComputedStyle(m).opacity), filter: getComputedStyle(m).filter }));
    return style.opacity < 1 && style.filter.includes("grayscale") && (await page.isDisabled("#pause-open")) && (await page.isDisabled("#drain-open"));
  };

  daemon.child.kill("SIGSTOP"); // alive but silent
  await until("no answer", async () => (await bannerText()).includes("not answering (no answer within"));
  assert.ok(await greyed(), "stale data is greyed out");
  assert.match(await bannerText(), /what it said at .* may be out of date/);
  assert.ok((await text("#messages")).includes("Here is the plan"), "the old data stays visible");
  daemon.child.kill("SIGCONT");
  await live();

  sim.kill("SIGKILL");
  const port = new URL(daemon.http).port;
  const gone = new Promise((r) => daemon.child.once("exit", r));
  daemon.child.kill("SIGKILL");
  await gone;
  await until("refused", async () => (await bannerText()).includes("not answering (the connection failed)"));
  assert.ok(await greyed());
  daemon = await startDaemon({ config: CONFIG, token: TOKEN, stateDir: daemon.dir, listen: `127.0.0.1:${port}` });
  await live();
  await until("the data again", () => has("#messages", "Here is the plan", "A claude answer."));
  assert.ok(!(await page.isDisabled("#pause-open")));
});

test("the page ran under its Content-Security-Policy without a violation or a script error", () => {
  assert.deepEqual(cspErrors.slice(0, 3), []);
  assert.deepEqual(pageErrors, []);
});
