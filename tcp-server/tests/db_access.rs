//! What operations cost the database, read from PostgreSQL's own statistics
//! (`pg_stat_user_tables`) over a database of the test's own, so no other test moves the
//! counters: a login reads the database once and writes nothing (ARCHITECTURE.md).

use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client as PgClient, NoTls};
use proto::{Request, Response, Secret};

use crate::support::{FAST, FreshDatabase, TestServer, context_sized, unique_name};

/// The tables that hold durable state.
const TABLES: [&str; 3] = ["users", "revoked_sessions", "pictures"];

/// Accounts put in before the test's own, so the login's lookup is planned as in production: on
/// a table of a single row the planner prefers a sequential scan to the index.
const FILLER: i64 = 5_000;

/// One table's counters: scans, then rows inserted, updated and deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counters {
    seq_scan: i64,
    idx_scan: i64,
    inserted: i64,
    updated: i64,
    deleted: i64,
}

/// The counters of [`TABLES`], in that order, as the statistics system has them now.
fn counters(admin: &mut PgClient) -> [Counters; 3] {
    TABLES.map(|table| {
        let row = admin
            .query_one(
                "SELECT seq_scan, coalesce(idx_scan, 0), n_tup_ins, n_tup_upd, n_tup_del \
                 FROM pg_stat_user_tables WHERE relname = $1",
                &[&table],
            )
            .unwrap_or_else(|error| panic!("the statistics of {table}: {error}"));
        Counters {
            seq_scan: row.get(0),
            idx_scan: row.get(1),
            inserted: row.get(2),
            updated: row.get(3),
            deleted: row.get(4),
        }
    })
}

/// The counters once `ready` holds for them, or after 30 s whatever they are. A session sends
/// its counts to the statistics system lazily (PostgreSQL 15: at most once a second, an idle
/// one after about 10 s) and only the session itself can make it hurry, except by ending, which
/// sends them at once: the tests stop the server, and so close its sessions, before they read.
fn settled(admin: &mut PgClient, ready: impl Fn(&[Counters; 3]) -> bool) -> [Counters; 3] {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = counters(admin);
        if ready(&now) || Instant::now() >= deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_login_reads_the_users_index_once_and_writes_nothing() {
    const LOGINS: i64 = 50;
    let database = FreshDatabase::create();
    // The filler goes in through a session that then ends, which sends its counts at once.
    PgClient::connect(&database.url, NoTls)
        .unwrap()
        .batch_execute(&format!(
            "INSERT INTO users (username, password_hash, nickname) \
             SELECT 'filler' || i, 'not a hash', 'filler' FROM generate_series(1, {FILLER}) AS i;
             ANALYZE users;"
        ))
        .unwrap();
    // One connection to the database, so the counts come from one session at a time, and a
    // server per phase, whose stop ends its session.
    let start = || {
        TestServer::start_with(
            2,
            context_sized(&database.url, FAST, Duration::from_secs(3600), 1),
        )
    };
    let name = unique_name("counted");
    let password = Secret::new("correct horse");
    let registrar = start();
    let registered = registrar.client().call(Request::Register(proto::Register {
        username: name.clone(),
        password: password.clone(),
        nickname: None,
        client: None,
    }));
    assert!(
        matches!(registered, Response::Register(_)),
        "{registered:?}"
    );
    registrar.stop();

    let mut admin = PgClient::connect(&database.url, NoTls).unwrap();
    let before = settled(&mut admin, |[users, ..]| users.inserted == FILLER + 1);
    assert_eq!(
        before[0].inserted,
        FILLER + 1,
        "the registration never reached the statistics: {before:?}"
    );

    let server = start();
    let mut client = server.client();
    for _ in 0..LOGINS {
        let response = client.call(Request::Login(proto::Login {
            username: name.clone(),
            password: password.clone(),
            client: None,
            device: None,
        }));
        assert!(matches!(response, Response::Login(_)), "{response:?}");
    }
    drop(client);
    server.stop();
    let after = settled(&mut admin, |[users, ..]| {
        users.idx_scan >= before[0].idx_scan + LOGINS
    });

    // One index lookup per login, and nothing else on any table: no other scan, no write.
    let [users_before, revoked_before, pictures_before] = before;
    let [users_after, revoked_after, pictures_after] = after;
    assert_eq!(
        users_after,
        Counters {
            idx_scan: users_before.idx_scan + LOGINS,
            ..users_before
        },
        "users, after {LOGINS} logins (before them: {users_before:?})"
    );
    assert_eq!(
        revoked_after, revoked_before,
        "revoked_sessions, after {LOGINS} logins"
    );
    assert_eq!(
        pictures_after, pictures_before,
        "pictures, after {LOGINS} logins"
    );
}
