//! The pool's settings: a public [`Builder`] with documented defaults that produces a validated,
//! private `Config`.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::time::Duration;

use crate::{Manager, Pool};

/// Settings the pool runs with, fixed at build time.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) max_size: u32,
    pub(crate) min_idle: u32,
    pub(crate) checkout_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) validate_after_idle: Option<Duration>,
    pub(crate) max_concurrent_connects: u32,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) maintenance_interval: Duration,
    pub(crate) fair_after: Duration,
    pub(crate) thread_name: String,
}

/// The default bound of [`Builder::fair_after`]; `pool/README.md` gives the measurements behind
/// it.
pub const DEFAULT_FAIR_AFTER: Duration = Duration::from_micros(500);

/// Configures and builds a [`Pool`].
///
/// ```
/// # use std::time::Duration;
/// # struct M;
/// # impl pool::Manager for M {
/// #     type Connection = ();
/// #     type Error = std::io::Error;
/// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
/// #     fn is_valid(&self, _: &mut ()) -> Result<(), std::io::Error> { Ok(()) }
/// #     fn has_broken(&self, _: &mut ()) -> bool { false }
/// # }
/// let pool = pool::Pool::builder()
///     .max_size(16)
///     .min_idle(2)
///     .checkout_timeout(Duration::from_millis(500))
///     .build(M)
///     .unwrap();
/// let conn = pool.get().unwrap();
/// drop(conn); // back to the pool
/// ```
pub struct Builder<M: Manager> {
    config: Config,
    manager: PhantomData<fn() -> M>,
}

impl<M: Manager> fmt::Debug for Builder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .finish()
    }
}

impl<M: Manager> Clone for Builder<M> {
    fn clone(&self) -> Self {
        Builder {
            config: self.config.clone(),
            manager: PhantomData,
        }
    }
}

impl<M: Manager> Default for Builder<M> {
    fn default() -> Self {
        Builder {
            manager: PhantomData,
            config: Config {
                max_size: 10,
                min_idle: 0,
                checkout_timeout: Duration::from_secs(30),
                idle_timeout: Some(Duration::from_secs(10 * 60)),
                max_lifetime: Some(Duration::from_secs(30 * 60)),
                validate_after_idle: Some(Duration::from_millis(500)),
                max_concurrent_connects: 2,
                backoff_min: Duration::from_millis(50),
                backoff_max: Duration::from_secs(1),
                maintenance_interval: Duration::from_secs(1),
                fair_after: DEFAULT_FAIR_AFTER,
                thread_name: "pool".to_owned(),
            },
        }
    }
}

impl<M: Manager> Builder<M> {
    /// A builder with every option at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most connections the pool holds at once, idle and in use together, counting connects
    /// in flight. Never exceeded.
    ///
    /// Defaults to 10.
    ///
    /// # Panics
    /// If `max_size` is 0.
    pub fn max_size(mut self, max_size: u32) -> Self {
        assert!(max_size > 0, "max_size must be positive");
        self.config.max_size = max_size;
        self
    }

    /// How many idle connections the pool keeps ready: it opens them at start (in the
    /// background) and refills them after they close. Idle connections at or below this count
    /// are never closed for being idle.
    ///
    /// Defaults to 0.
    pub fn min_idle(mut self, min_idle: u32) -> Self {
        self.config.min_idle = min_idle;
        self
    }

    /// How long [`Pool::get`] waits for a connection before giving up. `Duration::MAX` waits
    /// for ever.
    ///
    /// Defaults to 30 seconds.
    pub fn checkout_timeout(mut self, timeout: Duration) -> Self {
        self.config.checkout_timeout = timeout;
        self
    }

    /// Idle connections beyond `min_idle` are closed after being idle this long; `None` keeps
    /// them. Checked every maintenance interval by a connector thread that is not busy
    /// connecting.
    ///
    /// Defaults to 10 minutes.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Connections are closed once they have lived this long, less a random jitter of up to a
    /// tenth so that connections opened together do not all close together; `None` keeps them.
    /// A connection in use is never closed under its user: it is closed when returned.
    ///
    /// Defaults to 30 minutes.
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.config.max_lifetime = lifetime;
        self
    }

    /// An idle connection is checked with [`Manager::is_valid`] before being handed out only when
    /// it has been idle longer than this, so a busy pool pays for no checks; `None` never checks.
    ///
    /// Defaults to 500 ms.
    pub fn validate_after_idle(mut self, threshold: Option<Duration>) -> Self {
        self.config.validate_after_idle = threshold;
        self
    }

    /// The most connects in flight at once. Connects run on this many background threads, never
    /// on a thread asking for a connection and never under the pool's lock.
    ///
    /// Defaults to 2.
    ///
    /// # Panics
    /// If `count` is 0.
    pub fn max_concurrent_connects(mut self, count: u32) -> Self {
        assert!(count > 0, "max_concurrent_connects must be positive");
        self.config.max_concurrent_connects = count;
        self
    }

    /// After a failed connect no other connect is tried for a delay that starts at `min`,
    /// doubles with every failed connect up to `max` until one succeeds, and is jittered down
    /// by up to half. During that delay, a checkout that would need a new connection (there is
    /// room for one and no connect in flight will serve it) fails at once with the last connect
    /// error instead of waiting out its timeout, even while other connections are in use.
    ///
    /// Defaults to 50 ms and 1 second.
    ///
    /// # Panics
    /// If `min` is zero or greater than `max`.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        assert!(
            !min.is_zero() && min <= max,
            "backoff must satisfy 0 < min <= max"
        );
        self.config.backoff_min = min;
        self.config.backoff_max = max;
        self
    }

    /// How often idle connections are checked against `idle_timeout` and `max_lifetime`.
    ///
    /// Defaults to 1 second.
    ///
    /// # Panics
    /// If `interval` is zero.
    pub fn maintenance_interval(mut self, interval: Duration) -> Self {
        assert!(!interval.is_zero(), "maintenance_interval must be positive");
        self.config.maintenance_interval = interval;
        self
    }

    /// The bound on barging. A returned connection is made idle, free for whichever thread asks
    /// first, and the longest waiter is woken to compete for it, as long as no waiter has waited
    /// this long; past it, the connection goes straight into the longest waiter's hands and no
    /// newcomer can take it. Barging spares a context switch per checkout when threads
    /// outnumber cores (the thread that returned a connection usually asks again at once, while
    /// a waiter would first have to be scheduled). Fair handoffs happen at most once per bound,
    /// so a waiter with k others ahead of it past the bound waits about k bounds (or k holding
    /// times, if longer) more; pool/README.md measures the longest waits.
    /// `Duration::ZERO` is strict FIFO handoff; `Duration::MAX` is unbounded barging.
    ///
    /// Defaults to [`DEFAULT_FAIR_AFTER`] (500 µs).
    pub fn fair_after(mut self, bound: Duration) -> Self {
        self.config.fair_after = bound;
        self
    }

    /// The prefix of the background threads' names.
    ///
    /// Defaults to `pool`.
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.config.thread_name = name.into();
        self
    }

    /// Builds the pool and starts its connector threads, which open `min_idle` connections in
    /// the background. Returns at once, without waiting for any connection.
    ///
    /// # Errors
    /// If a background thread cannot be spawned.
    ///
    /// # Panics
    /// If `min_idle` is greater than `max_size`.
    pub fn build(self, manager: M) -> io::Result<Pool<M>> {
        assert!(
            self.config.min_idle <= self.config.max_size,
            "min_idle must not exceed max_size"
        );
        Pool::start(self.config, manager)
    }
}
