//! Brute-force protection for logins: failed attempts are counted per username and client, and
//! per username over all clients, in fixed windows; past either limit, the next attempts get
//! `TooManyRequests` with the time left in the window, without the password being checked.
//!
//! Why two counts: the per-client limit stops one guesser quickly while the account's owner,
//! logging in from elsewhere, is never refused because of it; the per-username limit, set
//! higher, holds a guesser spread over many addresses. Either way a refusal lasts at most one
//! window after the failure that reached the limit. Unknown usernames are counted exactly like
//! known ones, so a refusal says nothing about whether an account exists.
//!
//! The counts live in this process only: with several tcp-servers behind one http-server, each
//! allows its own limit (see tcp-server/README.md).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Limits of the login throttle.
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failed logins one client may make for one username within a window. Defaults to 10.
    pub per_client: u32,
    /// Failed logins all clients together may make for one username within a window.
    /// Defaults to 100.
    pub per_username: u32,
    /// The window. Defaults to 5 minutes.
    pub window: Duration,
    /// Counts kept at most. When full, expired counts are dropped; if none has expired, new
    /// failures go uncounted (and are logged) rather than growing memory without bound.
    /// Defaults to 200,000 (about 10 MB).
    pub max_tracked: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            per_client: 10,
            per_username: 100,
            window: Duration::from_secs(300),
            max_tracked: 200_000,
        }
    }
}

/// Failures in the current window of one key.
#[derive(Clone, Copy)]
struct Count {
    failures: u32,
    window_ends: Instant,
}

struct Counts {
    /// Keyed by a keyed hash of the username (and client), so a login allocates nothing here
    /// and the table's size does not depend on the lengths of what attackers send.
    by_key: HashMap<u64, Count>,
    last_sweep: Option<Instant>,
}

/// The throttle shared by every worker.
pub struct LoginThrottle {
    config: ThrottleConfig,
    hasher: RandomState,
    counts: Mutex<Counts>,
}

/// The two keys one login attempt is counted under.
#[derive(Clone, Copy)]
pub struct Keys {
    client: u64,
    username: u64,
}

impl LoginThrottle {
    /// A throttle with the given limits (each at least 1).
    pub fn new(config: ThrottleConfig) -> Self {
        LoginThrottle {
            config: ThrottleConfig {
                per_client: config.per_client.max(1),
                per_username: config.per_username.max(1),
                ..config
            },
            hasher: RandomState::new(),
            counts: Mutex::new(Counts {
                by_key: HashMap::new(),
                last_sweep: None,
            }),
        }
    }

    /// The keys of an attempt on `username_key` (the normalised username) from `client`.
    pub fn keys(&self, username_key: &str, client: Option<&str>) -> Keys {
        // The tags keep a username from ever hashing like a (username, client) pair.
        Keys {
            client: self
                .hasher
                .hash_one((0u8, username_key, client.unwrap_or(""))),
            username: self.hasher.hash_one((1u8, username_key)),
        }
    }

    /// `Err(time left)` when attempts under `keys` are refused for now.
    pub fn check(&self, keys: Keys) -> Result<(), Duration> {
        let counts = self.counts.lock();
        if counts.by_key.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let refused = |key: u64, limit: u32| {
            counts
                .by_key
                .get(&key)
                .filter(|count| count.failures >= limit && count.window_ends > now)
                .map(|count| count.window_ends - now)
        };
        match (
            refused(keys.client, self.config.per_client),
            refused(keys.username, self.config.per_username),
        ) {
            (None, None) => Ok(()),
            (a, b) => Err(a.max(b).unwrap_or_default()),
        }
    }

    /// Counts a failed attempt.
    pub fn failed(&self, keys: Keys) {
        let now = Instant::now();
        let mut counts = self.counts.lock();
        for key in [keys.client, keys.username] {
            if !counts.by_key.contains_key(&key) && !counts.make_room(&self.config, now) {
                log::warn!(
                    "login throttle full ({} counts): a failed login goes uncounted",
                    counts.by_key.len()
                );
                continue;
            }
            let count = counts.by_key.entry(key).or_insert(Count {
                failures: 0,
                window_ends: now,
            });
            if count.window_ends <= now {
                *count = Count {
                    failures: 0,
                    window_ends: now + self.config.window,
                };
            }
            count.failures = count.failures.saturating_add(1);
        }
    }

    /// A successful login forgives that client's failures on that username. The count over
    /// all clients stays, or a guesser who also knows one password could reset it.
    pub fn succeeded(&self, keys: Keys) {
        let mut counts = self.counts.lock();
        if !counts.by_key.is_empty() {
            counts.by_key.remove(&keys.client);
        }
    }

    /// Counts held, for the stats.
    pub fn tracked(&self) -> usize {
        self.counts.lock().by_key.len()
    }
}

impl Counts {
    /// Whether one more key fits, dropping expired counts if the table is full. Sweeps at most
    /// once a second (or window), so a flood of distinct names cannot turn every failure into a full scan.
    fn make_room(&mut self, config: &ThrottleConfig, now: Instant) -> bool {
        if self.by_key.len() < config.max_tracked {
            return true;
        }
        let interval = config.window.min(Duration::from_secs(1));
        if self
            .last_sweep
            .is_some_and(|at| now.duration_since(at) < interval)
        {
            return false;
        }
        self.last_sweep = Some(now);
        self.by_key.retain(|_, count| count.window_ends > now);
        self.by_key.len() < config.max_tracked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_client: u32, per_username: u32, window: Duration) -> LoginThrottle {
        LoginThrottle::new(ThrottleConfig {
            per_client,
            per_username,
            window,
            max_tracked: 100,
        })
    }

    #[test]
    fn a_client_is_refused_after_its_limit_and_others_are_not() {
        let t = throttle(3, 100, Duration::from_secs(60));
        let guesser = t.keys("alice", Some("10.0.0.1"));
        for _ in 0..3 {
            assert!(t.check(guesser).is_ok());
            t.failed(guesser);
        }
        let left = t.check(guesser).unwrap_err();
        assert!(left > Duration::from_secs(59) && left <= Duration::from_secs(60));
        assert!(t.check(t.keys("alice", Some("10.0.0.2"))).is_ok());
        assert!(t.check(t.keys("bob", Some("10.0.0.1"))).is_ok());
    }

    #[test]
    fn the_username_limit_holds_guessers_spread_over_many_clients() {
        let t = throttle(3, 5, Duration::from_secs(60));
        for i in 0..5 {
            t.failed(t.keys("alice", Some(&format!("10.0.0.{i}"))));
        }
        assert!(t.check(t.keys("alice", Some("10.9.9.9"))).is_err());
        assert!(t.check(t.keys("bob", Some("10.9.9.9"))).is_ok());
    }

    #[test]
    fn a_refusal_ends_with_its_window_and_success_forgives_the_client() {
        let t = throttle(2, 100, Duration::from_millis(50));
        let keys = t.keys("alice", None);
        t.failed(keys);
        t.failed(keys);
        assert!(t.check(keys).is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.check(keys).is_ok());
        t.failed(keys);
        t.succeeded(keys);
        t.failed(keys);
        assert!(
            t.check(keys).is_ok(),
            "the success reset the client's count"
        );
    }

    #[test]
    fn memory_is_bounded_and_expired_counts_make_room() {
        let t = throttle(1, 1, Duration::from_millis(50));
        for i in 0..200 {
            t.failed(t.keys(&format!("user{i}"), None));
        }
        assert_eq!(t.tracked(), 100);
        std::thread::sleep(Duration::from_millis(60));
        t.failed(t.keys("late", None));
        assert_eq!(t.tracked(), 2, "the sweep dropped every expired count");
    }
}
