//! Login: check a password and open a session; answered with a [`Session`].

use crate::error::{DecodeErrorKind, EncodeError};
use crate::message::{Body, Operation, Profile, Secret};
use crate::wire::{self, Reader};

/// Check a password and open a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The account's username.
    pub username: String,
    /// Plain-text password.
    pub password: Secret,
    /// Who is logging in, as http-server saw them (an IP address as text). Failed logins are
    /// throttled per client address over all usernames; absent, the client counts as unknown.
    pub client: Option<String>,
    /// The device token the client was given at an earlier login to this username, if it sent
    /// one: such a client is judged on its own failures, so a flood of guesses at the account
    /// does not lock its owner out.
    pub device: Option<Secret>,
}

/// A session opened by [`Login`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The bearer token.
    pub token: Secret,
    /// When the token stops being accepted, in seconds since the Unix epoch.
    pub expires_at: i64,
    /// The account logged in to.
    pub profile: Profile,
    /// A fresh device token for this username, for the client to send at its next login.
    pub device_token: Secret,
}

impl Operation for Login {
    const KIND: u8 = 0x03;
    const NAME: &'static str = "login";
    type Reply = Session;
}

impl Body for Login {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::put_str(out, "username", &self.username)?;
        wire::put_str(out, "password", self.password.expose())?;
        wire::put_opt_str(out, "client", self.client.as_deref())?;
        wire::put_opt_str(out, "device", self.device.as_ref().map(Secret::expose))
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(Login {
            username: r.string("username")?,
            password: Secret::new(r.string("password")?),
            client: r.opt_string("client")?,
            device: r.opt_string("device")?.map(Secret::new),
        })
    }
}

impl Body for Session {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        wire::put_str(out, "token", self.token.expose())?;
        wire::put_i64(out, self.expires_at);
        self.profile.encode(out)?;
        wire::put_str(out, "device_token", self.device_token.expose())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(Session {
            token: Secret::new(r.string("token")?),
            expires_at: r.i64("expires_at")?,
            profile: Profile::decode(r)?,
            device_token: Secret::new(r.string("device_token")?),
        })
    }
}
