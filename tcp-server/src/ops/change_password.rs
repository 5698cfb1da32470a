//! Change password: the current password checked as a login's (same throttle, same answer and
//! timing for every failure), the new one held to the password rules, then every session of the
//! account ends and the caller gets a new one in the answer.

use proto::{ChangePassword, ErrorCode, Session};

use super::{Context, OpError, auth};
use crate::rules;

// The epoch condition makes the change and the caller's session one decision: if the account's
// sessions were ended since the token was checked, the change is refused like the session.
const SET: &str = "UPDATE users SET password_hash = $3, session_epoch = session_epoch + 1 \
     WHERE id = $1 AND session_epoch = $2 AND deleted_at IS NULL RETURNING session_epoch";

pub(super) fn run(ctx: &Context, request: ChangePassword) -> Result<Session, OpError> {
    let (claims, profile) = auth::session(ctx, request.token.expose())?;
    let new = request.new_password.expose();
    rules::check_password(new).map_err(|e| OpError::new(ErrorCode::InvalidPassword, e.0))?;
    rules::check_strength(new, &[&profile.username, &profile.nickname])
        .map_err(|weak| OpError::new(ErrorCode::WeakPassword, weak.0))?;
    let mut account = auth::password(
        ctx,
        &profile.username,
        &request.current_password,
        request.client.as_deref(),
        request.device.as_ref(),
    )?;
    if account.profile.id != claims.user_id {
        // The name now belongs to another account: this session's was deleted meanwhile.
        return Err(OpError::unauthorized());
    }
    let hash = ctx.hasher.hash(new)?;
    // Not retried: a retry after a commit whose answer was lost would find the epoch moved on
    // and answer Unauthorized for a change that was made.
    let row = ctx.db.run_once(&mut |conn| {
        let statement = conn.prepared(SET)?;
        conn.client()
            .query_opt(&statement, &[&claims.user_id, &claims.epoch, &hash])
    })?;
    let Some(row) = row else {
        return Err(OpError::unauthorized());
    };
    account.epoch = row.get(0);
    auth::open_session(ctx, account)
}
