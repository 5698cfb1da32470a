//! Setting and fetching pictures: recognised by content, bounded, re-encoded without metadata.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat as Codec, RgbImage, RgbaImage};
use proto::{ErrorCode, ImageFormat, Picture, Request, Response, Secret};

use crate::support::{Client, TestServer, unique_name};

fn encode(image: DynamicImage, codec: Codec) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), codec).unwrap();
    bytes
}

fn gradient(width: u32, height: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    }))
}

/// A registered, logged-in client and its token.
fn signed_in(server: &TestServer) -> (Client, Secret) {
    let mut client = server.client();
    let name = unique_name("pic");
    client.call(Request::Register(proto::Register {
        username: name.clone(),
        password: Secret::new("correct horse"),
        nickname: None,
        client: None,
    }));
    let Response::Login(session) = client.call(Request::Login(proto::Login {
        username: name,
        password: Secret::new("correct horse"),
        client: None,
        device: None,
    })) else {
        panic!("login failed");
    };
    (client, session.token)
}

fn set(client: &mut Client, token: &Secret, image: Vec<u8>) -> Response {
    client.call(Request::SetPicture(proto::SetPicture {
        token: token.clone(),
        image,
    }))
}

fn error_code(response: &Response) -> Option<ErrorCode> {
    match response {
        Response::Error(error) => Some(error.code),
        _ => None,
    }
}

fn fetch(client: &mut Client, key: &str) -> Response {
    client.call(Request::GetPicture(proto::GetPicture {
        key: key.to_owned(),
    }))
}

/// Uploads, checks the profile points at the new picture, and returns what is served for it.
fn upload_and_fetch(client: &mut Client, token: &Secret, upload: Vec<u8>) -> (String, Picture) {
    let response = set(client, token, upload);
    let Response::SetPicture(profile) = response else {
        panic!("upload refused: {response:?}");
    };
    let key = profile.picture.expect("the profile names its picture");
    let Response::GetPicture(picture) = fetch(client, &key) else {
        panic!("the new picture is not served");
    };
    (key, picture)
}

#[test]
fn a_png_is_stored_shrunk_and_served_with_its_format() {
    let server = TestServer::start(4);
    let (mut client, token) = signed_in(&server);
    let (key, picture) =
        upload_and_fetch(&mut client, &token, encode(gradient(1000, 600), Codec::Png));
    assert_eq!(picture.format, ImageFormat::Png);
    let stored = image::load_from_memory(&picture.data).unwrap();
    assert_eq!(
        (stored.width(), stored.height()),
        (512, 307),
        "fits 512x512, aspect kept"
    );
    let Response::GetProfile(profile) =
        client.call(Request::GetProfile(proto::GetProfile { token }))
    else {
        panic!("profile");
    };
    assert_eq!(profile.picture, Some(key));
}

#[test]
fn the_format_comes_from_the_content_and_metadata_is_dropped() {
    let server = TestServer::start(4);
    let (mut client, token) = signed_in(&server);

    // A JPEG carrying an EXIF block with a GPS tag, right after the start-of-image marker.
    let jpeg = encode(gradient(64, 48), Codec::Jpeg);
    let exif = b"Exif\0\0GPSLatitude=48.8566N;GPSLongitude=2.3522E";
    let mut with_exif = jpeg[..2].to_vec();
    with_exif.extend_from_slice(&[0xFF, 0xE1]);
    with_exif.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    with_exif.extend_from_slice(exif);
    with_exif.extend_from_slice(&jpeg[2..]);
    let (_, picture) = upload_and_fetch(&mut client, &token, with_exif);
    assert_eq!(picture.format, ImageFormat::Jpeg);
    let contains = |needle: &[u8]| picture.data.windows(needle.len()).any(|w| w == needle);
    assert!(
        !contains(b"Exif") && !contains(b"GPS"),
        "metadata survived re-encoding"
    );

    // A GIF (whatever a client might have claimed it was) is recognised and stored as PNG.
    let gif = encode(
        DynamicImage::ImageRgba8(RgbaImage::from_pixel(20, 10, image::Rgba([1, 2, 3, 255]))),
        Codec::Gif,
    );
    let (_, picture) = upload_and_fetch(&mut client, &token, gif);
    assert_eq!(picture.format, ImageFormat::Png);
}

#[test]
fn bad_uploads_get_their_error_and_change_nothing() {
    let server = TestServer::start(4);
    let (mut client, token) = signed_in(&server);
    let (key, _) = upload_and_fetch(&mut client, &token, encode(gradient(32, 32), Codec::Png));

    let png = encode(gradient(200, 200), Codec::Png);
    let mut oversized = b"\x89PNG\r\n\x1a\n".to_vec();
    oversized.resize(2 * 1024 * 1024 + 1, 0);
    // 5000x5000 of one grey: a few kilobytes that would expand to 25 MB.
    let bomb = encode(
        DynamicImage::ImageLuma8(image::GrayImage::new(5000, 5000)),
        Codec::Png,
    );
    assert!(bomb.len() < 256 * 1024, "{}", bomb.len());
    let cases = [
        (
            b"just some text, not an image".to_vec(),
            ErrorCode::UnsupportedMediaType,
        ),
        (
            png[..png.len() / 2].to_vec(),
            ErrorCode::UnsupportedMediaType,
        ),
        (
            b"BM\x00\x00 a bitmap header".to_vec(),
            ErrorCode::UnsupportedMediaType,
        ),
        (Vec::new(), ErrorCode::UnsupportedMediaType),
        (oversized, ErrorCode::PayloadTooLarge),
        (bomb, ErrorCode::PayloadTooLarge),
    ];
    for (index, (upload, expected)) in cases.into_iter().enumerate() {
        let response = set(&mut client, &token, upload);
        assert_eq!(
            error_code(&response),
            Some(expected),
            "case {index}: {response:?}"
        );
    }
    let Response::GetProfile(profile) =
        client.call(Request::GetProfile(proto::GetProfile { token }))
    else {
        panic!("profile");
    };
    assert_eq!(
        profile.picture,
        Some(key),
        "the old picture is still the one"
    );
}

#[test]
fn a_replaced_picture_is_gone_and_unknown_keys_are_not_found() {
    let server = TestServer::start(4);
    let (mut client, token) = signed_in(&server);
    let (first, _) = upload_and_fetch(&mut client, &token, encode(gradient(16, 16), Codec::Png));
    let (second, _) = upload_and_fetch(&mut client, &token, encode(gradient(17, 16), Codec::Png));
    assert_ne!(first, second);
    for key in [first.as_str(), "../../etc/passwd", "1-0000000000000000", ""] {
        assert_eq!(
            error_code(&fetch(&mut client, key)),
            Some(ErrorCode::NotFound),
            "{key}"
        );
    }
    let refused = set(
        &mut client,
        &Secret::new("not a token"),
        encode(gradient(8, 8), Codec::Png),
    );
    assert_eq!(error_code(&refused), Some(ErrorCode::Unauthorized));
}

#[test]
fn two_uploads_of_one_account_at_once_leave_a_picture_that_is_served() {
    // The race: A is uploaded again (its row exists, so its insert takes no lock) while B is
    // uploaded. Before the account row was locked first, B could delete A while A's update
    // pointed the account at A: a profile naming a picture that is gone.
    let server = TestServer::start(4);
    let (mut client, token) = signed_in(&server);
    let a = encode(gradient(16, 16), Codec::Png);
    let b = encode(gradient(17, 16), Codec::Png);
    let mut other = server.client();
    for round in 0..200 {
        // A is stored (and current) before each round.
        let Response::SetPicture(_) = set(&mut client, &token, a.clone()) else {
            panic!("round {round}: setting A failed");
        };
        let barrier = std::sync::Barrier::new(2);
        let (first, second) = std::thread::scope(|scope| {
            let again = scope.spawn(|| {
                barrier.wait();
                set(&mut client, &token, a.clone())
            });
            barrier.wait();
            let replaced = set(&mut other, &token, b.clone());
            (again.join().unwrap(), replaced)
        });
        for response in [&first, &second] {
            assert!(
                matches!(response, Response::SetPicture(_)),
                "round {round}: {response:?}"
            );
        }
        let Response::GetProfile(profile) = client.call(Request::GetProfile(proto::GetProfile {
            token: token.clone(),
        })) else {
            panic!("round {round}: no profile");
        };
        let key = profile.picture.expect("a picture is set");
        assert!(
            matches!(fetch(&mut client, &key), Response::GetPicture(_)),
            "round {round}: the profile names {key}, which is not served"
        );
    }
}
