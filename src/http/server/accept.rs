//! The accept loop: hands each connection to its own thread, refuses
//! connections past the cap with a prompt response, and survives every
//! accept error (tiny_http's loop ended for good on the first EMFILE).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use super::{conn, write, Refusal, Shared};
use crate::accept_errors::{AcceptFailures, LogLimiter};

/// Stack size of connection threads. It is virtual memory, touched only as
/// used, so thousands of connections stay cheap; 512 KiB leaves room for
/// SQLite and serde_json (whose recursion is capped at 128 levels) inside
/// the handlers.
const CONN_STACK_BYTES: usize = 512 * 1024;

/// Most bytes discarded from a refused connection before closing it; reading
/// what already arrived avoids a reset that could destroy the 503.
const REFUSE_DRAIN_BYTES: usize = 64 * 1024;

/// Runs until the server stops. Never returns early on an error.
pub(super) fn run(listener: TcpListener, shared: Arc<Shared>) {
    let mut refusals = LogLimiter::default();
    let mut failures = AcceptFailures::new("http");
    loop {
        let accepted = listener.accept();
        if shared.is_stopping() {
            break;
        }
        match accepted {
            Ok((stream, peer)) => {
                failures.recovered();
                dispatch(&shared, stream, peer, &mut refusals);
            }
            Err(err) => failures.back_off(&err),
        }
    }
    log::debug!("http: accept loop stopped");
}

/// Registers the connection and spawns its thread, or refuses it.
fn dispatch(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr, limiter: &mut LogLimiter) {
    // Responses are written in one piece; Nagle would only add latency.
    if let Err(err) = stream.set_nodelay(true) {
        log::debug!("http: TCP_NODELAY failed for {peer}: {err}");
    }
    let id = match shared.register(&stream) {
        Ok(registered) => {
            if let Some(old) = registered.evicted {
                limiter.warn(format_args!(
                    "http: connection cap of {} reached; closed the oldest connection without a request \
                     in progress ({old}) for {peer}",
                    shared.config.max_connections
                ));
            }
            registered.id
        }
        Err(Refusal::Stopping) => return,
        Err(Refusal::Full) => {
            limiter.warn(format_args!(
                "http: connection cap of {} reached, every connection busy with a request; refusing {peer}",
                shared.config.max_connections
            ));
            refuse(shared, stream);
            return;
        }
        Err(Refusal::Clone(err)) => {
            limiter.warn(format_args!("http: cannot track connection from {peer}: {err}"));
            refuse(shared, stream);
            return;
        }
    };
    let conn_shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("http-conn".to_string())
        .stack_size(CONN_STACK_BYTES)
        .spawn(move || conn::run(conn_shared, id, stream, peer));
    if let Err(err) = spawned {
        limiter.warn(format_args!("http: cannot spawn a thread for {peer}: {err}"));
        // The closure (and the stream in it) is gone; answer on the clone.
        if let Some(clone) = shared.unregister(id) {
            refuse(shared, clone);
        }
    }
}

/// Writes the overloaded response without ever blocking the accept loop,
/// then closes the connection.
fn refuse(shared: &Shared, mut stream: TcpStream) {
    let handler = Arc::clone(&shared.handler);
    let response = conn::guarded(|| handler.overloaded(), || write::fallback(503), "overloaded");
    let bytes = write::encode_refusal(response);
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    // A fresh socket's send buffer takes a small response whole; if it does
    // not, the client gets a truncated answer rather than a stalled server.
    let _ = stream.write(&bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < REFUSE_DRAIN_BYTES {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
}
