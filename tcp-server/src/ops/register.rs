//! Register: create an account with a unique (case-insensitive) username. Registrations are
//! limited per client address and over all clients (`crate::throttle`), so nobody creates
//! accounts in bulk or lists taken usernames at full speed.

use postgres::error::SqlState;
use proto::{ErrorCode, Profile, Register};

use super::{Context, OpError};
use crate::db::DbError;
use crate::rules;

const INSERT: &str =
    "INSERT INTO users (username, password_hash, nickname) VALUES ($1, $2, $3) RETURNING id";

pub(super) fn run(ctx: &Context, request: Register) -> Result<Profile, OpError> {
    let (username, password) = (request.username.as_str(), request.password.expose());
    let (nickname, client) = (request.nickname.as_deref(), request.client.as_deref());
    rules::check_username(username).map_err(|e| OpError::new(ErrorCode::InvalidUsername, e.0))?;
    rules::check_password(password).map_err(|e| OpError::new(ErrorCode::InvalidPassword, e.0))?;
    let nickname = rules::check_nickname(nickname.unwrap_or(username))
        .map_err(|e| OpError::new(ErrorCode::InvalidNickname, e.0))?;
    // Counted once the input is valid (refusing bad input costs nothing) and before the hash,
    // which is what costs; an attempt whose name turns out taken counts too.
    ctx.throttle
        .admit_registration(client)
        .map_err(OpError::throttled)?;
    let hash = ctx.hasher.hash(password).map_err(|e| {
        log::error!("hashing a password: {e}");
        OpError::new(ErrorCode::Internal, "internal error")
    })?;
    // Not retried: if the connection broke after the insert committed, a retry would report
    // the new account as taken. The client sees Unavailable and may try again (and then learns
    // the name is taken if the first attempt did commit).
    let inserted = ctx.db.run_once(&mut |conn| {
        let statement = conn.prepared(INSERT)?;
        conn.client()
            .query_one(&statement, &[&username, &hash, &nickname])
    });
    match inserted {
        Ok(row) => Ok(Profile {
            id: row.get(0),
            username: request.username,
            nickname,
            picture: None,
        }),
        // The unique index on lower(username) decides races: exactly one insert wins. Any
        // other unique violation (an id clash after a botched seed) is not the user's fault.
        Err(DbError::Query(error))
            if error.code() == Some(&SqlState::UNIQUE_VIOLATION)
                && error.as_db_error().and_then(|e| e.constraint())
                    == Some("users_username_lower") =>
        {
            Err(OpError::new(
                ErrorCode::UsernameTaken,
                "this username is taken",
            ))
        }
        Err(error) => Err(error.into()),
    }
}
