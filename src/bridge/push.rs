//! State pushes: a `state_snapshot` (system automation state and every
//! conversation under automation) goes to a plugin after its `hello_ack`,
//! and to every plugin shortly after any automation change. Changes only
//! ring a `bounded(1)` bell on the hub, so a burst of changes collapses into
//! one push, built from the store once and sent after the hub lock is gone.

use crate::util::JoinOnDrop;

use crossbeam_channel::{Receiver, Sender};
use serde_json::{json, Value};

use super::hub::{Bell, Hub};
use super::writer::Out;
use crate::store::{Store, StoreError};
use std::sync::Arc;

/// The current snapshot frame, read afresh from the store.
pub fn snapshot(store: &Store) -> Result<String, StoreError> {
    let system = store.system_state()?;
    let conversations: Vec<Value> = store
        .automated_conversations()?
        .into_iter()
        .map(|c| {
            json!({
                "local_conversation_id": c.local_conversation_id, "platform": c.platform,
                "remote_conversation_id": c.remote_conversation_id, "automation_status": c.automation_status.as_str(),
                "pause_reason": c.pause_reason, "execution_state": c.execution_state.as_str(),
            })
        })
        .collect();
    Ok(json!({
        "type": "state_snapshot",
        "system": { "automation_state": system.automation_state.as_str() },
        "automation_conversations": conversations,
    })
    .to_string())
}

/// The pusher's inbox.
pub enum PushMsg {
    /// Something under automation changed: push a fresh snapshot.
    Changed,
    /// The bridge is stopping.
    Stop,
}

/// The `bridge-push` thread: its inbox (the hub holds another sender for
/// `Changed`) and its join handle.
pub struct Handle {
    tx: Sender<PushMsg>,
    /// Joined on drop, after the fields above.
    _join: JoinOnDrop<()>,
}

impl Handle {
    /// Stops the pusher after any push it is making, and joins it.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Blocks only while a `Changed` waits in the one slot.
        let _ = self.tx.send(PushMsg::Stop);
    }
}

struct Pusher {
    hub: Arc<Hub>,
    store: Store,
}

impl Pusher {
    fn run(self, rx: Receiver<PushMsg>) {
        for msg in rx {
            match msg {
                PushMsg::Changed => push_once(&self.hub, &self.store),
                PushMsg::Stop => return,
            }
        }
    }
}

/// The pusher's inbox, made before the hub (which rings it) and before
/// the thread (which reads it). `bounded(1)`, so a burst of changes
/// coalesces into one push.
pub struct Inbox {
    tx: Sender<PushMsg>,
    rx: Receiver<PushMsg>,
}

impl Inbox {
    pub fn new() -> Inbox {
        let (tx, rx) = crossbeam_channel::bounded(1);
        Inbox { tx, rx }
    }

    /// For the hub: asks for a push, without waiting (one already queued
    /// covers this one).
    pub fn bell(&self) -> Bell {
        let tx = self.tx.clone();
        Box::new(move || {
            let _ = tx.try_send(PushMsg::Changed);
        })
    }
}

/// Starts the pusher on its inbox.
pub fn spawn(hub: Arc<Hub>, store: Store, inbox: Inbox) -> std::io::Result<Handle> {
    let Inbox { tx, rx } = inbox;
    let pusher = Pusher { hub, store };
    let join = JoinOnDrop::spawn("bridge-push", move || pusher.run(rx))?;
    Ok(Handle { tx, _join: join })
}

fn push_once(hub: &Hub, store: &Store) {
    let outboxes = hub.outboxes();
    if outboxes.is_empty() {
        return;
    }
    match snapshot(store) {
        Ok(frame) => {
            for outbox in outboxes {
                let _ = outbox.try_send(Out::Push(frame.clone()));
            }
        }
        Err(e) => log::error!("bridge: cannot build state snapshot: {e}"),
    }
}
