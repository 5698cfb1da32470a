//! Update nickname: same rules as at registration.

use proto::{ErrorCode, Response};

use super::{Context, OpError, auth, profile_from};
use crate::rules;

const UPDATE: &str = "UPDATE users SET nickname = $2 WHERE id = $1 \
     RETURNING id, username, nickname, picture_id";

pub(super) fn run(ctx: &Context, token: &str, nickname: &str) -> Result<Response, OpError> {
    let nickname = rules::check_nickname(nickname)
        .map_err(|e| OpError::new(ErrorCode::InvalidNickname, e.0))?;
    let (claims, _) = auth::session(ctx, token)?;
    let row = ctx.db.run(|conn| {
        let statement = conn.prepared(UPDATE)?;
        conn.client()
            .query_opt(&statement, &[&claims.user_id, &nickname])
    })?;
    match row {
        Some(row) => Ok(Response::NicknameUpdated(profile_from(&row))),
        None => Err(OpError::unauthorized()),
    }
}
