//! The account lifecycle over real sockets and PostgreSQL: a password change, log out
//! everywhere and deletion, each seen from two tcp-servers on one database (what one decides,
//! the other enforces at once), and the strength rule for new passwords.

use std::time::Duration;

use proto::{ErrorCode, Profile, Request, Response, Secret, Session};

use crate::support::{Client, FAST, TestServer, context, database_url, unique_name};

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "violet harbour lantern 42";

fn register(client: &mut Client, name: &str) -> Profile {
    match client.call(Request::Register(proto::Register {
        username: name.to_owned(),
        password: Secret::new(PASSWORD),
        nickname: None,
        client: None,
    })) {
        Response::Register(profile) => profile,
        other => panic!("registering {name}: {other:?}"),
    }
}

fn login(name: &str, password: &str) -> Request {
    Request::Login(proto::Login {
        username: name.to_owned(),
        password: Secret::new(password),
        client: Some("192.0.2.10".to_owned()),
        device: None,
    })
}

fn session(client: &mut Client, name: &str, password: &str) -> Session {
    match client.call(login(name, password)) {
        Response::Login(session) => session,
        other => panic!("logging in as {name}: {other:?}"),
    }
}

fn profile(client: &mut Client, token: &Secret) -> Response {
    client.call(Request::GetProfile(proto::GetProfile {
        token: token.clone(),
    }))
}

fn change(token: &Secret, current: &str, new: &str) -> Request {
    Request::ChangePassword(proto::ChangePassword {
        token: token.clone(),
        current_password: Secret::new(current),
        new_password: Secret::new(new),
        client: Some("192.0.2.10".to_owned()),
        device: None,
    })
}

fn delete(token: &Secret, password: &str) -> Request {
    Request::DeleteAccount(proto::DeleteAccount {
        token: token.clone(),
        password: Secret::new(password),
        client: Some("192.0.2.10".to_owned()),
        device: None,
    })
}

fn code(response: &Response) -> Option<ErrorCode> {
    match response {
        Response::Error(error) => Some(error.code),
        _ => None,
    }
}

/// Two servers on the test database, and a client of each.
fn two_servers() -> (TestServer, TestServer, Client, Client) {
    let (a, b) = (TestServer::start(4), TestServer::start(4));
    let (ca, cb) = (a.client(), b.client());
    (a, b, ca, cb)
}

#[test]
fn a_password_change_ends_every_other_session_on_every_server_and_replaces_the_callers() {
    let (_a, _b, mut one, mut two) = two_servers();
    let name = unique_name("changer");
    let account = register(&mut one, &name);
    let caller = session(&mut one, &name, PASSWORD);
    let other = session(&mut two, &name, PASSWORD);

    let replaced = match one.call(change(&caller.token, PASSWORD, NEW_PASSWORD)) {
        Response::ChangePassword(session) => session,
        other => panic!("the change failed: {other:?}"),
    };
    assert_eq!(replaced.profile, account);
    assert_ne!(replaced.token, caller.token, "a new token");

    for (server, client) in [("one", &mut one), ("two", &mut two)] {
        // The caller goes on with the token of the answer; every earlier token is refused.
        assert_eq!(
            profile(client, &replaced.token),
            Response::GetProfile(account.clone()),
            "the new session on server {server}"
        );
        for (which, token) in [("other", &other.token), ("caller's old", &caller.token)] {
            assert_eq!(
                code(&profile(client, token)),
                Some(ErrorCode::Unauthorized),
                "the {which} session on server {server}"
            );
        }
        assert_eq!(
            code(&client.call(login(&name, PASSWORD))),
            Some(ErrorCode::InvalidCredentials),
            "the old password on server {server}"
        );
        session(client, &name, NEW_PASSWORD);
    }
}

#[test]
fn a_wrong_current_password_is_a_failed_login_and_counts_in_the_throttle() {
    let server = TestServer::start(4);
    let mut client = server.client();
    let name = unique_name("guessed");
    register(&mut client, &name);
    let owner = session(&mut client, &name, PASSWORD);
    let failed_login = client.call(login(&name, "not the password"));
    assert_eq!(code(&failed_login), Some(ErrorCode::InvalidCredentials));

    // Nine more wrong current passwords: with the failed login, the 10 failures an account
    // allows unrecognised clients.
    for attempt in 0..9 {
        let answer = client.call(change(&owner.token, "not the password", NEW_PASSWORD));
        assert_eq!(answer, failed_login, "attempt {attempt}: the same answer");
    }
    let locked = client.call(change(&owner.token, PASSWORD, NEW_PASSWORD));
    assert_eq!(
        code(&locked),
        Some(ErrorCode::TooManyRequests),
        "{locked:?}"
    );
    let locked = client.call(login(&name, PASSWORD));
    assert_eq!(
        code(&locked),
        Some(ErrorCode::TooManyRequests),
        "{locked:?}"
    );
    // The session itself is untouched, and the password unchanged.
    assert!(matches!(
        profile(&mut client, &owner.token),
        Response::GetProfile(_)
    ));
}

#[test]
fn guessable_new_passwords_are_refused_with_the_reason_and_change_nothing() {
    let server = TestServer::start(4);
    let mut client = server.client();
    let name = unique_name("weakling");
    register(&mut client, &name);
    let owner = session(&mut client, &name, PASSWORD);
    for (weak, expected) in [
        ("password", ErrorCode::WeakPassword),
        ("12345678", ErrorCode::WeakPassword),
        ("qwertyuiop", ErrorCode::WeakPassword),
        (&format!("{name}1"), ErrorCode::WeakPassword),
        ("short", ErrorCode::InvalidPassword),
    ] {
        let answer = client.call(change(&owner.token, PASSWORD, weak));
        let Response::Error(error) = &answer else {
            panic!("{weak:?} was accepted: {answer:?}");
        };
        assert_eq!(error.code, expected, "{weak:?}: {error:?}");
        if expected == ErrorCode::WeakPassword {
            assert!(
                error
                    .message
                    .starts_with("this password is too easy to guess.")
                    && error.message.len() > "this password is too easy to guess.".len(),
                "{weak:?}: the message names the reason: {:?}",
                error.message
            );
        }
    }
    // Nothing changed: the old password and the session still work.
    session(&mut client, &name, PASSWORD);
    assert!(matches!(
        profile(&mut client, &owner.token),
        Response::GetProfile(_)
    ));
}

#[test]
fn guessable_passwords_are_refused_at_registration() {
    let server = TestServer::start(4);
    let mut client = server.client();
    let name = unique_name("newcomer");
    for weak in [
        "password",
        "12345678",
        "qwertyuiop",
        &format!("{name}7"),
        "iloveyou1",
    ] {
        let answer = client.call(Request::Register(proto::Register {
            username: name.clone(),
            password: Secret::new(weak),
            nickname: None,
            client: None,
        }));
        assert_eq!(code(&answer), Some(ErrorCode::WeakPassword), "{weak:?}");
    }
    // Refused attempts created nothing: the name is still free.
    register(&mut client, &name);
}

#[test]
fn log_out_everywhere_ends_every_session_of_the_account_and_no_other() {
    let (_a, _b, mut one, mut two) = two_servers();
    let (name, bystander) = (unique_name("leaver"), unique_name("stayer"));
    register(&mut one, &name);
    let stayer = register(&mut one, &bystander);
    let caller = session(&mut one, &name, PASSWORD);
    let elsewhere = session(&mut two, &name, PASSWORD);
    let unrelated = session(&mut two, &bystander, PASSWORD);

    assert_eq!(
        one.call(Request::LogoutAll(proto::LogoutAll {
            token: caller.token.clone()
        })),
        Response::LogoutAll(())
    );
    for (server, client) in [("one", &mut one), ("two", &mut two)] {
        for (which, token) in [("caller's", &caller.token), ("other", &elsewhere.token)] {
            assert_eq!(
                code(&profile(client, token)),
                Some(ErrorCode::Unauthorized),
                "the {which} session on server {server}"
            );
        }
        assert_eq!(
            profile(client, &unrelated.token),
            Response::GetProfile(stayer.clone()),
            "another account's session on server {server}"
        );
    }
    // A new login opens a session that works.
    let again = session(&mut two, &name, PASSWORD);
    assert!(matches!(
        profile(&mut one, &again.token),
        Response::GetProfile(_)
    ));
    // An ended session cannot end the new one.
    let replay = one.call(Request::LogoutAll(proto::LogoutAll {
        token: caller.token.clone(),
    }));
    assert_eq!(code(&replay), Some(ErrorCode::Unauthorized));
    assert!(matches!(
        profile(&mut one, &again.token),
        Response::GetProfile(_)
    ));
}

/// A PNG of 1x1 pixel.
fn tiny_png() -> Vec<u8> {
    let mut png = Vec::new();
    image::RgbaImage::from_pixel(1, 1, image::Rgba([200, 10, 10, 255]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

#[test]
fn a_deleted_account_is_gone_at_once_and_its_name_stays_taken() {
    let (_a, _b, mut one, mut two) = two_servers();
    let name = unique_name("goner");
    register(&mut one, &name);
    let caller = session(&mut one, &name, PASSWORD);
    let elsewhere = session(&mut two, &name, PASSWORD);
    let Response::SetPicture(with_picture) = one.call(Request::SetPicture(proto::SetPicture {
        token: caller.token.clone(),
        image: tiny_png(),
    })) else {
        panic!("setting the picture failed");
    };
    let key = with_picture.picture.expect("a picture key");

    // The wrong password deletes nothing, and is a failed login.
    let wrong = one.call(delete(&caller.token, "not the password"));
    assert_eq!(code(&wrong), Some(ErrorCode::InvalidCredentials));
    assert!(matches!(
        profile(&mut one, &caller.token),
        Response::GetProfile(_)
    ));

    assert_eq!(
        one.call(delete(&caller.token, PASSWORD)),
        Response::DeleteAccount(())
    );
    let unknown = two.call(login(&unique_name("nobody"), PASSWORD));
    for (server, client) in [("one", &mut one), ("two", &mut two)] {
        for token in [&caller.token, &elsewhere.token] {
            assert_eq!(
                code(&profile(client, token)),
                Some(ErrorCode::Unauthorized),
                "a session of the deleted account on server {server}"
            );
        }
        assert_eq!(
            client.call(login(&name, PASSWORD)),
            unknown,
            "logging in to the deleted account, on server {server}: the answer for a name \
             nobody has"
        );
        assert_eq!(
            code(&client.call(Request::GetPicture(proto::GetPicture { key: key.clone() }))),
            Some(ErrorCode::NotFound),
            "its picture on server {server}"
        );
        // The name stays taken through the cooling-off period, in any case.
        let again = client.call(Request::Register(proto::Register {
            username: name.to_uppercase(),
            password: Secret::new(NEW_PASSWORD),
            nickname: None,
            client: None,
        }));
        assert_eq!(
            code(&again),
            Some(ErrorCode::UsernameTaken),
            "registering the name again on server {server}"
        );
    }

    // The pictures and the personal data are gone from the database, not only hidden.
    let mut db = postgres::Client::connect(&database_url(), postgres::NoTls).unwrap();
    let pictures: i64 = db
        .query_one(
            "SELECT count(*) FROM pictures WHERE user_id = $1",
            &[&with_picture.id],
        )
        .unwrap()
        .get(0);
    assert_eq!(pictures, 0, "the account's pictures");
    let row = db
        .query_one(
            "SELECT password_hash, nickname, picture_id FROM users WHERE id = $1",
            &[&with_picture.id],
        )
        .unwrap();
    let (hash, nickname, picture): (String, String, Option<String>) =
        (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (hash.as_str(), nickname.as_str(), picture),
        ("", "", None),
        "what remains of the account is its name"
    );
}

#[test]
fn a_deleted_name_is_free_again_after_the_cooling_off_period() {
    let mut ctx = context(FAST, Duration::from_secs(3600));
    ctx.deleted_username_hold = Duration::from_secs(1);
    let server = TestServer::start_with(4, ctx);
    let mut client = server.client();
    let name = unique_name("reborn");
    let first = register(&mut client, &name);
    let token = session(&mut client, &name, PASSWORD).token;
    assert_eq!(
        client.call(delete(&token, PASSWORD)),
        Response::DeleteAccount(())
    );
    let early = client.call(Request::Register(proto::Register {
        username: name.clone(),
        password: Secret::new(NEW_PASSWORD),
        nickname: None,
        client: None,
    }));
    assert_eq!(code(&early), Some(ErrorCode::UsernameTaken), "{early:?}");
    // The period is judged by the database's clock; past it, registration frees the name
    // itself, without waiting for the janitor.
    std::thread::sleep(Duration::from_millis(1_500));
    let later = match client.call(Request::Register(proto::Register {
        username: name.clone(),
        password: Secret::new(NEW_PASSWORD),
        nickname: None,
        client: None,
    })) {
        Response::Register(profile) => profile,
        other => panic!("registering the freed name: {other:?}"),
    };
    assert_ne!(later.id, first.id, "a new account, not the old one back");
    assert_eq!(
        code(&client.call(login(&name, PASSWORD))),
        Some(ErrorCode::InvalidCredentials),
        "the old password is not the new account's"
    );
    session(&mut client, &name, NEW_PASSWORD);
    // The old account's token does not open the new one.
    assert_eq!(
        code(&profile(&mut client, &token)),
        Some(ErrorCode::Unauthorized)
    );
}
