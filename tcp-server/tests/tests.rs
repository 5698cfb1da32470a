//! tcp-server against a real PostgreSQL (DATABASE_URL; scripts/test starts one): every account
//! rule through a real socket, the server's handling of hostile or excess connections, and what
//! a login costs the database by PostgreSQL's own counters.

mod accounts;
mod db_access;
mod faults;
mod lifecycle;
mod pictures;
mod protocol;
mod regressions;
mod replicas;
mod rotation;
mod seeding;
mod support;
mod throttle;
mod tier;
mod tls;
