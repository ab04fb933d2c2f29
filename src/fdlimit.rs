//! The process's open-file limit (`RLIMIT_NOFILE`), raised at start to what
//! the connection caps need.
//!
//! Why: every HTTP connection holds two descriptors (its socket and the
//! registry's clone that lets the server close it from outside), every
//! plugin connection two or three, and the caps allow 4,096 HTTP
//! connections and a lobby of plugin connections beside the plugins
//! themselves. Many systems start a process with a soft limit of 1,024 (a
//! login shell, systemd's default) and a much higher hard limit. With 1,024,
//! ~500 silent sockets would exhaust the descriptors: `accept` fails, new
//! clients wait in the kernel's queue until the silent ones reach their
//! header timeout, and the connection caps never come into play. The soft
//! limit may be raised up to the hard one without privileges, so the daemon
//! raises it to what its caps need (never lowers it, never beyond the hard
//! limit — a child process started by an instruction block inherits it, and
//! some programs misbehave with huge limits) and says so when the hard limit
//! is too low.

use std::io;

/// Descriptors beside the connections: the store's files and read pool,
/// logs, listeners, and an instruction block's pipes.
const FIXED_OPEN_FILES: u64 = 1024;

/// What the connection caps can hold open at once: two per HTTP connection
/// up to the transport's cap, three per plugin connection (its socket, the
/// writer's clone and, before hello, the lobby's) for the plugins and the
/// lobby, and `FIXED_OPEN_FILES`.
pub fn needed_for(config: &crate::config::Config) -> u64 {
    let http = crate::http::server::ServerConfig::default().max_connections as u64 * 2;
    let plugins = (config.limits.max_ws_clients + crate::bridge::lobby_cap(config)) as u64 * 3;
    http + plugins + FIXED_OPEN_FILES
}

/// Raises the soft limit to what `config`'s caps need (at start), logging
/// what it did, and warns when the hard limit does not allow it.
pub fn raise_for(config: &crate::config::Config) {
    let need = needed_for(config);
    match raise_open_files(need) {
        Ok((before, after)) if after.soft < need => log::warn!(
            "the open-file limit is {} (hard limit {}), below the {need} the connection caps can hold: \
             under a flood of connections new clients may wait for descriptors; raise the hard limit \
             (`ulimit -Hn`, systemd `LimitNOFILE=`)",
            after.soft,
            before.hard
        ),
        Ok((before, after)) if after.soft > before.soft => {
            log::info!(
                "open-file limit raised from {} to {} for the connection caps",
                before.soft,
                after.soft
            )
        }
        Ok(_) => {}
        Err(err) => log::warn!("cannot read or raise the open-file limit: {err}"),
    }
}

/// The soft (current) and hard (maximum) open-file limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub soft: u64,
    pub hard: u64,
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod sys {
    use super::OpenFiles;

    /// `struct rlimit`: two `rlim_t`, 64 bits each on 64-bit Linux.
    #[repr(C)]
    struct Rlimit {
        cur: u64,
        max: u64,
    }

    extern "C" {
        fn getrlimit(resource: i32, rlim: *mut Rlimit) -> i32;
        fn setrlimit(resource: i32, rlim: *const Rlimit) -> i32;
    }

    const RLIMIT_NOFILE: i32 = 7;

    pub fn get() -> std::io::Result<OpenFiles> {
        let mut limit = Rlimit { cur: 0, max: 0 };
        // SAFETY: `limit` is a valid, writable `struct rlimit`.
        if unsafe { getrlimit(RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OpenFiles { soft: limit.cur, hard: limit.max })
    }

    pub fn set_soft(soft: u64, hard: u64) -> std::io::Result<()> {
        let limit = Rlimit { cur: soft, max: hard };
        // SAFETY: as above; `limit` is only read.
        if unsafe { setrlimit(RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The process's open-file limits.
pub fn open_files() -> io::Result<OpenFiles> {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    return sys::get();
    #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
    Err(io::Error::new(io::ErrorKind::Unsupported, "open-file limits are read on 64-bit Linux only"))
}

/// Sets the soft open-file limit (lower or higher, within the hard one).
pub fn set_soft_open_files(soft: u64) -> io::Result<()> {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    return sys::set_soft(soft, sys::get()?.hard);
    #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
    Err(io::Error::new(io::ErrorKind::Unsupported, format!("cannot set the open-file limit to {soft} here")))
}

/// Raises the soft limit to `want` when it is lower, as far as the hard limit
/// allows; returns the limits before and after.
pub fn raise_open_files(want: u64) -> io::Result<(OpenFiles, OpenFiles)> {
    let before = open_files()?;
    let target = want.min(before.hard);
    if before.soft >= target {
        return Ok((before, before));
    }
    set_soft_open_files(target)?;
    Ok((before, open_files()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    fn the_limit_read_agrees_with_proc_and_is_never_lowered() {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        let now = open_files().unwrap();
        assert_eq!(fields[3].parse::<u64>().unwrap_or(u64::MAX), now.soft, "{line}");
        assert_eq!(fields[4].parse::<u64>().unwrap_or(u64::MAX), now.hard, "{line}");
        // Asking for less than the soft limit changes nothing.
        let (before, after) = raise_open_files(1).unwrap();
        assert_eq!((before, after), (now, now));
    }
}
