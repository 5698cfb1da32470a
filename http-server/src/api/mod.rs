//! API v1, the operational endpoints and the web pages: [`Api`], what every handler shares and
//! the answer to one request; the handlers by resource (`users`, `sessions`, `me`,
//! `pictures`), and the health checks, metrics and pages here. The routes are in
//! `crate::route`; the contract is `docs/openapi.yaml`, and a test holds the two together.

pub mod me;
pub mod pictures;
pub mod sessions;
pub mod users;

use std::io;
use std::net::IpAddr;
use std::time::Instant;

use proto::{ErrorCode, ErrorReply, Profile, Request, Response};
use serde::Serialize;

use crate::Config;
use crate::backend::{Backends, CallError};
use crate::http::{ApiCode, ApiError, BodyPace, BodySlots, Reply, SessionCookie};
use crate::metrics::Metrics;
use crate::route::{self, Kind, Route};
use crate::web::{self, Web};

/// Which listener a request came in on: the public one serves the API and the pages, the
/// admin one (loopback by default) the metrics; both answer `/healthz` and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Admin,
}

/// The request handlers and what they share.
pub struct Api {
    backends: Backends,
    metrics: Metrics,
    max_json_body: usize,
    max_picture_body: usize,
    body_pace: BodyPace,
    body_slots: BodySlots,
    trusted_proxies: Vec<IpAddr>,
    cookie: SessionCookie,
    web: Web,
}

/// A profile as the API answers it.
#[derive(Serialize)]
struct ProfileBody {
    id: i64,
    username: String,
    nickname: String,
    picture_url: Option<String>,
}

impl From<Profile> for ProfileBody {
    fn from(profile: Profile) -> Self {
        ProfileBody {
            id: profile.id,
            username: profile.username,
            nickname: profile.nickname,
            picture_url: profile
                .picture
                .map(|key| format!("{}{key}", pictures::PATH)),
        }
    }
}

#[derive(Serialize)]
struct StatusBody {
    status: &'static str,
}

impl Api {
    pub fn new(config: &Config) -> io::Result<Api> {
        Ok(Api {
            backends: Backends::new(&config.backend)?,
            metrics: Metrics::new(),
            max_json_body: config.max_json_body,
            max_picture_body: config.max_picture_body,
            body_pace: config.body_pace,
            body_slots: BodySlots::new(config.body_slots),
            trusted_proxies: config.trusted_proxies.clone(),
            cookie: SessionCookie::new(config.secure_cookies, config.public_origin.clone()),
            web: Web::new(),
        })
    }

    pub fn backends_description(&self) -> String {
        let addresses: Vec<String> = self
            .backends
            .addresses()
            .iter()
            .map(ToString::to_string)
            .collect();
        addresses.join(", ")
    }

    /// Answers one request. Never panics outward: a panic in a handler is answered 500 and
    /// logged, and the worker carries on.
    pub fn handle(&self, mut request: tiny_http::Request, listener: Listener) {
        let started = Instant::now();
        let path = request
            .url()
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let route = Route::of(&path).filter(|route| served_on(route, listener));
        let label = route.map_or(route::UNKNOWN, |route| route.label);
        let method = request.method().clone();
        let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.route(route, &path, &mut request)
        }))
        .unwrap_or_else(|_| {
            log::error!("a handler panicked on {method} {label}");
            ApiError::new(ApiCode::InternalError, "internal error").reply()
        });
        let status = reply.status;
        // A body that was not read whole before the request was handed over (over 16 KiB, or
        // behind `Expect: 100-continue`) may be partly unread, whatever the status (a GET can
        // declare one, a refusal reads none of it). Draining it here would hold this worker at
        // the client's pace, so the answer ends the connection instead, and the connection's
        // own thread throws the rest away.
        if request.body_on_socket() {
            request.end_connection();
        }
        respond(request, reply);
        let took = started.elapsed();
        self.metrics.record(label, status, took);
        log::debug!(
            "{method} {label} {status} {:.3}ms",
            took.as_secs_f64() * 1e3
        );
    }

    fn route(
        &self,
        route: Option<&'static Route>,
        path: &str,
        request: &mut tiny_http::Request,
    ) -> Reply {
        let Some(route) = route else {
            return ApiError::not_found().reply();
        };
        let result = match route.handler(request.method()) {
            Some(handler) => handler(self, request, path),
            None => Err(ApiError::method_not_allowed(route.allow())),
        };
        // A cookie that names no valid session (revoked, expired, tampered with) is removed, so
        // the pages stop sending it: only where the cookie was the session (not a wrong password
        // at login, which says nothing of it) and only when it was the one session cookie (a
        // clearing `Set-Cookie` would remove ours and leave a planted one).
        let stale_cookie = matches!(&result, Err(error) if error.code == ApiCode::Unauthorized)
            && route.session
            && self.cookie.in_use(request);
        let mut reply = result.unwrap_or_else(|error| error.reply());
        if stale_cookie {
            reply = reply.with_header("Set-Cookie", &self.cookie.clear());
        }
        // Answers about an account (a profile, a session, a token, or an error about one) are
        // never stored by a browser or a shared cache.
        if route.kind == Kind::Account {
            reply = reply.with_header("Cache-Control", "no-store");
        }
        reply
    }

    /// Sends a request to a backend; a backend's error reply becomes the matching API error.
    fn call(&self, request: &Request, idempotent: bool) -> Result<Response, ApiError> {
        match self.backends.call(request, idempotent) {
            Ok(Response::Error(reply)) => Err(from_reply(reply)),
            Ok(response) => Ok(response),
            Err(CallError::Busy { retry_after_ms }) => Err(ApiError::new(
                ApiCode::BackendBusy,
                "the service is at capacity; retry shortly",
            )
            .retry_after(retry_after_ms.div_ceil(1000))),
            Err(CallError::Unavailable) => Err(ApiError::new(
                ApiCode::BackendUnavailable,
                "the service is unavailable; retry shortly",
            )
            .retry_after(1)),
            Err(CallError::Timeout) => Err(ApiError::new(
                ApiCode::BackendTimeout,
                "the service did not answer in time",
            )),
        }
    }
}

/// Whether a route is answered on `listener`: the metrics on the admin listener only, the
/// health checks on both, everything else on the public one.
fn served_on(route: &Route, listener: Listener) -> bool {
    match route.kind {
        Kind::Health => true,
        Kind::Admin => listener == Listener::Admin,
        Kind::Account | Kind::Public | Kind::Page => listener == Listener::Public,
    }
}

/// `GET /healthz`: the process runs.
pub fn healthz(_: &Api, _: &mut tiny_http::Request, _: &str) -> Result<Reply, ApiError> {
    Ok(Reply::json(200, &StatusBody { status: "ok" }))
}

/// `GET /readyz`: a backend answers a Ping (tcp-server answers Unavailable while its database
/// is down).
pub fn readyz(api: &Api, _: &mut tiny_http::Request, _: &str) -> Result<Reply, ApiError> {
    if api.backends.any_ready() {
        Ok(Reply::json(200, &StatusBody { status: "ready" }))
    } else {
        Err(ApiError::new(ApiCode::BackendUnavailable, "no backend answers").retry_after(1))
    }
}

/// `GET /metrics` (admin listener): this server's requests and its backend pools, in
/// OpenMetrics text. Each tcp-server serves its own on its admin listener.
pub fn metrics(api: &Api, _: &mut tiny_http::Request, _: &str) -> Result<Reply, ApiError> {
    Ok(Reply {
        status: 200,
        headers: vec![crate::http::header(
            "Content-Type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body: api.metrics.render(&api.backends.stats()).into_bytes(),
    })
}

/// A page or asset. The profile page needs a session: without the cookie it sends the browser
/// to the login page (a revoked or expired cookie is found out by the page's first API call,
/// which does the same).
pub fn page(api: &Api, request: &mut tiny_http::Request, path: &str) -> Result<Reply, ApiError> {
    let signed_in = api.cookie.present(request);
    Ok(match path {
        "/" if signed_in => web::redirect("/profile"),
        "/" => web::redirect("/login"),
        "/profile" if !signed_in => web::redirect("/login?from=profile"),
        _ => match api.web.file(path) {
            Some(file) => api.web.reply(file, request),
            None => ApiError::not_found().reply(),
        },
    })
}

fn respond(request: tiny_http::Request, reply: Reply) {
    if let Err(error) = request.respond(reply.into_response()) {
        log::debug!("could not send a response: {error}");
    }
}

/// A backend's error reply as the API error the contract names: one arm per code, so a new
/// code does not compile until it is mapped.
fn from_reply(reply: ErrorReply) -> ApiError {
    let retry_after = reply.retry_after_ms.div_ceil(1000).max(1);
    let code = match reply.code {
        ErrorCode::InvalidUsername => ApiCode::InvalidUsername,
        ErrorCode::InvalidPassword => ApiCode::InvalidPassword,
        ErrorCode::InvalidNickname => ApiCode::InvalidNickname,
        ErrorCode::UsernameTaken => ApiCode::UsernameTaken,
        ErrorCode::InvalidCredentials => ApiCode::InvalidCredentials,
        ErrorCode::Unauthorized => return ApiError::unauthorized(),
        ErrorCode::PayloadTooLarge => ApiCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType => ApiCode::UnsupportedMediaType,
        ErrorCode::NotFound => return ApiError::not_found(),
        ErrorCode::TooManyRequests => {
            return ApiError::new(ApiCode::TooManyRequests, reply.message).retry_after(retry_after);
        }
        ErrorCode::Busy => {
            return ApiError::new(ApiCode::BackendBusy, reply.message).retry_after(retry_after);
        }
        ErrorCode::Unavailable => {
            return ApiError::new(ApiCode::BackendUnavailable, reply.message)
                .retry_after(retry_after);
        }
        ErrorCode::Malformed | ErrorCode::UnsupportedVersion => {
            log::error!("a backend refused our frame: {}", reply.message);
            return ApiError::new(
                ApiCode::BadGateway,
                "the service could not be reached properly",
            );
        }
        ErrorCode::Internal => return ApiError::new(ApiCode::InternalError, "internal error"),
    };
    ApiError::new(code, reply.message)
}

/// The answer for a backend response of the wrong kind.
fn unexpected(response: Response) -> ApiError {
    log::error!(
        "a backend answered with the wrong message kind {}",
        response.kind()
    );
    ApiError::new(ApiCode::BadGateway, "the service answered unexpectedly")
}
