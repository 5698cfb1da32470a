//! The logger of the tcp-server binary (`service::logging`), and what no `RUST_LOG` setting may
//! turn on.

use std::io::Write;

use env_logger::Logger;
use log::LevelFilter;
use service::logging::{self, LogFormat};

/// Targets held at or below a level whatever `RUST_LOG` says. tokio_postgres logs every
/// statement's parameters at debug, and the parameters of a registration or a re-hash hold the
/// password hash; refinery dumps its whole plan at info, and a NOTICE for each `IF NOT EXISTS`
/// of its own table at every start.
pub const CAPPED: &[(&str, LevelFilter)] = &[
    ("tokio_postgres::query", LevelFilter::Info),
    ("refinery_core", LevelFilter::Warn),
];

/// Logs to stderr at `RUST_LOG` (default `info`) in `format`, with [`CAPPED`] applied on top.
///
/// # Panics
/// If a logger is installed already.
pub fn init(format: LogFormat) {
    logging::init(format, CAPPED);
}

/// The logger [`init`] installs (as text), with `filters` (in `RUST_LOG`'s syntax) in place of
/// the environment's and writing to `target`: for a test to capture what the binary would log.
pub fn logger(filters: &str, target: Box<dyn Write + Send>) -> Logger {
    logging::logger(filters, LogFormat::Text, CAPPED, target)
}
