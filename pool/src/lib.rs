//! A generic, fair, blocking connection pool guarded by a parking_lot `Mutex` and `Condvar`.
//!
//! The pool knows nothing of what it pools: a [`Manager`] connects, checks and judges
//! connections. What the pool adds:
//!
//! - **Bounded barging.** A returned connection is free for the first thread to ask, and the
//!   longest waiter is woken to compete for it, as long as no waiter has waited
//!   [`Builder::fair_after`] (500 µs by default); past that bound it goes straight into the
//!   longest waiter's hands (FIFO direct handoff). The thread returning a connection usually
//!   asks again at once, so barging spares a context switch per checkout when threads outnumber
//!   cores, and the bound keeps waits short. Idle connections are reused LIFO, so a lightly
//!   loaded pool keeps using a few warm connections and lets the rest time out.
//! - **Nothing slow under the lock.** Connects, validity checks and closes happen outside it.
//!   Connects run on background connector threads, at most `max_concurrent_connects` at once,
//!   and only when waiters (woken ones included) outnumber idle connections plus connects in
//!   flight (or to keep `min_idle`).
//! - **Fail fast.** While connects fail, checkouts that would need a new connection get the last
//!   connect error at once instead of at their timeout; reconnects back off with jitter and the
//!   pool recovers by itself when the backend returns.
//! - **Bounded.** A hard `max_size`; `idle_timeout` above `min_idle`; `max_lifetime` with jitter;
//!   a connection in use is never closed under its user; broken connections are never reused.
//! - **Observable.** [`Pool::stats`] returns counts, closes by reason and checkout waits.
//!
//! # Layout
//! - `lib.rs`: [`Manager`], [`Pool`], the [`PooledConnection`] guard, [`Error`], [`Stats`].
//! - `config.rs`: [`Builder`] and the validated configuration.
//! - `internals.rs`: the state behind the lock and the rules that change it.

mod config;
mod internals;

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use thiserror::Error;

pub use config::Builder;
use config::Config;
pub use config::DEFAULT_FAIR_AFTER;
use internals::{Conn, Counted, Handoff, Internals, WaitStats, Waiter};

/// Opens, checks and judges the connections of one pool.
pub trait Manager: Send + Sync + 'static {
    /// The pooled connection.
    type Connection: Send + 'static;
    /// Why a connect or a check failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection. Runs on a connector thread, outside the pool's lock; it should be
    /// bounded by a connect timeout of its own.
    fn connect(&self) -> Result<Self::Connection, Self::Error>;

    /// Checks that an idle connection still works (for example a ping round trip). Called only
    /// for connections idle longer than [`Builder::validate_after_idle`], outside the lock.
    fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error>;

    /// A cheap, local check when a connection is returned (for example a flag set after an I/O
    /// error). A broken connection is closed instead of being pooled.
    fn has_broken(&self, conn: &mut Self::Connection) -> bool;
}

/// A pool of connections made by `M`. Share it between threads by reference (`&Pool` or
/// `Arc<Pool>`). Dropping it closes its idle connections and tells its connector threads to
/// exit; it does not wait for them, so a connect in flight finishes (and its connection is
/// dropped) in the background.
pub struct Pool<M: Manager> {
    shared: Arc<Shared<M>>,
}

/// Everything the pool's threads share: the manager, the settings and the locked state.
pub(crate) struct Shared<M: Manager> {
    pub(crate) manager: M,
    pub(crate) config: Config,
    pub(crate) internals: Mutex<Internals<M>>,
    /// Wakes connector threads when a connect is wanted or the pool is shutting down.
    pub(crate) connector_wakeup: Condvar,
    pub(crate) wait_stats: WaitStats,
}

/// Why a checkout returned no connection.
#[derive(Debug, Error)]
pub enum Error<E: std::error::Error + 'static> {
    /// No connection became free before the timeout. `last_error` is the error of the most
    /// recent failed connect, if no connect has succeeded since.
    #[error("timed out after {waited:?} waiting for a connection")]
    Timeout {
        /// How long the checkout waited.
        waited: Duration,
        /// The most recent connect error, if any.
        last_error: Option<Arc<E>>,
    },
    /// The checkout needed a new connection and connecting fails: this is the last connect
    /// error, returned without waiting for the timeout.
    #[error("cannot connect: {0}")]
    Connect(#[source] Arc<E>),
}

/// A snapshot of the pool's state and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The configured `max_size`.
    pub max_size: u32,
    /// Open connections, idle and in use.
    pub size: u32,
    /// Idle connections.
    pub idle: u32,
    /// Connections handed out, being validated or being closed.
    pub in_use: u32,
    /// Threads waiting for a connection.
    pub waiting: u32,
    /// Connects in flight.
    pub pending_connects: u32,
    /// Whether the pool is backing off after a failed connect.
    pub backing_off: bool,
    /// Connections opened since the pool was built.
    pub connections_created: u64,
    /// Connects that failed.
    pub connect_failures: u64,
    /// Connections closed because they were marked or found broken.
    pub closed_broken: u64,
    /// Connections closed for being idle past `idle_timeout`.
    pub closed_idle: u64,
    /// Connections closed for having lived past `max_lifetime`.
    pub closed_lifetime: u64,
    /// Connections closed because [`Manager::is_valid`] failed.
    pub closed_invalid: u64,
    /// Successful checkouts. A checkout served at once from the idle list is counted when the
    /// connection is returned; one that waited or validated, when it gets its connection.
    pub checkouts: u64,
    /// Checkouts that timed out.
    pub checkout_timeouts: u64,
    /// Checkouts that failed at once with a connect error.
    pub checkout_connect_errors: u64,
    /// Total time successful checkouts spent waiting.
    pub checkout_wait_total: Duration,
    /// The longest wait of a successful checkout.
    pub checkout_wait_max: Duration,
    /// Successful checkouts by wait: `checkout_wait_buckets[i]` counts waits of at most
    /// [`WAIT_BUCKET_BOUNDS`]`[i]` (and above the previous bound); the last counts the rest.
    pub checkout_wait_buckets: [u64; WAIT_BUCKET_BOUNDS.len() + 1],
}

/// Upper bounds of the checkout-wait histogram buckets in [`Stats`].
pub const WAIT_BUCKET_BOUNDS: [Duration; 8] = [
    Duration::from_micros(100),
    Duration::from_millis(1),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(1),
];

impl<M: Manager> Pool<M> {
    /// A [`Builder`] with default settings.
    pub fn builder() -> Builder<M> {
        Builder::new()
    }

    /// A pool with default settings.
    ///
    /// # Errors
    /// If a background thread cannot be spawned.
    pub fn new(manager: M) -> io::Result<Self> {
        Builder::new().build(manager)
    }

    pub(crate) fn start(config: Config, manager: M) -> io::Result<Self> {
        let threads = config.max_concurrent_connects;
        let thread_name = config.thread_name.clone();
        let shared = Arc::new(Shared {
            internals: Mutex::new(Internals::new(&config)),
            manager,
            config,
            connector_wakeup: Condvar::new(),
            wait_stats: WaitStats::default(),
        });
        for index in 0..threads {
            let connector = Arc::clone(&shared);
            let spawned = thread::Builder::new()
                .name(format!("{thread_name}-connector-{index}"))
                .spawn(move || connector.run_connector());
            if let Err(error) = spawned {
                shared.shut_down();
                return Err(error);
            }
        }
        Ok(Pool { shared })
    }

    /// Checks out a connection, waiting up to the configured checkout timeout.
    ///
    /// # Errors
    /// [`Error::Timeout`] when none became free in time; [`Error::Connect`] when one was needed
    /// and connecting fails.
    pub fn get(&self) -> Result<PooledConnection<'_, M>, Error<M::Error>> {
        self.get_timeout(self.shared.config.checkout_timeout)
    }

    /// Checks out a connection, waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`Pool::get`].
    pub fn get_timeout(
        &self,
        timeout: Duration,
    ) -> Result<PooledConnection<'_, M>, Error<M::Error>> {
        let start = Instant::now();
        // No deadline when the timeout is too long to add to the clock.
        let deadline = start.checked_add(timeout);
        // Made only when this checkout first queues: the fast path allocates nothing.
        let mut waiter: Option<Arc<Waiter<M>>> = None;
        // Whether this checkout has waited (it is then counted with its wait), and whether it
        // was just woken to compete for an idle connection.
        let mut waited = false;
        let mut woken = false;
        // Set once an idle connection this checkout took failed its checks.
        let mut retrying = false;
        // Whether this checkout came before every waiter: it was one (woken), or it took its
        // last idle connection while nobody waited. Such a checkout keeps its place at the
        // front when it has to queue; one that barged past waiters queues behind them.
        let mut first = false;
        loop {
            // Fresh each round: the previous round may have spent long validating or waiting.
            let now = Instant::now();
            let mut internals = self.shared.internals.lock();
            if woken {
                internals.woken -= 1;
            }
            let expired = deadline.is_some_and(|at| now >= at);
            if expired && retrying {
                // Validating the last one used up the time: no other is tried.
                internals.counters.checkout_timeouts += 1;
                return Err(Error::Timeout {
                    waited: start.elapsed(),
                    last_error: internals.last_error.clone(),
                });
            }
            // Anyone may take an idle connection: one made idle while threads wait has a woken
            // waiter on its way, which queues again at the front if it loses the race.
            if woken {
                first = true;
            } else if !retrying {
                first = internals.waiters.is_empty() && internals.woken == 0;
            }
            if let Some(idle) = internals.take_idle() {
                // Taking it may leave fewer than `min_idle` idle: start the refill now, not at
                // the next maintenance tick.
                let refill = internals.wants_refill(&self.shared.config, now);
                drop(internals);
                if refill {
                    self.shared.connector_wakeup.notify_one();
                }
                match self.shared.ready_for_use(idle, now) {
                    Some((conn, validated)) => {
                        if validated || retrying || waited {
                            self.shared.wait_stats.record(start.elapsed());
                            return Ok(self.guard(conn, Counted::AtCheckout));
                        }
                        return Ok(self.guard(conn, Counted::OnReturn));
                    }
                    None => {
                        retrying = true;
                        woken = false;
                        continue;
                    }
                }
            }
            if expired {
                internals.counters.checkout_timeouts += 1;
                return Err(Error::Timeout {
                    waited: start.elapsed(),
                    last_error: internals.last_error.clone(),
                });
            }
            // Only on arrival: a waiter woken to compete keeps waiting for its turn.
            if !waited && let Some(error) = internals.fail_fast_error(&self.shared.config, now) {
                internals.counters.checkout_connect_errors += 1;
                return Err(Error::Connect(error));
            }
            let waiter = waiter.get_or_insert_with(|| Arc::new(Waiter::new(start)));
            if woken || (retrying && first) {
                internals.waiters.push_front(Arc::clone(waiter));
            } else {
                internals.waiters.push_back(Arc::clone(waiter));
            }
            let wake_connector = internals.wants_connect(&self.shared.config, now);
            drop(internals);
            if wake_connector {
                self.shared.connector_wakeup.notify_one();
            }
            waited = true;
            retrying = false;
            match self.wait_for_handoff(waiter, deadline) {
                Ok(Handoff::Conn(conn)) => {
                    self.shared.wait_stats.record(start.elapsed());
                    return Ok(self.guard(conn, Counted::AtCheckout));
                }
                Ok(Handoff::Failed(error)) => return Err(Error::Connect(error)),
                Ok(Handoff::Woken) => woken = true,
                Err(last_error) => {
                    return Err(Error::Timeout {
                        waited: start.elapsed(),
                        last_error,
                    });
                }
            }
        }
    }

    /// Checks out an idle connection if one is ready now. Never queues and never connects; it
    /// does run [`Manager::is_valid`] on a connection that idled past `validate_after_idle`.
    pub fn try_get(&self) -> Option<PooledConnection<'_, M>> {
        loop {
            let now = Instant::now();
            let mut internals = self.shared.internals.lock();
            let idle = internals.take_idle()?;
            let refill = internals.wants_refill(&self.shared.config, now);
            drop(internals);
            if refill {
                self.shared.connector_wakeup.notify_one();
            }
            if let Some((conn, validated)) = self.shared.ready_for_use(idle, now) {
                if validated {
                    self.shared.wait_stats.record_immediate();
                    return Some(self.guard(conn, Counted::AtCheckout));
                }
                return Some(self.guard(conn, Counted::OnReturn));
            }
        }
    }

    /// A snapshot of the pool's state and counters.
    pub fn stats(&self) -> Stats {
        let mut stats = self
            .shared
            .internals
            .lock()
            .stats(&self.shared.config, Instant::now());
        self.shared.wait_stats.add_to(&mut stats);
        stats
    }

    fn guard(&self, conn: Conn<M::Connection>, counted: Counted) -> PooledConnection<'_, M> {
        PooledConnection {
            pool: self,
            conn: Some(conn),
            broken: false,
            counted,
        }
    }

    /// Waits on the waiter's own slot. The slot is filled under the pool lock by whoever pops the
    /// waiter from the queue, so a woken waiter takes its connection without touching that lock.
    /// On timeout, returns the last connect error, if any.
    #[allow(clippy::type_complexity)]
    fn wait_for_handoff(
        &self,
        waiter: &Waiter<M>,
        deadline: Option<Instant>,
    ) -> Result<Handoff<M>, Option<Arc<M::Error>>> {
        let mut slot = waiter.slot.lock();
        loop {
            if let Some(handoff) = slot.take() {
                return Ok(handoff);
            }
            match deadline {
                Some(deadline) => {
                    if waiter.ready.wait_until(&mut slot, deadline).timed_out() {
                        break;
                    }
                }
                None => waiter.ready.wait(&mut slot),
            }
        }
        drop(slot);
        // Timed out. Under the pool lock the slot's state is final: either a handoff filled it
        // just now, or the waiter is still queued and leaves the queue empty-handed.
        let mut internals = self.shared.internals.lock();
        if let Some(handoff) = waiter.slot.lock().take() {
            return Ok(handoff);
        }
        internals.remove_waiter(waiter);
        internals.counters.checkout_timeouts += 1;
        Err(internals.last_error.clone())
    }
}

impl<M: Manager> Drop for Pool<M> {
    fn drop(&mut self) {
        self.shared.shut_down();
    }
}

impl<M: Manager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish()
    }
}

/// A checked-out connection; returns to the pool when dropped.
pub struct PooledConnection<'a, M: Manager> {
    pool: &'a Pool<M>,
    conn: Option<Conn<M::Connection>>,
    broken: bool,
    counted: Counted,
}

impl<M: Manager> PooledConnection<'_, M> {
    /// Marks the connection broken (for example after an I/O error): it is closed when dropped
    /// and never handed out again.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }
}

impl<M: Manager> Deref for PooledConnection<'_, M> {
    type Target = M::Connection;

    fn deref(&self) -> &M::Connection {
        match &self.conn {
            Some(conn) => &conn.raw,
            None => unreachable!("the connection is only taken in drop"),
        }
    }
}

impl<M: Manager> DerefMut for PooledConnection<'_, M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        match &mut self.conn {
            Some(conn) => &mut conn.raw,
            None => unreachable!("the connection is only taken in drop"),
        }
    }
}

impl<M: Manager> Drop for PooledConnection<'_, M> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // A user that panicked may have left the connection in the middle of a request.
            let broken = self.broken || thread::panicking();
            self.pool.shared.put_back(conn, broken, self.counted);
        }
    }
}

impl<M: Manager> fmt::Debug for PooledConnection<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection")
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}
