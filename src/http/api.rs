//! The API's edge types: `ApiError` (status, code, message, details) and the
//! JSON envelope every route answers with (docs/API.md "The envelope"), plus the
//! request and reply types handlers work with. Handlers return
//! `Result<Reply, ApiError>` and never build HTTP responses themselves, which
//! keeps them testable without sockets and the envelope in one place.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use super::server::{Body, Part, Response};
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    /// Extra response headers, e.g. `Allow` for 405.
    pub headers: Vec<(String, String)>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>, details: Value) -> ApiError {
        ApiError { status, code, message: message.into(), details, headers: Vec::new() }
    }

    /// 400 naming the offending field.
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request", message, json!({ "field": field }))
    }

    /// 400 for a body that is not JSON at all: no field to name.
    pub fn malformed_json(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request", message, json!({ "field": null }))
    }

    pub fn route_not_found(path: &str) -> ApiError {
        ApiError::new(404, "not_found", format!("No route for path \"{path}\"."), json!({ "path": path }))
    }

    pub fn resource_not_found(resource: &'static str, id: &str) -> ApiError {
        ApiError::new(
            404,
            "not_found",
            format!("No {resource} with id \"{id}\"."),
            json!({ "resource": resource, "resource_id": id }),
        )
    }

    pub fn method_not_allowed(method: &str, allow: &[&str]) -> ApiError {
        let allow = allow.join(", ");
        let mut err = ApiError::new(
            405,
            "method_not_allowed",
            format!("Method {method} is not allowed here; allowed: {allow}."),
            json!({ "allow": allow }),
        );
        err.headers.push(("Allow".into(), allow));
        err
    }

    pub fn invalid_state(
        resource: &'static str,
        id: &str,
        state: &str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError::new(
            409,
            "invalid_state",
            message,
            json!({ "resource": resource, "resource_id": id, "state": state }),
        )
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            401,
            "unauthorized",
            "A valid \"Authorization: Bearer <token>\" header is required.",
            json!({}),
        )
    }

    pub fn forbidden_origin(origin: &str) -> ApiError {
        ApiError::new(
            403,
            "forbidden_origin",
            format!("Requests from web origin \"{origin}\" are not allowed."),
            json!({ "origin": origin }),
        )
    }

    pub fn forbidden_host(host: &str) -> ApiError {
        ApiError::new(
            403,
            "forbidden_host",
            format!("Host \"{host}\" is not this daemon; add it to allowed_hosts if it is."),
            json!({ "host": host }),
        )
    }

    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            413,
            "payload_too_large",
            format!("Request body exceeds {limit} bytes."),
            json!({ "max_body_bytes": limit }),
        )
    }

    pub fn unsupported_media_type(got: Option<&str>) -> ApiError {
        ApiError::new(
            415,
            "unsupported_media_type",
            "Request bodies must be sent with \"Content-Type: application/json\".",
            json!({ "content_type": got }),
        )
    }

    pub fn internal() -> ApiError {
        ApiError::new(500, "internal_error", "Internal error; the daemon's log has the details.", json!({}))
    }

    pub fn shutting_down() -> ApiError {
        ApiError::new(503, "shutting_down", "The daemon is shutting down.", json!({}))
    }
}

/// Store failures reach callers as clear, non-leaking errors. A full disk is
/// not a bug, so it is not a 500: it is 507 with its own code, and the write
/// was not applied (nothing half-done is left behind).
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::Full => ApiError::new(
                507,
                "storage_full",
                "The database disk is full; the write was not applied.",
                json!({}),
            ),
            StoreError::ReadOnly => ApiError::new(
                507,
                "storage_read_only",
                "The database cannot be written; the write was not applied.",
                json!({}),
            ),
            StoreError::Busy => ApiError::new(
                503,
                "storage_busy",
                "The database is locked by another process; try again.",
                json!({}),
            ),
            StoreError::Closed => ApiError::shutting_down(),
            StoreError::Corrupt => {
                log::error!("store error: the database file is damaged (database disk image is malformed)");
                ApiError::new(
                    500,
                    "storage_corrupt",
                    "The database file is damaged; see the log. Restore it from a backup, or repair it with the sqlite3 tool's .recover.",
                    json!({}),
                )
            }
            other => {
                log::error!("store error: {other}");
                ApiError::internal()
            }
        }
    }
}

/// What a handler produced: an enveloped JSON value, or a non-enveloped body
/// (artifacts, exposition formats).
pub enum Reply {
    Json(Value),
    /// The `data` member already serialised: views write straight into it,
    /// and the read cache hands out the same text to many requests.
    Encoded(Arc<str>),
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: Body,
    },
}

impl Reply {
    /// Serialises a view into an `Encoded` reply.
    pub fn encode<T: Serialize>(data: &T) -> Result<Reply, ApiError> {
        encode_text(data).map(Reply::Encoded)
    }

    pub fn text(content_type: &str, body: Vec<u8>) -> Reply {
        Reply::Raw {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: Body::Full(body),
        }
    }
}

/// Serialises a view to the text of an `Encoded` reply.
pub fn encode_text<T: Serialize>(data: &T) -> Result<Arc<str>, ApiError> {
    match serde_json::to_string(data) {
        Ok(text) => Ok(text.into()),
        Err(e) => {
            log::error!("cannot serialise a reply: {e}");
            Err(ApiError::internal())
        }
    }
}

/// A parsed request as handlers see it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub params: Vec<(&'static str, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub request_id: String,
}

impl ApiRequest {
    /// A bare request for handler tests and internal calls.
    pub fn new(method: &str, path: &str) -> ApiRequest {
        ApiRequest {
            method: method.into(),
            path: path.into(),
            query: Vec::new(),
            params: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
            request_id: "req_test".into(),
        }
    }

    /// A path parameter by name; routes guarantee the ones they declare.
    pub fn param(&self, name: &str) -> &str {
        self.params.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

const JSON_TYPE: &str = "application/json; charset=utf-8";

fn json_headers(request_id: &str, extra: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Content-Type".to_string(), JSON_TYPE.to_string()),
        ("X-Request-Id".to_string(), request_id.to_string()),
    ];
    headers.extend(extra);
    headers
}

fn json_response(status: u16, request_id: &str, value: &Value, extra: Vec<(String, String)>) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    Response { status, headers: json_headers(request_id, extra), body: Body::Full(body), close: false }
}

pub fn success(request_id: &str, data: Value) -> Response {
    success_encoded(request_id, &Arc::from(data.to_string()))
}

/// The success envelope (`data`, `ok`, `request_id`, the order serde_json
/// gives an object's keys) around data that is already JSON text, sent in
/// three parts so a cached page is never copied.
fn success_encoded(request_id: &str, data: &Arc<str>) -> Response {
    let id = serde_json::to_string(request_id).unwrap_or_else(|_| "\"\"".into());
    let suffix = format!(",\"ok\":true,\"request_id\":{id}}}");
    let body = Body::Parts(vec![
        Part::Owned(b"{\"data\":".to_vec()),
        Part::Shared(data.clone()),
        Part::Owned(suffix.into_bytes()),
    ]);
    Response { status: 200, headers: json_headers(request_id, Vec::new()), body, close: false }
}

pub fn failure(request_id: &str, err: ApiError) -> Response {
    let body = json!({
        "ok": false,
        "request_id": request_id,
        "error": { "code": err.code, "message": err.message, "details": err.details },
    });
    json_response(err.status, request_id, &body, err.headers)
}

pub fn render(request_id: &str, result: Result<Reply, ApiError>) -> Response {
    match result {
        Ok(Reply::Json(data)) => success(request_id, data),
        Ok(Reply::Encoded(data)) => success_encoded(request_id, &data),
        Ok(Reply::Raw { status, mut headers, body }) => {
            headers.push(("X-Request-Id".into(), request_id.into()));
            Response { status, headers, body, close: false }
        }
        Err(err) => failure(request_id, err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A damaged database file is named as such (not "a bug"), with what to
    /// do about it (`store` maps SQLite's CORRUPT and NOTADB to `Corrupt`).
    #[test]
    fn a_damaged_database_is_storage_corrupt() {
        let api = ApiError::from(StoreError::Corrupt);
        assert_eq!((api.status, api.code), (500, "storage_corrupt"));
    }

    /// A full or read-only disk is the storage's condition, not a bug of
    /// ours (507); a lock held by another process passes (503, try again);
    /// a stopping writer is the daemon shutting down (503).
    #[test]
    fn storage_conditions_have_their_own_statuses() {
        let mapped = |e: StoreError| {
            let api = ApiError::from(e);
            (api.status, api.code)
        };
        assert_eq!(mapped(StoreError::Full), (507, "storage_full"));
        assert_eq!(mapped(StoreError::ReadOnly), (507, "storage_read_only"));
        assert_eq!(mapped(StoreError::Busy), (503, "storage_busy"));
        assert_eq!(mapped(StoreError::Closed), (503, "shutting_down"));
        assert_eq!(mapped(StoreError::Sqlite("x".into())).0, 500);
    }
}
