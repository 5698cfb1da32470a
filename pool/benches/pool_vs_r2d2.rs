//! Our pool against r2d2 0.8 with the same no-op manager, at (threads, max_size) = (8, 8),
//! (64, 16) and (256, 16).
//!
//! Two parts, both in one run so that the machine's noise hits both pools alike:
//! 1. criterion throughput benchmarks (checkout plus return, per second);
//! 2. a side-by-side table: rounds that alternate between the pools, each thread recording every
//!    checkout's wait in an HdrHistogram; it prints the median throughput, the p99 and p99.9
//!    waits and the ratios ours/r2d2 as a markdown table (the one in `pool/README.md`);
//! 3. the same for ours alone with three barging bounds: strict FIFO, the default, none.
//!
//! Run: `cargo bench -p pool --bench pool_vs_r2d2` (add `-- --table-only` to skip criterion).
//! For profiling one pool alone: `-- --profile ours|r2d2 THREADS MAX_SIZE` cycles for ten
//! seconds and prints the rate and wait percentiles.

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use hdrhistogram::Histogram;

const CASES: [(usize, u32); 3] = [(8, 8), (64, 16), (256, 16)];
const TABLE_ROUNDS: usize = 7;
const TABLE_ROUND_TIME: Duration = Duration::from_millis(1000);

#[derive(Debug)]
struct NoError;

impl std::fmt::Display for NoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no error")
    }
}

impl std::error::Error for NoError {}

/// Connections are plain numbers: the benchmark measures only the pools' own work.
struct Noop;

impl pool::Manager for Noop {
    type Connection = u64;
    type Error = NoError;
    fn connect(&self) -> Result<u64, NoError> {
        Ok(0)
    }
    fn is_valid(&self, _: &mut u64) -> Result<(), NoError> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

impl r2d2::ManageConnection for Noop {
    type Connection = u64;
    type Error = NoError;
    fn connect(&self) -> Result<u64, NoError> {
        Ok(0)
    }
    fn is_valid(&self, _: &mut u64) -> Result<(), NoError> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

/// What the benchmark needs of a pool: check out, touch the connection, return it.
trait Checkout: Sync {
    fn cycle(&self);
    fn name(&self) -> &'static str;
}

/// Our pool with its barging bound (`Builder::fair_after`) and the name it is shown by.
struct Ours(pool::Pool<Noop>, &'static str);

impl Checkout for Ours {
    fn cycle(&self) {
        let mut conn = self.0.get().expect("checkout");
        *conn = black_box(*conn + 1);
    }
    fn name(&self) -> &'static str {
        self.1
    }
}

impl Checkout for r2d2::Pool<Noop> {
    fn cycle(&self) {
        let mut conn = self.get().expect("checkout");
        *conn = black_box(*conn + 1);
    }
    fn name(&self) -> &'static str {
        "r2d2"
    }
}

/// The bounds the second table compares: strict FIFO handoff, the default, no bound at all.
const BOUNDS: [(Duration, &str); 3] = [
    (Duration::ZERO, "FIFO (0)"),
    (pool::DEFAULT_FAIR_AFTER, "500 µs (default)"),
    (Duration::MAX, "unbounded"),
];

fn ours(max_size: u32) -> Ours {
    ours_bounded(max_size, pool::DEFAULT_FAIR_AFTER, "ours")
}

fn ours_bounded(max_size: u32, fair_after: Duration, name: &'static str) -> Ours {
    let pool = pool::Pool::builder()
        .max_size(max_size)
        .min_idle(max_size)
        .fair_after(fair_after)
        .build(Noop)
        .expect("pool");
    // Both pools start full, so no benchmark measures connects.
    while pool.stats().idle < max_size {
        thread::sleep(Duration::from_millis(1));
    }
    Ours(pool, name)
}

fn theirs(max_size: u32) -> r2d2::Pool<Noop> {
    // r2d2 validates on every checkout by default; ours only after an idle threshold. Turning
    // that off compares the pools' own mechanics.
    r2d2::Pool::builder()
        .max_size(max_size)
        .min_idle(Some(max_size))
        .test_on_check_out(false)
        .build(Noop)
        .expect("r2d2 pool")
}

/// Runs `per_thread` cycles on each of `threads` threads; returns the wall time from the moment
/// all threads are ready.
fn run_cycles(pool: &dyn Checkout, threads: usize, per_thread: u64) -> Duration {
    let ready = Barrier::new(threads + 1);
    thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                ready.wait();
                for _ in 0..per_thread {
                    pool.cycle();
                }
            });
        }
        ready.wait();
        let start = Instant::now();
        // Leaving the scope joins every thread.
        start
    })
    .elapsed()
}

fn throughput(c: &mut Criterion) {
    for (threads, max_size) in CASES {
        let mut group = c.benchmark_group(format!("checkout_return/{threads}t_{max_size}c"));
        group
            .throughput(Throughput::Elements(1))
            .sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        let pools: [Box<dyn Checkout>; 2] = [Box::new(ours(max_size)), Box::new(theirs(max_size))];
        for pool in &pools {
            group.bench_function(BenchmarkId::from_parameter(pool.name()), |b| {
                b.iter_custom(|iters| {
                    let per_thread = iters.div_ceil(threads as u64).max(1);
                    let elapsed = run_cycles(pool.as_ref(), threads, per_thread);
                    // Report time per cycle as criterion asked for `iters` of them.
                    elapsed.mul_f64(iters as f64 / (per_thread * threads as u64) as f64)
                });
            });
        }
        group.finish();
    }
}

/// One timed round: every thread cycles until the time is up, recording each checkout's wait.
fn measured_round(pool: &dyn Checkout, threads: usize) -> (f64, Histogram<u64>) {
    let ready = Barrier::new(threads + 1);
    let stop_at = std::sync::OnceLock::<Instant>::new();
    let (ops, histogram) = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut waits = wait_histogram();
                    let mut ops = 0u64;
                    ready.wait();
                    let stop = *stop_at.wait();
                    loop {
                        let asked = Instant::now();
                        pool.cycle();
                        let waited = asked.elapsed();
                        waits.saturating_record(waited.as_nanos() as u64);
                        ops += 1;
                        // Checking the clock every cycle would cost as much as the cycle.
                        if ops.is_multiple_of(64) && Instant::now() >= stop {
                            return (ops, waits);
                        }
                    }
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        stop_at.set(start + TABLE_ROUND_TIME).expect("set once");
        let mut total = 0u64;
        let mut merged = wait_histogram();
        for worker in workers {
            let (ops, waits) = worker.join().expect("worker");
            total += ops;
            merged.add(&waits).expect("same precision");
        }
        (total as f64 / start.elapsed().as_secs_f64(), merged)
    });
    (ops, histogram)
}

/// Waits from 1 ns to 100 s at three significant digits; larger values are clamped.
fn wait_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("histogram bounds")
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Medians over alternating rounds of each pool's rate and p99, p99.9 and longest waits.
struct Summary {
    rate: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

/// Runs `TABLE_ROUNDS` rounds of every pool, rotating which goes first so that drift in the
/// machine's load favours none.
fn rounds(pools: &[&dyn Checkout], threads: usize) -> Vec<Summary> {
    let mut samples: Vec<[Vec<f64>; 4]> = pools.iter().map(|_| Default::default()).collect();
    for round in 0..TABLE_ROUNDS {
        for offset in 0..pools.len() {
            let index = (round + offset) % pools.len();
            let (rate, waits) = measured_round(pools[index], threads);
            let [rates, p99s, p999s, maxes] = &mut samples[index];
            rates.push(rate);
            p99s.push(waits.value_at_quantile(0.99) as f64);
            p999s.push(waits.value_at_quantile(0.999) as f64);
            maxes.push(waits.max() as f64);
        }
    }
    samples
        .into_iter()
        .map(|[mut rate, mut p99, mut p999, mut max]| Summary {
            rate: median(&mut rate),
            p99: median(&mut p99),
            p999: median(&mut p999),
            max: median(&mut max),
        })
        .collect()
}

fn table() {
    println!();
    println!(
        "| threads | max_size | ours cycles/s | r2d2 cycles/s | ratio | ours p99 wait | r2d2 p99 wait | ratio | ours p99.9 wait | r2d2 p99.9 wait | ratio |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (threads, max_size) in CASES {
        let [ours, theirs] = rounds(&[&ours(max_size), &theirs(max_size)], threads)
            .try_into()
            .unwrap_or_else(|_| unreachable!("two pools in, two summaries out"));
        println!(
            "| {threads} | {max_size} | {:.0} | {:.0} | {:.2} | {} | {} | {:.2} | {} | {} | {:.2} |",
            ours.rate,
            theirs.rate,
            ours.rate / theirs.rate,
            show_nanos(ours.p99),
            show_nanos(theirs.p99),
            ours.p99 / theirs.p99,
            show_nanos(ours.p999),
            show_nanos(theirs.p999),
            ours.p999 / theirs.p999,
        );
    }
    println!();
    println!(
        "The barging bound (`Builder::fair_after`): ours with each bound, and r2d2, medians of the rounds."
    );
    println!();
    println!("| threads | max_size | pool | cycles/s | p99 wait | p99.9 wait | longest wait |");
    println!("|---:|---:|---|---:|---:|---:|---:|");
    for (threads, max_size) in CASES {
        let pools: Vec<Ours> = BOUNDS
            .iter()
            .map(|&(bound, name)| ours_bounded(max_size, bound, name))
            .collect();
        let r2d2 = theirs(max_size);
        let mut views: Vec<&dyn Checkout> =
            pools.iter().map(|pool| pool as &dyn Checkout).collect();
        views.push(&r2d2);
        for (pool, summary) in views.iter().zip(rounds(&views, threads)) {
            println!(
                "| {threads} | {max_size} | {} | {:.0} | {} | {} | {} |",
                pool.name(),
                summary.rate,
                show_nanos(summary.p99),
                show_nanos(summary.p999),
                show_nanos(summary.max),
            );
        }
    }
}

fn show_nanos(nanos: f64) -> String {
    if nanos >= 1_000_000.0 {
        format!("{:.2} ms", nanos / 1_000_000.0)
    } else {
        format!("{:.1} µs", nanos / 1_000.0)
    }
}

/// Runs one pool alone for ten seconds, for `perf` and friends.
fn profile(which: &str, threads: usize, max_size: u32) {
    let pool: Box<dyn Checkout> = match which {
        "ours" => Box::new(ours(max_size)),
        "r2d2" => Box::new(theirs(max_size)),
        other => panic!("--profile takes ours or r2d2, not {other}"),
    };
    for _ in 0..10 {
        let (rate, waits) = measured_round(pool.as_ref(), threads);
        println!(
            "{which} {threads}t {max_size}c: {rate:.0} cycles/s, wait p50 {} p99 {} p99.9 {} max {}",
            show_nanos(waits.value_at_quantile(0.5) as f64),
            show_nanos(waits.value_at_quantile(0.99) as f64),
            show_nanos(waits.value_at_quantile(0.999) as f64),
            show_nanos(waits.max() as f64),
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--profile") {
        let which = args.get(at + 1).map_or("ours", String::as_str);
        let threads = args.get(at + 2).and_then(|a| a.parse().ok()).unwrap_or(64);
        let max_size = args.get(at + 3).and_then(|a| a.parse().ok()).unwrap_or(16);
        profile(which, threads, max_size);
        return;
    }
    let table_only = std::env::args().any(|arg| arg == "--table-only");
    if !table_only {
        let mut criterion = Criterion::default().configure_from_args();
        throughput(&mut criterion);
        criterion.final_summary();
    }
    table();
}
