//! `files.read` and `files.write` on a path the checks already resolved
//! inside the roots (tools.rs). Reading refuses anything but a regular
//! UTF-8 file of at most 1 MiB; writing creates the parent directories and
//! checks once more, after creating them, that they are still inside.

use std::path::Path;

use serde_json::json;

use super::paths::resolve_inside;
use super::result::{failed, succeeded};
use super::Reason;
use crate::store::BlockResult;

/// `files.read` refuses files larger than this (docs/BAA.md).
pub const MAX_READ_BYTES: u64 = 1 << 20;

pub(super) fn read_file(path: &Path) -> BlockResult {
    use std::io::Read;
    let shown = path.display().to_string();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return failed(Reason::NotFound, format!("{shown} does not exist"), None, None)
        }
        Err(e) => return failed(Reason::Io, format!("{shown}: {e}"), None, None),
    };
    if !meta.is_file() {
        return failed(Reason::NotAFile, format!("{shown} is not a regular file"), None, None);
    }
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(MAX_READ_BYTES + 1).read_to_end(&mut bytes));
    if let Err(e) = read {
        return failed(Reason::Io, format!("{shown}: {e}"), None, None);
    }
    if bytes.len() as u64 > MAX_READ_BYTES {
        return failed(Reason::FileTooLarge, format!("{shown} is over {MAX_READ_BYTES} bytes"), None, None);
    }
    let n = bytes.len();
    match String::from_utf8(bytes) {
        Ok(content) => {
            let result = json!({ "path": shown, "content": content, "bytes": n });
            succeeded(content, result, None)
        }
        Err(_) => failed(Reason::NotUtf8, format!("{shown} is not UTF-8 text"), None, None),
    }
}

pub(super) fn write_file(path: &Path, content: &str, append: bool, roots: &[String]) -> BlockResult {
    use std::io::Write;
    let shown = path.display().to_string();
    if let Some(parent) = path.parent() {
        if let Err(e) = std::fs::create_dir_all(parent) {
            return failed(Reason::Io, format!("cannot create {}: {e}", parent.display()), None, None);
        }
        // Checked again now that the directories exist, in case one of
        // them turned out to be a link after all.
        if resolve_inside(&parent.display().to_string(), roots, None).is_err() {
            return failed(
                Reason::PathOutsideRoots,
                format!("{} left the roots", parent.display()),
                None,
                None,
            );
        }
    }
    if path.is_dir() {
        return failed(Reason::NotAFile, format!("{shown} is a directory"), None, None);
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true);
    if append {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    match options.open(path).and_then(|mut f| f.write_all(content.as_bytes())) {
        Ok(()) => {
            let verb = if append { "appended" } else { "wrote" };
            let result = json!({ "path": shown, "bytes": content.len(), "append": append });
            succeeded(format!("{verb} {} bytes to {shown}", content.len()), result, None)
        }
        Err(e) => failed(Reason::Io, format!("{shown}: {e}"), None, None),
    }
}
