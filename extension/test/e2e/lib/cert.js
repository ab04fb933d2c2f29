// A self-signed certificate for the stand-in sites, made at test time with
// openssl (no key is kept in the repository), and the base64 SHA-256 of its
// public key for Chromium's --ignore-certificate-errors-spki-list.
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export function makeCert(names) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "baa-cert-"));
  const key = path.join(dir, "key.pem");
  const cert = path.join(dir, "cert.pem");
  const san = names.map((n) => `DNS:${n}`).join(",");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=baa-conductor stand-in",
    "-addext", `subjectAltName=${san}`,
  ], { stdio: "ignore" });
  const pem = { key: fs.readFileSync(key), cert: fs.readFileSync(cert) };
  fs.rmSync(dir, { recursive: true, force: true });
  const spki = new crypto.X509Certificate(pem.cert).publicKey.export({ type: "spki", format: "der" });
  return { ...pem, spki: crypto.createHash("sha256").update(spki).digest("base64") };
}
