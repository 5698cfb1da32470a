//! A fake manager whose connections are plain values, with switches for failure modes and
//! counters that let tests check what the pool did.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use pool::Manager;

#[derive(Debug)]
pub struct FakeError(pub &'static str);

impl fmt::Display for FakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fake: {}", self.0)
    }
}

impl std::error::Error for FakeError {}

/// Switches and counters shared by a [`FakeManager`], its connections and the test.
#[derive(Default)]
pub struct FakeState {
    next_id: AtomicU64,
    /// Connections alive now: created and not yet dropped.
    pub live: AtomicI64,
    pub max_live: AtomicI64,
    pub connects: AtomicU64,
    in_flight: AtomicI64,
    pub max_in_flight: AtomicI64,
    pub validations: AtomicU64,
    /// Connects fail while set.
    pub down: AtomicBool,
    /// `is_valid` fails while set.
    pub invalid: AtomicBool,
    /// `has_broken` answers true while set.
    pub broken_on_return: AtomicBool,
    pub connect_delay_ms: AtomicU64,
    /// While closed, connects block until it opens.
    gate_closed: Mutex<bool>,
    gate: Condvar,
}

impl FakeState {
    pub fn close_gate(&self) {
        *self.gate_closed.lock() = true;
    }

    pub fn open_gate(&self) {
        *self.gate_closed.lock() = false;
        self.gate.notify_all();
    }
}

pub struct FakeManager(pub Arc<FakeState>);

pub struct FakeConn {
    pub id: u64,
    state: Arc<FakeState>,
}

impl Drop for FakeConn {
    fn drop(&mut self) {
        self.state.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Manager for FakeManager {
    type Connection = FakeConn;
    type Error = FakeError;

    fn connect(&self) -> Result<FakeConn, FakeError> {
        let state = &self.0;
        let in_flight = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);
        {
            let mut closed = state.gate_closed.lock();
            while *closed {
                state.gate.wait(&mut closed);
            }
        }
        thread::sleep(Duration::from_millis(
            state.connect_delay_ms.load(Ordering::SeqCst),
        ));
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        state.connects.fetch_add(1, Ordering::SeqCst);
        if state.down.load(Ordering::SeqCst) {
            return Err(FakeError("backend down"));
        }
        let live = state.live.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_live.fetch_max(live, Ordering::SeqCst);
        Ok(FakeConn {
            id: state.next_id.fetch_add(1, Ordering::SeqCst) + 1,
            state: Arc::clone(state),
        })
    }

    fn is_valid(&self, _conn: &mut FakeConn) -> Result<(), FakeError> {
        self.0.validations.fetch_add(1, Ordering::SeqCst);
        if self.0.invalid.load(Ordering::SeqCst) {
            Err(FakeError("invalid"))
        } else {
            Ok(())
        }
    }

    fn has_broken(&self, _conn: &mut FakeConn) -> bool {
        self.0.broken_on_return.load(Ordering::SeqCst)
    }
}

/// A fake manager and the state the test keeps a handle on.
pub fn fake() -> (FakeManager, Arc<FakeState>) {
    let state = Arc::new(FakeState::default());
    (FakeManager(Arc::clone(&state)), state)
}

/// Polls `condition` until it holds, failing the test after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(2));
    }
}
