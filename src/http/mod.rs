//! The HTTP API thread role: our own small HTTP/1.1 transport ([`server`]),
//! and on top of it the transport-independent parts — the route table
//! ([`routes`]), the [`handlers`], the envelope ([`api`]). [`start`] wires
//! them to a bound listener.

pub mod api;
pub mod app;
mod body;
pub mod cache;
pub mod ctx;
pub mod handlers;
pub mod leased;
pub mod query;
#[cfg(test)]
mod query_props;
pub mod routes;
pub mod row_texts;
pub mod schema;
pub mod server;
pub mod views;

use std::net::TcpListener;
use std::sync::Arc;

pub use ctx::{Ctx, SharedCtx};

/// Starts serving the API on `listener`. The returned server stops on
/// `shutdown` (or drop), finishing in-flight requests first.
pub fn start(listener: TcpListener, ctx: SharedCtx) -> std::io::Result<server::Server> {
    let config = server::ServerConfig {
        max_body_bytes: ctx.config.limits.max_body_bytes,
        ..server::ServerConfig::default()
    };
    server::Server::start(listener, config, Arc::new(app::App::new(ctx)))
}
