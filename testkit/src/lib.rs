//! What the tests of both servers share: the real test database (tests need PostgreSQL and fail,
//! never skip, without it), names no other run has used, tcp-server's settings and context made
//! for tests, a strict reading of a metrics exposition, and a bounded wait for a condition.
//! Only tests depend on this crate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use prometheus_parse::{LineInfo, Scrape, Value};

use tcp_server::db::{self, DbConfig};
use tcp_server::ops::Context;
use tcp_server::password::PasswordParams;
use tcp_server::secrets::{Keyring, Secrets};
use tcp_server::settings::Settings;
use tcp_server::throttle::ThrottleConfig;

/// The pepper of every test context: tests that forge tokens derive the signing key from it.
pub const PEPPER: &[u8] = b"a-test-pepper-of-enough-length";

/// The tier secret of every test server and client.
pub const TIER_SECRET: &[u8] = b"a test tier secret of enough length";

/// The tier key of every test server and client.
pub fn tier_key() -> proto::TierKey {
    proto::TierKey::from_secret(TIER_SECRET).expect("the test tier secret is long enough")
}

/// The cheapest password parameters the server accepts, to keep tests fast.
pub const FAST: PasswordParams = PasswordParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

/// The test database (`DATABASE_URL`, which `scripts/test` sets to its private cluster's
/// `gatehouse_test`), migrated once per test process.
///
/// # Panics
/// Without `DATABASE_URL`, or when the database cannot be migrated: these tests need
/// PostgreSQL.
pub fn database_url() -> String {
    static MIGRATED: OnceLock<String> = OnceLock::new();
    MIGRATED
        .get_or_init(|| {
            let url = std::env::var("DATABASE_URL").expect(
                "DATABASE_URL is not set: these tests need PostgreSQL; run them with scripts/test, \
                 which starts a private cluster",
            );
            db::migrate(&url).expect("migrating the test database (is PostgreSQL running?)");
            url
        })
        .clone()
}

/// Waits until `condition` holds, looking every 20 ms for up to `wait`; returns whether it
/// did. For a test to wait for what it needs instead of sleeping a fixed time.
pub fn eventually(wait: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A directory removed with the guard.
pub struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A private CA and the two certificates of the tier link's TLS, made by the script operators
/// use (scripts/tier-ca), in a directory of the caller's own named after `name`.
pub fn tier_ca(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("gatehouse-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/tier-ca");
    let status = std::process::Command::new(script)
        .arg("--dir")
        .arg(&dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("running scripts/tier-ca");
    assert!(status.success(), "scripts/tier-ca failed");
    TempDir(dir)
}

/// A username no other test run has used.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}{:012x}", fastrand::u64(..) >> 16)
}

/// Limits for the tests that are not about them: every test of a process registers and logs
/// in from 127.0.0.1, so the per-address limits would soon refuse them, and small tables keep
/// each context light. The throttle's own tests set the limits they exercise.
pub fn open_throttle() -> ThrottleConfig {
    ThrottleConfig {
        address_failures: 10_000,
        register_burst: 10_000,
        register_global_burst: 10_000,
        max_accounts: 10_000,
        max_clients: 10_000,
        ..ThrottleConfig::DEFAULT
    }
}

/// tcp-server's settings for tests over the test database: the cheapest hashes, a small pool
/// with short waits (failure paths answer quickly), hour-long sessions, the open throttle.
pub fn settings() -> Settings {
    Settings {
        db: DbConfig {
            pool_size: 8,
            checkout_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(2),
            ..DbConfig::DEFAULT
        },
        password: FAST,
        max_concurrent_hashes: 2,
        max_concurrent_pictures: 2,
        session_ttl: Duration::from_secs(3600),
        device_ttl: Duration::from_secs(3600),
        throttle: open_throttle(),
        ..Settings::new(database_url())
    }
}

/// The secrets of [`PEPPER`].
pub fn secrets() -> Secrets {
    secrets_with(PEPPER)
}

/// The secrets of another pepper (a backend after a pepper change): `pepper` alone is both
/// keyrings.
pub fn secrets_with(pepper: &[u8]) -> Secrets {
    let ring = Keyring::single(pepper).expect("a test pepper is long enough");
    Secrets {
        peppers: ring.clone(),
        token_keys: ring,
    }
}

/// A context over `settings` and the test pepper.
pub fn context_with(settings: &Settings) -> Context {
    Context::new(settings, &secrets()).expect("a test context")
}

/// A context with [`settings`].
pub fn context() -> Context {
    context_with(&settings())
}

/// A metrics exposition, read strictly: every line must be a comment (`# HELP`, `# TYPE`,
/// `# UNIT`, `# EOF`) or a sample whose value is a number, as Prometheus reads it.
///
/// # Panics
/// On the first line that is neither.
pub fn parse_metrics(text: &str) -> Scrape {
    for line in text.lines().filter(|line| !line.is_empty()) {
        match LineInfo::parse(line) {
            LineInfo::Doc { .. } | LineInfo::Type { .. } => {}
            LineInfo::Sample { value, .. } => {
                let number =
                    value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value);
                assert!(number, "not a number in the exposition: {line:?}");
            }
            LineInfo::Ignored if line.starts_with("# UNIT ") || line == "# EOF" => {}
            other => panic!("not a metrics line ({other:?}): {line:?}"),
        }
    }
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("a scrape")
}

/// The value of the sample `name` whose labels include all of `labels`, if there is one;
/// a histogram's count for a histogram.
pub fn metric(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .find(|sample| labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v)))
        .map(|sample| match &sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
}

/// `GET /metrics` from an admin listener, read strictly ([`parse_metrics`]).
pub fn scrape(admin: SocketAddr) -> Scrape {
    let mut stream = TcpStream::connect(admin).expect("the admin listener accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .expect("the request is sent");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("a whole answer before the close");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    parse_metrics(body)
}

/// A PostgreSQL cluster of the test's own, made and run by scripts/postgres in a temporary
/// directory on a port of its own: a primary, or a streaming replica of one. Stopped (fast)
/// and deleted with the guard.
pub struct PgCluster {
    dir: TempDir,
    port: u16,
    replica_of: Option<std::path::PathBuf>,
}

impl PgCluster {
    /// A new primary named `name`, with gatehouse's database migrated.
    ///
    /// # Panics
    /// When PostgreSQL cannot be set up: these tests need it.
    pub fn primary(name: &str) -> PgCluster {
        let cluster = PgCluster::make(name, None);
        db::migrate(&cluster.url()).expect("migrating the new primary");
        cluster
    }

    /// A new streaming replica of `self` (pg_basebackup -R), serving reads.
    pub fn replica(&self, name: &str) -> PgCluster {
        PgCluster::make(name, Some(self.dir.to_path_buf()))
    }

    fn make(name: &str, replica_of: Option<std::path::PathBuf>) -> PgCluster {
        let dir = std::env::temp_dir().join(format!("gatehouse-pg-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the cluster's directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("finding a free port")
            .port();
        let cluster = PgCluster {
            dir: TempDir(dir),
            port,
            replica_of,
        };
        cluster.script("start");
        cluster
    }

    /// gatehouse's URL on this cluster.
    pub fn url(&self) -> String {
        format!(
            "postgres://gatehouse:gatehouse@127.0.0.1:{}/gatehouse",
            self.port
        )
    }

    /// Runs scripts/postgres `command` on this cluster.
    ///
    /// # Panics
    /// When it fails, with what it said.
    pub fn script(&self, command: &str) {
        let out = self
            .command(command)
            .output()
            .expect("running scripts/postgres");
        assert!(
            out.status.success(),
            "scripts/postgres {command} on {}: {}",
            self.dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// scripts/postgres `command` for this cluster, not yet run.
    fn command(&self, command: &str) -> std::process::Command {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/postgres");
        let mut run = std::process::Command::new(script);
        run.arg(command)
            .env_remove("DATABASE_URL")
            .env("GATEHOUSE_PG_DIR", &*self.dir)
            .env("GATEHOUSE_PG_PORT", self.port.to_string())
            .env("GATEHOUSE_PG_SHARED_BUFFERS", "64MB");
        if let Some(primary) = &self.replica_of {
            run.env("GATEHOUSE_PG_REPLICA_OF", primary);
        }
        run
    }

    /// `sql` run by the superuser through the cluster's unix socket (what gatehouse's role may
    /// not do: pausing a replica's replay, say); psql's unaligned output.
    ///
    /// # Panics
    /// When psql fails.
    pub fn superuser(&self, sql: &str) -> String {
        let out = std::process::Command::new("psql")
            .args([
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-d",
                "gatehouse",
            ])
            .arg("-h")
            .arg(self.dir.join("postgres-socket"))
            .args(["-p", &self.port.to_string(), "-c", sql])
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("stop")
            .stderr(std::process::Stdio::null())
            .status();
    }
}
