// Debian's Chromium with the unpacked extension, driven by playwright-core
// (never a downloaded browser). The stand-in sites' names are mapped to
// the local HTTPS server with --host-resolver-rules, and its certificate is
// trusted by its public key only.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const EXTENSION_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const EXTENSION_ID = "nplhpeekokbpafkegojkdehpjkpkackm"; // from the manifest's key

/** The real binary behind Debian's wrapper script, else the wrapper. */
export function chromiumPath() {
  if (process.env.BAA_CHROMIUM) return process.env.BAA_CHROMIUM;
  for (const p of ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]) if (fs.existsSync(p)) return p;
  throw new Error("Chromium not found (apt-get install chromium)");
}

/** `extension: false` gives the same browser without it (the benchmark's baseline). */
export function chromiumArgs({ standinPort, spki, extension = true }) {
  const map = ["chatgpt.com", "claude.ai", "gemini.google.com"].map((h) => `MAP ${h} 127.0.0.1:${standinPort}`).join(",");
  return [
    "--headless=new",
    "--no-sandbox",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    ...(extension ? [`--disable-extensions-except=${EXTENSION_DIR}`, `--load-extension=${EXTENSION_DIR}`] : ["--disable-extensions"]),
    `--host-resolver-rules=${map},EXCLUDE 127.0.0.1`,
    `--ignore-certificate-errors-spki-list=${spki}`,
  ];
}

/** A persistent context (extensions need one) with a fresh profile. */
export async function launchChromium(opts) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "baa-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath(),
    headless: true,
    args: chromiumArgs(opts),
    ignoreDefaultArgs: ["--disable-extensions", "--headless", "--enable-automation"],
    viewport: { width: 1200, height: 800 },
  });
  return {
    context,
    profile,
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}
