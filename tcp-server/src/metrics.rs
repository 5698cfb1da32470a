//! tcp-server's metrics, in the Prometheus project's own client (prometheus-client): requests,
//! errors and latency by operation, connections, frames that could not be decoded and logins
//! the throttle refused; and, read at each scrape, the database pool, the replicas (where reads
//! went, which serve, their lag) and the throttle's tables.
//! The admin listener serves them as OpenMetrics text (`admin`).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::db::Db;
use crate::secrets::Secrets;
use crate::throttle::Throttle;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabel {
    ring: &'static str,
    id: String,
    current: &'static str,
}

/// One operation's series, looked up once at start so a request costs no label lookup.
struct PerKind {
    name: &'static str,
    requests: Counter,
    errors: Counter,
    duration: Histogram,
}

/// The server's metrics, shared by every worker.
pub struct Metrics {
    registry: Registry,
    per_kind: Vec<PerKind>,
    /// Connections handed to a worker.
    pub connections_accepted: Counter,
    /// Connections refused with `Busy` at the connection bound or a peer's share.
    pub connections_refused: Counter,
    /// Connections handed to a worker and not yet finished: the acceptor adds (and judges the
    /// bound by it), the worker subtracts.
    pub connections_active: Gauge,
    /// Frames that could not be decoded.
    pub protocol_errors: Counter,
    /// Connections closed for failing the tier handshake.
    pub unauthenticated: Counter,
    /// Logins refused by the throttle.
    pub logins_throttled: Counter,
    /// Stored hashes replaced at a login (other parameters, or an old pepper).
    pub password_rehashes: Counter,
    /// The keys of each keyring in use, 1 each, labelled with the ring, the id and whether it
    /// is current: what an operator checks on every server between rotation steps.
    keyring: Family<KeyLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every series, registered; an operation's are made for each of `proto`'s operations.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<KindLabel, Counter>::default();
        let errors = Family::<KindLabel, Counter>::default();
        let duration = Family::<KindLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(BUCKETS)) as fn() -> Histogram,
        );
        let per_kind = proto::Request::names()
            .into_iter()
            .map(|name| {
                let label = KindLabel { kind: name };
                PerKind {
                    name,
                    requests: requests.get_or_create_owned(&label),
                    errors: errors.get_or_create_owned(&label),
                    duration: duration.get_or_create_owned(&label),
                }
            })
            .collect();
        registry.register(
            "gatehouse_tcp_requests",
            "Requests answered, by operation",
            requests,
        );
        registry.register(
            "gatehouse_tcp_request_errors",
            "Requests answered with an error, by operation",
            errors,
        );
        registry.register(
            "gatehouse_tcp_request_duration_seconds",
            "Time from a request's last byte to its answer, by operation",
            duration,
        );
        let (connections_accepted, connections_refused) = (Counter::default(), Counter::default());
        let connections_active = Gauge::default();
        let (protocol_errors, logins_throttled) = (Counter::default(), Counter::default());
        let (unauthenticated, password_rehashes) = (Counter::default(), Counter::default());
        for (name, help, counter) in [
            (
                "gatehouse_tcp_password_rehashes",
                "Stored password hashes replaced at a login: other parameters, or an old pepper",
                &password_rehashes,
            ),
            (
                "gatehouse_tcp_connections_accepted",
                "Connections handed to a worker",
                &connections_accepted,
            ),
            (
                "gatehouse_tcp_connections_refused",
                "Connections refused with Busy at the connection bound or a peer's share",
                &connections_refused,
            ),
            (
                "gatehouse_tcp_unauthenticated",
                "Connections closed for failing the tier handshake (no key, another key)",
                &unauthenticated,
            ),
            (
                "gatehouse_tcp_protocol_errors",
                "Frames that could not be decoded",
                &protocol_errors,
            ),
            (
                "gatehouse_tcp_logins_throttled",
                "Logins refused by the throttle",
                &logins_throttled,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "gatehouse_tcp_connections_active",
            "Connections being served",
            connections_active.clone(),
        );
        let keyring = Family::<KeyLabel, Gauge>::default();
        registry.register(
            "gatehouse_tcp_keyring_keys",
            "The keys of each keyring in use (pepper, token), by id, and which is current",
            keyring.clone(),
        );
        Metrics {
            registry,
            per_kind,
            connections_accepted,
            connections_refused,
            connections_active,
            protocol_errors,
            unauthenticated,
            logins_throttled,
            password_rehashes,
            keyring,
        }
    }

    /// Shows the keys of both rings now in use.
    pub fn set_keyrings(&self, secrets: &Secrets) {
        self.keyring.clear();
        for (ring, keys) in [("pepper", &secrets.peppers), ("token", &secrets.token_keys)] {
            let current = keys.current().0;
            for id in keys.ids() {
                self.keyring
                    .get_or_create(&KeyLabel {
                        ring,
                        id: id.to_string(),
                        current: if id == current { "true" } else { "false" },
                    })
                    .set(1);
            }
        }
    }

    /// Counts one answered request of the operation named `name`.
    pub fn record(&self, name: &str, took: Duration, failed: bool) {
        let Some(kind) = self.per_kind.iter().find(|kind| kind.name == name) else {
            return;
        };
        kind.requests.inc();
        if failed {
            kind.errors.inc();
        }
        kind.duration.observe(took.as_secs_f64());
    }

    /// The exposition: these series, then the pool's and the throttle's state as they are now.
    pub fn render(&self, db: &Db, throttle: &Throttle) -> String {
        let pool = db.state();
        let mut now = Registry::default();
        let pool_connections = Family::<[(&'static str, &'static str); 1], Gauge>::default();
        for (state, value) in [
            ("idle", pool.idle),
            ("in_use", pool.connections - pool.idle),
            ("max", pool.max),
        ] {
            pool_connections
                .get_or_create(&[("state", state)])
                .set(i64::from(value));
        }
        now.register(
            "gatehouse_db_pool_connections",
            "Database connections by state",
            pool_connections,
        );
        let refusals = Family::<[(&'static str, &'static str); 1], Counter>::default();
        for (reason, count) in throttle.refusals() {
            refusals
                .get_or_create(&[("reason", reason.name())])
                .inc_by(count);
        }
        now.register(
            "gatehouse_tcp_throttle_refusals",
            "Attempts the throttle refused, by reason",
            refusals,
        );
        let entries = Family::<[(&'static str, &'static str); 1], Gauge>::default();
        let fill = throttle.fill();
        for (table, value) in [
            ("accounts", fill.accounts),
            ("devices", fill.devices),
            ("addresses", fill.addresses),
            ("registrations", fill.registrations),
        ] {
            entries
                .get_or_create(&[("table", table)])
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        now.register(
            "gatehouse_tcp_throttle_entries",
            "Entries held in each of the throttle's tables",
            entries,
        );
        if let Some(replicas) = db.replicas() {
            let reads = Family::<[(&'static str, &'static str); 1], Counter>::default();
            let counts = replicas.reads();
            for (by, count) in [
                ("replica", &counts.replica),
                ("primary", &counts.primary),
                ("replica_unfenced", &counts.unfenced),
            ] {
                reads
                    .get_or_create(&[("served_by", by)])
                    .inc_by(count.load(std::sync::atomic::Ordering::Relaxed));
            }
            let fences = Counter::<u64>::default();
            fences.inc_by(counts.fences.load(std::sync::atomic::Ordering::Relaxed));
            now.register(
                "gatehouse_tcp_replica_fences",
                "Fence queries sent to the primary (the WAL position a replica must reach); \
                 one answers every read waiting for it",
                fences,
            );
            now.register(
                "gatehouse_tcp_db_reads",
                "Reads (logins, profiles, pictures) by where they were served: a replica past \
                 the fence, the primary, or with the primary unreachable a replica unfenced",
                reads,
            );
            let serving = Family::<[(&'static str, String); 1], Gauge>::default();
            let lag = Family::<[(&'static str, String); 1], Gauge<f64, AtomicU64>>::default();
            for replica in replicas.status() {
                let label = [("replica", replica.name)];
                serving
                    .get_or_create(&label)
                    .set(i64::from(replica.serving));
                lag.get_or_create(&label).set(replica.lag.as_secs_f64());
            }
            now.register(
                "gatehouse_tcp_replica_serving",
                "Whether each replica gets reads (reachable, replaying, within the lag bound)",
                serving,
            );
            now.register(
                "gatehouse_tcp_replica_lag_seconds",
                "Each replica's lag behind the primary, as last probed",
                lag,
            );
        }
        let mut text = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut text, &self.registry)
            .and_then(|()| encode_registry(&mut text, &now))
            .and_then(|()| encode_eof(&mut text));
        text
    }
}
