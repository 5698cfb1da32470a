//! Update nickname: same rules as at registration.

use proto::{ErrorCode, Profile, UpdateNickname};

use super::{Context, OpError, auth, profile_from};
use crate::rules;

const UPDATE: &str = "UPDATE users SET nickname = $2 WHERE id = $1 AND deleted_at IS NULL \
     RETURNING id, username, nickname, picture_id";

pub(super) fn run(ctx: &Context, request: UpdateNickname) -> Result<Profile, OpError> {
    let nickname = rules::check_nickname(&request.nickname)
        .map_err(|e| OpError::new(ErrorCode::InvalidNickname, e.0))?;
    let (claims, _) = auth::session(ctx, request.token.expose())?;
    let row = ctx.db.run(|conn| {
        let statement = conn.prepared(UPDATE)?;
        conn.client()
            .query_opt(&statement, &[&claims.user_id, &nickname])
    })?;
    match row {
        Some(row) => Ok(profile_from(&row)),
        None => Err(OpError::unauthorized()),
    }
}
