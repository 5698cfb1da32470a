//! Regression tests from an adversarial review of tcp-server: each pins one bug that was found
//! and fixed, named after the behaviour it guarantees.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client as PgClient, NoTls};
use proto::{ErrorCode, HEADER_LEN, Operation, Request, Response, Secret, VERSION};
use tcp_server::db::DbError;
use tcp_server::ops::{self, Context};
use tcp_server::password::{Hasher, PasswordParams};
use tcp_server::secrets::Keyring;
use tcp_server::seed;

use crate::support::{
    FAST, FreshDatabase, PEPPER, TestServer, authenticated_stream, context, context_sized,
    database_url, eventually, header, server_config, unique_name,
};

fn small_context(url: &str, pool_size: u32) -> Context {
    context_sized(url, FAST, Duration::from_secs(3600), pool_size)
}

fn signed_in(ctx: &Context) -> Secret {
    let name = unique_name("rev");
    let registered = ops::handle(
        ctx,
        Request::Register(proto::Register {
            username: name.clone(),
            password: Secret::new("correct horse"),
            nickname: None,
            client: None,
        }),
    );
    assert!(
        matches!(registered, Response::Register(_)),
        "{registered:?}"
    );
    match ops::handle(
        ctx,
        Request::Login(proto::Login {
            username: name,
            password: Secret::new("correct horse"),
            client: None,
            device: None,
        }),
    ) {
        Response::Login(session) => session.token,
        other => panic!("{other:?}"),
    }
}

fn ping_new_connection(addr: SocketAddr) -> proto::Frame<Response> {
    let mut stream = authenticated_stream(addr);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    proto::write_frame(
        &mut stream,
        77,
        &proto::Trace::NONE,
        &Request::Ping(proto::Ping),
        &mut Vec::new(),
    )
    .unwrap();
    proto::read_frame(&mut stream, &mut Vec::new(), proto::DEFAULT_MAX_FRAME_LEN).unwrap()
}

/// The I/O timeout used to bound each read, not the frame: a client trickling a byte every
/// 150 ms held its worker for ever.
#[test]
fn a_trickling_client_cannot_hold_a_worker_past_the_io_timeout() {
    let config = server_config(1, Duration::from_secs(30), Duration::from_secs(1));
    let server = TestServer::start_config(config, context(FAST, Duration::from_secs(60)));
    let mut frame = header(VERSION, proto::Login::KIND, 1, 1_000);
    frame.resize(HEADER_LEN + 1_000, 0);
    let mut slow = TcpStream::connect(server.addr).unwrap();
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_millis(3_500) {
        if slow.write_all(&frame[sent..=sent]).is_err() {
            break;
        }
        sent += 1;
        thread::sleep(Duration::from_millis(150));
    }
    let reply = ping_new_connection(server.addr);
    drop(slow);
    assert_eq!(
        reply.message,
        Response::Ping(()),
        "{sent} bytes trickled over {:?} still hold the worker",
        started.elapsed()
    );
}

/// The stop flag was only looked at after a quiet tick: a connection that kept sending
/// requests kept the server from ever stopping.
#[test]
fn shutdown_finishes_while_a_client_keeps_sending_requests() {
    let server = TestServer::start(2);
    let addr = server.addr;
    let stop_pinging = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let pinger = {
        let (stop, answered) = (Arc::clone(&stop_pinging), Arc::clone(&answered));
        thread::spawn(move || {
            let mut stream = authenticated_stream(addr);
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let (mut read_buf, mut write_buf) = (Vec::new(), Vec::new());
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if proto::write_frame(
                    &mut stream,
                    1,
                    &proto::Trace::NONE,
                    &Request::Ping(proto::Ping),
                    &mut write_buf,
                )
                .is_err()
                    || proto::read_frame::<_, Response>(
                        &mut stream,
                        &mut read_buf,
                        proto::DEFAULT_MAX_FRAME_LEN,
                    )
                    .is_err()
                {
                    return;
                }
                answered.fetch_add(1, Ordering::Relaxed);
                // A request every 20 ms: never a quiet tick (200 ms) for the worker.
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let pings = || answered.load(Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || pings() >= 5),
        "the client's pings were not answered before the stop"
    );
    let started = Instant::now();
    let (done, stopped) = mpsc::channel();
    thread::spawn(move || {
        server.stop();
        let _ = done.send(());
    });
    let stopped = stopped.recv_timeout(Duration::from_secs(5)).is_ok();
    stop_pinging.store(true, Ordering::Relaxed);
    pinger.join().unwrap();
    assert!(
        stopped,
        "the server had not stopped {:?} after the request to stop",
        started.elapsed()
    );
}

/// The listener stayed open during the drain: the kernel completed handshakes nobody served.
#[test]
fn connections_arriving_during_the_drain_are_refused_not_left_hanging() {
    let config = server_config(2, Duration::from_secs(30), Duration::from_secs(3));
    let server = TestServer::start_config(config, context(FAST, Duration::from_secs(60)));
    // A half-sent request holds a worker, so the drain lasts.
    let mut stuck = TcpStream::connect(server.addr).unwrap();
    stuck
        .write_all(&header(VERSION, proto::Login::KIND, 1, 100))
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || {
            let metrics = testkit::scrape(server.admin);
            testkit::metric(&metrics, "gatehouse_tcp_connections_active", &[]) == Some(1.0)
        }),
        "the half-sent request never reached a worker"
    );
    server.shutdown.trigger();
    // Until the acceptor has seen the stop, a connection may still complete; it must then be
    // closed with the listener, not left waiting. After that, connections are refused.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect_timeout(&server.addr, Duration::from_secs(1)) {
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => break,
            Err(error) => panic!("connecting during the drain: {error}"),
            Ok(mut late) => {
                late.set_read_timeout(Some(Duration::from_millis(1_000)))
                    .unwrap();
                let got = late.read(&mut [0u8; 64]);
                let closed = matches!(&got, Ok(0))
                    || matches!(&got, Err(e) if e.kind() == ErrorKind::ConnectionReset);
                assert!(
                    closed,
                    "a connection made during the drain was accepted and then got {got:?}"
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "connections were still completed 5 s into the drain"
        );
        thread::sleep(Duration::from_millis(20));
    }
    drop(stuck);
}

/// After a database restart every idle pooled connection is dead; one retry reached another
/// dead one and the request failed with Internal.
#[test]
fn after_a_database_restart_no_request_fails_on_a_dead_pooled_connection() {
    let url = database_url();
    let ctx = small_context(&url, 4);
    let token = signed_in(&ctx);
    let pids: Vec<i32> = thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    ctx.db
                        .run(|conn| {
                            conn.client()
                                .query_one("SELECT pg_backend_pid() FROM pg_sleep(0.3)", &[])
                        })
                        .unwrap()
                        .get::<_, i32>(0)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut admin = PgClient::connect(&url, NoTls).unwrap();
    for pid in &pids {
        admin
            .execute("SELECT pg_terminate_backend($1)", &[pid])
            .unwrap();
    }
    // Past the readiness cache (1 s): the first Ping meets the dead connections and must
    // still say ready, not pass on the first dead one's failure.
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        ops::handle(&ctx, Request::Ping(proto::Ping)),
        Response::Ping(())
    );
    let responses: Vec<Response> = (0..2)
        .map(|_| {
            ops::handle(
                &ctx,
                Request::GetProfile(proto::GetProfile {
                    token: token.clone(),
                }),
            )
        })
        .collect();
    assert!(
        responses
            .iter()
            .all(|r| matches!(r, Response::GetProfile(_))),
        "requests after the restart got {responses:?}"
    );
}

/// A query cut by a fast shutdown or restart of PostgreSQL (SQLSTATE 57P01) was taken for a
/// failed query and answered Internal (HTTP 500); found by chaos scenario 3.
#[test]
fn a_query_cut_by_a_database_shutdown_is_retryable_not_internal() {
    let url = database_url();
    let ctx = small_context(&url, 2);
    let marker = unique_name("cut");
    let sql = format!("SELECT 1 FROM pg_sleep(5) WHERE '{marker}' <> ''");
    thread::scope(|scope| {
        let cut = scope.spawn(|| {
            ctx.db.run_once(&mut |conn| {
                conn.client()
                    .query_one(sql.as_str(), &[])
                    .map(|row| row.get::<_, i32>(0))
            })
        });
        let mut admin = PgClient::connect(&url, NoTls).unwrap();
        let deadline = Instant::now() + Duration::from_secs(4);
        // pg_terminate_backend sends the same signal as a fast shutdown does to each session.
        while admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
                &[&marker],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 0
        {
            assert!(Instant::now() < deadline, "the query never started");
            thread::sleep(Duration::from_millis(20));
        }
        let result = cut.join().unwrap();
        assert!(
            matches!(result, Err(DbError::Retryable(_))),
            "a cut query must be retryable (answered Unavailable), got {result:?}"
        );
    });
    // The pool recovers by itself.
    let one: i32 = ctx
        .db
        .run(|conn| conn.client().query_one("SELECT 1", &[]))
        .unwrap()
        .get(0);
    assert_eq!(one, 1);
}

/// With no statement timeout, a query waiting behind a lock hung its worker for ever.
#[test]
fn a_stalled_database_gives_an_answer_not_a_hang() {
    let database = FreshDatabase::create();
    let url = &database.url;
    let ctx = Arc::new(small_context(url, 1));
    let mut admin = PgClient::connect(url, NoTls).unwrap();
    let mut lock = admin.transaction().unwrap();
    lock.batch_execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let (done, answered) = mpsc::channel();
    let waiting = Arc::clone(&ctx);
    thread::spawn(move || {
        let _ = done.send(ops::handle(
            &waiting,
            Request::Login(proto::Login {
                username: "nobody_here".to_owned(),
                password: Secret::new("whatever1"),
                client: None,
                device: None,
            }),
        ));
    });
    let outcome = answered.recv_timeout(Duration::from_secs(8));
    lock.rollback().unwrap();
    let response = outcome.expect("no answer within 8 s while the table is locked");
    assert!(
        matches!(&response, Response::Error(e) if e.code == ErrorCode::Unavailable),
        "{response:?}"
    );
}

/// A migration that changed a column's type left every cached statement failing with
/// "cached plan must not change result type".
#[test]
fn a_migration_that_changes_a_column_type_does_not_break_cached_statements() {
    let database = FreshDatabase::create();
    let url = &database.url;
    let ctx = small_context(url, 1);
    let token = signed_in(&ctx);
    let before = ops::handle(
        &ctx,
        Request::GetProfile(proto::GetProfile {
            token: token.clone(),
        }),
    );
    assert!(matches!(before, Response::GetProfile(_)), "{before:?}");
    PgClient::connect(url, NoTls)
        .unwrap()
        .batch_execute("ALTER TABLE users ALTER COLUMN nickname TYPE varchar(64)")
        .unwrap();
    let after = ops::handle(&ctx, Request::GetProfile(proto::GetProfile { token }));
    assert!(matches!(after, Response::GetProfile(_)), "{after:?}");
}

/// A seed killed after its last COPY but before rebuilding the index was not repaired by a
/// rerun: no unique index. (Seeding no longer touches the id sequence, which migration V4 set
/// for registrations, so a kill cannot leave it behind.)
#[test]
fn a_rerun_after_an_interrupted_finish_restores_the_index() {
    let database = FreshDatabase::create();
    let url = &database.url;
    let ctx = small_context(url, 2);
    seed::seed(url, 2_000, &ctx.hasher, 2, false).unwrap();
    let mut admin = PgClient::connect(url, NoTls).unwrap();
    // Exactly what a kill during the final statement leaves (CREATE INDEX is atomic).
    admin
        .batch_execute("DROP INDEX users_username_lower")
        .unwrap();
    let again = seed::seed(url, 2_000, &ctx.hasher, 2, false).unwrap();
    assert_eq!((again.existing, again.added), (2_000, 0));
    let has_index: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_indexes \
             WHERE tablename = 'users' AND indexname = 'users_username_lower')",
            &[],
        )
        .unwrap()
        .get(0);
    let registered = ops::handle(
        &ctx,
        Request::Register(proto::Register {
            username: unique_name("fresh"),
            password: Secret::new("correct horse"),
            nickname: None,
            client: None,
        }),
    );
    assert!(
        has_index && matches!(registered, Response::Register(_)),
        "username index present: {has_index}; registering a new name: {registered:?}"
    );
}

/// A failed COPY left the hashing threads blocked on a channel nobody read: seed never
/// returned.
#[test]
fn a_database_error_during_seeding_is_reported_not_a_hang() {
    let database = FreshDatabase::create();
    let url = database.url.clone();
    PgClient::connect(&url, NoTls)
        .unwrap()
        .batch_execute("ALTER TABLE users ADD CONSTRAINT review_refuse CHECK (id < 0)")
        .unwrap();
    let cheap = Hasher::new(
        PasswordParams {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        },
        Keyring::single(PEPPER).unwrap(),
        2,
    )
    .unwrap();
    let (done, finished) = mpsc::channel();
    let seed_url = url.clone();
    thread::spawn(move || {
        let result = seed::seed(&seed_url, 250_000, &cheap, 2, false);
        let _ = done.send(result.map(|_| ()).map_err(|e| format!("{e:#}")));
    });
    match finished.recv_timeout(Duration::from_secs(60)) {
        Ok(Err(_)) => {}
        Ok(Ok(())) => panic!("seeding succeeded against a table that refuses every row"),
        Err(_) => panic!("seed had not returned 60 s after the COPY failed: deadlock"),
    }
}

/// lower() followed the database locale: under a Turkish one, "Ivan" could not log in and
/// "ivan" could be registered beside it.
#[test]
fn usernames_with_a_capital_i_work_under_a_turkish_database_locale() {
    let database = FreshDatabase::with_options(
        "LOCALE_PROVIDER icu ICU_LOCALE 'tr-TR' LOCALE 'C.UTF-8' TEMPLATE template0",
    );
    let ctx = small_context(&database.url, 2);
    let user = unique_name("Ivan");
    let register = |username: String| {
        ops::handle(
            &ctx,
            Request::Register(proto::Register {
                username,
                password: Secret::new("correct horse"),
                nickname: None,
                client: None,
            }),
        )
    };
    assert!(matches!(register(user.clone()), Response::Register(_)));
    let login = ops::handle(
        &ctx,
        Request::Login(proto::Login {
            username: user.clone(),
            password: Secret::new("correct horse"),
            client: None,
            device: None,
        }),
    );
    let twin = register(user.to_lowercase());
    assert!(
        matches!(login, Response::Login(_))
            && matches!(&twin, Response::Error(e) if e.code == ErrorCode::UsernameTaken),
        "login with the registered name: {login:?}; registering its lowercase twin: {twin:?}"
    );
}
