//! Ping: the readiness check. A server without its database cannot serve, so `Pong` only
//! while the database answers. Not logged: the outage is logged once by the database pool, and
//! idle sockets are pinged every few seconds.

use proto::{ErrorCode, ErrorReply, Ping};

use super::{Context, OpError};

pub(super) fn run(ctx: &Context, _: Ping) -> Result<(), OpError> {
    ctx.db.check().map_err(|_| {
        OpError(ErrorReply {
            code: ErrorCode::Unavailable,
            retry_after_ms: 1_000,
            message: "the database is unavailable".to_owned(),
        })
    })
}
