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
    /// Each item with its size in bytes, as the sender counted it.
    items: VecDeque<(T, usize)>,
    /// The sum of the sizes of `items`.
    bytes: usize,
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
        state: Mutex::new(State { items: VecDeque::new(), bytes: 0, closed: false }),
        ready: Condvar::new(),
    });
    (Owner(mailbox.clone()), mailbox)
}

impl<T> Mailbox<T> {
    /// Queues an item whatever is queued already (answers that end a
    /// request, failures: one each at most).
    pub fn send(&self, item: T) {
        self.state.lock().items.push_back((item, 0));
        self.ready.notify_one();
    }

    /// Queues an item of `size` bytes unless that would take the queued
    /// bytes past `limit`; an empty mailbox takes any one item, however
    /// large. Returns the item back when it is full.
    pub fn send_within(&self, item: T, size: usize, limit: usize) -> Result<(), T> {
        let mut state = self.state.lock();
        if !state.items.is_empty() && state.bytes.saturating_add(size) > limit {
            return Err(item);
        }
        state.bytes += size;
        state.items.push_back((item, size));
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// The next item, waiting until `deadline` at most.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvError> {
        let mut state = self.state.lock();
        loop {
            if let Some(item) = Self::take(&mut state) {
                return Ok(item);
            }
            if state.closed {
                return Err(RecvError::Closed);
            }
            if self.ready.wait_until(&mut state, deadline).timed_out() {
                return Self::take(&mut state).ok_or(RecvError::Timeout);
            }
        }
    }

    fn take(state: &mut State<T>) -> Option<T> {
        let (item, size) = state.items.pop_front()?;
        state.bytes -= size;
        Some(item)
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
    fn a_bounded_send_refuses_past_the_limit_but_never_into_an_empty_box() {
        let (owner, mailbox) = new::<u32>();
        assert_eq!(owner.0.send_within(1, 100, 10), Ok(()), "an empty box takes one item of any size");
        assert_eq!(owner.0.send_within(2, 1, 10), Err(2));
        let soon = Instant::now() + Duration::from_secs(1);
        assert_eq!(mailbox.recv_deadline(soon), Ok(1));
        assert_eq!(owner.0.send_within(3, 6, 10), Ok(()));
        assert_eq!(owner.0.send_within(4, 4, 10), Ok(()));
        assert_eq!(owner.0.send_within(5, 1, 10), Err(5));
        owner.0.send(6);
        for want in [3, 4, 6] {
            assert_eq!(mailbox.recv_deadline(soon), Ok(want));
        }
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
