//! Reads from a real streaming replica (scripts/postgres, pg_basebackup -R) of a real primary,
//! each in a cluster of the test's own: what is written through one tcp-server is read at once
//! through another, a lagging or stopped replica gets no reads, and with the primary stopped
//! reads go on while writes fail fast.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use proto::{ErrorCode, Request, Response, Secret, Session};
use tcp_server::ops::Context;
use testkit::PgCluster;

use crate::support::{FAST, TestServer, eventually, login, unique_name};

fn register(name: &str, password: &str) -> Request {
    crate::support::register(name, password, None)
}

/// A context on `primary` reading from `replica`, with a short lag bound.
fn context(primary: &PgCluster, replica: &PgCluster) -> Arc<Context> {
    let mut settings = testkit::settings();
    settings.database_url = primary.url();
    settings.replica_urls = vec![replica.url()];
    settings.db.max_replica_lag = Duration::from_millis(300);
    settings.password = FAST;
    Arc::new(testkit::context_with(&settings))
}

/// A primary and its replica, named after the test, and a context on them once the replica
/// serves reads.
fn serving_pair(test: &str) -> (PgCluster, PgCluster, Arc<Context>) {
    let primary = PgCluster::primary(&format!("{test}-primary"));
    let replica = primary.replica(&format!("{test}-replica"));
    let ctx = context(&primary, &replica);
    assert!(eventually(Duration::from_secs(10), || serving(&ctx)));
    (primary, replica, ctx)
}

fn serving(ctx: &Context) -> bool {
    let scrape = testkit::parse_metrics(&ctx.metrics.render(&ctx.db, &ctx.throttle));
    testkit::metric(&scrape, "gatehouse_tcp_replica_serving", &[]) == Some(1.0)
}

fn replica_reads(ctx: &Context) -> u64 {
    let reads = ctx.db.replicas().expect("replicas configured").reads();
    reads.replica.load(Ordering::Relaxed)
}

fn profile(session: &Session) -> Request {
    Request::GetProfile(proto::GetProfile {
        token: session.token.clone(),
    })
}

fn logged_in(response: Response) -> Session {
    match response {
        Response::Login(session) | Response::ChangePassword(session) => session,
        other => panic!("expected a session, got {other:?}"),
    }
}

fn code(response: &Response) -> Option<ErrorCode> {
    match response {
        Response::Error(error) => Some(error.code),
        _ => None,
    }
}

/// Two tcp-servers on one primary and its replica: everything written through `a` is read
/// through `b` (and `a`) at once, however far the replica trails; with the replica caught up,
/// the replica is what answers.
#[test]
fn what_one_server_writes_every_server_reads_at_once() {
    let primary = PgCluster::primary("ryw-primary");
    let replica = primary.replica("ryw-replica");
    let (ctx_a, ctx_b) = (context(&primary, &replica), context(&primary, &replica));
    assert!(
        eventually(Duration::from_secs(10), || serving(&ctx_b)),
        "the replica never served"
    );
    let a = TestServer::start_shared(4, Arc::clone(&ctx_a));
    let b = TestServer::start_shared(4, Arc::clone(&ctx_b));
    let (mut a, mut b) = (a.client(), b.client());

    // 1. Read-your-writes: a registration answered by one server is a login on the other at
    // once, every time.
    for _ in 0..30 {
        let name = unique_name("ryw.");
        assert!(matches!(
            a.call(register(&name, "correct horse")),
            Response::Register(_)
        ));
        logged_in(b.call(login(&name, "correct horse")));
    }

    // 2. Every way of ending a session is seen through the other server at once.
    let name = unique_name("revoke.");
    a.call(register(&name, "correct horse"));
    let session = logged_in(b.call(login(&name, "correct horse")));
    assert!(matches!(b.call(profile(&session)), Response::GetProfile(_)));
    a.call(Request::Logout(proto::Logout {
        token: session.token.clone(),
    }));
    assert_eq!(
        code(&b.call(profile(&session))),
        Some(ErrorCode::Unauthorized)
    );

    let session = logged_in(b.call(login(&name, "correct horse")));
    let other = logged_in(b.call(login(&name, "correct horse")));
    a.call(Request::LogoutAll(proto::LogoutAll {
        token: session.token.clone(),
    }));
    assert_eq!(
        code(&b.call(profile(&other))),
        Some(ErrorCode::Unauthorized)
    );

    let session = logged_in(b.call(login(&name, "correct horse")));
    let changed = logged_in(a.call(Request::ChangePassword(proto::ChangePassword {
        token: session.token.clone(),
        current_password: Secret::new("correct horse"),
        new_password: Secret::new("battery staple"),
        client: None,
        device: None,
    })));
    assert_eq!(
        code(&b.call(profile(&session))),
        Some(ErrorCode::Unauthorized)
    );
    assert!(matches!(b.call(profile(&changed)), Response::GetProfile(_)));
    // The new password works at once, and the old one no longer does.
    logged_in(b.call(login(&name, "battery staple")));
    assert_eq!(
        code(&b.call(login(&name, "correct horse"))),
        Some(ErrorCode::InvalidCredentials)
    );

    a.call(Request::DeleteAccount(proto::DeleteAccount {
        token: changed.token.clone(),
        password: Secret::new("battery staple"),
        client: None,
        device: None,
    }));
    assert_eq!(
        code(&b.call(profile(&changed))),
        Some(ErrorCode::Unauthorized)
    );
    assert_eq!(
        code(&b.call(login(&name, "battery staple"))),
        Some(ErrorCode::InvalidCredentials)
    );

    // And the reads were the replica's: the fence made it wait, not the primary answer.
    let reads = ctx_b.db.replicas().unwrap().reads();
    let (on_replica, on_primary) = (
        reads.replica.load(Ordering::Relaxed),
        reads.primary.load(Ordering::Relaxed),
    );
    assert!(
        on_replica > on_primary,
        "the replica served {on_replica} reads, the primary {on_primary}"
    );
    // Each read waited for a fence; one answers all that wait together, never fewer than one.
    let fences = reads.fences.load(Ordering::Relaxed);
    assert!(
        (1..=on_replica + on_primary).contains(&fences),
        "{fences} fences"
    );
}

/// A replica whose replay is paused falls behind, gets no reads past the lag bound, and gets
/// them back once it has caught up; one that is stopped gets none. No read is answered from
/// the past meanwhile.
#[test]
fn a_lagging_or_stopped_replica_gets_no_reads_and_nothing_is_answered_wrongly() {
    let (_primary, replica, ctx) = serving_pair("lag");
    let server = TestServer::start_shared(4, Arc::clone(&ctx));
    let mut client = server.client();

    replica.superuser("SELECT pg_wal_replay_pause()");
    let paused = Instant::now();
    // Writes go on; the replica trails them, and past the bound it is out.
    let mut names = Vec::new();
    while serving(&ctx) {
        assert!(
            paused.elapsed() < Duration::from_secs(5),
            "the paused replica kept serving"
        );
        let name = unique_name("lag.");
        client.call(register(&name, "correct horse"));
        // Registered while the replica cannot know: a login still finds it.
        logged_in(client.call(login(&name, "correct horse")));
        names.push(name);
    }
    let out_after = paused.elapsed();
    assert!(
        out_after >= Duration::from_millis(250),
        "out after {out_after:?}, before the 300 ms bound"
    );
    let before = replica_reads(&ctx);
    for name in &names {
        logged_in(client.call(login(name, "correct horse")));
    }
    assert_eq!(
        replica_reads(&ctx),
        before,
        "a replica out of service served reads"
    );

    replica.superuser("SELECT pg_wal_replay_resume()");
    assert!(
        eventually(Duration::from_secs(10), || serving(&ctx)),
        "the replica did not come back after catching up"
    );
    for name in &names {
        logged_in(client.call(login(name, "correct horse")));
    }
    assert!(
        replica_reads(&ctx) > before,
        "the caught-up replica got no reads"
    );

    replica.script("stop");
    assert!(eventually(Duration::from_secs(5), || !serving(&ctx)));
    let before = replica_reads(&ctx);
    for name in &names {
        logged_in(client.call(login(name, "correct horse")));
    }
    assert_eq!(replica_reads(&ctx), before);
    replica.script("start");
    assert!(
        eventually(Duration::from_secs(10), || serving(&ctx)),
        "the restarted replica did not serve again"
    );
}

/// With the primary stopped, logins and profile reads go on from the replica, and writes get
/// `Unavailable` (a 503 with Retry-After from http-server) at once.
#[test]
fn with_the_primary_down_reads_go_on_and_writes_fail_fast() {
    let (primary, _replica, ctx) = serving_pair("down");
    let server = TestServer::start_shared(4, Arc::clone(&ctx));
    let mut client = server.client();
    let name = unique_name("down.");
    client.call(register(&name, "correct horse"));
    let session = logged_in(client.call(login(&name, "correct horse")));
    // The registration has reached the replica before the primary goes.
    assert!(eventually(Duration::from_secs(5), || {
        ctx.db.replicas().unwrap().status()[0].lag.is_zero()
    }));

    primary.script("stop");
    assert!(
        eventually(Duration::from_secs(5), || {
            ctx.db.check().is_ok()
                && !matches!(
                    client.call(login(&name, "correct horse")),
                    Response::Error(_)
                )
        }),
        "logins stopped with the primary"
    );
    for _ in 0..20 {
        logged_in(client.call(login(&name, "correct horse")));
        assert!(matches!(
            client.call(profile(&session)),
            Response::GetProfile(_)
        ));
    }
    let unfenced = ctx
        .db
        .replicas()
        .unwrap()
        .reads()
        .unfenced
        .load(Ordering::Relaxed);
    assert!(
        unfenced >= 40,
        "{unfenced} reads served by the replica alone"
    );

    let started = Instant::now();
    let answer = client.call(register(&unique_name("down."), "correct horse"));
    assert_eq!(code(&answer), Some(ErrorCode::Unavailable), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a write took {:?} to fail",
        started.elapsed()
    );
    let Response::Error(error) = answer else {
        unreachable!()
    };
    assert!(error.retry_after_ms > 0);
}

/// A primary out of this server's reach but alive (its replica still streams from it) may be
/// taking writes through other servers: reads get `Unavailable`, never the replica's answer
/// from the past.
#[test]
fn a_primary_out_of_reach_but_alive_gets_reads_refused_not_served_stale() {
    let (_primary, replica, ctx) = serving_pair("reach");
    let name = unique_name("reach.");
    TestServer::start_shared(4, Arc::clone(&ctx))
        .client()
        .call(register(&name, "correct horse"));

    // This server's primary is a port nothing listens on; the real one lives and streams.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = testkit::settings();
    settings.database_url = format!("postgres://gatehouse:gatehouse@127.0.0.1:{closed}/gatehouse");
    settings.replica_urls = vec![replica.url()];
    let cut_off = Arc::new(testkit::context_with(&settings));
    let server = TestServer::start_shared(4, Arc::clone(&cut_off));
    let mut client = server.client();
    assert!(eventually(Duration::from_secs(10), || serving(&cut_off)));
    for _ in 0..5 {
        let answer = client.call(login(&name, "correct horse"));
        assert_eq!(code(&answer), Some(ErrorCode::Unavailable), "{answer:?}");
    }
    let reads = cut_off.db.replicas().unwrap().reads();
    assert_eq!(reads.unfenced.load(Ordering::Relaxed), 0);
    // Nor does it say it is ready: a balancer should send its work elsewhere.
    assert!(cut_off.db.check().is_err());
}

/// The primary stopped and the replica promoted (`pg_ctl promote`): tcp-server follows the
/// promotion by itself, writes work again, every registration acknowledged before is there, and
/// the old primary, started again on its old timeline, gets no write.
#[test]
fn after_a_promotion_writes_work_again_with_nothing_acknowledged_lost() {
    let (primary, replica, ctx) = serving_pair("promote");
    let server = TestServer::start_shared(4, Arc::clone(&ctx));
    let mut client = server.client();
    let acknowledged: Vec<String> = (0..50)
        .map(|_| {
            let name = unique_name("acked.");
            let answer = client.call(register(&name, "correct horse"));
            assert!(matches!(answer, Response::Register(_)), "{answer:?}");
            name
        })
        .collect();

    primary.script("stop");
    let answer = client.call(register(&unique_name("between."), "correct horse"));
    assert_eq!(code(&answer), Some(ErrorCode::Unavailable), "{answer:?}");
    replica.script("promote");
    assert!(
        eventually(Duration::from_secs(10), || matches!(
            client.call(register(&unique_name("after."), "correct horse")),
            Response::Register(_)
        )),
        "writes did not come back after the promotion"
    );
    for name in &acknowledged {
        logged_in(client.call(login(name, "correct horse")));
    }
    let count = |cluster: &PgCluster, name: &str| {
        cluster.superuser(&format!(
            "SELECT count(*) FROM users WHERE username = '{name}'"
        ))
    };
    let last = acknowledged.last().unwrap();
    assert_eq!(count(&replica, last), "1");

    primary.script("start");
    // A few probes see the old primary back.
    std::thread::sleep(Duration::from_millis(500));
    let name = unique_name("later.");
    assert!(matches!(
        client.call(register(&name, "correct horse")),
        Response::Register(_)
    ));
    assert_eq!(count(&replica, &name), "1");
    assert_eq!(count(&primary, &name), "0", "the old primary took a write");
}
