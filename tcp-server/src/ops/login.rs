//! Login: check the password and issue a signed session token and a fresh device token. Reads
//! the database once and writes nothing, except to re-hash a password stored with outdated
//! parameters. Attempts are throttled (`crate::throttle`), a recognised device on its own.

use proto::{Login, Session};

use super::{Context, OpError, auth};

pub(super) fn run(ctx: &Context, request: Login) -> Result<Session, OpError> {
    let account = auth::password(
        ctx,
        &request.username,
        &request.password,
        request.client.as_deref(),
        request.device.as_ref(),
    )?;
    auth::open_session(ctx, account)
}
