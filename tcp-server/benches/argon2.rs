//! What password verification costs at each argon2id parameter set, with the pepper as the
//! Argon2 secret, as tcp-server runs it: the basis of the README's table of parameters, verify
//! time and the logins per second per core they allow.
//!
//! Run: `cargo bench -p tcp-server --bench argon2`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tcp_server::password::{Hasher, PasswordParams, Verified};
use tcp_server::secrets::Keyring;

const SETS: [(u32, u32); 5] = [(64, 1), (256, 1), (1024, 1), (4096, 1), (19 * 1024, 2)];

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("argon2id_verify");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (memory_kib, iterations) in SETS {
        let hasher = Hasher::new(
            PasswordParams {
                memory_kib,
                iterations,
                parallelism: 1,
            },
            Keyring::single("a pepper of a realistic length!!").expect("long enough"),
            1,
        )
        .expect("parameters");
        let stored = hasher.hash("correct horse battery").expect("hash");
        group.bench_function(
            BenchmarkId::from_parameter(format!("m={memory_kib}KiB,t={iterations},p=1")),
            |b| {
                b.iter(|| {
                    assert!(matches!(
                        hasher.verify("correct horse battery", &stored),
                        Verified::Match { .. }
                    ));
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
