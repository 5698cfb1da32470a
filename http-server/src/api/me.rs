//! `/api/v1/me`: the caller's profile and its nickname, the password, and the account itself.

use proto::{ChangePassword, DeleteAccount, GetProfile, Request, Response, Secret, UpdateNickname};
use serde::Deserialize;

use super::{Api, ProfileBody, sessions, unexpected};
use crate::http::{self, ApiError, Reply};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NicknameBody {
    nickname: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChangeBody {
    current_password: String,
    new_password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeletionBody {
    password: String,
}

/// `GET /api/v1/me`: the session's profile.
pub fn profile(api: &Api, request: &mut tiny_http::Request, _: &str) -> Result<Reply, ApiError> {
    let token = Secret::new(api.cookie.session_token(request)?);
    match api.call(&Request::GetProfile(GetProfile { token }), true)? {
        Response::GetProfile(profile) => Ok(Reply::json(200, &ProfileBody::from(profile))),
        other => Err(unexpected(other)),
    }
}

/// `PATCH /api/v1/me`: a new nickname; the profile as it is now.
pub fn update_nickname(
    api: &Api,
    request: &mut tiny_http::Request,
    _: &str,
) -> Result<Reply, ApiError> {
    let token = Secret::new(api.cookie.session_token(request)?);
    let body: NicknameBody = http::read_json(request, api.max_json_body, api.body_pace)?;
    let update = Request::UpdateNickname(UpdateNickname {
        token,
        nickname: body.nickname,
    });
    match api.call(&update, true)? {
        Response::UpdateNickname(profile) => Ok(Reply::json(200, &ProfileBody::from(profile))),
        other => Err(unexpected(other)),
    }
}

/// `PUT /api/v1/me/password`: a new password, given the current one (checked and throttled as a
/// login's). Every session of the account ends, this one included; the answer is a new session,
/// as a login's: in the body, or in the cookie when the session came from it.
pub fn change_password(
    api: &Api,
    request: &mut tiny_http::Request,
    _: &str,
) -> Result<Reply, ApiError> {
    let token = api.cookie.session_token(request)?;
    let body: PasswordChangeBody = http::read_json(request, api.max_json_body, api.body_pace)?;
    // Guesses at the current password are throttled as logins are; all of one token's meet on
    // one backend. (The token, not the username, which only the backend can read from it.)
    let route = token.clone();
    let change = Request::ChangePassword(ChangePassword {
        token: Secret::new(token),
        current_password: Secret::new(body.current_password),
        new_password: Secret::new(body.new_password),
        client: http::client_address(request, &api.trusted_proxies),
        device: api.cookie.device_token(request).map(Secret::new),
    });
    // Not repeated on another backend: once one has made the change, a repeat would find the
    // session ended and answer 401 for a change that was made.
    match api.call_for(&route, &change, false)? {
        Response::ChangePassword(session) => Ok(sessions::session_reply(
            api,
            session,
            api.cookie.in_use(request),
        )),
        other => Err(unexpected(other)),
    }
}

/// `DELETE /api/v1/me`: deletes the account, given its password (checked and throttled as a
/// login's): its profile, pictures and sessions are gone at once; a page's call also removes the
/// cookie.
pub fn delete_account(
    api: &Api,
    request: &mut tiny_http::Request,
    _: &str,
) -> Result<Reply, ApiError> {
    let token = api.cookie.session_token(request)?;
    let body: DeletionBody = http::read_json(request, api.max_json_body, api.body_pace)?;
    // Routed as a password change is, for the same reason.
    let route = token.clone();
    let delete = Request::DeleteAccount(DeleteAccount {
        token: Secret::new(token),
        password: Secret::new(body.password),
        client: http::client_address(request, &api.trusted_proxies),
        device: api.cookie.device_token(request).map(Secret::new),
    });
    // Not repeated: a repeat after the deletion would answer 401 for an account that is gone.
    match api.call_for(&route, &delete, false)? {
        Response::DeleteAccount(()) if api.cookie.in_use(request) => {
            Ok(Reply::empty(204).with_header("Set-Cookie", &api.cookie.clear()))
        }
        Response::DeleteAccount(()) => Ok(Reply::empty(204)),
        other => Err(unexpected(other)),
    }
}
