//! The logger of the tcp-server binary, and what no `RUST_LOG` setting may turn on.

use std::io::Write;

use env_logger::{Builder, Env, Logger, Target};
use log::LevelFilter;

/// Targets held at or below a level whatever `RUST_LOG` says. tokio_postgres logs every
/// statement's parameters at debug, and the parameters of a registration or a re-hash hold the
/// password hash; refinery dumps its whole plan at info.
pub const CAPPED: &[(&str, LevelFilter)] = &[
    ("tokio_postgres::query", LevelFilter::Info),
    ("refinery_core", LevelFilter::Warn),
];

/// Logs to stderr at `RUST_LOG` (default `info`), with [`CAPPED`] applied on top.
///
/// # Panics
/// If a logger is installed already.
pub fn init() {
    capped(
        Builder::from_env(Env::default().default_filter_or("info")),
        Target::Stderr,
    )
    .init();
}

/// The logger [`init`] installs, with `filters` (in `RUST_LOG`'s syntax) in place of the
/// environment's and writing to `target`: for a test to capture what the binary would log.
pub fn logger(filters: &str, target: Box<dyn Write + Send>) -> Logger {
    let mut builder = Builder::new();
    builder.parse_filters(filters);
    capped(builder, Target::Pipe(target)).build()
}

/// `builder`'s filters with [`CAPPED`] over them, writing to `target`: what [`init`] and
/// [`logger`] share.
fn capped(mut builder: Builder, target: Target) -> Builder {
    builder.target(target);
    for (module, max) in CAPPED {
        builder.filter_module(module, *max);
    }
    builder
}
