//! Where a block may touch the disk (docs/BAA.md "The safety model"): every path of
//! `files.*` and `exec`'s `cwd` is resolved the way the kernel would walk
//! it — each symbolic link followed where it is met, each `..` taken from
//! the directory actually reached — and only then checked against the
//! roots, themselves resolved. A path that leaves every root is refused
//! before anything is opened, created or run.
//!
//! Components that do not exist yet (a file `files.write` will create) are
//! appended as they are written; a `..` among them steps back lexically,
//! which is what the kernel will do once they exist as plain directories.
//! A symbolic link that points nowhere is refused: writing through it
//! would create its target, wherever that is.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Why a path cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum PathError {
    /// It resolves outside every root (or there are no roots).
    Outside(PathBuf),
    /// A symbolic link on the way points nowhere.
    Dangling(PathBuf),
    /// Relative, with no root to be relative to; or `~` without HOME.
    Unanchored,
    /// Reading the file system failed (permissions, I/O).
    Io(String),
}

/// Resolves `raw` (absolute, `~/…`, or relative to the first root) and
/// checks it lies inside one of `roots`. Returns the resolved path, which
/// holds no symbolic link and no `.` or `..` component.
pub fn resolve_inside(raw: &str, roots: &[String], home: Option<&str>) -> Result<PathBuf, PathError> {
    let path = anchor(raw, roots, home)?;
    let resolved = resolve(&path)?;
    let inside = roots.iter().filter_map(|r| std::fs::canonicalize(r).ok()).any(|r| resolved.starts_with(&r));
    if inside {
        Ok(resolved)
    } else {
        Err(PathError::Outside(resolved))
    }
}

/// Makes `raw` absolute: `~` and `~/…` from HOME, a relative path from the
/// first root.
fn anchor(raw: &str, roots: &[String], home: Option<&str>) -> Result<PathBuf, PathError> {
    if let Some(rest) = raw.strip_prefix('~').filter(|r| r.is_empty() || r.starts_with('/')) {
        let home = home.filter(|h| !h.is_empty()).ok_or(PathError::Unanchored)?;
        return Ok(PathBuf::from(format!("{}{rest}", home.trim_end_matches('/'))));
    }
    let path = Path::new(raw);
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    roots.first().map(|root| Path::new(root).join(path)).ok_or(PathError::Unanchored)
}

/// Walks `path` (absolute) component by component from `/`, following
/// every symbolic link where it is met.
fn resolve(path: &Path) -> Result<PathBuf, PathError> {
    let mut cur = PathBuf::from("/");
    // Whether everything walked so far exists (and `cur` is canonical).
    let mut real = true;
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => cur = PathBuf::from("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                // `cur` holds no link, so its parent is where `..` leads.
                cur.pop();
            }
            Component::Normal(name) => {
                let next = cur.join(name);
                if !real {
                    cur = next;
                    continue;
                }
                match std::fs::symlink_metadata(&next) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        cur = std::fs::canonicalize(&next).map_err(|e| match e.kind() {
                            io::ErrorKind::NotFound => PathError::Dangling(next.clone()),
                            _ => PathError::Io(e.to_string()),
                        })?;
                    }
                    Ok(_) => cur = next,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        real = false;
                        cur = next;
                    }
                    Err(e) => return Err(PathError::Io(e.to_string())),
                }
            }
        }
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A root with a file, a sub-directory, and an outside directory.
    fn layout(tag: &str) -> (crate::store::test_dir::TestDir, String, PathBuf) {
        let dir = crate::store::test_dir::TestDir::new(tag);
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        let root = std::fs::canonicalize(root).unwrap();
        (dir, root.display().to_string(), std::fs::canonicalize(outside).unwrap())
    }

    #[test]
    fn paths_inside_the_root_resolve() {
        let (_d, root, _) = layout("paths-in");
        let roots = [root.clone()];
        let r = |p: &str| resolve_inside(p, &roots, None);
        assert_eq!(r(&format!("{root}/a.txt")).unwrap(), Path::new(&root).join("a.txt"));
        assert_eq!(r("a.txt").unwrap(), Path::new(&root).join("a.txt"), "relative to the first root");
        assert_eq!(r("sub/../a.txt").unwrap(), Path::new(&root).join("a.txt"));
        assert_eq!(r("./sub/new/deeper.txt").unwrap(), Path::new(&root).join("sub/new/deeper.txt"));
        assert_eq!(r("new/../x").unwrap(), Path::new(&root).join("x"), "`..` over a missing directory");
        assert_eq!(r(&root).unwrap(), Path::new(&root));
    }

    #[test]
    fn absolute_paths_and_dot_dot_escapes_are_outside() {
        let (_d, root, outside) = layout("paths-out");
        let roots = [root.clone()];
        let r = |p: &str| resolve_inside(p, &roots, None);
        assert!(matches!(r("/etc/passwd"), Err(PathError::Outside(_))));
        assert!(matches!(r("../outside/secret"), Err(PathError::Outside(p)) if p == outside.join("secret")));
        assert!(matches!(r("sub/../../outside/secret"), Err(PathError::Outside(_))));
        assert!(matches!(r("missing/../../../x"), Err(PathError::Outside(_))));
        // A sibling whose name starts like the root is not inside it.
        let sibling = format!("{root}-evil/x");
        std::fs::create_dir_all(Path::new(&sibling).parent().unwrap()).unwrap();
        assert!(matches!(r(&sibling), Err(PathError::Outside(_))));
        // No roots: nothing is inside, and relative paths have no anchor.
        assert!(matches!(resolve_inside(&format!("{root}/a.txt"), &[], None), Err(PathError::Outside(_))));
        assert_eq!(resolve_inside("a.txt", &[], None), Err(PathError::Unanchored));
    }

    #[test]
    fn symlinks_are_followed_before_the_check() {
        let (_d, root, outside) = layout("paths-link");
        let roots = [root.clone()];
        let r = |p: &str| resolve_inside(p, &roots, None);
        symlink(&outside, Path::new(&root).join("escape")).unwrap();
        symlink(outside.join("secret"), Path::new(&root).join("secret-link")).unwrap();
        symlink(Path::new(&root).join("a.txt"), Path::new(&root).join("inner")).unwrap();
        symlink(outside.join("nothing"), Path::new(&root).join("dangling")).unwrap();
        assert!(matches!(r("escape/secret"), Err(PathError::Outside(_))));
        assert!(matches!(r("escape/new-file"), Err(PathError::Outside(_))), "a new file behind a link");
        assert!(matches!(r("secret-link"), Err(PathError::Outside(_))));
        // `..` after a link leaves from where the link led (the outside dir).
        assert!(matches!(r("escape/../outside/secret"), Err(PathError::Outside(_))));
        assert_eq!(r("inner").unwrap(), Path::new(&root).join("a.txt"));
        assert!(matches!(r("dangling"), Err(PathError::Dangling(_))));
        // A root given through a link is resolved too.
        let link_root = outside.parent().unwrap().join("root-link");
        symlink(&root, &link_root).unwrap();
        let roots = [link_root.display().to_string()];
        assert_eq!(resolve_inside("a.txt", &roots, None).unwrap(), Path::new(&root).join("a.txt"));
    }

    #[test]
    fn home_is_expanded() {
        let (_d, root, _) = layout("paths-home");
        let roots = [root.clone()];
        assert_eq!(resolve_inside("~/a.txt", &roots, Some(&root)).unwrap(), Path::new(&root).join("a.txt"));
        assert_eq!(resolve_inside("~/a.txt", &roots, None), Err(PathError::Unanchored));
        // `~user` is not expanded: it is a relative name.
        assert_eq!(resolve_inside("~x", &roots, None).unwrap(), Path::new(&root).join("~x"));
    }
}
