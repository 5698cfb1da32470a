//! What the strength rule for new passwords costs a registration or a password change: the
//! zxcvbn estimate, with the username and nickname as known words, for passwords of the kinds
//! people choose, for the longest ones the rules accept, and for the hostile one made of l33t
//! symbols that would cost zxcvbn a second whole (`rules::ESTIMATE_BUDGET` bounds it). Set
//! beside the argon2id hash a registration also pays (`--bench argon2`).
//!
//! Run: `cargo bench -p tcp-server --bench strength`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tcp_server::rules;

fn strength(c: &mut Criterion) {
    let mut group = c.benchmark_group("password_strength");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let context = ["alice.liddell", "Alice Liddell"];
    let long_words = "violet harbour lantern copper meadow falcon ".repeat(3);
    let hostile = "4@8({[<3=6&!|1l7+0%9$5~2".repeat(6)[..128].to_owned();
    let long_random: String = (0..128u32)
        .map(|i| char::from(b'!' + ((i * 37 + 11) % 90) as u8))
        .collect();
    for (name, password) in [
        ("weak: password", "password"),
        ("weak: name and year", "alice.liddell1990"),
        ("passphrase, 4 words", "correct horse battery staple"),
        ("random, 16 characters", "q8#Lw!2vX9@rTz0m"),
        ("words, 128 characters", &long_words[..128]),
        ("random, 128 characters", &long_random),
        ("hostile l33t symbols, 128 characters", &hostile),
    ] {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| rules::check_strength(password, &context))
        });
        // And what zxcvbn alone would cost reading all it reads (100 characters), for scale.
        if name.starts_with("hostile") {
            let whole: String = password.chars().take(100).collect();
            group.bench_function(BenchmarkId::from_parameter("hostile, read whole"), |b| {
                b.iter(|| zxcvbn::zxcvbn(&whole, &context))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, strength);
criterion_main!(benches);
