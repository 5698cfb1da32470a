//! The HTTP tier's metrics in the Prometheus project's own client (prometheus-client):
//! requests by route label and status and latency by route label, counted as they are
//! answered; and, read at each scrape, every backend pool's state. Served as OpenMetrics text
//! on the admin listener. Each tcp-server serves its own metrics on its admin listener.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::backend::BackendStats;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: String,
}

/// Counters shared by every worker.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RouteStatus, Counter>::default();
        let duration =
            Family::<RouteLabel, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new(BUCKETS)
            });
        registry.register(
            "gatehouse_http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "gatehouse_http_request_duration_seconds",
            "Time from a request's dequeue to its response, by route",
            duration.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
        }
    }

    /// Counts one answered request of the route labelled `route`.
    pub fn record(&self, route: &'static str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RouteStatus { route, status })
            .inc();
        self.duration
            .get_or_create(&RouteLabel { route })
            .observe(took.as_secs_f64());
    }

    /// The exposition: these series, then the backend pools as they are now.
    pub fn render(&self, pools: &[BackendStats]) -> String {
        let mut now = Registry::default();
        type Get = fn(&pool::Stats) -> i64;
        let gauges: [(&str, &str, Get); 5] = [
            (
                "gatehouse_backend_pool_max_size",
                "Sockets a backend's pool may hold",
                |s| i64::from(s.max_size),
            ),
            (
                "gatehouse_backend_pool_size",
                "Open sockets to a backend",
                |s| i64::from(s.size),
            ),
            (
                "gatehouse_backend_pool_idle",
                "Idle sockets to a backend",
                |s| i64::from(s.idle),
            ),
            (
                "gatehouse_backend_pool_in_use",
                "Sockets to a backend in use",
                |s| i64::from(s.in_use),
            ),
            (
                "gatehouse_backend_pool_waiting",
                "Workers waiting for a socket to a backend",
                |s| i64::from(s.waiting),
            ),
        ];
        for (name, help, get) in gauges {
            let family = Family::<BackendLabel, Gauge>::default();
            for backend in pools {
                family
                    .get_or_create(&label(backend))
                    .set(get(&backend.pool));
            }
            now.register(name, help, family);
        }
        type Count = fn(&pool::Stats) -> u64;
        let counters: [(&str, &str, Count); 4] = [
            (
                "gatehouse_backend_pool_timeouts",
                "Waits for a socket that timed out (answered backend_busy)",
                |s| s.checkout_timeouts,
            ),
            (
                "gatehouse_backend_pool_broken",
                "Sockets closed after an I/O or protocol error",
                |s| s.closed_broken,
            ),
            (
                "gatehouse_backend_pool_connect_failures",
                "Connects to a backend that failed",
                |s| s.connect_failures,
            ),
            (
                "gatehouse_backend_pool_checkouts",
                "Sockets borrowed from a backend's pool",
                |s| s.checkouts,
            ),
        ];
        for (name, help, count) in counters {
            let family = Family::<BackendLabel, Counter>::default();
            for backend in pools {
                family
                    .get_or_create(&label(backend))
                    .inc_by(count(&backend.pool));
            }
            now.register(name, help, family);
        }
        let mut text = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut text, &self.registry)
            .and_then(|()| encode_registry(&mut text, &now))
            .and_then(|()| encode_eof(&mut text));
        text
    }
}

fn label(backend: &BackendStats) -> BackendLabel {
    BackendLabel {
        backend: backend.address.to_string(),
    }
}
