//! Login: check the password and issue a signed session token and a fresh device token. Reads
//! the database once and writes nothing, except to re-hash a password stored with outdated
//! parameters. Attempts are throttled (`crate::throttle`), a recognised device on its own.

use proto::{ErrorCode, Login, Session};

use super::{Context, OpError, profile_from, unix_now};
use crate::password::Verified;
use crate::rules;
use crate::throttle::Outcome;
use crate::token::Claims;

/// The one query a login runs: the account by its username key (`$1`). The expression must
/// match the index users_username_lower exactly (see migration V2). Public so that the benchmark
/// runs the very same lookup through pgbench.
pub const LOOKUP: &str = "SELECT id, username, nickname, picture_id, password_hash \
     FROM users WHERE lower(username COLLATE \"C\") = $1";
const REHASH: &str = "UPDATE users SET password_hash = $2 WHERE id = $1";

pub(super) fn run(ctx: &Context, request: Login) -> Result<Session, OpError> {
    let (username, password) = (request.username.as_str(), request.password.expose());
    let key = rules::username_key(username);
    let now = unix_now();
    let device = request
        .device
        .as_ref()
        .and_then(|token| ctx.devices.verify(token.expose(), &key, now));
    let client = request.client.as_deref();
    // Refused before the password is looked at, or the guess would still be tested.
    let attempt = ctx
        .throttle
        .begin_login(&key, client, device)
        .map_err(|refusal| {
            ctx.metrics.logins_throttled.inc();
            OpError::throttled(refusal)
        })?;
    let result = check(ctx, username, &key, password);
    let outcome = match &result {
        Ok(_) => Outcome::Succeeded,
        Err(error) if error.0.code == ErrorCode::InvalidCredentials => Outcome::Failed,
        Err(_) => Outcome::NotJudged,
    };
    ctx.throttle.finish_login(attempt, outcome);
    result
}

fn check(ctx: &Context, username: &str, key: &str, password: &str) -> Result<Session, OpError> {
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
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| {
        log::error!("no randomness for a session id: {e}");
        OpError::new(ErrorCode::Internal, "internal error")
    })?;
    let (session_id, device_nonce) = random.split_at(16);
    let now = unix_now();
    let claims = Claims {
        user_id: profile.id,
        session_id: session_id.try_into().unwrap_or_default(),
        expires_at: now.saturating_add(ctx.session_ttl.as_secs() as i64),
    };
    let device_token = ctx.devices.issue(
        key,
        device_nonce.try_into().unwrap_or_default(),
        now.saturating_add(ctx.device_ttl.as_secs() as i64),
    );
    Ok(Session {
        token: ctx.tokens.issue(&claims).into(),
        expires_at: claims.expires_at,
        profile,
        device_token: device_token.into(),
    })
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
