//! Instruction blocks (BAA.md): an assistant in an `auto` conversation
//! writes fenced `baa` blocks, the daemon runs each once on the host and
//! answers in the chat. `parse` reads the blocks (pure, run at ingest on the
//! caller's thread), `hash` gives each block its id, `reason` names every
//! way a block can end other than success.

pub mod hash;
pub mod parse;
mod reason;

pub use reason::Reason;
