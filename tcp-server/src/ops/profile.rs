//! Get profile: the profile of the session's account.

use proto::Response;

use super::{Context, OpError, auth};

pub(super) fn run(ctx: &Context, token: &str) -> Result<Response, OpError> {
    let (_, profile) = auth::session(ctx, token)?;
    Ok(Response::Profile(profile))
}
