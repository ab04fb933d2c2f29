// Debian's Firefox ESR driven over WebDriver BiDi (built in; no geckodriver,
// no downloaded browser): a fresh profile, the extension installed as a
// temporary add-on with `webExtension.install`, certificate errors accepted
// for the session. Firefox cannot map a name to a port, so every name
// resolves (network.dns.forceResolve) to one random 127.x.y.z address whose
// port 443 serves the stand-in sites; WebSocket and HTTP to the daemon use
// the literal 127.0.0.1, which no resolver touches.
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import WebSocket from "ws";
import { EXTENSION_DIR } from "./chromium.js";
import { until } from "./daemon.js";

export const GECKO_ID = "baa-conductor@baa-conductor.local";

export function firefoxPath() {
  if (process.env.BAA_FIREFOX) return process.env.BAA_FIREFOX;
  for (const p of ["/usr/lib/firefox-esr/firefox-esr", "/usr/bin/firefox-esr"]) if (fs.existsSync(p)) return p;
  throw new Error("Firefox ESR not found (apt-get install firefox-esr)");
}

/** A random loopback address other than 127.0.0.1 (its port 443 is ours alone). */
export function randomLoopback() {
  const b = crypto.randomBytes(3);
  return `127.${16 + (b[0] % 200)}.${b[1]}.${1 + (b[2] % 250)}`;
}

function prefs(standinAddress) {
  const p = {
    "network.dns.forceResolve": standinAddress,
    "browser.shell.checkDefaultBrowser": false,
    "browser.startup.homepage_override.mstone": "ignore",
    "datareporting.policy.dataSubmissionEnabled": false,
    "toolkit.telemetry.reportingpolicy.firstRun": false,
    "app.update.enabled": false,
    "network.captive-portal-service.enabled": false,
    "network.connectivity-service.enabled": false,
  };
  return Object.entries(p).map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});`).join("\n");
}

export async function launchFirefox({ standinAddress }) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "baa-firefox-"));
  fs.writeFileSync(path.join(profile, "user.js"), prefs(standinAddress));
  const child = spawn(firefoxPath(), ["--headless", "--no-remote", "--profile", profile, "--remote-debugging-port", "0"], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, MOZ_CRASHREPORTER_DISABLE: "1" },
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr = (stderr + d).slice(-20000)));
  const bidiUrl = await until("Firefox's WebDriver BiDi address", () => {
    if (child.exitCode !== null) throw new Error(`firefox exited: ${stderr}`);
    const m = /WebDriver BiDi listening on (ws:\/\/[^\s]+)/.exec(stderr);
    return m && m[1];
  }, 60000);
  const ws = new WebSocket(`${bidiUrl.replace(/\/$/, "")}/session`, { perMessageDeflate: false });
  await new Promise((resolve, reject) => (ws.once("open", resolve), ws.once("error", reject)));
  let seq = 0;
  const waiting = new Map();
  ws.on("message", (data) => {
    const msg = JSON.parse(data);
    if (msg.id && waiting.has(msg.id)) {
      const { resolve, reject } = waiting.get(msg.id);
      waiting.delete(msg.id);
      if (msg.type === "error") reject(new Error(`${msg.error}: ${msg.message}`));
      else resolve(msg.result);
    }
  });
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = ++seq;
      waiting.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  await send("session.new", { capabilities: { alwaysMatch: { acceptInsecureCerts: true } } });
  await send("webExtension.install", { extensionData: { type: "path", path: EXTENSION_DIR } });

  const browser = {
    send,
    stderr: () => stderr,
    /** A new tab at `url`. */
    async open(url) {
      const { context } = await send("browsingContext.create", { type: "tab" });
      const page = browser.page(context);
      await page.goto(url);
      return page;
    },
    /** The tab `context`; `evaluate(expr)` returns the JSON value of an expression. */
    page(context) {
      return {
        context,
        async goto(to) {
          await send("browsingContext.navigate", { context, url: to, wait: "complete" });
        },
        async reload() {
          await send("browsingContext.reload", { context, wait: "complete" });
        },
        async evaluate(expression) {
          const r = await send("script.evaluate", {
            expression: `(async () => JSON.stringify(await (${expression})))()`,
            target: { context },
            awaitPromise: true,
          });
          if (r.type === "exception") throw new Error(`page: ${r.exceptionDetails.text}`);
          return r.result.value === undefined ? undefined : JSON.parse(r.result.value);
        },
      };
    },
    async close() {
      try {
        await Promise.race([send("browser.close"), new Promise((r) => setTimeout(r, 5000))]);
      } catch (_) {
        // Already closing.
      }
      ws.close();
      await Promise.race([new Promise((r) => child.once("exit", r)), new Promise((r) => setTimeout(r, 10000))]);
      if (child.exitCode === null) child.kill("SIGKILL");
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
  return browser;
}
