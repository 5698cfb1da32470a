//! Pictures: the caller's upload (`PUT /api/v1/me/picture`), read off the socket only for a
//! valid session and by a bounded share of the workers; and any picture by its key
//! (`GET /api/v1/pictures/{key}`), public and cacheable.

use proto::{GetPicture, GetProfile, ImageFormat, Request, Response, Secret, SetPicture};

use super::{Api, ProfileBody, unexpected};
use crate::http::{self, ApiCode, ApiError, Reply};

/// Where pictures are served; a profile's `picture_url` is this plus the picture's key.
pub const PATH: &str = "/api/v1/pictures/";

/// How long a client told to wait for a body slot should wait, in seconds.
const BODY_SLOTS_RETRY_AFTER: u32 = 5;

/// `PUT /api/v1/me/picture`: the body is the image; the profile with its new picture.
pub fn set(api: &Api, request: &mut tiny_http::Request, _: &str) -> Result<Reply, ApiError> {
    let token = Secret::new(api.cookie.session_token(request)?);
    let declared = http::media_type(request);
    if !ImageFormat::ALL
        .iter()
        .any(|format| Some(format.media_type()) == declared.as_deref())
    {
        return Err(ApiError::new(
            ApiCode::UnsupportedMediaType,
            "the picture must be image/png, image/jpeg, image/gif or image/webp",
        ));
    }
    if request
        .body_length()
        .is_some_and(|length| length > api.max_picture_body)
    {
        return Err(ApiError::payload_too_large(api.max_picture_body));
    }
    // A body still on the socket is read at the client's pace, by a worker: only for a session
    // that is valid (a forged or revoked token costs no body read), and by at most
    // `body_slots` workers at once.
    let _slot = if request.body_on_socket() {
        let check = Request::GetProfile(GetProfile {
            token: token.clone(),
        });
        match api.call(&check, true)? {
            Response::GetProfile(_) => {}
            other => return Err(unexpected(other)),
        }
        let slot = api.body_slots.try_take().ok_or_else(|| {
            ApiError::new(
                ApiCode::UploadsBusy,
                "too many uploads are arriving at once; retry shortly",
            )
            .retry_after(BODY_SLOTS_RETRY_AFTER)
        })?;
        Some(slot)
    } else {
        None
    };
    let image = http::read_body(request, api.max_picture_body, api.body_pace)?;
    match api.call(&Request::SetPicture(SetPicture { token, image }), true)? {
        Response::SetPicture(profile) => Ok(Reply::json(200, &ProfileBody::from(profile))),
        other => Err(unexpected(other)),
    }
}

/// `GET /api/v1/pictures/{key}`.
pub fn get(api: &Api, request: &mut tiny_http::Request, path: &str) -> Result<Reply, ApiError> {
    let key = &path[PATH.len()..];
    if !proto::is_picture_key(key) {
        return Err(ApiError::not_found());
    }
    let etag = format!("\"{key}\"");
    // A key names its content for good, but the picture may be gone (replaced, or its account
    // deleted): a revalidation asks the backend too, and a picture that is gone is 404 for
    // everyone.
    let revalidating = http::header_value(request, "If-None-Match").is_some_and(|value| {
        value
            .split(',')
            .any(|tag| tag.trim() == etag || tag.trim() == "*")
    });
    let fetch = Request::GetPicture(GetPicture {
        key: key.to_owned(),
    });
    match api.call(&fetch, true)? {
        Response::GetPicture(_) if revalidating => Ok(headers(Reply::empty(304), &etag)),
        Response::GetPicture(picture) => {
            let reply = Reply {
                status: 200,
                headers: vec![http::header("Content-Type", picture.format.media_type())],
                body: picture.data,
            };
            Ok(headers(reply, &etag))
        }
        other => Err(unexpected(other)),
    }
}

/// A picture's bytes never change under its key, but its owner can replace or delete it: an
/// hour bounds how long any cache keeps showing a picture its owner took down.
fn headers(reply: Reply, etag: &str) -> Reply {
    reply
        .with_header("ETag", etag)
        .with_header("Cache-Control", "public, max-age=3600, immutable")
        .with_header("X-Content-Type-Options", "nosniff")
}
