// Starts the real baa-conductor binary for a test: a temp state dir, both
// listeners on port 0, an optional config and token; resolves once the
// ready line is printed, with the bound addresses from conductor.json.
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");

/** The daemon binary: $BAA_CONDUCTOR_BIN, else target/debug (built if missing). */
export function daemonBinary() {
  if (process.env.BAA_CONDUCTOR_BIN) return process.env.BAA_CONDUCTOR_BIN;
  const bin = path.join(ROOT, "target/debug/baa-conductor");
  if (!fs.existsSync(bin)) execFileSync("cargo", ["build", "--bin", "baa-conductor"], { cwd: ROOT, stdio: "inherit" });
  return bin;
}

export async function startDaemon({ config = {}, token = null, stateDir = null, ws = "127.0.0.1:0", listen = "127.0.0.1:0" } = {}) {
  const dir = stateDir || fs.mkdtempSync(path.join(os.tmpdir(), "baa-ext-e2e-"));
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config));
  fs.rmSync(path.join(dir, "conductor.json"), { force: true });
  const args = ["--state-dir", dir, "--listen", listen, "--ws-listen", ws];
  if (token) args.push("--token", token);
  const child = spawn(daemonBinary(), args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn" } });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr = (stderr + d).slice(-20000)));
  await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`daemon not ready in 30 s: ${stderr}`)), 30000);
    child.stdout.on("data", (d) => {
      out += d;
      if (out.includes("baa-conductor listening on")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited (${code}): ${stderr}`));
    });
  });
  const ready = JSON.parse(fs.readFileSync(path.join(dir, "conductor.json"), "utf8"));
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const daemon = {
    dir,
    child,
    http: ready.http_base,
    ws: ready.ws_url,
    stderr: () => stderr,
    async get(p) {
      const r = await fetch(daemon.http + p, { headers });
      return r.json();
    },
    async post(p, body) {
      const r = await fetch(daemon.http + p, {
        method: "POST",
        headers: { ...headers, "content-type": "application/json" },
        body: JSON.stringify(body ?? {}),
      });
      const text = await r.text();
      try {
        return { status: r.status, ...JSON.parse(text) };
      } catch (_) {
        return { status: r.status, text };
      }
    },
    async raw(p, init = {}) {
      return fetch(daemon.http + p, { ...init, headers: { ...headers, ...(init.headers || {}) } });
    },
    async stop() {
      if (child.exitCode !== null) return;
      const gone = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 10000);
      await gone;
      clearTimeout(t);
    },
    cleanup() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return daemon;
}

/** Polls `check` (async) until it returns a truthy value; throws `what` after `ms`. */
export async function until(what, check, ms = 15000, every = 100) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, every));
  }
}
