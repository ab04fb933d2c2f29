//! Artifact routes: a message's raw text, and files under
//! `STATE_DIR/artifacts`. The file route is a path-escape hazard, so a
//! request is resolved only if every segment is a plain name and the
//! canonical result (symlinks followed) is still inside the artifacts
//! directory; anything else is a 404 that says nothing about what exists.

use std::path::{Path, PathBuf};

use crate::http::api::{ApiError, ApiRequest, Reply};
use crate::http::ctx::Ctx;
use crate::http::server::Body;

pub fn handle_message(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    let id = req.param("message_id");
    match ctx.store.message(id)? {
        // The text was taken from a web page: the same guards as any artifact.
        Some(m) => {
            Ok(inert(Reply::text("text/plain; charset=utf-8", m.raw_text.unwrap_or_default().into_bytes())))
        }
        None => Err(ApiError::resource_not_found("message", id)),
    }
}

pub fn handle_file(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    let rel = req.param("path");
    let not_found = || ApiError::resource_not_found("artifact", rel);
    let path = confined(&ctx.artifacts_dir, rel).ok_or_else(not_found)?;
    // Opened, not read: the transport sends it in pieces (a 2 GB file must
    // not take 2 GB of memory, nor five slow downloads 1 GB each). The
    // length is the file's at opening; one that shrinks meanwhile ends the
    // connection short of it.
    let file = std::fs::File::open(&path).map_err(|_| not_found())?;
    let len = file.metadata().map_err(|_| not_found())?.len();
    let headers = vec![("Content-Type".into(), content_type(&path).into())];
    Ok(inert(Reply::Raw { status: 200, headers, body: Body::File(file, len) }))
}

/// Artifacts are data, never active content on the daemon's origin: no
/// content sniffing, and a sandbox with nothing allowed.
fn inert(mut reply: Reply) -> Reply {
    if let Reply::Raw { headers, .. } = &mut reply {
        headers.push(("X-Content-Type-Options".into(), "nosniff".into()));
        headers.push(("Content-Security-Policy".into(), "default-src 'none'; sandbox".into()));
    }
    reply
}

/// Resolves `rel` inside `root`, or `None` if it is not a plain relative
/// path to a regular file that stays inside `root` after following links.
pub fn confined(root: &Path, rel: &str) -> Option<PathBuf> {
    let plain = rel.split('/').all(|seg| {
        !seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\\') && !seg.contains('\0')
    });
    if !plain || rel.starts_with('/') {
        return None;
    }
    let root = root.canonicalize().ok()?;
    let full = root.join(rel).canonicalize().ok()?;
    (full.starts_with(&root) && full.is_file()).then_some(full)
}

/// File extensions and the media type each is served as; anything else
/// (HTML and scripts included, on purpose: see the CSP above) is bytes.
const TYPES: [(&[&str], &str); 7] = [
    (&["txt", "md", "log", "csv"], "text/plain; charset=utf-8"),
    (&["json", "jsonl"], "application/json"),
    (&["png"], "image/png"),
    (&["jpg", "jpeg"], "image/jpeg"),
    (&["gif"], "image/gif"),
    (&["webp"], "image/webp"),
    (&["pdf"], "application/pdf"),
];
const BYTES: &str = "application/octet-stream";

/// Every media type an artifact may be served as (the OpenAPI document).
pub const MEDIA_TYPES: [&str; 8] =
    [TYPES[0].1, TYPES[1].1, TYPES[2].1, TYPES[3].1, TYPES[4].1, TYPES[5].1, TYPES[6].1, BYTES];

fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
    let ext = ext.as_deref().unwrap_or("");
    TYPES.iter().find(|(exts, _)| exts.contains(&ext)).map_or(BYTES, |(_, media)| media)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_escapes() {
        let root = std::env::temp_dir().join(format!("baa-artifact-test-{}", crate::util::random_u64()));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/ok.txt"), "ok").unwrap();
        assert!(confined(&root, "sub/ok.txt").is_some());
        for bad in [
            "../etc/passwd",
            "sub/../../x",
            "/etc/passwd",
            "sub//ok.txt",
            "./sub/ok.txt",
            "sub",
            "missing.txt",
        ] {
            assert!(confined(&root, bad).is_none(), "{bad}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/hostname", root.join("link.txt")).unwrap();
            assert!(confined(&root, "link.txt").is_none());
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
