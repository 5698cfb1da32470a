//! A counting semaphore, bounding how many memory-hungry jobs (password hashes, image decodes)
//! run at once.

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
