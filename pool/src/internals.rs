//! The state behind the pool's lock, and every rule that changes it.
//!
//! Lock discipline: the pool lock guards one [`Internals`]. Code holding it only moves
//! connections between queues and updates counts; connecting, validating and dropping
//! connections happen after it is released. A waiter's slot lock is only ever taken while holding
//! the pool lock or alone, never the other way round, so the two cannot deadlock.
//!
//! A `Manager` method or a connection's `Drop` that panics must not corrupt the counts: every
//! call into that code goes through `catch_unwind` and counts as a failure (connect), an invalid
//! or broken connection (`is_valid`, `has_broken`) or a finished close (`Drop`). The panic hook
//! still reports the panic.
//!
//! Invariants, true whenever the pool lock is free:
//! - while `waiters` is non-empty, `idle.len() <= woken`: a connection made idle while threads
//!   wait has a woken waiter on its way to compete for it, so no waiter sleeps beside an idle
//!   connection;
//! - `open + pending <= max_size`, where `open` counts idle, checked-out and closing
//!   connections.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

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

/// An idle connection just taken from the pool, not yet checked for age or validity.
pub(crate) struct IdleConnHandle<C>(IdleConn<C>);

/// How a successful checkout is counted. The counts never go down: a connection that fails its
/// checks was never checked out.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    /// Served at once from the idle list without a check: counted when it is returned, under
    /// the lock the return takes anyway, which keeps the fast path to a pop and a push.
    OnReturn,
    /// Waited or was checked: counted with its wait in `WaitStats` at checkout.
    AtCheckout,
}

/// What a waiting thread is handed.
pub(crate) enum Handoff<M: Manager> {
    Conn(Conn<M::Connection>),
    Failed(Arc<M::Error>),
    /// A connection was made idle and this waiter, taken off the queue, is to compete for it
    /// (barging, see `Builder::fair_after`); it counts in `Internals::woken` until it is back
    /// under the lock.
    Woken,
}

/// One waiting thread: the slot it is handed a result in, the condvar that wakes it, and when
/// its checkout began, which a requeued waiter keeps.
pub(crate) struct Waiter<M: Manager> {
    pub(crate) slot: Mutex<Option<Handoff<M>>>,
    pub(crate) ready: Condvar,
    pub(crate) since: Instant,
}

impl<M: Manager> Waiter<M> {
    pub(crate) fn new(since: Instant) -> Self {
        Waiter {
            slot: Mutex::new(None),
            ready: Condvar::new(),
            since,
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
    /// Returned connections that were checked out at once, without a check (`Counted::OnReturn`).
    pub(crate) immediate_checkouts: u64,
    pub(crate) checkout_timeouts: u64,
    pub(crate) checkout_connect_errors: u64,
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
    /// Waiters woken to compete for an idle connection that have not yet taken the lock again.
    pub(crate) woken: usize,
    /// No fair handoff (`Builder::fair_after`) happens before this instant.
    next_fair: Instant,
    /// Connections idle, checked out or being closed.
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
            woken: 0,
            next_fair: Instant::now(),
            open: 0,
            pending: 0,
            last_error: None,
            retry_at: None,
            backoff: config.backoff_min,
            next_maintenance: later(Instant::now(), config.maintenance_interval),
            shutting_down: false,
            counters: Counters::default(),
        }
    }

    /// Pops the most recently returned idle connection.
    pub(crate) fn take_idle(&mut self) -> Option<IdleConnHandle<M::Connection>> {
        self.idle.pop().map(IdleConnHandle)
    }

    /// After a take: whether the idle count fell below `min_idle` and a connector can refill it
    /// now. The cheap test comes first; the checkout path runs this under a hot lock.
    pub(crate) fn wants_refill(&self, config: &Config, now: Instant) -> bool {
        self.idle.len() < config.min_idle as usize
            && self.has_capacity(config)
            && self.wants_connect(config, now)
    }

    fn backing_off(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|at| now < at)
    }

    fn has_capacity(&self, config: &Config) -> bool {
        self.open + self.pending < config.max_size
    }

    /// The error a newcomer gets at once instead of queueing: when it would need a new
    /// connection (there is room for one, and the connects in flight are spoken for by the
    /// waiters ahead of it) but connects are backing off after a failure.
    pub(crate) fn fail_fast_error(&self, config: &Config, now: Instant) -> Option<Arc<M::Error>> {
        let served_by_pending = self.waiters.len() < self.pending as usize;
        if served_by_pending || !self.has_capacity(config) || !self.backing_off(now) {
            return None;
        }
        self.last_error.clone()
    }

    /// Whether a connector thread should start a connect now: there is room, the in-flight bound
    /// allows it, no backoff is running, and either waiters outnumber idle connections plus
    /// connects in flight or `min_idle` needs refilling.
    pub(crate) fn wants_connect(&self, config: &Config, now: Instant) -> bool {
        let idle_and_pending = self.idle.len() + self.pending as usize;
        let demand = self.waiters.len() + self.woken > idle_and_pending
            || idle_and_pending < config.min_idle as usize;
        !self.shutting_down
            && demand
            && self.has_capacity(config)
            && self.pending < config.max_concurrent_connects
            && !self.backing_off(now)
    }

    /// Takes back a returned connection. When the longest waiter has waited `fair_after` or
    /// longer and no such fair handoff happened in the last `fair_after`, the connection goes
    /// straight into that waiter's hands. Otherwise it is made idle, free for the first thread
    /// to ask (often the one returning it, which saves a context switch), and the longest
    /// waiter is woken to compete for it unless enough woken waiters are already on their way.
    /// Returns the waiter to notify once the lock is released.
    ///
    /// Limiting fair handoffs to one per `fair_after`, as parking_lot's eventual fairness does,
    /// is what keeps barging's throughput when threads far outnumber connections: then every
    /// waiter has waited past any small bound, and handing each return to a sleeping thread
    /// would cost a context switch per checkout, as strict FIFO does.
    fn take_back(
        &mut self,
        conn: Conn<M::Connection>,
        config: &Config,
        now: Instant,
    ) -> Option<Arc<Waiter<M>>> {
        let Some(front) = self.waiters.front() else {
            return self.hand_over(conn, now);
        };
        // A zero bound is strict FIFO whatever the clocks: `now` was read before the lock, so
        // another return may have set `next_fair` past it.
        let fair = config.fair_after.is_zero()
            || (now >= self.next_fair
                && now.saturating_duration_since(front.since) >= config.fair_after);
        if fair {
            self.next_fair = later(now, config.fair_after);
            return self.hand_over(conn, now);
        }
        self.idle.push(IdleConn {
            conn,
            idle_since: now,
        });
        if self.woken >= self.idle.len() {
            return None;
        }
        let waiter = self.waiters.pop_front()?;
        *waiter.slot.lock() = Some(Handoff::Woken);
        self.woken += 1;
        Some(waiter)
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

    /// While connects back off and there is room for a connection, fails the waiters that need
    /// a new one: all but the first `pending`, whom the connects still in flight will serve.
    /// Returns the waiters to notify.
    fn fail_waiters_if_backing_off(
        &mut self,
        config: &Config,
        now: Instant,
    ) -> Vec<Arc<Waiter<M>>> {
        let keep = self.pending as usize;
        if self.waiters.len() <= keep || !self.has_capacity(config) || !self.backing_off(now) {
            return Vec::new();
        }
        let Some(error) = self.last_error.clone() else {
            return Vec::new();
        };
        let failed: Vec<_> = self.waiters.drain(keep..).collect();
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

    fn count_return(&mut self, counted: Counted) {
        if counted == Counted::OnReturn {
            self.counters.immediate_checkouts += 1;
        }
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
                && config.idle_timeout.is_some_and(|timeout| {
                    now.saturating_duration_since(idle.idle_since) >= timeout
                });
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
            waiting: (self.waiters.len() + self.woken) as u32,
            pending_connects: self.pending,
            backing_off: self.backing_off(now),
            connections_created: self.counters.created,
            connect_failures: self.counters.connect_failures,
            closed_broken: self.counters.closed_broken,
            closed_idle: self.counters.closed_idle,
            closed_lifetime: self.counters.closed_lifetime,
            closed_invalid: self.counters.closed_invalid,
            checkout_timeouts: self.counters.checkout_timeouts,
            checkout_connect_errors: self.counters.checkout_connect_errors,
            // Completed by `WaitStats::add_to`; an immediate checkout waited nothing.
            checkouts: self.counters.immediate_checkouts,
            checkout_wait_total: Duration::ZERO,
            checkout_wait_max: Duration::ZERO,
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

/// Successful checkouts that waited or had their connection checked (`Counted::AtCheckout`) and
/// their waits, recorded by the checking-out thread once it has its connection, without the
/// pool lock. Together with the immediate checkouts counted on return, the buckets are the only
/// count of checkouts, so a snapshot's histogram always sums to its checkout count.
#[derive(Default)]
pub(crate) struct WaitStats {
    total_nanos: AtomicU64,
    max_nanos: AtomicU64,
    buckets: [AtomicU64; WAIT_BUCKET_BOUNDS.len() + 1],
}

impl WaitStats {
    /// A checkout served at once from the idle list: it waited nothing.
    pub(crate) fn record_immediate(&self) {
        self.buckets[0].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record(&self, waited: Duration) {
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        // The total is raised before the max and read after it, so no snapshot shows a max
        // above the total.
        self.total_nanos.fetch_add(nanos, Ordering::SeqCst);
        self.max_nanos.fetch_max(nanos, Ordering::SeqCst);
        let bucket = WAIT_BUCKET_BOUNDS
            .iter()
            .position(|bound| waited <= *bound)
            .unwrap_or(WAIT_BUCKET_BOUNDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_to(&self, stats: &mut Stats) {
        stats.checkout_wait_max = Duration::from_nanos(self.max_nanos.load(Ordering::SeqCst));
        stats.checkout_wait_total = Duration::from_nanos(self.total_nanos.load(Ordering::SeqCst));
        for (total, bucket) in stats.checkout_wait_buckets.iter_mut().zip(&self.buckets) {
            let count = bucket.load(Ordering::Relaxed);
            *total += count;
            stats.checkouts += count;
        }
    }
}

impl<M: Manager> Shared<M> {
    /// Checks a taken idle connection's age and, when it idled past the threshold, its validity,
    /// outside the lock. Returns it ready for use with whether it was validated, or closes it
    /// and returns `None`.
    pub(crate) fn ready_for_use(
        &self,
        IdleConnHandle(idle): IdleConnHandle<M::Connection>,
        now: Instant,
    ) -> Option<(Conn<M::Connection>, bool)> {
        let mut conn = idle.conn;
        if conn.expires_at.is_some_and(|at| now >= at) {
            self.close(conn, CloseReason::Lifetime, None);
            return None;
        }
        let needs_check = self
            .config
            .validate_after_idle
            .is_some_and(|threshold| now.saturating_duration_since(idle.idle_since) > threshold);
        if needs_check {
            let valid = catch_unwind(AssertUnwindSafe(|| self.manager.is_valid(&mut conn.raw)))
                .is_ok_and(|checked| checked.is_ok());
            if !valid {
                self.close(conn, CloseReason::Invalid, None);
                return None;
            }
        }
        Some((conn, needs_check))
    }

    /// Takes back a connection from its user: closes it if broken or past its lifetime, else
    /// hands it to the longest waiter or makes it idle.
    pub(crate) fn put_back(
        &self,
        mut conn: Conn<M::Connection>,
        marked_broken: bool,
        counted: Counted,
    ) {
        // `has_broken` is not asked about a connection already known broken: its user may be
        // unwinding from a panic, and a second panic would abort the process.
        let broken = marked_broken
            || catch_unwind(AssertUnwindSafe(|| self.manager.has_broken(&mut conn.raw)))
                .unwrap_or(true);
        if broken {
            self.close(conn, CloseReason::Broken, Some(counted));
            return;
        }
        let now = Instant::now();
        if conn.expires_at.is_some_and(|at| now >= at) {
            self.close(conn, CloseReason::Lifetime, Some(counted));
            return;
        }
        let mut internals = self.internals.lock();
        internals.count_return(counted);
        let waiter = internals.take_back(conn, &self.config, now);
        drop(internals);
        if let Some(waiter) = waiter {
            waiter.ready.notify_one();
        }
    }

    /// Drops a connection with the lock released, then frees its place for a new one.
    /// `returned` is how the checkout was counted when a user returned it; `None` when it never
    /// left the pool.
    fn close(&self, conn: Conn<M::Connection>, reason: CloseReason, returned: Option<Counted>) {
        {
            let mut internals = self.internals.lock();
            internals.count_close(reason);
            if let Some(counted) = returned {
                internals.count_return(counted);
            }
        }
        drop_unwinding(conn);
        self.release_slots(&mut self.internals.lock(), 1);
    }

    /// Frees the places of `count` dropped connections. The room may let a connector serve the
    /// waiters, or, while connects are backing off, means the waiters are failed at once.
    fn release_slots(&self, internals: &mut MutexGuard<'_, Internals<M>>, count: u32) {
        let now = Instant::now();
        internals.open -= count;
        let failed = internals.fail_waiters_if_backing_off(&self.config, now);
        if internals.wants_connect(&self.config, now) {
            self.connector_wakeup.notify_one();
        }
        MutexGuard::unlocked(internals, || notify_all(&failed));
    }

    /// Tells the connector threads to exit and closes the idle connections. No connection is in
    /// use: guards borrow the pool, so it cannot be dropped while one is out.
    pub(crate) fn shut_down(&self) {
        let mut internals = self.internals.lock();
        internals.shutting_down = true;
        let idle: Vec<_> = internals.idle.drain(..).collect();
        internals.open -= idle.len() as u32;
        drop(internals);
        self.connector_wakeup.notify_all();
        drop_unwinding(idle);
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
                internals.next_maintenance = later(now, self.config.maintenance_interval);
                let closing = internals.reap(&self.config, now);
                if !closing.is_empty() {
                    let count = closing.len() as u32;
                    MutexGuard::unlocked(&mut internals, || drop_unwinding(closing));
                    self.release_slots(&mut internals, count);
                }
                continue;
            }
            if internals.wants_connect(&self.config, now) {
                internals.pending += 1;
                let result = MutexGuard::unlocked(&mut internals, || {
                    catch_unwind(AssertUnwindSafe(|| self.manager.connect()))
                });
                internals.pending -= 1;
                match result {
                    Ok(result) => self.finish_connect(&mut internals, result),
                    // A panicking connect backs off like a failing one. There is no error to
                    // hand the waiters, so they keep waiting for the retry.
                    Err(_panic) => {
                        internals.counters.connect_failures += 1;
                        self.start_backoff(&mut internals, Instant::now());
                    }
                }
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
        internals: &mut MutexGuard<'_, Internals<M>>,
        result: Result<M::Connection, M::Error>,
    ) {
        let now = Instant::now();
        match result {
            Ok(raw) => {
                if internals.shutting_down {
                    MutexGuard::unlocked(internals, || drop_unwinding(raw));
                    return;
                }
                internals.open += 1;
                internals.counters.created += 1;
                internals.last_error = None;
                internals.retry_at = None;
                internals.backoff = self.config.backoff_min;
                let conn = Conn {
                    raw,
                    // A lifetime too long to add to the clock is no limit at all.
                    expires_at: self
                        .config
                        .max_lifetime
                        .and_then(|lifetime| now.checked_add(jittered(lifetime))),
                };
                if let Some(waiter) = internals.hand_over(conn, now) {
                    MutexGuard::unlocked(internals, || waiter.ready.notify_one());
                }
            }
            Err(error) => {
                internals.counters.connect_failures += 1;
                internals.last_error = Some(Arc::new(error));
                self.start_backoff(internals, now);
                let failed = internals.fail_waiters_if_backing_off(&self.config, now);
                MutexGuard::unlocked(internals, || notify_all(&failed));
            }
        }
    }

    /// Holds off connects for the current backoff, jittered down by up to half, and doubles the
    /// backoff for next time, up to its maximum. A connect that succeeds resets it.
    fn start_backoff(&self, internals: &mut Internals<M>, now: Instant) {
        let delay = internals.backoff.mul_f64(1.0 - fastrand::f64() / 2.0);
        internals.retry_at = Some(later(now, delay));
        internals.backoff = internals
            .backoff
            .saturating_mul(2)
            .min(self.config.backoff_max);
    }
}

/// Drops a value, containing a panic in its `Drop` (the panic hook has reported it already) so
/// that the pool's counts stay right.
fn drop_unwinding<T>(value: T) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(value)));
}

/// `now + by`, or a point decades away when that overflows the clock: a `Duration::MAX`
/// setting means "never".
fn later(now: Instant, by: Duration) -> Instant {
    const DECADES: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    now.checked_add(by)
        .or_else(|| now.checked_add(DECADES))
        .unwrap_or(now)
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
