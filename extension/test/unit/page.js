// Loads a saved DOM fixture into linkedom and runs the content scripts'
// libraries (not main.js, which needs a browser) against it in a vm
// context, the way the browser loads them: in manifest order, sharing one
// global object.
import fs from "node:fs";
import path from "node:path";
import vm from "node:vm";
import { fileURLToPath } from "node:url";
import { parseHTML } from "linkedom";

const EXT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const manifest = JSON.parse(fs.readFileSync(path.join(EXT, "manifest.json"), "utf8"));
export const CONTENT_FILES = manifest.content_scripts[0].js.filter((f) => f !== "content/main.js");

export function fixture(name) {
  return fs.readFileSync(path.join(EXT, "test/fixtures", name), "utf8");
}

/** `{window, document, g}`: `g` is the scripts' global (g.BaaAdapters, ...). */
export function loadPage(html, url) {
  const { window, document } = parseHTML(html);
  const location = new URL(url);
  Object.defineProperty(document, "location", { value: location, configurable: true });
  const g = vm.createContext({
    window, document, location, console, URL, TextDecoder, TextEncoder, AbortController, AbortSignal,
    setTimeout, clearTimeout, setInterval, clearInterval, Date, Promise, Uint8Array,
  });
  for (const file of CONTENT_FILES) {
    vm.runInContext(fs.readFileSync(path.join(EXT, file), "utf8"), g, { filename: file });
  }
  return { window, document, g };
}

/** A scanner that hands out final messages at once (no settle wait). */
export function scanAll(g, platform, document, conversationId, scanner) {
  const s = scanner || new g.BaaAdapters.Scanner(g.BaaAdapters.get(platform), { settleMs: 0 });
  return { scanner: s, ...s.scan(document, conversationId) };
}
