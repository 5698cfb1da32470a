//! `/api/v1/users`: registration.

use proto::{Register, Request, Response, Secret};
use serde::Deserialize;

use super::{Api, ProfileBody, unexpected};
use crate::http::{self, ApiError, Reply};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    username: String,
    password: String,
    #[serde(default)]
    nickname: Option<String>,
}

/// `POST /api/v1/users`: a new account; 201 with its profile.
pub fn register(api: &Api, request: &mut tiny_http::Request, _: &str) -> Result<Reply, ApiError> {
    let body: RegisterBody = http::read_json(request, api.max_json_body, api.body_pace)?;
    let register = Request::Register(Register {
        username: body.username,
        password: Secret::new(body.password),
        nickname: body.nickname,
        // tcp-server limits registrations per client address.
        client: http::client_address(request, &api.trusted_proxies),
    });
    match api.call(&register, false)? {
        Response::Register(profile) => Ok(Reply::json(201, &ProfileBody::from(profile))),
        other => Err(unexpected(other)),
    }
}
