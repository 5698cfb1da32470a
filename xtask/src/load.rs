//! loadtest as a library: a load against the http-server on a loopback port, run on a thread
//! of its own so that a scenario can break things while it runs, and the helpers that read
//! its report.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use loadtest::scenario::{Mix, Step};
use loadtest::{Config, Report};

/// What to run, in the terms of loadtest's command line.
#[derive(Debug, Clone)]
pub struct Spec {
    pub step: Step,
    pub users: u64,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub timeout: Duration,
    pub rate: Option<f64>,
    pub spread_sources: Option<u64>,
}

impl Spec {
    /// Closed loop, `step` only, loadtest's defaults for the rest (5 s warm-up, 10 s timeout).
    pub fn new(step: Step, users: u64, connections: usize, duration: Duration) -> Spec {
        Spec {
            step,
            users,
            connections,
            duration,
            warmup: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            rate: None,
            spread_sources: None,
        }
    }

    /// loadtest's `Config` for the http-server on 127.0.0.1:`port`.
    pub fn config(&self, port: u16) -> Config {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        Config {
            url: format!("http://{address}"),
            address,
            host: address.to_string(),
            mix: Mix::single(self.step),
            users: self.users,
            connections: self.connections,
            duration: self.duration,
            warmup: self.warmup,
            rate: self.rate,
            timeout: self.timeout,
            // The scenarios print their own lines; loadtest's would interleave with them.
            live: false,
            spread_sources: self.spread_sources,
        }
    }
}

/// A load running in the background. Dropping it waits for the end (at most its warm-up, its
/// duration and one timeout), so a failed scenario cannot leave load running into the next.
pub struct Load {
    name: String,
    json: PathBuf,
    thread: Option<JoinHandle<std::io::Result<Report>>>,
}

impl Load {
    /// Starts `spec` against 127.0.0.1:`port`; the report goes to `json` as well.
    pub fn start(name: &str, spec: &Spec, port: u16, json: PathBuf) -> anyhow::Result<Load> {
        let config = spec.config(port);
        let thread = thread::Builder::new()
            .name(format!("load-{name}"))
            .spawn(move || loadtest::run(&config))
            .context("starting the load thread")?;
        Ok(Load {
            name: name.to_owned(),
            json,
            thread: Some(thread),
        })
    }

    /// Waits for the end; the report, also written as JSON.
    pub fn report(mut self) -> anyhow::Result<Report> {
        let thread = self.thread.take().expect("joined only here and in drop");
        let report = thread
            .join()
            .map_err(|_| anyhow!("the load {} panicked", self.name))?
            .with_context(|| format!("running the load {}", self.name))?;
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(&self.json, json)
            .with_context(|| format!("writing {}", self.json.display()))?;
        Ok(report)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `k: v, k: v` in the order of the keys.
pub fn counts_text(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(name, count)| format!("{name}: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report's outcomes (`200: 44992, 503: 152867`).
pub fn outcomes_text(report: &Report) -> String {
    counts_text(&report.outcomes)
}

/// The outcomes not in `allowed`.
pub fn others(report: &Report, allowed: &[&str]) -> BTreeMap<String, u64> {
    report
        .outcomes
        .iter()
        .filter(|(name, _)| !allowed.contains(&name.as_str()))
        .map(|(name, count)| (name.clone(), *count))
        .collect()
}

/// `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A report with these numbers, for the tests of the tables.
#[cfg(test)]
pub fn fake_report(throughput: f64, errors: u64, outcomes: &[(&str, u64)]) -> Report {
    Report {
        url: "http://127.0.0.1:8080".to_owned(),
        scenario: "login-random".to_owned(),
        connections: 1000,
        rate: None,
        warmup_seconds: 5.0,
        measured_seconds: 60.0,
        requests: outcomes.iter().map(|(_, count)| count).sum(),
        errors,
        error_rate: 0.0,
        throughput,
        ok_throughput: throughput,
        latency_ms: loadtest::Latency {
            p50: 74.624,
            p90: 80.0,
            p99: 85.568,
            p999: 92.864,
            max: 158.975,
            mean: 75.0,
        },
        late_sends: 0,
        outcomes: outcomes
            .iter()
            .map(|(name, count)| ((*name).to_owned(), *count))
            .collect(),
        per_second: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn others_are_the_outcomes_not_allowed() {
        let report = fake_report(1.0, 3, &[("200", 10), ("503", 2), ("timeout", 1)]);
        assert_eq!(
            others(&report, &["200", "503"]),
            BTreeMap::from([("timeout".to_owned(), 1)])
        );
        assert!(others(&report, &["200", "503", "timeout"]).is_empty());
        assert_eq!(outcomes_text(&report), "200: 10, 503: 2, timeout: 1");
    }

    #[test]
    fn the_config_points_at_the_loopback_port() {
        let mut spec = Spec::new(Step::Register, 1000, 50, Duration::from_secs(10));
        spec.spread_sources = Some(20);
        let config = spec.config(28081);
        assert_eq!(config.url, "http://127.0.0.1:28081");
        assert_eq!(config.host, "127.0.0.1:28081");
        assert_eq!(config.mix, Mix::single(Step::Register));
        assert_eq!(
            (config.connections, config.spread_sources, config.live),
            (50, Some(20), false)
        );
    }

    #[test]
    fn outcomes_are_listed_in_key_order_and_filtered() {
        let counts = BTreeMap::from([
            ("503".to_owned(), 2),
            ("200".to_owned(), 10),
            ("connect".to_owned(), 1),
        ]);
        assert_eq!(counts_text(&counts), "200: 10, 503: 2, connect: 1");
        assert_eq!(counts_text(&BTreeMap::new()), "");
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(500_000), "500,000");
        assert_eq!(grouped(10_000_000), "10,000,000");
    }
}
