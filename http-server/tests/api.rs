//! API v1 end to end: every row of the contract, its errors, and what every path shares
//! (routing, methods, body limits, media types, JSON decoding), against the real tcp-server.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::support::*;

const PASSWORD: &str = "correct horse battery";
const WAIT: Duration = Duration::from_secs(10);

/// Asserts `value` is a profile with exactly the contract's keys, and returns its id.
fn assert_profile(value: &Value, username: &str, nickname: &str) -> i64 {
    let keys: BTreeSet<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["id", "username", "nickname", "picture_url"]),
        "{value}"
    );
    assert_eq!(value["username"], username, "{value}");
    assert_eq!(value["nickname"], nickname, "{value}");
    assert!(
        value["picture_url"].is_null() || value["picture_url"].is_string(),
        "{value}"
    );
    let id = value["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("id: {value}"));
    assert!(id > 0, "{value}");
    id
}

fn users(front: &Front, body: &Value) -> Answer {
    send_json("POST", &front.url("/api/v1/users"), None, body)
}

fn me(front: &Front, token: &str) -> Answer {
    send_auth("GET", &front.url("/api/v1/me"), token)
}

/// Sends `body` verbatim as `application/json`.
fn send_body(front: &Front, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    send(method, &front.url(path), &headers, Some(body))
}

fn upload(front: &Front, token: &str, content_type: &str, body: &[u8]) -> Answer {
    let auth = format!("Bearer {token}");
    send(
        "PUT",
        &front.url("/api/v1/me/picture"),
        &[("Authorization", &auth), ("Content-Type", content_type)],
        Some(body),
    )
}

/// A 1x1 GIF (the classic transparent pixel).
const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

#[test]
fn register_returns_the_new_profile() {
    let stack = Stack::start();
    let front = &stack.front;

    let username = unique_name("Reg.");
    let created = users(
        front,
        &json!({"username": username, "password": PASSWORD, "nickname": "  Ünïcode 🐱  "}),
    );
    assert_eq!(created.status, 201);
    assert_eq!(created.header("Content-Type"), Some("application/json"));
    // The nickname is stored trimmed; the username as typed.
    let id = assert_profile(&created.json(), &username, "Ünïcode 🐱");
    assert!(created.json()["picture_url"].is_null());

    // Without a nickname (absent or null), the nickname is the username.
    let bare = unique_name("bare");
    let created = users(front, &json!({"username": bare, "password": PASSWORD}));
    assert_eq!(created.status, 201);
    let bare_id = assert_profile(&created.json(), &bare, &bare);
    assert_ne!(bare_id, id);
    let nulled = unique_name("null");
    let created = users(
        front,
        &json!({"username": nulled, "password": PASSWORD, "nickname": null}),
    );
    assert_eq!(created.status, 201);
    assert_profile(&created.json(), &nulled, &nulled);

    // The new account can log in at once, and sees the same profile.
    let session = login(front, &username, PASSWORD);
    assert_eq!(session.status, 200);
    assert_eq!(session.json()["user"]["id"], id);
}

#[test]
fn register_refuses_fields_that_break_the_rules() {
    let stack = Stack::start();
    let front = &stack.front;
    let name = || unique_name("rules");

    for bad in [
        "ab",
        &"a".repeat(33),
        "has space",
        "émile",
        "semi;colon",
        "",
    ] {
        users(front, &json!({"username": bad, "password": PASSWORD}))
            .assert_error(400, "invalid_username");
    }
    for bad in ["1234567", &"p".repeat(129), &"é".repeat(129), ""] {
        users(front, &json!({"username": name(), "password": bad}))
            .assert_error(400, "invalid_password");
    }
    for bad in [
        "",
        "   ",
        &"x".repeat(65),
        "tab\there",
        "bell\u{7}",
        "new\nline",
    ] {
        users(
            front,
            &json!({"username": name(), "password": PASSWORD, "nickname": bad}),
        )
        .assert_error(400, "invalid_nickname");
    }
    // The limits themselves are allowed: characters are counted, not bytes.
    let edge = format!("{}{}", name(), "z".repeat(15));
    let created = users(
        front,
        &json!({
            "username": edge,
            "password": format!("{PASSWORD}{}", "é".repeat(128 - PASSWORD.len())),
            "nickname": "字".repeat(64),
        }),
    );
    assert_eq!(created.status, 201, "{:?}", created.json());
    assert_eq!(edge.len(), 32);
}

#[test]
fn usernames_are_unique_without_regard_to_case() {
    let stack = Stack::start();
    let front = &stack.front;
    let username = unique_name("Case.");
    register(front, &username, PASSWORD);

    for same in [
        username.clone(),
        username.to_ascii_uppercase(),
        username.to_ascii_lowercase(),
    ] {
        users(
            front,
            &json!({"username": same, "password": "another password"}),
        )
        .assert_error(409, "username_taken");
    }
    // The original password still works: the refused attempts changed nothing.
    assert_eq!(login(front, &username, PASSWORD).status, 200);
    // And the login itself is case-insensitive on the username.
    assert_eq!(
        login(front, &username.to_ascii_uppercase(), PASSWORD).status,
        200
    );
}

#[test]
fn login_returns_a_token_its_expiry_and_the_profile() {
    let stack = Stack::start();
    let front = &stack.front;
    let username = unique_name("login");
    let id = register(front, &username, PASSWORD)["id"].as_i64().unwrap();

    let before = SystemTime::now();
    let session = login(front, &username, PASSWORD);
    assert_eq!(session.status, 200);
    assert_eq!(session.header("Content-Type"), Some("application/json"));
    let body = session.json();
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["token", "expires_at", "user", "device_token"]),
        "{body}"
    );
    assert_eq!(assert_profile(&body["user"], &username, &username), id);
    let token = body["token"].as_str().unwrap();
    assert!(token.len() >= 32, "{token}");
    assert_eq!(body["device_token"].as_str().unwrap().len(), 78, "{body}");
    assert_eq!(session.header("Cache-Control"), Some("no-store"));

    // RFC 3339, one session lifetime (an hour in the test backend) from now.
    let expires_at = body["expires_at"].as_str().unwrap();
    let expiry = humantime::parse_rfc3339(expires_at)
        .unwrap_or_else(|e| panic!("{expires_at} is not RFC 3339: {e}"));
    let ttl = expiry.duration_since(before).unwrap_or_default();
    assert!(
        ttl > Duration::from_secs(3500) && ttl < Duration::from_secs(3700),
        "{expires_at} is {ttl:?} away"
    );

    // The token works; a second login opens a second, different session.
    assert_eq!(me(front, token).status, 200);
    let again = login(front, &username, PASSWORD).json();
    assert_ne!(again["token"], body["token"]);
}

#[test]
fn login_failures_are_indistinguishable() {
    let stack = Stack::start();
    let front = &stack.front;
    let username = unique_name("creds");
    register(front, &username, PASSWORD);

    let wrong_password = login(front, &username, "not the password");
    let unknown_user = login(front, &unique_name("nobody"), PASSWORD);
    let impossible_user = login(front, "no such user!", PASSWORD);
    wrong_password.assert_error(401, "invalid_credentials");
    for other in [&unknown_user, &impossible_user] {
        other.assert_error(401, "invalid_credentials");
        assert_eq!(
            without_request_id(&other.json()),
            without_request_id(&wrong_password.json()),
            "the bodies must be identical but for the request's id"
        );
        assert_eq!(
            other.header("Content-Type"),
            wrong_password.header("Content-Type")
        );
        assert_eq!(
            other.header("WWW-Authenticate"),
            wrong_password.header("WWW-Authenticate")
        );
    }
}

#[test]
fn repeated_failed_logins_get_429_with_retry_after() {
    // tcp-server's default: 10 failures from unrecognised clients of one account, then a
    // lockout of two minutes.
    let stack = Stack::start();
    let front = &stack.front;
    let username = unique_name("guessed");
    register(front, &username, PASSWORD);
    for _ in 0..10 {
        login(front, &username, "not the password").assert_error(401, "invalid_credentials");
    }
    let refused = login(front, &username, PASSWORD);
    refused.assert_error(429, "too_many_requests");
    let retry_after: u64 = refused
        .header("Retry-After")
        .expect("a 429 says when to retry")
        .parse()
        .unwrap();
    assert!((119..=120).contains(&retry_after), "{retry_after}");
    // Other usernames from the same client are not affected.
    new_session(front);
}

#[test]
fn logout_revokes_exactly_that_session() {
    let stack = Stack::start();
    let front = &stack.front;
    let (username, password, token) = new_session(front);
    let other = login(front, &username, &password).json()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let logout = send_auth("DELETE", &front.url("/api/v1/sessions/current"), &token);
    assert_eq!(logout.status, 204);
    assert!(logout.body.is_empty());

    me(front, &token).assert_error(401, "unauthorized");
    send_auth("DELETE", &front.url("/api/v1/sessions/current"), &token)
        .assert_error(401, "unauthorized");
    // The account's other session is untouched.
    assert_eq!(me(front, &other).status, 200);
}

#[test]
fn requests_without_a_valid_token_are_unauthorized() {
    let stack = Stack::start();
    let front = &stack.front;
    let (_, _, token) = new_session(front);
    let revoked = {
        let (_, _, token) = new_session(front);
        let out = send_auth("DELETE", &front.url("/api/v1/sessions/current"), &token);
        assert_eq!(out.status, 204);
        token
    };
    // A real token with one character in its middle changed (the last one may carry only
    // padding bits): its signature no longer matches.
    let tampered = {
        let mut bytes = token.clone().into_bytes();
        let middle = bytes.len() / 2;
        bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let basic = format!("Basic {token}");
    let no_space = format!("Bearer{token}");
    let revoked = format!("Bearer {revoked}");
    let tampered = format!("Bearer {tampered}");
    let long = format!("Bearer {}", "a".repeat(600));
    let authorizations: [Option<&str>; 9] = [
        None,
        Some(""),
        Some("Bearer"),
        Some("Bearer "),
        Some(&basic),
        Some(&no_space),
        Some("Bearer garbage.token.here"),
        Some(&revoked),
        Some(&tampered),
    ];
    // (method, path, and the body a valid request would carry with its type, if any)
    let routes = [
        ("GET", "/api/v1/me", None),
        ("PATCH", "/api/v1/me", Some("application/json")),
        ("DELETE", "/api/v1/sessions/current", None),
        ("PUT", "/api/v1/me/picture", Some("image/png")),
    ];
    for (method, path, content_type) in routes {
        let body: Option<&[u8]> = match content_type {
            Some("image/png") => Some(b"never read"),
            Some(_) => Some(br#"{"nickname":"x"}"#),
            None => None,
        };
        for authorization in authorizations.iter().copied().chain([Some(long.as_str())]) {
            let mut headers = Vec::new();
            if let Some(value) = authorization {
                headers.push(("Authorization", value));
            }
            if let Some(content_type) = content_type {
                headers.push(("Content-Type", content_type));
            }
            let answer = send(method, &front.url(path), &headers, body);
            answer.assert_error(401, "unauthorized");
            assert_eq!(
                answer.header("WWW-Authenticate"),
                Some("Bearer"),
                "{method} {path} with {authorization:?}"
            );
        }
    }
    // The scheme is case-insensitive, and the good token still works after all that.
    let lower = format!("bearer {token}");
    let answer = send(
        "GET",
        &front.url("/api/v1/me"),
        &[("Authorization", &lower)],
        None,
    );
    assert_eq!(answer.status, 200);
}

#[test]
fn the_profile_and_nickname_round_trip_unicode() {
    let stack = Stack::start();
    let front = &stack.front;
    let (username, _, token) = new_session(front);

    let profile = me(front, &token);
    assert_eq!(profile.status, 200);
    assert_eq!(profile.header("Content-Type"), Some("application/json"));
    assert_profile(&profile.json(), &username, &username);

    for nickname in ["🦀 Ferris 🎉", "山田太郎", "Zoë, ünïcödé — ok", "👨‍👩‍👧‍👦"]
    {
        let patched = send_json(
            "PATCH",
            &front.url("/api/v1/me"),
            Some(&token),
            &json!({"nickname": nickname}),
        );
        assert_eq!(patched.status, 200, "{nickname}");
        assert_profile(&patched.json(), &username, nickname);
        assert_profile(&me(front, &token).json(), &username, nickname);
    }
    // Trimmed as at registration.
    let patched = send_json(
        "PATCH",
        &front.url("/api/v1/me"),
        Some(&token),
        &json!({"nickname": "  spaced  "}),
    );
    assert_profile(&patched.json(), &username, "spaced");

    for bad in ["", "  ", &"x".repeat(65), "ctrl\u{1}"] {
        send_json(
            "PATCH",
            &front.url("/api/v1/me"),
            Some(&token),
            &json!({"nickname": bad}),
        )
        .assert_error(400, "invalid_nickname");
    }
    for bad in [
        &br#"{"nickname": 5}"#[..],
        br#"{"nickname": null}"#,
        br#"{}"#,
        br#"{"nickname": "a", "username": "b"}"#,
        br#"{"nickname": "#,
    ] {
        send_body(front, "PATCH", "/api/v1/me", Some(&token), bad)
            .assert_error(400, "invalid_json");
    }
    // Nothing refused changed the nickname.
    assert_profile(&me(front, &token).json(), &username, "spaced");
    send_json(
        "PATCH",
        &front.url("/api/v1/me"),
        None,
        &json!({"nickname": "x"}),
    )
    .assert_error(401, "unauthorized");
}

#[test]
fn an_uploaded_picture_is_served_re_encoded_with_cache_headers() {
    let stack = Stack::start();
    let front = &stack.front;
    let (username, _, token) = new_session(front);

    let uploaded = upload(front, &token, "image/png", &png());
    assert_eq!(
        uploaded.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&uploaded.body)
    );
    let profile = uploaded.json();
    assert_profile(&profile, &username, &username);
    let url = profile["picture_url"].as_str().unwrap().to_owned();
    let key = url
        .strip_prefix("/api/v1/pictures/")
        .unwrap_or_else(|| panic!("{url}"));
    assert_eq!(me(front, &token).json()["picture_url"], url.as_str());

    // Served without a token, re-encoded (so not necessarily the uploaded bytes) as a PNG.
    let picture = get(&front.url(&url));
    assert_eq!(picture.status, 200);
    assert_eq!(picture.header("Content-Type"), Some("image/png"));
    assert!(
        picture.body.starts_with(PNG_SIGNATURE),
        "{:?}",
        &picture.body[..8.min(picture.body.len())]
    );
    let etag = format!("\"{key}\"");
    assert_eq!(picture.header("ETag"), Some(etag.as_str()));
    let cache = picture.header("Cache-Control").unwrap();
    assert!(
        cache.contains("max-age=") && cache.contains("public"),
        "{cache}"
    );
    assert_eq!(picture.header("X-Content-Type-Options"), Some("nosniff"));

    // A client that holds this version gets 304 and no body, however it lists its tags.
    for tags in [etag.clone(), format!("\"other\", {etag}"), "*".to_owned()] {
        let cached = send("GET", &front.url(&url), &[("If-None-Match", &tags)], None);
        assert_eq!(cached.status, 304, "{tags}");
        assert!(cached.body.is_empty());
        assert_eq!(cached.header("ETag"), Some(etag.as_str()));
        assert!(cached.header("Cache-Control").is_some());
    }
    let stale = send(
        "GET",
        &front.url(&url),
        &[("If-None-Match", "\"1-0000000000000000\"")],
        None,
    );
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, picture.body);

    // Any of the four image types may be declared; the content decides. A GIF is stored as a
    // PNG, replaces the old picture, and the old URL is gone.
    let replaced = upload(front, &token, "image/gif", GIF);
    assert_eq!(
        replaced.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&replaced.body)
    );
    let new_url = replaced.json()["picture_url"].as_str().unwrap().to_owned();
    assert_ne!(new_url, url);
    let gif = get(&front.url(&new_url));
    assert_eq!(gif.status, 200);
    assert_eq!(gif.header("Content-Type"), Some("image/png"));
    assert!(gif.body.starts_with(PNG_SIGNATURE));
    get(&front.url(&url)).assert_error(404, "not_found");
    for declared in ["image/jpeg", "image/webp", "IMAGE/PNG; q=1"] {
        let answer = upload(front, &token, declared, &png());
        assert_eq!(
            answer.status,
            200,
            "{declared}: {:?}",
            String::from_utf8_lossy(&answer.body)
        );
    }
}

#[test]
fn picture_uploads_that_are_not_images_are_refused() {
    let stack = Stack::start();
    let front = &stack.front;
    let (_, _, token) = new_session(front);
    let auth = format!("Bearer {token}");

    // Declared types outside the four, or none.
    for content_type in [
        "text/plain",
        "application/octet-stream",
        "image/svg+xml",
        "application/json",
        "image/pngx",
    ] {
        upload(front, &token, content_type, &png()).assert_error(415, "unsupported_media_type");
    }
    send(
        "PUT",
        &front.url("/api/v1/me/picture"),
        &[("Authorization", &auth)],
        Some(&png()),
    )
    .assert_error(415, "unsupported_media_type");
    // Declared as an image, but the bytes are not one (or a damaged one): tcp-server decides.
    let mut truncated = png();
    truncated.truncate(40);
    for body in [
        &b"this is plain text, not a PNG"[..],
        b"",
        &truncated,
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    ] {
        upload(front, &token, "image/png", body).assert_error(415, "unsupported_media_type");
    }
    // Nothing was stored.
    assert!(me(front, &token).json()["picture_url"].is_null());
    // Without a token the type is not even looked at.
    send(
        "PUT",
        &front.url("/api/v1/me/picture"),
        &[("Content-Type", "text/plain")],
        Some(b"x"),
    )
    .assert_error(401, "unauthorized");
}

#[test]
fn picture_uploads_over_the_limit_are_refused() {
    let backend = Backend::start();
    let limit = png().len();
    let mut config = config(&[backend.addr]);
    config.max_picture_body = limit;
    let front = Front::start_with(config, Duration::from_secs(5));
    let (_, _, token) = new_session(&front);

    // Exactly the limit is accepted.
    assert_eq!(upload(&front, &token, "image/png", &png()).status, 200);

    // One byte over, with a declared length: refused before it is read.
    let mut over = png();
    over.push(0);
    upload(&front, &token, "image/png", &over).assert_error(413, "payload_too_large");
    let big = vec![0u8; 64 * 1024];
    upload(&front, &token, "image/png", &big).assert_error(413, "payload_too_large");

    // Chunked, so the length is only known by reading: refused once past the limit.
    let mut request = format!(
        "PUT /api/v1/me/picture HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: image/png\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in [&png()[..], &[0u8; 10][..]] {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    raw_answer(front.addr, &request, WAIT).assert_error(413, "payload_too_large");
}

/// CRC-32 (IEEE), for the PNG chunks built below.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG whose header declares `side` x `side` pixels (with one tiny, damaged IDAT): what a
/// decompression bomb looks like before anything is inflated.
fn png_declaring(side: u32) -> Vec<u8> {
    let mut png = PNG_SIGNATURE.to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut typed = kind.to_vec();
        typed.extend_from_slice(data);
        png.extend_from_slice(&typed);
        png.extend_from_slice(&crc32(&typed).to_be_bytes());
    };
    let mut header = Vec::new();
    header.extend_from_slice(&side.to_be_bytes());
    header.extend_from_slice(&side.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &header);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00]);
    chunk(b"IEND", &[]);
    png
}

#[test]
fn pictures_too_large_for_the_backend_are_refused() {
    // A front that lets more through than tcp-server takes (2 MiB, 4096 pixels a side), so the
    // backend's own refusal is what the client sees.
    let backend = Backend::start();
    let mut config = config(&[backend.addr]);
    config.max_picture_body = 3 * 1024 * 1024;
    let front = Front::start_with(config, Duration::from_secs(5));
    let (_, _, token) = new_session(&front);

    let mut heavy = png();
    heavy.resize(2 * 1024 * 1024 + 1, 0);
    upload(&front, &token, "image/png", &heavy).assert_error(413, "payload_too_large");
    upload(&front, &token, "image/png", &png_declaring(100_000))
        .assert_error(413, "payload_too_large");
    // The same construction within the limits is only refused for its damaged data.
    upload(&front, &token, "image/png", &png_declaring(8))
        .assert_error(415, "unsupported_media_type");
    assert!(me(&front, &token).json()["picture_url"].is_null());
}

#[test]
fn unknown_and_malformed_picture_keys_are_not_found() {
    let stack = Stack::start();
    let front = &stack.front;

    for key in [
        "999999999999-0123456789abcdef",
        "1-0000000000000000",
        "",
        "abc",
        "42",
        "42-0123456789ABCDEF",
        "42-0123456789abcde",
        "-0123456789abcdef",
        "4x-0123456789abcdef",
        "42-0123456789abcdef/x",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "..%2F..%2Fetc%2Fpasswd",
    ] {
        get(&front.url(&format!("/api/v1/pictures/{key}"))).assert_error(404, "not_found");
    }
    // Sent raw, so no client normalises the dots away first.
    for path in [
        "/api/v1/pictures/../../etc/passwd",
        "/api/v1/pictures/../../../../../../etc/passwd",
        "/api/v1/pictures/..%2f..%2fetc%2fpasswd",
        "/api/v1/pictures/1-0123456789abcdef/../../../etc/passwd",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        raw_answer(front.addr, request.as_bytes(), WAIT).assert_error(404, "not_found");
    }
}

#[test]
fn metrics_are_served_on_the_admin_listener_only() {
    let stack = Stack::start();
    let front = &stack.front;
    // The public listener serves no internal counters, whatever the method.
    for method in ["GET", "HEAD", "POST"] {
        let answer = send(method, &front.url("/metrics"), &[], None);
        assert_eq!(answer.status, 404, "{method}");
        assert!(!String::from_utf8_lossy(&answer.body).contains("gatehouse_"));
    }
    // The admin listener serves them and the health checks, and nothing of the API.
    assert_eq!(get(&front.admin_url("/metrics")).status, 200);
    assert_eq!(
        get(&front.admin_url("/healthz")).json(),
        json!({"status": "ok"})
    );
    assert_eq!(get(&front.admin_url("/readyz")).status, 200);
    get(&front.admin_url("/api/v1/me")).assert_error(404, "not_found");
    get(&front.admin_url("/login")).assert_error(404, "not_found");
    send("POST", &front.admin_url("/metrics"), &[], None).assert_error(405, "method_not_allowed");
}

#[test]
fn health_readiness_and_metrics() {
    let stack = Stack::start();
    let front = &stack.front;

    let health = get(&front.url("/healthz"));
    assert_eq!(health.status, 200);
    assert_eq!(health.header("Content-Type"), Some("application/json"));
    assert_eq!(health.json(), json!({"status": "ok"}));
    let ready = get(&front.url("/readyz"));
    assert_eq!(ready.status, 200);
    assert_eq!(ready.header("Content-Type"), Some("application/json"));

    // A known mix of requests, on a front and a backend that have served nothing else.
    let username = unique_name("metrics");
    register(front, &username, PASSWORD);
    assert_eq!(login(front, &username, PASSWORD).status, 200);
    login(front, &username, "wrong password").assert_error(401, "invalid_credentials");
    get(&front.url("/nowhere")).assert_error(404, "not_found");

    let metrics = get(&front.admin_url("/metrics"));
    assert_eq!(metrics.status, 200);
    let content_type = metrics.header("Content-Type").unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = String::from_utf8(metrics.body).unwrap();

    // Every line reads as metrics (a strict parse, line by line).
    let parsed = testkit::parse_metrics(&text);
    let requests = |route: &str, status: &str| {
        testkit::metric(
            &parsed,
            "gatehouse_http_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("/api/v1/users", "201"), Some(1.0), "{text}");
    assert_eq!(requests("/api/v1/sessions", "200"), Some(1.0), "{text}");
    assert_eq!(requests("/api/v1/sessions", "401"), Some(1.0), "{text}");
    assert_eq!(requests("/healthz", "200"), Some(1.0), "{text}");
    assert_eq!(requests("/readyz", "200"), Some(1.0), "{text}");
    assert_eq!(
        requests("/nowhere", "404"),
        None,
        "routes are templates, not raw paths"
    );
    assert_eq!(requests("unknown", "404"), Some(1.0), "{text}");
    assert!(text.contains("# TYPE gatehouse_http_requests counter"));
    assert_eq!(
        testkit::metric(
            &parsed,
            "gatehouse_http_request_duration_seconds",
            &[("route", "/api/v1/sessions")]
        ),
        Some(2.0),
        "two observations: {text}"
    );
    assert!(text.contains("# TYPE gatehouse_http_request_duration_seconds histogram"));

    let backend = stack.backend.addr.to_string();
    for series in [
        "gatehouse_backend_pool_size",
        "gatehouse_backend_pool_idle",
        "gatehouse_backend_pool_in_use",
        "gatehouse_backend_pool_waiting",
        "gatehouse_backend_pool_timeouts_total",
        "gatehouse_backend_pool_broken_total",
    ] {
        let value = testkit::metric(&parsed, series, &[("backend", &backend)]);
        assert!(value.is_some_and(|v| v >= 0.0), "{series} missing:\n{text}");
    }
    assert!(
        testkit::metric(
            &parsed,
            "gatehouse_backend_pool_size",
            &[("backend", &backend)]
        )
        .unwrap()
            >= 1.0
    );
    // tcp-server's own metrics, on its own admin listener.
    let tcp = testkit::scrape(stack.backend.admin);
    let count =
        |kind: &str| testkit::metric(&tcp, "gatehouse_tcp_requests_total", &[("kind", kind)]);
    assert_eq!(count("register"), Some(1.0));
    assert_eq!(count("login"), Some(2.0));
}

#[test]
fn unknown_paths_are_not_found() {
    let stack = Stack::start();
    let front = &stack.front;
    for path in [
        "/index.html",
        "/profile/",
        "/assets",
        "/api",
        "/api/v1",
        "/api/v1/",
        "/api/v1/users/",
        "/api/v1/users/1",
        "/API/V1/USERS",
        "/api/v2/users",
        "/api/v1/me/",
        "/api/v1/me/password/",
        "/api/v1/me/sessions/current",
        "/api/v1/sessions/other",
        "/healthz/",
        "/metrics.json",
        "/api/v1/pictures",
        "/%00",
    ] {
        for method in ["GET", "POST", "DELETE"] {
            send(method, &front.url(path), &[], None).assert_error(404, "not_found");
        }
    }
    // A query string does not change the route.
    assert_eq!(get(&front.url("/healthz?verbose=1")).status, 200);
}

#[test]
fn wrong_methods_get_405_with_allow() {
    let stack = Stack::start();
    let front = &stack.front;
    let routes = [
        ("/api/v1/users", "POST"),
        ("/api/v1/sessions", "POST"),
        ("/api/v1/sessions/current", "DELETE"),
        ("/api/v1/me", "GET, PATCH, DELETE"),
        ("/api/v1/me/password", "PUT"),
        ("/api/v1/me/sessions", "DELETE"),
        ("/api/v1/me/picture", "PUT"),
        ("/api/v1/pictures/1-0123456789abcdef", "GET"),
        ("/healthz", "GET"),
        ("/readyz", "GET"),
    ];
    for (path, allow) in routes {
        let allowed: Vec<&str> = allow.split(", ").collect();
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            if allowed.contains(&method) {
                continue;
            }
            // Even with a body that would be valid elsewhere: the method is checked first.
            let answer = send(
                method,
                &front.url(path),
                &[("Content-Type", "application/json")],
                Some(br#"{"username":"abc","password":"12345678"}"#),
            );
            answer.assert_error(405, "method_not_allowed");
            assert_eq!(answer.header("Allow"), Some(allow), "{method} {path}");
        }
    }
}

/// A register body of exactly `len` bytes (padded with JSON whitespace).
fn register_body(username: &str, len: usize) -> Vec<u8> {
    let mut body = format!(r#"{{"username":"{username}","password":"{PASSWORD}""#).into_bytes();
    assert!(body.len() < len);
    body.resize(len - 1, b' ');
    body.push(b'}');
    body
}

/// A chunked request to `path` carrying `body` in 4 KiB chunks.
fn chunked(path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(4096) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

#[test]
fn json_bodies_over_16_kib_are_refused() {
    let stack = Stack::start();
    let front = &stack.front;
    let (_, _, token) = new_session(front);
    const LIMIT: usize = 16 * 1024;

    // Exactly the limit is read and served; one byte more is refused.
    let at_limit = unique_name("limit");
    let answer = send_body(
        front,
        "POST",
        "/api/v1/users",
        None,
        &register_body(&at_limit, LIMIT),
    );
    assert_eq!(
        answer.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    send_body(
        front,
        "POST",
        "/api/v1/users",
        None,
        &register_body(&unique_name("over"), LIMIT + 1),
    )
    .assert_error(413, "payload_too_large");

    let big = register_body(&unique_name("big"), 64 * 1024);
    for (method, path) in [
        ("POST", "/api/v1/users"),
        ("POST", "/api/v1/sessions"),
        ("PATCH", "/api/v1/me"),
    ] {
        send_body(front, method, path, Some(&token), &big).assert_error(413, "payload_too_large");
    }

    // Chunked bodies are accepted under the limit...
    let chunked_ok = unique_name("chunked");
    let answer = raw_answer(
        front.addr,
        &chunked("/api/v1/users", &register_body(&chunked_ok, 9000)),
        WAIT,
    );
    assert_eq!(
        answer.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(login(front, &chunked_ok, PASSWORD).status, 200);
    // ...and refused past it, without a declared length to go by.
    for path in ["/api/v1/users", "/api/v1/sessions"] {
        let body = register_body(&unique_name("chunky"), LIMIT + 1);
        raw_answer(front.addr, &chunked(path, &body), WAIT).assert_error(413, "payload_too_large");
        let body = register_body(&unique_name("chunky"), 200 * 1024);
        raw_answer(front.addr, &chunked(path, &body), WAIT).assert_error(413, "payload_too_large");
    }
    // None of the refused accounts exists.
    assert_eq!(login(front, &at_limit, PASSWORD).status, 200);
}

#[test]
fn json_endpoints_require_the_json_media_type() {
    let stack = Stack::start();
    let front = &stack.front;
    let (_, _, token) = new_session(front);
    let auth = format!("Bearer {token}");
    let endpoints = [
        (
            "POST",
            "/api/v1/users",
            format!(
                r#"{{"username":"{}","password":"{PASSWORD}"}}"#,
                unique_name("mt")
            ),
        ),
        (
            "POST",
            "/api/v1/sessions",
            r#"{"username":"nobody","password":"whatever1"}"#.to_owned(),
        ),
        ("PATCH", "/api/v1/me", r#"{"nickname":"typed"}"#.to_owned()),
    ];
    for (method, path, body) in &endpoints {
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("application/jsonx"),
            Some("json"),
        ] {
            let mut headers = vec![("Authorization", auth.as_str())];
            if let Some(content_type) = content_type {
                headers.push(("Content-Type", content_type));
            }
            send(method, &front.url(path), &headers, Some(body.as_bytes()))
                .assert_error(415, "unsupported_media_type");
        }
    }
    // Parameters and case do not matter.
    for (content_type, (method, path, body)) in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/json;charset=UTF-8",
    ]
    .iter()
    .zip(&endpoints)
    {
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", content_type),
        ];
        let answer = send(method, &front.url(path), &headers, Some(body.as_bytes()));
        assert!(
            matches!(answer.status, 200 | 201 | 401),
            "{content_type}: {} {:?}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        assert_ne!(answer.json()["error"]["code"], "unsupported_media_type");
    }
}

#[test]
fn bodies_that_are_not_exactly_the_expected_json_are_invalid_json() {
    let stack = Stack::start();
    let front = &stack.front;
    let (_, _, token) = new_session(front);
    let name = unique_name("json");
    let p = PASSWORD;

    let credentials_cases: Vec<String> = vec![
        String::new(),
        " ".to_owned(),
        "{".to_owned(),
        format!(r#"{{"username": "{name}", "password": "#),
        format!(r#"{{"username": "{name}", "password": "{p}""#),
        format!(r#"{{'username': '{name}', 'password': '{p}'}}"#),
        format!(r#"{{"username": 5, "password": "{p}"}}"#),
        format!(r#"{{"username": "{name}", "password": 12345678}}"#),
        format!(r#"{{"username": ["{name}"], "password": "{p}"}}"#),
        format!(r#"{{"username": null, "password": "{p}"}}"#),
        format!(r#"{{"username": "{name}"}}"#),
        format!(r#"{{"password": "{p}"}}"#),
        "{}".to_owned(),
        format!(r#"{{"username": "{name}", "password": "{p}", "admin": true}}"#),
        format!(r#"{{"username": "{name}", "username": "{name}x", "password": "{p}"}}"#),
        format!(r#"{{"username": "{name}", "password": "{p}"}} trailing"#),
        format!(r#"{{"username": "{name}", "password": "{p}"}}{{}}"#),
        "null".to_owned(),
        "42".to_owned(),
        format!(r#""{name}""#),
        "[]".to_owned(),
        format!("{{\"username\": \"{name}\u{0}\", \"password\": \"{p}\"}}"),
    ];
    for path in ["/api/v1/users", "/api/v1/sessions"] {
        for body in &credentials_cases {
            let answer = send_body(front, "POST", path, None, body.as_bytes());
            assert_eq!(
                answer.status,
                400,
                "{path} {body:?}: {:?}",
                String::from_utf8_lossy(&answer.body)
            );
            answer.assert_error(400, "invalid_json");
        }
    }
    // Register's optional nickname must still be a string.
    for nickname in ["5", "true", "[\"a\"]", "{}"] {
        let body =
            format!(r#"{{"username": "{name}", "password": "{p}", "nickname": {nickname}}}"#);
        send_body(front, "POST", "/api/v1/users", None, body.as_bytes())
            .assert_error(400, "invalid_json");
    }
    // None of that created the account.
    login(front, &name, p).assert_error(401, "invalid_credentials");
    assert_eq!(me(front, &token).status, 200);
}

/// The contract's bodies are objects. serde would also fill a struct from an array of its
/// fields in order, which would make `["name", "password"]` a registration.
#[test]
fn an_array_of_the_right_values_is_not_a_body() {
    let stack = Stack::start();
    let front = &stack.front;
    let name = unique_name("array");
    let body = format!(r#"["{name}", "{PASSWORD}"]"#);
    for path in ["/api/v1/users", "/api/v1/sessions"] {
        let answer = send_body(front, "POST", path, None, body.as_bytes());
        assert_eq!(
            answer.status,
            400,
            "{path} {body}: {:?}",
            String::from_utf8_lossy(&answer.body)
        );
        answer.assert_error(400, "invalid_json");
    }
    let (_, _, token) = new_session(front);
    send_body(front, "PATCH", "/api/v1/me", Some(&token), br#"["nick"]"#)
        .assert_error(400, "invalid_json");
    login(front, &name, PASSWORD).assert_error(401, "invalid_credentials");
}

#[test]
fn no_input_produces_a_500() {
    let stack = Stack::start();
    let front = &stack.front;
    let (_, _, token) = new_session(front);
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    let paths = [
        "/api/v1/users",
        "/api/v1/sessions",
        "/api/v1/sessions/current",
        "/api/v1/me",
        "/api/v1/me/picture",
        "/api/v1/pictures/1-0123456789abcdef",
        "/api/v1/pictures/x",
        "/healthz",
        "/readyz",
        "/api/v1/%ff%fe",
        "/api/v1/users?username=x",
    ];
    let content_types = ["application/json", "image/png", "text/plain", "image/gif"];
    let bodies: Vec<Vec<u8>> = vec![
        br#"{"username":"abc","password":"12345678"}"#.to_vec(),
        br#"{"nickname":"x"}"#.to_vec(),
        png(),
        GIF.to_vec(),
        b"\xff\xfe\xfd".to_vec(),
        Vec::new(),
    ];
    let auth = format!("Bearer {token}");
    for _ in 0..300 {
        let method = methods[rng.usize(..methods.len())];
        let path = paths[rng.usize(..paths.len())];
        let mut body = bodies[rng.usize(..bodies.len())].clone();
        // Mutate a few bytes, sometimes.
        for _ in 0..rng.usize(0..4) {
            if !body.is_empty() {
                let at = rng.usize(..body.len());
                body[at] = rng.u8(..);
            }
        }
        let mut headers = Vec::new();
        if rng.bool() {
            headers.push(("Authorization", auth.as_str()));
        }
        if rng.u8(..4) > 0 {
            headers.push((
                "Content-Type",
                content_types[rng.usize(..content_types.len())],
            ));
        }
        let with_body = !matches!(method, "GET" | "DELETE" | "OPTIONS");
        let answer = send(
            method,
            &front.url(path),
            &headers,
            with_body.then_some(&body[..]),
        );
        assert!(
            answer.status < 500,
            "seed {seed}: {method} {path} {headers:?} {body:?} -> {} {:?}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        if answer.status >= 400 {
            let code = answer.json()["error"]["code"].as_str().map(str::to_owned);
            assert!(
                code.is_some(),
                "seed {seed}: {method} {path}: {:?}",
                answer.body
            );
        }
    }
}

/// Every answer carries `X-Request-Id`: the client's when it is one the service can carry to
/// tcp-server and into its logs, else one of the server's own; an error's body carries it too.
#[test]
fn every_answer_carries_a_request_id_that_the_client_may_choose() {
    let stack = Stack::start();
    let front = &stack.front;
    let id_of = |answer: &Answer| answer.header("X-Request-Id").map(str::to_owned);

    let chosen = "client-7:abc.DEF_1";
    let refused = send(
        "GET",
        &front.url("/api/v1/me"),
        &[("X-Request-Id", chosen)],
        None,
    );
    assert_eq!(refused.status, 401);
    assert_eq!(id_of(&refused).as_deref(), Some(chosen));
    assert_eq!(refused.json()["error"]["request_id"], chosen);

    let too_long = "x".repeat(65);
    for unusable in ["has space", too_long.as_str(), "", "quote\"d", "semi;colon"] {
        let answer = send(
            "GET",
            &front.url("/healthz"),
            &[("X-Request-Id", unusable)],
            None,
        );
        assert_eq!(answer.status, 200);
        let id = id_of(&answer).expect("an id");
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{unusable:?} became {id:?}"
        );
    }
    let made: BTreeSet<String> = (0..5)
        .map(|_| id_of(&send("GET", &front.url("/healthz"), &[], None)).expect("an id"))
        .collect();
    assert_eq!(
        made.len(),
        5,
        "each request gets an id of its own: {made:?}"
    );
}
