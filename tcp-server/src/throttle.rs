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
    /// Counts kept at most. When full, expired counts are dropped, then single failures; if
    /// that frees nothing, new keys go uncounted (logged once a minute) rather than growing
    /// memory without bound. Defaults to 200,000 (about 10 MB).
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
    last_warning: Option<Instant>,
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
                last_warning: None,
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

    /// Starts an attempt: `Err(time left)` when attempts under `keys` are refused for now;
    /// otherwise the attempt is counted as a failure at once, under the same lock, so guesses
    /// sent in parallel cannot all pass before any of them is counted. Settle it with
    /// [`LoginThrottle::succeeded`] or [`LoginThrottle::abandoned`]; a wrong password needs
    /// nothing more.
    pub fn begin(&self, keys: Keys) -> Result<(), Duration> {
        let now = Instant::now();
        let mut counts = self.counts.lock();
        let refused = |counts: &Counts, key: u64, limit: u32| {
            counts
                .by_key
                .get(&key)
                .filter(|count| count.failures >= limit && count.window_ends > now)
                .map(|count| count.window_ends - now)
        };
        match (
            refused(&counts, keys.client, self.config.per_client),
            refused(&counts, keys.username, self.config.per_username),
        ) {
            (None, None) => {}
            (a, b) => return Err(a.max(b).unwrap_or_default()),
        }
        for key in [keys.client, keys.username] {
            if !counts.by_key.contains_key(&key) && !counts.make_room(&self.config, now) {
                counts.warn_full(now);
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
        Ok(())
    }

    /// The password was right: that client's failures on that username are forgiven, and the
    /// attempt no longer counts over all clients. The rest of that count stays, or a guesser
    /// who also knows one password could reset it.
    pub fn succeeded(&self, keys: Keys) {
        let mut counts = self.counts.lock();
        counts.by_key.remove(&keys.client);
        counts.uncount(keys.username);
    }

    /// The attempt was not judged (the database was unavailable): it does not count.
    pub fn abandoned(&self, keys: Keys) {
        let mut counts = self.counts.lock();
        counts.uncount(keys.client);
        counts.uncount(keys.username);
    }

    /// Counts held, for the stats.
    pub fn tracked(&self) -> usize {
        self.counts.lock().by_key.len()
    }
}

impl Counts {
    /// Takes back one counted attempt; a count left at zero goes, so successful logins leave
    /// nothing behind in the table.
    fn uncount(&mut self, key: u64) {
        if let Some(count) = self.by_key.get_mut(&key) {
            count.failures = count.failures.saturating_sub(1);
            if count.failures == 0 {
                self.by_key.remove(&key);
            }
        }
    }

    /// Whether one more key fits. When the table is full, expired counts are dropped, then
    /// counts of a single failure (what a flood of distinct names leaves), so a guesser's
    /// count on a real target outlives the flood. Sweeps at most once a second (or window),
    /// so a flood cannot turn every attempt into a full scan.
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
        if self.by_key.len() >= config.max_tracked {
            self.by_key.retain(|_, count| count.failures > 1);
        }
        self.by_key.len() < config.max_tracked
    }

    /// At most one warning a minute, however many attempts go uncounted.
    fn warn_full(&mut self, now: Instant) {
        if self
            .last_warning
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60))
        {
            self.last_warning = Some(now);
            log::warn!(
                "login throttle full ({} counts of two failures or more): new attempts go \
                 uncounted until counts expire",
                self.by_key.len()
            );
        }
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
            assert!(t.begin(guesser).is_ok());
        }
        let left = t.begin(guesser).unwrap_err();
        assert!(left > Duration::from_secs(59) && left <= Duration::from_secs(60));
        assert!(t.begin(t.keys("alice", Some("10.0.0.2"))).is_ok());
        assert!(t.begin(t.keys("bob", Some("10.0.0.1"))).is_ok());
    }

    #[test]
    fn attempts_in_flight_count_so_parallel_guesses_cannot_pass_the_limit() {
        let t = throttle(3, 100, Duration::from_secs(60));
        let keys = t.keys("alice", Some("10.0.0.1"));
        // Three begun, none settled yet: the fourth is refused.
        for _ in 0..3 {
            assert!(t.begin(keys).is_ok());
        }
        assert!(t.begin(keys).is_err());
        // One turned out not to be judged (the database was down): it gives its place back.
        t.abandoned(keys);
        assert!(t.begin(keys).is_ok());
        assert!(t.begin(keys).is_err());
    }

    #[test]
    fn the_username_limit_holds_guessers_spread_over_many_clients() {
        let t = throttle(3, 5, Duration::from_secs(60));
        for i in 0..5 {
            assert!(
                t.begin(t.keys("alice", Some(&format!("10.0.0.{i}"))))
                    .is_ok()
            );
        }
        assert!(t.begin(t.keys("alice", Some("10.9.9.9"))).is_err());
        assert!(t.begin(t.keys("bob", Some("10.9.9.9"))).is_ok());
    }

    #[test]
    fn a_refusal_ends_with_its_window_and_success_forgives_the_client() {
        let t = throttle(2, 100, Duration::from_millis(50));
        let keys = t.keys("alice", None);
        assert!(t.begin(keys).is_ok());
        assert!(t.begin(keys).is_ok());
        assert!(t.begin(keys).is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.begin(keys).is_ok());
        t.succeeded(keys);
        assert!(t.begin(keys).is_ok());
        assert!(
            t.begin(keys).is_ok(),
            "the success reset the client's count"
        );
    }

    #[test]
    fn memory_is_bounded_and_a_flood_of_names_does_not_evict_a_real_count() {
        let t = throttle(5, 1000, Duration::from_secs(60));
        let target = t.keys("victim", Some("10.0.0.1"));
        for _ in 0..4 {
            assert!(t.begin(target).is_ok());
        }
        // A flood of single failures on distinct names fills the table and is evicted...
        for i in 0..300 {
            let _ = t.begin(t.keys(&format!("junk{i}"), Some("10.0.0.1")));
        }
        assert!(t.tracked() <= 100);
        // ...while the target's four failures survive: one more is allowed, then refused.
        std::thread::sleep(Duration::from_millis(1100));
        let _ = t.begin(t.keys("more-junk", None));
        assert!(t.begin(target).is_ok());
        assert!(t.begin(target).is_err());
    }

    #[test]
    fn successful_logins_leave_nothing_in_the_table() {
        let t = throttle(3, 100, Duration::from_secs(60));
        for i in 0..50 {
            let keys = t.keys(&format!("user{i}"), Some("10.0.0.1"));
            assert!(t.begin(keys).is_ok());
            t.succeeded(keys);
        }
        assert_eq!(t.tracked(), 0);
        let keys = t.keys("alice", None);
        assert!(t.begin(keys).is_ok());
        t.abandoned(keys);
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn expired_counts_make_room() {
        let t = throttle(1, 1, Duration::from_millis(50));
        for i in 0..200 {
            let _ = t.begin(t.keys(&format!("user{i}"), None));
        }
        assert_eq!(t.tracked(), 100);
        std::thread::sleep(Duration::from_millis(60));
        let _ = t.begin(t.keys("late", None));
        assert_eq!(t.tracked(), 2, "the sweep dropped every expired count");
    }
}
