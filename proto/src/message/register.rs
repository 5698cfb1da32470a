//! Register: create an account; answered with its [`Profile`].

use crate::error::{DecodeErrorKind, EncodeError};
use crate::message::{Body, Operation, Profile, Secret};
use crate::wire::{self, Reader};

/// Create an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// Requested username.
    pub username: String,
    /// Plain-text password (hashed by tcp-server).
    pub password: Secret,
    /// Display name; the username when absent.
    pub nickname: Option<String>,
    /// Who is registering, as http-server saw them (an IP address as text): registrations are
    /// limited per client; absent, the client counts as unknown.
    pub client: Option<String>,
}

impl Operation for Register {
    const KIND: u8 = 0x02;
    const NAME: &'static str = "register";
    type Reply = Profile;
}

impl Body for Register {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::put_str(out, "username", &self.username)?;
        wire::put_str(out, "password", self.password.expose())?;
        wire::put_opt_str(out, "nickname", self.nickname.as_deref())?;
        wire::put_opt_str(out, "client", self.client.as_deref())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(Register {
            username: r.string("username")?,
            password: Secret::new(r.string("password")?),
            nickname: r.opt_string("nickname")?,
            client: r.opt_string("client")?,
        })
    }
}
