//! The HTTP tier's counters (requests by route and status, latency by route) in atomics, and
//! `/metrics` in the Prometheus text format: these, the backend pools, and each tcp-server's
//! own samples fetched over proto.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proto::{Sample, SampleKind};

use crate::api::Route;
use crate::backend::BackendStats;

/// The statuses the API answers with; anything else is counted as `other`.
const STATUSES: [u16; 20] = [
    200, 201, 204, 304, 400, 401, 404, 405, 408, 409, 413, 415, 429, 431, 500, 502, 503, 504, 501,
    505,
];

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct PerRoute {
    /// By index in `STATUSES`; the last slot is `other`.
    statuses: [AtomicU64; STATUSES.len() + 1],
    micros: AtomicU64,
    /// Non-cumulative; the last counts requests above every bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
}

/// Counters shared by every worker.
pub struct Metrics {
    routes: Vec<PerRoute>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            routes: Route::ALL.iter().map(|_| PerRoute::default()).collect(),
        }
    }

    /// Counts one answered request.
    pub fn record(&self, route: Route, status: u16, took: Duration) {
        let per = &self.routes[route as usize];
        let slot = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(STATUSES.len());
        per.statuses[slot].fetch_add(1, Ordering::Relaxed);
        per.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        per.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition: our counters, the pools, and the backends' samples.
    pub fn render(
        &self,
        pools: &[BackendStats],
        backend_samples: &[(SocketAddr, Vec<Sample>)],
    ) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render_requests(&mut out);
        render_pools(&mut out, pools);
        render_backend_samples(&mut out, backend_samples);
        out
    }

    fn render_requests(&self, out: &mut String) {
        out.push_str(
            "# HELP gatehouse_http_requests_total HTTP requests answered, by route and status.\n",
        );
        out.push_str("# TYPE gatehouse_http_requests_total counter\n");
        for (route, per) in Route::ALL.iter().zip(&self.routes) {
            for (slot, count) in per.statuses.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count == 0 {
                    continue;
                }
                let status = STATUSES
                    .get(slot)
                    .map_or_else(|| "other".to_owned(), u16::to_string);
                let _ = writeln!(
                    out,
                    "gatehouse_http_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
                    route.name()
                );
            }
        }
        out.push_str("# HELP gatehouse_http_request_duration_seconds Time from a request's dequeue to its response, by route.\n");
        out.push_str("# TYPE gatehouse_http_request_duration_seconds histogram\n");
        for (route, per) in Route::ALL.iter().zip(&self.routes) {
            let name = route.name();
            let mut cumulative = 0;
            for (index, bucket) in per.buckets.iter().enumerate() {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = BUCKETS
                    .get(index)
                    .map_or_else(|| "+Inf".to_owned(), f64::to_string);
                let _ = writeln!(
                    out,
                    "gatehouse_http_request_duration_seconds_bucket{{route=\"{name}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let seconds = per.micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "gatehouse_http_request_duration_seconds_sum{{route=\"{name}\"}} {seconds}"
            );
            let _ = writeln!(
                out,
                "gatehouse_http_request_duration_seconds_count{{route=\"{name}\"}} {cumulative}"
            );
        }
    }
}

fn render_pools(out: &mut String, pools: &[BackendStats]) {
    type Get = fn(&pool::Stats) -> f64;
    let series: [(&str, &str, &str, Get); 9] = [
        (
            "gatehouse_backend_pool_max_size",
            "gauge",
            "Sockets a backend's pool may hold.",
            |s| f64::from(s.max_size),
        ),
        (
            "gatehouse_backend_pool_size",
            "gauge",
            "Open sockets to a backend.",
            |s| f64::from(s.size),
        ),
        (
            "gatehouse_backend_pool_idle",
            "gauge",
            "Idle sockets to a backend.",
            |s| f64::from(s.idle),
        ),
        (
            "gatehouse_backend_pool_in_use",
            "gauge",
            "Sockets to a backend in use.",
            |s| f64::from(s.in_use),
        ),
        (
            "gatehouse_backend_pool_waiting",
            "gauge",
            "Workers waiting for a socket to a backend.",
            |s| f64::from(s.waiting),
        ),
        (
            "gatehouse_backend_pool_timeouts_total",
            "counter",
            "Waits for a socket that timed out (answered backend_busy).",
            |s| s.checkout_timeouts as f64,
        ),
        (
            "gatehouse_backend_pool_broken_total",
            "counter",
            "Sockets closed after an I/O or protocol error.",
            |s| s.closed_broken as f64,
        ),
        (
            "gatehouse_backend_pool_connect_failures_total",
            "counter",
            "Connects to a backend that failed.",
            |s| s.connect_failures as f64,
        ),
        (
            "gatehouse_backend_pool_checkouts_total",
            "counter",
            "Sockets borrowed from a backend's pool.",
            |s| s.checkouts as f64,
        ),
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for backend in pools {
            let _ = writeln!(
                out,
                "{name}{{backend=\"{}\"}} {}",
                backend.address,
                get(&backend.pool)
            );
        }
    }
}

/// The backends' samples, each with a `backend` label, one `TYPE` line per family.
fn render_backend_samples(out: &mut String, backends: &[(SocketAddr, Vec<Sample>)]) {
    let mut families: BTreeMap<String, (SampleKind, Vec<String>)> = BTreeMap::new();
    for (address, samples) in backends {
        for sample in samples {
            let family = match sample.kind {
                SampleKind::Histogram => ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| sample.name.strip_suffix(suffix))
                    .unwrap_or(&sample.name),
                _ => &sample.name,
            };
            let mut line = format!("{}{{backend=\"{address}\"", sample.name);
            for (key, value) in &sample.labels {
                let _ = write!(line, ",{key}=\"{}\"", escape_label(value));
            }
            let _ = write!(line, "}} {}", sample.value);
            families
                .entry(family.to_owned())
                .or_insert_with(|| (sample.kind, Vec::new()))
                .1
                .push(line);
        }
    }
    for (family, (kind, lines)) in families {
        let kind = match kind {
            SampleKind::Counter => "counter",
            SampleKind::Gauge => "gauge",
            SampleKind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# TYPE {family} {kind}");
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
