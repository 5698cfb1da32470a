//! Delete account: the password checked as a login's, then, in one transaction, the account's
//! pictures are deleted and its row emptied and marked deleted, which ends its sessions (their
//! check finds no account). The row keeps only the username, so that nobody can register it
//! during the cooling-off period (`--deleted-username-hold`); then registration or the janitor
//! removes it and the name is free again.

use proto::DeleteAccount;

use super::{Context, OpError, auth};

const DELETE_PICTURES: &str = "DELETE FROM pictures WHERE user_id = $1";
const EMPTY: &str = "UPDATE users SET deleted_at = now(), password_hash = '', nickname = '', \
     picture_id = NULL, session_epoch = session_epoch + 1 \
     WHERE id = $1 AND session_epoch = $2 AND deleted_at IS NULL";
const PURGE: &str = "DELETE FROM users WHERE deleted_at < now() - make_interval(secs => $1)";

pub(super) fn run(ctx: &Context, request: DeleteAccount) -> Result<(), OpError> {
    let (claims, profile) = auth::session(ctx, request.token.expose())?;
    let account = auth::password(
        ctx,
        &profile.username,
        &request.password,
        request.client.as_deref(),
        request.device.as_ref(),
    )?;
    if account.profile.id != claims.user_id {
        return Err(OpError::unauthorized());
    }
    // The epoch condition: an account whose sessions were ended since the token was checked is
    // not deleted by that token. Not retried: a repeat after a lost commit would answer
    // Unauthorized for an account that is gone.
    let deleted = ctx.db.run_once(&mut |conn| {
        let (pictures, empty) = (conn.prepared(DELETE_PICTURES)?, conn.prepared(EMPTY)?);
        let mut tx = conn.client().transaction()?;
        if tx.execute(&empty, &[&claims.user_id, &claims.epoch])? == 0 {
            return Ok(false);
        }
        tx.execute(&pictures, &[&claims.user_id])?;
        tx.commit()?;
        Ok(true)
    })?;
    if !deleted {
        return Err(OpError::unauthorized());
    }
    log::info!("deleted the account of user {}", claims.user_id);
    Ok(())
}

/// Removes the rows of accounts deleted longer ago than the cooling-off period, whose names are
/// free again; returns how many. Run now and then, so no deleted username stays in the
/// database much past its period (registration frees a name at once when it is asked for).
pub(crate) fn purge_deleted(ctx: &Context) -> Result<u64, crate::db::DbError> {
    let hold = ctx.deleted_username_hold.as_secs_f64();
    ctx.db.run(|conn| {
        let statement = conn.prepared(PURGE)?;
        conn.client().execute(&statement, &[&hold])
    })
}
