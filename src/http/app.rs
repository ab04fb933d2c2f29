//! The glue between the transport and the handlers: request ids, the
//! web-origin refusal, token auth, body limits and media type, route
//! dispatch, and turning a handler panic into a 500 while the worker lives
//! on. Everything here is the same for every route, so no handler repeats it.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::api::{failure, render, ApiError, ApiRequest};
use super::ctx::SharedCtx;
use super::query::{only_known, split_target};
use super::routes::{resolve, Kind, Resolution};
use super::server::{BodyError, Handler, Request, Response, TransportError};
use crate::auth::{bearer, token_ok, OriginPolicy};
use crate::util::random_u64;

pub struct App {
    ctx: SharedCtx,
    origins: OriginPolicy,
}

impl App {
    pub fn new(ctx: SharedCtx) -> App {
        let origins = OriginPolicy::new(&ctx.config.allowed_origins, &[&ctx.http_base, &ctx.public_base]);
        App { ctx, origins }
    }

    fn dispatch(&self, req: Request, request_id: &str) -> Result<super::api::Reply, ApiError> {
        let (path, query) = split_target(&req.target);
        self.check_host(&req)?;
        self.check_origin(&req)?;
        let resolution = resolve(&req.method, &path);
        // Routes the table marks `open` need no token; an unknown route
        // does, so that nobody learns which paths exist without it.
        let open = matches!(resolution, Resolution::Found(route, _) if route.open);
        if !open {
            self.check_token(&req)?;
        }
        let body = match req.body {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                return Err(ApiError::payload_too_large(self.ctx.config.limits.max_body_bytes))
            }
        };
        let (route, params) = match resolution {
            Resolution::Found(route, params) => (route, params),
            Resolution::MethodNotAllowed(allow) => {
                return Err(ApiError::method_not_allowed(&req.method, &allow))
            }
            Resolution::NotFound => return Err(ApiError::route_not_found(&path)),
        };
        only_known(&query, route.query)?;
        if route.kind == Kind::Write && !body.iter().all(u8::is_ascii_whitespace) {
            let content_type = header(&req.headers, "content-type");
            if !is_json(content_type) {
                return Err(ApiError::unsupported_media_type(content_type));
            }
        }
        let api_req = ApiRequest {
            method: req.method,
            path,
            query,
            params,
            headers: req.headers,
            body,
            request_id: request_id.to_string(),
        };
        (route.handler)(&self.ctx, &api_req)
    }

    /// DNS rebinding: a page served under a foreign name is refused before
    /// anything is read or changed. The transport already answered 400 to an
    /// HTTP/1.1 request without exactly one Host; an HTTP/1.0 one without
    /// Host comes from no browser and passes.
    fn check_host(&self, req: &Request) -> Result<(), ApiError> {
        match header(&req.headers, "host") {
            Some(host) if !self.ctx.hosts.allows(host) => {
                log::warn!(
                    "http: refused request for host {host:?} (not loopback, bound or in allowed_hosts)"
                );
                Err(ApiError::forbidden_host(host))
            }
            _ => Ok(()),
        }
    }

    fn check_origin(&self, req: &Request) -> Result<(), ApiError> {
        let origin = header(&req.headers, "origin");
        if self.origins.allows(origin) {
            return Ok(());
        }
        let origin = origin.unwrap_or_default();
        log::warn!("http: refused request from web origin {origin:?}");
        Err(ApiError::forbidden_origin(origin))
    }

    fn check_token(&self, req: &Request) -> Result<(), ApiError> {
        let presented = bearer(header(&req.headers, "authorization"));
        if token_ok(self.ctx.config.token.as_deref(), presented) {
            Ok(())
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

impl Handler for App {
    fn handle(&self, req: Request) -> Response {
        let request_id = request_id(&req);
        let method = req.method.clone();
        let target = req.target.clone();
        let body_too_large = req.body.is_err();
        let result = catch_unwind(AssertUnwindSafe(|| self.dispatch(req, &request_id)));
        let result = result.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            log::error!(
                "http: handler panicked on {method} {} ({request_id}): {what}",
                loggable_target(&target)
            );
            Err(ApiError::internal())
        });
        if let Err(err) = &result {
            log::debug!(
                "http: {method} {} -> {} {} ({request_id})",
                loggable_target(&target),
                err.status,
                err.code
            );
        }
        let mut response = render(&request_id, result);
        // The unread body is still on the socket; only closing recovers.
        response.close |= body_too_large;
        response
    }

    fn transport_error(&self, err: TransportError) -> Response {
        let request_id = generated_request_id();
        let api_err = match err {
            TransportError::BadRequest(why) => {
                ApiError::malformed_json(format!("Malformed HTTP request: {why}."))
            }
            TransportError::HeadersTooLarge => ApiError::new(
                431,
                "invalid_request",
                "Request headers are too large.",
                serde_json::json!({ "field": null }),
            ),
            TransportError::Internal => ApiError::internal(),
        };
        let mut response = failure(&request_id, api_err);
        response.close = true;
        response
    }

    fn overloaded(&self) -> Response {
        let err =
            ApiError::new(503, "overloaded", "Too many open connections; try again.", serde_json::json!({}));
        let mut response = failure(&generated_request_id(), err);
        response.close = true;
        response
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// The caller's `X-Request-Id` when well-formed, else a fresh one.
fn request_id(req: &Request) -> String {
    match header(&req.headers, "x-request-id") {
        Some(id) if crate::bridge::final_message::valid_token_id(id) => id.to_string(),
        _ => generated_request_id(),
    }
}

fn generated_request_id() -> String {
    format!("req_{:016x}", random_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_type() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(None));
    }
}

/// The request target as it may appear in the log: the values of query
/// parameters that look like credentials (`token=`, `access_token=`, …) are
/// replaced by `***`. The API takes its token only from the
/// `Authorization` header, but a script may still put one in a URL, and no
/// credential value is ever logged.
fn loggable_target(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else { return target.to_string() };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if is_secret_name(key) => format!("{key}=***"),
            _ => param.to_string(),
        })
        .collect();
    format!("{path}?{}", params.join("&"))
}

/// Query keys whose values are masked: anything naming a token, key,
/// password, secret, session, cookie or auth, also percent-encoded.
fn is_secret_name(key: &str) -> bool {
    const NAMES: [&str; 8] = ["token", "key", "pass", "secret", "session", "cookie", "auth", "sig"];
    let key =
        crate::percent::percent_decode(key, true).unwrap_or_else(|| key.to_string()).to_ascii_lowercase();
    NAMES.iter().any(|name| key.contains(name))
}

#[cfg(test)]
mod log_tests {
    use super::loggable_target;

    #[test]
    fn credentials_in_the_query_are_not_logged() {
        assert_eq!(loggable_target("/v1/system"), "/v1/system");
        assert_eq!(loggable_target("/v1/system?token=s3cret&limit=5"), "/v1/system?token=***&limit=5");
        assert_eq!(loggable_target("/x?Access_Token=abc&token"), "/x?Access_Token=***&token");
        assert_eq!(loggable_target("/x?a=1&b=token"), "/x?a=1&b=token");
        assert_eq!(
            loggable_target("/x?api_key=1&password=2&%74oken=3&limit=5"),
            "/x?api_key=***&password=***&%74oken=***&limit=5"
        );
    }
}
