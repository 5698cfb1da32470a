//! `/api/v1/sessions`: log in (a bearer token, or the pages' cookie) and log out; and
//! `/api/v1/me/sessions`: log out everywhere.

use std::time::{Duration, UNIX_EPOCH};

use proto::{Login, Logout, LogoutAll, Request, Response, Secret, Session};
use serde::{Deserialize, Serialize};

use super::{Api, ProfileBody, unexpected};
use crate::http::{self, ApiError, Reply};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
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

/// `POST /api/v1/sessions`: a session for the right password. With `?cookie=true` (the pages'
/// login) the session and the device token go into HttpOnly cookies instead of the body, and
/// only from this site's own pages (else another site could log a visitor into an account of
/// its choosing).
pub fn login(api: &Api, request: &mut tiny_http::Request, _: &str) -> Result<Reply, ApiError> {
    let cookie = http::query_flag(request, "cookie")?;
    if cookie {
        api.cookie.same_origin(request)?;
    }
    let body: LoginBody = http::read_json(request, api.max_json_body, api.body_pace)?;
    // Every login for one username goes to the same tcp-server: its throttle sees them all.
    let key = proto::username_key(&body.username);
    let login = Request::Login(Login {
        username: body.username,
        password: Secret::new(body.password),
        // tcp-server throttles failed logins per account, device and client address.
        client: http::client_address(request, &api.trusted_proxies),
        device: api.cookie.device_token(request).map(Secret::new),
    });
    match api.call_for(&key, &login, true)? {
        Response::Login(session) => Ok(session_reply(api, session, cookie)),
        other => Err(unexpected(other)),
    }
}

/// The answer that hands a client a session: in the body for API clients, in the HttpOnly
/// cookies for the pages (`cookie`). Login and the password change answer with it.
pub(super) fn session_reply(api: &Api, session: Session, cookie: bool) -> Reply {
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
        return reply;
    }
    let lifetime = session.expires_at - unix_now();
    reply
        .with_header("Set-Cookie", &api.cookie.set(&token, lifetime))
        .with_header("Set-Cookie", &api.cookie.set_device(&device_token))
}

/// `DELETE /api/v1/sessions/current`: revokes the session; a page's logout also removes the
/// cookie (a 401 does too, in `Api::route`).
pub fn logout(api: &Api, request: &mut tiny_http::Request, _: &str) -> Result<Reply, ApiError> {
    let token = Secret::new(api.cookie.session_token(request)?);
    match api.call(&Request::Logout(Logout { token }), true)? {
        Response::Logout(()) if api.cookie.in_use(request) => {
            Ok(Reply::empty(204).with_header("Set-Cookie", &api.cookie.clear()))
        }
        Response::Logout(()) => Ok(Reply::empty(204)),
        other => Err(unexpected(other)),
    }
}

/// `DELETE /api/v1/me/sessions`: ends every session of the account, this one included, on
/// every tcp-server; a page's call also removes the cookie.
pub fn logout_all(api: &Api, request: &mut tiny_http::Request, _: &str) -> Result<Reply, ApiError> {
    let token = Secret::new(api.cookie.session_token(request)?);
    // Safe to repeat: the sessions are ended whichever attempt did it.
    match api.call(&Request::LogoutAll(LogoutAll { token }), true)? {
        Response::LogoutAll(()) if api.cookie.in_use(request) => {
            Ok(Reply::empty(204).with_header("Set-Cookie", &api.cookie.clear()))
        }
        Response::LogoutAll(()) => Ok(Reply::empty(204)),
        other => Err(unexpected(other)),
    }
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
}
