//! http-server's integration tests: the real http-server and tcp-server over the real test
//! database, driven over HTTP.

mod support;

mod api;
mod backends;
mod browser;
mod hostile;
mod lifecycle;
mod openapi;
mod robustness;
mod security;
mod web;
