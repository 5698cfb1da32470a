//! `docs/openapi.yaml` against the server: the same routes and methods, every status the server
//! gives an operation is one the document lists for it, every error code it answers with is in
//! the document's list, and the input rules the document states as JSON Schema are tcp-server's.
//! (scripts/schemathesis tests the whole contract, bodies and headers included, from outside.)

use std::collections::BTreeSet;

use serde_json::json;
use yaml_rust2::{Yaml, YamlLoader};

use crate::support::*;

fn document() -> Yaml {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
    let text = std::fs::read_to_string(path).expect("reading docs/openapi.yaml");
    YamlLoader::load_from_str(&text)
        .expect("docs/openapi.yaml is valid YAML")
        .remove(0)
}

/// (METHOD, path) of every operation in the document.
fn documented_routes(doc: &Yaml) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_hash().expect("paths");
    let mut routes = BTreeSet::new();
    for (path, operations) in paths {
        for (method, _) in operations.as_hash().expect("operations") {
            routes.insert((
                method.as_str().unwrap().to_ascii_uppercase(),
                path.as_str().unwrap().to_owned(),
            ));
        }
    }
    routes
}

/// The statuses the document lists for an operation.
fn documented_statuses(doc: &Yaml, method: &str, path: &str) -> BTreeSet<u16> {
    let responses = &doc["paths"][path][method.to_ascii_lowercase().as_str()]["responses"];
    responses
        .as_hash()
        .unwrap_or_else(|| panic!("{method} {path} has no responses in docs/openapi.yaml"))
        .keys()
        .map(|status| status.as_str().unwrap().parse().unwrap())
        .collect()
}

/// The error codes the document lists (`Error.error.code`).
fn documented_error_codes(doc: &Yaml) -> BTreeSet<String> {
    doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
        .as_vec()
        .expect("the Error schema lists its codes")
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect()
}

/// A schema of `components/schemas`.
fn schema<'a>(doc: &'a Yaml, name: &str) -> &'a Yaml {
    let schema = &doc["components"]["schemas"][name];
    assert!(
        !schema.is_badvalue(),
        "docs/openapi.yaml has no schema {name}"
    );
    schema
}

/// The JSON request body schema of an operation.
fn body_schema<'a>(doc: &'a Yaml, method: &str, path: &str) -> &'a Yaml {
    &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
}

#[test]
fn the_document_lists_exactly_the_servers_routes() {
    let doc = document();
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let served: BTreeSet<(String, String)> = http_server::routes()
        .into_iter()
        .map(|(method, path)| (method.to_owned(), path.to_owned()))
        .collect();
    let documented = documented_routes(&doc);
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "served but not documented: {missing:?}; documented but not served: {extra:?}"
    );
}

#[test]
fn every_answer_the_server_gives_is_documented() {
    let doc = document();
    let codes = documented_error_codes(&doc);
    let stack = Stack::start();
    let front = &stack.front;
    let check = |method: &str, path: &str, answer: &Answer| {
        let documented = documented_statuses(&doc, method, path);
        assert!(
            documented.contains(&answer.status),
            "{method} {path} answered {} ({}), which docs/openapi.yaml does not list: {documented:?}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        if answer.status >= 400 {
            let body = answer.json();
            let code = body["error"]["code"].as_str().unwrap_or_default();
            assert!(
                codes.contains(code),
                "{method} {path} answered the error code {code:?}, which docs/openapi.yaml does not list: {body}"
            );
        }
    };

    // Each operation as a stranger sends it: no token, no body.
    for (method, path) in documented_routes(&doc) {
        let url = front.url(&path.replace("{key}", "1-0123456789abcdef"));
        check(&method, &path, &send(&method, &url, &[], None));
    }

    // The paths through the service that succeed, and their usual failures.
    let username = unique_name("doc");
    let account = json!({"username": username, "password": "correct horse battery"});
    let users = "/api/v1/users";
    check(
        "POST",
        users,
        &send_json("POST", &front.url(users), None, &account),
    );
    check(
        "POST",
        users,
        &send_json("POST", &front.url(users), None, &account),
    );
    check(
        "POST",
        users,
        &send_json("POST", &front.url(users), None, &json!({"username": "x"})),
    );
    let sessions = "/api/v1/sessions";
    let login = send_json("POST", &front.url(sessions), None, &account);
    check("POST", sessions, &login);
    let wrong = json!({"username": username, "password": "wrong password"});
    check(
        "POST",
        sessions,
        &send_json("POST", &front.url(sessions), None, &wrong),
    );
    // The pages' login, from the site, from elsewhere, and with a bad flag.
    let body = serde_json::to_vec(&account).unwrap();
    let cookie_login = |query: &str, origin: &str| {
        send(
            "POST",
            &front.url(&format!("{sessions}{query}")),
            &[("Content-Type", "application/json"), ("Origin", origin)],
            Some(&body),
        )
    };
    check("POST", sessions, &cookie_login("?cookie=true", &front.base));
    check(
        "POST",
        sessions,
        &cookie_login("?cookie=true", "http://evil.example"),
    );
    check(
        "POST",
        sessions,
        &cookie_login("?cookie=maybe", &front.base),
    );
    let token = login.json()["token"].as_str().unwrap().to_owned();
    let me = "/api/v1/me";
    let jar = format!("gatehouse_session={token}");
    let nickname_body = serde_json::to_vec(&json!({"nickname": "x"})).unwrap();
    let cross_site = send(
        "PATCH",
        &front.url(me),
        &[("Cookie", &jar), ("Content-Type", "application/json")],
        Some(&nickname_body),
    );
    check("PATCH", me, &cross_site);
    check(
        "GET",
        me,
        &send("GET", &front.url(me), &[("Cookie", &jar)], None),
    );
    check("GET", me, &send_auth("GET", &front.url(me), &token));
    let nickname = json!({"nickname": "猫 🐱"});
    check(
        "PATCH",
        me,
        &send_json("PATCH", &front.url(me), Some(&token), &nickname),
    );
    let blank = json!({"nickname": "  "});
    check(
        "PATCH",
        me,
        &send_json("PATCH", &front.url(me), Some(&token), &blank),
    );
    let picture = "/api/v1/me/picture";
    let auth = format!("Bearer {token}");
    let upload = |content_type: &str, body: &[u8]| {
        send(
            "PUT",
            &front.url(picture),
            &[("Authorization", &auth), ("Content-Type", content_type)],
            Some(body),
        )
    };
    let set = upload("image/png", &png());
    check("PUT", picture, &set);
    check("PUT", picture, &upload("image/png", b"not an image"));
    check("PUT", picture, &upload("text/plain", &png()));
    let url = set.json()["picture_url"].as_str().unwrap().to_owned();
    let pictures = "/api/v1/pictures/{key}";
    let fetched = get(&front.url(&url));
    check("GET", pictures, &fetched);
    let etag = fetched.header("ETag").unwrap().to_owned();
    let cached = send("GET", &front.url(&url), &[("If-None-Match", &etag)], None);
    check("GET", pictures, &cached);
    let current = "/api/v1/sessions/current";
    check(
        "DELETE",
        current,
        &send_auth("DELETE", &front.url(current), &token),
    );
    check(
        "DELETE",
        current,
        &send_auth("DELETE", &front.url(current), &token),
    );

    // The password: refused as malformed, too short, too easy to guess and with a wrong current
    // password; changed, by a bearer client and by the pages; and the session it ended.
    let token = fresh_token(front, &account);
    let password = "/api/v1/me/password";
    let change = |token: &str, current: &str, new: &str| {
        let body = json!({"current_password": current, "new_password": new});
        send_json("PUT", &front.url(password), Some(token), &body)
    };
    let bad_body = json!({"new_password": "violet harbour lantern 42"});
    check(
        "PUT",
        password,
        &send_json("PUT", &front.url(password), Some(&token), &bad_body),
    );
    check(
        "PUT",
        password,
        &change(&token, "correct horse battery", "short"),
    );
    check(
        "PUT",
        password,
        &change(&token, "correct horse battery", "password"),
    );
    check(
        "PUT",
        password,
        &change(&token, "wrong password", "violet harbour lantern 42"),
    );
    let changed = change(&token, "correct horse battery", "violet harbour lantern 42");
    check("PUT", password, &changed);
    assert_eq!(
        changed.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&changed.body)
    );
    check("GET", me, &send_auth("GET", &front.url(me), &token));
    let token = changed.json()["token"].as_str().unwrap().to_owned();
    let jar = format!("gatehouse_session={token}");
    let page_change = serde_json::to_vec(&json!({
        "current_password": "violet harbour lantern 42",
        "new_password": "correct horse battery",
    }))
    .unwrap();
    let from_page = |origin: Option<&str>| {
        let mut headers = vec![
            ("Cookie", jar.as_str()),
            ("Content-Type", "application/json"),
        ];
        headers.extend(origin.map(|origin| ("Origin", origin)));
        send("PUT", &front.url(password), &headers, Some(&page_change))
    };
    check("PUT", password, &from_page(None));
    let by_page = from_page(Some(&front.base));
    check("PUT", password, &by_page);
    assert_eq!(
        by_page.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&by_page.body)
    );

    // Logging out everywhere, and the token it ended.
    let sessions_of_me = "/api/v1/me/sessions";
    let token = fresh_token(front, &account);
    let ended = send_auth("DELETE", &front.url(sessions_of_me), &token);
    check("DELETE", sessions_of_me, &ended);
    assert_eq!(ended.status, 204);
    check(
        "DELETE",
        sessions_of_me,
        &send_auth("DELETE", &front.url(sessions_of_me), &token),
    );

    // The account's deletion: a malformed body, a wrong password, done, and its ended session.
    let token = fresh_token(front, &account);
    let delete = |body: &serde_json::Value| send_json("DELETE", &front.url(me), Some(&token), body);
    check(
        "DELETE",
        me,
        &delete(&json!({"passwd": "correct horse battery"})),
    );
    check(
        "DELETE",
        me,
        &delete(&json!({"password": "wrong password"})),
    );
    let deleted = delete(&json!({"password": "correct horse battery"}));
    check("DELETE", me, &deleted);
    assert_eq!(deleted.status, 204);
    check(
        "DELETE",
        me,
        &delete(&json!({"password": "correct horse battery"})),
    );
    check("GET", me, &send_auth("GET", &front.url(me), &token));
    check(
        "POST",
        users,
        &send_json("POST", &front.url(users), None, &account),
    );
}

/// Logs the account in; its token.
fn fresh_token(front: &Front, account: &serde_json::Value) -> String {
    let login = send_json("POST", &front.url("/api/v1/sessions"), None, account);
    assert_eq!(
        login.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&login.body)
    );
    login.json()["token"].as_str().unwrap().to_owned()
}

/// The rules tcp-server holds usernames, passwords and nicknames to are the document's JSON
/// Schema, not prose: a body that meets its schema is never refused as malformed, one that breaks
/// it always is (what scripts/schemathesis checks from outside, by sampling; this pins the
/// bounds and the character classes).
#[test]
fn the_input_rules_are_the_documents_schemas() {
    use tcp_server::rules;

    let doc = document();
    let username = schema(&doc, "Username");
    assert_eq!(username["minLength"].as_i64(), Some(3));
    assert_eq!(username["maxLength"].as_i64(), Some(32));
    assert_eq!(username["pattern"].as_str(), Some("^[A-Za-z0-9_.-]{3,32}$"));
    for (name, valid) in [
        ("ab", false),
        ("abc", true),
        (&"a".repeat(32), true),
        (&"a".repeat(33), false),
        ("A_b.c-9", true),
        ("a b", false),
        ("émile", false),
    ] {
        assert_eq!(rules::check_username(name).is_ok(), valid, "{name:?}");
    }

    // Lengths in characters (JSON Schema counts code points, as Rust's chars).
    let password = schema(&doc, "NewPassword");
    let (min, max) = (
        password["minLength"].as_i64(),
        password["maxLength"].as_i64(),
    );
    assert_eq!((min, max), (Some(8), Some(128)));
    for (length, valid) in [(7, false), (8, true), (128, true), (129, false)] {
        let guess = "é".repeat(length);
        assert_eq!(
            rules::check_password(&guess).is_ok(),
            valid,
            "{length} characters"
        );
    }

    // The nickname's pattern, built from the very predicates tcp-server applies: `str::trim`
    // (Unicode White_Space, `char::is_whitespace`) and `char::is_control` (category Cc).
    let space = class(char::is_whitespace);
    let control = class(char::is_control);
    let edge = class(|c| c.is_whitespace() || c.is_control());
    let expected = format!("^[{space}]*[^{edge}](?:[^{control}]{{0,62}}[^{edge}])?[{space}]*$");
    let nickname = schema(&doc, "Nickname");
    assert_eq!(nickname["pattern"].as_str(), Some(expected.as_str()));
    assert_eq!(nickname["minLength"].as_i64(), Some(1));
    let registration = body_schema(&doc, "post", "/api/v1/users");
    assert_eq!(
        registration["properties"]["nickname"]["pattern"].as_str(),
        Some(expected.as_str()),
        "the registration's nickname follows the same rule"
    );
    for (nickname, valid) in [
        ("  Zoë 🎉\u{3000}", true),
        ("\t\n x \u{85}", true),
        ("a\u{a0}b", true),
        (&"字".repeat(64), true),
        (&format!(" {} ", "字".repeat(64)), true),
        (&"字".repeat(65), false),
        (" \u{2028} ", false),
        ("tab\there", false),
        ("\u{7}bell", false),
        ("x\u{9f}", false),
    ] {
        assert_eq!(
            rules::check_nickname(nickname).is_ok(),
            valid,
            "{nickname:?}"
        );
    }

    // Every JSON body names its fields, the required ones, and nothing else.
    for (method, path) in documented_routes(&doc) {
        let body = body_schema(&doc, &method.to_ascii_lowercase(), &path);
        if body.is_badvalue() {
            continue;
        }
        assert_eq!(
            body["additionalProperties"].as_bool(),
            Some(false),
            "{method} {path}"
        );
        assert!(!body["required"].is_badvalue(), "{method} {path}");
    }
    // The password change and the registration name the same password rule.
    let change = body_schema(&doc, "put", "/api/v1/me/password");
    assert_eq!(
        change["properties"]["new_password"]["$ref"].as_str(),
        Some("#/components/schemas/NewPassword")
    );
    assert_eq!(
        registration["properties"]["password"]["$ref"].as_str(),
        Some("#/components/schemas/NewPassword")
    );
}

/// A regex character class of the chars `matches` holds, in `\uXXXX` ranges.
fn class(matches: impl Fn(char) -> bool) -> String {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for c in (0..=0x10FFFF)
        .filter_map(char::from_u32)
        .filter(|&c| matches(c))
    {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == c as u32 => *end = c as u32,
            _ => ranges.push((c as u32, c as u32)),
        }
    }
    let escape = |c: u32| {
        assert!(
            c <= 0xFFFF,
            "the document's patterns spell characters as \\uXXXX"
        );
        format!("\\u{c:04X}")
    };
    ranges
        .into_iter()
        .map(|(start, end)| match end - start {
            0 => escape(start),
            1 => format!("{}{}", escape(start), escape(end)),
            _ => format!("{}-{}", escape(start), escape(end)),
        })
        .collect()
}
