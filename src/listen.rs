//! The daemon's listening sockets (HTTP and the plugin endpoint), bound
//! with a backlog wide enough for a burst of clients.
//!
//! Why: the kernel completes a client's handshake and queues the connection
//! until the daemon accepts it; when that queue is full, it drops the
//! client's SYN and the client retries only after a second (then three,
//! then seven). `TcpListener::bind` asks for a queue of 128, so a script
//! that opens a few hundred connections at once — or any burst while the
//! accept loop waits for a CPU on a busy machine — left clients waiting
//! seconds for a daemon that was idle a moment later. The daemon asks for
//! [`BACKLOG`]; the kernel caps it at `net.core.somaxconn` (4096 by default
//! since Linux 5.4). A queued connection costs the kernel a socket, not the
//! daemon a thread: the connection caps (HTTP's, the plugins' lobby) apply
//! once it is accepted, as before.

use std::net::TcpListener;

/// Connections the kernel may hold completed for each listener before the
/// daemon accepts them.
pub const BACKLOG: i32 = 1024;

/// Binds `addr` and widens its accept queue to [`BACKLOG`]. A listener
/// whose queue cannot be widened keeps std's 128 (a warning says so).
pub fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    if let Err(e) = widen_backlog(&listener) {
        log::warn!("cannot widen the accept queue of {addr} to {BACKLOG}: {e}; it stays at 128");
    }
    Ok(listener)
}

/// `listen(2)` again on a socket that is already listening changes only its
/// backlog (POSIX leaves it open; Linux and the BSDs do so).
#[cfg(unix)]
fn widen_backlog(listener: &TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    extern "C" {
        fn listen(fd: std::os::raw::c_int, backlog: std::os::raw::c_int) -> std::os::raw::c_int;
    }
    // SAFETY: the descriptor is the bound, listening socket `listener`
    // owns for the length of this call; `listen` reads nothing else.
    match unsafe { listen(listener.as_raw_fd(), BACKLOG) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(not(unix))]
fn widen_backlog(_: &TcpListener) -> std::io::Result<()> {
    Ok(())
}
