//! The instruction worker: the one named thread (`baa-worker`) that runs
//! instruction blocks, so no tool ever runs on an HTTP or bridge thread.
//!
//! It takes the messages with pending blocks in the order their blocks were
//! recorded, one at a time: takes the conversation (`instruction_running`;
//! a conversation the dispatcher holds is tried again shortly, and its
//! later messages wait behind it), then per block checks it, marks it
//! `running`, runs it and records how it ended — each step a store commit
//! before the next, so a crash leaves every block in a known state. The
//! commit that ends a message's last block releases the conversation and
//! creates the `[baa]` reply job; the worker then kicks the dispatcher so
//! the reply goes out at once, not at the next tick.
//!
//! Its inbox carries wake-ups (rung by the store writer after an ingest
//! recorded blocks; coalesced) and the stop. A long `exec` watches the
//! inbox too: the stop kills its process group, and the block is `failed`
//! with `interrupted`, never run again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};

use super::tools::{refused, Tools};
use super::Reason;
use crate::store::{Begin, Bell, Execution, MessageDone, ReplySettings, Start, Store};
use crate::ticker::Kicker;
use crate::util::JoinOnDrop;

/// How soon a conversation held by the dispatcher is tried again.
const BUSY_RETRY: Duration = Duration::from_millis(200);
/// Blocks looked at per scan of the queue.
const SCAN: usize = 256;

pub enum WorkerMsg {
    /// Blocks were recorded; scan the queue.
    Wake,
    Stop,
}

/// The worker's inbox, made before the worker starts so the store can ring
/// it from the first ingest on; `spawn` starts the thread on it.
pub struct Inbox {
    tx: Sender<WorkerMsg>,
    rx: Receiver<WorkerMsg>,
    /// A `Wake` is queued and not yet taken (see `bell`).
    wake_sent: Arc<AtomicBool>,
}

/// The running worker. Dropping it stops it: a block running is
/// interrupted, the rest stay queued for the next start.
pub struct Handle {
    tx: Sender<WorkerMsg>,
    /// Joined on drop, after `Drop::drop` sent the stop.
    _join: JoinOnDrop<()>,
}

impl Handle {
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.tx.send(WorkerMsg::Stop);
    }
}

/// What the worker works with.
pub struct Deps {
    pub store: Store,
    pub tools: Tools,
    pub reply: ReplySettings,
    pub kicker: Kicker,
}

pub fn inbox() -> Inbox {
    let (tx, rx) = unbounded();
    Inbox { tx, rx, wake_sent: Arc::new(AtomicBool::new(false)) }
}

impl Inbox {
    /// The store writer's call after an ingest recorded blocks. Never
    /// blocks; one `Wake` stands for any number of rings until taken.
    pub fn bell(&self) -> Bell {
        let (tx, sent) = (self.tx.clone(), self.wake_sent.clone());
        Arc::new(move || {
            if !sent.swap(true, Ordering::SeqCst) {
                let _ = tx.send(WorkerMsg::Wake);
            }
        })
    }

    pub fn spawn(self, deps: Deps) -> std::io::Result<Handle> {
        let Inbox { tx, rx, wake_sent } = self;
        let worker = Worker { deps, wake_sent };
        let join = JoinOnDrop::spawn("baa-worker", move || worker.run(rx))?;
        Ok(Handle { tx, _join: join })
    }
}

struct Worker {
    deps: Deps,
    wake_sent: Arc<AtomicBool>,
}

/// How a scan of the queue ended.
enum Pass {
    /// Nothing is pending.
    Idle,
    /// Blocks are pending whose conversations are held: try again soon.
    Waiting,
    Stop,
}

impl Worker {
    fn run(mut self, rx: Receiver<WorkerMsg>) {
        // Blocks left pending by the previous run (queued live then) go
        // first: nothing rings for them.
        loop {
            let retry = match self.pass(&rx) {
                Pass::Stop => break,
                Pass::Idle => None,
                Pass::Waiting => Some(Instant::now() + BUSY_RETRY),
            };
            let msg = match retry {
                Some(at) => match rx.recv_deadline(at) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    other => other.map_err(|_| ()),
                },
                None => rx.recv().map_err(|_| ()),
            };
            match msg {
                Ok(WorkerMsg::Wake) => {}
                Ok(WorkerMsg::Stop) | Err(()) => break,
            }
        }
        log::info!("baa: worker stopped");
    }

    /// Runs every message whose conversation can be taken, until none is left.
    fn pass(&mut self, rx: &Receiver<WorkerMsg>) -> Pass {
        loop {
            // Cleared before the scan: a ring after this point queues a
            // new `Wake`, and blocks recorded before it are seen by it.
            self.wake_sent.store(false, Ordering::SeqCst);
            let messages = match self.deps.store.pending_messages(SCAN) {
                Ok(m) => m,
                Err(e) => {
                    log::error!("baa: cannot read the queue: {e}");
                    return Pass::Waiting;
                }
            };
            if messages.is_empty() {
                return Pass::Idle;
            }
            let mut progressed = false;
            // Conversations that cannot be taken now: their later messages
            // wait too, so a conversation's messages run in order.
            let mut held: Vec<String> = Vec::new();
            for (message_id, local_id) in messages {
                if held.contains(&local_id) {
                    continue;
                }
                if matches!(rx.try_recv(), Ok(WorkerMsg::Stop)) {
                    return Pass::Stop;
                }
                match self.deps.store.begin_message(&message_id, &local_id, &self.deps.reply) {
                    Ok(Begin::Locked(pending)) => {
                        progressed = true;
                        if self.run_message(pending, rx).is_err() {
                            return Pass::Stop;
                        }
                    }
                    Ok(Begin::Stopped(done)) => {
                        progressed = true;
                        self.done(done);
                    }
                    Ok(Begin::Busy) => held.push(local_id),
                    Err(e) => {
                        log::error!("baa: cannot start message {message_id}: {e}");
                        held.push(local_id);
                    }
                }
            }
            if !progressed {
                return Pass::Waiting;
            }
        }
    }

    /// The message's pending blocks, in order. `Err` when the daemon stops.
    fn run_message(&mut self, pending: Vec<Execution>, rx: &Receiver<WorkerMsg>) -> Result<(), ()> {
        for exec in pending {
            if matches!(rx.try_recv(), Ok(WorkerMsg::Stop)) {
                // The rest stay pending for the next start.
                return Err(());
            }
            let tool = exec.tool.as_deref().unwrap_or("?");
            let result = match self.deps.tools.check(&exec) {
                Err(refusal) => refused(refusal),
                Ok(plan) => {
                    match self.deps.store.start_block(&exec, &self.deps.reply) {
                        Ok(Start::Go) => {}
                        Ok(Start::Stopped(done)) => {
                            self.done(done);
                            return Ok(());
                        }
                        Err(e) => {
                            // Left pending, the conversation still taken by
                            // us: the next scan takes it up again.
                            log::error!("baa: cannot start {}: {e}", exec.instruction_id);
                            return Ok(());
                        }
                    }
                    log::info!(
                        "baa: running {} ({tool}) of message {}",
                        exec.instruction_id,
                        exec.message_id
                    );
                    self.deps.tools.run(plan, &exec, rx, |m| matches!(m, WorkerMsg::Stop))
                }
            };
            let interrupted = result.error.as_deref() == Some(&*Reason::Interrupted.code());
            log::info!(
                "baa: {} ({tool}) {}{}",
                exec.instruction_id,
                result.status.as_str(),
                result.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            );
            match self.deps.store.finish_block(&exec, result, &self.deps.reply) {
                Ok(Some(done)) => self.done(done),
                Ok(None) => {}
                // It stays `running`: the next start fails it `interrupted`.
                Err(e) => log::error!("baa: cannot record {}: {e}", exec.instruction_id),
            }
            if interrupted {
                return Err(());
            }
        }
        Ok(())
    }

    fn done(&self, done: MessageDone) {
        match &done.reply_job_id {
            Some(job) => {
                log::info!("baa: message {} done; reply job {job}", done.message_id);
                self.deps.kicker.kick("renewal.dispatcher");
            }
            None => log::info!("baa: message {} stopped by the automation switch; no reply", done.message_id),
        }
    }
}
