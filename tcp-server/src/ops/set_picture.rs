//! Set picture: replace the account's picture. Pictures live in PostgreSQL like all durable
//! state, so any tcp-server instance serves any picture.

use proto::{ErrorCode, Profile, SetPicture};
use sha2::{Digest, Sha256};

use super::{Context, OpError, auth, profile_from};
use crate::picture::PictureError;

// Taken first, so two uploads of one account run one after the other: otherwise an upload of
// a picture already stored (its INSERT does nothing and locks nothing) could point the account
// at a row that a concurrent upload's PRUNE is deleting.
const LOCK: &str = "SELECT 1 FROM users WHERE id = $1 AND deleted_at IS NULL FOR UPDATE";
const INSERT: &str = "INSERT INTO pictures (id, user_id, format, data) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (id) DO NOTHING";
const POINT: &str = "UPDATE users SET picture_id = $1 WHERE id = $2 \
     RETURNING id, username, nickname, picture_id";
const PRUNE: &str = "DELETE FROM pictures WHERE user_id = $2 AND id <> $1";

pub(super) fn run(ctx: &Context, request: SetPicture) -> Result<Profile, OpError> {
    let (claims, _) = auth::session(ctx, request.token.expose())?;
    let processed = ctx.pictures.process(&request.image).map_err(|error| match error {
        PictureError::TooLarge(message) => OpError::new(ErrorCode::PayloadTooLarge, message),
        PictureError::Unsupported(message) => {
            OpError::new(ErrorCode::UnsupportedMediaType, message)
        }
    })?;
    // The key names the content, so a picture URL never changes meaning and can be cached
    // for ever.
    let digest = Sha256::digest(&processed.data);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let key = format!("{}-{hex}", claims.user_id);
    let format = i16::from(processed.format as u8);
    // Idempotent (same key, same content), so a retry after a broken connection is safe.
    let row = ctx.db.run(|conn| {
        let (lock, insert, point, prune) = (
            conn.prepared(LOCK)?,
            conn.prepared(INSERT)?,
            conn.prepared(POINT)?,
            conn.prepared(PRUNE)?,
        );
        let mut tx = conn.client().transaction()?;
        if tx.query_opt(&lock, &[&claims.user_id])?.is_none() {
            // The account was deleted since the session was checked.
            return Ok(None);
        }
        tx.execute(&insert, &[&key, &claims.user_id, &format, &processed.data])?;
        let row = tx.query_opt(&point, &[&key, &claims.user_id])?;
        tx.execute(&prune, &[&key, &claims.user_id])?;
        tx.commit()?;
        Ok(row)
    })?;
    match row {
        Some(row) => Ok(profile_from(&row)),
        None => Err(OpError::unauthorized()),
    }
}
