//! The server's counters (requests and errors by kind, latency histograms, connections, the
//! database pool), kept in atomics and exported as `proto::Sample`s for `Request::Stats`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use proto::{Sample, SampleKind};

use crate::db::PoolState;
use crate::throttle::Throttle;

/// Request kinds in `proto::kind` order (kind byte minus one).
const KINDS: [&str; 9] = [
    "ping",
    "register",
    "login",
    "logout",
    "get_profile",
    "update_nickname",
    "set_picture",
    "get_picture",
    "stats",
];

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

#[derive(Default)]
struct PerKind {
    requests: AtomicU64,
    errors: AtomicU64,
    micros: AtomicU64,
    /// Non-cumulative; the last counts requests above every bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
}

/// Counters shared by every worker.
#[derive(Default)]
pub struct Stats {
    kinds: [PerKind; KINDS.len()],
    /// Connections handed to a worker.
    pub connections_accepted: AtomicU64,
    /// Connections refused with `Busy` at the connection bound.
    pub connections_refused: AtomicU64,
    /// Connections handed to a worker and not yet finished: the acceptor adds, the worker
    /// subtracts.
    pub connections_active: AtomicI64,
    /// Frames that could not be decoded.
    pub protocol_errors: AtomicU64,
    /// Logins refused by the brute-force throttle.
    pub logins_throttled: AtomicU64,
}

impl Stats {
    /// Counts one answered request.
    pub fn record(&self, request_kind: u8, took: Duration, failed: bool) {
        let Some(kind) = self.kinds.get(usize::from(request_kind).wrapping_sub(1)) else {
            return;
        };
        kind.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            kind.errors.fetch_add(1, Ordering::Relaxed);
        }
        kind.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        kind.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Every counter as a metric sample.
    pub fn snapshot(&self, pool: &PoolState, throttle: &Throttle) -> Vec<Sample> {
        let mut samples = Vec::new();
        let mut push = |name: &str, labels: &[(&str, String)], kind, value: f64| {
            samples.push(Sample {
                name: name.to_owned(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
                kind,
                value,
            });
        };
        for (name, kind) in KINDS.iter().zip(&self.kinds) {
            let label = [("kind", (*name).to_owned())];
            let requests = kind.requests.load(Ordering::Relaxed) as f64;
            push(
                "gatehouse_tcp_requests_total",
                &label,
                SampleKind::Counter,
                requests,
            );
            push(
                "gatehouse_tcp_request_errors_total",
                &label,
                SampleKind::Counter,
                kind.errors.load(Ordering::Relaxed) as f64,
            );
            let mut cumulative = 0;
            for (index, bucket) in kind.buckets.iter().enumerate() {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = BUCKETS
                    .get(index)
                    .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
                push(
                    "gatehouse_tcp_request_duration_seconds_bucket",
                    &[("kind", (*name).to_owned()), ("le", le)],
                    SampleKind::Histogram,
                    cumulative as f64,
                );
            }
            push(
                "gatehouse_tcp_request_duration_seconds_sum",
                &label,
                SampleKind::Histogram,
                kind.micros.load(Ordering::Relaxed) as f64 / 1e6,
            );
            push(
                "gatehouse_tcp_request_duration_seconds_count",
                &label,
                SampleKind::Histogram,
                cumulative as f64,
            );
        }
        let counter = |value: &AtomicU64| value.load(Ordering::Relaxed) as f64;
        push(
            "gatehouse_tcp_connections_accepted_total",
            &[],
            SampleKind::Counter,
            counter(&self.connections_accepted),
        );
        push(
            "gatehouse_tcp_connections_refused_total",
            &[],
            SampleKind::Counter,
            counter(&self.connections_refused),
        );
        push(
            "gatehouse_tcp_connections_active",
            &[],
            SampleKind::Gauge,
            self.connections_active.load(Ordering::Relaxed) as f64,
        );
        push(
            "gatehouse_tcp_protocol_errors_total",
            &[],
            SampleKind::Counter,
            counter(&self.protocol_errors),
        );
        push(
            "gatehouse_tcp_logins_throttled_total",
            &[],
            SampleKind::Counter,
            counter(&self.logins_throttled),
        );
        for (reason, count) in throttle.refusals() {
            push(
                "gatehouse_tcp_throttle_refusals_total",
                &[("reason", reason.name().to_owned())],
                SampleKind::Counter,
                count as f64,
            );
        }
        let fill = throttle.fill();
        for (table, entries) in [
            ("accounts", fill.accounts),
            ("devices", fill.devices),
            ("addresses", fill.addresses),
            ("registrations", fill.registrations),
        ] {
            push(
                "gatehouse_tcp_throttle_entries",
                &[("table", table.to_owned())],
                SampleKind::Gauge,
                entries as f64,
            );
        }
        for (state, value) in [
            ("idle", pool.idle),
            ("in_use", pool.connections - pool.idle),
            ("max", pool.max),
        ] {
            push(
                "gatehouse_db_pool_connections",
                &[("state", state.to_owned())],
                SampleKind::Gauge,
                f64::from(value),
            );
        }
        samples
    }
}
