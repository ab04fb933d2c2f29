//! Route handlers, one file per route group. Each is a plain
//! `handle_<route>(ctx, req) -> Result<Reply, ApiError>`; the route table in
//! `routes.rs` names them and `app.rs` does everything common.

pub mod artifact;
pub mod browser;
pub mod executions;
pub mod messages;
pub mod meta;
pub mod openapi;
pub mod probe;
pub mod relay;
pub mod renewal;
pub mod status;
pub mod system;
pub mod timed;
