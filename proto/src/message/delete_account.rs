//! Delete account: check the password as a login does, then remove the account, its pictures
//! and its sessions at once; an empty answer.

use crate::error::{DecodeErrorKind, EncodeError};
use crate::message::{Body, Operation, Secret};
use crate::wire::{self, Reader};

/// Delete the token's account, given its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteAccount {
    /// The session token.
    pub token: Secret,
    /// The account's password; checked, and throttled, like a login's.
    pub password: Secret,
    /// Who is asking, as http-server saw them (see [`crate::Login::client`]).
    pub client: Option<String>,
    /// The client's device token for this username, if it sent one (see
    /// [`crate::Login::device`]).
    pub device: Option<Secret>,
}

impl Operation for DeleteAccount {
    const KIND: u8 = 0x0B;
    const NAME: &'static str = "delete_account";
    type Reply = ();
}

impl Body for DeleteAccount {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::put_str(out, "token", self.token.expose())?;
        wire::put_str(out, "password", self.password.expose())?;
        wire::put_opt_str(out, "client", self.client.as_deref())?;
        wire::put_opt_str(out, "device", self.device.as_ref().map(Secret::expose))
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(DeleteAccount {
            token: Secret::new(r.string("token")?),
            password: Secret::new(r.string("password")?),
            client: r.opt_string("client")?,
            device: r.opt_string("device")?.map(Secret::new),
        })
    }
}
