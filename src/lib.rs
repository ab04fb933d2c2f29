//! baa-conductor: a local daemon between an AI-chat browser plugin and the
//! person's scripts. `main.rs` parses the command line and calls [`daemon`];
//! everything else is one module per thread role (see docs/ARCHITECTURE.md).

pub mod accept_errors;
pub mod alloc;
pub mod auth;
pub mod baa;
pub mod bridge;
pub mod browser_json;
pub mod config;
pub mod daemon;
pub mod fdlimit;
pub mod http;
pub mod listen;
pub mod logging;
pub mod ops;
pub mod percent;
pub mod policy;
pub mod state_dir;
pub mod store;
pub mod ticker;
pub mod util;

#[cfg(test)]
mod test_alloc;
