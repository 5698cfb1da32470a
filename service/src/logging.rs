//! The servers' logger: env_logger on stderr at `RUST_LOG` (default `info`), as text for people
//! or as one JSON object per line for a log pipeline (`--log-format json`), with a server's
//! caps on top that no `RUST_LOG` may lift.
//!
//! A JSON line holds `ts` (RFC 3339, UTC, microseconds), `level`, `target`, `message` and every
//! key-value of the record (`log::info!(user = id; "...")`) as a string field of its own; the
//! text format shows the key-values after the message. Every line a thread logs while it serves
//! a request ([`request_scope`]) also carries that request's id as `request_id`, so one request
//! can be followed through both tiers' logs.

use std::cell::RefCell;
use std::io::Write;

use env_logger::{Builder, Env, Logger, Target};
use log::LevelFilter;
use log::kv::{self, Key, Value, VisitSource};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per record: time, level, target, message, key-values.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the logger: stderr, at `RUST_LOG` (default `info`), in `format`, with each
/// `(target, max)` of `capped` held at or below `max` whatever `RUST_LOG` says.
///
/// # Panics
/// If a logger is installed already.
pub fn init(format: LogFormat, capped: &[(&str, LevelFilter)]) {
    let builder = Builder::from_env(Env::default().default_filter_or("info"));
    configure(builder, format, capped, Target::Stderr).init();
}

/// The logger [`init`] installs, with `filters` (in `RUST_LOG`'s syntax) in place of the
/// environment's and writing to `target`: for a test to capture what a binary would log.
pub fn logger(
    filters: &str,
    format: LogFormat,
    capped: &[(&str, LevelFilter)],
    target: Box<dyn Write + Send>,
) -> Logger {
    let mut builder = Builder::new();
    builder.parse_filters(filters);
    configure(builder, format, capped, Target::Pipe(target)).build()
}

thread_local! {
    /// The id of the request this thread is serving, if any.
    static REQUEST_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Marks this thread as serving the request `id` until the returned guard is dropped: its log
/// lines carry `request_id`, and [`request_id`] returns it.
pub fn request_scope(id: &str) -> RequestScope {
    let previous = REQUEST_ID.with(|cell| cell.replace(Some(id.to_owned())));
    RequestScope { previous }
}

/// The id of the request this thread is serving, set by [`request_scope`].
pub fn request_id() -> Option<String> {
    REQUEST_ID.with(|cell| cell.borrow().clone())
}

/// Ends a [`request_scope`] when dropped, putting back the one it replaced.
#[must_use = "the request's id is on the thread's log lines only while this lives"]
pub struct RequestScope {
    previous: Option<String>,
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        REQUEST_ID.with(|cell| cell.replace(previous));
    }
}

/// What [`init`] and [`logger`] share.
fn configure(
    mut builder: Builder,
    format: LogFormat,
    capped: &[(&str, LevelFilter)],
    target: Target,
) -> Builder {
    builder.target(target);
    for (module, max) in capped {
        builder.filter_module(module, *max);
    }
    match format {
        LogFormat::Json => builder.format(|buf, record| {
            let mut line = serde_json::Map::new();
            line.insert("ts".into(), buf.timestamp_micros().to_string().into());
            line.insert("level".into(), record.level().as_str().into());
            line.insert("target".into(), record.target().into());
            line.insert("message".into(), record.args().to_string().into());
            if let Some(id) = request_id() {
                line.insert("request_id".into(), id.into());
            }
            // A field that fails to visit is left out; the line itself is never lost.
            let _ = record.key_values().visit(&mut Fields(&mut line));
            serde_json::to_writer(&mut *buf, &line)?;
            writeln!(buf)
        }),
        // env_logger's own layout, with the request's id after the key-values.
        LogFormat::Text => builder.format(|buf, record| {
            write!(
                buf,
                "[{} {:<5} {}] {}",
                buf.timestamp(),
                record.level(),
                record.target(),
                record.args()
            )?;
            let mut fields = String::new();
            let _ = record.key_values().visit(&mut TextFields(&mut fields));
            if let Some(id) = request_id() {
                fields.push_str(" request_id=");
                fields.push_str(&id);
            }
            writeln!(buf, "{fields}")
        }),
    };
    builder
}

/// Writes a record's key-values as ` key=value`.
struct TextFields<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for TextFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

/// Copies a record's key-values into a JSON line, each as a string; a key that would replace
/// one of the line's own fields is prefixed with `field.` instead.
struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        let mut name = key.as_str().to_owned();
        if self.0.contains_key(&name) {
            name = format!("field.{name}");
        }
        self.0.insert(name, value.to_string().into());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use log::Log;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log_through(format: LogFormat, records: &[log::Record]) -> String {
        let out = Captured::default();
        let logger = logger(
            "info",
            format,
            &[("noisy", LevelFilter::Warn)],
            Box::new(out.clone()),
        );
        for record in records {
            logger.log(record);
        }
        logger.flush();
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_lines_carry_level_target_message_and_fields() {
        let fields: &[(&str, &str)] = &[("request_id", "abc-1"), ("level", "spoofed")];
        let text = log_through(
            LogFormat::Json,
            &[
                log::Record::builder()
                    .level(log::Level::Warn)
                    .target("gatehouse::x")
                    .args(format_args!("a \"quoted\"\nline"))
                    .key_values(&fields)
                    .build(),
                log::Record::builder()
                    .level(log::Level::Info)
                    .target("noisy")
                    .args(format_args!("held back by its cap"))
                    .build(),
            ],
        );
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line = &lines[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], "gatehouse::x");
        assert_eq!(line["message"], "a \"quoted\"\nline");
        assert_eq!(line["request_id"], "abc-1");
        assert_eq!(line["field.level"], "spoofed");
        assert!(line["ts"].as_str().unwrap().ends_with('Z'), "{line}");
    }

    #[test]
    fn lines_logged_in_a_request_scope_carry_its_id_and_only_then() {
        let record = |text| {
            log::Record::builder()
                .level(log::Level::Info)
                .target("gatehouse::x")
                .args(text)
                .build()
        };
        let outside = log_through(LogFormat::Json, &[record(format_args!("before"))]);
        let inside = {
            let _scope = request_scope("req-7");
            assert_eq!(request_id().as_deref(), Some("req-7"));
            let nested = {
                let _inner = request_scope("req-8");
                log_through(LogFormat::Text, &[record(format_args!("nested"))])
            };
            assert!(nested.ends_with("nested request_id=req-8\n"), "{nested}");
            log_through(LogFormat::Json, &[record(format_args!("inside"))])
        };
        assert_eq!(request_id(), None);
        let outside: serde_json::Value = serde_json::from_str(outside.trim()).unwrap();
        let inside: serde_json::Value = serde_json::from_str(inside.trim()).unwrap();
        assert_eq!(outside.get("request_id"), None);
        assert_eq!(inside["request_id"], "req-7");
    }

    #[test]
    fn text_lines_show_the_fields_after_the_message() {
        let fields: &[(&str, &str)] = &[("request_id", "abc-2")];
        let text = log_through(
            LogFormat::Text,
            &[log::Record::builder()
                .level(log::Level::Info)
                .target("gatehouse::x")
                .args(format_args!("hello"))
                .key_values(&fields)
                .build()],
        );
        assert!(
            text.contains("hello") && text.contains("request_id") && text.contains("abc-2"),
            "{text}"
        );
    }
}
