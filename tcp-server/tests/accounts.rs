//! Register, log in, log out, read and change the profile: every rule, over a real socket.

use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::{ErrorCode, Profile, Request, Response, Secret, Session};
use tcp_server::ops;
use tcp_server::password::PasswordParams;

use crate::support::{FAST, TestServer, context, eventually, login, register, unique_name};

fn error_code(response: &Response) -> Option<ErrorCode> {
    match response {
        Response::Error(error) => Some(error.code),
        _ => None,
    }
}

fn logged_in(response: Response) -> Session {
    match response {
        Response::Login(session) => session,
        other => panic!("expected a session, got {other:?}"),
    }
}

#[test]
fn register_then_log_in_and_read_the_profile() {
    let server = TestServer::start(4);
    let mut client = server.client();
    let name = unique_name("Alice.");
    let Response::Register(profile) = client.call(register(&name, "correct horse", None)) else {
        panic!("registration failed");
    };
    assert_eq!(profile.username, name);
    assert_eq!(
        profile.nickname, name,
        "the nickname defaults to the username"
    );
    assert_eq!(profile.picture, None);

    // Usernames compare without regard to case.
    let session = logged_in(client.call(login(&name.to_uppercase(), "correct horse")));
    assert_eq!(session.profile, profile);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now + 3590..=now + 3610).contains(&session.expires_at));

    let me = client.call(Request::GetProfile(proto::GetProfile {
        token: session.token.clone(),
    }));
    assert_eq!(me, Response::GetProfile(profile));
}

#[test]
fn registration_rules_are_enforced() {
    let server = TestServer::start(4);
    let mut client = server.client();
    let name = unique_name("rules");
    let cases = [
        (
            register("ab", "correct horse", None),
            ErrorCode::InvalidUsername,
        ),
        (
            register("has space", "correct horse", None),
            ErrorCode::InvalidUsername,
        ),
        (
            register(&"x".repeat(33), "correct horse", None),
            ErrorCode::InvalidUsername,
        ),
        (register(&name, "short", None), ErrorCode::InvalidPassword),
        (
            register(&name, &"p".repeat(129), None),
            ErrorCode::InvalidPassword,
        ),
        (
            register(&name, "correct horse", Some("   ")),
            ErrorCode::InvalidNickname,
        ),
        (
            register(&name, "correct horse", Some("bell\u{7}")),
            ErrorCode::InvalidNickname,
        ),
        (
            register(&name, "correct horse", Some(&"n".repeat(65))),
            ErrorCode::InvalidNickname,
        ),
    ];
    for (request, expected) in cases {
        let response = client.call(request.clone());
        assert_eq!(error_code(&response), Some(expected), "{request:?}");
    }
    // None of the refused attempts created the account.
    let Response::Register(profile) =
        client.call(register(&name, "пароль🔑пароль", Some("  Zoë 🎉 山田 ")))
    else {
        panic!("a valid registration failed");
    };
    assert_eq!(profile.nickname, "Zoë 🎉 山田", "trimmed, Unicode kept");
}

#[test]
fn usernames_are_unique_without_regard_to_case_even_under_a_race() {
    let server = TestServer::start(32);
    let name = unique_name("race");
    let outcomes: Vec<Response> = thread::scope(|scope| {
        let handles: Vec<_> = (0..24)
            .map(|index| {
                let spelled = if index % 2 == 0 {
                    name.clone()
                } else {
                    name.to_uppercase()
                };
                let server = &server;
                scope.spawn(move || {
                    server
                        .client()
                        .call(register(&spelled, "correct horse", None))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created = outcomes
        .iter()
        .filter(|r| matches!(r, Response::Register(_)))
        .count();
    let taken = outcomes
        .iter()
        .filter(|r| error_code(r) == Some(ErrorCode::UsernameTaken))
        .count();
    assert_eq!((created, taken), (1, 23), "{outcomes:?}");
}

#[test]
fn unknown_user_and_wrong_password_get_the_same_answer() {
    let server = TestServer::start(4);
    let mut client = server.client();
    let name = unique_name("bob");
    client.call(register(&name, "correct horse", None));
    let wrong_password = client.call(login(&name, "wrong horse"));
    let unknown_user = client.call(login(&unique_name("nobody"), "correct horse"));
    let impossible_name = client.call(login("not a valid name!", "correct horse"));
    assert_eq!(
        error_code(&wrong_password),
        Some(ErrorCode::InvalidCredentials)
    );
    assert_eq!(wrong_password, unknown_user, "identical replies");
    assert_eq!(wrong_password, impossible_name, "identical replies");
}

fn login_from(name: &str, password: &str, client: &str) -> Request {
    Request::Login(proto::Login {
        username: name.to_owned(),
        password: Secret::new(password),
        client: Some(client.to_owned()),
        device: None,
    })
}

fn login_with_device(name: &str, password: &str, client: &str, device: &Secret) -> Request {
    Request::Login(proto::Login {
        username: name.to_owned(),
        password: Secret::new(password),
        client: Some(client.to_owned()),
        device: Some(device.clone()),
    })
}

#[test]
fn failed_logins_lock_out_unrecognised_clients_but_not_a_device_that_logged_in_before() {
    // Default limits: 10 failures from unrecognised clients of one account, then 2 minutes.
    let server = TestServer::start(4);
    let mut client = server.client();
    let name = unique_name("mallory");
    client.call(register(&name, "correct horse", None));
    // The owner logged in once before, and kept the device token.
    let device =
        logged_in(client.call(login_from(&name, "correct horse", "192.0.2.7"))).device_token;
    let nobody = unique_name("nobody");
    for target in [&name, &nobody] {
        // Guesses spread over many addresses all count against the account.
        for attempt in 0..10 {
            let reply = client.call(login_from(
                target,
                "wrong horse",
                &format!("10.0.{attempt}.66"),
            ));
            assert_eq!(
                error_code(&reply),
                Some(ErrorCode::InvalidCredentials),
                "attempt {attempt} on {target}"
            );
        }
        // Now refused, even with the right password, without the password being checked;
        // an unknown name is throttled exactly like a real one.
        let Response::Error(refused) =
            client.call(login_from(target, "correct horse", "10.0.99.66"))
        else {
            panic!("the 11th attempt was not refused");
        };
        assert_eq!(refused.code, ErrorCode::TooManyRequests);
        assert!(
            (119_000..=120_000).contains(&refused.retry_after_ms),
            "retry after the first lockout: {}",
            refused.retry_after_ms
        );
    }
    // The owner's device is judged on its own: it logs in at once, and gets a new token.
    let session = logged_in(client.call(login_with_device(
        &name,
        "correct horse",
        "192.0.2.7",
        &device,
    )));
    assert_ne!(session.device_token, device);
    logged_in(client.call(login_with_device(
        &name,
        "correct horse",
        "10.0.0.66",
        &session.device_token,
    )));
    // Without it, the owner is an unrecognised client like the others, and waits.
    assert_eq!(
        error_code(&client.call(login_from(&name, "correct horse", "192.0.2.7"))),
        Some(ErrorCode::TooManyRequests)
    );
    // Other names from the guessing addresses are untouched.
    let other = unique_name("trent");
    client.call(register(&other, "correct horse", None));
    logged_in(client.call(login_from(&other, "correct horse", "10.0.0.66")));
}

#[test]
fn a_device_token_counts_for_its_own_username_and_fails_on_its_own() {
    let server = TestServer::start(4);
    let mut client = server.client();
    let (alice, bob) = (unique_name("alice"), unique_name("bob"));
    client.call(register(&alice, "correct horse", None));
    client.call(register(&bob, "correct horse", None));
    let device =
        logged_in(client.call(login_from(&alice, "correct horse", "10.0.0.1"))).device_token;
    // Another account's token, or a forged one, recognises nobody: bob's unrecognised clients
    // are locked out after their 10 failures whatever token they show.
    for attempt in 0..10 {
        let forged = Secret::new(format!("{}x", &device.expose()[1..]));
        let token = if attempt % 2 == 0 { &device } else { &forged };
        let reply = client.call(login_with_device(&bob, "wrong horse", "10.0.0.2", token));
        assert_eq!(
            error_code(&reply),
            Some(ErrorCode::InvalidCredentials),
            "{attempt}"
        );
    }
    assert_eq!(
        error_code(&client.call(login_with_device(
            &bob,
            "correct horse",
            "10.0.0.2",
            &device
        ))),
        Some(ErrorCode::TooManyRequests)
    );
    // A device that keeps failing on its own account is locked out for itself only.
    for _ in 0..10 {
        let reply = client.call(login_with_device(
            &alice,
            "wrong horse",
            "10.0.0.1",
            &device,
        ));
        assert_eq!(error_code(&reply), Some(ErrorCode::InvalidCredentials));
    }
    assert_eq!(
        error_code(&client.call(login_with_device(
            &alice,
            "correct horse",
            "10.0.0.1",
            &device
        ))),
        Some(ErrorCode::TooManyRequests)
    );
    logged_in(client.call(login_from(&alice, "correct horse", "10.0.0.1")));
}

#[test]
fn logout_revokes_exactly_that_session() {
    let server = TestServer::start(4);
    let mut client = server.client();
    let name = unique_name("carol");
    client.call(register(&name, "correct horse", None));
    let first = logged_in(client.call(login(&name, "correct horse")));
    let second = logged_in(client.call(login(&name, "correct horse")));
    assert_ne!(first.token, second.token);

    let logout = client.call(Request::Logout(proto::Logout {
        token: first.token.clone(),
    }));
    assert_eq!(logout, Response::Logout(()));
    for request in [
        Request::GetProfile(proto::GetProfile {
            token: first.token.clone(),
        }),
        Request::Logout(proto::Logout {
            token: first.token.clone(),
        }),
        Request::UpdateNickname(proto::UpdateNickname {
            token: first.token.clone(),
            nickname: "revoked".to_owned(),
        }),
    ] {
        let response = client.call(request.clone());
        assert_eq!(
            error_code(&response),
            Some(ErrorCode::Unauthorized),
            "{request:?}"
        );
    }
    let still = client.call(Request::GetProfile(proto::GetProfile {
        token: second.token.clone(),
    }));
    assert!(matches!(still, Response::GetProfile(_)), "{still:?}");
}

#[test]
fn tampered_malformed_and_foreign_tokens_are_refused() {
    let server = TestServer::start(4);
    let mut client = server.client();
    let name = unique_name("dave");
    client.call(register(&name, "correct horse", None));
    let session = logged_in(client.call(login(&name, "correct horse")));
    let token = session.token.expose();
    let mut tampered = token.as_bytes().to_vec();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [
        tampered.as_str(),
        "",
        "garbage",
        &token[..token.len() - 1],
        &"A".repeat(4096),
    ] {
        let response = client.call(Request::GetProfile(proto::GetProfile {
            token: Secret::new(bad),
        }));
        assert_eq!(
            error_code(&response),
            Some(ErrorCode::Unauthorized),
            "{bad:?}"
        );
    }
}

#[test]
fn an_expired_session_is_refused() {
    let server = TestServer::start_with(4, context(FAST, Duration::from_secs(1)));
    let mut client = server.client();
    let name = unique_name("erin");
    client.call(register(&name, "correct horse", None));
    let session = logged_in(client.call(login(&name, "correct horse")));
    // Waits for the clock to pass the session's end (whole seconds), however long that is.
    let unix_now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    assert!(eventually(Duration::from_secs(5), || unix_now() > session.expires_at));
    let response = client.call(Request::GetProfile(proto::GetProfile {
        token: session.token,
    }));
    assert_eq!(error_code(&response), Some(ErrorCode::Unauthorized));
}

#[test]
fn the_nickname_can_be_changed_under_the_same_rules() {
    let server = TestServer::start(4);
    let mut client = server.client();
    let name = unique_name("frank");
    client.call(register(&name, "correct horse", None));
    let session = logged_in(client.call(login(&name, "correct horse")));
    let update = |nickname: &str| {
        Request::UpdateNickname(proto::UpdateNickname {
            token: session.token.clone(),
            nickname: nickname.to_owned(),
        })
    };
    let response = client.call(update(" 🦀 Ferris "));
    let Response::UpdateNickname(Profile { nickname, .. }) = response else {
        panic!("{response:?}");
    };
    assert_eq!(nickname, "🦀 Ferris");
    assert_eq!(
        error_code(&client.call(update(""))),
        Some(ErrorCode::InvalidNickname)
    );
    let Response::GetProfile(profile) = client.call(Request::GetProfile(proto::GetProfile {
        token: session.token.clone(),
    })) else {
        panic!("profile");
    };
    assert_eq!(
        profile.nickname, "🦀 Ferris",
        "the refused update changed nothing"
    );
}

#[test]
fn a_password_hashed_with_old_parameters_is_rehashed_at_login() {
    let old = context(FAST, Duration::from_secs(60));
    let name = unique_name("gina");
    ops::handle(&old, register(&name, "correct horse", None));
    let stored = |ctx: &ops::Context| -> String {
        ctx.db
            .run(|conn| {
                conn.client().query_one(
                    "SELECT password_hash FROM users WHERE lower(username) = lower($1)",
                    &[&name],
                )
            })
            .unwrap()
            .get(0)
    };
    assert!(stored(&old).contains("m=64,t=1,p=1"));
    let stronger = PasswordParams {
        memory_kib: 128,
        iterations: 2,
        parallelism: 1,
    };
    let new = context(stronger, Duration::from_secs(60));
    logged_in(ops::handle(&new, login(&name, "correct horse")));
    assert!(stored(&new).contains("m=128,t=2,p=1"), "{}", stored(&new));
    // And the new hash still verifies.
    logged_in(ops::handle(&new, login(&name, "correct horse")));
}

#[test]
fn requests_are_counted_in_the_metrics_on_the_admin_listener() {
    let server = TestServer::start(4);
    let mut client = server.client();
    client.call(login(&unique_name("nobody"), "correct horse"));
    let metrics = testkit::scrape(server.admin);
    let login = [("kind", "login")];
    assert_eq!(
        testkit::metric(&metrics, "gatehouse_tcp_requests_total", &login),
        Some(1.0)
    );
    assert_eq!(
        testkit::metric(&metrics, "gatehouse_tcp_request_errors_total", &login),
        Some(1.0)
    );
    assert_eq!(
        testkit::metric(&metrics, "gatehouse_tcp_request_duration_seconds", &login),
        Some(1.0),
        "one observation in the latency histogram"
    );
    assert!(
        testkit::metric(
            &metrics,
            "gatehouse_db_pool_connections",
            &[("state", "max")]
        )
        .is_some()
    );
    assert_eq!(
        testkit::metric(
            &metrics,
            "gatehouse_tcp_throttle_entries",
            &[("table", "accounts")]
        ),
        Some(1.0),
        "the failure is counted"
    );
}

#[test]
fn a_database_that_is_down_gives_unavailable_not_a_hang() {
    // Nothing listens on port 1.
    let ctx = crate::support::context_for(
        "postgres://gatehouse@127.0.0.1:1/gatehouse",
        FAST,
        Duration::from_secs(60),
    );
    let started = std::time::Instant::now();
    let response = ops::handle(&ctx, login("someone", "correct horse"));
    assert_eq!(
        error_code(&response),
        Some(ErrorCode::Unavailable),
        "{response:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A burst of logins behind one hash slot, at OWASP's strength and a wait bound shorter than one
/// hash: the first is judged, those that would wait past the bound get `Busy` with a retry hint
/// at once (never a wrong answer, never a wait), and none counts as a failed login.
#[test]
fn logins_past_the_hash_queue_bound_get_busy_at_once_and_are_not_counted() {
    let mut settings = testkit::settings();
    settings.password = PasswordParams::OWASP;
    settings.max_concurrent_hashes = 1;
    settings.max_hash_wait = Duration::from_millis(1);
    // Eight may be in flight at once (the throttle counts attempts from their start).
    settings.throttle.account_failures = 8;
    let ctx = testkit::context_with(&settings);
    let name = unique_name("burst");
    assert!(matches!(
        ops::handle(&ctx, register(&name, "correct horse battery", None)),
        Response::Register(_)
    ));
    let barrier = std::sync::Barrier::new(8);
    let answers: Vec<(Response, Duration)> = thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let started = std::time::Instant::now();
                    let answer = ops::handle(&ctx, login(&name, "correct horse battery"));
                    (answer, started.elapsed())
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let judged = answers
        .iter()
        .filter(|(answer, _)| matches!(answer, Response::Login(_)))
        .count();
    let busy: Vec<&Duration> = answers
        .iter()
        .filter_map(|(answer, took)| match answer {
            Response::Error(error) if error.code == ErrorCode::Busy => {
                assert_eq!(error.retry_after_ms, 1000);
                Some(took)
            }
            _ => None,
        })
        .collect();
    assert!(judged >= 1, "{answers:?}");
    assert!(
        !busy.is_empty(),
        "a burst of 8 behind one slot: {answers:?}"
    );
    assert_eq!(judged + busy.len(), 8, "only logins and Busy: {answers:?}");
    // Refused from the queue's estimate (or at the 1 ms bound), not after a hash's time.
    assert!(busy.iter().all(|took| **took < Duration::from_millis(200)));
    // Busy answers judged nothing: eight wrong passwords are still judged before the lock.
    for attempt in 0..8 {
        let answer = ops::handle(&ctx, login(&name, "wrong horse battery"));
        assert_eq!(
            error_code(&answer),
            Some(ErrorCode::InvalidCredentials),
            "attempt {attempt}"
        );
    }
}
