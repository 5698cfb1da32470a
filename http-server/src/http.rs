//! What every handler shares: the JSON error body, replies, bounded body reads, the session
//! (bearer token or cookie, and the cross-site check on the cookie) and the few request headers
//! the API looks at.

use std::io::{self, Read};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tiny_http::{Header, Request, Response, StatusCode};

/// A reply ready to send: status, headers and body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON body.
    pub fn json<T: Serialize>(status: u16, value: &T) -> Reply {
        // Serialising our own plain structs cannot fail.
        let body = serde_json::to_vec(value).unwrap_or_default();
        Reply {
            status,
            headers: vec![header("Content-Type", "application/json")],
            body,
        }
    }

    /// No body.
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push(header(name, value));
        self
    }

    /// The tiny_http response.
    pub fn into_response(self) -> Response<io::Cursor<Vec<u8>>> {
        let length = self.body.len();
        Response::new(
            StatusCode(self.status),
            self.headers,
            io::Cursor::new(self.body),
            Some(length),
            None,
        )
    }
}

/// A header built by this crate: names are constants and values are ASCII the crate made
/// (numbers, media types, validated picture keys), never client input.
pub fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("header names and values built by http-server are ASCII")
}

/// The error codes of the API: what a client can act on. Each has one status and one wire
/// string, written once below, so the compiler checks every use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiCode {
    /// 400: a malformed query parameter.
    BadRequest,
    /// 400: not JSON, a missing or unknown field, or a wrong type.
    InvalidJson,
    /// 400: the body was cut short or badly chunked.
    InvalidBody,
    /// 400: the username breaks the rules.
    InvalidUsername,
    /// 400: the password breaks the length rule.
    InvalidPassword,
    /// 400: the new password is too easy to guess; the message says why.
    WeakPassword,
    /// 400: the nickname breaks the rules.
    InvalidNickname,
    /// 401: unknown user or wrong password (the two are not told apart).
    InvalidCredentials,
    /// 401: no valid session.
    Unauthorized,
    /// 403: a cookie-authenticated change from another origin.
    CrossSiteRequest,
    /// 404.
    NotFound,
    /// 405, with `Allow`.
    MethodNotAllowed,
    /// 408: the body arrived too slowly.
    RequestTimeout,
    /// 409: the username is taken.
    UsernameTaken,
    /// 413.
    PayloadTooLarge,
    /// 415.
    UnsupportedMediaType,
    /// 429, with `Retry-After`.
    TooManyRequests,
    /// 500.
    InternalError,
    /// 502: a backend answered something it should not.
    BadGateway,
    /// 503: every backend is at its bound.
    BackendBusy,
    /// 503: no backend can be reached.
    BackendUnavailable,
    /// 503: too many large bodies are being read at once.
    UploadsBusy,
    /// 503: the request waited for a worker past `--max-queue-wait`.
    Overloaded,
    /// 503: the server is stopping.
    ShuttingDown,
    /// 504: a backend took the request and did not answer in time.
    BackendTimeout,
}

impl ApiCode {
    /// The HTTP status this code is answered with.
    pub fn status(self) -> u16 {
        match self {
            ApiCode::BadRequest
            | ApiCode::InvalidJson
            | ApiCode::InvalidBody
            | ApiCode::InvalidUsername
            | ApiCode::InvalidPassword
            | ApiCode::WeakPassword
            | ApiCode::InvalidNickname => 400,
            ApiCode::InvalidCredentials | ApiCode::Unauthorized => 401,
            ApiCode::CrossSiteRequest => 403,
            ApiCode::NotFound => 404,
            ApiCode::MethodNotAllowed => 405,
            ApiCode::RequestTimeout => 408,
            ApiCode::UsernameTaken => 409,
            ApiCode::PayloadTooLarge => 413,
            ApiCode::UnsupportedMediaType => 415,
            ApiCode::TooManyRequests => 429,
            ApiCode::InternalError => 500,
            ApiCode::BadGateway => 502,
            ApiCode::BackendBusy
            | ApiCode::BackendUnavailable
            | ApiCode::UploadsBusy
            | ApiCode::Overloaded
            | ApiCode::ShuttingDown => 503,
            ApiCode::BackendTimeout => 504,
        }
    }

    /// The code as the error body carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiCode::BadRequest => "bad_request",
            ApiCode::InvalidJson => "invalid_json",
            ApiCode::InvalidBody => "invalid_body",
            ApiCode::InvalidUsername => "invalid_username",
            ApiCode::InvalidPassword => "invalid_password",
            ApiCode::WeakPassword => "weak_password",
            ApiCode::InvalidNickname => "invalid_nickname",
            ApiCode::InvalidCredentials => "invalid_credentials",
            ApiCode::Unauthorized => "unauthorized",
            ApiCode::CrossSiteRequest => "cross_site_request",
            ApiCode::NotFound => "not_found",
            ApiCode::MethodNotAllowed => "method_not_allowed",
            ApiCode::RequestTimeout => "request_timeout",
            ApiCode::UsernameTaken => "username_taken",
            ApiCode::PayloadTooLarge => "payload_too_large",
            ApiCode::UnsupportedMediaType => "unsupported_media_type",
            ApiCode::TooManyRequests => "too_many_requests",
            ApiCode::InternalError => "internal_error",
            ApiCode::BadGateway => "bad_gateway",
            ApiCode::BackendBusy => "backend_busy",
            ApiCode::BackendUnavailable => "backend_unavailable",
            ApiCode::UploadsBusy => "uploads_busy",
            ApiCode::Overloaded => "overloaded",
            ApiCode::ShuttingDown => "shutting_down",
            ApiCode::BackendTimeout => "backend_timeout",
        }
    }
}

/// An API error: the code (and so the status) and the body
/// `{"error": {"code", "message", "request_id"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ApiCode,
    pub message: String,
    /// Seconds, for `Retry-After` (503 and 429).
    pub retry_after: Option<u32>,
    /// The methods a path allows, for `Allow` (405).
    pub allow: Option<String>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorFields<'a>,
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    code: &'a str,
    message: &'a str,
    /// The request's id (its `X-Request-Id`), the key to both tiers' log lines about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl ApiError {
    pub fn new(code: ApiCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }

    pub fn retry_after(mut self, seconds: u32) -> ApiError {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn invalid_json(message: impl Into<String>) -> ApiError {
        ApiError::new(ApiCode::InvalidJson, message)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(ApiCode::NotFound, "no such resource")
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            ApiCode::Unauthorized,
            "a valid session is required (Authorization: Bearer <token>, or the session cookie)",
        )
    }

    pub fn method_not_allowed(allow: String) -> ApiError {
        ApiError {
            message: format!("this resource allows {allow}"),
            allow: Some(allow),
            ..ApiError::new(ApiCode::MethodNotAllowed, "")
        }
    }

    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            ApiCode::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    pub fn reply(&self) -> Reply {
        let mut reply = Reply::json(
            self.status(),
            &ErrorBody {
                error: ErrorFields {
                    code: self.code.as_str(),
                    message: &self.message,
                    request_id: service::logging::request_id(),
                },
            },
        );
        if let Some(seconds) = self.retry_after {
            reply = reply.with_header("Retry-After", &seconds.to_string());
        }
        if let Some(allow) = &self.allow {
            reply = reply.with_header("Allow", allow);
        }
        if self.status() == 401 {
            reply = reply.with_header("WWW-Authenticate", "Bearer");
        }
        reply
    }
}

/// The value of a request header, if present once or more (the first one).
pub fn header_value<'a>(request: &'a Request, name: &'static str) -> Option<&'a str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

/// The media type of the body, lower-cased and without parameters (`; charset=...`).
pub fn media_type(request: &Request) -> Option<String> {
    header_value(request, "Content-Type").map(|value| {
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    })
}

/// The cookie that carries the session for the web pages: HttpOnly, so no script reads it, and
/// SameSite=Strict, so the browser sends it only with requests from the pages themselves; and
/// where the pages live, for the cross-site check on requests that rely on it.
#[derive(Debug, Clone)]
pub struct SessionCookie {
    name: &'static str,
    /// The cookie that carries the device token the login hands out (see `set_device`).
    device_name: &'static str,
    secure: bool,
    origin: Option<String>,
}

impl SessionCookie {
    /// `secure`: the cookie is `Secure` and named `__Host-gatehouse_session`, a name browsers
    /// accept only from this very host over HTTPS, so a sibling subdomain cannot plant one.
    /// `origin`: where browsers reach the pages (`https://accounts.example.com`); without it,
    /// `http://` (`https://` when `secure`) and the request's `Host`.
    pub fn new(secure: bool, origin: Option<String>) -> SessionCookie {
        SessionCookie {
            name: if secure {
                "__Host-gatehouse_session"
            } else {
                "gatehouse_session"
            },
            device_name: if secure {
                "__Host-gatehouse_device"
            } else {
                "gatehouse_device"
            },
            secure,
            origin,
        }
    }

    /// The cookie's value. Two or more session cookies (one planted under a parent domain, say)
    /// are no session: which one the browser meant cannot be told.
    fn value<'r>(&self, request: &'r Request) -> Result<Option<&'r str>, ApiError> {
        match cookie_values(request, self.name) {
            (None, _) => Ok(None),
            (Some(value), None) => Ok(Some(value)),
            (Some(_), Some(_)) => Err(ApiError::unauthorized()),
        }
    }

    /// The device token of a login: the `Device-Token` header (API clients), else the pages'
    /// device cookie. Anything that is not exactly one plausible token is no token: the client
    /// is then simply not recognised.
    pub fn device_token(&self, request: &Request) -> Option<String> {
        let token = match header_value(request, "Device-Token") {
            Some(value) => Some(value.trim()),
            None => match cookie_values(request, self.device_name) {
                (Some(value), None) => Some(value),
                _ => None,
            },
        }?;
        (!token.is_empty() && token.len() <= MAX_TOKEN_LEN).then(|| token.to_owned())
    }

    /// The `Set-Cookie` value that stores a device token: HttpOnly and SameSite=Strict like the
    /// session, and kept as long as browsers keep a cookie (400 days); the token's own expiry,
    /// checked by tcp-server, is what counts.
    pub fn set_device(&self, token: &str) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
            self.device_name,
            400 * 24 * 3600
        )
    }

    /// Whether the request carries the cookie (the pages' own check; the API checks the value).
    pub fn present(&self, request: &Request) -> bool {
        !matches!(self.value(request), Ok(None))
    }

    /// Whether the session of the request is the cookie's: exactly one, and no bearer token.
    pub fn in_use(&self, request: &Request) -> bool {
        !has_bearer(request) && matches!(self.value(request), Ok(Some(_)))
    }

    /// The `Set-Cookie` value that stores a session for `max_age_seconds`.
    pub fn set(&self, token: &str, max_age_seconds: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
            self.name,
            max_age_seconds.max(0)
        )
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub fn clear(&self) -> String {
        self.set("", 0)
    }

    /// Refuses (403 `cross_site_request`) a request whose `Origin` is not where the pages
    /// live: a browser sends `Origin` with every POST, PUT, PATCH and DELETE, and another site
    /// cannot forge it. SameSite=Strict already keeps the cookie off cross-site requests in
    /// current browsers; this holds where it does not (older browsers, a sibling subdomain,
    /// which is the same site, or a plain-HTTP page of the same host).
    pub fn same_origin(&self, request: &Request) -> Result<(), ApiError> {
        let expected = match (&self.origin, header_value(request, "Host")) {
            (Some(origin), _) => Some(origin.clone()),
            (None, Some(host)) => {
                let scheme = if self.secure { "https" } else { "http" };
                Some(format!("{scheme}://{}", host.trim()))
            }
            (None, None) => None,
        };
        match (header_value(request, "Origin"), expected) {
            (Some(origin), Some(expected)) if origin.trim().eq_ignore_ascii_case(&expected) => {
                Ok(())
            }
            _ => Err(ApiError::new(
                ApiCode::CrossSiteRequest,
                "a request that uses the session cookie must come from this site's pages (its \
                 Origin header must name this server)",
            )),
        }
    }

    /// The session token of a request: the bearer token of the `Authorization` header when
    /// there is one, else the cookie. A request that changes state on the strength of the
    /// cookie must come from the pages ([`SessionCookie::same_origin`]); a bearer token needs no
    /// such check, since a browser never adds one to a request by itself.
    pub fn session_token(&self, request: &Request) -> Result<String, ApiError> {
        // Only a bearer token outranks the cookie: a browser behind HTTP Basic auth adds
        // `Authorization: Basic` to the pages' own calls.
        if has_bearer(request)
            || (header_value(request, "Authorization").is_some() && !self.present(request))
        {
            return bearer_token(request);
        }
        let token = self.value(request)?.ok_or_else(ApiError::unauthorized)?;
        if !matches!(
            request.method(),
            tiny_http::Method::Get | tiny_http::Method::Head
        ) {
            self.same_origin(request)?;
        }
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(ApiError::unauthorized());
        }
        Ok(token.to_owned())
    }
}

/// Tokens are 99 (session) and 78 (device) base64url characters; anything far longer is not
/// one, and is not sent on.
const MAX_TOKEN_LEN: usize = 512;

/// Every value of the cookie `name` in the request's `Cookie` headers: the first two.
fn cookie_values<'r>(request: &'r Request, name: &str) -> (Option<&'r str>, Option<&'r str>) {
    let mut values = request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Cookie"))
        .flat_map(|h| h.value.as_str().split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(cookie, _)| *cookie == name)
        .map(|(_, value)| value.trim());
    (values.next(), values.next())
}

/// The client's address, for the throttle: the peer's, or, when the peer is one of the
/// `trusted` proxies, the last address in `X-Forwarded-For` that is not one of them (the
/// entries before it were written by the client and prove nothing).
pub fn client_address(request: &Request, trusted: &[IpAddr]) -> Option<String> {
    let peer = request.remote_addr()?.ip().to_canonical();
    if !trusted.contains(&peer) {
        return Some(peer.to_string());
    }
    let hops: Vec<&str> = request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("X-Forwarded-For"))
        .flat_map(|h| h.value.as_str().split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return Some(ip.to_string()),
            // Not an address: the proxy did not write it; the proxy is all that is known.
            Err(_) => break,
        }
    }
    Some(peer.to_string())
}

/// Whether the request has an `Authorization: Bearer` header.
fn has_bearer(request: &Request) -> bool {
    header_value(request, "Authorization").is_some_and(|value| {
        value
            .trim_start()
            .get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer "))
    })
}

/// The bearer token of the `Authorization` header.
fn bearer_token(request: &Request) -> Result<String, ApiError> {
    let value = header_value(request, "Authorization").ok_or_else(ApiError::unauthorized)?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or_else(ApiError::unauthorized)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(ApiError::unauthorized());
    }
    Ok(token.to_owned())
}

/// Whether the query string of the request's URL has `name=true` (`false` or absent: no); any
/// other value is a 400.
pub fn query_flag(request: &Request, name: &str) -> Result<bool, ApiError> {
    let query = request.url().split_once('?').map_or("", |(_, query)| query);
    let mut value = false;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, flag) = pair.split_once('=').unwrap_or((pair, ""));
        if key == name {
            value = match flag {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(ApiError::new(
                        ApiCode::BadRequest,
                        format!("the query parameter {name} must be true or false"),
                    ));
                }
            };
        }
    }
    Ok(value)
}

/// The slowest a body may arrive: after `grace`, at least `min_rate` bytes a second on average,
/// so every body has a deadline that grows with what has arrived. (A body of up to
/// `tiny_http::PRE_READ_LIMIT` was read whole before the request was handed over, within the
/// client idle timeout.)
#[derive(Debug, Clone, Copy)]
pub struct BodyPace {
    /// How long before the rate starts to count.
    pub grace: Duration,
    /// Bytes a second, on average, at least.
    pub min_rate: u64,
}

/// A reader that fails with `TimedOut` once the body falls behind its [`BodyPace`]. Checked
/// before each read, so a client can overrun by at most one read timeout of its socket.
struct Paced<R> {
    inner: R,
    pace: BodyPace,
    started: Instant,
    received: u64,
}

impl<R: Read> Read for Paced<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let allowed = self.pace.grace
            + Duration::from_secs_f64(self.received as f64 / self.pace.min_rate.max(1) as f64);
        if self.started.elapsed() > allowed {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request body arrives too slowly",
            ));
        }
        let read = self.inner.read(buf)?;
        self.received += read as u64;
        Ok(read)
    }
}

/// Places for workers reading a body off the socket: at most `max` at once, so clients that
/// send slowly cannot hold every worker.
pub struct BodySlots {
    used: AtomicUsize,
    max: usize,
}

/// A taken place, given back on drop.
pub struct BodySlot<'a>(&'a BodySlots);

impl BodySlots {
    pub fn new(max: usize) -> BodySlots {
        BodySlots {
            used: AtomicUsize::new(0),
            max: max.max(1),
        }
    }

    /// A place, or `None` when all are taken.
    pub fn try_take(&self) -> Option<BodySlot<'_>> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.max).then_some(used + 1)
            })
            .ok()
            .map(|_| BodySlot(self))
    }
}

impl Drop for BodySlot<'_> {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads the body at no less than `pace` (else 408), refusing it with 413 past `limit` bytes
/// without reading further: a declared length over the limit is refused before a byte is read.
pub fn read_body(request: &mut Request, limit: usize, pace: BodyPace) -> Result<Vec<u8>, ApiError> {
    if request.body_length().is_some_and(|length| length > limit) {
        return Err(ApiError::payload_too_large(limit));
    }
    let mut body = Vec::with_capacity(request.body_length().unwrap_or(0).min(limit));
    let read = Paced {
        inner: request.as_reader(),
        pace,
        started: Instant::now(),
        received: 0,
    }
    .take(limit as u64 + 1)
    .read_to_end(&mut body);
    match read {
        Ok(_) if body.len() > limit => Err(ApiError::payload_too_large(limit)),
        Ok(_) => Ok(body),
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(ApiError::new(
                ApiCode::RequestTimeout,
                "the request body did not arrive in time",
            ))
        }
        Err(_) => Err(ApiError::new(
            ApiCode::InvalidBody,
            "the request body could not be read (truncated or badly chunked)",
        )),
    }
}

/// Reads a JSON body of type `T`: 415 for another content type, 413 past `limit`, 400
/// `invalid_json` for anything that is not exactly a `T`.
pub fn read_json<T: DeserializeOwned>(
    request: &mut Request,
    limit: usize,
    pace: BodyPace,
) -> Result<T, ApiError> {
    if media_type(request).as_deref() != Some("application/json") {
        return Err(ApiError::new(
            ApiCode::UnsupportedMediaType,
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    let body = read_body(request, limit, pace)?;
    // serde's derived structs also accept an array of the fields in order; the API's bodies
    // are objects only.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::invalid_json("the body must be a JSON object"));
    }
    serde_json::from_slice(&body).map_err(|error| ApiError::invalid_json(error.to_string()))
}
