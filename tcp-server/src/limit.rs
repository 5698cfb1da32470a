//! Bounds on memory-hungry jobs: a counting semaphore for image decodes, and for password
//! hashes a FIFO queue whose wait is bounded, so that a burst of logins is answered in order
//! and a login that could not be judged in time is refused at once instead of timing out.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// At most `permits` holders at once; others wait.
pub struct Semaphore {
    available: Mutex<usize>,
    freed: Condvar,
}

/// Held while running; gives the permit back on drop.
pub struct Permit<'a>(&'a Semaphore);

impl Semaphore {
    /// A semaphore with `permits` permits (at least one).
    pub fn new(permits: usize) -> Self {
        Semaphore {
            available: Mutex::new(permits.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Waits for a permit.
    pub fn acquire(&self) -> Permit<'_> {
        let mut available = self.available.lock();
        while *available == 0 {
            self.freed.wait(&mut available);
        }
        *available -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.available.lock() += 1;
        self.0.freed.notify_one();
    }
}

/// A hash could not start within the queue's wait bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// How long the first waiter of an unbounded queue may wait before a released permit is handed
/// to it directly (a bounded queue uses half its bound); until then a thread that is running
/// may take a free permit first. On saturated cores a waiter is scheduled milliseconds after it
/// is woken, and a permit handed to it sits idle all that time: with a 1 ms threshold nearly
/// every hash was handed over under load, and login-random lost about 7%. Half the bound still
/// leaves a waiter overtaken that long the other half for its turn.
pub const FAIR_AFTER: Duration = Duration::from_millis(100);

/// At most `permits` holders at once; the others wait in arrival order. Fairness is eventual, as
/// in parking_lot's locks: a newcomer may take a free permit while the first waiter has waited
/// less than half the wait bound ([`FAIR_AFTER`] without one); past it, a released permit goes
/// straight to that waiter. With a
/// wait bound, a newcomer whose expected wait (the waiters ahead of it, served `permits` at a
/// time, at the average hold time) exceeds the bound is refused at once, and a waiter still
/// waiting at the bound gives up: the queue never holds more than about
/// `permits x bound / hold time` waiters, and nobody waits longer than the bound.
pub struct FifoQueue {
    state: Mutex<QueueState>,
    permits: usize,
    max_wait: Option<Duration>,
    /// How long the first waiter may be overtaken by threads that are running.
    fair_after: Duration,
    /// The average time a permit is held, in nanoseconds (an exponential moving average over
    /// the last few dozen holds).
    held_ns: AtomicU64,
}

struct QueueState {
    available: usize,
    waiting: VecDeque<Arc<Waiter>>,
}

impl QueueState {
    /// Whether a newcomer may take a free permit before the waiters.
    fn may_barge(&self, fair_after: Duration) -> bool {
        self.available > 0
            && self
                .waiting
                .front()
                .is_none_or(|first| first.since.elapsed() < fair_after)
    }
}

struct Waiter {
    thread: Thread,
    since: Instant,
    /// Set when a permit was handed to this waiter directly.
    granted: AtomicBool,
}

/// A permit of a [`FifoQueue`], given back on drop.
pub struct Ticket<'a> {
    queue: &'a FifoQueue,
    since: Instant,
}

impl FifoQueue {
    /// A queue with `permits` permits (at least one); `max_wait`: the longest anyone waits
    /// (`None`: no bound, nobody is refused). `typical_hold`: the hold time assumed until holds
    /// have been measured.
    pub fn new(permits: usize, max_wait: Option<Duration>, typical_hold: Duration) -> Self {
        let permits = permits.max(1);
        FifoQueue {
            state: Mutex::new(QueueState {
                available: permits,
                waiting: VecDeque::new(),
            }),
            permits,
            max_wait,
            fair_after: max_wait.map_or(FAIR_AFTER, |wait| wait / 2),
            held_ns: AtomicU64::new(nanos(typical_hold)),
        }
    }

    /// Waits for a permit, or `Busy` when the wait would exceed the bound.
    pub fn acquire(&self) -> Result<Ticket<'_>, Busy> {
        let mut state = self.state.lock();
        if state.may_barge(self.fair_after) {
            state.available -= 1;
            return Ok(self.ticket());
        }
        if let Some(max_wait) = self.max_wait {
            let ahead = state.waiting.len() as u64 + 1;
            let expected =
                self.held_ns.load(Ordering::Relaxed).saturating_mul(ahead) / self.permits as u64;
            if expected > nanos(max_wait) {
                return Err(Busy);
            }
        }
        let waiter = Arc::new(Waiter {
            thread: thread::current(),
            since: Instant::now(),
            granted: AtomicBool::new(false),
        });
        state.waiting.push_back(Arc::clone(&waiter));
        let deadline = self.max_wait.map(|wait| waiter.since + wait);
        loop {
            if waiter.granted.load(Ordering::Acquire) {
                return Ok(self.ticket());
            }
            // The first waiter takes a permit left free for it (see `Drop for Ticket`).
            let first = state
                .waiting
                .front()
                .is_some_and(|first| Arc::ptr_eq(first, &waiter));
            if first && state.available > 0 {
                state.available -= 1;
                state.waiting.pop_front();
                let next = Self::first_to_wake(&state);
                drop(state);
                if let Some(thread) = next {
                    thread.unpark();
                }
                return Ok(self.ticket());
            }
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                state.waiting.retain(|other| !Arc::ptr_eq(other, &waiter));
                // A permit left free for this waiter is the next one's now.
                let next = Self::first_to_wake(&state);
                drop(state);
                if let Some(thread) = next {
                    thread.unpark();
                }
                return Err(Busy);
            }
            drop(state);
            match deadline {
                Some(deadline) => thread::park_timeout(deadline - now),
                None => thread::park(),
            }
            state = self.state.lock();
        }
    }

    /// Threads waiting now.
    pub fn waiting(&self) -> usize {
        self.state.lock().waiting.len()
    }

    fn ticket(&self) -> Ticket<'_> {
        Ticket {
            queue: self,
            since: Instant::now(),
        }
    }

    /// The first waiter, when a permit is free for it: to be woken once the lock is released
    /// (woken under it, it would only block on the lock).
    fn first_to_wake(state: &QueueState) -> Option<Thread> {
        if state.available > 0 {
            state.waiting.front().map(|first| first.thread.clone())
        } else {
            None
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let queue = self.queue;
        let held = nanos(self.since.elapsed());
        let average = queue.held_ns.load(Ordering::Relaxed);
        // A racing update may be lost; the average only steers admission.
        queue
            .held_ns
            .store(average - average / 16 + held / 16, Ordering::Relaxed);
        let mut state = queue.state.lock();
        let overdue = state
            .waiting
            .front()
            .is_some_and(|first| first.since.elapsed() >= queue.fair_after);
        let wake = if overdue {
            // Handed over: no newcomer can take it first.
            state.waiting.pop_front().map(|first| {
                first.granted.store(true, Ordering::Release);
                first.thread.clone()
            })
        } else {
            // Free for whoever runs first: a newcomer, or the first waiter once it wakes.
            state.available += 1;
            FifoQueue::first_to_wake(&state)
        };
        drop(state);
        if let Some(thread) = wake {
            thread.unpark();
        }
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn waiters_are_served_in_arrival_order() {
        let queue = Arc::new(FifoQueue::new(1, None, Duration::from_millis(1)));
        let first = queue.acquire().unwrap();
        let (order_tx, order) = mpsc::channel();
        let mut threads = Vec::new();
        for index in 0..8 {
            let (waiter, order_tx) = (Arc::clone(&queue), order_tx.clone());
            threads.push(thread::spawn(move || {
                let _ticket = waiter.acquire().unwrap();
                order_tx.send(index).unwrap();
            }));
            // Each waits before the next arrives.
            while queue.waiting() < index + 1 {
                thread::yield_now();
            }
        }
        drop(first);
        for thread in threads {
            thread.join().unwrap();
        }
        let served: Vec<usize> = order.try_iter().collect();
        assert_eq!(served, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn a_newcomer_whose_wait_would_pass_the_bound_is_refused_at_once() {
        // Two permits held 100 ms on average, a bound of 220 ms: four waiters fit (the fourth
        // expects 200 ms), a fifth would expect 250 ms.
        let queue = Arc::new(FifoQueue::new(
            2,
            Some(Duration::from_millis(220)),
            Duration::from_millis(100),
        ));
        let held = [queue.acquire().unwrap(), queue.acquire().unwrap()];
        let mut threads = Vec::new();
        for _ in 0..4 {
            let queue = Arc::clone(&queue);
            threads.push(thread::spawn(move || queue.acquire().map(drop)));
        }
        while queue.waiting() < 4 {
            thread::yield_now();
        }
        let asked = Instant::now();
        assert_eq!(queue.acquire().err(), Some(Busy));
        assert!(
            asked.elapsed() < Duration::from_millis(50),
            "refused at once"
        );
        drop(held);
        for thread in threads {
            assert_eq!(thread.join().unwrap(), Ok(()));
        }
    }

    #[test]
    fn a_waiter_past_the_fairness_bound_is_handed_the_permit_before_any_newcomer() {
        let queue = Arc::new(FifoQueue::new(1, None, Duration::from_millis(1)));
        let held = queue.acquire().unwrap();
        let (got_tx, got) = mpsc::channel();
        let (release_tx, release) = mpsc::channel::<()>();
        let waiter = Arc::clone(&queue);
        let thread = thread::spawn(move || {
            let _ticket = waiter.acquire().unwrap();
            got_tx.send(()).unwrap();
            let _ = release.recv();
        });
        while queue.waiting() < 1 {
            thread::yield_now();
        }
        thread::sleep(queue.fair_after * 3);
        drop(held);
        // The permit went to the waiter at the drop, not back to the free ones: this thread,
        // running on, could not take it even before the waiter wakes.
        assert_eq!(queue.state.lock().available, 0);
        got.recv_timeout(Duration::from_secs(5)).unwrap();
        release_tx.send(()).unwrap();
        thread.join().unwrap();
        assert_eq!(queue.state.lock().available, 1);
    }

    #[test]
    fn a_running_thread_takes_a_free_permit_before_a_waiter_until_half_the_bound() {
        let queue = FifoQueue::new(1, Some(Duration::from_secs(2)), Duration::from_millis(1));
        assert_eq!(queue.fair_after, Duration::from_secs(1));
        let waited = |wait| {
            Arc::new(Waiter {
                thread: thread::current(),
                since: Instant::now().checked_sub(wait).unwrap(),
                granted: AtomicBool::new(false),
            })
        };
        // A waiter that has waited 0.9 s: the permit is free, and this thread takes it at once.
        let waiter = waited(Duration::from_millis(900));
        queue.state.lock().waiting.push_back(waiter);
        drop(queue.acquire().expect("taken before the waiter"));
        // Past half the bound, it is the waiter's.
        queue.state.lock().waiting[0] = waited(Duration::from_millis(1100));
        assert!(!queue.state.lock().may_barge(queue.fair_after));
    }

    #[test]
    fn a_waiter_gives_up_at_the_bound_and_leaves_the_queue() {
        // The hold time is underestimated (1 ms), so the waiter is admitted, then waits out the
        // bound while the permit stays held.
        let queue = FifoQueue::new(
            1,
            Some(Duration::from_millis(100)),
            Duration::from_millis(1),
        );
        let held = queue.acquire().unwrap();
        let asked = Instant::now();
        assert_eq!(queue.acquire().err(), Some(Busy));
        assert!(asked.elapsed() >= Duration::from_millis(100));
        assert_eq!(queue.waiting(), 0);
        drop(held);
        // The permit came back: nothing was lost to the waiter that left.
        drop(queue.acquire().unwrap());
    }
}
