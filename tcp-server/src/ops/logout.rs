//! Logout: revoke exactly the session the token names.

use proto::Logout;

use super::{Context, OpError, auth};

const REVOKE: &str = "INSERT INTO revoked_sessions (session_id, expires_at) \
     VALUES ($1, to_timestamp($2)) ON CONFLICT DO NOTHING";
// An hour's margin: expiry is judged by this server's clock, pruning by the database's, and a
// revocation forgotten early would let its token back in.
const PRUNE: &str = "DELETE FROM revoked_sessions WHERE expires_at < now() - interval '1 hour'";

pub(super) fn run(ctx: &Context, request: Logout) -> Result<(), OpError> {
    let (claims, _) = auth::session(ctx, request.token.expose())?;
    let expires_at = claims.expires_at as f64;
    ctx.db.run(|conn| {
        let statement = conn.prepared(REVOKE)?;
        conn.client()
            .execute(&statement, &[&claims.session_id.as_slice(), &expires_at])
    })?;
    Ok(())
}

/// Forgets revocations of sessions that have expired anyway (their tokens are refused for
/// their expiry); returns how many. Run now and then so the table stays small.
pub(crate) fn prune_revocations(ctx: &Context) -> Result<u64, crate::db::DbError> {
    ctx.db.run(|conn| {
        let statement = conn.prepared(PRUNE)?;
        conn.client().execute(&statement, &[])
    })
}
