//! Regression tests from an adversarial review of the pool: each pins one bug that was found
//! and fixed (named after it), driven by a manager whose every method is a script.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use pool::{Error, Manager, Pool};

use crate::fake::{FakeError, wait_until};

const PATIENCE: Duration = Duration::from_secs(10);

/// A scriptable manager: each method's behaviour is a closure of the attempt number.
struct Mgr {
    live: Arc<AtomicI64>,
    next: AtomicU64,
    connect: Box<dyn Fn(u64) -> Result<(), FakeError> + Send + Sync>,
    is_valid: Box<dyn Fn() -> Result<(), FakeError> + Send + Sync>,
    has_broken: Box<dyn Fn() -> bool + Send + Sync>,
}

struct TConn {
    id: u64,
    live: Arc<AtomicI64>,
}
impl Drop for TConn {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Manager for Mgr {
    type Connection = TConn;
    type Error = FakeError;
    fn connect(&self) -> Result<TConn, FakeError> {
        let n = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        (self.connect)(n)?;
        self.live.fetch_add(1, Ordering::SeqCst);
        Ok(TConn {
            id: n,
            live: Arc::clone(&self.live),
        })
    }
    fn is_valid(&self, _: &mut TConn) -> Result<(), FakeError> {
        (self.is_valid)()
    }
    fn has_broken(&self, _: &mut TConn) -> bool {
        (self.has_broken)()
    }
}

fn mgr() -> Mgr {
    Mgr {
        live: Arc::new(AtomicI64::new(0)),
        next: AtomicU64::new(0),
        connect: Box::new(|_| Ok(())),
        is_valid: Box::new(|| Ok(())),
        has_broken: Box::new(|| false),
    }
}

fn builder() -> pool::Builder<Mgr> {
    Pool::<Mgr>::builder()
        .checkout_timeout(PATIENCE)
        .maintenance_interval(Duration::from_millis(10))
}

/// A pool whose `idle` connections have all idled past a zero validation threshold, so the
/// next checkouts validate them.
fn with_stale_idle(builder: pool::Builder<Mgr>, manager: Mgr, idle: usize) -> Pool<Mgr> {
    let pool = builder
        .validate_after_idle(Some(Duration::ZERO))
        .build(manager)
        .unwrap();
    let held: Vec<_> = (0..idle).map(|_| pool.get().unwrap()).collect();
    drop(held);
    thread::sleep(Duration::from_millis(2));
    pool
}

/// A panic in `Manager::connect` used to leave `pending` at +1 for ever and kill the connector
/// thread. With one connector no connect was ever started again; with two, one waiter on an
/// empty pool never again outnumbered idle + pending. Either way every checkout timed out.
#[test]
fn connect_panic_does_not_wedge_the_pool() {
    for connectors in [1, 2] {
        let mut m = mgr();
        m.connect = Box::new(|n| {
            if n == 1 {
                panic!("connect blew up")
            } else {
                Ok(())
            }
        });
        let pool = builder()
            .max_concurrent_connects(connectors)
            .build(m)
            .unwrap();
        let _ = pool.get_timeout(Duration::from_millis(200));
        let got = pool.get_timeout(Duration::from_secs(1)).map(|c| c.id);
        assert!(
            got.is_ok(),
            "{connectors} connectors: the pool no longer connects: {got:?} {:?}",
            pool.stats()
        );
        assert_eq!(pool.stats().pending_connects, 0, "{connectors} connectors");
    }
}

// A panic in is_valid or has_broken used to leak the connection's place in `open`.

/// A switch and a function that panics with `message` on its first call after the switch is
/// set.
fn panic_once(message: &'static str) -> (Arc<AtomicBool>, impl Fn() + Send + Sync + 'static) {
    let armed = Arc::new(AtomicBool::new(false));
    let trigger = Arc::clone(&armed);
    (armed, move || {
        if trigger.swap(false, Ordering::SeqCst) {
            panic!("{message}");
        }
    })
}

#[test]
fn is_valid_panic_does_not_leak_a_place() {
    let mut m = mgr();
    let (boom, maybe_panic) = panic_once("ping blew up");
    m.is_valid = Box::new(move || {
        maybe_panic();
        Ok(())
    });
    let live = Arc::clone(&m.live);
    let pool = with_stale_idle(builder().max_size(1), m, 1);
    boom.store(true, Ordering::SeqCst);
    // The panic counts as "invalid": the connection is closed and replaced, and the caller gets
    // the replacement instead of the panic.
    let conn = pool.get().expect("a replacement connection");
    assert_eq!(conn.id, 2);
    assert_eq!(
        live.load(Ordering::SeqCst),
        1,
        "only the replacement is alive"
    );
    drop(conn);
    let stats = pool.stats();
    assert_eq!(
        (
            stats.size,
            stats.in_use,
            stats.closed_invalid,
            stats.checkouts
        ),
        (1, 0, 1, 2),
        "{stats:?}"
    );
}

#[test]
fn has_broken_panic_does_not_leak_a_place() {
    let mut m = mgr();
    let (boom, maybe_panic) = panic_once("check blew up");
    m.has_broken = Box::new(move || {
        maybe_panic();
        false
    });
    let pool = builder().max_size(1).build(m).unwrap();
    let conn = pool.get().unwrap();
    boom.store(true, Ordering::SeqCst);
    // The panic counts as "broken": the connection is closed and the drop returns normally.
    drop(conn);
    let stats = pool.stats();
    assert_eq!((stats.size, stats.closed_broken), (0, 1), "{stats:?}");
    assert_eq!(
        pool.get_timeout(Duration::from_millis(500))
            .map(|c| c.id)
            .ok(),
        Some(2),
        "the place was freed"
    );
}

// Durations too long to add to an Instant used to panic.

#[test]
fn checkout_timeout_max_waits_instead_of_panicking() {
    let pool = builder()
        .checkout_timeout(Duration::MAX)
        .build(mgr())
        .unwrap();
    let got = catch_unwind(AssertUnwindSafe(|| pool.get().is_ok()));
    assert!(
        matches!(got, Ok(true)),
        "get() with checkout_timeout(Duration::MAX) panicked"
    );
}

#[test]
fn max_lifetime_max_does_not_kill_the_connector() {
    let pool = builder()
        .max_lifetime(Some(Duration::MAX))
        .build(mgr())
        .unwrap();
    assert!(
        pool.get_timeout(Duration::from_secs(1)).is_ok(),
        "{:?}",
        pool.stats()
    );
}

// A checkout that left fewer than min_idle idle used to wait for the maintenance tick to refill.

#[test]
fn min_idle_refill_starts_without_waiting_for_maintenance() {
    let pool = Pool::<Mgr>::builder()
        .max_size(4)
        .min_idle(2)
        .maintenance_interval(Duration::from_secs(5))
        .build(mgr())
        .unwrap();
    wait_until("prewarmed", PATIENCE, || pool.stats().idle == 2);
    let _held = pool.get().unwrap();
    // idle = 1 < min_idle: wants_connect() is true, but nobody notifies a connector.
    wait_until("min_idle refilled", Duration::from_secs(1), || {
        pool.stats().idle == 2
    });
}

// One failed connect used to fail every waiter, even those another connect in flight would serve.

#[test]
fn failed_connect_spares_waiters_another_connect_will_serve() {
    let mut m = mgr();
    m.connect = Box::new(|n| {
        if n == 1 {
            thread::sleep(Duration::from_millis(100));
            Err(FakeError("first connect fails"))
        } else {
            thread::sleep(Duration::from_millis(300));
            Ok(())
        }
    });
    let pool = builder()
        .max_size(4)
        .max_concurrent_connects(2)
        .build(m)
        .unwrap();
    thread::scope(|s| {
        let w1 = s.spawn(|| pool.get().map(|c| c.id));
        wait_until("w1 queued, connect 1 in flight", PATIENCE, || {
            let st = pool.stats();
            st.waiting == 1 && st.pending_connects == 1
        });
        let w2 = s.spawn(|| pool.get().map(|c| c.id));
        wait_until("w2 queued, connect 2 in flight", PATIENCE, || {
            let st = pool.stats();
            st.waiting == 2 && st.pending_connects == 2
        });
        let r1 = w1.join().unwrap();
        let r2 = w2.join().unwrap();
        let served = usize::from(r1.is_ok()) + usize::from(r2.is_ok());
        assert_eq!(served, 1, "connect 2 succeeded, yet: w1 {r1:?}, w2 {r2:?}");
    });
}

// The retry after a failed validation used to judge the backoff with the clock read at the start.

#[test]
fn retry_after_failed_validation_uses_a_fresh_clock() {
    let gate = Arc::new((Mutex::new(true), Condvar::new()));
    let down = Arc::new(AtomicBool::new(false));
    let mut m = mgr();
    let (g, d) = (Arc::clone(&gate), Arc::clone(&down));
    m.is_valid = Box::new(move || {
        let mut closed = g.0.lock();
        while *closed {
            g.1.wait(&mut closed);
        }
        Err(FakeError("stale connection"))
    });
    m.connect = Box::new(move |_| {
        if d.load(Ordering::SeqCst) {
            Err(FakeError("down"))
        } else {
            Ok(())
        }
    });
    let pool = with_stale_idle(
        builder()
            .max_size(4)
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(50)),
        m,
        1,
    );
    thread::scope(|s| {
        // A takes the idle connection and blocks in is_valid.
        let a = s.spawn(|| pool.get().map(|c| c.id));
        wait_until("A is validating", PATIENCE, || pool.stats().idle == 0);
        // Meanwhile one connect fails: backoff until ~50 ms from now.
        down.store(true, Ordering::SeqCst);
        assert!(matches!(pool.get(), Err(Error::Connect(_))));
        down.store(false, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(200)); // the backoff is long over
        assert!(!pool.stats().backing_off);
        *gate.0.lock() = false;
        gate.1.notify_all();
        let got = a.join().unwrap();
        assert!(got.is_ok(), "A failed fast on an expired backoff: {got:?}");
    });
}

// Failing validations used to let a checkout overrun its timeout.

#[test]
fn get_timeout_is_bounded_despite_failing_validations() {
    let mut m = mgr();
    m.is_valid = Box::new(|| {
        thread::sleep(Duration::from_millis(200));
        Err(FakeError("dead"))
    });
    let pool = with_stale_idle(builder().max_size(3), m, 3);
    let start = Instant::now();
    let _ = pool.get_timeout(Duration::from_millis(50));
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(300),
        "get_timeout(50ms) took {took:?}"
    );
}

// A snapshot taken under load used to disagree with itself (buckets, checkouts, total, max).

#[test]
fn stats_histogram_matches_checkouts_under_load() {
    let pool = builder().max_size(2).build(mgr()).unwrap();
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    drop(pool.get().unwrap());
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut bad = None;
        while Instant::now() < deadline && bad.is_none() {
            let st = pool.stats();
            let sum: u64 = st.checkout_wait_buckets.iter().sum();
            if sum != st.checkouts || st.checkout_wait_total < st.checkout_wait_max {
                bad = Some((
                    sum,
                    st.checkouts,
                    st.checkout_wait_total,
                    st.checkout_wait_max,
                ));
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert!(
            bad.is_none(),
            "inconsistent snapshot (bucket sum, checkouts, total, max): {bad:?}"
        );
    });
}

// A connection whose user panicked used to go back to the pool, possibly mid-request.

#[test]
fn connection_held_across_a_panic_is_closed() {
    let pool = builder().max_size(1).build(mgr()).unwrap();
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let _conn = pool.get().unwrap();
        panic!("user code panicked mid-request");
    }));
    let st = pool.stats();
    assert_eq!(
        (st.closed_broken, st.idle),
        (1, 0),
        "half-used connection pooled again: {st:?}"
    );
}

// A checkout whose idle connection failed validation used to re-queue behind later arrivals.

#[test]
fn checkout_whose_idle_connection_was_invalid_keeps_its_place() {
    let gate = Arc::new((Mutex::new(true), Condvar::new()));
    let mut m = mgr();
    let g = Arc::clone(&gate);
    m.is_valid = Box::new(move || {
        let mut closed = g.0.lock();
        while *closed {
            g.1.wait(&mut closed);
        }
        Err(FakeError("stale"))
    });
    m.connect = Box::new(|_| {
        thread::sleep(Duration::from_millis(50));
        Ok(())
    });
    let pool = with_stale_idle(builder().max_size(1), m, 1);
    let order = Mutex::new(Vec::new());
    thread::scope(|s| {
        let (pool, order) = (&pool, &order);
        s.spawn(move || {
            let _c = pool.get().unwrap();
            order.lock().push("A");
        });
        wait_until("A is validating", PATIENCE, || pool.stats().idle == 0);
        for (n, name) in ["B", "C"].into_iter().enumerate() {
            s.spawn(move || {
                let _c = pool.get().unwrap();
                order.lock().push(name);
            });
            wait_until("queued", PATIENCE, || pool.stats().waiting == n as u32 + 1);
        }
        *gate.0.lock() = false;
        gate.1.notify_all();
    });
    assert_eq!(*order.lock(), vec!["A", "B", "C"], "arrival order A, B, C");
}
