//! tcp-server against a real PostgreSQL (DATABASE_URL; scripts/test starts one): every account
//! rule through a real socket, and the server's handling of hostile or excess connections.

mod accounts;
mod faults;
mod pictures;
mod protocol;
mod regressions;
mod seeding;
mod support;
mod throttle;
