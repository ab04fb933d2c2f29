//! `GET /`: the status page, one self-contained HTML document (no external
//! assets, nothing fetched but the API) assembled once from the three files
//! under `status_page/`, embedded at build time: the markup, the style and
//! the script, kept apart so each stays readable and the script can be
//! checked on its own. It holds no data of its own — its script reads and
//! switches state through the public API only — so it is served without the
//! token; with a token configured, the person types it into the page, which
//! sends it as a bearer header (docs/OPERATIONS.md "The status page").
//!
//! The Content-Security-Policy lets exactly that script run, by its SHA-256
//! hash: no other inline script or event-handler attribute would, so even a
//! rendering bug that let message text through as HTML could not run code.
//! Nothing may be loaded from anywhere (`default-src 'none'`) and the page
//! may only talk to its own origin.

use crate::baa::hash::sha256;
use crate::http::api::{ApiError, ApiRequest, Reply};
use crate::http::ctx::Ctx;
use std::sync::OnceLock;

const BODY: &str = include_str!("status_page/body.html");
const STYLE: &str = include_str!("status_page/page.css");
const SCRIPT: &str = include_str!("status_page/page.js");

struct Page {
    html: String,
    csp: String,
}

fn page() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(|| Page {
        html: format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <meta name=\"referrer\" content=\"no-referrer\">\n<title>baa-conductor</title>\n\
             <style>\n{STYLE}</style>\n</head>\n<body>\n{BODY}<script>{SCRIPT}</script>\n</body>\n</html>\n"
        ),
        csp: format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'unsafe-inline'; connect-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            base64(&sha256(SCRIPT.as_bytes()))
        ),
    })
}

pub fn handle_page(_ctx: &Ctx, _req: &ApiRequest) -> Result<Reply, ApiError> {
    let page = page();
    let mut reply = Reply::text("text/html; charset=utf-8", page.html.as_bytes().to_vec());
    if let Reply::Raw { headers, .. } = &mut reply {
        headers.push(("Content-Security-Policy".into(), page.csp.clone()));
        headers.push(("X-Content-Type-Options".into(), "nosniff".into()));
        headers.push(("Cache-Control".into(), "no-store".into()));
        headers.push(("Referrer-Policy".into(), "no-referrer".into()));
    }
    Ok(reply)
}

/// Standard base64 with padding (RFC 4648), for the CSP hash source.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    /// The hash in the policy is the hash of the one script the page holds,
    /// which the browser computes over the text between the tags.
    #[test]
    fn the_policy_allows_exactly_the_pages_script() {
        let page = page();
        let start = page.html.find("<script>").unwrap() + "<script>".len();
        let end = page.html.rfind("</script>").unwrap();
        let script = &page.html[start..end];
        assert_eq!(script, SCRIPT);
        assert_eq!(page.html.matches("<script").count(), 1, "one script element");
        let hash = format!("'sha256-{}'", base64(&sha256(script.as_bytes())));
        assert!(page.csp.contains(&format!("script-src {hash};")), "{}", page.csp);
        assert!(!page.csp.contains("script-src 'unsafe-inline'"), "no inline script but the hashed one");
    }

    /// No assets: nothing is loaded from anywhere, and no markup in the
    /// page can parse data as HTML.
    #[test]
    fn the_page_loads_nothing_and_never_parses_data_as_html() {
        let html = &page().html;
        for needle in [
            "http://",
            "https://",
            "src=",
            "href=",
            "@import",
            "url(",
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!html.contains(needle), "the page contains {needle:?}");
        }
        // An inline `on…=` attribute would be refused by the policy.
        let handler = BODY.split(" on").skip(1).find(|rest| {
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        });
        assert_eq!(handler, None, "an event-handler attribute in the markup");
    }
}
