//! The lobby: plugin connections that have not said `hello` yet. They hold
//! no plugin slot (that is taken at `hello`, hub.rs), but each holds a
//! thread (two once upgraded) until its deadline, so they have a cap of
//! their own — and when it is full, the *oldest* waiting connection is
//! closed to make room for the new one. A real plugin says hello within
//! milliseconds of connecting, so it is never the oldest for long; silent
//! or dripping sockets, however many, only ever push each other out and
//! can neither lock a plugin out nor grow the daemon's threads.

use std::collections::BTreeMap;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;

use parking_lot::Mutex;

/// Connections waiting for their hello, at most `cap`.
pub struct Lobby {
    cap: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    next: u64,
    /// By arrival: the first entry is the oldest. A clone of each socket,
    /// so the lobby can close it from outside.
    waiting: BTreeMap<u64, TcpStream>,
}

/// A connection's place in the lobby; dropping it (at hello, or when the
/// connection ends) gives the place up.
pub struct Ticket {
    lobby: Arc<Lobby>,
    id: u64,
}

impl Lobby {
    pub fn new(cap: usize) -> Arc<Lobby> {
        Arc::new(Lobby { cap: cap.max(1), inner: Mutex::new(Inner { next: 0, waiting: BTreeMap::new() }) })
    }

    /// Lets a new connection in. When the lobby is full the oldest waiting
    /// connection is closed (its thread sees end-of-stream and ends) and
    /// its peer address returned, for the log.
    pub fn enter(self: &Arc<Self>, tcp: &TcpStream) -> std::io::Result<(Ticket, Option<SocketAddr>)> {
        // Cloned before the lock: `shutdown` below is the only system call
        // made under it, and it does not block.
        let clone = tcp.try_clone()?;
        let mut inner = self.inner.lock();
        let mut evicted = None;
        if inner.waiting.len() >= self.cap {
            if let Some((_, oldest)) = inner.waiting.pop_first() {
                let _ = oldest.shutdown(Shutdown::Both);
                evicted = Some(oldest.peer_addr().ok()).flatten();
            }
        }
        let id = inner.next;
        inner.next += 1;
        inner.waiting.insert(id, clone);
        Ok((Ticket { lobby: self.clone(), id }, evicted))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().waiting.len()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let left = self.lobby.inner.lock().waiting.remove(&self.id);
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn the_oldest_waiting_connection_makes_room() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lobby = Lobby::new(2);
        let mut clients = Vec::new();
        let mut tickets = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).unwrap());
            let (server_side, _) = listener.accept().unwrap();
            let (ticket, evicted) = lobby.enter(&server_side).unwrap();
            tickets.push((ticket, server_side, evicted));
        }
        assert_eq!(lobby.len(), 2);
        assert!(tickets[2].2.is_some(), "the third closed someone");
        // The first one's server side was shut down: its reads end.
        let mut buf = [0u8; 1];
        assert_eq!((&tickets[0].1).read(&mut buf).unwrap(), 0);
        // A ticket dropped (hello said) leaves room without closing anyone.
        let (ticket, _, _) = tickets.pop().unwrap();
        drop(ticket);
        assert_eq!(lobby.len(), 1);
    }
}
