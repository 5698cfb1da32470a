//! The admin listener: the operator's view of one tcp-server over plain HTTP, apart from the
//! protocol port. `GET /metrics` (OpenMetrics text), `/healthz` (the process runs) and
//! `/readyz` (the database answers); anything else is 404. One thread answers it, a request at
//! a time: it is for a scraper and a health checker, not for load.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use service::Shutdown;
use tiny_http::{Header, Method, Response, Server};

use crate::ops::Context;

/// How often the admin thread looks at the stop flag while nobody asks it anything.
const TICK: Duration = Duration::from_millis(200);

/// Serves the admin listener on a thread of its own until `shutdown`.
pub fn start(
    listener: TcpListener,
    ctx: Arc<Context>,
    shutdown: Shutdown,
) -> io::Result<JoinHandle<()>> {
    let address = listener.local_addr()?;
    let server = Server::from_listener(listener, None)
        .map_err(|error| io::Error::other(error.to_string()))?;
    log::info!("admin endpoints on http://{address} (/metrics, /healthz, /readyz)");
    thread::Builder::new()
        .name("admin".to_owned())
        .spawn(move || {
            while !shutdown.requested() {
                match server.recv_timeout(TICK) {
                    Ok(Some(request)) => answer(request, &ctx),
                    Ok(None) => {}
                    Err(error) => {
                        log::warn!("the admin listener failed: {error}");
                        thread::sleep(TICK);
                    }
                }
            }
        })
}

fn answer(request: tiny_http::Request, ctx: &Context) {
    let (status, content_type, body) = match (request.method(), request.url()) {
        (Method::Get, "/metrics") => (
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ctx.metrics.render(&ctx.db, &ctx.throttle),
        ),
        (Method::Get, "/healthz") => (200, "text/plain; charset=utf-8", "ok\n".to_owned()),
        (Method::Get, "/readyz") => match ctx.db.check() {
            Ok(()) => (200, "text/plain; charset=utf-8", "ready\n".to_owned()),
            Err(_) => (
                503,
                "text/plain; charset=utf-8",
                "the database is unavailable\n".to_owned(),
            ),
        },
        (_, "/metrics" | "/healthz" | "/readyz") => {
            (405, "text/plain; charset=utf-8", "GET only\n".to_owned())
        }
        _ => (404, "text/plain; charset=utf-8", "not found\n".to_owned()),
    };
    let header = Header::from_bytes("Content-Type", content_type)
        .expect("a content type made here is a valid header");
    let response = Response::from_string(body)
        .with_status_code(status)
        .with_header(header);
    if let Err(error) = request.respond(response) {
        log::debug!("could not answer an admin request: {error}");
    }
}
