//! loadtest's entry point: parses the command line once into a `Config`, runs the load, prints
//! the report and writes the files asked for. Exits 1 when the error rate is over
//! `--max-error-rate`, 2 on bad arguments.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use loadtest::scenario::{DEFAULT_MIX, Mix, Step};
use loadtest::{Config, plot};

/// The gatehouse load generator: drives the HTTP API with exactly --concurrency keep-alive
/// connections, one thread each, and reports throughput and latency percentiles.
///
/// Scenarios: login-random (uniform over the --users seeded users: user{i} / secret-{i}),
/// login-fixed (the first 200), register (fresh names), profile (log in once per connection,
/// then GET /api/v1/me), update (PATCH the nickname), change-password (PUT
/// /api/v1/me/password on an account each connection registers for itself), health (GET
/// /healthz), and mixed (--mix weights).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The http-server to load (loopback only is sensible: the load is real).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// login-random, login-fixed, register, profile, update, change-password, health or mixed.
    #[arg(long, default_value = "login-random")]
    scenario: String,
    /// Weights of the mixed scenario.
    #[arg(long, default_value = DEFAULT_MIX)]
    mix: String,
    /// Seeded users to draw from.
    #[arg(long, default_value_t = 10_000_000)]
    users: u64,
    /// Connections (and threads) at once.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    concurrency: u32,
    /// Measured time, after the warm-up.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Time before measuring starts (its requests are sent, not counted).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Open loop: requests per second over all connections. Latency then counts from each
    /// request's intended send time. Without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// The longest wait for one response.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw throughput and latency per second as SVG here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Exit 1 when errors / requests is above this.
    #[arg(long, default_value_t = 0.0)]
    max_error_rate: f64,
    /// No line each second.
    #[arg(long)]
    quiet: bool,
    /// Look like many clients: each connection opens from its own address in 127.0.0.0/8 and
    /// moves to a fresh one after this many requests. The service limits registrations (and
    /// failed logins) per client address; this keeps its limits on while measuring it.
    #[arg(long, value_name = "REQUESTS", value_parser = clap::value_parser!(u64).range(1..))]
    spread_sources: Option<u64>,
}

fn main() {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(error) => {
            eprintln!("loadtest: {error:#}");
            std::process::exit(2);
        }
    }
}

/// Runs; `Ok(false)` when the error rate is over the limit.
fn execute(cli: Cli) -> anyhow::Result<bool> {
    let config = config(&cli)?;
    let report = loadtest::run(&config).context("running the load")?;
    print!("{}", report.table());
    if report.requests == 0 {
        bail!("no request was sent in the measured window");
    }
    if let Some(path) = &cli.json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &cli.plot {
        plot::svg(&report, path)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("drawing {}", path.display()))?;
    }
    if report.error_rate > cli.max_error_rate {
        eprintln!(
            "loadtest: error rate {:.4}% is over --max-error-rate {:.4}%",
            report.error_rate * 100.0,
            cli.max_error_rate * 100.0
        );
        return Ok(false);
    }
    Ok(true)
}

fn config(cli: &Cli) -> anyhow::Result<Config> {
    let host = cli
        .url
        .strip_prefix("http://")
        .context("--url must start with http:// (no TLS)")?
        .trim_end_matches('/');
    if host.contains('/') {
        bail!("--url takes no path: the scenarios choose the paths");
    }
    let address = host
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} resolves to no address"))?;
    let mix = if cli.scenario == "mixed" {
        Mix::parse(&cli.mix).map_err(anyhow::Error::msg)?
    } else {
        Mix::single(cli.scenario.parse::<Step>().map_err(anyhow::Error::msg)?)
    };
    if cli
        .rate
        .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
    {
        bail!("--rate must be above 0");
    }
    // The report counts whole seconds.
    if cli.duration.is_zero() || cli.duration.subsec_nanos() != 0 {
        bail!("--duration must be a whole number of seconds, at least 1");
    }
    if cli.warmup.subsec_nanos() != 0 {
        bail!("--warmup must be a whole number of seconds");
    }
    if cli.users == 0 {
        bail!("--users must be at least 1");
    }
    Ok(Config {
        url: cli.url.clone(),
        address,
        host: host.to_owned(),
        mix,
        users: cli.users,
        connections: cli.concurrency as usize,
        duration: cli.duration,
        warmup: cli.warmup,
        rate: cli.rate,
        timeout: cli.timeout,
        live: !cli.quiet,
        spread_sources: cli.spread_sources,
    })
}
