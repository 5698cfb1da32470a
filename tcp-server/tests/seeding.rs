//! Seeding into a database of its own: the credentials scheme, idempotence, resuming to a larger
//! N, the indexes rebuilt, and refusal of a table holding other users.

use std::time::Duration;

use postgres::{Client, NoTls};
use proto::{Request, Response, Secret};
use tcp_server::db;
use tcp_server::ops;
use tcp_server::seed;

use crate::support::{FAST, context_for, database_url, unique_name};

/// A fresh, migrated database on the test server; returns its URL.
fn fresh_database() -> String {
    let url = database_url();
    let name = unique_name("seed_");
    let mut admin = Client::connect(&url, NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("the test role needs CREATEDB");
    let fresh = format!(
        "{}/{name}",
        url.rsplit_once('/').map(|(base, _)| base).unwrap()
    );
    db::migrate(&fresh).unwrap();
    fresh
}

fn count(url: &str) -> i64 {
    Client::connect(url, NoTls)
        .unwrap()
        .query_one("SELECT count(*) FROM users", &[])
        .unwrap()
        .get(0)
}

#[test]
fn seeding_is_idempotent_resumable_and_logins_work() {
    let url = fresh_database();
    let ctx = context_for(&url, FAST, Duration::from_secs(60));

    let first = seed::seed(&url, 3_000, &ctx.hasher, 2, false).unwrap();
    assert_eq!((first.existing, first.added), (0, 3_000));
    assert_eq!(count(&url), 3_000);

    let again = seed::seed(&url, 3_000, &ctx.hasher, 2, false).unwrap();
    assert_eq!(
        (again.existing, again.added),
        (3_000, 0),
        "the same N does nothing"
    );

    let more = seed::seed(&url, 7_500, &ctx.hasher, 2, false).unwrap();
    assert_eq!((more.existing, more.added), (3_000, 4_500));
    assert_eq!(count(&url), 7_500);

    let indexes: Vec<String> = Client::connect(&url, NoTls)
        .unwrap()
        .query(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'users' ORDER BY indexname",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        indexes,
        ["users_deleted_at", "users_pkey", "users_username_lower"]
    );

    for i in [1, 2_999, 3_000, 3_001, 7_500] {
        let response = ops::handle(
            &ctx,
            Request::Login(proto::Login {
                username: seed::username(i),
                password: Secret::new(seed::password(i)),
                client: None,
                device: None,
            }),
        );
        let Response::Login(session) = response else {
            panic!("user {i} cannot log in: {response:?}");
        };
        assert_eq!(session.profile.id, i as i64);
    }

    // A registration after seeding gets a fresh id: the sequence was moved past the seeds.
    let response = ops::handle(
        &ctx,
        Request::Register(proto::Register {
            username: unique_name("after"),
            password: Secret::new("correct horse"),
            nickname: None,
            client: None,
        }),
    );
    let Response::Register(profile) = response else {
        panic!("{response:?}");
    };
    assert!(profile.id > 7_500);

    // Users registered after seeding do not undo it: asking for no more than is seeded is
    // still a no-op (the main-job script seeds before every run).
    let after = seed::seed(&url, 7_500, &ctx.hasher, 2, false).unwrap();
    assert_eq!((after.existing, after.added), (7_500, 0));
    let fewer = seed::seed(&url, 100, &ctx.hasher, 2, false).unwrap();
    assert_eq!(fewer.added, 0);

    // Seeding more than is there would interleave with the registered user: refused.
    let error = seed::seed(&url, 10_000, &ctx.hasher, 2, false).unwrap_err();
    assert!(error.to_string().contains("not seeded"), "{error}");
}
