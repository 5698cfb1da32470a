//! gatehouse's business-logic tier: every account rule and all access to PostgreSQL, served
//! to http-server over the `proto` protocol.
//!
//! # Layout
//! - `server`: the acceptor, the fixed set of worker threads and one connection's request loop
//!   ([`server::run`] takes a bound listener and a [`server::Shutdown`]).
//! - `ops`: one module per operation and one `match` that dispatches a [`proto::Request`].
//! - `rules`: what a valid username, password and nickname are.
//! - `password`: argon2id with the pepper; `token`: signed session tokens; `secrets`: the
//!   pepper and the keys derived from it.
//! - `picture`: recognising, bounding and re-encoding uploaded images; `limit`: the semaphore
//!   that bounds memory-hungry work.
//! - `db`: the r2d2 pool of `postgres` clients with cached prepared statements, the primary
//!   with its replicas, and migrations (`tcp-server/migrations`); `replicas`: reads from
//!   streaming replicas, fenced by the primary's WAL position so none answers from the past.
//! - `throttle`: brute-force and flood protection (failed logins per account, device and
//!   address; registrations per address and overall); `device`: the device tokens it trusts.
//! - `logging`: the binary's logger, and the targets no `RUST_LOG` may open (secrets).
//! - `metrics`: counters and latencies (prometheus-client), served on the admin listener.
//! - `settings`: [`settings::Settings`], built once, and `Context::new` from it.
//! - `seed`: loading millions of users with real hashes, and the seeded credentials' scheme.

pub mod admin;
pub mod db;
pub mod device;
pub mod limit;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod password;
pub mod picture;
pub mod replicas;
pub mod rules;
pub mod secrets;
pub mod seed;
pub mod server;
pub mod settings;
pub mod throttle;
pub mod token;
