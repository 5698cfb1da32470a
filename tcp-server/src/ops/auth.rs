//! What the operations that need the caller's identity share: a session token checked
//! (signature and expiry locally; revocation, the session epoch and the account's existence in
//! the same query that loads the profile), a password checked the way every login is (throttled,
//! one verification whatever the outcome), and a session opened.

use proto::{ErrorCode, Profile, Secret, Session};

use super::{Context, OpError, profile_from, unix_now};
use crate::password::{HashError, Verified};
use crate::rules;
use crate::throttle::Outcome;
use crate::token::Claims;

const SESSION_USER: &str = "SELECT u.id, u.username, u.nickname, u.picture_id, u.session_epoch, \
     EXISTS (SELECT 1 FROM revoked_sessions r WHERE r.session_id = $2) \
     FROM users u WHERE u.id = $1 AND u.deleted_at IS NULL";

/// The one query a login runs: the account by its username key (`$1`). The expression must
/// match the index users_username_lower exactly (see migration V2); a deleted account's row,
/// which only holds its name, is not found. Public so that the benchmark runs the very same
/// lookup through pgbench.
pub const LOOKUP: &str = "SELECT id, username, nickname, picture_id, session_epoch, password_hash \
     FROM users WHERE lower(username COLLATE \"C\") = $1 AND deleted_at IS NULL";
/// Replaces the hash just verified (`$3`) only: a password change that landed meanwhile wins.
const REHASH: &str = "UPDATE users SET password_hash = $2 \
     WHERE id = $1 AND password_hash = $3 AND deleted_at IS NULL";

/// An account whose password was just checked.
pub(super) struct Account {
    pub profile: Profile,
    /// Its session epoch, for the sessions opened now.
    pub epoch: i64,
}

/// The session and profile behind `token`, or `Unauthorized` for a malformed, tampered,
/// expired or revoked token, one from an earlier session epoch, or a deleted account, all
/// alike. Checked on the primary, which the caller is about to write to.
pub(super) fn session(ctx: &Context, token: &str) -> Result<(Claims, Profile), OpError> {
    session_from(ctx, token, false)
}

/// [`session`] for an operation that only reads: checked where [`crate::db::Db::read`] runs
/// it, a replica that has seen every revocation acknowledged so far.
pub(super) fn session_read(ctx: &Context, token: &str) -> Result<(Claims, Profile), OpError> {
    session_from(ctx, token, true)
}

fn session_from(ctx: &Context, token: &str, read: bool) -> Result<(Claims, Profile), OpError> {
    let claims = ctx
        .tokens
        .verify(token, unix_now())
        .map_err(|_| OpError::unauthorized())?;
    let query = |conn: &mut crate::db::PgConn| {
        let statement = conn.prepared(SESSION_USER)?;
        conn.client().query_opt(
            &statement,
            &[&claims.user_id, &claims.session_id.as_slice()],
        )
    };
    let row = if read {
        ctx.db.read(query)?
    } else {
        ctx.db.run(query)?
    };
    match row {
        Some(row) if row.get::<_, i64>(4) == claims.epoch && !row.get::<_, bool>(5) => {
            Ok((claims, profile_from(&row)))
        }
        _ => Err(OpError::unauthorized()),
    }
}

/// Checks `password` for `username` as a login does: refused by the throttle before the
/// password is looked at, counted in it after; one password verification for every answer, so
/// an unknown name, a deleted account and a wrong password take as long as each other and get
/// the same `InvalidCredentials`.
pub(super) fn password(
    ctx: &Context,
    username: &str,
    password: &Secret,
    client: Option<&str>,
    device: Option<&Secret>,
) -> Result<Account, OpError> {
    let key = rules::username_key(username);
    let device = device.and_then(|token| ctx.devices.verify(token.expose(), &key, unix_now()));
    // Refused before the password is looked at, or the guess would still be tested.
    let attempt = ctx
        .throttle
        .begin_login(&key, client, device)
        .map_err(|refusal| {
            ctx.metrics.logins_throttled.inc();
            OpError::throttled(refusal)
        })?;
    let result = check(ctx, username, &key, password.expose());
    let outcome = match &result {
        Ok(_) => Outcome::Succeeded,
        Err(error) if error.0.code == ErrorCode::InvalidCredentials => Outcome::Failed,
        Err(_) => Outcome::NotJudged,
    };
    ctx.throttle.finish_login(attempt, outcome);
    result
}

fn check(ctx: &Context, username: &str, key: &str, password: &str) -> Result<Account, OpError> {
    // A name that breaks the rules cannot exist; it still costs one verification, so that no
    // answer comes back faster than the others.
    if rules::check_username(username).is_err() {
        return Err(unknown(ctx, password));
    }
    let row = ctx.db.read(|conn| {
        let statement = conn.prepared(LOOKUP)?;
        conn.client().query_opt(&statement, &[&key])
    })?;
    let Some(row) = row else {
        return Err(unknown(ctx, password));
    };
    let stored: String = row.get(5);
    let needs_rehash = match ctx.hasher.verify(password, &stored) {
        Verified::Match { needs_rehash } => needs_rehash,
        Verified::Mismatch => return Err(OpError::invalid_credentials()),
        Verified::Busy => return Err(OpError::hashes_busy()),
    };
    let account = Account {
        profile: profile_from(&row),
        epoch: row.get(4),
    };
    if needs_rehash {
        rehash(ctx, account.profile.id, password, &stored);
    }
    Ok(account)
}

/// The answer for a name that has no account, after the time of one verification; `Busy` when
/// even that could not start in time, as for a real account.
fn unknown(ctx: &Context, password: &str) -> OpError {
    match ctx.hasher.verify_dummy(password) {
        Verified::Busy => OpError::hashes_busy(),
        _ => OpError::invalid_credentials(),
    }
}

/// Replaces a hash made with other parameters. A failure only delays the upgrade to the next
/// login, so it is logged, not returned.
fn rehash(ctx: &Context, user_id: i64, password: &str, verified: &str) {
    let hash = match ctx.hasher.hash(password) {
        Ok(hash) => hash,
        // Overload is no fault: the next login tries again.
        Err(HashError::Busy) => {
            log::debug!("re-hashing the password of user {user_id} later: hashes are queued");
            return;
        }
        Err(error) => {
            log::warn!("re-hashing the password of user {user_id}: {error}");
            return;
        }
    };
    let stored = ctx.db.run(|conn| {
        let statement = conn.prepared(REHASH)?;
        conn.client()
            .execute(&statement, &[&user_id, &hash, &verified])
    });
    match stored {
        Ok(0) => log::debug!("not re-hashing user {user_id}: the password changed meanwhile"),
        Ok(_) => {
            ctx.metrics.password_rehashes.inc();
            log::debug!("re-hashed the password of user {user_id} with current parameters");
        }
        Err(error) => log::warn!("re-hashing the password of user {user_id}: {error}"),
    }
}

/// A new session for `account` in its epoch `account.epoch`, and a fresh device token for its
/// username.
pub(super) fn open_session(ctx: &Context, account: Account) -> Result<Session, OpError> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| {
        log::error!("no randomness for a session id: {e}");
        OpError::new(ErrorCode::Internal, "internal error")
    })?;
    let (session_id, device_nonce) = random.split_at(16);
    let now = unix_now();
    let claims = Claims {
        user_id: account.profile.id,
        epoch: account.epoch,
        session_id: session_id.try_into().unwrap_or_default(),
        expires_at: now.saturating_add(ctx.session_ttl.as_secs() as i64),
    };
    let device_token = ctx.devices.issue(
        &rules::username_key(&account.profile.username),
        device_nonce.try_into().unwrap_or_default(),
        now.saturating_add(ctx.device_ttl.as_secs() as i64),
    );
    Ok(Session {
        token: ctx.tokens.issue(&claims).into(),
        expires_at: claims.expires_at,
        profile: account.profile,
        device_token: device_token.into(),
    })
}
