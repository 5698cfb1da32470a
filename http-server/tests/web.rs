//! The web pages over plain HTTP: what is served and with which headers, the session cookie the
//! pages' login sets and their logout clears, and the cross-site rules on cookie-authenticated
//! requests. (`browser.rs` drives the same pages in Chromium.)

use serde_json::json;

use crate::support::*;

/// Logs in the pages' way; returns the answer and the session cookie's value.
fn cookie_login(front: &Front, username: &str, password: &str) -> (Answer, String) {
    let body = serde_json::to_vec(&json!({"username": username, "password": password})).unwrap();
    let answer = send(
        "POST",
        &front.url("/api/v1/sessions?cookie=true"),
        &[
            ("Content-Type", "application/json"),
            ("Origin", &front.base),
        ],
        Some(&body),
    );
    assert_eq!(
        answer.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    let cookies = set_cookies(&answer);
    assert_eq!(cookies.len(), 2, "the session and the device: {cookies:?}");
    assert!(cookies[1].starts_with("gatehouse_device="), "{cookies:?}");
    let value = cookies[0]
        .strip_prefix("gatehouse_session=")
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();
    (answer, value)
}

#[test]
fn pages_and_assets_are_served_with_their_types_and_a_strict_policy() {
    let stack = Stack::start();
    let front = &stack.front;
    for (path, media_type) in [
        ("/signup", "text/html; charset=utf-8"),
        ("/login", "text/html; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let answer = get(&front.url(path));
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.header("Content-Type"), Some(media_type), "{path}");
        let policy = answer.header("Content-Security-Policy").unwrap();
        assert!(policy.contains("script-src 'self';"), "{path}: {policy}");
        assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert_eq!(answer.header("X-Content-Type-Options"), Some("nosniff"));
        assert_eq!(answer.header("Cache-Control"), Some("no-cache"), "{path}");
        // Revalidation: the same validator gives a body-less 304 with the same headers.
        let etag = answer.header("ETag").unwrap().to_owned();
        let again = send("GET", &front.url(path), &[("If-None-Match", &etag)], None);
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
        assert_eq!(again.header("ETag"), Some(etag.as_str()));
        let stale = send("GET", &front.url(path), &[("If-None-Match", "\"0\"")], None);
        assert_eq!(stale.status, 200, "{path}");
    }
    get(&front.url("/assets/nothing.js")).assert_error(404, "not_found");
    get(&front.url("/assets/../signup")).assert_error(404, "not_found");
    send("POST", &front.url("/login"), &[], None).assert_error(405, "method_not_allowed");
}

#[test]
fn the_profile_page_and_the_root_send_a_stranger_to_log_in() {
    let stack = Stack::start();
    let front = &stack.front;
    let profile = get(&front.url("/profile"));
    assert_eq!(profile.status, 303);
    assert_eq!(profile.header("Location"), Some("/login?from=profile"));
    assert_eq!(profile.header("Cache-Control"), Some("no-store"));
    let root = get(&front.url("/"));
    assert_eq!(root.status, 303);
    assert_eq!(root.header("Location"), Some("/login"));

    let cookie = "gatehouse_session=anything";
    let root = send("GET", &front.url("/"), &[("Cookie", cookie)], None);
    assert_eq!(root.header("Location"), Some("/profile"));
    let page = send("GET", &front.url("/profile"), &[("Cookie", cookie)], None);
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("data-page=\"profile\""));
}

#[test]
fn the_pages_login_puts_the_session_in_an_http_only_cookie_and_logout_clears_it() {
    let stack = Stack::start();
    let front = &stack.front;
    let (username, password, _) = new_session(front);
    let (answer, token) = cookie_login(front, &username, &password);
    let body = answer.json();
    assert!(
        body.get("token").is_none() && body.get("device_token").is_none(),
        "the tokens stay out of the body: {body}"
    );
    assert_eq!(body["user"]["username"], username.as_str());
    assert!(body["expires_at"].is_string());
    assert_eq!(answer.header("Cache-Control"), Some("no-store"));
    let cookie = set_cookies(&answer)[0].to_owned();
    for attribute in ["Path=/", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    // It lasts as long as the session (an hour in the tests' backend).
    let max_age: i64 = cookie
        .split("; ")
        .find_map(|attribute| attribute.strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap();
    assert!((3590..=3600).contains(&max_age), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP by default: {cookie}"
    );
    // The device cookie: as guarded as the session's, and kept across sessions.
    let device = set_cookies(&answer)[1].to_owned();
    for attribute in ["Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=34560000"] {
        assert!(device.contains(attribute), "{attribute} in {device}");
    }

    // The cookie is a session: it reads the profile, and the bearer form of the same token
    // works too.
    let jar = format!("other=1; gatehouse_session={token}");
    let me = send("GET", &front.url("/api/v1/me"), &[("Cookie", &jar)], None);
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["username"], username.as_str());
    assert_eq!(
        send_auth("GET", &front.url("/api/v1/me"), &token).status,
        200
    );

    // Logout with the cookie revokes the session and clears the cookie.
    let logout = send(
        "DELETE",
        &front.url("/api/v1/sessions/current"),
        &[("Cookie", &jar), ("Origin", &front.base)],
        None,
    );
    assert_eq!(logout.status, 204);
    let cleared = set_cookies(&logout);
    assert_eq!(cleared.len(), 1);
    assert!(cleared[0].starts_with("gatehouse_session=;"), "{cleared:?}");
    assert!(cleared[0].contains("Max-Age=0"), "{cleared:?}");
    send("GET", &front.url("/api/v1/me"), &[("Cookie", &jar)], None)
        .assert_error(401, "unauthorized");
    // A second logout with the stale cookie still clears it.
    let again = send(
        "DELETE",
        &front.url("/api/v1/sessions/current"),
        &[("Cookie", &jar), ("Origin", &front.base)],
        None,
    );
    again.assert_error(401, "unauthorized");
    let cleared = set_cookies(&again);
    assert!(
        cleared.len() == 1 && cleared[0].contains("Max-Age=0"),
        "{cleared:?}"
    );
}

#[test]
fn a_cookie_session_changes_nothing_from_another_site() {
    let stack = Stack::start();
    let front = &stack.front;
    let (username, password, _) = new_session(front);
    let (_, token) = cookie_login(front, &username, &password);
    let jar = format!("gatehouse_session={token}");
    let nickname = serde_json::to_vec(&json!({"nickname": "changed"})).unwrap();
    let me = front.url("/api/v1/me");
    // No Origin, another site, an opaque origin, another port, and this host over another
    // scheme (a plain-HTTP page injected into an HTTPS site's traffic would send that).
    let other_scheme = front.base.replace("http://", "https://");
    let foreign = [
        None,
        Some("http://evil.example"),
        Some("null"),
        Some("http://127.0.0.1:1"),
        Some(other_scheme.as_str()),
    ];
    for origin in foreign {
        let mut headers = vec![
            ("Cookie", jar.as_str()),
            ("Content-Type", "application/json"),
        ];
        if let Some(origin) = origin {
            headers.push(("Origin", origin));
        }
        send("PATCH", &me, &headers, Some(&nickname)).assert_error(403, "cross_site_request");
        let picture = [("Cookie", jar.as_str()), ("Content-Type", "image/png")];
        let mut picture = picture.to_vec();
        if let Some(origin) = origin {
            picture.push(("Origin", origin));
        }
        send(
            "PUT",
            &front.url("/api/v1/me/picture"),
            &picture,
            Some(&png()),
        )
        .assert_error(403, "cross_site_request");
        let mut logout = vec![("Cookie", jar.as_str())];
        if let Some(origin) = origin {
            logout.push(("Origin", origin));
        }
        let logout = send(
            "DELETE",
            &front.url("/api/v1/sessions/current"),
            &logout,
            None,
        );
        logout.assert_error(403, "cross_site_request");
        assert!(
            set_cookies(&logout).is_empty(),
            "another site cannot log the user out"
        );
        // Logging a visitor into an account of another site's choosing is refused too.
        let body = serde_json::to_vec(&json!({"username": username, "password": password}));
        let mut login = vec![("Content-Type", "application/json")];
        if let Some(origin) = origin {
            login.push(("Origin", origin));
        }
        let answer = send(
            "POST",
            &front.url("/api/v1/sessions?cookie=true"),
            &login,
            Some(&body.unwrap()),
        );
        answer.assert_error(403, "cross_site_request");
        assert!(set_cookies(&answer).is_empty());
    }
    // Nothing changed, and the session still works from the site itself.
    let profile = send("GET", &me, &[("Cookie", &jar)], None).json();
    assert_eq!(profile["nickname"], username.as_str());
    let same_site = [
        ("Cookie", jar.as_str()),
        ("Content-Type", "application/json"),
        ("Origin", front.base.as_str()),
    ];
    let changed = send("PATCH", &me, &same_site, Some(&nickname));
    assert_eq!(changed.status, 200);
    assert_eq!(changed.json()["nickname"], "changed");
    // A bearer token needs no Origin: browsers never attach one by themselves.
    let bearer = format!("Bearer {token}");
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    assert_eq!(send("PATCH", &me, &headers, Some(&nickname)).status, 200);
}

#[test]
fn the_cookie_flag_takes_true_or_false_only() {
    let stack = Stack::start();
    let front = &stack.front;
    let (username, password, _) = new_session(front);
    let body = serde_json::to_vec(&json!({"username": username, "password": password})).unwrap();
    let json = [("Content-Type", "application/json")];
    let url = front.url("/api/v1/sessions?cookie=yes");
    send("POST", &url, &json, Some(&body)).assert_error(400, "bad_request");
    let plain = send(
        "POST",
        &front.url("/api/v1/sessions?cookie=false"),
        &json,
        Some(&body),
    );
    assert_eq!(plain.status, 200);
    assert!(plain.json()["token"].is_string());
    assert!(set_cookies(&plain).is_empty());
}

#[test]
fn a_cookie_that_names_no_session_is_removed_and_two_are_refused() {
    let stack = Stack::start();
    let front = &stack.front;
    let (username, password, _) = new_session(front);
    let me = front.url("/api/v1/me");
    // Tampered with: 401, and the answer removes it.
    let stale = send("GET", &me, &[("Cookie", "gatehouse_session=forged")], None);
    stale.assert_error(401, "unauthorized");
    let cleared = set_cookies(&stale);
    assert!(
        cleared.len() == 1 && cleared[0].contains("Max-Age=0"),
        "{cleared:?}"
    );
    // A bearer client's 401 sets no cookie.
    let bearer = send_auth("GET", &me, "forged");
    bearer.assert_error(401, "unauthorized");
    assert!(set_cookies(&bearer).is_empty());
    // Two session cookies (one planted under a parent domain, say) are no session, even when
    // one of them is valid.
    let (_, token) = cookie_login(front, &username, &password);
    let one = format!("gatehouse_session={token}");
    assert_eq!(send("GET", &me, &[("Cookie", &one)], None).status, 200);
    let two = format!("gatehouse_session=planted; {one}");
    send("GET", &me, &[("Cookie", &two)], None).assert_error(401, "unauthorized");
    let split = [
        ("Cookie", one.as_str()),
        ("Cookie", "gatehouse_session=planted"),
    ];
    let refused = send("GET", &me, &split, None);
    refused.assert_error(401, "unauthorized");
    // No clearing `Set-Cookie` then: it would remove ours and leave the planted one.
    assert!(
        set_cookies(&refused).is_empty(),
        "{:?}",
        set_cookies(&refused)
    );
    let refused = send("GET", &me, &[("Cookie", &two)], None);
    assert!(set_cookies(&refused).is_empty());

    // A wrong password at the login page says nothing of the session the browser holds.
    let body = serde_json::to_vec(&json!({"username": username, "password": "wrong one"}));
    let wrong = send(
        "POST",
        &front.url("/api/v1/sessions?cookie=true"),
        &[
            ("Cookie", one.as_str()),
            ("Content-Type", "application/json"),
            ("Origin", &front.base),
        ],
        Some(&body.unwrap()),
    );
    wrong.assert_error(401, "invalid_credentials");
    assert!(set_cookies(&wrong).is_empty(), "{:?}", set_cookies(&wrong));
    assert_eq!(send("GET", &me, &[("Cookie", &one)], None).status, 200);

    // Behind HTTP Basic auth the browser adds its own Authorization header: the cookie is still
    // the session.
    let basic = [
        ("Cookie", one.as_str()),
        ("Authorization", "Basic dXNlcjpwYXNz"),
    ];
    assert_eq!(send("GET", &me, &basic, None).status, 200);
}

#[test]
fn pages_answer_head_without_a_body() {
    let stack = Stack::start();
    let answer = send("HEAD", &stack.front.url("/login"), &[], None);
    assert_eq!(answer.status, 200);
    assert!(answer.body.is_empty());
    assert_eq!(
        answer.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
}

#[test]
fn behind_a_tls_proxy_the_cookie_is_secure_and_the_origin_is_the_configured_one() {
    let backend = Backend::start();
    let public = "https://accounts.example.com";
    let front = Front::start_with(
        http_server::Config {
            secure_cookies: true,
            public_origin: Some(public.to_owned()),
            ..config(&[backend.addr])
        },
        std::time::Duration::from_secs(5),
    );
    let (username, password, _) = new_session(&front);
    let body = serde_json::to_vec(&json!({"username": username, "password": password})).unwrap();
    let login = |origin: &str| {
        send(
            "POST",
            &front.url("/api/v1/sessions?cookie=true"),
            &[("Content-Type", "application/json"), ("Origin", origin)],
            Some(&body),
        )
    };
    // The Host the server sees is not where browsers are: only the configured origin counts.
    login(&front.base).assert_error(403, "cross_site_request");
    login("http://accounts.example.com").assert_error(403, "cross_site_request");
    let answer = login(public);
    assert_eq!(answer.status, 200);
    let cookie = set_cookies(&answer)[0].to_owned();
    assert!(cookie.starts_with("__Host-gatehouse_session="), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
    let device = set_cookies(&answer)[1].to_owned();
    assert!(device.starts_with("__Host-gatehouse_device="), "{device}");
    assert!(device.contains("; Secure"), "{device}");
    let token = cookie["__Host-gatehouse_session=".len()..]
        .split(';')
        .next()
        .unwrap();
    // Only the __Host- cookie is the session; one without the prefix (which a sibling
    // subdomain could set) is not.
    let me = front.url("/api/v1/me");
    let host = format!("__Host-gatehouse_session={token}");
    assert_eq!(send("GET", &me, &[("Cookie", &host)], None).status, 200);
    let plain = format!("gatehouse_session={token}");
    send("GET", &me, &[("Cookie", &plain)], None).assert_error(401, "unauthorized");
}
