//! Authenticate on a connection that has finished the tier handshake: the handshake comes once,
//! and the connection loop (`server.rs`) answers it before any operation; here it is only
//! refused.

use proto::{Authenticate, ErrorCode};

use super::{Context, OpError};

pub(super) fn run(_ctx: &Context, _authenticate: Authenticate) -> Result<(), OpError> {
    Err(OpError::new(
        ErrorCode::Malformed,
        "the tier handshake is done on this connection",
    ))
}
