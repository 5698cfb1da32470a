//! Get profile: the profile of the session's account.

use proto::{GetProfile, Profile};

use super::{Context, OpError, auth};

pub(super) fn run(ctx: &Context, request: GetProfile) -> Result<Profile, OpError> {
    let (_, profile) = auth::session_read(ctx, request.token.expose())?;
    Ok(profile)
}
