//! How a block's result is built: the verdict, a summary cut to the
//! reply's excerpt, the JSON result and the artifact. Shared by the tools
//! (tools.rs) and the file tools (files.rs), which both answer this way.

use serde_json::Value;

use super::reply::excerpt;
use super::Reason;
use crate::store::{BlockResult, ExecutionStatus};

pub(super) fn succeeded(summary: String, result: Value, artifact_path: Option<String>) -> BlockResult {
    BlockResult {
        status: ExecutionStatus::Succeeded,
        summary: Some(excerpt(&summary).to_string()),
        result_json: Some(result.to_string()),
        error: None,
        artifact_path,
    }
}

pub(super) fn failed(
    reason: Reason,
    summary: String,
    result: Option<Value>,
    artifact_path: Option<String>,
) -> BlockResult {
    BlockResult {
        status: reason.status(),
        summary: Some(excerpt(&summary).to_string()),
        result_json: result.map(|r| r.to_string()),
        error: Some(reason.code().into_owned()),
        artifact_path,
    }
}
