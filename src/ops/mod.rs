//! The operations commands of the binary: `backup PATH`, an online copy of
//! the database that is safe while a daemon runs on it, and `service
//! install|uninstall|status`, a systemd unit or launchd agent for the
//! daemon (`service.rs`, with the file texts in `unit.rs`). Each runs in the
//! command's own process, prints what it did and exits; none needs a
//! running daemon. docs/OPERATIONS.md is the user's side of this module.

pub mod service;
mod unit;

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::store::{self, BackupReport};
use crate::ticker::log::utc_date;

/// Where the HTTP route puts its backups: nowhere else, whatever the request
/// says (it says nothing: the route takes no path).
pub fn backups_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("backups")
}

/// `conductor-YYYYMMDD-HHMMSS-mmm.db` (UTC): sorts by time, and two backups
/// a millisecond apart do not collide.
pub fn backup_file_name(now_ms: i64) -> String {
    let day = utc_date(now_ms).replace('-', "");
    let (h, m, s, ms) =
        ((now_ms / 3_600_000) % 24, (now_ms / 60_000) % 60, (now_ms / 1000) % 60, now_ms % 1000);
    format!("conductor-{day}-{h:02}{m:02}{s:02}-{ms:03}.db")
}

/// Creates `dir` (and its parents) readable by its owner only: backups hold
/// every message.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// `baa-conductor backup PATH`: PATH is a new file, or an existing
/// directory to create a dated file in. Returns the line to print.
pub fn backup(config: &Config, path: &Path) -> Result<String, String> {
    let dest =
        if path.is_dir() { path.join(backup_file_name(crate::util::now_ms())) } else { path.to_path_buf() };
    let source = store::db_path(&config.state_dir);
    let BackupReport { path, bytes, schema_version } =
        store::backup(&source, &dest).map_err(|e| format!("backup failed: {e}"))?;
    Ok(format!("backup: {} ({bytes} bytes, database schema {schema_version}, integrity ok)", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_sort_by_time() {
        // 2026-12-06 23:42:21.007 UTC
        assert_eq!(backup_file_name(1_796_600_541_007), "conductor-20261206-234221-007.db");
        assert!(backup_file_name(1_796_600_541_007) < backup_file_name(1_796_600_541_008));
        assert_eq!(backup_file_name(0), "conductor-19700101-000000-000.db");
    }
}
