//! Seeding: loads N users with real argon2id hashes at the serving parameters, fast enough for
//! 10 million on two cores. Every core hashes while one thread streams the rows into PostgreSQL
//! with binary COPY; the username index is dropped for a bulk load and built once at the end
//! (the primary key stays: ids arrive in ascending order, which a btree appends cheaply, and
//! pictures reference it).
//!
//! # The seeded credentials
//! User `i` (1-based) has id `i`, username `user{i}`, password `secret-{i}` and nickname
//! `user{i}`; the load generator logs in with them. Registered accounts take their ids from
//! [`FIRST_REGISTERED_ID`] up (migration V4), so seeding lives beside them: what is seeded is
//! judged on ids below it alone. Only a registered account with the name of a user still to be
//! seeded stops a run (with its name in the error).
//!
//! # Resuming
//! Rows are committed in transactions of contiguous ids, in id order, so the largest id present
//! is the resume point: running again with the same N does nothing, with a larger N adds the
//! rest, and an interrupted run continues where it stopped.

use std::collections::BTreeMap;
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use postgres::{Client, NoTls};

use crate::password::Hasher;

/// Users per hashing batch; a worker hashes a batch, then hands it to the loader.
const BATCH: u64 = 5_000;
/// Batches per COPY transaction.
const BATCHES_PER_COMMIT: u64 = 40;

/// The first id of a registered account; seeded users have the ids below it.
pub const FIRST_REGISTERED_ID: i64 = 1 << 40;

/// The username of seeded user `i`.
pub fn username(i: u64) -> String {
    format!("user{i}")
}

/// The password of seeded user `i`.
pub fn password(i: u64) -> String {
    format!("secret-{i}")
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    /// Users present before the run.
    pub existing: u64,
    /// Users added.
    pub added: u64,
}

/// Seeds users 1..=`users` into the database at `url`, hashing on `threads` threads.
pub fn seed(
    url: &str,
    users: u64,
    hasher: &Hasher,
    threads: usize,
    progress: bool,
) -> anyhow::Result<SeedReport> {
    if users >= FIRST_REGISTERED_ID as u64 {
        bail!("at most {} users can be seeded", FIRST_REGISTERED_ID - 1);
    }
    let mut client = Client::connect(url, NoTls).context("connecting to the database")?;
    let existing = resume_point(&mut client, users)?;
    if existing >= users {
        // A run killed after its last COPY may have left the index unbuilt.
        ensure_username_index(&mut client)?;
        return Ok(SeedReport { existing, added: 0 });
    }
    let to_add = users - existing;
    refuse_taken_names(&mut client, existing + 1, users)?;
    // Inserting into the username index in random order costs more than building it once;
    // only worth it when the load is larger than what is there. No server may serve the
    // database meanwhile: without the unique index, registrations could duplicate a name.
    if to_add > existing {
        log::info!("dropping the username index for the bulk load");
        client.batch_execute("DROP INDEX IF EXISTS users_username_lower")?;
    }
    let bar = progress_bar(to_add, progress);
    let started = Instant::now();
    load(&mut client, existing + 1..=users, hasher, threads, &bar)?;
    bar.finish_and_clear();
    log::info!(
        "loaded {to_add} users in {:.1}s ({:.0}/s)",
        started.elapsed().as_secs_f64(),
        to_add as f64 / started.elapsed().as_secs_f64()
    );
    ensure_username_index(&mut client)?;
    client.batch_execute("ANALYZE users")?;
    Ok(SeedReport {
        existing,
        added: to_add,
    })
}

/// The largest seeded id present, judged on the seeded id range alone; refuses a range that
/// holds an account of another origin.
fn resume_point(client: &mut Client, users: u64) -> anyhow::Result<u64> {
    // Seeding goes in id order, so user N at id N means users 1..=N are all there.
    let wanted = i64::try_from(users).context("too many users")?;
    let seeded_to_n = client
        .query_opt("SELECT username FROM users WHERE id = $1", &[&wanted])?
        .is_some_and(|row| row.get::<_, String>(0) == username(users));
    if seeded_to_n {
        return Ok(users);
    }
    let Some(row) = client.query_opt(
        "SELECT id, username FROM users WHERE id < $1 ORDER BY id DESC LIMIT 1",
        &[&FIRST_REGISTERED_ID],
    )?
    else {
        return Ok(0);
    };
    let (id, name): (i64, String) = (row.get(0), row.get(1));
    if name != username(id as u64) {
        // Only a database whose accounts were registered before migration V4 gave them ids of
        // their own can hold one here.
        bail!(
            "id {id} is the account {name:?}, registered where seeded users go (before \
             registered accounts had ids of their own); seed an empty database"
        );
    }
    Ok(id as u64)
}

/// Refuses to seed users `from..=to` when a registered account already has one of their
/// names (unique without regard to case): the load would fail at its end, on the index.
fn refuse_taken_names(client: &mut Client, from: u64, to: u64) -> anyhow::Result<()> {
    let (from, to) = (i64::try_from(from)?, i64::try_from(to)?);
    let taken = client.query_opt(
        "SELECT id, username FROM users \
         WHERE id >= $1::bigint AND lower(username) ~ '^user[1-9][0-9]{0,18}$' \
           AND substring(lower(username) from 5)::numeric BETWEEN $2::bigint AND $3::bigint \
         ORDER BY id LIMIT 1",
        &[&FIRST_REGISTERED_ID, &from, &to],
    )?;
    if let Some(row) = taken {
        let (id, name): (i64, String) = (row.get(0), row.get(1));
        bail!(
            "the registered account {name:?} (id {id}) has the name a seeded user would take; \
             delete it, or seed fewer users"
        );
    }
    Ok(())
}

/// Hashes on `threads` workers while this thread writes batches in id order, committing every
/// `BATCHES_PER_COMMIT` batches.
fn load(
    client: &mut Client,
    ids: std::ops::RangeInclusive<u64>,
    hasher: &Hasher,
    threads: usize,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let first = *ids.start();
    let last = *ids.end();
    let batches = (last - first) / BATCH + 1;
    let (next_tx, next_rx) = crossbeam_channel::bounded::<u64>(0);
    let (done_tx, done_rx) =
        crossbeam_channel::bounded::<(u64, anyhow::Result<Vec<u8>>)>(threads * 2);
    thread::scope(|scope| -> anyhow::Result<()> {
        // Owned by this closure, so an early return (a failed COPY) drops it and the hashing
        // threads blocked on sending stop, instead of the scope waiting for them for ever.
        let done_rx = done_rx;
        scope.spawn(move || {
            for batch in 0..batches {
                if next_tx.send(batch).is_err() {
                    return;
                }
            }
        });
        for _ in 0..threads.max(1) {
            let (next_rx, done_tx) = (next_rx.clone(), done_tx.clone());
            scope.spawn(move || {
                for batch in next_rx {
                    let from = first + batch * BATCH;
                    let to = (from + BATCH - 1).min(last);
                    if done_tx
                        .send((batch, encode_rows(from..=to, hasher)))
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
        drop((next_rx, done_tx));

        // Batches finish out of order; they are written in order so committed ids stay
        // contiguous.
        let mut waiting = BTreeMap::new();
        let mut next = 0;
        let mut last_log = Instant::now();
        while next < batches {
            let in_commit = BATCHES_PER_COMMIT.min(batches - next);
            let mut writer = client
                .copy_in(
                    "COPY users (id, username, password_hash, nickname) FROM STDIN (FORMAT binary)",
                )
                .context("starting COPY")?;
            writer.write_all(b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0")?;
            for _ in 0..in_commit {
                let rows = loop {
                    if let Some(rows) = waiting.remove(&next) {
                        break rows;
                    }
                    let (batch, rows) = done_rx.recv().context("a hashing thread stopped")?;
                    waiting.insert(batch, rows?);
                };
                writer.write_all(&rows)?;
                let from = first + next * BATCH;
                bar.inc((from + BATCH - 1).min(last) - from + 1);
                next += 1;
            }
            writer.write_all(&(-1i16).to_be_bytes())?;
            writer.finish().context("committing a COPY batch")?;
            // Without a terminal to draw the bar on (CI, a log file), say how far it got.
            if bar.is_hidden() && last_log.elapsed() >= Duration::from_secs(10) {
                last_log = Instant::now();
                log::info!(
                    "seeded {} of {} users",
                    bar.position(),
                    bar.length().unwrap_or(0)
                );
            }
        }
        Ok(())
    })
}

/// The binary COPY tuples of users `ids`: (id int8, username text, password_hash text,
/// nickname text).
fn encode_rows(ids: std::ops::RangeInclusive<u64>, hasher: &Hasher) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(BATCH as usize * 140);
    for i in ids {
        let name = username(i);
        let hash = hasher.hash(&password(i))?;
        out.extend_from_slice(&4i16.to_be_bytes());
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&(i as i64).to_be_bytes());
        for text in [name.as_bytes(), hash.as_bytes(), name.as_bytes()] {
            out.extend_from_slice(&(text.len() as i32).to_be_bytes());
            out.extend_from_slice(text);
        }
    }
    Ok(out)
}

/// Builds the username index if a bulk load dropped it; idempotent, so a rerun repairs a run
/// killed at the very end. (Seeding never touches the id sequence: migration V4 set it to hand
/// out registered ids from [`FIRST_REGISTERED_ID`] up, and seeded rows carry their own ids.)
fn ensure_username_index(client: &mut Client) -> anyhow::Result<()> {
    let started = Instant::now();
    client.batch_execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS users_username_lower \
         ON users (lower(username COLLATE \"C\"))",
    )?;
    if started.elapsed() > Duration::from_secs(1) {
        log::info!(
            "username index built in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn progress_bar(total: u64, visible: bool) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if !visible {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        return bar;
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} users, {per_sec}, ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}
