//! Change password: check the current password as a login does, set a new one and end every
//! other session; answered with a fresh [`Session`] that replaces the caller's.

use crate::error::{DecodeErrorKind, EncodeError};
use crate::message::login::Session;
use crate::message::{Body, Operation, Secret};
use crate::wire::{self, Reader};

/// Set a new password, given the current one, and end every session of the account but the one
/// answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangePassword {
    /// The session token.
    pub token: Secret,
    /// The password now; checked, and throttled, like a login's.
    pub current_password: Secret,
    /// The password to set; it must follow the password rules.
    pub new_password: Secret,
    /// Who is asking, as http-server saw them (see [`crate::Login::client`]).
    pub client: Option<String>,
    /// The client's device token for this username, if it sent one (see
    /// [`crate::Login::device`]).
    pub device: Option<Secret>,
}

impl Operation for ChangePassword {
    const KIND: u8 = 0x09;
    const NAME: &'static str = "change_password";
    type Reply = Session;
}

impl Body for ChangePassword {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::put_str(out, "token", self.token.expose())?;
        wire::put_str(out, "current_password", self.current_password.expose())?;
        wire::put_str(out, "new_password", self.new_password.expose())?;
        wire::put_opt_str(out, "client", self.client.as_deref())?;
        wire::put_opt_str(out, "device", self.device.as_ref().map(Secret::expose))
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(ChangePassword {
            token: Secret::new(r.string("token")?),
            current_password: Secret::new(r.string("current_password")?),
            new_password: Secret::new(r.string("new_password")?),
            client: r.opt_string("client")?,
            device: r.opt_string("device")?.map(Secret::new),
        })
    }
}
