//! Integration tests for the `proto` crate: every message round-trips, every kind of invalid
//! frame fails with its exact error, the bytes match PROTOCOL.md, and the blocking helpers cope
//! with the ways real sockets behave.
//!
//! One test binary for the whole crate (`autotests = false`), split into modules so that each
//! concern reads on its own and the crate is linked once.

mod blocking_io;
mod layout;
mod malformed;
mod roundtrip;
mod support;
