//! State pushes: a `state_snapshot` (system automation state and every
//! conversation under automation) goes to a plugin after its `hello_ack`,
//! and to every plugin shortly after any automation change. Changes only
//! ring a `bounded(1)` bell on the hub, so a burst of changes collapses into
//! one push, built from the store once and sent after the hub lock is gone.

use std::thread::JoinHandle;

use crossbeam_channel::{select, Receiver};
use serde_json::{json, Value};

use super::hub::Hub;
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
                "remote_conversation_id": c.remote_conversation_id, "automation_status": c.automation_status,
                "pause_reason": c.pause_reason, "execution_state": c.execution_state,
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

pub fn spawn(hub: Arc<Hub>, store: Store, bell: Receiver<()>, stop: Receiver<()>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("bridge-push".into()).spawn(move || loop {
        select! {
            recv(bell) -> rang => {
                if rang.is_err() {
                    return;
                }
                push_once(&hub, &store);
            }
            recv(stop) -> _ => return,
        }
    })
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
