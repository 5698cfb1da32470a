//! `/api/v1/me`: the caller's profile, and its nickname.

use proto::{GetProfile, Request, Response, Secret, UpdateNickname};
use serde::Deserialize;

use super::{Api, ProfileBody, unexpected};
use crate::http::{self, ApiError, Reply};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NicknameBody {
    nickname: String,
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
