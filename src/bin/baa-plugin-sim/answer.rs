//! Answers to daemon requests (`proxy_delivery`, `action`, `api_request`)
//! as chosen by `--mode`. Pure: request in, frames out; the session decides
//! when to send them.

use crate::cli::Mode;
use crate::frames::now_ms;
use serde_json::{json, Value};

/// Who is answering: fills `action_result.target`.
pub struct Responder<'a> {
    pub client_id: &'a str,
    /// Used when a request names no platform.
    pub default_platform: &'a str,
    pub mode: &'a Mode,
}

/// Events in a stream when the mode does not say (`stream:N` does).
const DEFAULT_STREAM_EVENTS: u32 = 3;
/// Events before the `stream_error` in fail mode.
const FAIL_STREAM_EVENTS: u32 = 2;

impl Responder<'_> {
    /// The frames answering `request` (empty in silent mode), or why it
    /// cannot be answered at all.
    pub fn answer(&self, request: &Value) -> Result<Vec<Value>, String> {
        let kind = request["type"].as_str().unwrap_or_default();
        let Some(request_id) = request["request_id"].as_str() else {
            return Err(format!("{kind} without a request_id: cannot answer"));
        };
        if *self.mode == Mode::Silent {
            return Ok(Vec::new());
        }
        match kind {
            "proxy_delivery" | "action" => Ok(vec![self.action_result(request, request_id)]),
            "api_request" if request["stream"].as_bool() == Some(true) => Ok(self.stream(request_id)),
            "api_request" => Ok(vec![self.api_response(request, request_id)]),
            _ => Err(format!("`{kind}` is not a request")),
        }
    }

    fn action_result(&self, request: &Value, request_id: &str) -> Value {
        // proxy_delivery carries no `action` field; the result names it anyway.
        let action = match request["type"].as_str() {
            Some("proxy_delivery") => json!("proxy_delivery"),
            _ => request["action"].clone(),
        };
        let (completed, failed, reason, http_status) = match self.mode {
            Mode::Fail(reason) => (false, true, json!(reason), Value::Null),
            Mode::Http(status) => ((200..300).contains(status), false, Value::Null, json!(status)),
            _ => (true, false, Value::Null, json!(200)),
        };
        json!({
            "type": "action_result",
            "request_id": request_id,
            "action": action,
            "accepted": true,
            "completed": completed,
            "failed": failed,
            "reason": reason,
            "http_status": http_status,
            "received_at": now_ms(),
            "result": {"simulated": true},
            "target": self.target(request),
        })
    }

    fn target(&self, request: &Value) -> Value {
        let platform = match &request["platform"] {
            Value::String(p) => json!(p),
            _ => json!(self.default_platform),
        };
        json!({"client_id": self.client_id, "platform": platform, "tab_id": request["tab_id"]})
    }

    fn api_response(&self, request: &Value, request_id: &str) -> Value {
        let (status, body) = match self.mode {
            Mode::Fail(reason) => (500, json!({"error": reason})),
            mode => {
                let body = json!({
                    "simulated": true,
                    "method": request["method"],
                    "path": request["path"],
                });
                (ok_status(mode), body)
            }
        };
        json!({
            "type": "api_response",
            "request_id": request_id,
            "status": status,
            "headers": {"content-type": "application/json"},
            "body": body,
        })
    }

    /// `seq` runs 1.. over the events and the closing frame alike.
    fn stream(&self, request_id: &str) -> Vec<Value> {
        let events = match self.mode {
            Mode::Stream(n) => *n,
            Mode::Fail(_) => FAIL_STREAM_EVENTS,
            _ => DEFAULT_STREAM_EVENTS,
        };
        let mut frames: Vec<Value> = (1..=events).map(|seq| stream_event(request_id, seq)).collect();
        let seq = events + 1;
        frames.push(match self.mode {
            Mode::Fail(code) => json!({
                "type": "stream_error", "request_id": request_id, "seq": seq,
                "code": code, "message": "simulated failure",
            }),
            mode => json!({
                "type": "stream_end", "request_id": request_id, "seq": seq,
                "status": ok_status(mode),
            }),
        });
        frames
    }
}

fn stream_event(request_id: &str, seq: u32) -> Value {
    json!({"type": "stream_event", "request_id": request_id, "seq": seq, "data": format!("chunk-{seq}")})
}

/// The upstream status reported when not failing: `http:STATUS` or 200.
fn ok_status(mode: &Mode) -> u16 {
    match mode {
        Mode::Http(status) => *status,
        _ => 200,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(mode: Mode, request: Value) -> Vec<Value> {
        let r = Responder { client_id: "sim-1", default_platform: "chatgpt", mode: &mode };
        r.answer(&request).unwrap()
    }

    fn delivery() -> Value {
        json!({"type":"proxy_delivery","request_id":"pd_1","platform":"claude","tab_id":17})
    }

    fn api(stream: bool) -> Value {
        json!({"type":"api_request","request_id":"ar_1","method":"GET","path":"/x","stream":stream})
    }

    #[test]
    fn delivery_succeeds() {
        let a = &answer(Mode::Succeed, delivery())[0];
        assert_eq!(a["type"], "action_result");
        assert_eq!(a["action"], "proxy_delivery");
        assert_eq!((a["completed"].clone(), a["failed"].clone()), (json!(true), json!(false)));
        assert_eq!(a["http_status"], 200);
        assert_eq!(a["target"], json!({"client_id":"sim-1","platform":"claude","tab_id":17}));
    }

    #[test]
    fn action_fails_and_http() {
        let req = json!({"type":"action","request_id":"act_1","action":"tab_focus"});
        let a = &answer(Mode::Fail("boom".into()), req.clone())[0];
        assert_eq!((a["action"].clone(), a["reason"].clone()), (json!("tab_focus"), json!("boom")));
        assert_eq!(a["target"]["platform"], "chatgpt");
        let h = &answer(Mode::Http(503), req)[0];
        assert_eq!((h["failed"].clone(), h["http_status"].clone()), (json!(false), json!(503)));
    }

    #[test]
    fn api_response_modes() {
        let ok = &answer(Mode::Succeed, api(false))[0];
        assert_eq!(ok["body"], json!({"simulated":true,"method":"GET","path":"/x"}));
        assert_eq!(answer(Mode::Http(404), api(false))[0]["status"], 404);
        let f = &answer(Mode::Fail("nope".into()), api(false))[0];
        assert_eq!((f["status"].clone(), f["body"].clone()), (json!(500), json!({"error":"nope"})));
    }

    #[test]
    fn streams() {
        let s = answer(Mode::Stream(5), api(true));
        assert_eq!(s.len(), 6);
        assert_eq!(s[4]["data"], "chunk-5");
        assert_eq!((s[5]["type"].clone(), s[5]["seq"].clone()), (json!("stream_end"), json!(6)));
        let d = answer(Mode::Succeed, api(true));
        assert_eq!(d.len(), 4);
        let f = answer(Mode::Fail("reset".into()), api(true));
        assert_eq!(
            f[2],
            json!({"type":"stream_error","request_id":"ar_1","seq":3,"code":"reset","message":"simulated failure"})
        );
    }

    #[test]
    fn silent_and_invalid() {
        assert!(answer(Mode::Silent, delivery()).is_empty());
        let r = Responder { client_id: "c", default_platform: "p", mode: &Mode::Succeed };
        assert!(r.answer(&json!({"type":"action"})).is_err());
    }
}
