//! PostgreSQL access: an r2d2 pool of `postgres` clients, each with its own cache of prepared
//! statements; a statement timeout so a stalled database answers `Unavailable` instead of
//! hanging; the retry of idempotent queries whose connection broke; and [`Db`], the primary with
//! any replicas (`replicas.rs`), which reads go to.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use postgres::error::SqlState;
use postgres::{Client, NoTls, Statement};

use crate::replicas::Replicas;

/// Where the schema comes from: `tcp-server/migrations`, applied by refinery.
mod embedded {
    refinery::embed_migrations!("migrations");
}

/// A pooled client and the statements prepared on it. The sync client has no statement cache of
/// its own, and preparing on every query would double the round trips.
pub struct PgConn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl PgConn {
    /// The client, for queries with a statement from [`PgConn::prepared`].
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// `sql` prepared on this connection, prepared once and cached.
    pub fn prepared(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

/// Opens [`PgConn`]s for r2d2.
pub struct PgManager {
    config: postgres::Config,
}

impl r2d2::ManageConnection for PgManager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        Ok(PgConn {
            client: self.config.connect(NoTls)?,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

/// Why a database call failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had (the database is down, or the pool is exhausted), or the
    /// statement ran past the statement timeout.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The connection died under the query (a database restart), or a migration made a cached
    /// statement stale: an idempotent query may run again on another connection.
    #[error("connection lost: {0}")]
    Retryable(postgres::Error),
    /// The query failed; `.code()` tells constraint violations apart.
    #[error("query failed: {0}")]
    Query(#[from] postgres::Error),
}

/// Settings of the database pool.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// The most connections at once.
    pub pool_size: u32,
    /// How long a request waits for a connection.
    pub checkout_timeout: Duration,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// How long one statement may run, lock waits included, before it is cancelled.
    pub statement_timeout: Duration,
    /// The most a replica may lag behind the primary and still serve reads.
    pub max_replica_lag: Duration,
}

impl DbConfig {
    /// The defaults, which the command line shares.
    pub const DEFAULT: DbConfig = DbConfig {
        pool_size: 32,
        checkout_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(5),
        max_replica_lag: Duration::from_secs(1),
    };
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig::DEFAULT
    }
}

/// Whether the last attempt to open a database connection failed. Set by r2d2's error
/// handler and cleared by its acquire event, both called from r2d2's background connector,
/// which keeps retrying (with backoff) while any attempt is pending.
#[derive(Debug)]
struct Reachability {
    down: AtomicBool,
    /// "the database", or "replica host:port".
    what: String,
}

#[derive(Debug)]
struct ConnectErrors(Arc<Reachability>);

impl r2d2::HandleError<postgres::Error> for ConnectErrors {
    fn handle_error(&self, error: postgres::Error) {
        // Logged once per outage, not once per retry.
        if !self.0.down.swap(true, Ordering::Relaxed) {
            log::warn!(
                "cannot connect to {} ({error}); failing fast until it is back",
                self.0.what
            );
        }
    }
}

#[derive(Debug)]
struct Connects(Arc<Reachability>);

impl r2d2::HandleEvent for Connects {
    fn handle_acquire(&self, _: r2d2::event::AcquireEvent) {
        if self.0.down.swap(false, Ordering::Relaxed) {
            log::info!("connected to {} again", self.0.what);
        }
    }
}

/// The pool of connections to one PostgreSQL server.
pub struct Pool {
    pool: r2d2::Pool<PgManager>,
    reachability: Arc<Reachability>,
    /// When a statement last succeeded, in milliseconds after `epoch` (0: never), so that a
    /// readiness check under load costs no round trip.
    last_success_ms: AtomicU64,
    epoch: Instant,
}

/// State of the pool, for the stats.
pub struct PoolState {
    /// Open connections.
    pub connections: u32,
    /// Idle connections.
    pub idle: u32,
    /// The configured maximum.
    pub max: u32,
}

impl Pool {
    /// A pool for `url`, named `what` in logs. It connects lazily, so the server starts even
    /// while the database is down and answers `Unavailable` until it is back.
    pub fn new(url: &str, config: &DbConfig, what: &str) -> anyhow::Result<Self> {
        let mut pg: postgres::Config = url
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid database URL: {e}"))?;
        pg.connect_timeout(config.connect_timeout);
        pg.application_name("gatehouse-tcp-server");
        let options = format!(
            "{} -c statement_timeout={}",
            pg.get_options().unwrap_or(""),
            config.statement_timeout.as_millis()
        );
        pg.options(options.trim());
        // A dead network path is noticed in seconds, not at the kernel's default of hours.
        pg.keepalives_idle(Duration::from_secs(10));
        pg.keepalives_interval(Duration::from_secs(5));
        pg.keepalives_retries(3);
        pg.tcp_user_timeout(config.statement_timeout + Duration::from_secs(5));
        let reachability = Arc::new(Reachability {
            down: AtomicBool::new(false),
            what: what.to_owned(),
        });
        let pool = r2d2::Pool::builder()
            .max_size(config.pool_size)
            .min_idle(Some(0))
            .connection_timeout(config.checkout_timeout)
            // A validity query on every checkout would double the round trips; broken
            // connections are caught by `has_broken` and the retry in `Db::run`.
            .test_on_check_out(false)
            .error_handler(Box::new(ConnectErrors(Arc::clone(&reachability))))
            .event_handler(Box::new(Connects(Arc::clone(&reachability))))
            .build_unchecked(PgManager { config: pg });
        Ok(Pool {
            pool,
            reachability,
            last_success_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// Whether the database answers: at once if a statement succeeded within the last
    /// second, else by an empty query, waiting at most 250 ms for a connection. What `Ping`
    /// reports, so that readiness follows the database; it stays cheap because http-server
    /// pings idle sockets with a short deadline. Dead connections left by a database restart
    /// are discarded one after another, so the first check after it already says ready.
    pub fn check(&self) -> Result<(), DbError> {
        let last = self.last_success_ms.load(Ordering::Relaxed);
        if last != 0 && self.elapsed_ms().saturating_sub(last) < 1_000 {
            return Ok(());
        }
        self.on_live_connection(|conn| conn.client.simple_query("").map(|_| ()))
    }

    /// What this pool reaches, as its logs name it.
    pub fn what(&self) -> &str {
        &self.reachability.what
    }

    /// One row of `sql` (no parameters), waiting at most 250 ms for a connection: what the
    /// replicas' prober and fence ask, which must not hang on a server that is gone.
    pub fn probe(&self, sql: &'static str) -> Result<postgres::Row, DbError> {
        self.on_live_connection(|conn| {
            let statement = conn.prepared(sql)?;
            conn.client().query_one(&statement, &[])
        })
    }

    /// `query` on a pooled connection, waiting at most 250 ms for one (none while connecting
    /// fails). Dead connections left by a restart are discarded one after another, so the first
    /// call after a restart reaches the server that is back.
    fn on_live_connection<T>(
        &self,
        mut query: impl FnMut(&mut PgConn) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        for _ in 0..=self.pool.max_size() {
            let mut conn = if self.failing_fast() {
                self.pool.try_get()
            } else {
                self.pool.get_timeout(Duration::from_millis(250)).ok()
            }
            .ok_or_else(|| DbError::Unavailable("no database connection".to_owned()))?;
            match query(&mut conn) {
                Ok(value) => {
                    self.last_success_ms
                        .store(self.elapsed_ms(), Ordering::Relaxed);
                    return Ok(value);
                }
                Err(error)
                    if error.is_closed() || conn.client.is_closed() || is_shutdown(&error) => {}
                Err(error) => return Err(DbError::Query(error)),
            }
        }
        Err(DbError::Unavailable(
            "every database connection was dead".to_owned(),
        ))
    }

    /// Connecting fails and no connection is open: waiting for one would be for nothing.
    /// With connections open (the database is up but refuses more, say), requests still wait
    /// for one of them.
    fn failing_fast(&self) -> bool {
        self.reachability.down.load(Ordering::Relaxed) && self.pool.state().connections == 0
    }

    fn elapsed_ms(&self) -> u64 {
        // Never 0, which means "never".
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Runs `query` on a pooled connection. If it fails because its connection broke, it runs
    /// again on another, so `query` must be safe to repeat. After a database restart every
    /// idle pooled connection is dead; each failure discards one, so at most the pool's size of
    /// retries reach a fresh connection.
    pub fn run<T>(
        &self,
        mut query: impl FnMut(&mut PgConn) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        let mut retries = self.pool.max_size();
        loop {
            match self.run_once(&mut query) {
                Err(DbError::Retryable(error)) if retries > 0 => {
                    retries -= 1;
                    log::warn!("retrying a query on another connection: {error}");
                }
                other => return other,
            }
        }
    }

    /// Runs `query` once, for statements that must not be repeated.
    pub fn run_once<T>(
        &self,
        query: &mut impl FnMut(&mut PgConn) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        // While connecting fails, take only a connection that is already open: waiting out the
        // checkout timeout would hold a worker per request for nothing. r2d2 keeps trying to
        // connect in the background, and its first success ends this.
        let mut conn = self.checkout()?;
        let result = query(&mut conn);
        if result.is_ok() {
            self.last_success_ms
                .store(self.elapsed_ms(), Ordering::Relaxed);
        }
        result.map_err(|error| {
            if error.code() == Some(&SqlState::QUERY_CANCELED) {
                DbError::Unavailable(error.to_string())
            } else if error.is_closed() || conn.client.is_closed() || is_shutdown(&error) {
                // r2d2 discards the connection when it is returned (`has_broken`).
                DbError::Retryable(error)
            } else if is_stale_plan(&error) {
                conn.statements.clear();
                DbError::Retryable(error)
            } else {
                DbError::Query(error)
            }
        })
    }

    /// A pooled connection. While connecting fails and none is open, the request fails at
    /// once: waiting out the checkout timeout would hold a worker per request for nothing.
    /// r2d2 keeps trying to connect in the background, and its first success ends this. The
    /// wait is sliced so a request that began before the failure was noticed stops waiting too.
    fn checkout(&self) -> Result<r2d2::PooledConnection<PgManager>, DbError> {
        let unreachable = || DbError::Unavailable("the database cannot be reached".to_owned());
        let deadline = Instant::now() + self.pool.connection_timeout();
        loop {
            if self.failing_fast() {
                return self.pool.try_get().ok_or_else(unreachable);
            }
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            match self.pool.get_timeout(slice) {
                Ok(conn) => return Ok(conn),
                Err(error) if Instant::now() >= deadline => {
                    return Err(DbError::Unavailable(error.to_string()));
                }
                Err(_) => {}
            }
        }
    }

    /// Open and idle connections.
    pub fn state(&self) -> PoolState {
        let state = self.pool.state();
        PoolState {
            connections: state.connections,
            idle: state.idle_connections,
            max: self.pool.max_size(),
        }
    }
}

/// The primary's pool, which a promotion replaces (see `replicas.rs`).
pub type Current = Arc<RwLock<Arc<Pool>>>;

/// The database: the primary, which takes every write, and any replicas, which take the reads
/// that [`Db::read`] is given.
pub struct Db {
    primary: Current,
    replicas: Option<Replicas>,
}

impl Db {
    /// Pools for the primary at `url` and the replicas at `replica_urls`, all connected lazily.
    pub fn new(url: &str, replica_urls: &[String], config: &DbConfig) -> anyhow::Result<Self> {
        let primary = Arc::new(RwLock::new(Arc::new(Pool::new(
            url,
            config,
            "the database",
        )?)));
        let replicas = if replica_urls.is_empty() {
            None
        } else {
            Some(Replicas::new(
                &primary,
                replica_urls,
                config,
                config.max_replica_lag,
            )?)
        };
        Ok(Db { primary, replicas })
    }

    /// Runs `query` on the primary, and again on another connection if its connection broke:
    /// see [`Pool::run`].
    pub fn run<T>(
        &self,
        query: impl FnMut(&mut PgConn) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        self.primary().run(query)
    }

    /// The primary now.
    fn primary(&self) -> Arc<Pool> {
        Arc::clone(&self.primary.read())
    }

    /// Runs `query` once on the primary, for statements that must not be repeated.
    pub fn run_once<T>(
        &self,
        query: &mut impl FnMut(&mut PgConn) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        self.primary().run_once(query)
    }

    /// Runs the read-only `query` on a replica that answers as the primary would now, else on
    /// the primary (see `replicas.rs`); on the primary when there are no replicas.
    pub fn read<T>(
        &self,
        query: impl FnMut(&mut PgConn) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        match &self.replicas {
            Some(replicas) => replicas.read(query),
            None => self.primary().run(query),
        }
    }

    /// Whether reads can be served: the primary answers, or (with it gone) a replica serves.
    pub fn check(&self) -> Result<(), DbError> {
        match self.primary().check() {
            Err(_)
                if self
                    .replicas
                    .as_ref()
                    .is_some_and(Replicas::serve_without_primary) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// The primary's pool.
    pub fn state(&self) -> PoolState {
        self.primary().state()
    }

    /// The replicas, if any.
    pub fn replicas(&self) -> Option<&Replicas> {
        self.replicas.as_ref()
    }
}

/// The server is ending this session: a fast shutdown or restart (57P01), a crash of another
/// backend (57P02), or it is not accepting sessions yet (57P03). The connection is as good as
/// closed, and a query may be run again elsewhere once the server is back.
fn is_shutdown(error: &postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code)
    })
}

/// A migration changed the result type of a statement this connection had prepared.
fn is_stale_plan(error: &postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::FEATURE_NOT_SUPPORTED
            && db
                .message()
                .contains("cached plan must not change result type")
    })
}

/// Applies every pending migration; returns how many ran.
pub fn migrate(url: &str) -> anyhow::Result<usize> {
    let mut client = Client::connect(url, NoTls)
        .map_err(|e| anyhow::anyhow!("connecting to the database: {e}"))?;
    let report = embedded::migrations::runner()
        .run(&mut client)
        .map_err(|e| anyhow::anyhow!("migrating: {e}"))?;
    Ok(report.applied_migrations().len())
}
