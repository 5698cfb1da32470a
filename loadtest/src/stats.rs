//! Results: every response becomes a `Sample` sent to one collector, which keeps a latency
//! histogram (HdrHistogram) and counters per second; the report merges the seconds after the
//! warm-up into the totals.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::http::Failure;

/// Latencies are recorded in microseconds, up to this.
const MAX_LATENCY_US: u64 = 120_000_000;

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// An HTTP response with this status.
    Status(u16),
    /// No response.
    Failed(Failure),
}

impl Outcome {
    /// A 2xx or 3xx answer.
    pub fn is_ok(self) -> bool {
        matches!(self, Outcome::Status(200..=399))
    }
}

/// One request's result.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was meant to be sent, from the start of the run.
    pub at: Duration,
    /// From the intended send time to the end of the response.
    pub latency: Duration,
    pub outcome: Outcome,
    /// Due while its connection was still busy with the previous request (open loop only).
    pub late: bool,
}

/// One second of the run.
pub struct Second {
    pub histogram: Histogram<u64>,
    /// Requests whose answer (or failure) came in this second, whenever they were due.
    pub completed: u64,
    pub errors: u64,
    pub late: u64,
    pub outcomes: BTreeMap<Outcome, u64>,
}

impl Second {
    fn new() -> Second {
        Second {
            histogram: new_histogram(),
            completed: 0,
            errors: 0,
            late: 0,
            outcomes: BTreeMap::new(),
        }
    }

    pub fn requests(&self) -> u64 {
        self.histogram.len()
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Everything recorded, second by second.
#[derive(Default)]
pub struct Recording {
    pub seconds: Vec<Second>,
}

impl Recording {
    pub fn record(&mut self, sample: &Sample) {
        let index = sample.at.as_secs() as usize;
        let done = (sample.at + sample.latency).as_secs() as usize;
        while self.seconds.len() <= index.max(done) {
            self.seconds.push(Second::new());
        }
        self.seconds[done].completed += 1;
        let second = &mut self.seconds[index];
        let micros = (sample.latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        second.histogram.saturating_record(micros);
        if !sample.outcome.is_ok() {
            second.errors += 1;
        }
        if sample.late {
            second.late += 1;
        }
        *second.outcomes.entry(sample.outcome).or_default() += 1;
    }

    /// The totals over seconds `from..to` (the measured window, after the warm-up).
    pub fn merge(&self, from: usize, to: usize) -> Totals {
        let mut totals = Totals {
            histogram: new_histogram(),
            completed: 0,
            errors: 0,
            late: 0,
            outcomes: BTreeMap::new(),
        };
        for second in self.seconds.iter().take(to).skip(from) {
            totals
                .histogram
                .add(&second.histogram)
                .expect("histograms with the same bounds merge");
            totals.completed += second.completed;
            totals.errors += second.errors;
            totals.late += second.late;
            for (outcome, count) in &second.outcomes {
                *totals.outcomes.entry(*outcome).or_default() += count;
            }
        }
        totals
    }
}

/// Merged results of a window.
pub struct Totals {
    pub histogram: Histogram<u64>,
    /// Answers (and failures) that came in the window.
    pub completed: u64,
    pub errors: u64,
    pub late: u64,
    pub outcomes: BTreeMap<Outcome, u64>,
}

/// The report, as printed and as written by `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The server loaded.
    pub url: String,
    /// The scenario, or the mix with its weights.
    pub scenario: String,
    /// Connections (and threads) at once.
    pub connections: usize,
    /// Open loop: the requested rate; closed loop: none.
    pub rate: Option<f64>,
    /// Warm-up, left out of the totals.
    pub warmup_seconds: f64,
    /// The measured window.
    pub measured_seconds: f64,
    /// Requests due in the measured window (answered or failed): in open loop, what was
    /// offered.
    pub requests: u64,
    /// Requests that failed or got a 4xx or 5xx.
    pub errors: u64,
    /// `errors / requests`.
    pub error_rate: f64,
    /// Answers (any status, and failures) that came in the measured window, per second: what
    /// the server delivered, which in open loop can fall short of the rate offered.
    pub throughput: f64,
    /// Successful (2xx/3xx) requests due in the window, per second.
    pub ok_throughput: f64,
    /// Latency percentiles over the measured window.
    pub latency_ms: Latency,
    /// Open loop: requests due while their connection was still waiting for the previous
    /// answer (over 1 ms past their intended time), so sent late.
    pub late_sends: u64,
    /// Counts by outcome: `200`, `503`, `timeout`, ...
    pub outcomes: BTreeMap<String, u64>,
    /// Second by second, warm-up included.
    pub per_second: Vec<SecondReport>,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// The slowest.
    pub max: f64,
    /// The mean.
    pub mean: f64,
}

/// One second of the run.
#[derive(Debug, Serialize)]
pub struct SecondReport {
    /// Its index from the start, from 0.
    pub second: usize,
    /// Part of the warm-up, left out of the totals.
    pub warmup: bool,
    /// Requests meant to be sent in this second.
    pub requests: u64,
    /// Of which failed or got a 4xx or 5xx.
    pub errors: u64,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
}

pub fn outcome_name(outcome: Outcome) -> String {
    match outcome {
        Outcome::Status(status) => status.to_string(),
        Outcome::Failed(failure) => failure.name().to_owned(),
    }
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Latency {
    /// The percentiles of a histogram of microseconds.
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        Latency {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
        }
    }
}

impl SecondReport {
    /// The report of one recorded second.
    pub fn of(index: usize, second: &Second, warmup: bool) -> SecondReport {
        SecondReport {
            second: index,
            warmup,
            requests: second.requests(),
            errors: second.errors,
            p50_ms: ms(second.histogram.value_at_quantile(0.50)),
            p99_ms: ms(second.histogram.value_at_quantile(0.99)),
        }
    }
}

impl Report {
    /// The final table, for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mode = match self.rate {
            Some(rate) => format!("open loop at {rate} requests/s"),
            None => "closed loop".to_owned(),
        };
        let _ = writeln!(
            out,
            "\n{} against {}: {} connections, {mode}, {:.0} s measured after {:.0} s of warm-up\n",
            self.scenario, self.url, self.connections, self.measured_seconds, self.warmup_seconds
        );
        let _ = writeln!(
            out,
            "| requests | errors | throughput (req/s) | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|");
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "| {} | {} ({:.3}%) | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            self.requests,
            self.errors,
            self.error_rate * 100.0,
            self.throughput,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max
        );
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(name, count)| format!("{name}: {count}"))
            .collect();
        let _ = writeln!(out, "\noutcomes: {}", outcomes.join(", "));
        if self.rate.is_some() {
            let _ = writeln!(
                out,
                "late sends (due while their connection was still busy): {}",
                self.late_sends
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(second: u64, latency_ms: u64, outcome: Outcome) -> Sample {
        Sample {
            at: Duration::from_millis(second * 1000 + 10),
            latency: Duration::from_millis(latency_ms),
            outcome,
            late: false,
        }
    }

    #[test]
    fn the_merge_keeps_only_the_measured_window() {
        let mut recording = Recording::default();
        // Second 0 is warm-up with slow answers and an error.
        recording.record(&sample(0, 900, Outcome::Status(200)));
        recording.record(&sample(0, 900, Outcome::Failed(Failure::Timeout)));
        for latency in 1..=100 {
            recording.record(&sample(1, latency, Outcome::Status(200)));
            recording.record(&sample(2, latency, Outcome::Status(200)));
        }
        recording.record(&sample(2, 5, Outcome::Status(503)));
        let totals = recording.merge(1, 3);
        assert_eq!(totals.histogram.len(), 201);
        assert_eq!(totals.errors, 1);
        assert_eq!(totals.outcomes[&Outcome::Status(200)], 200);
        assert_eq!(totals.outcomes[&Outcome::Status(503)], 1);
        assert!(
            !totals
                .outcomes
                .contains_key(&Outcome::Failed(Failure::Timeout))
        );
        let latency = Latency::of(&totals.histogram);
        assert!((49.0..=51.0).contains(&latency.p50), "{}", latency.p50);
        assert!((99.0..=100.1).contains(&latency.p99), "{}", latency.p99);
        assert!((99.9..=100.1).contains(&latency.max), "{}", latency.max);
    }

    #[test]
    fn merging_equals_recording_everything_in_one_histogram() {
        let mut recording = Recording::default();
        let mut single = new_histogram();
        for i in 0..10_000u64 {
            let latency = Duration::from_micros(1 + (i * 7919) % 50_000);
            recording.record(&Sample {
                at: Duration::from_millis(i),
                latency,
                outcome: Outcome::Status(200),
                late: false,
            });
            single.record(latency.as_micros() as u64).unwrap();
        }
        let merged = recording.merge(0, recording.seconds.len()).histogram;
        assert_eq!(merged.len(), single.len());
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                merged.value_at_quantile(q),
                single.value_at_quantile(q),
                "q={q}"
            );
        }
    }

    #[test]
    fn throughput_counts_answers_when_they_come_not_when_they_were_due() {
        let mut recording = Recording::default();
        // Due in second 1, answered 1.5 s later: offered in second 1, delivered in second 2.
        recording.record(&Sample {
            at: Duration::from_millis(1_200),
            latency: Duration::from_millis(1_500),
            outcome: Outcome::Status(200),
            late: false,
        });
        let first = recording.merge(1, 2);
        assert_eq!((first.histogram.len(), first.completed), (1, 0));
        let second = recording.merge(2, 3);
        assert_eq!((second.histogram.len(), second.completed), (0, 1));
    }

    #[test]
    fn only_2xx_and_3xx_are_ok() {
        assert!(Outcome::Status(200).is_ok());
        assert!(Outcome::Status(304).is_ok());
        assert!(!Outcome::Status(401).is_ok());
        assert!(!Outcome::Status(503).is_ok());
        assert!(!Outcome::Failed(Failure::Io).is_ok());
    }
}
