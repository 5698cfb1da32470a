//! The state behind the pool's lock, and every rule that changes it.
//!
//! Lock discipline: the pool lock guards one [`Internals`]. Code holding it only moves
//! connections between queues and updates counts; connecting, validating and dropping
//! connections happen after it is released. A waiter's slot lock is only ever taken while holding
//! the pool lock or alone, never the other way round, so the two cannot deadlock.
//!
//! Invariants, true whenever the pool lock is free:
//! - `idle` is non-empty only when `waiters` is empty (a free connection always goes to the
//!   front waiter first);
//! - `open + pending <= max_size`, where `open` counts idle and checked-out connections.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::config::Config;
use crate::{Manager, Shared, Stats, WAIT_BUCKET_BOUNDS};

/// A pooled connection and when it must be retired.
pub(crate) struct Conn<C> {
    pub(crate) raw: C,
    expires_at: Option<Instant>,
}

struct IdleConn<C> {
    conn: Conn<C>,
    idle_since: Instant,
}

/// What a waiting thread is handed.
pub(crate) enum Handoff<M: Manager> {
    Conn(Conn<M::Connection>),
    Failed(Arc<M::Error>),
}

/// One waiting thread: the slot it is handed a result in, and the condvar that wakes it.
pub(crate) struct Waiter<M: Manager> {
    pub(crate) slot: Mutex<Option<Handoff<M>>>,
    pub(crate) ready: Condvar,
}

impl<M: Manager> Default for Waiter<M> {
    fn default() -> Self {
        Waiter {
            slot: Mutex::new(None),
            ready: Condvar::new(),
        }
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) created: u64,
    pub(crate) connect_failures: u64,
    pub(crate) closed_broken: u64,
    pub(crate) closed_idle: u64,
    pub(crate) closed_lifetime: u64,
    pub(crate) closed_invalid: u64,
    /// Checkouts served from the idle list without waiting.
    pub(crate) immediate_checkouts: u64,
    pub(crate) checkout_timeouts: u64,
    pub(crate) checkout_connect_errors: u64,
}

/// Whether closing a connection taken from the idle list undoes the checkout counted for it.
#[derive(Clone, Copy)]
pub(crate) enum Checkout {
    Keep,
    Retract,
}

/// Why a connection is closed.
#[derive(Clone, Copy)]
pub(crate) enum CloseReason {
    Broken,
    Idle,
    Lifetime,
    Invalid,
}

pub(crate) struct Internals<M: Manager> {
    /// Idle connections, the most recently returned last (reused first).
    idle: Vec<IdleConn<M::Connection>>,
    /// Waiting threads, the longest-waiting first.
    pub(crate) waiters: VecDeque<Arc<Waiter<M>>>,
    /// Connections idle or checked out.
    open: u32,
    /// Connects in flight.
    pending: u32,
    pub(crate) last_error: Option<Arc<M::Error>>,
    /// No connect is started before this instant (backoff after a failure).
    retry_at: Option<Instant>,
    backoff: Duration,
    next_maintenance: Instant,
    shutting_down: bool,
    pub(crate) counters: Counters,
}

impl<M: Manager> Internals<M> {
    pub(crate) fn new(config: &Config) -> Self {
        Internals {
            idle: Vec::new(),
            waiters: VecDeque::new(),
            open: 0,
            pending: 0,
            last_error: None,
            retry_at: None,
            backoff: config.backoff_min,
            next_maintenance: Instant::now() + config.maintenance_interval,
            shutting_down: false,
            counters: Counters::default(),
        }
    }

    /// Pops the most recently returned idle connection. By the invariant, no thread is waiting
    /// when one is idle, so taking it jumps no queue.
    pub(crate) fn take_idle(&mut self) -> Option<IdleConnHandle<M::Connection>> {
        let idle = self.idle.pop()?;
        self.counters.immediate_checkouts += 1;
        Some(IdleConnHandle(idle))
    }

    fn backing_off(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|at| now < at)
    }

    fn has_capacity(&self, config: &Config) -> bool {
        self.open + self.pending < config.max_size
    }

    /// The error a checkout gets at once instead of queueing: when it would need a new
    /// connection (there is room for one) but connects are backing off after a failure.
    pub(crate) fn fail_fast_error(&self, config: &Config, now: Instant) -> Option<Arc<M::Error>> {
        if self.has_capacity(config) && self.backing_off(now) {
            self.last_error.clone()
        } else {
            None
        }
    }

    /// Whether a connector thread should start a connect now: there is room, the in-flight bound
    /// allows it, no backoff is running, and either waiters outnumber idle connections plus
    /// connects in flight or `min_idle` needs refilling.
    pub(crate) fn wants_connect(&self, config: &Config, now: Instant) -> bool {
        let idle_and_pending = self.idle.len() + self.pending as usize;
        let demand =
            self.waiters.len() > idle_and_pending || idle_and_pending < config.min_idle as usize;
        !self.shutting_down
            && demand
            && self.has_capacity(config)
            && self.pending < config.max_concurrent_connects
            && !self.backing_off(now)
    }

    /// Hands a free connection to the longest waiter, or makes it idle. Returns the waiter to
    /// notify once the lock is released.
    fn hand_over(&mut self, conn: Conn<M::Connection>, now: Instant) -> Option<Arc<Waiter<M>>> {
        match self.waiters.pop_front() {
            Some(waiter) => {
                *waiter.slot.lock() = Some(Handoff::Conn(conn));
                Some(waiter)
            }
            None => {
                self.idle.push(IdleConn {
                    conn,
                    idle_since: now,
                });
                None
            }
        }
    }

    /// Fails every waiter with `error` when none of them can be served by a new connection soon
    /// (connects are backing off) yet there is room for one. Returns the waiters to notify.
    fn fail_waiters_if_backing_off(
        &mut self,
        config: &Config,
        now: Instant,
    ) -> Vec<Arc<Waiter<M>>> {
        let Some(error) = self.fail_fast_error(config, now) else {
            return Vec::new();
        };
        let failed: Vec<_> = self.waiters.drain(..).collect();
        for waiter in &failed {
            *waiter.slot.lock() = Some(Handoff::Failed(Arc::clone(&error)));
        }
        self.counters.checkout_connect_errors += failed.len() as u64;
        failed
    }

    /// Counts a close by its reason. The connection keeps its place in `open` until it has
    /// been dropped, so a replacement can never overlap it and exceed `max_size`.
    fn count_close(&mut self, reason: CloseReason) {
        let counter = match reason {
            CloseReason::Broken => &mut self.counters.closed_broken,
            CloseReason::Idle => &mut self.counters.closed_idle,
            CloseReason::Lifetime => &mut self.counters.closed_lifetime,
            CloseReason::Invalid => &mut self.counters.closed_invalid,
        };
        *counter += 1;
    }

    pub(crate) fn remove_waiter(&mut self, waiter: &Waiter<M>) {
        if let Some(index) = self
            .waiters
            .iter()
            .position(|queued| std::ptr::eq(Arc::as_ptr(queued), waiter))
        {
            self.waiters.remove(index);
        }
    }

    /// Removes idle connections past their idle timeout (beyond `min_idle`, longest idle first)
    /// or their lifetime, and returns them for dropping outside the lock; their places are
    /// freed after that.
    fn reap(&mut self, config: &Config, now: Instant) -> Vec<Conn<M::Connection>> {
        let mut closing = Vec::new();
        let mut keep = Vec::with_capacity(self.idle.len());
        let mut idle_left = self.idle.len();
        // Oldest first: the front of the LIFO list has been idle longest.
        for idle in self.idle.drain(..) {
            let expired = idle.conn.expires_at.is_some_and(|at| now >= at);
            let idled_out = idle_left > config.min_idle as usize
                && config
                    .idle_timeout
                    .is_some_and(|timeout| now.duration_since(idle.idle_since) >= timeout);
            if expired || idled_out {
                idle_left -= 1;
                closing.push((idle.conn, expired));
            } else {
                keep.push(idle);
            }
        }
        self.idle = keep;
        closing
            .into_iter()
            .map(|(conn, expired)| {
                self.count_close(if expired {
                    CloseReason::Lifetime
                } else {
                    CloseReason::Idle
                });
                conn
            })
            .collect()
    }

    pub(crate) fn stats(&self, config: &Config, now: Instant) -> Stats {
        let idle = self.idle.len() as u32;
        Stats {
            max_size: config.max_size,
            size: self.open,
            idle,
            in_use: self.open - idle,
            waiting: self.waiters.len() as u32,
            pending_connects: self.pending,
            backing_off: self.backing_off(now),
            connections_created: self.counters.created,
            connect_failures: self.counters.connect_failures,
            closed_broken: self.counters.closed_broken,
            closed_idle: self.counters.closed_idle,
            closed_lifetime: self.counters.closed_lifetime,
            closed_invalid: self.counters.closed_invalid,
            checkouts: self.counters.immediate_checkouts,
            checkout_timeouts: self.counters.checkout_timeouts,
            checkout_connect_errors: self.counters.checkout_connect_errors,
            checkout_wait_total: Duration::ZERO,
            checkout_wait_max: Duration::ZERO,
            // Immediate checkouts waited nothing: they count in the first bucket.
            checkout_wait_buckets: std::array::from_fn(|bucket| {
                if bucket == 0 {
                    self.counters.immediate_checkouts
                } else {
                    0
                }
            }),
        }
    }
}

/// An idle connection just taken from the pool, not yet checked for age or validity.
pub(crate) struct IdleConnHandle<C>(IdleConn<C>);

/// Waits of checkouts that queued, recorded by the woken thread without the pool lock.
#[derive(Default)]
pub(crate) struct WaitStats {
    count: AtomicU64,
    total_nanos: AtomicU64,
    max_nanos: AtomicU64,
    buckets: [AtomicU64; WAIT_BUCKET_BOUNDS.len() + 1],
}

impl WaitStats {
    pub(crate) fn record(&self, waited: Duration) {
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.max_nanos.fetch_max(nanos, Ordering::Relaxed);
        let bucket = WAIT_BUCKET_BOUNDS
            .iter()
            .position(|bound| waited <= *bound)
            .unwrap_or(WAIT_BUCKET_BOUNDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_to(&self, stats: &mut Stats) {
        stats.checkouts += self.count.load(Ordering::Relaxed);
        stats.checkout_wait_total = Duration::from_nanos(self.total_nanos.load(Ordering::Relaxed));
        stats.checkout_wait_max = Duration::from_nanos(self.max_nanos.load(Ordering::Relaxed));
        for (total, bucket) in stats.checkout_wait_buckets.iter_mut().zip(&self.buckets) {
            *total += bucket.load(Ordering::Relaxed);
        }
    }
}

impl<M: Manager> Shared<M> {
    /// Checks an idle connection's age and, when it idled past the threshold, its validity,
    /// outside the lock. Returns it ready for use, or closes it and returns `None`.
    pub(crate) fn ready_for_use(
        &self,
        IdleConnHandle(idle): IdleConnHandle<M::Connection>,
        now: Instant,
    ) -> Option<Conn<M::Connection>> {
        let mut conn = idle.conn;
        if conn.expires_at.is_some_and(|at| now >= at) {
            self.close(conn, CloseReason::Lifetime, Checkout::Retract);
            return None;
        }
        let needs_check = self
            .config
            .validate_after_idle
            .is_some_and(|threshold| now.saturating_duration_since(idle.idle_since) > threshold);
        if needs_check && self.manager.is_valid(&mut conn.raw).is_err() {
            self.close(conn, CloseReason::Invalid, Checkout::Retract);
            return None;
        }
        Some(conn)
    }

    /// Takes back a connection from its user: closes it if broken or past its lifetime, else
    /// hands it to the longest waiter or makes it idle.
    pub(crate) fn put_back(&self, mut conn: Conn<M::Connection>, marked_broken: bool) {
        if marked_broken || self.manager.has_broken(&mut conn.raw) {
            self.close(conn, CloseReason::Broken, Checkout::Keep);
            return;
        }
        let now = Instant::now();
        if conn.expires_at.is_some_and(|at| now >= at) {
            self.close(conn, CloseReason::Lifetime, Checkout::Keep);
            return;
        }
        let mut internals = self.internals.lock();
        let waiter = internals.hand_over(conn, now);
        drop(internals);
        if let Some(waiter) = waiter {
            waiter.ready.notify_one();
        }
    }

    /// Drops a connection with the lock released, then frees its place for a new one.
    fn close(&self, conn: Conn<M::Connection>, reason: CloseReason, checkout: Checkout) {
        let mut internals = self.internals.lock();
        internals.count_close(reason);
        if let Checkout::Retract = checkout {
            internals.counters.immediate_checkouts -= 1;
        }
        drop(internals);
        drop(conn);
        self.release_slots(&mut self.internals.lock(), 1);
    }

    /// Frees the places of `count` dropped connections. The room may let a connector serve the
    /// waiters, or, while connects are backing off, means the waiters are failed at once.
    fn release_slots(&self, internals: &mut parking_lot::MutexGuard<'_, Internals<M>>, count: u32) {
        let now = Instant::now();
        internals.open -= count;
        let failed = internals.fail_waiters_if_backing_off(&self.config, now);
        if internals.wants_connect(&self.config, now) {
            self.connector_wakeup.notify_one();
        }
        parking_lot::MutexGuard::unlocked(internals, || notify_all(&failed));
    }

    /// Stops the connector threads and closes idle connections. Connections in use are closed
    /// when returned.
    pub(crate) fn shut_down(&self) {
        let mut internals = self.internals.lock();
        internals.shutting_down = true;
        let idle: Vec<_> = internals.idle.drain(..).collect();
        internals.open -= idle.len() as u32;
        drop(internals);
        self.connector_wakeup.notify_all();
        drop(idle);
    }

    /// The body of a connector thread: opens connections when wanted, and runs maintenance
    /// (idle timeout, lifetime) on schedule. Exits when the pool shuts down.
    pub(crate) fn run_connector(&self) {
        let mut internals = self.internals.lock();
        loop {
            if internals.shutting_down {
                return;
            }
            let now = Instant::now();
            if now >= internals.next_maintenance {
                internals.next_maintenance = now + self.config.maintenance_interval;
                let closing = internals.reap(&self.config, now);
                if !closing.is_empty() {
                    let count = closing.len() as u32;
                    parking_lot::MutexGuard::unlocked(&mut internals, || drop(closing));
                    self.release_slots(&mut internals, count);
                }
                continue;
            }
            if internals.wants_connect(&self.config, now) {
                internals.pending += 1;
                drop(internals);
                let result = self.manager.connect();
                internals = self.internals.lock();
                internals.pending -= 1;
                self.finish_connect(&mut internals, result);
                continue;
            }
            let mut wake_at = internals.next_maintenance;
            if let Some(retry_at) = internals.retry_at.filter(|at| *at > now) {
                wake_at = wake_at.min(retry_at);
            }
            self.connector_wakeup.wait_until(&mut internals, wake_at);
        }
    }

    /// Records a connect's outcome. A new connection goes to the longest waiter or the idle
    /// list; a failure starts (or lengthens) the backoff and fails the waiters that needed it.
    /// Waiters are notified and connections dropped with the lock released.
    fn finish_connect(
        &self,
        internals: &mut parking_lot::MutexGuard<'_, Internals<M>>,
        result: Result<M::Connection, M::Error>,
    ) {
        let now = Instant::now();
        match result {
            Ok(raw) => {
                if internals.shutting_down {
                    parking_lot::MutexGuard::unlocked(internals, || drop(raw));
                    return;
                }
                internals.open += 1;
                internals.counters.created += 1;
                internals.last_error = None;
                internals.retry_at = None;
                internals.backoff = self.config.backoff_min;
                let conn = Conn {
                    raw,
                    expires_at: self
                        .config
                        .max_lifetime
                        .map(|lifetime| now + jittered(lifetime)),
                };
                if let Some(waiter) = internals.hand_over(conn, now) {
                    parking_lot::MutexGuard::unlocked(internals, || waiter.ready.notify_one());
                }
            }
            Err(error) => {
                internals.counters.connect_failures += 1;
                internals.last_error = Some(Arc::new(error));
                let delay = internals.backoff.mul_f64(1.0 - fastrand::f64() / 2.0);
                internals.retry_at = Some(now + delay);
                internals.backoff = (internals.backoff * 2).min(self.config.backoff_max);
                let failed = internals.fail_waiters_if_backing_off(&self.config, now);
                parking_lot::MutexGuard::unlocked(internals, || notify_all(&failed));
            }
        }
    }
}

fn notify_all<M: Manager>(waiters: &[Arc<Waiter<M>>]) {
    for waiter in waiters {
        waiter.ready.notify_one();
    }
}

/// A lifetime shortened by up to a tenth, at random, so connections opened together retire at
/// different times.
fn jittered(lifetime: Duration) -> Duration {
    lifetime.mul_f64(1.0 - fastrand::f64() / 10.0)
}
