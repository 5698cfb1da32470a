//! Ping: is the server ready? tcp-server answers only while its database answers (readiness),
//! else `Unavailable`. An empty request, an empty answer.

use crate::error::{DecodeErrorKind, EncodeError};
use crate::message::{Body, Operation};
use crate::wire::Reader;

/// Liveness and readiness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ping;

impl Operation for Ping {
    const KIND: u8 = 0x01;
    const NAME: &'static str = "ping";
    type Reply = ();
}

impl Body for Ping {
    fn encode(&self, _out: &mut Vec<u8>) -> Result<(), EncodeError> {
        Ok(())
    }

    fn decode(_r: &mut Reader<'_>) -> Result<Self, DecodeErrorKind> {
        Ok(Ping)
    }
}
