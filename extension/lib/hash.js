// A stable, fast, non-cryptographic 64-bit hash (two 32-bit lanes) for
// message ids when a page gives its messages none: the same conversation,
// position and text give the same id on every load, in every browser.
// Plain script like lib/sites.js: defines `globalThis.BaaHash`.
(function (root) {
  "use strict";

  /** 16 lowercase hex digits for `text` (UTF-16 code units). */
  function hash64(text) {
    let a = 0x811c9dc5 | 0; // FNV-1a offset basis
    let b = 0x9e3779b9 | 0; // a different start for the second lane
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995);
      b ^= b >>> 15;
    }
    // Final avalanche so short inputs still differ in every digit.
    a ^= a >>> 16;
    a = Math.imul(a, 0x85ebca6b);
    a ^= a >>> 13;
    b ^= b >>> 16;
    b = Math.imul(b, 0xc2b2ae35);
    b ^= b >>> 16;
    return (a >>> 0).toString(16).padStart(8, "0") + (b >>> 0).toString(16).padStart(8, "0");
  }

  root.BaaHash = Object.freeze({ hash64 });
})(globalThis);
