//! The browser bridge: the plugin's WebSocket protocol (BRIDGE_PROTOCOL.md).
//! So far it holds the wire shape shared with `POST /v1/messages`; the
//! connection threads and the request hub come with the bridge issue.

pub mod final_message;
