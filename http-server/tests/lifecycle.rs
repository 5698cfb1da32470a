//! The account lifecycle through both tiers: a password change (by bearer token and by the
//! pages' cookie, which it replaces), log out everywhere, deletion (sessions, picture URL and
//! login all gone, the name held), guessable passwords refused with the reason, and a wrong
//! current password answered and timed as a failed login.

use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use serde_json::json;
use tcp_server::password::Hasher;
use tcp_server::secrets::Keyring;

use crate::support::*;

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "violet harbour lantern 42";

fn change(front: &Front, token: &str, current: &str, new: &str) -> Answer {
    send_json(
        "PUT",
        &front.url("/api/v1/me/password"),
        Some(token),
        &json!({"current_password": current, "new_password": new}),
    )
}

fn me(front: &Front, token: &str) -> Answer {
    send_auth("GET", &front.url("/api/v1/me"), token)
}

fn session(front: &Front, username: &str, password: &str) -> String {
    let answer = login(front, username, password);
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    answer.json()["token"].as_str().unwrap().to_owned()
}

/// The value `name` is set to by an answer's `Set-Cookie` headers.
fn cookie_value(answer: &Answer, name: &str) -> Option<String> {
    set_cookies(answer).into_iter().find_map(|cookie| {
        cookie
            .strip_prefix(&format!("{name}="))
            .and_then(|rest| rest.split(';').next())
            .map(str::to_owned)
    })
}

#[test]
fn a_password_change_answers_a_new_session_and_ends_the_others() {
    let stack = Stack::start();
    let front = &stack.front;
    let name = unique_name("pw");
    register(front, &name, PASSWORD);
    let (caller, other) = (
        session(front, &name, PASSWORD),
        session(front, &name, PASSWORD),
    );

    let changed = change(front, &caller, PASSWORD, NEW_PASSWORD);
    assert_eq!(changed.status, 200, "{:?}", changed.json());
    assert_eq!(changed.header("Cache-Control"), Some("no-store"));
    let body = changed.json();
    assert_eq!(body["user"]["username"], name.as_str());
    assert!(body["expires_at"].is_string() && body["device_token"].is_string());
    let replaced = body["token"].as_str().unwrap();

    assert_eq!(me(front, replaced).status, 200, "the answer's session");
    // The caller's old token and the other session's.
    for token in [&caller, &other] {
        me(front, token).assert_error(401, "unauthorized");
    }
    login(front, &name, PASSWORD).assert_error(401, "invalid_credentials");
    assert_eq!(login(front, &name, NEW_PASSWORD).status, 200);
}

#[test]
fn the_pages_password_change_replaces_the_session_cookie() {
    let stack = Stack::start();
    let front = &stack.front;
    let name = unique_name("pwc");
    register(front, &name, PASSWORD);
    let logged_in = send(
        "POST",
        &front.url("/api/v1/sessions?cookie=true"),
        &[
            ("Content-Type", "application/json"),
            ("Origin", &front.base),
        ],
        Some(&serde_json::to_vec(&json!({"username": name, "password": PASSWORD})).unwrap()),
    );
    assert_eq!(logged_in.status, 200);
    let old = cookie_value(&logged_in, "gatehouse_session").unwrap();
    let jar = format!("gatehouse_session={old}");
    let body =
        serde_json::to_vec(&json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}))
            .unwrap();

    // Without the pages' Origin, the cookie does not change the password.
    send(
        "PUT",
        &front.url("/api/v1/me/password"),
        &[("Content-Type", "application/json"), ("Cookie", &jar)],
        Some(&body),
    )
    .assert_error(403, "cross_site_request");

    let changed = send(
        "PUT",
        &front.url("/api/v1/me/password"),
        &[
            ("Content-Type", "application/json"),
            ("Cookie", &jar),
            ("Origin", &front.base),
        ],
        Some(&body),
    );
    assert_eq!(changed.status, 200, "{:?}", changed.json());
    assert!(
        changed.json().get("token").is_none(),
        "no script on the pages sees the token"
    );
    let new = cookie_value(&changed, "gatehouse_session").expect("a new session cookie");
    assert!(cookie_value(&changed, "gatehouse_device").is_some());
    assert_ne!(new, old);
    let read = |value: &str| {
        send(
            "GET",
            &front.url("/api/v1/me"),
            &[("Cookie", &format!("gatehouse_session={value}"))],
            None,
        )
    };
    assert_eq!(
        read(&new).status,
        200,
        "the page goes on with the new cookie"
    );
    read(&old).assert_error(401, "unauthorized");
}

#[test]
fn guessable_passwords_are_refused_with_the_reason() {
    let stack = Stack::start();
    let front = &stack.front;
    let name = unique_name("weak");
    for weak in ["password", "12345678", "qwertyuiop", &format!("{name}1")] {
        let answer = send_json(
            "POST",
            &front.url("/api/v1/users"),
            None,
            &json!({"username": name, "password": weak}),
        );
        answer.assert_error(400, "weak_password");
        let message = answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.starts_with("this password is too easy to guess.")
                && message.len() > "this password is too easy to guess. ".len(),
            "{weak:?}: {message}"
        );
    }
    // None of the refused attempts created the account (this registers it).
    assert_no_account(front, &name);
    let name = unique_name("weak");
    register(front, &name, PASSWORD);
    let token = session(front, &name, PASSWORD);
    change(front, &token, PASSWORD, "password").assert_error(400, "weak_password");
    change(front, &token, PASSWORD, "short").assert_error(400, "invalid_password");
    assert_eq!(me(front, &token).status, 200, "nothing changed");
    assert_eq!(login(front, &name, PASSWORD).status, 200);
}

#[test]
fn log_out_everywhere_ends_every_session_of_the_account_only() {
    let stack = Stack::start();
    let front = &stack.front;
    let (name, bystander) = (unique_name("all"), unique_name("by"));
    register(front, &name, PASSWORD);
    register(front, &bystander, PASSWORD);
    let tokens = [
        session(front, &name, PASSWORD),
        session(front, &name, PASSWORD),
    ];
    let unrelated = session(front, &bystander, PASSWORD);
    let ended = send_auth("DELETE", &front.url("/api/v1/me/sessions"), &tokens[0]);
    assert_eq!(ended.status, 204);
    for token in &tokens {
        me(front, token).assert_error(401, "unauthorized");
    }
    assert_eq!(me(front, &unrelated).status, 200);
    send_auth("DELETE", &front.url("/api/v1/me/sessions"), &tokens[1])
        .assert_error(401, "unauthorized");
    assert_eq!(me(front, &session(front, &name, PASSWORD)).status, 200);
}

#[test]
fn a_deleted_account_is_gone_everywhere_at_once() {
    let stack = Stack::start();
    let front = &stack.front;
    let name = unique_name("del");
    register(front, &name, PASSWORD);
    let (token, other) = (
        session(front, &name, PASSWORD),
        session(front, &name, PASSWORD),
    );
    let uploaded = send(
        "PUT",
        &front.url("/api/v1/me/picture"),
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "image/png"),
        ],
        Some(&png()),
    );
    assert_eq!(uploaded.status, 200);
    let picture_url = uploaded.json()["picture_url"].as_str().unwrap().to_owned();
    assert_eq!(get(&front.url(&picture_url)).status, 200);

    let delete = |password: &str| {
        send_json(
            "DELETE",
            &front.url("/api/v1/me"),
            Some(&token),
            &json!({"password": password}),
        )
    };
    delete("not the password").assert_error(401, "invalid_credentials");
    assert_eq!(
        me(front, &token).status,
        200,
        "a wrong password deletes nothing"
    );
    let deleted = delete(PASSWORD);
    assert_eq!(
        deleted.status,
        204,
        "{:?}",
        String::from_utf8_lossy(&deleted.body)
    );

    for token in [&token, &other] {
        me(front, token).assert_error(401, "unauthorized");
    }
    get(&front.url(&picture_url)).assert_error(404, "not_found");
    let gone = login(front, &name, PASSWORD);
    let nobody = login(front, &unique_name("nobody"), PASSWORD);
    gone.assert_error(401, "invalid_credentials");
    assert_eq!(
        without_request_id(&gone.json()),
        without_request_id(&nobody.json()),
        "the answer for a name nobody has"
    );
    // The name is held through the cooling-off period, whatever its case.
    send_json(
        "POST",
        &front.url("/api/v1/users"),
        None,
        &json!({"username": name.to_uppercase(), "password": NEW_PASSWORD}),
    )
    .assert_error(409, "username_taken");
}

/// A wrong current password costs what a failed login does: the same answer, and a whole
/// password verification (compared as in `security::unknown_users_and_wrong_passwords_take_the_same_time`).
#[test]
fn a_wrong_current_password_takes_as_long_as_a_failed_login() {
    let backend = Backend::start_with_context(context_with(
        TEST_PEPPER,
        REALISTIC,
        Duration::from_secs(3600),
    ));
    let front = Front::start(&[backend.addr]);
    const WARM_UP: usize = 10;
    const TRIES: usize = 100;
    // Fresh accounts, each tried once each way, so the throttle (10 failures per account)
    // never comes into it.
    let names: Vec<String> = (0..WARM_UP + TRIES).map(|_| unique_name("slow")).collect();
    let tokens: Vec<String> = thread::scope(|scope| {
        let handles: Vec<_> = names
            .chunks(names.len().div_ceil(6))
            .map(|chunk| {
                let front = &front;
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|name| {
                            register(front, name, PASSWORD);
                            session(front, name, PASSWORD)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });

    let mut stream = TcpStream::connect(front.addr).unwrap();
    let mut exchange_json = |method: &str, path: &str, token: Option<&str>, body: String| {
        let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{auth}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (answer, took) = timed(|| exchange(&mut stream, request.as_bytes(), WAIT));
        (answer.expect("an answer"), took)
    };
    let hasher = Hasher::new(REALISTIC, Keyring::single(TEST_PEPPER).unwrap(), 1).unwrap();
    let stored = hasher.hash(PASSWORD).unwrap();

    let [change, login, verify] = interleaved_medians(names.len(), WARM_UP, |i, action| {
        let (name, token) = (&names[i], &tokens[i]);
        match action {
            0 => {
                let body = json!({"current_password": "not the password",
                    "new_password": NEW_PASSWORD})
                .to_string();
                let (answer, took) = exchange_json("PUT", "/api/v1/me/password", Some(token), body);
                answer.assert_error(401, "invalid_credentials");
                took
            }
            1 => {
                let body = json!({"username": name, "password": "not the password"}).to_string();
                let (answer, took) = exchange_json("POST", "/api/v1/sessions", None, body);
                answer.assert_error(401, "invalid_credentials");
                took
            }
            _ => timed(|| hasher.verify("not the password", &stored)).1,
        }
    });
    println!(
        "median: wrong current password {change:?}, failed login {login:?}; one verification \
         {verify:?}"
    );
    assert!(
        verify * 2 > login,
        "a verification ({verify:?}) is under half a failed login ({login:?})"
    );
    // A change that skipped the verification on a wrong password, or answered before it,
    // would be a verification faster. The session check it adds is one indexed read.
    assert!(
        change.abs_diff(login) < verify / 2,
        "wrong current password {change:?}, failed login {login:?}: further apart than half a \
         verification ({verify:?})"
    );
}
