//! The routing table: every route the server answers, its path pattern, the methods it allows
//! and the handler of each, the listener it is served on, and its label in the metrics; and
//! [`answer`], which answers one request by it. One table; the handlers live by resource under
//! `api/`. A new route is one row here.

use std::time::Instant;

use tiny_http::Method;

use crate::api::{self, Api, me, pictures, sessions, users};
use crate::http::{ApiCode, ApiError, Reply, header_value};

/// Which listener a request came in on: the public one serves the API and the pages, the
/// admin one (loopback by default) the metrics; both answer `/healthz` and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Admin,
}

/// Answers one request of a route: the API, the request, and its path (for a pattern's
/// parameter).
pub type Handler = fn(&Api, &mut tiny_http::Request, &str) -> Result<Reply, ApiError>;

/// How a route's path is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// This path exactly.
    Exact(&'static str),
    /// One of these paths exactly.
    AnyOf(&'static [&'static str]),
    /// Paths that start with this prefix; the rest is the parameter, which the handler checks.
    Prefix(&'static str),
}

/// What a route is, for the contract, the caches and the cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Part of API v1, in `docs/openapi.yaml`; answers carry account data (a profile, a
    /// session, a token), so they are never cached.
    Account,
    /// Part of API v1, public and cacheable.
    Public,
    /// The health checks, on both listeners and in `docs/openapi.yaml`.
    Health,
    /// The metrics, on the admin listener only.
    Admin,
    /// A web page or one of its assets.
    Page,
}

/// One route.
pub struct Route {
    /// Its path template, the label of its metrics.
    pub label: &'static str,
    /// How its path is matched.
    pub pattern: Pattern,
    /// What it is.
    pub kind: Kind,
    /// Whether it takes the session (its 401 clears a stale session cookie).
    pub session: bool,
    /// The methods it allows and their handlers.
    pub methods: &'static [(Method, Handler)],
}

/// The label of requests no route matched.
pub const UNKNOWN: &str = "unknown";

/// Every route. A request matches at most one.
pub static ROUTES: &[Route] = &[
    Route {
        label: "/api/v1/users",
        pattern: Pattern::Exact("/api/v1/users"),
        kind: Kind::Account,
        session: false,
        methods: &[(Method::Post, users::register)],
    },
    Route {
        label: "/api/v1/sessions",
        pattern: Pattern::Exact("/api/v1/sessions"),
        kind: Kind::Account,
        session: false,
        methods: &[(Method::Post, sessions::login)],
    },
    Route {
        label: "/api/v1/sessions/current",
        pattern: Pattern::Exact("/api/v1/sessions/current"),
        kind: Kind::Account,
        session: true,
        methods: &[(Method::Delete, sessions::logout)],
    },
    Route {
        label: "/api/v1/me",
        pattern: Pattern::Exact("/api/v1/me"),
        kind: Kind::Account,
        session: true,
        methods: &[
            (Method::Get, me::profile),
            (Method::Patch, me::update_nickname),
            (Method::Delete, me::delete_account),
        ],
    },
    Route {
        label: "/api/v1/me/password",
        pattern: Pattern::Exact("/api/v1/me/password"),
        kind: Kind::Account,
        session: true,
        methods: &[(Method::Put, me::change_password)],
    },
    Route {
        label: "/api/v1/me/sessions",
        pattern: Pattern::Exact("/api/v1/me/sessions"),
        kind: Kind::Account,
        session: true,
        methods: &[(Method::Delete, sessions::logout_all)],
    },
    Route {
        label: "/api/v1/me/picture",
        pattern: Pattern::Exact("/api/v1/me/picture"),
        kind: Kind::Account,
        session: true,
        methods: &[(Method::Put, pictures::set)],
    },
    Route {
        label: "/api/v1/pictures/{key}",
        pattern: Pattern::Prefix(pictures::PATH),
        kind: Kind::Public,
        session: false,
        methods: &[(Method::Get, pictures::get)],
    },
    Route {
        label: "/healthz",
        pattern: Pattern::Exact("/healthz"),
        kind: Kind::Health,
        session: false,
        methods: &[(Method::Get, api::healthz)],
    },
    Route {
        label: "/readyz",
        pattern: Pattern::Exact("/readyz"),
        kind: Kind::Health,
        session: false,
        methods: &[(Method::Get, api::readyz)],
    },
    Route {
        label: "/metrics",
        pattern: Pattern::Exact("/metrics"),
        kind: Kind::Admin,
        session: false,
        methods: &[(Method::Get, api::metrics)],
    },
    Route {
        label: "/{page}",
        pattern: Pattern::AnyOf(&["/", "/signup", "/login", "/profile"]),
        kind: Kind::Page,
        session: false,
        methods: &[(Method::Get, api::page), (Method::Head, api::page)],
    },
    Route {
        label: "/assets/{file}",
        pattern: Pattern::Prefix("/assets/"),
        kind: Kind::Page,
        session: false,
        methods: &[(Method::Get, api::page), (Method::Head, api::page)],
    },
];

impl Route {
    /// The route of `path`, if any.
    pub fn of(path: &str) -> Option<&'static Route> {
        ROUTES.iter().find(|route| route.matches(path))
    }

    fn matches(&self, path: &str) -> bool {
        match self.pattern {
            Pattern::Exact(exact) => path == exact,
            Pattern::AnyOf(paths) => paths.contains(&path),
            Pattern::Prefix(prefix) => path.starts_with(prefix),
        }
    }

    /// The handler of `method`, if the route allows it.
    pub fn handler(&self, method: &Method) -> Option<Handler> {
        self.methods
            .iter()
            .find(|(allowed, _)| allowed == method)
            .map(|(_, handler)| *handler)
    }

    /// The methods it allows, as the `Allow` header lists them.
    pub fn allow(&self) -> String {
        let methods: Vec<String> = self.methods.iter().map(|(m, _)| m.to_string()).collect();
        methods.join(", ")
    }

    /// Whether `docs/openapi.yaml` describes it: the API and the health checks.
    pub fn is_api(&self) -> bool {
        matches!(self.kind, Kind::Account | Kind::Public | Kind::Health)
    }
}

/// Whether a route is answered on `listener`: the metrics on the admin listener only, the
/// health checks on both, everything else on the public one.
fn served_on(route: &Route, listener: Listener) -> bool {
    match route.kind {
        Kind::Health => true,
        Kind::Admin => listener == Listener::Admin,
        Kind::Account | Kind::Public | Kind::Page => listener == Listener::Public,
    }
}

/// Answers one request. Never panics outward: a panic in a handler is answered 500 and logged,
/// and the worker carries on.
pub fn answer(api: &Api, mut request: tiny_http::Request, listener: Listener) {
    let started = Instant::now();
    let path = request
        .url()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let route = Route::of(&path).filter(|route| served_on(route, listener));
    let label = route.map_or(UNKNOWN, |route| route.label);
    let method = request.method().clone();
    // One id for the request across both tiers: the client's `X-Request-Id` when it is one we
    // can carry, else a new one. Every log line about the request carries it (this worker's,
    // and tcp-server's through the frame), and so does the answer.
    let id = request_id(&request);
    let _request = service::logging::request_scope(&id);
    // A request that waited past the bound is refused before any work: under overload the
    // queue then stays about as long as the bound, and every client hears back in time. The
    // health checks and the metrics are answered whatever the wait: a load balancer must not
    // take an overloaded server for a dead one.
    let waited = request.received_at().elapsed();
    let always = route.is_some_and(|route| matches!(route.kind, Kind::Health | Kind::Admin));
    let reply = if waited > api.max_queue_wait && !always {
        ApiError::new(
            ApiCode::Overloaded,
            "the server is overloaded; retry in a second",
        )
        .retry_after(1)
        .reply()
    } else {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            dispatch(api, route, &path, &mut request)
        }))
        .unwrap_or_else(|_| {
            log::error!("a handler panicked on {method} {label}");
            ApiError::new(ApiCode::InternalError, "internal error").reply()
        })
    };
    let status = reply.status;
    // A body that was not read whole before the request was handed over (over 16 KiB, or
    // behind `Expect: 100-continue`) may be partly unread, whatever the status (a GET can
    // declare one, a refusal reads none of it). Draining it here would hold this worker at the
    // client's pace, so the answer ends the connection instead, and the connection's own
    // thread throws the rest away.
    if request.body_on_socket() {
        request.end_connection();
    }
    let reply = reply.with_header("X-Request-Id", &id);
    if let Err(error) = request.respond(reply.into_response()) {
        log::debug!("could not send a response: {error}");
    }
    let took = started.elapsed();
    api.metrics.record(label, status, took);
    log::debug!(
        "{method} {label} {status} {:.3}ms",
        took.as_secs_f64() * 1e3
    );
}

/// The request's id: its `X-Request-Id` when that is 1 to 64 characters of letters, digits and
/// `-_.:`, else 32 random hex digits.
pub(crate) fn request_id(request: &tiny_http::Request) -> String {
    let valid = |id: &&str| {
        (1..=proto::MAX_TRACE_LEN).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    };
    match header_value(request, "X-Request-Id").filter(valid) {
        Some(id) => id.to_owned(),
        None => format!("{:032x}", fastrand::u128(..)),
    }
}

fn dispatch(
    api: &Api,
    route: Option<&'static Route>,
    path: &str,
    request: &mut tiny_http::Request,
) -> Reply {
    let Some(route) = route else {
        return ApiError::not_found().reply();
    };
    let result = match route.handler(request.method()) {
        Some(handler) => handler(api, request, path),
        None => Err(ApiError::method_not_allowed(route.allow())),
    };
    // A cookie that names no valid session (revoked, expired, tampered with) is removed, so the
    // pages stop sending it: only where the cookie was the session (not a wrong password at
    // login, which says nothing of it) and only when it was the one session cookie (a
    // clearing `Set-Cookie` would remove ours and leave a planted one).
    let stale_cookie = matches!(&result, Err(error) if error.code == ApiCode::Unauthorized)
        && route.session
        && api.cookie.in_use(request);
    let mut reply = result.unwrap_or_else(|error| error.reply());
    if stale_cookie {
        reply = reply.with_header("Set-Cookie", &api.cookie.clear());
    }
    // Answers about an account (a profile, a session, a token, or an error about one) are
    // never stored by a browser or a shared cache.
    if route.kind == Kind::Account {
        reply = reply.with_header("Cache-Control", "no-store");
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_allows_a_method_and_labels_are_unique() {
        let mut labels: Vec<&str> = ROUTES.iter().map(|route| route.label).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), ROUTES.len());
        assert!(ROUTES.iter().all(|route| !route.methods.is_empty()));
        assert!(!labels.contains(&UNKNOWN));
    }

    #[test]
    fn paths_match_one_route_or_none() {
        let label = |path: &str| Route::of(path).map(|route| route.label);
        assert_eq!(label("/api/v1/me"), Some("/api/v1/me"));
        assert_eq!(
            label("/api/v1/pictures/1-0123456789abcdef"),
            Some("/api/v1/pictures/{key}")
        );
        assert_eq!(label("/api/v1/pictures/"), Some("/api/v1/pictures/{key}"));
        assert_eq!(label("/login"), Some("/{page}"));
        assert_eq!(label("/assets/app.js"), Some("/assets/{file}"));
        assert_eq!(label("/api/v1/me/"), None);
        assert_eq!(label("/nowhere"), None);
    }
}
