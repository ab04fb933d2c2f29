//! The plugin's answers to the daemon's requests (docs/BRIDGE.md
//! "Plugin → daemon": `action_result` to a `proxy_delivery` or an
//! `action`; `api_response`, or `stream_event`s closed by `stream_end` or
//! `stream_error`, to an `api_request`), built from the request the way a
//! plugin answers it, succeeding or failing as [`Mode`] says. The daemon
//! never sends these frames, it reads them (`conn.rs`, `delivery_verdict`,
//! the relay); they live here, beside the frames the daemon sends, because
//! only `bridge/` knows the plugin's wire shapes. The plugin simulator
//! (`baa-plugin-sim`) and the integration tests build every answer with
//! them, so the two cannot drift apart, and this file's tests hold them to
//! the daemon's own reading of a delivery's outcome.

use serde_json::{json, Value};

use crate::util::now_ms;

/// How requests are answered (the simulator's `--mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `action_result` completed, `api_response` 200, streams of 3 events.
    Succeed,
    /// `action_result` failed with the reason, `api_response` 500, streams
    /// of 2 events then `stream_error` with the reason as its code.
    Fail(String),
    /// No answer at all (the daemon's timeouts are what is left).
    Silent,
    /// Like `Succeed`, with streams of N events.
    Stream(u32),
    /// `action_result` not failed but with this `http_status`;
    /// `api_response` and `stream_end` with this status.
    Http(u16),
}

/// Events in a stream when the mode does not say (`Stream(n)` does).
const DEFAULT_STREAM_EVENTS: u32 = 3;
/// Events before the `stream_error` in fail mode.
const FAIL_STREAM_EVENTS: u32 = 2;

/// Who answers, and how.
pub struct Answerer<'a> {
    /// Fills `action_result.target.client_id` (null when not given).
    pub client_id: Option<&'a str>,
    /// `target.platform` when a request names no platform (else null).
    pub default_platform: Option<&'a str>,
    pub mode: &'a Mode,
}

impl Answerer<'_> {
    /// The frames answering `request`, in the order they are sent (empty
    /// when silent), or why it cannot be answered at all.
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
        let mut frames: Vec<Value> = (1..=events)
            .map(|seq| stream_event(request_id, seq.into(), json!(format!("chunk-{seq}"))))
            .collect();
        let seq = u64::from(events) + 1;
        frames.push(match self.mode {
            Mode::Fail(code) => stream_error(request_id, seq, code, "simulated failure"),
            mode => stream_end(request_id, seq, ok_status(mode)),
        });
        frames
    }
}

/// One event of a streamed answer; `seq` counts from 1.
pub fn stream_event(request_id: &str, seq: u64, data: Value) -> Value {
    json!({"type": "stream_event", "request_id": request_id, "seq": seq, "data": data})
}

/// The end of a streamed answer, with the upstream status.
pub fn stream_end(request_id: &str, seq: u64, status: u16) -> Value {
    json!({"type": "stream_end", "request_id": request_id, "seq": seq, "status": status})
}

/// A streamed answer that failed upstream.
pub fn stream_error(request_id: &str, seq: u64, code: &str, message: &str) -> Value {
    json!({"type": "stream_error", "request_id": request_id, "seq": seq, "code": code, "message": message})
}

/// The upstream status reported when not failing: `Http(status)` or 200.
fn ok_status(mode: &Mode) -> u16 {
    match mode {
        Mode::Http(status) => *status,
        _ => 200,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::frames::delivery_verdict;

    fn answer(mode: Mode, request: Value) -> Vec<Value> {
        let r = Answerer { client_id: Some("sim-1"), default_platform: Some("chatgpt"), mode: &mode };
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

    /// The daemon reads each mode's `action_result` as the mode means it.
    #[test]
    fn the_daemon_reads_each_outcome_as_meant() {
        let verdict = |mode| delivery_verdict(&answer(mode, delivery())[0]);
        assert_eq!(verdict(Mode::Succeed), Ok(()));
        assert_eq!(verdict(Mode::Http(204)), Ok(()));
        assert_eq!(verdict(Mode::Fail("tab_closed".into())), Err("tab_closed".into()));
        assert_eq!(verdict(Mode::Http(429)), Err("upstream_http_429".into()));
    }

    #[test]
    fn a_target_without_names_is_null() {
        let r = Answerer { client_id: None, default_platform: None, mode: &Mode::Succeed };
        let a = &r.answer(&json!({"type":"action","request_id":"act_2","action":"tab_focus"})).unwrap()[0];
        assert_eq!(a["target"], json!({"client_id":null,"platform":null,"tab_id":null}));
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
        let r = Answerer { client_id: Some("c"), default_platform: Some("p"), mode: &Mode::Succeed };
        assert!(r.answer(&json!({"type":"action"})).is_err());
        assert!(r.answer(&json!({"type":"ping","request_id":"x"})).is_err());
    }
}
