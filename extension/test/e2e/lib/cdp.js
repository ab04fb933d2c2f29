// Chromium driven over the raw DevTools protocol, for the one scenario
// where Playwright would change what is tested: Playwright attaches to the
// extension's service worker, and an attached worker is never stopped when
// idle. This attaches only to the pages it opens. Debugging port 0; the
// bound port is read from the profile's DevToolsActivePort file.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import WebSocket from "ws";
import { chromiumArgs, chromiumPath } from "./chromium.js";
import { until } from "./daemon.js";

export async function launchRawChromium(opts) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "baa-cdp-"));
  const child = spawn(chromiumPath(), [...chromiumArgs(opts), `--user-data-dir=${profile}`, "--remote-debugging-port=0", "about:blank"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr = (stderr + d).slice(-5000)));
  const portFile = path.join(profile, "DevToolsActivePort");
  const [port, wsPath] = await until("DevToolsActivePort", () => {
    if (child.exitCode !== null) throw new Error(`chromium exited: ${stderr}`);
    const text = fs.existsSync(portFile) ? fs.readFileSync(portFile, "utf8").trim().split("\n") : [];
    return text.length === 2 ? text : null;
  }, 30000);
  const ws = new WebSocket(`ws://127.0.0.1:${port}${wsPath}`, { perMessageDeflate: false });
  await new Promise((resolve, reject) => (ws.once("open", resolve), ws.once("error", reject)));
  let seq = 0;
  const waiting = new Map();
  const listeners = [];
  ws.on("message", (data) => {
    const msg = JSON.parse(data);
    if (msg.id && waiting.has(msg.id)) {
      const { resolve, reject } = waiting.get(msg.id);
      waiting.delete(msg.id);
      if (msg.error) reject(new Error(`${msg.error.message} (${msg.error.code})`));
      else resolve(msg.result);
    } else if (msg.method) listeners.forEach((l) => l(msg));
  });
  const send = (method, params = {}, sessionId) =>
    new Promise((resolve, reject) => {
      const id = ++seq;
      waiting.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    });

  const browser = {
    send,
    onEvent: (fn) => listeners.push(fn),
    /** Opens `url` in a new tab and attaches to that page only. */
    async open(url) {
      const { targetId } = await send("Target.createTarget", { url });
      const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
      const page = {
        targetId,
        sessionId,
        async evaluate(expression) {
          const r = await send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true }, sessionId);
          if (r.exceptionDetails) throw new Error(`page: ${r.exceptionDetails.exception?.description || r.exceptionDetails.text}`);
          return r.result.value;
        },
        async navigate(to) {
          await send("Page.navigate", { url: to }, sessionId);
        },
      };
      return page;
    },
    async targets() {
      return (await send("Target.getTargets")).targetInfos;
    },
    async close() {
      try {
        await send("Browser.close");
      } catch (_) {
        // Already gone.
      }
      ws.close();
      await Promise.race([new Promise((r) => child.once("exit", r)), new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill("SIGKILL");
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
  return browser;
}
