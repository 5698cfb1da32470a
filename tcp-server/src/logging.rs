//! The logger of the tcp-server binary, and what no `RUST_LOG` setting may turn on.

use log::{Level, LevelFilter};

/// Targets held at or below a level whatever `RUST_LOG` says. tokio_postgres logs every
/// statement's parameters at debug, and the parameters of a registration or a re-hash hold the
/// password hash; refinery dumps its whole plan at info.
pub const CAPPED: &[(&str, LevelFilter)] = &[
    ("tokio_postgres::query", LevelFilter::Info),
    ("refinery_core", LevelFilter::Warn),
];

/// Whether a record of `target` at `level` may be logged under [`CAPPED`], for loggers set up
/// elsewhere (a test's capture).
pub fn allowed(target: &str, level: Level) -> bool {
    CAPPED
        .iter()
        .filter(|(prefix, _)| target.starts_with(prefix))
        .all(|(_, max)| level <= *max)
}

/// Logs to stderr at `RUST_LOG` (default `info`), with [`CAPPED`] applied on top.
pub fn init() {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    for (target, max) in CAPPED {
        builder.filter_module(target, *max);
    }
    builder.init();
}
