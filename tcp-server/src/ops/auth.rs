//! Authenticating a request by its session token: signature and expiry locally, revocation and
//! the account's existence in the same query that loads the profile.

use proto::Profile;

use super::{Context, OpError, profile_from, unix_now};
use crate::token::Claims;

const SESSION_USER: &str = "SELECT u.id, u.username, u.nickname, u.picture_id, \
     EXISTS (SELECT 1 FROM revoked_sessions r WHERE r.session_id = $2) \
     FROM users u WHERE u.id = $1";

/// The session and profile behind `token`, or `Unauthorized` for a malformed, tampered,
/// expired or revoked token (or a deleted account), all alike.
pub(super) fn session(ctx: &Context, token: &str) -> Result<(Claims, Profile), OpError> {
    let claims = ctx
        .tokens
        .verify(token, unix_now())
        .map_err(|_| OpError::unauthorized())?;
    let row = ctx.db.run(|conn| {
        let statement = conn.prepared(SESSION_USER)?;
        conn.client().query_opt(
            &statement,
            &[&claims.user_id, &claims.session_id.as_slice()],
        )
    })?;
    match row {
        Some(row) if !row.get::<_, bool>(4) => Ok((claims, profile_from(&row))),
        _ => Err(OpError::unauthorized()),
    }
}
