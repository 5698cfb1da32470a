//! Register: create an account with a unique (case-insensitive) username. Registrations are
//! limited per client address and over all clients (`crate::throttle`), so nobody creates
//! accounts in bulk or lists taken usernames at full speed.

use postgres::error::SqlState;
use proto::{ErrorCode, Profile, Register};

use super::{Context, OpError};
use crate::db::DbError;
use crate::password::HashError;
use crate::rules;

const INSERT: &str =
    "INSERT INTO users (username, password_hash, nickname) VALUES ($1, $2, $3) RETURNING id";
/// Removes the row of a deleted account named `$1` (a username key) whose cooling-off period of
/// `$2` seconds is over, so that its name can be registered at once, not only after the
/// janitor's next round.
const FREE: &str = "DELETE FROM users WHERE lower(username COLLATE \"C\") = $1 \
     AND deleted_at < now() - make_interval(secs => $2)";

pub(super) fn run(ctx: &Context, request: Register) -> Result<Profile, OpError> {
    let (username, password) = (request.username.as_str(), request.password.expose());
    let (nickname, client) = (request.nickname.as_deref(), request.client.as_deref());
    rules::check_username(username).map_err(|e| OpError::new(ErrorCode::InvalidUsername, e.0))?;
    rules::check_password(password).map_err(|e| OpError::new(ErrorCode::InvalidPassword, e.0))?;
    let nickname = rules::check_nickname(nickname.unwrap_or(username))
        .map_err(|e| OpError::new(ErrorCode::InvalidNickname, e.0))?;
    // Admitted once the input is valid (refusing bad input costs nothing) and before the
    // strength estimate and the hash, which are what cost; an attempt whose password turns out
    // weak, or whose name turns out taken, counts too. One refused because the hash queue was
    // full does not: nothing was judged, and the client is told to retry.
    let registration = ctx
        .throttle
        .admit_registration(client)
        .map_err(OpError::throttled)?;
    rules::check_strength(password, &[username, &nickname])
        .map_err(|weak| OpError::new(ErrorCode::WeakPassword, weak.0))?;
    let hash = match ctx.hasher.hash(password) {
        Err(HashError::Busy) => {
            registration.uncounted();
            return Err(OpError::hashes_busy());
        }
        hashed => hashed?,
    };
    drop(registration);
    let mut inserted = insert(ctx, username, &hash, &nickname);
    if is_taken(&inserted) && free_deleted_name(ctx, username)? {
        inserted = insert(ctx, username, &hash, &nickname);
    }
    match inserted {
        Ok(row) => Ok(Profile {
            id: row.get(0),
            username: request.username,
            nickname,
            picture: None,
        }),
        Err(_) if is_taken(&inserted) => Err(OpError::new(
            ErrorCode::UsernameTaken,
            "this username is taken",
        )),
        Err(error) => Err(error.into()),
    }
}

/// Inserts the account. Not retried: if the connection broke after the insert committed, a
/// retry would report the new account as taken. The client sees Unavailable and may try again
/// (and then learns the name is taken if the first attempt did commit).
fn insert(
    ctx: &Context,
    username: &str,
    hash: &str,
    nickname: &str,
) -> Result<postgres::Row, DbError> {
    ctx.db.run_once(&mut |conn| {
        let statement = conn.prepared(INSERT)?;
        conn.client()
            .query_one(&statement, &[&username, &hash, &nickname])
    })
}

/// Whether the insert failed because the name is taken. The unique index on lower(username)
/// decides races: exactly one insert wins. Any other unique violation (an id clash after a
/// botched seed) is not the user's fault.
fn is_taken(inserted: &Result<postgres::Row, DbError>) -> bool {
    matches!(inserted, Err(DbError::Query(error))
        if error.code() == Some(&SqlState::UNIQUE_VIOLATION)
            && error.as_db_error().and_then(|e| e.constraint()) == Some("users_username_lower"))
}

/// Removes a deleted account named `username` whose cooling-off period is over; whether there
/// was one. (A deleted account still inside its period keeps the name taken.)
fn free_deleted_name(ctx: &Context, username: &str) -> Result<bool, OpError> {
    let key = rules::username_key(username);
    let hold = ctx.deleted_username_hold.as_secs_f64();
    let freed = ctx.db.run(|conn| {
        let statement = conn.prepared(FREE)?;
        conn.client().execute(&statement, &[&key, &hold])
    })?;
    Ok(freed > 0)
}
