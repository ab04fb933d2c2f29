//! The route table: one row per route (id, kind, method, path pattern,
//! summary, handler, the schemas of what it reads and answers, and whether
//! it needs the token). It drives dispatch, the token check,
//! `GET /v1/describe` and the OpenAPI document, so the API
//! can never describe a route it does not serve. Patterns use `:name` for
//! one segment (optionally with a literal suffix, `:id.txt`) and `*name` for
//! the rest of the path.

use super::api::{ApiError, ApiRequest, Reply};
use super::ctx::Ctx;
use super::handlers::{
    artifact, browser, executions, messages, meta, openapi, probe, relay, renewal, status, system, timed,
};
use super::schema::{self as io, Io};
use crate::percent::percent_decode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Probe,
    Read,
    Write,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Probe => "probe",
            Kind::Read => "read",
            Kind::Write => "write",
        }
    }
}

pub type HandlerFn = fn(&Ctx, &ApiRequest) -> Result<Reply, ApiError>;

pub struct Route {
    pub id: &'static str,
    pub kind: Kind,
    pub method: &'static str,
    pub path: &'static str,
    /// The part of `path` before its first parameter: a path that does not
    /// start with it cannot match, which `resolve` checks first because it
    /// costs one comparison instead of splitting both into segments.
    literal: &'static str,
    summary: &'static str,
    pub handler: HandlerFn,
    /// Served without the token (`open` in the table below).
    pub open: bool,
    /// The query parameters the route takes; any other is a 400
    /// (docs/API.md "Lists: pagination and filters").
    pub query: &'static [&'static str],
    /// What the route reads and answers, as JSON Schema (the OpenAPI document).
    pub io: &'static Io,
}

impl Route {
    /// The summary `/v1/describe` and the OpenAPI document show; an open
    /// route says that it needs no token.
    pub fn summary(&self) -> std::borrow::Cow<'static, str> {
        if self.open {
            format!("{}; needs no token.", self.summary.trim_end_matches('.')).into()
        } else {
            self.summary.into()
        }
    }
}

macro_rules! route {
    (open $($row:tt)*) => {
        Route { open: true, ..route!($($row)*) }
    };
    ($id:literal, $kind:ident, $method:literal, $path:literal, $summary:literal, $handler:path, $io:path) => {
        route!($id, $kind, $method, $path, $summary, $handler, $io, [])
    };
    ($id:literal, $kind:ident, $method:literal, $path:literal, $summary:literal, $handler:path, $io:path, [$($q:literal),*]) => {
        Route {
            id: $id,
            kind: Kind::$kind,
            method: $method,
            path: $path,
            literal: literal_prefix($path),
            summary: $summary,
            handler: $handler,
            open: false,
            query: &[$($q),*],
            io: &$io,
        }
    };
}

/// Every route, in matching order (more specific patterns first). `open`
/// marks the routes served without the token: the health probe, and the
/// status page (static HTML with no data; its script sends the token with
/// every API call).
pub static ROUTES: &[Route] = &[
    route!(open "probe.health", Probe, "GET", "/healthz", "Liveness probe", probe::handle_health, io::HEALTH),
    route!("probe.describe", Probe, "GET", "/v1/describe", "This list of routes.", probe::handle_describe, io::DESCRIBE),
    route!("probe.openapi", Probe, "GET", "/v1/openapi.json", "OpenAPI 3.1 document of this API.", openapi::handle_openapi, io::OPENAPI),
    route!("probe.metrics", Probe, "GET", "/metrics", "Prometheus text exposition.", meta::handle_metrics, io::METRICS),
    route!(open "status.page", Read, "GET", "/", "The status page (HTML)", status::handle_page, io::PAGE),
    route!("system.read", Read, "GET", "/v1/system", "Daemon, automation state, counts and clients.", system::handle_read, io::SYSTEM),
    route!("system.pause", Write, "POST", "/v1/system/pause", "Pause all automation (optional reason).", system::handle_pause, io::SYSTEM_SWITCH),
    route!("system.resume", Write, "POST", "/v1/system/resume", "Resume automation.", system::handle_resume, io::SYSTEM_SWITCH),
    route!("system.drain", Write, "POST", "/v1/system/drain", "Stop projecting; finish pending jobs.", system::handle_drain, io::SYSTEM_SWITCH),
    route!("system.backup", Write, "POST", "/v1/system/backup", "Write a verified copy of the database under STATE_DIR/backups/.", system::handle_backup, io::BACKUP),
    route!("messages.list", Read, "GET", "/v1/messages", "Messages, newest first; filters platform, conversation_id, role; q searches their text.", messages::handle_list, io::MESSAGES, ["q", "platform", "conversation_id", "role", "limit", "offset"]),
    route!("messages.read", Read, "GET", "/v1/messages/:message_id", "One message with its raw text.", messages::handle_read, io::MESSAGE),
    route!("messages.ingest", Write, "POST", "/v1/messages", "Store a final message (same effects as the bridge frame).", messages::handle_ingest, io::INGEST),
    route!("renewal.conversations.list", Read, "GET", "/v1/renewal/conversations", "Local conversations; filters platform, status.", renewal::handle_conversations_list, io::CONVERSATIONS, ["platform", "status", "limit", "offset"]),
    route!("renewal.conversations.read", Read, "GET", "/v1/renewal/conversations/:local_conversation_id", "One local conversation with its active link.", renewal::handle_conversations_read, io::CONVERSATION),
    route!("renewal.conversations.manual", Write, "POST", "/v1/renewal/conversations/:local_conversation_id/manual", "Switch a conversation to manual.", renewal::handle_conversations_manual, io::CONVERSATION_SWITCH),
    route!("renewal.conversations.auto", Write, "POST", "/v1/renewal/conversations/:local_conversation_id/auto", "Switch a conversation to auto renewal.", renewal::handle_conversations_auto, io::CONVERSATION_SWITCH),
    route!("renewal.conversations.paused", Write, "POST", "/v1/renewal/conversations/:local_conversation_id/paused", "Pause a conversation (optional reason).", renewal::handle_conversations_paused, io::CONVERSATION_PAUSE),
    route!("renewal.links.list", Read, "GET", "/v1/renewal/links", "Conversation links; filters platform, remote_conversation_id, local_conversation_id, client_id, active.", renewal::handle_links_list, io::LINKS, ["platform", "remote_conversation_id", "local_conversation_id", "client_id", "active", "limit", "offset"]),
    route!("renewal.jobs.list", Read, "GET", "/v1/renewal/jobs", "Renewal jobs, newest first; filters status, local_conversation_id, message_id.", renewal::handle_jobs_list, io::JOBS, ["status", "local_conversation_id", "message_id", "limit", "offset"]),
    route!("renewal.jobs.read", Read, "GET", "/v1/renewal/jobs/:job_id", "One renewal job.", renewal::handle_jobs_read, io::JOB),
    route!("renewal.jobs.retry", Write, "POST", "/v1/renewal/jobs/:job_id/retry", "Retry a failed job now.", renewal::handle_jobs_retry, io::JOB_CHANGE),
    route!("renewal.jobs.cancel", Write, "POST", "/v1/renewal/jobs/:job_id/cancel", "Cancel a pending job.", renewal::handle_jobs_cancel, io::JOB_CHANGE),
    route!("executions.list", Read, "GET", "/v1/executions", "Instruction blocks run or refused, newest first; filters message_id, local_conversation_id, status, tool.", executions::handle_list, io::EXECUTIONS, ["message_id", "local_conversation_id", "status", "tool", "limit", "offset"]),
    route!("executions.read", Read, "GET", "/v1/executions/:instruction_id", "One instruction block's execution.", executions::handle_read, io::EXECUTION),
    route!("browser.read", Read, "GET", "/v1/browser", "Plugin clients, tabs and login states; filters platform, status.", browser::handle_read, io::BROWSER, ["platform", "status"]),
    route!("browser.actions", Write, "POST", "/v1/browser/actions", "Send an action to a plugin and wait for its result.", browser::handle_actions, io::ACTIONS),
    route!("browser.request", Write, "POST", "/v1/browser/request", "Raw relay: the plugin performs an HTTP request in the page.", relay::handle_request, io::RELAY),
    route!("timed_jobs.read", Read, "GET", "/v1/timed-jobs", "Timed-job runners, their last runs and the start-up recovery.", timed::handle_read, io::TIMED),
    route!("artifact.message", Read, "GET", "/artifact/msg/:message_id.txt", "A message's raw text as text/plain.", artifact::handle_message, io::ARTIFACT_MESSAGE),
    route!("artifact.file", Read, "GET", "/artifact/*path", "A file under STATE_DIR/artifacts.", artifact::handle_file, io::ARTIFACT_FILE),
];

/// What the table says about a method and path.
pub enum Resolution {
    Found(&'static Route, Vec<(&'static str, String)>),
    MethodNotAllowed(Vec<&'static str>),
    NotFound,
}

/// Finds the route for a method and path. `HEAD` is served by every `GET`
/// route (the transport sends the head without the body), and so `Allow`
/// lists it beside `GET`.
pub fn resolve(method: &str, path: &str) -> Resolution {
    let mut allowed = Vec::new();
    for route in ROUTES.iter().filter(|r| path.starts_with(r.literal)) {
        if let Some(params) = match_path(route.path, path) {
            if route.method == method || (method == "HEAD" && route.method == "GET") {
                return Resolution::Found(route, params);
            }
            let methods: &[&'static str] =
                if route.method == "GET" { &["GET", "HEAD"] } else { &[route.method] };
            for m in methods {
                if !allowed.contains(m) {
                    allowed.push(*m);
                }
            }
        }
    }
    if allowed.is_empty() {
        Resolution::NotFound
    } else {
        Resolution::MethodNotAllowed(allowed)
    }
}

/// `pattern` up to its first `:name` or `*name` segment, or all of it.
const fn literal_prefix(pattern: &'static str) -> &'static str {
    let bytes = pattern.as_bytes();
    let mut i = 0;
    while i < bytes.len() && bytes[i] != b':' && bytes[i] != b'*' {
        i += 1;
    }
    pattern.split_at(i).0
}

/// Matches a path against a pattern, returning decoded parameters.
pub fn match_path(pattern: &'static str, path: &str) -> Option<Vec<(&'static str, String)>> {
    let mut params = Vec::new();
    let mut actual_segs = path.strip_prefix('/')?.split('/');
    for seg in pattern.trim_start_matches('/').split('/') {
        if let Some(name) = seg.strip_prefix('*') {
            let rest = actual_segs.collect::<Vec<_>>().join("/");
            if rest.is_empty() {
                return None;
            }
            params.push((name, percent_decode(&rest, false)?));
            return Some(params);
        }
        let actual = actual_segs.next()?;
        if let Some(spec) = seg.strip_prefix(':') {
            let (name, suffix) = match spec.find('.') {
                Some(dot) => (&spec[..dot], &spec[dot..]),
                None => (spec, ""),
            };
            let value = actual.strip_suffix(suffix)?;
            if value.is_empty() {
                return None;
            }
            params.push((name, percent_decode(value, false)?));
        } else if seg != actual {
            return None;
        }
    }
    // Anything left over (including a trailing slash) is a different path.
    actual_segs.next().is_none().then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pattern: &'static str, path: &str) -> Option<Vec<(&'static str, String)>> {
        match_path(pattern, path)
    }

    #[test]
    fn literal_and_param_segments() {
        assert_eq!(params("/v1/messages", "/v1/messages"), Some(vec![]));
        assert_eq!(params("/v1/messages", "/v1/messages/"), None);
        assert_eq!(
            params("/v1/messages/:message_id", "/v1/messages/m%201"),
            Some(vec![("message_id", "m 1".into())])
        );
        assert_eq!(params("/v1/messages/:message_id", "/v1/messages"), None);
        assert_eq!(params("/v1/messages/:message_id", "/v1/messages/a/b"), None);
        assert_eq!(
            params("/v1/renewal/jobs/:job_id/retry", "/v1/renewal/jobs/j1/retry"),
            Some(vec![("job_id", "j1".into())])
        );
        assert_eq!(params("/v1/renewal/jobs/:job_id/retry", "/v1/renewal/jobs/j1"), None);
    }

    #[test]
    fn suffix_and_rest_segments() {
        assert_eq!(
            params("/artifact/msg/:message_id.txt", "/artifact/msg/m1.txt"),
            Some(vec![("message_id", "m1".into())])
        );
        assert_eq!(params("/artifact/msg/:message_id.txt", "/artifact/msg/.txt"), None);
        assert_eq!(params("/artifact/msg/:message_id.txt", "/artifact/msg/m1.json"), None);
        assert_eq!(params("/artifact/*path", "/artifact/a/b.txt"), Some(vec![("path", "a/b.txt".into())]));
        assert_eq!(params("/artifact/*path", "/artifact/"), None);
    }

    #[test]
    fn resolution_distinguishes_404_and_405() {
        assert!(matches!(resolve("GET", "/v1/nope"), Resolution::NotFound));
        match resolve("DELETE", "/v1/messages") {
            Resolution::MethodNotAllowed(allow) => assert_eq!(allow, vec!["GET", "HEAD", "POST"]),
            _ => panic!("expected 405"),
        }
        assert!(
            matches!(resolve("HEAD", "/v1/messages"), Resolution::Found(r, _) if r.id == "messages.list")
        );
        assert!(
            matches!(resolve("HEAD", "/v1/system/pause"), Resolution::MethodNotAllowed(a) if a == ["POST"])
        );
        assert!(
            matches!(resolve("POST", "/v1/messages"), Resolution::Found(r, _) if r.id == "messages.ingest")
        );
    }

    #[test]
    fn only_the_probe_and_the_status_page_need_no_token() {
        let open: Vec<_> = ROUTES.iter().filter(|r| r.open).map(|r| (r.method, r.path)).collect();
        assert_eq!(open, [("GET", "/healthz"), ("GET", "/")]);
        assert_eq!(ROUTES[0].summary(), "Liveness probe; needs no token.");
    }

    /// A path `pattern` matches: each `:name` is `x1`, `*name` is `a/b.txt`.
    fn filled(pattern: &str) -> String {
        let seg = |s: &str| match s.as_bytes().first() {
            Some(b':') => format!("x1{}", s.find('.').map_or("", |dot| &s[dot..])),
            Some(b'*') => "a/b.txt".into(),
            _ => s.into(),
        };
        pattern.split('/').map(seg).collect::<Vec<_>>().join("/")
    }

    /// `resolve` skips routes whose literal part the path does not start
    /// with; that is only right if no such route could match.
    #[test]
    fn a_route_only_matches_paths_that_start_with_its_literal_part() {
        assert_eq!(literal_prefix("/v1/renewal/jobs/:job_id/retry"), "/v1/renewal/jobs/");
        assert_eq!(literal_prefix("/artifact/*path"), "/artifact/");
        assert_eq!(literal_prefix("/v1/messages"), "/v1/messages");
        let mut paths = vec!["/".to_string(), "/v1/".into(), "/artifact/".into()];
        for route in ROUTES {
            let path = filled(route.path);
            assert!(match_path(route.path, &path).is_some(), "{path}");
            paths.extend([format!("{path}/"), format!("{path}/x1"), path]);
        }
        for route in ROUTES {
            for path in paths.iter().filter(|p| match_path(route.path, p).is_some()) {
                assert!(path.starts_with(route.literal), "{} matches {path}", route.path);
            }
        }
    }

    #[test]
    fn ids_are_unique() {
        let mut ids: Vec<_> = ROUTES.iter().map(|r| r.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), ROUTES.len());
    }
}
