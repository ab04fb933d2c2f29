//! Where a plugin's answers to one request wait for the thread that sent it.
//!
//! Why not a channel: crossbeam's blocking receive spins and then calls
//! `sched_yield` several times before it parks. Deliveries go one at a time
//! (one policy lease per target), so the wait for each answer is on the
//! renewal path, and on a busy two-core machine a thread that yielded
//! waits behind every runnable thread: the hand-over from the connection's
//! reader to the dispatcher took ~100–140 µs per delivery, more than the
//! plugin's own round trip (docs/BENCHMARKS_RUNTIME.md). A mutex and a
//! condition variable park the waiter at once and wake it directly.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Why `recv_deadline` returned without an item.
#[derive(Debug, PartialEq, Eq)]
pub enum RecvError {
    Timeout,
    /// The sending side is gone and everything it sent was taken.
    Closed,
}

pub struct Mailbox<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

/// The sending side that closes the mailbox when dropped (the hub's
/// pending-request entry holds it). Extra handles for sending are plain
/// `Arc<Mailbox>` clones and do not close it.
pub struct Owner<T>(pub Arc<Mailbox<T>>);

impl<T> Drop for Owner<T> {
    fn drop(&mut self) {
        self.0.state.lock().closed = true;
        self.0.ready.notify_all();
    }
}

pub fn new<T>() -> (Owner<T>, Arc<Mailbox<T>>) {
    let mailbox = Arc::new(Mailbox {
        state: Mutex::new(State { items: VecDeque::new(), closed: false }),
        ready: Condvar::new(),
    });
    (Owner(mailbox.clone()), mailbox)
}

impl<T> Mailbox<T> {
    pub fn send(&self, item: T) {
        self.state.lock().items.push_back(item);
        self.ready.notify_one();
    }

    /// The next item, waiting until `deadline` at most.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvError> {
        let mut state = self.state.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                return Ok(item);
            }
            if state.closed {
                return Err(RecvError::Closed);
            }
            if self.ready.wait_until(&mut state, deadline).timed_out() {
                return state.items.pop_front().ok_or(RecvError::Timeout);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn delivers_in_order_then_reports_closed() {
        let (owner, mailbox) = new::<u32>();
        owner.0.send(1);
        owner.0.send(2);
        drop(owner);
        let soon = Instant::now() + Duration::from_secs(1);
        assert_eq!(mailbox.recv_deadline(soon), Ok(1));
        assert_eq!(mailbox.recv_deadline(soon), Ok(2));
        assert_eq!(mailbox.recv_deadline(soon), Err(RecvError::Closed));
    }

    #[test]
    fn times_out_and_wakes_a_waiter() {
        let (owner, mailbox) = new::<u32>();
        assert_eq!(
            mailbox.recv_deadline(Instant::now() + Duration::from_millis(20)),
            Err(RecvError::Timeout)
        );
        let sender = owner.0.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            sender.send(7);
        });
        assert_eq!(mailbox.recv_deadline(Instant::now() + Duration::from_secs(5)), Ok(7));
        t.join().unwrap();
        drop(owner);
    }
}
