//! What both gatehouse servers share about running as a service: [`Shutdown`], the stop that a
//! signal (or a test) requests and that every part of a server waits on, the [`logging`]
//! set-up, [`secret`] files, and the tier [`link`] (TCP or TLS) with its deadlines. Nothing
//! here knows of HTTP, the protocol or PostgreSQL.

pub mod link;
pub mod logging;
pub mod secret;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// A stop request, shared by clones: once triggered it stays triggered.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Read on every request by every worker, so a plain load, not a lock.
    requested: AtomicBool,
    /// Held only to wait for, and to announce, the stop.
    lock: Mutex<()>,
    changed: Condvar,
}

impl Shutdown {
    /// A handle no one has triggered yet.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Requests the stop and wakes everyone waiting for it.
    pub fn trigger(&self) {
        // Set under the lock, so a waiter that has just seen it unset is already waiting.
        let _guard = self.inner.lock.lock();
        self.inner.requested.store(true, Ordering::SeqCst);
        self.inner.changed.notify_all();
    }

    /// Whether the stop was requested.
    pub fn requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// Waits until the stop is requested or `timeout` passes; returns whether it was requested.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let mut guard = self.inner.lock.lock();
        if !self.requested() {
            let _ = self.inner.changed.wait_for(&mut guard, timeout);
        }
        self.requested()
    }

    /// Waits until the stop is requested.
    pub fn wait(&self) {
        let mut guard = self.inner.lock.lock();
        while !self.requested() {
            self.inner.changed.wait(&mut guard);
        }
    }

    /// Starts the thread that turns the first SIGINT or SIGTERM into this stop (the server
    /// finishes what it received), and a second one into an immediate exit with status 1.
    pub fn stop_on_signals(&self) -> io::Result<()> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let shutdown = self.clone();
        thread::Builder::new()
            .name("signals".to_owned())
            .spawn(move || {
                let mut signals = signals.forever();
                if let Some(signal) = signals.next() {
                    log::info!("signal {signal}: stopping after the requests already received");
                    shutdown.trigger();
                }
                if let Some(signal) = signals.next() {
                    log::warn!("signal {signal} again: exiting without waiting");
                    std::process::exit(1);
                }
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_wakes_every_waiter_and_stays() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.requested());
        assert!(!shutdown.wait_timeout(Duration::from_millis(10)));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let shutdown = shutdown.clone();
                thread::spawn(move || shutdown.wait())
            })
            .collect();
        shutdown.trigger();
        for waiter in waiters {
            waiter.join().unwrap();
        }
        assert!(shutdown.requested());
        assert!(shutdown.wait_timeout(Duration::from_secs(60)));
    }
}
