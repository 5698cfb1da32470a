//! Log out everywhere: every session of the account ends, the caller's included, on every
//! tcp-server at once: the account's session epoch moves on, and the session check refuses a
//! token of an earlier epoch. One write, and nothing added to a login.

use proto::LogoutAll;

use super::{Context, OpError, auth};

const END_ALL: &str = "UPDATE users SET session_epoch = session_epoch + 1 \
     WHERE id = $1 AND session_epoch = $2 AND deleted_at IS NULL";

pub(super) fn run(ctx: &Context, request: LogoutAll) -> Result<(), OpError> {
    let (claims, _) = auth::session(ctx, request.token.expose())?;
    // Safe to repeat: once it has committed, the repeat finds the epoch moved on and changes
    // nothing, and the sessions are ended either way.
    ctx.db.run(|conn| {
        let statement = conn.prepared(END_ALL)?;
        conn.client()
            .execute(&statement, &[&claims.user_id, &claims.epoch])
    })?;
    Ok(())
}
