//! What other threads call to use the `executions` table: the worker's
//! writes (each queued to the store writer and committed before it
//! returns) and the reads behind `GET /v1/executions` and `/metrics`.

use rusqlite::params;
use rusqlite::types::Value;

use super::exec_model::*;
use super::executions::{self, COLUMNS};
use super::model::*;
use super::paging::{page_query, text, Where};
use super::{Store, StoreError};
use crate::util::now_ms;

impl Store {
    /// Takes the message's conversation for its blocks (`instruction_running`),
    /// or rejects them when automation is off for it.
    pub fn begin_message(
        &self,
        message_id: &str,
        local_id: &str,
        reply: &ReplySettings,
    ) -> Result<Begin, StoreError> {
        let (message_id, local_id, reply) = (message_id.to_string(), local_id.to_string(), reply.clone());
        self.write(move |c| executions::begin_message(c, &message_id, &local_id, &reply, now_ms()))
    }

    pub fn start_block(&self, exec: &Execution, reply: &ReplySettings) -> Result<Start, StoreError> {
        let (exec, reply) = (exec.clone(), reply.clone());
        self.write(move |c| executions::start_block(c, &exec, &reply, now_ms()))
    }

    pub fn finish_block(
        &self,
        exec: &Execution,
        result: BlockResult,
        reply: &ReplySettings,
    ) -> Result<Option<MessageDone>, StoreError> {
        let (exec, reply) = (exec.clone(), reply.clone());
        self.write(move |c| executions::finish_block(c, &exec, &result, &reply, now_ms()))
    }

    /// Fails every block left `running` by the previous run (`interrupted`).
    pub fn recover_executions(&self, reply: &ReplySettings) -> Result<ExecutionRecovery, StoreError> {
        let reply = reply.clone();
        self.write(move |c| executions::recover(c, &reply, now_ms()))
    }

    /// Messages with pending blocks, in the order their blocks were
    /// recorded, with their conversation; at most `limit` blocks are looked at.
    pub fn pending_messages(&self, limit: usize) -> Result<Vec<(String, String)>, StoreError> {
        self.reads().with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT message_id, local_conversation_id FROM executions WHERE status = 'pending'
                 ORDER BY rowid LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let mut out: Vec<(String, String)> = Vec::new();
            for row in rows {
                let row = row?;
                if !out.contains(&row) {
                    out.push(row);
                }
            }
            Ok(out)
        })
    }

    pub fn execution(&self, instruction_id: &str) -> Result<Option<Execution>, StoreError> {
        use rusqlite::OptionalExtension;
        let sql = format!("SELECT {COLUMNS} FROM executions WHERE instruction_id = ?1");
        self.reads().with(|c| {
            Ok(c.prepare_cached(&sql)?.query_row(params![instruction_id], executions::from_row).optional()?)
        })
    }

    pub fn executions(
        &self,
        f: &ExecutionFilter,
        page: Page,
    ) -> Result<(Vec<Execution>, Option<u64>), StoreError> {
        let mut w = Where::default();
        w.eq("message_id", text(&f.message_id))
            .eq("local_conversation_id", text(&f.local_conversation_id))
            .eq("status", f.status.map(|s| Value::Text(s.as_str().into())))
            .eq("tool", text(&f.tool));
        self.reads().with(|c| {
            let base = format!("SELECT {COLUMNS} FROM executions");
            page_query(c, &base, &w, "created_at DESC, instruction_id DESC", page, executions::from_row)
        })
    }

    /// `(tool, status, count)` over every execution, for `/metrics`; a
    /// block that named no tool counts under an empty tool.
    pub fn execution_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.reads().with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT IFNULL(tool, ''), status, COUNT(*) FROM executions GROUP BY 1, 2 ORDER BY 1, 2",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}
