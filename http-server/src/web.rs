//! The web pages (sign up, log in, profile) and their script, style sheet and icon: plain files
//! from `http-server/web/`, embedded in the binary, served with their content types,
//! revalidation by `ETag`, and a Content-Security-Policy that runs no inline script.

use sha2::{Digest, Sha256};

use crate::http::{self, Reply};

/// What the pages may load: only this server's own script, style sheet, images and API, plus
/// `blob:` images for the preview of a picture before it is uploaded. No inline script or
/// style, no frames, no plugins, no form posts elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' blob:; connect-src 'self'; form-action 'self'; \
    base-uri 'none'; frame-ancestors 'none'";

/// Every file, by the path it is served at.
const FILES: [(&str, &str, &[u8]); 6] = [
    (
        "/signup",
        "text/html; charset=utf-8",
        include_bytes!("../web/signup.html"),
    ),
    (
        "/login",
        "text/html; charset=utf-8",
        include_bytes!("../web/login.html"),
    ),
    (
        "/profile",
        "text/html; charset=utf-8",
        include_bytes!("../web/profile.html"),
    ),
    (
        "/assets/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/app.js"),
    ),
    (
        "/assets/style.css",
        "text/css; charset=utf-8",
        include_bytes!("../web/style.css"),
    ),
    (
        "/assets/icon.svg",
        "image/svg+xml",
        include_bytes!("../web/icon.svg"),
    ),
];

/// One embedded file.
pub struct File {
    media_type: &'static str,
    body: &'static [u8],
    /// A strong validator: the first 16 hex digits of the content's SHA-256.
    etag: String,
}

/// The embedded files.
pub struct Web {
    files: Vec<(&'static str, File)>,
}

impl Web {
    pub fn new() -> Web {
        let files = FILES
            .iter()
            .map(|&(path, media_type, body)| {
                let digest = Sha256::digest(body);
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                let etag = format!("\"{hex}\"");
                (
                    path,
                    File {
                        media_type,
                        body,
                        etag,
                    },
                )
            })
            .collect();
        Web { files }
    }

    /// The file served at `path`, if any.
    pub fn file(&self, path: &str) -> Option<&File> {
        self.files
            .iter()
            .find(|(served_at, _)| *served_at == path)
            .map(|(_, file)| file)
    }

    /// The answer for `file`: 304 when the client's copy is current.
    pub fn reply(&self, file: &File, request: &tiny_http::Request) -> Reply {
        // The files change only with the binary, so they carry no lifetime: a browser
        // revalidates each time and gets a body-less 304 until a new release.
        let current = http::header_value(request, "If-None-Match").is_some_and(|value| {
            value
                .split(',')
                .any(|tag| tag.trim() == file.etag || tag.trim() == "*")
        });
        let reply = if current {
            Reply::empty(304)
        } else {
            Reply {
                status: 200,
                headers: vec![http::header("Content-Type", file.media_type)],
                body: file.body.to_vec(),
            }
        };
        with_page_headers(reply.with_header("ETag", &file.etag))
            .with_header("Cache-Control", "no-cache")
    }
}

/// A redirect to another page (303, so the browser follows it with a GET).
pub fn redirect(location: &str) -> Reply {
    with_page_headers(Reply::empty(303))
        .with_header("Location", location)
        .with_header("Cache-Control", "no-store")
}

/// The headers every page and asset answer carries: the policy, no content sniffing, no
/// framing, no referrer sent elsewhere.
fn with_page_headers(reply: Reply) -> Reply {
    reply
        .with_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("X-Frame-Options", "DENY")
        .with_header("Referrer-Policy", "same-origin")
        .with_header("Cross-Origin-Opener-Policy", "same-origin")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy allows no inline script, so the pages must not hold any: no `<script>`
    /// without `src`, no `on...=` handler attributes, no `style` attributes or elements, no
    /// `javascript:` URLs.
    #[test]
    fn pages_hold_no_inline_script_or_style() {
        for (path, media_type, body) in FILES {
            if !media_type.starts_with("text/html") {
                continue;
            }
            let text = std::str::from_utf8(body).unwrap().to_ascii_lowercase();
            for (index, _) in text.match_indices("<script") {
                let tag = &text[index..index + text[index..].find('>').unwrap()];
                assert!(tag.contains(" src="), "{path}: inline script {tag}");
            }
            for forbidden in ["style=", "<style", "javascript:"] {
                assert!(!text.contains(forbidden), "{path}: {forbidden}");
            }
            // An event handler attribute: ` on` and letters, then `=`.
            for (index, _) in text.match_indices(" on") {
                let name: String = text[index + 3..]
                    .chars()
                    .take_while(char::is_ascii_alphabetic)
                    .collect();
                let after = &text[index + 3 + name.len()..];
                assert!(
                    name.is_empty() || !after.starts_with('='),
                    "{path}: handler attribute on{name}"
                );
            }
        }
    }

    #[test]
    fn every_file_has_a_distinct_validator() {
        let web = Web::new();
        let mut tags: Vec<&str> = web.files.iter().map(|(_, f)| f.etag.as_str()).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), FILES.len());
        assert!(web.file("/assets/app.js").is_some());
        assert!(web.file("/assets/missing.js").is_none());
    }
}
