//! API v1, the operational endpoints and the web pages: [`Api`], what every handler shares; the
//! handlers by resource (`users`, `sessions`, `me`, `pictures`), and the health checks, metrics
//! and pages here. The routes, and the answer to one request, are in `crate::route`; the
//! contract is `docs/openapi.yaml`, and a test holds the two together.

pub mod me;
pub mod pictures;
pub mod sessions;
pub mod users;

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use proto::{ErrorCode, ErrorReply, Profile, Request, Response, TierKey};
use serde::Serialize;

use crate::Config;
use crate::backend::{Backends, CallError};
use crate::http::{ApiCode, ApiError, BodyPace, BodySlots, Reply, SessionCookie};
use crate::metrics::Metrics;
use crate::web::{self, Web};

/// The request handlers and what they share.
pub struct Api {
    backends: Backends,
    /// Counted by the router for every answer.
    pub(crate) metrics: Metrics,
    max_json_body: usize,
    max_picture_body: usize,
    body_pace: BodyPace,
    body_slots: BodySlots,
    /// Past it, a request that waited for a worker is answered 503 `overloaded` (the router).
    pub(crate) max_queue_wait: Duration,
    trusted_proxies: Vec<IpAddr>,
    /// The pages' cookies, which the router clears when they name no session.
    pub(crate) cookie: SessionCookie,
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
    pub fn new(config: &Config, tier_key: TierKey) -> io::Result<Api> {
        Ok(Api {
            backends: Backends::new(&config.backend, tier_key)?,
            metrics: Metrics::new(),
            max_json_body: config.max_json_body,
            max_picture_body: config.max_picture_body,
            body_pace: config.body_pace,
            body_slots: BodySlots::new(config.body_slots),
            max_queue_wait: config.max_queue_wait,
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

    /// Sends a request to a backend; a backend's error reply becomes the matching API error.
    fn call(&self, request: &Request, idempotent: bool) -> Result<Response, ApiError> {
        api_result(self.backends.call(request, idempotent))
    }

    /// [`Api::call`] for a request that checks a password: to the backend that owns `key` (a
    /// login's username key, or the session token of a password change), which every
    /// http-server picks alike, so that the throttle sees every attempt.
    fn call_for(
        &self,
        key: &str,
        request: &Request,
        idempotent: bool,
    ) -> Result<Response, ApiError> {
        api_result(self.backends.call_for(key, request, idempotent))
    }
}

/// A backend's answer, or why there was none, as the API's result.
fn api_result(result: Result<Response, CallError>) -> Result<Response, ApiError> {
    match result {
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

/// A backend's error reply as the API error the contract names: one arm per code, so a new
/// code does not compile until it is mapped.
fn from_reply(reply: ErrorReply) -> ApiError {
    let retry_after = reply.retry_after_ms.div_ceil(1000).max(1);
    let code = match reply.code {
        ErrorCode::InvalidUsername => ApiCode::InvalidUsername,
        ErrorCode::InvalidPassword => ApiCode::InvalidPassword,
        ErrorCode::WeakPassword => ApiCode::WeakPassword,
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
        // Unauthenticated on a request can only follow a failed handshake, which the backend
        // pool turns into an unavailable backend; either way a deployment fault.
        ErrorCode::Malformed | ErrorCode::UnsupportedVersion | ErrorCode::Unauthenticated => {
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
