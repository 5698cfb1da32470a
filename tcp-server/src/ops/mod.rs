//! One module per operation, named after the proto operation it answers (`login.rs` answers
//! `proto::Login` with its `Session`), and the dispatch to them, made from proto's list of
//! operations: a new operation is a new file here (the compiler asks for it).

mod auth;

pub use auth::LOOKUP as LOGIN_LOOKUP;
pub(crate) use delete_account::purge_deleted;
pub(crate) use logout::prune_revocations;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::{ErrorCode, ErrorReply, Profile, Request, Response};

use crate::db::{Db, DbError};
use crate::device::DeviceKey;
use crate::metrics::Metrics;
use crate::password::{HashError, Hasher};
use crate::picture::Pictures;
use crate::throttle::{Reason, Refusal, Throttle};
use crate::token::TokenKey;

/// Everything an operation may use.
pub struct Context {
    /// The database.
    pub db: Db,
    /// Password hashing.
    pub hasher: Hasher,
    /// Session tokens.
    pub tokens: TokenKey,
    /// Picture processing.
    pub pictures: Pictures,
    /// How long a session lasts.
    pub session_ttl: Duration,
    /// Device tokens, which let the login throttle recognise a client that logged in before.
    pub devices: DeviceKey,
    /// How long a device token is recognised.
    pub device_ttl: Duration,
    /// How long a deleted account's username stays taken.
    pub deleted_username_hold: Duration,
    /// The server's metrics.
    pub metrics: Metrics,
    /// Brute-force and flood protection for logins and registrations.
    pub throttle: Throttle,
}

macro_rules! dispatch {
    ($($module:ident $name:ident),* $(,)?) => {
        $(mod $module;)*

        /// Answers one request. Every failure becomes a typed error reply; nothing here panics
        /// on input.
        pub fn handle(ctx: &Context, request: Request) -> Response {
            match request {
                $(Request::$name(message) => $module::run(ctx, message).map(Response::$name),)*
            }
            .unwrap_or_else(|error| Response::Error(error.0))
        }
    };
}

proto::for_each_operation!(dispatch);

/// A failed operation: the error reply to send.
#[derive(Debug)]
pub struct OpError(pub ErrorReply);

impl OpError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        OpError(ErrorReply::new(code, message))
    }

    /// The one answer to every bad, expired or revoked session (or a deleted account).
    fn unauthorized() -> Self {
        OpError::new(ErrorCode::Unauthorized, "invalid or expired session")
    }

    /// The one answer to an unknown username and to a wrong password, which are not told
    /// apart.
    fn invalid_credentials() -> Self {
        OpError::new(ErrorCode::InvalidCredentials, "wrong username or password")
    }

    /// `Busy` for a password that could not be hashed or checked in time: the hash queue was
    /// full. Not counted by the throttle (nothing was judged).
    fn hashes_busy() -> Self {
        OpError(ErrorReply {
            code: ErrorCode::Busy,
            retry_after_ms: 1000,
            message: "too many password checks at once; try again in a second".to_owned(),
        })
    }

    /// `TooManyRequests` for an attempt the throttle refused, with when to retry.
    fn throttled(refusal: Refusal) -> Self {
        let message = match refusal.reason {
            Reason::Account => {
                "too many failed logins for this username from unrecognised devices; try again \
                 later (a device that logged in to it before is not affected)"
            }
            Reason::Device => "too many failed logins from this device; try again later",
            Reason::Address => "too many failed logins from this address; try again later",
            Reason::Full => "the service is refusing unrecognised logins for a moment; try again",
            Reason::RegisterAddress => "too many registrations from this address; try again later",
            Reason::RegisterGlobal => "too many registrations right now; try again later",
        };
        let millis = refusal.retry_after.as_millis().max(1);
        OpError(ErrorReply {
            code: ErrorCode::TooManyRequests,
            retry_after_ms: u32::try_from(millis).unwrap_or(u32::MAX),
            message: message.to_owned(),
        })
    }
}

impl From<HashError> for OpError {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy => OpError::hashes_busy(),
            HashError::Argon2(error) => {
                log::error!("hashing a password: {error}");
                OpError::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

impl From<DbError> for OpError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(reason) => {
                log::warn!("database unavailable: {reason}");
                OpError(ErrorReply {
                    code: ErrorCode::Unavailable,
                    retry_after_ms: 1_000,
                    message: "the database is unavailable; try again shortly".to_owned(),
                })
            }
            DbError::Retryable(error) => {
                log::warn!("database connection lost: {error}");
                OpError(ErrorReply {
                    code: ErrorCode::Unavailable,
                    retry_after_ms: 100,
                    message: "the database connection was lost; try again".to_owned(),
                })
            }
            DbError::Query(error) => {
                // postgres::Error's Display is only "db error"; the server's message is in
                // its source.
                match error.as_db_error() {
                    Some(db) => log::error!(
                        "database query failed: {} ({}: {})",
                        error,
                        db.code().code(),
                        db.message()
                    ),
                    None => log::error!("database query failed: {error:?}"),
                }
                OpError::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

/// A profile row: `id, username, nickname, picture_id`.
fn profile_from(row: &postgres::Row) -> Profile {
    Profile {
        id: row.get(0),
        username: row.get(1),
        nickname: row.get(2),
        picture: row.get(3),
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}
