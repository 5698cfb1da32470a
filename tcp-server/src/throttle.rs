//! Brute-force and flood protection, after OWASP's "device cookies" scheme: failed logins are
//! counted per device that logged in to the account before (a valid device token), per account
//! for every other client together, and per client address over all usernames; registrations
//! are counted per client address and over all clients.
//!
//! - A client with a device token for the username (it logged in successfully before) is
//!   judged on its own count only: an attacker who floods the username does not lock its owner
//!   out. A device whose token failed too often is locked out for itself.
//! - Every other client of the account shares the account's count; past its limit they are all
//!   locked out, for a time that doubles with each further lockout (backoff).
//! - Each client address also has a count over all usernames, so spraying one password over
//!   many names from one address is refused too.
//!
//! Counts are leaky buckets: each failure adds one and the level drains to zero over
//! `failure_window`, so there is no window edge to burst around. Attempts in flight count, so
//! parallel guesses cannot pass a limit before any of them is judged. Unknown usernames are
//! counted exactly like real ones, so a refusal says nothing about whether an account exists.
//!
//! Memory is bounded by design: each table has a fixed capacity, allocated at start. When a
//! table is full and nothing in it has drained away, the attempt that would need a new entry is
//! refused (`Refusal::Full`), never let through uncounted: the throttle fails closed. A device
//! that finds the device table full is judged as an unrecognised client instead.
//!
//! All attempts for one username meet in one table of one process, so several tcp-servers keep
//! the per-account limits when logins are routed to them by username.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Time inside the throttle, in ticks of a tenth of a second since it started: a `u32` lasts
/// thirteen years, and keeps an entry at 24 bytes.
type Ticks = u32;
const TICKS_PER_SECOND: f64 = 10.0;

/// Limits of the throttle. Every default is documented in docs/RELIABILITY.md with its reason.
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failed logins all unrecognised clients of one account may make before they are locked
    /// out of it. Defaults to 10.
    pub account_failures: u32,
    /// Failed logins one device token may make before that device is locked out. Defaults to 10.
    pub device_failures: u32,
    /// Failed logins one client address may make over all usernames. Defaults to 100.
    pub address_failures: u32,
    /// How long a full count takes to drain: a failure is forgotten after
    /// `failure_window / limit`. Defaults to 15 minutes.
    pub failure_window: Duration,
    /// The first lockout when a count reaches its limit; each further lockout of the same key
    /// before its count has drained doubles it. Defaults to 2 minutes (a little more than one
    /// failure takes to drain at the default limit and window, 90 s).
    pub lockout: Duration,
    /// The longest lockout. Defaults to 1 hour.
    pub max_lockout: Duration,
    /// Registrations one client address may make in a burst. Defaults to 20.
    pub register_burst: u32,
    /// After the burst, one more registration per address per this interval. Defaults to 10 s.
    pub register_interval: Duration,
    /// Registrations per second over all clients, sustained. Defaults to 100.
    pub register_global_rate: u32,
    /// Registrations over all clients in a burst. Defaults to 1,000.
    pub register_global_burst: u32,
    /// Accounts whose failures are tracked at most. Defaults to 900,000 (about 24 MiB).
    pub max_accounts: usize,
    /// Device tokens, and client addresses, tracked at most (each). Defaults to 200,000.
    pub max_clients: usize,
}

impl ThrottleConfig {
    /// The defaults, as a constant the command line shares.
    pub const DEFAULT: ThrottleConfig = ThrottleConfig {
        account_failures: 10,
        device_failures: 10,
        address_failures: 100,
        failure_window: Duration::from_secs(15 * 60),
        lockout: Duration::from_secs(120),
        max_lockout: Duration::from_secs(3600),
        register_burst: 20,
        register_interval: Duration::from_secs(10),
        register_global_rate: 100,
        register_global_burst: 1_000,
        max_accounts: 900_000,
        max_clients: 100_000,
    };
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig::DEFAULT
    }
}

/// Why an attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Unrecognised clients of this account failed too often.
    Account,
    /// This device token failed too often.
    Device,
    /// This client address failed too often, over all usernames.
    Address,
    /// A table is full of live counts: the attempt cannot be counted, so it is refused.
    Full,
    /// This client address registered too many accounts.
    RegisterAddress,
    /// The service as a whole takes no more registrations for now.
    RegisterGlobal,
}

impl Reason {
    /// Every reason, for metrics.
    pub const ALL: [Reason; 6] = [
        Reason::Account,
        Reason::Device,
        Reason::Address,
        Reason::Full,
        Reason::RegisterAddress,
        Reason::RegisterGlobal,
    ];

    /// A label for metrics.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Account => "account",
            Reason::Device => "device",
            Reason::Address => "address",
            Reason::Full => "full",
            Reason::RegisterAddress => "register_address",
            Reason::RegisterGlobal => "register_global",
        }
    }
}

/// A refused attempt: why, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub reason: Reason,
    /// How long until an attempt may be admitted (at least a tenth of a second).
    pub retry_after: Duration,
}

/// How a judged login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The password was right.
    Succeeded,
    /// Wrong password or unknown username: counted.
    Failed,
    /// Not judged (the database was unavailable): not counted.
    NotJudged,
}

/// A login admitted by [`Throttle::begin_login`], to be settled with [`Throttle::finish_login`].
#[derive(Debug)]
#[must_use = "an admitted login holds a place in flight until it is finished"]
pub struct LoginAttempt {
    path: Path,
}

#[derive(Debug, Clone, Copy)]
enum Path {
    /// A device that logged in to this account before: judged on its own count.
    Trusted { device: u64 },
    /// Everyone else: the account's shared count and the address's count.
    Untrusted { account: u64, address: u64 },
}

/// A leaky bucket: the level drains at the table's rate; attempts in flight count toward the
/// limit until they are settled.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f32,
    updated: Ticks,
    locked_until: Ticks,
    /// Lockouts since the level last drained to zero: the next lasts `lockout << strikes`.
    strikes: u8,
    in_flight: u16,
}

impl Bucket {
    const EMPTY: Bucket = Bucket {
        level: 0.0,
        updated: 0,
        locked_until: 0,
        strikes: 0,
        in_flight: 0,
    };

    fn level_at(&self, now: Ticks, policy: &Policy) -> f32 {
        let drained = now.saturating_sub(self.updated) as f32 * policy.leak_per_tick;
        (self.level - drained).max(0.0)
    }

    /// Drains the level up to `now`; a bucket that has drained and is not locked starts over
    /// without strikes. Time only moves forward: a caller that read the clock before waiting
    /// for the lock may bring an earlier `now`, which must not let the same interval drain
    /// twice.
    fn settle(&mut self, now: Ticks, policy: &Policy) {
        self.level = self.level_at(now, policy);
        self.updated = self.updated.max(now);
        if self.level == 0.0 && self.locked_until <= now {
            self.strikes = 0;
        }
    }

    /// Whether the bucket holds nothing worth keeping at `now`.
    fn is_idle(&self, now: Ticks, policy: &Policy) -> bool {
        self.in_flight == 0 && self.locked_until <= now && self.level_at(now, policy) == 0.0
    }

    /// Admits one attempt in flight, or says how long until one could be: until the lockout
    /// ends and the level has drained enough, whichever comes later.
    fn admit(&mut self, now: Ticks, policy: &Policy) -> Result<(), Ticks> {
        self.settle(now, policy);
        // A whole attempt must fit under the limit, with those in flight counted.
        let needed = self.level + f32::from(self.in_flight) + 1.0;
        let fits = fits(needed, policy);
        if fits && self.locked_until <= now {
            self.in_flight += 1;
            return Ok(());
        }
        // The margin keeps rounding from adding a tick to the wait.
        let drain = if fits {
            0
        } else {
            (((needed - policy.limit) / policy.leak_per_tick) - 1e-3).ceil() as Ticks
        };
        Err(drain.max(self.locked_until.saturating_sub(now)).max(1))
    }

    /// Settles an attempt admitted earlier; a failure adds one and may lock the bucket.
    fn finish(&mut self, now: Ticks, policy: &Policy, failed: bool) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.settle(now, policy);
        if !failed {
            return;
        }
        self.level += 1.0;
        // Full: no further attempt fits. (Failures spread over time leave a level just under
        // the limit, so "full" is judged the way admission is.)
        let full = !fits(self.level + 1.0, policy);
        if full && self.locked_until <= now && policy.lockout > 0 {
            let lockout = policy
                .lockout
                .checked_shl(u32::from(self.strikes))
                .unwrap_or(u32::MAX)
                .min(policy.max_lockout);
            self.locked_until = now.saturating_add(lockout);
            self.strikes = self.strikes.saturating_add(1);
        }
    }
}

/// Whether a level of `needed` is within the policy's limit; the margin keeps a level that
/// drained to exactly the room needed from failing on rounding.
fn fits(needed: f32, policy: &Policy) -> bool {
    needed <= policy.limit + 1e-3
}

/// The limit and drain rate of a table's buckets.
#[derive(Debug, Clone, Copy)]
struct Policy {
    limit: f32,
    leak_per_tick: f32,
    /// Zero: no lockout, the bucket's level alone admits or refuses.
    lockout: Ticks,
    max_lockout: Ticks,
}

impl Policy {
    /// Failures: `limit` drain over `window`; reaching it locks the key out.
    fn failures(limit: u32, window: Duration, lockout: Duration, max_lockout: Duration) -> Self {
        Policy {
            limit: limit.max(1) as f32,
            leak_per_tick: limit.max(1) as f32 / ticks(window).max(1) as f32,
            lockout: ticks(lockout).max(1),
            max_lockout: ticks(max_lockout).max(1),
        }
    }

    /// A rate: `burst` at once, then one per `interval`.
    fn rate(burst: u32, interval: Duration) -> Self {
        Policy {
            limit: burst.max(1) as f32,
            leak_per_tick: (1.0 / (interval.as_secs_f64() * TICKS_PER_SECOND).max(1e-6)) as f32,
            lockout: 0,
            max_lockout: 0,
        }
    }
}

fn ticks(duration: Duration) -> Ticks {
    (duration.as_secs_f64() * TICKS_PER_SECOND)
        .ceil()
        .min(f64::from(u32::MAX)) as Ticks
}

fn duration(ticks: Ticks) -> Duration {
    Duration::from_millis(u64::from(ticks.max(1)) * 100)
}

/// Buckets by key, at most `capacity` of them, allocated at start.
struct Table {
    policy: Policy,
    capacity: usize,
    buckets: HashMap<u64, Bucket>,
    last_sweep: Option<Ticks>,
}

impl Table {
    fn new(policy: Policy, capacity: usize) -> Self {
        Table {
            policy,
            capacity: capacity.max(1),
            buckets: HashMap::with_capacity(capacity.max(1)),
            last_sweep: None,
        }
    }

    /// Admits an attempt on `key`; `Err(None)` when the key has no entry and none can be made.
    fn admit(&mut self, key: u64, now: Ticks) -> Result<(), Option<Ticks>> {
        if !self.buckets.contains_key(&key) && !self.make_room(now) {
            return Err(None);
        }
        let policy = self.policy;
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            updated: now,
            ..Bucket::EMPTY
        });
        let admitted = bucket.admit(now, &policy);
        if admitted.is_err() && bucket.is_idle(now, &policy) {
            self.buckets.remove(&key);
        }
        admitted.map_err(Some)
    }

    /// Settles an admitted attempt. An entry left with nothing in it goes, so successful logins
    /// leave nothing behind.
    fn finish(&mut self, key: u64, now: Ticks, failed: bool) {
        let policy = self.policy;
        if let Some(bucket) = self.buckets.get_mut(&key) {
            bucket.finish(now, &policy, failed);
            if bucket.is_idle(now, &policy) {
                self.buckets.remove(&key);
            }
        }
    }

    /// Takes back an admission that was not used (another table refused the attempt).
    fn cancel(&mut self, key: u64, now: Ticks) {
        self.finish(key, now, false);
    }

    /// Whether one more entry fits. When full, entries that have drained are dropped, at most
    /// once a second, so a flood cannot turn every attempt into a scan of the table. Live
    /// counts are never dropped.
    fn make_room(&mut self, now: Ticks) -> bool {
        if self.buckets.len() < self.capacity {
            return true;
        }
        if self
            .last_sweep
            .is_some_and(|at| now.saturating_sub(at) < TICKS_PER_SECOND as Ticks)
        {
            return false;
        }
        self.last_sweep = Some(now);
        let policy = self.policy;
        self.buckets
            .retain(|_, bucket| !bucket.is_idle(now, &policy));
        self.buckets.len() < self.capacity
    }
}

struct Tables {
    accounts: Table,
    devices: Table,
    addresses: Table,
    registrations: Table,
    register_global: Bucket,
    last_full_warning: Option<Instant>,
}

/// The throttle shared by every worker.
pub struct Throttle {
    epoch: Instant,
    hasher: RandomState,
    register_global: Policy,
    tables: Mutex<Tables>,
    refusals: [AtomicU64; Reason::ALL.len()],
}

/// The fill of the throttle's tables, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// Accounts with failures from unrecognised clients.
    pub accounts: usize,
    /// Device tokens with failures.
    pub devices: usize,
    /// Client addresses with failed logins.
    pub addresses: usize,
    /// Client addresses with recent registrations.
    pub registrations: usize,
}

impl Throttle {
    /// A throttle with the given limits; its tables are allocated now.
    pub fn new(config: &ThrottleConfig) -> Self {
        let failures = |limit| {
            Policy::failures(
                limit,
                config.failure_window,
                config.lockout,
                config.max_lockout,
            )
        };
        let global_interval =
            Duration::from_secs_f64(1.0 / f64::from(config.register_global_rate.max(1)));
        Throttle {
            epoch: Instant::now(),
            hasher: RandomState::new(),
            register_global: Policy::rate(config.register_global_burst, global_interval),
            tables: Mutex::new(Tables {
                accounts: Table::new(failures(config.account_failures), config.max_accounts),
                devices: Table::new(failures(config.device_failures), config.max_clients),
                addresses: Table::new(failures(config.address_failures), config.max_clients),
                registrations: Table::new(
                    Policy::rate(config.register_burst, config.register_interval),
                    config.max_clients,
                ),
                register_global: Bucket::EMPTY,
                last_full_warning: None,
            }),
            refusals: Default::default(),
        }
    }

    fn now(&self) -> Ticks {
        (self.epoch.elapsed().as_millis() / 100).min(u128::from(u32::MAX)) as Ticks
    }

    /// Admits a login on `username_key` (the normalised username) from `client` (an IP
    /// address as text, or anything else, which counts as one address), with `device` the nonce
    /// of a device token already verified for this username. Refused attempts must not look at
    /// the password.
    pub fn begin_login(
        &self,
        username_key: &str,
        client: Option<&str>,
        device: Option<[u8; 16]>,
    ) -> Result<LoginAttempt, Refusal> {
        self.begin_login_at(username_key, client, device, self.now())
    }

    fn begin_login_at(
        &self,
        username_key: &str,
        client: Option<&str>,
        device: Option<[u8; 16]>,
        now: Ticks,
    ) -> Result<LoginAttempt, Refusal> {
        let mut tables = self.tables.lock();
        if let Some(nonce) = device {
            let device = self.hasher.hash_one((0u8, nonce));
            match tables.devices.admit(device, now) {
                Ok(()) => {
                    return Ok(LoginAttempt {
                        path: Path::Trusted { device },
                    });
                }
                Err(Some(left)) => return Err(self.refuse(Reason::Device, left)),
                // No room to count this device: it is judged as an unrecognised client.
                Err(None) => self.warn_full(&mut tables, "device"),
            }
        }
        let account = self.hasher.hash_one((1u8, username_key));
        let address = self.hasher.hash_one((2u8, address_key(client)));
        match tables.accounts.admit(account, now) {
            Ok(()) => {}
            Err(Some(left)) => return Err(self.refuse(Reason::Account, left)),
            Err(None) => {
                self.warn_full(&mut tables, "account");
                return Err(self.refuse(Reason::Full, TICKS_PER_SECOND as Ticks));
            }
        }
        match tables.addresses.admit(address, now) {
            Ok(()) => Ok(LoginAttempt {
                path: Path::Untrusted { account, address },
            }),
            Err(left) => {
                tables.accounts.cancel(account, now);
                if left.is_none() {
                    self.warn_full(&mut tables, "address");
                }
                Err(match left {
                    Some(left) => self.refuse(Reason::Address, left),
                    None => self.refuse(Reason::Full, TICKS_PER_SECOND as Ticks),
                })
            }
        }
    }

    /// Settles an admitted login.
    pub fn finish_login(&self, attempt: LoginAttempt, outcome: Outcome) {
        self.finish_login_at(attempt, outcome, self.now());
    }

    fn finish_login_at(&self, attempt: LoginAttempt, outcome: Outcome, now: Ticks) {
        let failed = outcome == Outcome::Failed;
        let mut tables = self.tables.lock();
        match attempt.path {
            Path::Trusted { device } => tables.devices.finish(device, now, failed),
            Path::Untrusted { account, address } => {
                tables.accounts.finish(account, now, failed);
                tables.addresses.finish(address, now, failed);
            }
        }
    }

    /// Admits a registration from `client`, per address, then over all clients. It counts
    /// when the returned [`Registration`] is dropped, unless it was taken back with
    /// [`Registration::uncounted`]; until then it holds its place, so attempts in flight cannot
    /// pass the limits together.
    pub fn admit_registration(&self, client: Option<&str>) -> Result<Registration<'_>, Refusal> {
        self.admit_registration_at(client, self.now())
    }

    fn admit_registration_at(
        &self,
        client: Option<&str>,
        now: Ticks,
    ) -> Result<Registration<'_>, Refusal> {
        let address = self.hasher.hash_one((3u8, address_key(client)));
        let mut tables = self.tables.lock();
        match tables.registrations.admit(address, now) {
            Ok(()) => {}
            Err(Some(left)) => return Err(self.refuse(Reason::RegisterAddress, left)),
            Err(None) => {
                self.warn_full(&mut tables, "registration");
                return Err(self.refuse(Reason::Full, TICKS_PER_SECOND as Ticks));
            }
        }
        if let Err(left) = tables.register_global.admit(now, &self.register_global) {
            tables.registrations.cancel(address, now);
            return Err(self.refuse(Reason::RegisterGlobal, left));
        }
        Ok(Registration {
            throttle: self,
            address,
            admitted: now,
            settled: false,
        })
    }

    /// Entries held in each table.
    pub fn fill(&self) -> Fill {
        let tables = self.tables.lock();
        Fill {
            accounts: tables.accounts.buckets.len(),
            devices: tables.devices.buckets.len(),
            addresses: tables.addresses.buckets.len(),
            registrations: tables.registrations.buckets.len(),
        }
    }

    /// Refusals so far, by reason.
    pub fn refusals(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL
            .into_iter()
            .zip(&self.refusals)
            .map(|(reason, count)| (reason, count.load(Ordering::Relaxed)))
    }

    /// The most memory the tables can take, in bytes: what docs/RELIABILITY.md states.
    pub fn memory_bound(config: &ThrottleConfig) -> usize {
        // A hashbrown table holds a power of two of slots, at most 7/8 full, each a key, a
        // bucket and one control byte.
        let table = |capacity: usize| {
            let slots = (capacity.max(1) * 8 / 7).next_power_of_two();
            slots * (size_of::<(u64, Bucket)>() + 1)
        };
        table(config.max_accounts) + 3 * table(config.max_clients)
    }

    fn refuse(&self, reason: Reason, left: Ticks) -> Refusal {
        self.refusals[reason as usize].fetch_add(1, Ordering::Relaxed);
        Refusal {
            reason,
            retry_after: duration(left),
        }
    }

    /// At most one warning a minute, however many attempts find a table full.
    fn warn_full(&self, tables: &mut Tables, table: &str) {
        let now = Instant::now();
        if tables
            .last_full_warning
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60))
        {
            tables.last_full_warning = Some(now);
            log::warn!(
                "the login throttle's {table} table is full of live counts: attempts that need a \
                 new entry are refused until counts drain"
            );
        }
    }
}

/// What a client counts as: its IPv4 address, or the /64 network of its IPv6 address (one
/// host commonly has a whole /64); anything that is not an address counts as itself.
fn address_key(client: Option<&str>) -> String {
    match client.map(str::parse::<IpAddr>) {
        Some(Ok(IpAddr::V4(v4))) => v4.to_string(),
        Some(Ok(IpAddr::V6(v6))) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Some(Err(_)) => client.unwrap_or_default().to_owned(),
        None => String::new(),
    }
}

/// An admitted registration (see [`Throttle::admit_registration`]). Dropped, it counts
/// against its address and the limit over all clients (so a panic or an early return counts:
/// the throttle fails closed).
#[must_use = "a registration counts when dropped; take it back with `uncounted`"]
pub struct Registration<'a> {
    throttle: &'a Throttle,
    address: u64,
    admitted: Ticks,
    settled: bool,
}

impl Registration<'_> {
    /// Takes the attempt back: nothing was judged (the hash queue was full), so it does not
    /// count.
    pub fn uncounted(mut self) {
        self.settle(false);
    }

    /// Counted as of its admission, as it was before it could be taken back.
    fn settle(&mut self, counted: bool) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let (throttle, now) = (self.throttle, self.admitted);
        let mut tables = throttle.tables.lock();
        tables
            .register_global
            .finish(now, &throttle.register_global, counted);
        tables.registrations.finish(self.address, now, counted);
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.settle(true);
    }
}

impl fmt::Debug for Registration<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("admitted", &self.admitted)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Ticks = 10;
    const MINUTE: Ticks = 60 * SECOND;

    fn config() -> ThrottleConfig {
        ThrottleConfig {
            account_failures: 3,
            device_failures: 3,
            address_failures: 5,
            failure_window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(600),
            register_burst: 2,
            register_interval: Duration::from_secs(10),
            register_global_rate: 100,
            register_global_burst: 1000,
            max_accounts: 100,
            max_clients: 100,
        }
    }

    /// Begins and fails a login; returns whether it was admitted.
    fn fail(t: &Throttle, name: &str, client: &str, device: Option<[u8; 16]>, now: Ticks) -> bool {
        match t.begin_login_at(name, Some(client), device, now) {
            Ok(attempt) => {
                t.finish_login_at(attempt, Outcome::Failed, now);
                true
            }
            Err(_) => false,
        }
    }

    #[test]
    fn unrecognised_clients_share_the_account_limit_then_are_locked_out_with_backoff() {
        // Three failures drain in three minutes: one a minute.
        let t = Throttle::new(&ThrottleConfig {
            failure_window: Duration::from_secs(180),
            ..config()
        });
        for i in 0..3 {
            assert!(fail(&t, "alice", &format!("10.0.0.{i}"), None, 0));
        }
        let refusal = t
            .begin_login_at("alice", Some("10.9.9.9"), None, 0)
            .unwrap_err();
        assert_eq!(refusal.reason, Reason::Account);
        assert_eq!(refusal.retry_after, Duration::from_secs(60));
        // Other accounts are not affected.
        assert!(fail(&t, "bob", "10.9.9.9", None, 0));
        // After the lockout one failure has drained: one more guess is judged, and its failure
        // locks the account for twice as long, then four times: the backoff.
        assert!(
            t.begin_login_at("alice", Some("10.0.0.1"), None, MINUTE - 1)
                .is_err()
        );
        assert!(fail(&t, "alice", "10.0.0.1", None, MINUTE));
        let refusal = t
            .begin_login_at("alice", Some("10.0.0.1"), None, MINUTE)
            .unwrap_err();
        assert_eq!(refusal.retry_after, Duration::from_secs(120));
        assert!(fail(&t, "alice", "10.0.0.1", None, 3 * MINUTE));
        assert!(fail(&t, "alice", "10.0.0.1", None, 3 * MINUTE));
        let refusal = t
            .begin_login_at("alice", Some("10.0.0.1"), None, 3 * MINUTE)
            .unwrap_err();
        assert_eq!(refusal.retry_after, Duration::from_secs(240));
    }

    #[test]
    fn failures_spread_over_time_lock_the_account_all_the_same() {
        // Each failure comes a second after the last, so the level never quite reaches 3; the
        // third still leaves no room for a fourth, and that is what locks.
        let t = Throttle::new(&config());
        for second in 0..3 {
            assert!(fail(&t, "alice", "10.0.0.1", None, second * SECOND));
        }
        let refusal = t
            .begin_login_at("alice", Some("10.0.0.1"), None, 2 * SECOND)
            .unwrap_err();
        assert_eq!(
            refusal.retry_after,
            Duration::from_secs(60),
            "the lockout, not the drain"
        );
    }

    #[test]
    fn the_owner_with_a_device_token_is_not_locked_out_by_a_flood_of_the_account() {
        let t = Throttle::new(&config());
        for _ in 0..50 {
            fail(&t, "alice", "10.6.6.6", None, 0);
        }
        assert_eq!(
            t.begin_login_at("alice", Some("10.0.0.1"), None, 0)
                .unwrap_err()
                .reason,
            Reason::Account
        );
        let owner = t.begin_login_at("alice", Some("10.0.0.1"), Some([7; 16]), 0);
        t.finish_login_at(
            owner.expect("the owner's device is admitted"),
            Outcome::Succeeded,
            0,
        );
    }

    #[test]
    fn a_device_token_that_keeps_failing_is_locked_out_for_itself_only() {
        let t = Throttle::new(&config());
        for _ in 0..3 {
            assert!(fail(&t, "alice", "10.0.0.1", Some([1; 16]), 0));
        }
        assert_eq!(
            t.begin_login_at("alice", Some("10.0.0.1"), Some([1; 16]), 0)
                .unwrap_err()
                .reason,
            Reason::Device
        );
        assert!(fail(&t, "alice", "10.0.0.1", Some([2; 16]), 0));
        assert!(fail(&t, "alice", "10.0.0.1", None, 0));
    }

    #[test]
    fn one_address_spraying_many_usernames_is_refused() {
        let t = Throttle::new(&config());
        for i in 0..5 {
            assert!(fail(&t, &format!("user{i}"), "10.0.0.1", None, 0));
        }
        let refusal = t
            .begin_login_at("someone-else", Some("10.0.0.1"), None, 0)
            .unwrap_err();
        assert_eq!(refusal.reason, Reason::Address);
        // The refusal took back its admission on the account: nothing was counted there.
        assert!(fail(&t, "someone-else", "10.0.0.2", None, 0));
        assert!(fail(&t, "someone-else", "10.0.0.2", None, 0));
        assert!(fail(&t, "someone-else", "10.0.0.2", None, 0));
        assert!(!fail(&t, "someone-else", "10.0.0.2", None, 0));
    }

    #[test]
    fn ipv6_clients_count_by_their_64_network() {
        let t = Throttle::new(&config());
        for i in 0..5 {
            assert!(fail(
                &t,
                &format!("u{i}"),
                &format!("2001:db8:0:1::{i}"),
                None,
                0
            ));
        }
        assert!(!fail(&t, "u9", "2001:db8:0:1::99", None, 0));
        assert!(fail(&t, "u9", "2001:db8:0:2::1", None, 0));
        assert_eq!(address_key(Some("::ffff:10.1.2.3")), "10.1.2.3");
    }

    #[test]
    fn attempts_in_flight_count_so_parallel_guesses_cannot_pass_the_limit() {
        let t = Throttle::new(&config());
        let attempts: Vec<_> = (0..3)
            .map(|_| {
                t.begin_login_at("alice", Some("10.0.0.1"), None, 0)
                    .unwrap()
            })
            .collect();
        assert!(
            t.begin_login_at("alice", Some("10.0.0.2"), None, 0)
                .is_err()
        );
        let mut attempts = attempts.into_iter();
        // One could not be judged (the database was down): it gives its place back.
        t.finish_login_at(attempts.next().unwrap(), Outcome::NotJudged, 0);
        let again = t
            .begin_login_at("alice", Some("10.0.0.2"), None, 0)
            .unwrap();
        assert!(
            t.begin_login_at("alice", Some("10.0.0.2"), None, 0)
                .is_err()
        );
        for attempt in attempts.chain([again]) {
            t.finish_login_at(attempt, Outcome::Failed, 0);
        }
        assert_eq!(
            t.begin_login_at("alice", Some("10.0.0.3"), None, 0)
                .unwrap_err()
                .reason,
            Reason::Account
        );
    }

    #[test]
    fn counts_drain_over_the_window_so_there_is_no_edge_to_burst_around() {
        // Three failures drain in a minute (one per 20 s); the lockout is a second.
        let t = Throttle::new(&ThrottleConfig {
            lockout: Duration::from_secs(1),
            ..config()
        });
        for _ in 0..3 {
            assert!(fail(&t, "alice", "10.0.0.1", None, 0));
        }
        // The lockout is over at 2 s, but the count is still at the limit until a whole failure
        // has drained.
        let refusal = t
            .begin_login_at("alice", Some("10.0.0.1"), None, 2 * SECOND)
            .unwrap_err();
        assert_eq!(refusal.retry_after, Duration::from_secs(18));
        assert!(fail(&t, "alice", "10.0.0.1", None, 20 * SECOND));
        assert!(
            t.begin_login_at("alice", Some("10.0.0.1"), None, 20 * SECOND)
                .is_err()
        );
    }

    #[test]
    fn successful_logins_leave_nothing_in_the_tables() {
        let t = Throttle::new(&config());
        for i in 0..50 {
            let attempt = t
                .begin_login_at(&format!("user{i}"), Some("10.0.0.1"), None, 0)
                .unwrap();
            t.finish_login_at(attempt, Outcome::Succeeded, 0);
            let attempt = t
                .begin_login_at(&format!("user{i}"), Some("10.0.0.1"), Some([i; 16]), 0)
                .unwrap();
            t.finish_login_at(attempt, Outcome::Succeeded, 0);
        }
        let attempt = t.begin_login_at("alice", None, None, 0).unwrap();
        t.finish_login_at(attempt, Outcome::NotJudged, 0);
        assert_eq!(
            t.fill(),
            Fill {
                accounts: 0,
                devices: 0,
                addresses: 0,
                registrations: 0
            }
        );
    }

    #[test]
    fn a_full_table_refuses_new_keys_and_keeps_every_live_count() {
        let t = Throttle::new(&ThrottleConfig {
            max_clients: 1000,
            ..config()
        });
        // Two failures on the target, then a flood of made-up names fills the account table.
        assert!(fail(&t, "victim", "10.0.0.1", None, 0));
        assert!(fail(&t, "victim", "10.0.0.2", None, 0));
        for i in 0..200 {
            fail(
                &t,
                &format!("junk{i}"),
                &format!("10.1.{}.{}", i / 250, i % 250),
                None,
                0,
            );
        }
        assert_eq!(t.fill().accounts, 100);
        let full = t
            .begin_login_at("newcomer", Some("10.0.0.9"), None, 0)
            .unwrap_err();
        assert_eq!(full.reason, Reason::Full);
        // The target's count survived the flood: one more guess, then the lockout.
        assert!(fail(&t, "victim", "10.0.0.3", None, 0));
        assert_eq!(
            t.begin_login_at("victim", Some("10.0.0.4"), None, 0)
                .unwrap_err()
                .reason,
            Reason::Account
        );
        // The owner's device still gets in while the table is full.
        let owner = t.begin_login_at("newcomer", Some("10.0.0.9"), Some([3; 16]), 0);
        t.finish_login_at(owner.expect("admitted"), Outcome::Succeeded, 0);
        // Once the flood's single failures have drained (20 s each), there is room again.
        assert!(fail(&t, "newcomer", "10.0.0.9", None, 20 * SECOND));
    }

    #[test]
    fn a_device_that_finds_its_table_full_is_judged_as_unrecognised() {
        let t = Throttle::new(&ThrottleConfig {
            max_clients: 10,
            ..config()
        });
        for i in 0..10u8 {
            assert!(fail(&t, "mallory", "10.0.0.1", Some([i; 16]), 0));
        }
        for i in 0..3 {
            assert!(fail(&t, "alice", &format!("10.1.0.{i}"), None, 0));
        }
        // A new device of alice's cannot be counted, so it meets the account's lockout.
        assert_eq!(
            t.begin_login_at("alice", Some("10.1.0.9"), Some([99; 16]), 0)
                .unwrap_err()
                .reason,
            Reason::Account
        );
    }

    #[test]
    fn registrations_are_limited_per_address() {
        let t = Throttle::new(&config());
        assert!(t.admit_registration_at(Some("10.0.0.1"), 0).is_ok());
        assert!(t.admit_registration_at(Some("10.0.0.1"), 0).is_ok());
        let refusal = t.admit_registration_at(Some("10.0.0.1"), 0).unwrap_err();
        assert_eq!(refusal.reason, Reason::RegisterAddress);
        assert_eq!(refusal.retry_after, Duration::from_secs(10));
        assert!(t.admit_registration_at(Some("10.0.0.2"), 0).is_ok());
        assert!(
            t.admit_registration_at(Some("10.0.0.1"), 10 * SECOND)
                .is_ok()
        );
        assert!(
            t.admit_registration_at(Some("10.0.0.1"), 10 * SECOND)
                .is_err()
        );
    }

    #[test]
    fn a_registration_taken_back_counts_neither_per_address_nor_overall_and_one_in_flight_holds_its_place()
     {
        let t = Throttle::new(&ThrottleConfig {
            register_global_burst: 3,
            ..config()
        });
        // The hash queue was full five times: nothing counted.
        for _ in 0..5 {
            t.admit_registration_at(Some("10.0.0.1"), 0)
                .unwrap()
                .uncounted();
        }
        // While two are in flight, a third from the address does not fit (burst 2)...
        let first = t.admit_registration_at(Some("10.0.0.1"), 0).unwrap();
        let second = t.admit_registration_at(Some("10.0.0.1"), 0).unwrap();
        assert_eq!(
            t.admit_registration_at(Some("10.0.0.1"), 0)
                .unwrap_err()
                .reason,
            Reason::RegisterAddress
        );
        // ... and once they count, the address is at its limit, and the overall limit has one
        // left.
        drop((first, second));
        assert!(t.admit_registration_at(Some("10.0.0.1"), 0).is_err());
        assert!(t.admit_registration_at(Some("10.0.0.2"), 0).is_ok());
        assert_eq!(
            t.admit_registration_at(Some("10.0.0.3"), 0)
                .unwrap_err()
                .reason,
            Reason::RegisterGlobal
        );
    }

    #[test]
    fn registrations_are_limited_over_all_clients() {
        let t = Throttle::new(&ThrottleConfig {
            register_global_rate: 1,
            register_global_burst: 2,
            ..config()
        });
        assert!(t.admit_registration_at(Some("10.0.0.1"), 0).is_ok());
        assert!(t.admit_registration_at(Some("10.0.0.2"), 0).is_ok());
        let refusal = t.admit_registration_at(Some("10.0.0.3"), 0).unwrap_err();
        assert_eq!(refusal.reason, Reason::RegisterGlobal);
        assert_eq!(refusal.retry_after, Duration::from_secs(1));
        // Refused over all clients, the attempt did not use its address's allowance.
        assert!(t.admit_registration_at(Some("10.0.0.3"), SECOND).is_ok());
        assert!(
            t.admit_registration_at(Some("10.0.0.3"), 2 * SECOND)
                .is_ok()
        );
        assert!(
            t.admit_registration_at(Some("10.0.0.3"), 3 * SECOND)
                .is_err()
        );
    }

    #[test]
    fn a_clock_read_before_the_lock_never_drains_an_interval_twice() {
        // Rate 1/s, burst 1: one registration a second, whatever order the threads bring their
        // clock readings in.
        let t = Throttle::new(&ThrottleConfig {
            register_global_rate: 1,
            register_global_burst: 1,
            ..config()
        });
        assert!(
            t.admit_registration_at(Some("10.0.0.1"), 10 * SECOND)
                .is_ok()
        );
        // A late arrival with a reading from before the last settle...
        assert!(
            t.admit_registration_at(Some("10.0.0.2"), 5 * SECOND)
                .is_err()
        );
        // ...must not move the bucket's time back: a second after the first, one more.
        assert!(
            t.admit_registration_at(Some("10.0.0.3"), 10 * SECOND + 5)
                .is_err()
        );
        assert!(
            t.admit_registration_at(Some("10.0.0.3"), 11 * SECOND)
                .is_ok()
        );
    }

    #[test]
    fn the_stated_memory_bound_covers_full_tables() {
        let config = config();
        let t = Throttle::new(&config);
        for i in 0..100 {
            fail(
                &t,
                &format!("n{i}"),
                &format!("10.2.0.{i}"),
                Some([i as u8; 16]),
                0,
            );
            fail(&t, &format!("m{i}"), &format!("10.3.0.{i}"), None, 0);
            let _ = t.admit_registration_at(Some(&format!("10.4.0.{i}")), 0);
        }
        let tables = t.tables.lock();
        let held: usize = [
            &tables.accounts,
            &tables.devices,
            &tables.addresses,
            &tables.registrations,
        ]
        .iter()
        .map(|table| table.buckets.capacity() * (size_of::<(u64, Bucket)>() + 1))
        .sum();
        assert!(held <= Throttle::memory_bound(&config), "{held}");
        assert_eq!(size_of::<(u64, Bucket)>(), 24);
    }
}
