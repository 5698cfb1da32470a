//! API v1, the operational endpoints and the web pages: the routing table, and for each API
//! route how the HTTP request becomes a proto request and the proto response becomes JSON. The
//! contract is `docs/openapi.yaml`; a test holds the two together.

use std::io;
use std::thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crossbeam_channel::{Sender, TrySendError};

use proto::{ErrorCode, ErrorReply, ImageFormat, Profile, Request, Response, Secret};
use serde::{Deserialize, Serialize};

use crate::Config;
use crate::backend::{Backends, CallError};
use crate::http::{self, ApiError, Reply, SessionCookie};
use crate::metrics::Metrics;
use crate::web::{self, Web};

/// Where pictures are served; a profile's `picture_url` is this plus the picture's key.
pub const PICTURES_PATH: &str = "/api/v1/pictures/";

/// Every route, for metrics labels and the method check. A request matches at most one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Users,
    Sessions,
    CurrentSession,
    Me,
    MePicture,
    Picture,
    Healthz,
    Readyz,
    Metrics,
    /// A web page (`/`, `/signup`, `/login`, `/profile`).
    Page,
    /// A page's script, style sheet or icon.
    Asset,
    /// No route matched.
    Unknown,
}

impl Route {
    /// In declaration order (metrics index by the discriminant).
    pub const ALL: [Route; 12] = [
        Route::Users,
        Route::Sessions,
        Route::CurrentSession,
        Route::Me,
        Route::MePicture,
        Route::Picture,
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::Page,
        Route::Asset,
        Route::Unknown,
    ];

    /// The path template, for metrics.
    pub fn name(self) -> &'static str {
        match self {
            Route::Users => "/api/v1/users",
            Route::Sessions => "/api/v1/sessions",
            Route::CurrentSession => "/api/v1/sessions/current",
            Route::Me => "/api/v1/me",
            Route::MePicture => "/api/v1/me/picture",
            Route::Picture => "/api/v1/pictures/{key}",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::Page => "/{page}",
            Route::Asset => "/assets/{file}",
            Route::Unknown => "unknown",
        }
    }

    /// The methods the route allows, as the `Allow` header lists them.
    pub fn allow(self) -> &'static str {
        match self {
            Route::Users | Route::Sessions => "POST",
            Route::CurrentSession => "DELETE",
            Route::Me => "GET, PATCH",
            Route::MePicture => "PUT",
            Route::Picture | Route::Healthz | Route::Readyz | Route::Metrics => "GET",
            Route::Page | Route::Asset => "GET, HEAD",
            Route::Unknown => "",
        }
    }

    /// Whether `docs/openapi.yaml` describes the route: the API and the operational endpoints,
    /// not the pages.
    pub fn is_api(self) -> bool {
        !matches!(self, Route::Page | Route::Asset)
    }

    fn of(path: &str) -> Route {
        match path {
            "/api/v1/users" => Route::Users,
            "/api/v1/sessions" => Route::Sessions,
            "/api/v1/sessions/current" => Route::CurrentSession,
            "/api/v1/me" => Route::Me,
            "/api/v1/me/picture" => Route::MePicture,
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            "/metrics" => Route::Metrics,
            "/" | "/signup" | "/login" | "/profile" => Route::Page,
            _ if path.starts_with(PICTURES_PATH) => Route::Picture,
            _ if path.starts_with("/assets/") => Route::Asset,
            _ => Route::Unknown,
        }
    }
}

/// Bodies up to this size are read by tiny_http's connection thread before the request is
/// queued (see the vendored crate's patches), so dropping an unread one costs nothing.
const PRE_READ_BODY: usize = 16 * 1024;

/// Threads that send the answers to requests whose body was left unread (see `Api::handle`).
const DRAIN_THREADS: usize = 4;

/// The request handlers and what they share.
pub struct Api {
    backends: Backends,
    metrics: Metrics,
    drain: Sender<(tiny_http::Request, Reply)>,
    max_json_body: usize,
    max_picture_body: usize,
    cookie: SessionCookie,
    web: Web,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    username: String,
    password: String,
    #[serde(default)]
    nickname: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NicknameBody {
    nickname: String,
}

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
            picture_url: profile.picture.map(|key| format!("{PICTURES_PATH}{key}")),
        }
    }
}

#[derive(Serialize)]
struct SessionBody {
    /// Left out when the session went into the cookie, so no script on the pages sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    expires_at: String,
    user: ProfileBody,
}

#[derive(Serialize)]
struct StatusBody {
    status: &'static str,
}

impl Api {
    pub fn new(config: &Config) -> io::Result<Api> {
        let (drain, to_drain) = crossbeam_channel::bounded::<(tiny_http::Request, Reply)>(64);
        for index in 0..DRAIN_THREADS {
            let to_drain = to_drain.clone();
            thread::Builder::new()
                .name(format!("http-drain-{index}"))
                .spawn(move || {
                    for (request, reply) in to_drain {
                        respond(request, reply);
                    }
                })?;
        }
        Ok(Api {
            backends: Backends::new(&config.backend)?,
            metrics: Metrics::new(),
            drain,
            max_json_body: config.max_json_body,
            max_picture_body: config.max_picture_body,
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
    pub fn handle(&self, mut request: tiny_http::Request) {
        let started = Instant::now();
        let path = request
            .url()
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let route = Route::of(&path);
        let method = request.method().clone();
        let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.route(route, &path, &mut request)
        }))
        .unwrap_or_else(|_| {
            log::error!("a handler panicked on {method} {}", route.name());
            ApiError::new(500, "internal_error", "internal error").reply()
        });
        let status = reply.status;
        // tiny_http drops a request by reading what is left of its body (up to 1 MiB, for up
        // to about a second), on the thread that drops it. A body that was not pre-read (over
        // 16 KiB, or held back by `Expect: 100-continue`) may be unread, whatever the status
        // (a GET can declare one), so its answer goes to a drain thread and this worker moves
        // on; if they are all busy, it is answered here.
        let may_hold_body = request
            .body_length()
            .is_some_and(|length| length > PRE_READ_BODY)
            || http::header_value(&request, "Expect").is_some();
        if may_hold_body {
            if let Err(
                TrySendError::Full((request, reply)) | TrySendError::Disconnected((request, reply)),
            ) = self.drain.try_send((request, reply))
            {
                respond(request, reply);
            }
        } else {
            respond(request, reply);
        }
        let took = started.elapsed();
        self.metrics.record(route, status, took);
        log::debug!(
            "{method} {} {status} {:.3}ms",
            route.name(),
            took.as_secs_f64() * 1e3
        );
    }

    fn route(&self, route: Route, path: &str, request: &mut tiny_http::Request) -> Reply {
        use tiny_http::Method::{Delete, Get, Head, Patch, Post, Put};
        let method = request.method().clone();
        let result = match (route, method) {
            (Route::Unknown, _) => Err(ApiError::not_found()),
            (Route::Users, Post) => self.register(request),
            (Route::Sessions, Post) => self.login(request),
            (Route::CurrentSession, Delete) => self.logout(request),
            (Route::Me, Get) => self.profile(request),
            (Route::Me, Patch) => self.update_nickname(request),
            (Route::MePicture, Put) => self.set_picture(request),
            (Route::Picture, Get) => self.picture(request, &path[PICTURES_PATH.len()..]),
            (Route::Healthz, Get) => Ok(Reply::json(200, &StatusBody { status: "ok" })),
            (Route::Readyz, Get) => self.readyz(),
            (Route::Metrics, Get) => Ok(self.metrics()),
            (Route::Page | Route::Asset, Get | Head) => Ok(self.page(request, path)),
            (route, _) => Err(ApiError::method_not_allowed(route.allow())),
        };
        // A cookie that names no valid session (revoked, expired, tampered with) is removed, so
        // the pages stop sending it: only where the cookie was the session (not a wrong password
        // at login, which says nothing of it) and only when it was the one session cookie (a
        // clearing `Set-Cookie` would remove ours and leave a planted one).
        let stale_cookie = matches!(&result, Err(error) if error.code == "unauthorized")
            && matches!(route, Route::Me | Route::MePicture | Route::CurrentSession)
            && self.cookie.in_use(request);
        let reply = result.unwrap_or_else(|error| error.reply());
        if stale_cookie {
            return reply.with_header("Set-Cookie", &self.cookie.clear());
        }
        reply
    }

    fn register(&self, request: &mut tiny_http::Request) -> Result<Reply, ApiError> {
        let body: RegisterBody = http::read_json(request, self.max_json_body)?;
        let request = Request::Register {
            username: body.username,
            password: Secret::new(body.password),
            nickname: body.nickname,
        };
        match self.call(&request, false)? {
            Response::Registered(profile) => Ok(Reply::json(201, &ProfileBody::from(profile))),
            other => Err(unexpected(other)),
        }
    }

    fn login(&self, request: &mut tiny_http::Request) -> Result<Reply, ApiError> {
        // `?cookie=true`: the pages' login. The session goes into the HttpOnly cookie instead
        // of the body, and only from this site's own pages (else another site could log a
        // visitor into an account of its choosing).
        let cookie = http::query_flag(request, "cookie")?;
        if cookie {
            self.cookie.same_origin(request)?;
        }
        let body: LoginBody = http::read_json(request, self.max_json_body)?;
        let request = Request::Login {
            username: body.username,
            password: Secret::new(body.password),
            // tcp-server throttles failed logins per username and client address.
            client: request
                .remote_addr()
                .map(|peer| peer.ip().to_canonical().to_string()),
        };
        match self.call(&request, true)? {
            Response::LoggedIn(session) => {
                let token = session.token.expose().to_owned();
                let body = SessionBody {
                    token: (!cookie).then(|| token.clone()),
                    expires_at: rfc3339(session.expires_at),
                    user: session.profile.into(),
                };
                let reply = Reply::json(200, &body).with_header("Cache-Control", "no-store");
                if !cookie {
                    return Ok(reply);
                }
                let lifetime = session.expires_at - unix_now();
                Ok(reply.with_header("Set-Cookie", &self.cookie.set(&token, lifetime)))
            }
            other => Err(unexpected(other)),
        }
    }

    fn logout(&self, request: &mut tiny_http::Request) -> Result<Reply, ApiError> {
        let token = Secret::new(self.cookie.session_token(request)?);
        match self.call(&Request::Logout { token }, true)? {
            // A page's logout also removes the cookie (a 401 does too, in `route`).
            Response::LoggedOut if self.cookie.in_use(request) => {
                Ok(Reply::empty(204).with_header("Set-Cookie", &self.cookie.clear()))
            }
            Response::LoggedOut => Ok(Reply::empty(204)),
            other => Err(unexpected(other)),
        }
    }

    fn profile(&self, request: &mut tiny_http::Request) -> Result<Reply, ApiError> {
        let token = Secret::new(self.cookie.session_token(request)?);
        match self.call(&Request::GetProfile { token }, true)? {
            Response::Profile(profile) => Ok(Reply::json(200, &ProfileBody::from(profile))),
            other => Err(unexpected(other)),
        }
    }

    fn update_nickname(&self, request: &mut tiny_http::Request) -> Result<Reply, ApiError> {
        let token = Secret::new(self.cookie.session_token(request)?);
        let body: NicknameBody = http::read_json(request, self.max_json_body)?;
        let request = Request::UpdateNickname {
            token,
            nickname: body.nickname,
        };
        match self.call(&request, true)? {
            Response::NicknameUpdated(profile) => Ok(Reply::json(200, &ProfileBody::from(profile))),
            other => Err(unexpected(other)),
        }
    }

    fn set_picture(&self, request: &mut tiny_http::Request) -> Result<Reply, ApiError> {
        let token = Secret::new(self.cookie.session_token(request)?);
        let declared = http::media_type(request);
        if !ImageFormat::ALL
            .iter()
            .any(|format| Some(format.media_type()) == declared.as_deref())
        {
            return Err(ApiError::new(
                415,
                "unsupported_media_type",
                "the picture must be image/png, image/jpeg, image/gif or image/webp",
            ));
        }
        let image = http::read_body(request, self.max_picture_body)?;
        match self.call(&Request::SetPicture { token, image }, true)? {
            Response::PictureSet(profile) => Ok(Reply::json(200, &ProfileBody::from(profile))),
            other => Err(unexpected(other)),
        }
    }

    fn picture(&self, request: &tiny_http::Request, key: &str) -> Result<Reply, ApiError> {
        if !proto::is_picture_key(key) {
            return Err(ApiError::not_found());
        }
        let etag = format!("\"{key}\"");
        // A key names its content for good, so a client holding it has the picture: no
        // backend round trip is needed to say so.
        if http::header_value(request, "If-None-Match").is_some_and(|value| {
            value
                .split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        }) {
            return Ok(picture_headers(Reply::empty(304), &etag));
        }
        let request = Request::GetPicture {
            key: key.to_owned(),
        };
        match self.call(&request, true)? {
            Response::Picture(picture) => {
                let reply = Reply {
                    status: 200,
                    headers: vec![http::header("Content-Type", picture.format.media_type())],
                    body: picture.data,
                };
                Ok(picture_headers(reply, &etag))
            }
            other => Err(unexpected(other)),
        }
    }

    /// A page or asset. The profile page needs a session: without the cookie it sends the
    /// browser to the login page (a revoked or expired cookie is found out by the page's
    /// first API call, which does the same).
    fn page(&self, request: &tiny_http::Request, path: &str) -> Reply {
        let signed_in = self.cookie.present(request);
        match path {
            "/" if signed_in => web::redirect("/profile"),
            "/" => web::redirect("/login"),
            "/profile" if !signed_in => web::redirect("/login?from=profile"),
            _ => match self.web.file(path) {
                Some(file) => self.web.reply(file, request),
                None => ApiError::not_found().reply(),
            },
        }
    }

    fn readyz(&self) -> Result<Reply, ApiError> {
        if self.backends.any_ready() {
            Ok(Reply::json(200, &StatusBody { status: "ready" }))
        } else {
            Err(ApiError::new(503, "backend_unavailable", "no backend answers").retry_after(1))
        }
    }

    fn metrics(&self) -> Reply {
        let text = self
            .metrics
            .render(&self.backends.stats(), &self.backends.fetch_stats());
        Reply {
            status: 200,
            headers: vec![http::header(
                "Content-Type",
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body: text.into_bytes(),
        }
    }

    /// Sends a request to a backend; a backend's error reply becomes the matching API error.
    fn call(&self, request: &Request, idempotent: bool) -> Result<Response, ApiError> {
        match self.backends.call(request, idempotent) {
            Ok(Response::Error(reply)) => Err(from_reply(reply)),
            Ok(response) => Ok(response),
            Err(CallError::Busy { retry_after_ms }) => Err(ApiError::new(
                503,
                "backend_busy",
                "the service is at capacity; retry shortly",
            )
            .retry_after(retry_after_ms.div_ceil(1000))),
            Err(CallError::Unavailable) => Err(ApiError::new(
                503,
                "backend_unavailable",
                "the service is unavailable; retry shortly",
            )
            .retry_after(1)),
            Err(CallError::Timeout) => Err(ApiError::new(
                504,
                "backend_timeout",
                "the service did not answer in time",
            )),
        }
    }
}

fn respond(request: tiny_http::Request, reply: Reply) {
    if let Err(error) = request.respond(reply.into_response()) {
        log::debug!("could not send a response: {error}");
    }
}

fn picture_headers(reply: Reply, etag: &str) -> Reply {
    reply
        .with_header("ETag", etag)
        .with_header("Cache-Control", "public, max-age=31536000, immutable")
        .with_header("X-Content-Type-Options", "nosniff")
}

/// A backend's error reply as the API error the contract names.
fn from_reply(reply: ErrorReply) -> ApiError {
    let retry_after = reply.retry_after_ms.div_ceil(1000).max(1);
    let (status, code) = match reply.code {
        ErrorCode::InvalidUsername => (400, "invalid_username"),
        ErrorCode::InvalidPassword => (400, "invalid_password"),
        ErrorCode::InvalidNickname => (400, "invalid_nickname"),
        ErrorCode::UsernameTaken => (409, "username_taken"),
        ErrorCode::InvalidCredentials => (401, "invalid_credentials"),
        ErrorCode::Unauthorized => return ApiError::unauthorized(),
        ErrorCode::PayloadTooLarge => (413, "payload_too_large"),
        ErrorCode::UnsupportedMediaType => (415, "unsupported_media_type"),
        ErrorCode::NotFound => return ApiError::not_found(),
        ErrorCode::TooManyRequests => {
            return ApiError::new(429, "too_many_requests", reply.message).retry_after(retry_after);
        }
        ErrorCode::Busy => {
            return ApiError::new(503, "backend_busy", reply.message).retry_after(retry_after);
        }
        ErrorCode::Unavailable => {
            return ApiError::new(503, "backend_unavailable", reply.message)
                .retry_after(retry_after);
        }
        ErrorCode::Malformed | ErrorCode::UnsupportedVersion => {
            log::error!("a backend refused our frame: {}", reply.message);
            return ApiError::new(
                502,
                "bad_gateway",
                "the service could not be reached properly",
            );
        }
        ErrorCode::Internal => {
            return ApiError::new(500, "internal_error", "internal error");
        }
        other => {
            log::error!("a backend answered an unknown error code {other:?}");
            return ApiError::new(502, "bad_gateway", "the service answered unexpectedly");
        }
    };
    ApiError::new(status, code, reply.message)
}

fn unexpected(response: Response) -> ApiError {
    log::error!(
        "a backend answered with the wrong message kind {}",
        response.kind()
    );
    ApiError::new(502, "bad_gateway", "the service answered unexpectedly")
}

fn unix_now() -> i64 {
    UNIX_EPOCH.elapsed().map_or(0, |now| now.as_secs() as i64)
}

/// Unix seconds as RFC 3339 (`2026-11-25T09:00:00Z`).
fn rfc3339(unix_seconds: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(unix_seconds.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn every_route_but_unknown_allows_a_method() {
        for route in Route::ALL {
            assert_eq!(
                route.allow().is_empty(),
                route == Route::Unknown,
                "{route:?}"
            );
        }
    }
}
