//! The routing table: every route the server answers, its path pattern, the methods it allows
//! and the handler of each, the listener it is served on, and its label in the metrics. One
//! table; the handlers live by resource under `api/`. A new route is one row here.

use tiny_http::Method;

use crate::api::{self, Api, me, pictures, sessions, users};
use crate::http::{ApiError, Reply};

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
        ],
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
