//! `docs/openapi.yaml` against the server: the same routes and methods, and every status the
//! server gives an operation is one the document lists for it.

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
}
