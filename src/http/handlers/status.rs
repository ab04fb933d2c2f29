//! `GET /`: the status page, one self-contained HTML file (no external
//! assets) embedded at build time. It holds no data of its own — its script
//! reads and switches state through the public API only — so it is served
//! without the token; with a token configured, the person types it into the
//! page, which sends it as a bearer header. Served under a strict CSP.

use crate::http::api::{ApiError, ApiRequest, Reply};
use crate::http::ctx::Ctx;

const PAGE: &str = include_str!("status_page.html");

pub fn handle_page(_ctx: &Ctx, _req: &ApiRequest) -> Result<Reply, ApiError> {
    let mut reply = Reply::text("text/html; charset=utf-8", PAGE.as_bytes().to_vec());
    if let Reply::Raw { headers, .. } = &mut reply {
        headers.push((
            "Content-Security-Policy".into(),
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'".into(),
        ));
        headers.push(("X-Content-Type-Options".into(), "nosniff".into()));
        headers.push(("Cache-Control".into(), "no-store".into()));
    }
    Ok(reply)
}
