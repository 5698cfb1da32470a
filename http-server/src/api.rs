//! API v1, the operational endpoints and the web pages: the routing table, and for each API
//! route how the HTTP request becomes a proto request and the proto response becomes JSON. The
//! contract is `docs/openapi.yaml`; a test holds the two together.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant, UNIX_EPOCH};

use proto::{ErrorCode, ErrorReply, ImageFormat, Profile, Request, Response, Secret};
use serde::{Deserialize, Serialize};

use crate::Config;
use crate::backend::{Backends, CallError};
use crate::http::{self, ApiError, BodyPace, BodySlots, Reply, SessionCookie};
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

    /// Whether `docs/openapi.yaml` describes the route: the API and the health checks of the
    /// public listener, not the pages (nor `/metrics`, which only the admin listener serves).
    pub fn is_api(self) -> bool {
        !matches!(self, Route::Page | Route::Asset | Route::Metrics)
    }

    /// Whether the route's answers carry account data (a profile, a session or its token).
    fn carries_account_data(self) -> bool {
        matches!(
            self,
            Route::Users | Route::Sessions | Route::CurrentSession | Route::Me | Route::MePicture
        )
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

/// Which listener a request came in on: the public one serves the API and the pages, the
/// admin one (loopback by default) the metrics; both answer `/healthz` and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Admin,
}

/// How long a client told to wait for a body slot should wait, in seconds.
const BODY_SLOTS_RETRY_AFTER: u32 = 5;

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
    /// For the `Device-Token` header of the next login; left out (it went into the device
    /// cookie) for the pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    device_token: Option<String>,
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
        let route = Route::of(&path);
        let method = request.method().clone();
        let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.route(route, listener, &path, &mut request)
        }))
        .unwrap_or_else(|_| {
            log::error!("a handler panicked on {method} {}", route.name());
            ApiError::new(500, "internal_error", "internal error").reply()
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
        self.metrics.record(route, status, took);
        log::debug!(
            "{method} {} {status} {:.3}ms",
            route.name(),
            took.as_secs_f64() * 1e3
        );
    }

    fn route(
        &self,
        route: Route,
        listener: Listener,
        path: &str,
        request: &mut tiny_http::Request,
    ) -> Reply {
        use tiny_http::Method::{Delete, Get, Head, Patch, Post, Put};
        let method = request.method().clone();
        let result = match (route, method) {
            (Route::Unknown, _) => Err(ApiError::not_found()),
            // The internal counters are for the operator's listener only; the admin listener
            // serves nothing else but the health checks.
            (Route::Metrics, _) if listener == Listener::Public => Err(ApiError::not_found()),
            (Route::Healthz | Route::Readyz | Route::Metrics, _) if listener == Listener::Admin => {
                match (route, request.method()) {
                    (Route::Healthz, Get) => Ok(Reply::json(200, &StatusBody { status: "ok" })),
                    (Route::Readyz, Get) => self.readyz(),
                    (Route::Metrics, Get) => Ok(self.metrics()),
                    (route, _) => Err(ApiError::method_not_allowed(route.allow())),
                }
            }
            (_, _) if listener == Listener::Admin => Err(ApiError::not_found()),
            (Route::Users, Post) => self.register(request),
            (Route::Sessions, Post) => self.login(request),
            (Route::CurrentSession, Delete) => self.logout(request),
            (Route::Me, Get) => self.profile(request),
            (Route::Me, Patch) => self.update_nickname(request),
            (Route::MePicture, Put) => self.set_picture(request),
            (Route::Picture, Get) => self.picture(request, &path[PICTURES_PATH.len()..]),
            (Route::Healthz, Get) => Ok(Reply::json(200, &StatusBody { status: "ok" })),
            (Route::Readyz, Get) => self.readyz(),
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
        let mut reply = result.unwrap_or_else(|error| error.reply());
        if stale_cookie {
            reply = reply.with_header("Set-Cookie", &self.cookie.clear());
        }
        // Answers about an account (a profile, a session, a token, or an error about one) are
        // never stored by a browser or a shared cache.
        if route.carries_account_data() {
            reply = reply.with_header("Cache-Control", "no-store");
        }
        reply
    }

    fn register(&self, request: &mut tiny_http::Request) -> Result<Reply, ApiError> {
        let body: RegisterBody = http::read_json(request, self.max_json_body, self.body_pace)?;
        let request = Request::Register {
            username: body.username,
            password: Secret::new(body.password),
            nickname: body.nickname,
            // tcp-server limits registrations per client address.
            client: http::client_address(request, &self.trusted_proxies),
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
        let body: LoginBody = http::read_json(request, self.max_json_body, self.body_pace)?;
        let request = Request::Login {
            username: body.username,
            password: Secret::new(body.password),
            // tcp-server throttles failed logins per account, device and client address.
            client: http::client_address(request, &self.trusted_proxies),
            device: self.cookie.device_token(request).map(Secret::new),
        };
        match self.call(&request, true)? {
            Response::LoggedIn(session) => {
                let token = session.token.expose().to_owned();
                let device_token = session.device_token.expose().to_owned();
                let body = SessionBody {
                    token: (!cookie).then(|| token.clone()),
                    expires_at: rfc3339(session.expires_at),
                    user: session.profile.into(),
                    device_token: (!cookie).then(|| device_token.clone()),
                };
                let reply = Reply::json(200, &body);
                if !cookie {
                    return Ok(reply);
                }
                let lifetime = session.expires_at - unix_now();
                Ok(reply
                    .with_header("Set-Cookie", &self.cookie.set(&token, lifetime))
                    .with_header("Set-Cookie", &self.cookie.set_device(&device_token)))
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
        let body: NicknameBody = http::read_json(request, self.max_json_body, self.body_pace)?;
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
        if request
            .body_length()
            .is_some_and(|length| length > self.max_picture_body)
        {
            return Err(ApiError::payload_too_large(self.max_picture_body));
        }
        // A body still on the socket is read at the client's pace, by a worker: only for a
        // session that is valid (a forged or revoked token costs no body read), and by at most
        // `body_slots` workers at once.
        let _slot = if request.body_on_socket() {
            match self.call(
                &Request::GetProfile {
                    token: token.clone(),
                },
                true,
            )? {
                Response::Profile(_) => {}
                other => return Err(unexpected(other)),
            }
            let slot = self.body_slots.try_take().ok_or_else(|| {
                ApiError::new(
                    503,
                    "uploads_busy",
                    "too many uploads are arriving at once; retry shortly",
                )
                .retry_after(BODY_SLOTS_RETRY_AFTER)
            })?;
            Some(slot)
        } else {
            None
        };
        let image = http::read_body(request, self.max_picture_body, self.body_pace)?;
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
        // A key names its content for good, but the picture may be gone (replaced, or its
        // account deleted): a revalidation asks the backend too, and a picture that is gone is
        // 404 for everyone.
        let revalidating = http::header_value(request, "If-None-Match").is_some_and(|value| {
            value
                .split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
        let request = Request::GetPicture {
            key: key.to_owned(),
        };
        match self.call(&request, true)? {
            Response::Picture(_) if revalidating => Ok(picture_headers(Reply::empty(304), &etag)),
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

/// A picture's bytes never change under its key, but its owner can replace or delete it: an
/// hour bounds how long any cache keeps showing a picture its owner took down.
fn picture_headers(reply: Reply, etag: &str) -> Reply {
    reply
        .with_header("ETag", etag)
        .with_header("Cache-Control", "public, max-age=3600, immutable")
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
