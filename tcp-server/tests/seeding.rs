//! Seeding into a database of its own: the credentials scheme, idempotence, resuming to a larger
//! N, the indexes rebuilt, and registered accounts beside the seeded users.

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

    // A registration after seeding gets an id of the registered range.
    let registered = register(&ctx, &unique_name("after"));
    assert_eq!(registered.id, seed::FIRST_REGISTERED_ID);

    // Users registered after seeding do not undo it: asking for no more than is seeded is
    // still a no-op (the main-job script seeds before every run), and seeding more goes on
    // beside them.
    let after = seed::seed(&url, 7_500, &ctx.hasher, 2, false).unwrap();
    assert_eq!((after.existing, after.added), (7_500, 0));
    let fewer = seed::seed(&url, 100, &ctx.hasher, 2, false).unwrap();
    assert_eq!(fewer.added, 0);
    let beside = seed::seed(&url, 10_000, &ctx.hasher, 2, false).unwrap();
    assert_eq!((beside.existing, beside.added), (7_500, 2_500));
    assert_eq!(count(&url), 10_001);
    log_in(&ctx, &seed::username(10_000), &seed::password(10_000));
}

fn register(ctx: &tcp_server::ops::Context, name: &str) -> proto::Profile {
    let response = ops::handle(
        ctx,
        Request::Register(proto::Register {
            username: name.to_owned(),
            password: Secret::new("violet harbour lantern"),
            nickname: None,
            client: None,
        }),
    );
    let Response::Register(profile) = response else {
        panic!("registering {name}: {response:?}");
    };
    profile
}

fn log_in(ctx: &tcp_server::ops::Context, name: &str, password: &str) -> proto::Session {
    let response = ops::handle(
        ctx,
        Request::Login(proto::Login {
            username: name.to_owned(),
            password: Secret::new(password),
            client: None,
            device: None,
        }),
    );
    let Response::Login(session) = response else {
        panic!("{name} cannot log in: {response:?}");
    };
    session
}

/// The README's path: an account registered by hand (the curl session's `alice`), then the
/// main job seeds; both log in, and more seeding later still works.
#[test]
fn a_database_with_registered_accounts_is_seeded_beside_them() {
    let url = fresh_database();
    let ctx = context_for(&url, FAST, Duration::from_secs(60));
    let alice = register(&ctx, "alice");
    assert_eq!(
        alice.id,
        seed::FIRST_REGISTERED_ID,
        "registered ids have their own range"
    );

    let seeded = seed::seed(&url, 2_000, &ctx.hasher, 2, false).unwrap();
    assert_eq!((seeded.existing, seeded.added), (0, 2_000));
    let more = seed::seed(&url, 3_000, &ctx.hasher, 2, false).unwrap();
    assert_eq!((more.existing, more.added), (2_000, 1_000));
    assert_eq!(
        log_in(&ctx, "alice", "violet harbour lantern").profile.id,
        alice.id
    );
    assert_eq!(
        log_in(&ctx, &seed::username(3_000), &seed::password(3_000))
            .profile
            .id,
        3_000
    );
    let bob = register(&ctx, "bob");
    assert_eq!(
        bob.id,
        alice.id + 1,
        "seeding left the registered ids' sequence alone"
    );

    // A registered account with the name of a user still to be seeded (without regard to
    // case) stops the run before it loads anything, naming the account.
    register(&ctx, "User3500");
    let error = seed::seed(&url, 4_000, &ctx.hasher, 2, false).unwrap_err();
    assert!(error.to_string().contains("\"User3500\""), "{error}");
    assert_eq!(count(&url), 3_003);
    // Up to below its number, seeding goes on.
    let below = seed::seed(&url, 3_499, &ctx.hasher, 2, false).unwrap();
    assert_eq!(below.added, 499);
}
