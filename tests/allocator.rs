//! The daemon runs with glibc's per-thread cache off (src/alloc.rs): `serve`
//! re-executes itself once with `GLIBC_TUNABLES` set — same pid, same name,
//! still answering — and keeps a person's own tunables.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

mod support;

use support::{Daemon, DaemonOpts};

/// `GLIBC_TUNABLES` in the environment the running daemon was started with.
/// The dynamic loader ends each tunable's value with a NUL in place as it
/// reads them, so in `/proc/PID/environ` the tunables after the first look
/// like variables of their own: they are joined back with `:`.
fn tunables_of(d: &Daemon) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{}/environ", d.pid())).unwrap();
    let vars: Vec<String> =
        environ.split(|b| *b == 0).map(|v| String::from_utf8_lossy(v).into_owned()).collect();
    let at = vars.iter().position(|v| v.starts_with("GLIBC_TUNABLES="))?;
    let first = vars[at].trim_start_matches("GLIBC_TUNABLES=").to_string();
    let rest = vars[at + 1..].iter().take_while(|v| v.starts_with("glibc."));
    Some(std::iter::once(&first).chain(rest).cloned().collect::<Vec<_>>().join(":"))
}

fn start(tunables: Option<&str>) -> Daemon {
    let mut opts = DaemonOpts::new();
    if let Some(value) = tunables {
        opts = opts.env("GLIBC_TUNABLES", value);
    }
    let d = Daemon::start(opts);
    assert_eq!(d.get("/healthz").status, 200);
    d
}

#[test]
fn serve_runs_with_the_tcache_off_and_keeps_a_persons_own_tunables() {
    // The pid the harness spawned is the one serving, with the tcache off.
    let d = start(None);
    assert_eq!(tunables_of(&d).as_deref(), Some("glibc.malloc.tcache_count=0"));
    assert!(!d.stderr_text().contains("cannot restart"), "{}", d.stderr_text());
    // Under its own name (`pgrep baa-conductor`), not `exe`.
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", d.pid())).unwrap();
    assert_eq!(comm.trim(), "baa-conductor");
    // Another tunable of the person's is kept beside it.
    let d = start(Some("glibc.malloc.perturb=0"));
    assert_eq!(tunables_of(&d).as_deref(), Some("glibc.malloc.perturb=0:glibc.malloc.tcache_count=0"));
    // A tcache setting of the person's own is left alone.
    let d = start(Some("glibc.malloc.tcache_count=3"));
    assert_eq!(tunables_of(&d).as_deref(), Some("glibc.malloc.tcache_count=3"));
}
