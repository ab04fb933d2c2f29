//! The `[baa]` reply typed back into the chat once a message's blocks are
//! all final (docs/BAA.md): one paragraph per block,
//! `[baa] <tool>: <ok|error> — <first lines>` and, when the block left an
//! artifact, its link on the next line. Pure text; the store calls it in
//! the transaction that ends the message, so the reply and the results it
//! reports are committed together.

use crate::store::{Execution, ExecutionStatus};

/// The most of a block's summary a reply carries (docs/BAA.md: 4 KiB).
pub const EXCERPT_BYTES: usize = 4096;

/// The reply for a message's executions (in block order).
pub fn render(executions: &[Execution], artifact_base: &str) -> String {
    let mut out = String::new();
    for e in executions {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        let name = match (&e.target, &e.tool) {
            (Some(target), Some(tool)) if target != "conductor" => format!("{target}.{tool}"),
            (_, Some(tool)) => tool.clone(),
            _ => format!("block {}", e.block_index),
        };
        let ok = e.status == ExecutionStatus::Succeeded;
        out.push_str(&format!("[baa] {name}: {} — ", if ok { "ok" } else { "error" }));
        let summary = e.summary.as_deref().unwrap_or("").trim_end();
        match (&e.error, ok) {
            (Some(error), false) if summary.is_empty() => out.push_str(error),
            (Some(error), false) => {
                out.push_str(error);
                out.push_str(": ");
                out.push_str(excerpt(summary));
            }
            _ => out.push_str(if summary.is_empty() { "(no output)" } else { excerpt(summary) }),
        }
        if let Some(path) = &e.artifact_path {
            out.push('\n');
            out.push_str(artifact_base);
            out.push_str(path.strip_prefix("artifacts/").unwrap_or(path));
        }
    }
    out
}

/// At most `EXCERPT_BYTES` of `text`, cut at a character boundary.
pub fn excerpt(text: &str) -> &str {
    if text.len() <= EXCERPT_BYTES {
        return text;
    }
    let mut end = EXCERPT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(index: i64, tool: Option<&str>, status: ExecutionStatus) -> Execution {
        Execution {
            instruction_id: format!("ins_{index}"),
            message_id: "m".into(),
            local_conversation_id: "lc".into(),
            block_index: index,
            target: tool.map(|_| "conductor".into()),
            tool: tool.map(str::to_string),
            params_kind: None,
            params: None,
            status,
            summary: None,
            result_json: None,
            error: None,
            artifact_path: None,
            started_at: None,
            finished_at: None,
            created_at: 0,
        }
    }

    #[test]
    fn one_paragraph_per_block_with_verdict_and_link() {
        let mut a = exec(0, Some("exec"), ExecutionStatus::Succeeded);
        a.summary = Some("total 0\nfile\n".into());
        a.artifact_path = Some("artifacts/exec/ins_0.txt".into());
        let mut b = exec(1, None, ExecutionStatus::Invalid);
        b.error = Some("invalid_json".into());
        b.summary = Some("params are not a JSON object".into());
        let mut c = exec(2, Some("files.read"), ExecutionStatus::Rejected);
        c.error = Some("path_outside_roots".into());
        let d = exec(3, Some("status"), ExecutionStatus::Succeeded);
        let text = render(&[a, b, c, d], "http://h:1/artifact/");
        assert_eq!(
            text,
            "[baa] exec: ok — total 0\nfile\nhttp://h:1/artifact/exec/ins_0.txt\n\n\
             [baa] block 1: error — invalid_json: params are not a JSON object\n\n\
             [baa] files.read: error — path_outside_roots\n\n\
             [baa] status: ok — (no output)"
        );
    }

    #[test]
    fn summaries_are_cut_to_the_excerpt_at_a_character_boundary() {
        let mut a = exec(0, Some("exec"), ExecutionStatus::Failed);
        a.error = Some("exit_code_1".into());
        a.summary = Some("é".repeat(3000));
        let text = render(&[a], "b/");
        let body = text.strip_prefix("[baa] exec: error — exit_code_1: ").unwrap();
        assert_eq!(body.len(), EXCERPT_BYTES);
        assert_eq!(excerpt("short"), "short");
        assert_eq!(excerpt(&"x".repeat(EXCERPT_BYTES + 1)).len(), EXCERPT_BYTES);
    }

    #[test]
    fn another_target_is_named_in_full() {
        let mut a = exec(0, Some("exec"), ExecutionStatus::Rejected);
        a.target = Some("other".into());
        a.error = Some("unknown_target".into());
        assert_eq!(render(&[a], "b/"), "[baa] other.exec: error — unknown_target");
    }
}
