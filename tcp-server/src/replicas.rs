//! Reads from PostgreSQL streaming replicas that never answer from the past: a replica serves a
//! read only once it has replayed everything the primary had committed when the read began.
//!
//! # Why a fence, and what it costs
//! A replica applies the primary's WAL a little later than the primary commits it. Served as it
//! is, a login right after a registration would not find the account, a password change would
//! leave the old password working, and a logout would leave its token accepted, for as long as
//! the replica lags, on every tcp-server. Instead each read takes a *fence*: the primary's
//! current WAL position (`pg_current_wal_lsn()`), read after the read began. A replica that
//! has replayed up to the fence has applied every write acknowledged before the read began, so
//! its answer is the primary's (Raft's ReadIndex, with PostgreSQL's WAL as the log).
//!
//! One fence query serves every read that is waiting for one: a thread asks the primary, and all
//! reads that arrived before the question was sent take its answer. Under load that is one tiny
//! statement per round trip to the primary, whatever the number of reads, while the lookups
//! themselves (a B-tree walk each) run on the replicas.
//!
//! # Failures
//! - A replica that cannot be reached, or that lags more than `max_lag` (measured by its WAL
//!   position against the primary's recent ones, so an idle primary is not mistaken for lag),
//!   gets no reads until a probe finds it back; its reads go to the others, or the primary.
//! - A replica behind the fence is waited for briefly ([`CATCH_UP`]); past that, the primary
//!   answers.
//! - With the primary unreachable there is no fence. If it has been out of reach for
//!   [`UNFENCED_AFTER`] and the replicas have lost it too (none streams from it), nothing is
//!   being written: reads go to the replica that has replayed the most. If one still streams, the primary lives and may take writes through other servers:
//!   reads get `Unavailable` rather than an answer from the past. Writes acknowledged by the
//!   primary but not yet streamed when it died are on no replica; synchronous replication
//!   (`synchronous_standby_names`) closes that gap, at the price of writes that wait for one.
//!
//! # Promotion
//! After an operator promotes a replica (`pg_ctl promote`), it is a primary on a new timeline.
//! The prober sees it out of recovery and makes it the primary, for writes and fences, if its
//! timeline is the highest of the primaries it can reach. Every tcp-server applies the same rule
//! to the same servers, so all follow the promotion within a probe or two, and an old primary
//! that comes back (on its old, lower timeline) is never written to again: PostgreSQL's
//! timeline, not a vote among tcp-servers, says which primary is current.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::db::{Current, DbConfig, DbError, PgConn, Pool};

/// The primary's WAL position now, as bytes from the start of the WAL.
const PRIMARY_LSN: &str = "SELECT (pg_current_wal_lsn() - '0/0')::bigint";
/// The primary's WAL position, whether it is one after all, and the name of its current WAL
/// file, whose first 8 hex digits are its timeline.
const PRIMARY_STATE: &str = "SELECT (pg_current_wal_lsn() - '0/0')::bigint, \
     NOT pg_is_in_recovery(), pg_walfile_name(pg_current_wal_lsn())";
/// How far a replica has replayed, whether it still is one (a promoted replica is not), and
/// whether it streams from a primary now. A role without `pg_read_all_stats` sees only the WAL
/// receiver's pid, there while the receiver runs; with the primary gone it exits, and is
/// restarted only now and then to try again.
const REPLICA_LSN: &str = "SELECT COALESCE((pg_last_wal_replay_lsn() - '0/0')::bigint, 0), \
     pg_is_in_recovery(), EXISTS (SELECT 1 FROM pg_stat_wal_receiver \
     WHERE COALESCE(status = 'streaming', pid IS NOT NULL)), \
     CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END";
/// How far a replica has replayed, alone: what a read waiting for its fence polls.
const REPLAY_LSN: &str = "SELECT COALESCE((pg_last_wal_replay_lsn() - '0/0')::bigint, 0)";
/// How often the replicas' positions and the primary's are sampled.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// The longest a read waits for a replica to replay up to its fence before the primary answers
/// it. Replay on a healthy replica trails by well under a millisecond on one host.
const CATCH_UP: Duration = Duration::from_millis(20);
/// How long a read waits for its fence; past it, the primary counts as unreachable.
const FENCE_WAIT: Duration = Duration::from_secs(2);
/// How long the primary must have been out of reach, with no replica streaming from it, before
/// a replica answers unfenced. A restart of the primary is over well within it: during one, a
/// read is refused rather than answered by a replica that has not heard of the primary's
/// newest writes.
const UNFENCED_AFTER: Duration = Duration::from_secs(3);

/// One replica: its pool and what the probes last found.
struct Replica {
    /// host:port, for logs and metrics (never the password).
    name: String,
    pool: Arc<Pool>,
    /// Whether it gets reads: reachable, in recovery, and within the lag bound.
    serving: AtomicBool,
    /// The highest replay position a finished statement on it reported. Any statement started
    /// after that one finished sees at least this much of the WAL.
    replayed: AtomicU64,
    /// Its lag as last measured, in milliseconds.
    lag_ms: AtomicU64,
    /// It streams from no primary: if this server cannot reach the primary either, the primary
    /// is gone, not only out of this server's reach, and writes have stopped.
    orphaned: AtomicBool,
}

impl Replica {
    fn saw(&self, lsn: u64) {
        self.replayed.fetch_max(lsn, Ordering::Relaxed);
    }
}

/// What a replica looked like at the last probe, for the metrics.
#[derive(Debug, Clone)]
pub struct ReplicaStatus {
    /// host:port.
    pub name: String,
    /// Whether it gets reads.
    pub serving: bool,
    /// Its lag behind the primary, as last measured.
    pub lag: Duration,
}

/// Where reads were served, for the metrics.
#[derive(Debug, Default)]
pub struct ReadCounts {
    /// By a replica at or past the fence.
    pub replica: AtomicU64,
    /// By the primary: no replica serving, or none caught up in time.
    pub primary: AtomicU64,
    /// By a replica without a fence, the primary being unreachable.
    pub unfenced: AtomicU64,
    /// Fence queries sent to the primary: each answers every read that was waiting.
    pub fences: AtomicU64,
}

/// The fence queries' state: reads wait for the first answer to a question asked after they
/// arrived.
#[derive(Default)]
struct FenceState {
    /// Fence queries sent so far.
    asked: u64,
    /// The number of the last one answered, and its answer (`None`: the primary is unreachable).
    answered: u64,
    answer: Option<u64>,
    /// Reads are waiting for a question not yet asked.
    wanted: bool,
}

struct Shared {
    /// Where writes and fences go: the configured primary, or a replica promoted since.
    primary: Current,
    /// The configured primary, probed apart from the current one.
    configured: Arc<Pool>,
    replicas: Vec<Replica>,
    max_lag: Duration,
    fence: Mutex<FenceState>,
    /// Wakes the fence thread: a read wants a fence.
    ask: Condvar,
    /// Wakes the reads: a fence came back.
    answered: Condvar,
    next: AtomicUsize,
    reads: ReadCounts,
    /// When the prober last reached a primary, in milliseconds since `epoch`.
    primary_seen_ms: AtomicU64,
    epoch: Instant,
}

impl Shared {
    /// Whether the primary is gone, as far as can be told: the prober has not reached it for
    /// [`UNFENCED_AFTER`], and no replica streams from it. Only then can nothing be written, and
    /// a replica's answer be as current as any.
    fn primary_gone(&self) -> bool {
        let seen = self.primary_seen_ms.load(Ordering::Relaxed);
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let out_for = Duration::from_millis(now.saturating_sub(seen));
        out_for >= UNFENCED_AFTER
            && self
                .replicas
                .iter()
                .all(|r| r.orphaned.load(Ordering::Relaxed))
    }
}

/// The replicas of one primary, and the threads that keep their state.
pub struct Replicas {
    shared: Arc<Shared>,
}

impl Replicas {
    /// Pools for `urls` (connected lazily), with the prober and the fence threads, which end
    /// when this is dropped.
    pub fn new(
        primary: &Current,
        urls: &[String],
        config: &DbConfig,
        max_lag: Duration,
    ) -> anyhow::Result<Replicas> {
        let replicas = urls
            .iter()
            .map(|url| {
                let name = host_port(url)?;
                Ok(Replica {
                    pool: Arc::new(Pool::new(url, config, &format!("replica {name}"))?),
                    name,
                    serving: AtomicBool::new(false),
                    replayed: AtomicU64::new(0),
                    lag_ms: AtomicU64::new(0),
                    orphaned: AtomicBool::new(false),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            configured: Arc::clone(&primary.read()),
            primary: Arc::clone(primary),
            replicas,
            max_lag,
            fence: Mutex::new(FenceState::default()),
            ask: Condvar::new(),
            answered: Condvar::new(),
            next: AtomicUsize::new(0),
            reads: ReadCounts::default(),
            primary_seen_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("replica-probe".to_owned())
            .spawn(move || probe_loop(&weak))?;
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("replica-fence".to_owned())
            .spawn(move || fence_loop(&weak))?;
        Ok(Replicas { shared })
    }

    /// Runs the read `query` where it is answered as the primary would answer it now: on a
    /// serving replica that has replayed up to the fence, else on the primary. With the
    /// primary unreachable, on the replica that has replayed the most. `query` must be safe to
    /// repeat.
    pub fn read<T>(
        &self,
        mut query: impl FnMut(&mut PgConn) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        let shared = &*self.shared;
        let Some(replica) = self.pick() else {
            // No replica serves: no fence is needed for the primary's own answer.
            shared.reads.primary.fetch_add(1, Ordering::Relaxed);
            let primary = Arc::clone(&shared.primary.read());
            return primary.run(query);
        };
        let Some(fence) = self.fence() else {
            // No fence without the primary. If the replicas lost it too, nothing is being
            // written, and the most advanced replica is as current as anything that can be
            // had. If one still streams from it, the primary lives (out of this server's reach
            // only, or too slow to answer) and may be taking writes: no read is safe then.
            let replica = shared
                .replicas
                .iter()
                .filter(|r| r.serving.load(Ordering::Relaxed))
                .max_by_key(|r| r.replayed.load(Ordering::Relaxed))
                .filter(|_| shared.primary_gone())
                .ok_or_else(|| DbError::Unavailable("the primary cannot be reached".to_owned()))?;
            let result = replica.pool.run(&mut query);
            if result.is_ok() {
                shared.reads.unfenced.fetch_add(1, Ordering::Relaxed);
            }
            return result;
        };
        {
            match self.on_replica(replica, fence, &mut query) {
                Ok(Some(value)) => {
                    shared.reads.replica.fetch_add(1, Ordering::Relaxed);
                    return Ok(value);
                }
                // Not caught up in time: the primary answers.
                Ok(None) => {}
                // A statement the replica refused (one cancelled by a conflict with recovery,
                // say): reads are safe to repeat, so the primary answers it.
                Err(DbError::Query(error)) => {
                    log::debug!(
                        "replica {}: {error}; reading from the primary",
                        replica.name
                    );
                }
                Err(error) => {
                    // Restarted, it may be back at an earlier position than it had replayed.
                    replica.replayed.store(0, Ordering::Relaxed);
                    log::warn!(
                        "replica {}: {error}; reading from the primary until a probe finds it back",
                        replica.name
                    );
                    replica.serving.store(false, Ordering::Relaxed);
                }
            }
        }
        shared.reads.primary.fetch_add(1, Ordering::Relaxed);
        let primary = Arc::clone(&shared.primary.read());
        primary.run(query)
    }

    /// `query` on `replica` once it has replayed up to `fence`; `None` if it did not within
    /// [`CATCH_UP`].
    fn on_replica<T>(
        &self,
        replica: &Replica,
        fence: u64,
        query: &mut impl FnMut(&mut PgConn) -> Result<T, postgres::Error>,
    ) -> Result<Option<T>, DbError> {
        replica.pool.run(|conn| {
            let deadline = Instant::now() + CATCH_UP;
            while replica.replayed.load(Ordering::Relaxed) < fence {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                let statement = conn.prepared(REPLAY_LSN)?;
                let row = conn.client().query_one(&statement, &[])?;
                replica.saw(lsn(row.get(0)));
                if replica.replayed.load(Ordering::Relaxed) < fence {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            query(conn).map(Some)
        })
    }

    /// The next serving replica, round robin.
    fn pick(&self) -> Option<&Replica> {
        let replicas = &self.shared.replicas;
        let start = self.shared.next.fetch_add(1, Ordering::Relaxed);
        (0..replicas.len())
            .map(|i| &replicas[(start + i) % replicas.len()])
            .find(|r| r.serving.load(Ordering::Relaxed))
    }

    /// The primary's WAL position from a fence query sent after this call began; `None` when
    /// the primary cannot be reached.
    fn fence(&self) -> Option<u64> {
        let shared = &*self.shared;
        let mut state = shared.fence.lock();
        let want = state.asked + 1;
        if !state.wanted {
            state.wanted = true;
            shared.ask.notify_one();
        }
        let deadline = Instant::now() + FENCE_WAIT;
        while state.answered < want {
            if shared.answered.wait_until(&mut state, deadline).timed_out() {
                return None;
            }
        }
        state.answer
    }

    /// Whether reads can be served with the primary out of reach: a replica serves, and none
    /// streams from a primary (see [`Replicas::read`]).
    pub fn serve_without_primary(&self) -> bool {
        let shared = &self.shared;
        shared
            .replicas
            .iter()
            .any(|r| r.serving.load(Ordering::Relaxed))
            && shared.primary_gone()
    }

    /// Each replica's state, for the metrics.
    pub fn status(&self) -> Vec<ReplicaStatus> {
        self.shared
            .replicas
            .iter()
            .map(|r| ReplicaStatus {
                name: r.name.clone(),
                serving: r.serving.load(Ordering::Relaxed),
                lag: Duration::from_millis(r.lag_ms.load(Ordering::Relaxed)),
            })
            .collect()
    }

    /// Where reads were served so far.
    pub fn reads(&self) -> &ReadCounts {
        &self.shared.reads
    }
}

fn lsn(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Answers fence requests: one question to the primary at a time, each answering every read
/// that arrived before it was asked.
fn fence_loop(shared: &Weak<Shared>) {
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let asking = {
            let mut state = shared.fence.lock();
            if !state.wanted {
                // Wakes now and then to notice that the replicas were dropped.
                shared.ask.wait_for(&mut state, Duration::from_millis(500));
                continue;
            }
            state.wanted = false;
            state.asked += 1;
            state.asked
        };
        shared.reads.fences.fetch_add(1, Ordering::Relaxed);
        let primary = Arc::clone(&shared.primary.read());
        let answer = primary.probe(PRIMARY_LSN).map(|row| lsn(row.get(0))).ok();
        let mut state = shared.fence.lock();
        state.answered = asking;
        state.answer = answer;
        shared.answered.notify_all();
    }
}

/// Samples the primary's WAL position and each replica's, and decides which replicas serve.
fn probe_loop(shared: &Weak<Shared>) {
    // The primary's recent positions, oldest first: a replica at position P lags by the time
    // since the primary first went past P.
    let mut history: VecDeque<(Instant, u64)> = VecDeque::new();
    // Whether each replica streamed at the previous probe. A replica counts as streaming only
    // when it did at two probes in a row: an orphaned one's receiver, restarted now and then to
    // try again, lives for a moment each time.
    let mut streamed: Vec<bool> = Vec::new();
    // The highest timeline followed so far: writes never go back to a lower one, even when the
    // current primary misses a probe while an old one answers.
    let mut followed: u32 = 0;
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        let current = Arc::clone(&shared.primary.read());
        // The current primary's position, if it answers as a primary; and each server that
        // answers as a primary, with its timeline, for following a promotion.
        let mut primaries: Vec<(u32, Arc<Pool>)> = Vec::new();
        let mut probe_primary = |pool: &Arc<Pool>| match pool.probe(PRIMARY_STATE) {
            Ok(row) if row.get::<_, bool>(1) => {
                if let Some(timeline) = timeline(row.get(2)) {
                    primaries.push((timeline, Arc::clone(pool)));
                }
                Some(lsn(row.get(0)))
            }
            _ => None,
        };
        let primary = probe_primary(&current).ok_or(());
        if !Arc::ptr_eq(&current, &shared.configured) {
            probe_primary(&shared.configured);
        }
        if let Ok(position) = primary {
            shared.primary_seen_ms.store(
                u64::try_from(shared.epoch.elapsed().as_millis()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            history.push_back((now, position));
            while history
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > shared.max_lag + PROBE_EVERY * 2)
            {
                history.pop_front();
            }
        }
        streamed.resize(shared.replicas.len(), true);
        let positions: Vec<Option<u64>> = shared
            .replicas
            .iter()
            .zip(streamed.iter_mut())
            .map(
                |(replica, streamed)| match replica.pool.probe(REPLICA_LSN) {
                    Ok(row) if row.get::<_, bool>(1) => {
                        replica.saw(lsn(row.get(0)));
                        let streams = row.get::<_, bool>(2);
                        replica
                            .orphaned
                            .store(!(streams && *streamed), Ordering::Relaxed);
                        *streamed = streams;
                        Some(replica.replayed.load(Ordering::Relaxed))
                    }
                    // Neither a promoted replica nor one out of reach says the primary lives.
                    Ok(row) => {
                        if let Some(timeline) = timeline(row.get(3)) {
                            primaries.push((timeline, Arc::clone(&replica.pool)));
                        }
                        replica.orphaned.store(true, Ordering::Relaxed);
                        *streamed = false;
                        log_change(replica, false, "is not in recovery (promoted?)");
                        None
                    }
                    Err(error) => {
                        replica.orphaned.store(true, Ordering::Relaxed);
                        replica.replayed.store(0, Ordering::Relaxed);
                        *streamed = false;
                        log_change(replica, false, &format!("cannot be reached ({error})"));
                        None
                    }
                },
            )
            .collect();
        let most = positions.iter().flatten().max().copied();
        for (replica, position) in shared.replicas.iter().zip(positions) {
            let Some(position) = position else {
                replica.serving.store(false, Ordering::Relaxed);
                continue;
            };
            let serving = if primary.is_ok() {
                let lag = lag(&history, position, now);
                replica.lag_ms.store(
                    u64::try_from(lag.as_millis()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                if lag > shared.max_lag {
                    log_change(replica, false, &format!("lags {lag:?}"));
                    false
                } else {
                    true
                }
            } else {
                // No primary, so no new writes: the most advanced replicas are current.
                Some(position) == most
            };
            if serving {
                log_change(replica, true, "serves reads");
            }
            replica.serving.store(serving, Ordering::Relaxed);
        }
        follow_promotion(&shared, &current, &primaries, &mut followed);
        drop(shared);
        std::thread::sleep(PROBE_EVERY.saturating_sub(now.elapsed()));
    }
}

/// Makes the primary the one of `primaries` (servers that answered as primaries) on the
/// highest timeline, when that is higher than any followed before (`followed`): a replica
/// promoted since. Never a lower one: an old primary that answers while the current one misses
/// a probe does not get the writes back.
fn follow_promotion(
    shared: &Shared,
    current: &Arc<Pool>,
    primaries: &[(u32, Arc<Pool>)],
    followed: &mut u32,
) {
    if let Some((timeline, _)) = primaries
        .iter()
        .find(|(_, pool)| Arc::ptr_eq(pool, current))
    {
        *followed = (*followed).max(*timeline);
    }
    let Some((timeline, newest)) = primaries.iter().max_by_key(|(timeline, _)| *timeline) else {
        return;
    };
    if *timeline <= *followed || Arc::ptr_eq(newest, current) {
        return;
    }
    log::warn!(
        "following a promotion: {} is the primary now (timeline {timeline}); writes go there",
        newest.what()
    );
    *followed = *timeline;
    *shared.primary.write() = Arc::clone(newest);
}

/// The timeline in the name of a WAL file (its first 8 hex digits).
fn timeline(walfile: Option<String>) -> Option<u32> {
    u32::from_str_radix(walfile?.get(..8)?, 16).ok()
}

/// How long ago the primary first went past `position`, by its sampled positions; zero when it
/// has not (the replica is caught up).
fn lag(history: &VecDeque<(Instant, u64)>, position: u64, now: Instant) -> Duration {
    history
        .iter()
        .find(|(_, primary)| *primary > position)
        .map_or(Duration::ZERO, |(at, _)| now.duration_since(*at))
}

/// Logs a replica's change of state once, not at every probe.
fn log_change(replica: &Replica, serving: bool, why: &str) {
    if replica.serving.load(Ordering::Relaxed) != serving {
        if serving {
            log::info!("replica {} {why}", replica.name);
        } else {
            log::warn!("replica {} {why}: it gets no reads", replica.name);
        }
    }
}

/// host:port of a PostgreSQL URL, for naming a replica without its password.
fn host_port(url: &str) -> anyhow::Result<String> {
    let config: postgres::Config = url
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid replica URL: {e}"))?;
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_time_since_the_primary_went_past_the_replica() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let history =
            VecDeque::from([(at(0), 100), (at(100), 100), (at(200), 150), (at(300), 200)]);
        // Caught up, also with an idle primary (same position for a while).
        assert_eq!(lag(&history, 200, at(400)), Duration::ZERO);
        assert_eq!(lag(&history, 250, at(400)), Duration::ZERO);
        // At 100: the primary passed it at 200.
        assert_eq!(lag(&history, 100, at(400)), Duration::from_millis(200));
        assert_eq!(lag(&history, 160, at(400)), Duration::from_millis(100));
        // Behind everything sampled: at least the whole history.
        assert_eq!(lag(&history, 50, at(400)), Duration::from_millis(400));
    }

    #[test]
    fn the_timeline_is_read_from_a_wal_file_name() {
        assert_eq!(
            timeline(Some("000000020000000000000003".to_owned())),
            Some(2)
        );
        assert_eq!(
            timeline(Some("0000001A0000000000000003".to_owned())),
            Some(26)
        );
        assert_eq!(timeline(Some("bogus".to_owned())), None);
        assert_eq!(timeline(None), None);
    }

    #[test]
    fn a_replica_is_named_without_its_password() {
        assert_eq!(
            host_port("postgres://u:secret@10.0.0.2:5433/db").unwrap(),
            "10.0.0.2:5433"
        );
        assert_eq!(host_port("postgres://u@db/x").unwrap(), "db:5432");
        assert!(host_port("not a url").is_err());
    }
}
