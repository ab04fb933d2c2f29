//! Instruction blocks (docs/BAA.md): an assistant in an `auto` conversation
//! writes fenced `baa` blocks, the daemon runs each once on the host and
//! answers in the chat. `parse` reads the blocks (pure, run at ingest on the
//! caller's thread), `hash` gives each block its id, `reason` names every
//! way a block can end other than success.

mod exec;
mod files;
pub mod hash;
mod params;
pub mod parse;
pub mod paths;
mod reason;

pub use reason::Reason;
pub mod reply;
mod result;
pub mod tools;
pub mod worker;

use crate::store::{ExecutionStatus, NewExecution};
use parse::{Outcome, Params};

/// The rows ingest records for a message's blocks (docs/BAA.md "What happens to a message"):
/// `pending` for each readable block, `invalid` for a malformed one,
/// `rejected` (`too_many_blocks`) past the limit. A block that could not be
/// read keeps its raw text in `params`, with no `params_kind`.
pub fn blocks_to_record(message_id: &str, text: &str, max_blocks: usize) -> Vec<NewExecution> {
    parse::parse(text, max_blocks)
        .into_iter()
        .map(|block| {
            let mut row = NewExecution {
                instruction_id: hash::instruction_id(message_id, block.index, &block.text),
                block_index: block.index as i64,
                target: None,
                tool: None,
                params_kind: None,
                params: None,
                status: ExecutionStatus::Pending,
                summary: None,
                error: None,
            };
            match block.outcome {
                Outcome::Instruction(i) => {
                    row.params_kind = Some(i.params.kind());
                    row.params = Some(match i.params {
                        Params::Json(map) => serde_json::Value::Object(map).to_string(),
                        Params::Text(text) => text,
                    });
                    (row.target, row.tool) = (Some(i.target), Some(i.tool));
                }
                Outcome::Invalid { reason, message, name } => {
                    row.status = reason.status();
                    (row.error, row.summary) = (Some(reason.code().into_owned()), Some(message));
                    (row.target, row.tool) = name.map_or((None, None), |(t, n)| (Some(t), Some(n)));
                    row.params = Some(block.text);
                }
                Outcome::TooMany => {
                    row.status = Reason::TooManyBlocks.status();
                    row.error = Some(Reason::TooManyBlocks.code().into_owned());
                    row.summary = Some(format!(
                        "only the first {max_blocks} blocks of a message run (baa.max_blocks_per_message)"
                    ));
                    row.params = Some(block.text);
                }
            }
            row
        })
        .collect()
}
