//! Login: check the password and issue a signed session token. Reads the database once and
//! writes nothing, except to re-hash a password stored with outdated parameters. Failed
//! attempts are throttled (`crate::throttle`).

use std::sync::atomic::Ordering;

use proto::{ErrorCode, ErrorReply, Response, Session};

use super::{Context, OpError, profile_from, unix_now};
use crate::password::Verified;
use crate::rules;
use crate::token::Claims;

// The expression must match the index users_username_lower exactly (see migration V2).
const LOOKUP: &str = "SELECT id, username, nickname, picture_id, password_hash \
     FROM users WHERE lower(username COLLATE \"C\") = $1";
const REHASH: &str = "UPDATE users SET password_hash = $2 WHERE id = $1";

pub(super) fn run(
    ctx: &Context,
    username: &str,
    password: &str,
    client: Option<&str>,
) -> Result<Response, OpError> {
    let key = rules::username_key(username);
    let throttle = ctx.throttle.keys(&key, client);
    if let Err(left) = ctx.throttle.begin(throttle) {
        // Refused before the password is looked at, or the guess would still be tested.
        ctx.stats.logins_throttled.fetch_add(1, Ordering::Relaxed);
        return Err(OpError(ErrorReply {
            code: ErrorCode::TooManyRequests,
            retry_after_ms: u32::try_from(left.as_millis().max(1)).unwrap_or(u32::MAX),
            message: "too many failed logins for this username; try again later".to_owned(),
        }));
    }
    // The attempt already counts as a failure; a success or an attempt that could not be
    // judged gives that back.
    let result = check(ctx, username, &key, password);
    match &result {
        Ok(_) => ctx.throttle.succeeded(throttle),
        Err(error) if error.0.code == ErrorCode::InvalidCredentials => {}
        Err(_) => ctx.throttle.abandoned(throttle),
    }
    result
}

fn check(ctx: &Context, username: &str, key: &str, password: &str) -> Result<Response, OpError> {
    let refused = || OpError::new(ErrorCode::InvalidCredentials, "wrong username or password");
    // A name that breaks the rules cannot exist; it still costs one verification, so that no
    // answer comes back faster than the others.
    if rules::check_username(username).is_err() {
        ctx.hasher.verify_dummy(password);
        return Err(refused());
    }
    let row = ctx.db.run(|conn| {
        let statement = conn.prepared(LOOKUP)?;
        conn.client().query_opt(&statement, &[&key])
    })?;
    let Some(row) = row else {
        ctx.hasher.verify_dummy(password);
        return Err(refused());
    };
    let stored: String = row.get(4);
    let Verified::Match { needs_rehash } = ctx.hasher.verify(password, &stored) else {
        return Err(refused());
    };
    let profile = profile_from(&row);
    if needs_rehash {
        rehash(ctx, profile.id, password);
    }
    let mut session_id = [0u8; 16];
    getrandom::fill(&mut session_id).map_err(|e| {
        log::error!("no randomness for a session id: {e}");
        OpError::new(ErrorCode::Internal, "internal error")
    })?;
    let claims = Claims {
        user_id: profile.id,
        session_id,
        expires_at: unix_now().saturating_add(ctx.session_ttl.as_secs() as i64),
    };
    Ok(Response::LoggedIn(Session {
        token: ctx.tokens.issue(&claims).into(),
        expires_at: claims.expires_at,
        profile,
    }))
}

/// Replaces a hash made with other parameters. A failure only delays the upgrade to the next
/// login, so it is logged, not returned.
fn rehash(ctx: &Context, user_id: i64, password: &str) {
    let result = ctx
        .hasher
        .hash(password)
        .map_err(|e| e.to_string())
        .and_then(|hash| {
            ctx.db
                .run(|conn| {
                    let statement = conn.prepared(REHASH)?;
                    conn.client().execute(&statement, &[&user_id, &hash])
                })
                .map_err(|e| e.to_string())
        });
    match result {
        Ok(_) => log::info!("re-hashed the password of user {user_id} with current parameters"),
        Err(error) => log::warn!("re-hashing the password of user {user_id}: {error}"),
    }
}
