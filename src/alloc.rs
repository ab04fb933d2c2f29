//! glibc's allocator, set for a long-running daemon of ~170 threads: a trim
//! threshold that keeps the store writer out of `madvise`, two arenas, and
//! no per-thread cache (tcache). Other C libraries are left alone.
//!
//! Why (docs/RELIABILITY.md, "Soak"): under the soak's 64 plugins and 32
//! HTTP clients the live heap is flat at ~23 MB, but with glibc's defaults
//! resident memory kept climbing (43 → 78 MB in 10 minutes, 84 MB at 20).
//! The memory was freed, and held where the daemon's many long-lived
//! threads had left it: in up to 16 arenas (8 per core), and in every
//! thread's tcache (up to 7 free chunks per size class, which also keeps
//! the arenas from coalescing the chunks around them). Measured: two arenas
//! alone, or no tcache alone, lowered the level but not the slope; both
//! together held RSS flat at ~35 MB; a periodic `malloc_trim` changed
//! nothing measurable, alone or on top.
//!
//! The arena cap is a `mallopt` at start. The tcache can only be switched
//! off before the process starts (the `GLIBC_TUNABLES` environment
//! variable, read by the dynamic loader), so `serve` re-executes itself
//! once with it set ([`exec_without_tcache`]): same pid, name, arguments
//! and open files. A person's own `glibc.malloc.tcache_count` is kept.
//! The setting is the daemon's alone: the commands it runs (instruction
//! blocks' `exec`) get the `GLIBC_TUNABLES` the person started it with
//! ([`restore_tunables`]), which the re-execution carries in
//! [`STARTED_WITH`].

/// The tunable that switches the tcache off.
const TCACHE_OFF: &str = "glibc.malloc.tcache_count=0";

/// Set by the re-execution to the `GLIBC_TUNABLES` the daemon was started
/// with (empty when it had none), for [`restore_tunables`].
pub const STARTED_WITH: &str = "BAA_CONDUCTOR_GLIBC_TUNABLES";

/// Arenas at most: one per core on the 2-core machines the daemon is
/// measured on; its threads mostly wait, so contention is rare.
const ARENA_MAX: i32 = 2;

/// Sets the trim threshold and the arena cap. Call once at start, before
/// the daemon's threads exist.
///
/// The trim threshold: SQLite's statement and savepoint journals allocate
/// and free tens of kilobytes per write; with the default 128 KiB threshold
/// each store transaction ended in `madvise` calls (16% of the writer
/// thread's time under ingest load, docs/BENCHMARKS.md). 8 MiB of free heap
/// may stay mapped instead.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: std::os::raw::c_int, value: std::os::raw::c_int) -> std::os::raw::c_int;
        }
        const M_TRIM_THRESHOLD: std::os::raw::c_int = -1;
        const M_ARENA_MAX: std::os::raw::c_int = -8;
        // SAFETY: mallopt only adjusts malloc tunables; it is thread-safe
        // and called once at start, before the daemon's threads exist.
        unsafe {
            mallopt(M_TRIM_THRESHOLD, 8 << 20);
            mallopt(M_ARENA_MAX, ARENA_MAX);
        }
    }
}

#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
/// `GLIBC_TUNABLES` with the tcache switched off, or `None` when it needs
/// no change: already off, or set to a value of the person's own, or not
/// text at all (left as it is).
fn tunables_without_tcache(current: Option<&std::ffi::OsStr>) -> Option<String> {
    let current = match current {
        None => "",
        Some(value) => value.to_str()?,
    };
    if current.split(':').any(|t| t.starts_with("glibc.malloc.tcache_count=")) {
        return None;
    }
    Some(if current.is_empty() { TCACHE_OFF.to_string() } else { format!("{current}:{TCACHE_OFF}") })
}

/// Re-executes this program, with the same arguments, with the tcache off,
/// unless it already is (or the variable holds a choice of its own).
/// Returns only when it did not re-execute: `Ok` when there was nothing to
/// do, the error when `exec` failed (the daemon then runs with the tcache,
/// which costs memory, not correctness). Call before anything else happens:
/// no thread, no open file but the standard ones, nothing printed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn exec_without_tcache() -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let Some(tunables) = tunables_without_tcache(std::env::var_os("GLIBC_TUNABLES").as_deref()) else {
        return Ok(());
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "baa-conductor".into());
    Err(std::process::Command::new(own_program())
        .arg0(arg0)
        .args(args)
        .env(STARTED_WITH, std::env::var_os("GLIBC_TUNABLES").unwrap_or_default())
        .env("GLIBC_TUNABLES", tunables)
        .exec())
}

/// Gives a child process the `GLIBC_TUNABLES` the daemon was started with
/// instead of the daemon's own (the tcache off), and not [`STARTED_WITH`].
/// A daemon that did not re-execute passes its environment on unchanged.
pub fn restore_tunables(cmd: &mut std::process::Command) {
    match child_tunables(std::env::var_os(STARTED_WITH)) {
        ChildTunables::Inherit => {}
        ChildTunables::Unset => {
            cmd.env_remove("GLIBC_TUNABLES").env_remove(STARTED_WITH);
        }
        ChildTunables::Set(value) => {
            cmd.env("GLIBC_TUNABLES", value).env_remove(STARTED_WITH);
        }
    }
}

/// What a child's `GLIBC_TUNABLES` is, from [`STARTED_WITH`].
#[derive(Debug, PartialEq)]
enum ChildTunables {
    /// The daemon did not re-execute: its environment is the person's.
    Inherit,
    Unset,
    Set(std::ffi::OsString),
}

fn child_tunables(started_with: Option<std::ffi::OsString>) -> ChildTunables {
    match started_with {
        None => ChildTunables::Inherit,
        Some(value) if value.is_empty() => ChildTunables::Unset,
        Some(value) => ChildTunables::Set(value),
    }
}

/// The path to execute: this program's file by name, so the process keeps
/// its name (`ps`, `pgrep baa-conductor`; executing `/proc/self/exe` would
/// rename it `exe`). Only when that file is gone or replaced since the
/// start (an upgrade in place) is it `/proc/self/exe`, which is always
/// this very program.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn own_program() -> std::path::PathBuf {
    match std::env::current_exe() {
        Ok(path) if !path.to_string_lossy().ends_with(" (deleted)") => path,
        _ => "/proc/self/exe".into(),
    }
}

/// Other C libraries have no tcache to switch off.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn exec_without_tcache() -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn the_tcache_is_switched_off_beside_a_persons_own_tunables() {
        assert_eq!(tunables_without_tcache(None).as_deref(), Some(TCACHE_OFF));
        assert_eq!(tunables_without_tcache(Some(OsStr::new(""))).as_deref(), Some(TCACHE_OFF));
        assert_eq!(
            tunables_without_tcache(Some(OsStr::new("glibc.malloc.check=3"))).as_deref(),
            Some("glibc.malloc.check=3:glibc.malloc.tcache_count=0")
        );
        // Already off, or the person's own count: no change, no re-exec.
        assert_eq!(tunables_without_tcache(Some(OsStr::new(TCACHE_OFF))), None);
        assert_eq!(tunables_without_tcache(Some(OsStr::new("glibc.malloc.tcache_count=3"))), None);
        assert_eq!(tunables_without_tcache(Some(OsStr::new("a=1:glibc.malloc.tcache_count=7"))), None);
    }

    #[test]
    fn a_child_gets_the_tunables_the_daemon_was_started_with() {
        assert_eq!(child_tunables(None), ChildTunables::Inherit);
        assert_eq!(child_tunables(Some("".into())), ChildTunables::Unset);
        assert_eq!(
            child_tunables(Some("glibc.malloc.perturb=0".into())),
            ChildTunables::Set("glibc.malloc.perturb=0".into())
        );
    }
}
