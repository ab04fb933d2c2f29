//! Test-only: a fresh temporary directory removed when dropped, and a
//! migrated writer connection in one, for the store's unit tests.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

/// A fresh directory under the system temp dir, removed on drop.
pub struct TestDir(PathBuf);

impl TestDir {
    pub fn new(tag: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!(
            "baa-{tag}-{}-{}",
            std::process::id(),
            crate::util::new_id("")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A writer connection on a new database with the full schema.
pub fn migrated_writer(tag: &str) -> (TestDir, Connection) {
    let dir = TestDir::new(tag);
    let mut conn = super::schema::open_writer(&dir.path().join("test.db"), None).unwrap();
    super::schema::migrate(&mut conn).unwrap();
    (dir, conn)
}
