//! `cargo xtask ab`: this tree's servers against another revision's, both stacks serving at once
//! against one database, each loaded with half the connections, for several rounds.
//!
//! Why at once rather than one after the other: the machines we measure on are shared, and a
//! neighbour or a clock change moves runs minutes apart by 10-20%, more than the changes we
//! judge. Run side by side, both stacks meet the same neighbours; what is compared is the
//! throughput ratio within each round and the CPU each stack spends per request (tcp-server and
//! http-server, from /proc), whose medians over the rounds are the result. Each round starts
//! fresh servers and alternates which load starts first.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use loadtest::Report;
use loadtest::scenario::Step;
use serde_json::json;

use crate::bench::{ensure_tool, parse_seconds, start_fresh, wait_ready};
use crate::load::{Load, Spec, grouped};
use crate::perf::{self, Counts};
use crate::stack::{self, Binaries, Process, Profile, say};

/// The command line (documented on `Command` in main.rs, which clap shows).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The revision to compare with: a commit, tag or branch of this repository.
    #[arg(long)]
    base: String,
    /// Rounds; each starts fresh servers.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Measured time of each round: whole seconds or minutes.
    #[arg(long, default_value = "20s", value_parser = parse_seconds)]
    duration: Duration,
    /// The loadtest scenario both stacks get.
    #[arg(long, default_value = "login-random")]
    scenario: Step,
    /// Connections in all, half for each stack.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(2..=20_000))]
    connections: u32,
    /// Seeded users (seeded when missing).
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    users: u64,
    /// Run this tree's stack with its tier link over TLS (`--tier-tls` on both servers, with
    /// certificates scripts/tier-ca makes under --out): the cost of TLS, against a base in
    /// clear.
    #[arg(long)]
    new_tls: bool,
    /// This tree's tcp-server reaches the same database through this URL instead (for example
    /// over TCP while the base uses scripts/postgres's unix socket): the cost of a transport.
    #[arg(long)]
    new_database_url: Option<String>,
    /// Where the table, the JSON and the logs go (relative to the workspace's root).
    #[arg(long, default_value = "target/ab")]
    out: PathBuf,
}

/// One stack's figures in one round.
#[derive(Debug, Clone, Copy)]
struct Sample {
    throughput: f64,
    errors: u64,
    p99_ms: f64,
    /// CPU per request, microseconds.
    tcp_us: f64,
    http_us: f64,
    /// Context switches and system calls per request.
    tcp_events: Counts,
    http_events: Counts,
    /// Peak RSS (VmHWM) at the end of the round, MiB.
    tcp_mib: f64,
    http_mib: f64,
}

/// The two stacks of a round: index 0 is the base, 1 this tree.
const LABELS: [&str; 2] = ["base", "new"];

pub fn run(args: &Args) -> anyhow::Result<()> {
    let out = stack::root().join(&args.out);
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize()?;
    stack::raise_open_files_limit();
    ensure_tool("perf", "linux-perf")?;
    let new = stack::build_servers(Profile::Release)?;
    let (base_commit, base) = build_base(&args.base, &out)?;
    let ports = |stack: u16| [7070 + stack, 9070 + stack, 8080 + stack, 9080 + stack];
    stack::check_ports_free(&[ports(0), ports(1)].concat())?;

    let database_url = stack::seeded_database(&new, args.users)?;
    let tls = if args.new_tls {
        Some(stack::tier_tls(&out.join("tier-tls"))?)
    } else {
        None
    };

    let half = args.connections as usize / 2;
    let mut spec = Spec::new(args.scenario, args.users, half, args.duration);
    if args.scenario.needs_own_account() || args.scenario == Step::Register {
        // As in the benchmark: within each address's registration burst.
        spec.spread_sources = Some(20);
    }
    say(&format!(
        "{} rounds of {} s: {} at {} connections each, {} ({}) on ports {:?}, this tree on {:?}",
        args.rounds,
        args.duration.as_secs(),
        args.scenario.name(),
        half,
        args.base,
        short(&base_commit),
        ports(1),
        ports(0),
    ));
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let samples = run_round(
            round,
            [&base, &new],
            [
                &database_url,
                args.new_database_url.as_deref().unwrap_or(&database_url),
            ],
            &spec,
            &out,
            [ports(1), ports(0)],
            tls.as_ref(),
        )?;
        let ratio = samples[1].throughput / samples[0].throughput;
        say(&format!(
            "round {}: base {:.0}/s ({} errors, CPU {:.0}+{:.0} us), new {:.0}/s ({} errors, CPU \
             {:.0}+{:.0} us): {ratio:.3}",
            round + 1,
            samples[0].throughput,
            samples[0].errors,
            samples[0].tcp_us,
            samples[0].http_us,
            samples[1].throughput,
            samples[1].errors,
            samples[1].tcp_us,
            samples[1].http_us,
        ));
        rounds.push(samples);
    }
    let table = render(args, &base_commit, &rounds);
    println!("{table}");
    fs::write(out.join("ab.md"), format!("{table}\n"))?;
    let json = json!({
        "base": args.base,
        "base_commit": base_commit,
        "new_tls": args.new_tls,
        "new_database_url": args.new_database_url,
        "scenario": args.scenario.name(),
        "connections_each": half,
        "seconds": args.duration.as_secs(),
        "rounds": rounds.iter().map(|samples| {
            LABELS.iter().zip(samples).map(|(label, s)| (label.to_string(), json!({
                "throughput": s.throughput,
                "errors": s.errors,
                "p99_ms": s.p99_ms,
                "tcp_server_cpu_us_per_request": s.tcp_us,
                "http_server_cpu_us_per_request": s.http_us,
                "tcp_server_context_switches_per_request": s.tcp_events.context_switches,
                "http_server_context_switches_per_request": s.http_events.context_switches,
                "tcp_server_syscalls_per_request": s.tcp_events.syscalls,
                "http_server_syscalls_per_request": s.http_events.syscalls,
                "tcp_server_peak_rss_mib": s.tcp_mib,
                "http_server_peak_rss_mib": s.http_mib,
            }))).collect::<serde_json::Map<_, _>>()
        }).collect::<Vec<_>>(),
    });
    fs::write(out.join("ab.json"), serde_json::to_vec_pretty(&json)?)?;
    say(&format!(
        "written: {0}/ab.md, {0}/ab.json (servers' logs beside them)",
        out.display()
    ));
    Ok(())
}

/// The base revision's servers, built once per commit from `git archive` (no worktree is
/// registered in the repository) into `<out>/<commit>/`, with a target directory shared
/// between revisions so that only what changed is compiled again.
pub(crate) fn build_base(revision: &str, out: &Path) -> anyhow::Result<(String, Binaries)> {
    let git = |args: &[&str]| -> anyhow::Result<Vec<u8>> {
        let output = Command::new("git")
            .args(args)
            .current_dir(stack::root())
            .stderr(Stdio::inherit())
            .output()
            .context("running git")?;
        ensure!(output.status.success(), "git {} failed", args.join(" "));
        Ok(output.stdout)
    };
    let commit = String::from_utf8(git(&[
        "rev-parse",
        "--verify",
        &format!("{revision}^{{commit}}"),
    ])?)?
    .trim()
    .to_owned();
    let dir = out.join(short(&commit));
    let binaries = Binaries {
        tcp_server: dir.join("bin/tcp-server"),
        http_server: dir.join("bin/http-server"),
    };
    if binaries.tcp_server.is_file() && binaries.http_server.is_file() {
        say(&format!(
            "base {revision}: built already in {}",
            dir.display()
        ));
        return Ok((commit, binaries));
    }
    let source = dir.join("src");
    let _ = fs::remove_dir_all(&source);
    fs::create_dir_all(&source)?;
    say(&format!(
        "base {revision} ({}): exporting to {}",
        short(&commit),
        source.display()
    ));
    let archive = git(&["archive", "--format=tar", &commit])?;
    let mut tar = Command::new("tar")
        .arg("-x")
        .current_dir(&source)
        .stdin(Stdio::piped())
        .spawn()
        .context("running tar")?;
    std::io::Write::write_all(tar.stdin.as_mut().expect("piped"), &archive)?;
    drop(tar.stdin.take());
    ensure!(tar.wait()?.success(), "tar -x of git archive failed");
    say(&format!("base {revision}: building the servers (release)"));
    let target = out.join("target");
    let status = stack::cargo()
        .args(["build", "--release", "--locked"])
        .args(["--package", "tcp-server", "--package", "http-server"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&source)
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "building {revision} failed");
    fs::create_dir_all(dir.join("bin"))?;
    for (name, to) in [
        ("tcp-server", &binaries.tcp_server),
        ("http-server", &binaries.http_server),
    ] {
        fs::copy(target.join("release").join(name), to)
            .with_context(|| format!("copying {name}"))?;
    }
    Ok((commit, binaries))
}

pub(crate) fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// One round: both stacks started fresh, both loads at once; each stack's figures.
fn run_round(
    round: u32,
    binaries: [&Binaries; 2],
    database_urls: [&str; 2],
    spec: &Spec,
    out: &Path,
    ports: [[u16; 4]; 2],
    new_tls: Option<&impl Fn(&str) -> Vec<String>>,
) -> anyhow::Result<[Sample; 2]> {
    // `--tier-tls` and the files of `side` for the new stack, when asked.
    let tls = |index: usize, side: &str| -> Vec<String> {
        match new_tls {
            Some(flags) if index == 1 => flags(side),
            _ => Vec::new(),
        }
    };
    let mut servers = Vec::new();
    for (index, (binaries, [tcp, tcp_admin, http, http_admin])) in
        binaries.iter().zip(ports).enumerate()
    {
        let label = LABELS[index];
        // No --migrate: this tree's seeding migrated the database, and an older base would
        // refuse a schema with migrations it does not know.
        let mut command = Command::new(&binaries.tcp_server);
        command
            .args(["serve", "--dev"])
            .args(["--listen", &format!("127.0.0.1:{tcp}")])
            .args(["--admin-listen", &format!("127.0.0.1:{tcp_admin}")])
            .args(["--register-global-rate", "1000000"])
            .args(["--register-global-burst", "1000000"])
            .args(tls(index, "tcp-server"))
            .env("DATABASE_URL", database_urls[index]);
        let tcp_server = start_fresh(&format!("{label}-tcp-server"), command, out)?;
        let mut command = Command::new(&binaries.http_server);
        command
            .args(dev(&binaries.http_server))
            .args(["--listen", &format!("127.0.0.1:{http}")])
            .args(["--admin-listen", &format!("127.0.0.1:{http_admin}")])
            .args(["--backend", &format!("127.0.0.1:{tcp}")])
            .args(tls(index, "http-server"));
        let http_server = start_fresh(&format!("{label}-http-server"), command, out)?;
        servers.push((tcp_server, http_server));
    }
    for ((tcp, http), [_, _, port, _]) in servers.iter_mut().zip(ports) {
        wait_ready(tcp, http, port)?;
    }
    // Alternate which load starts first.
    let order: [usize; 2] = if round.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    };
    let mut loads: [Option<Load>; 2] = [None, None];
    for index in order {
        let json = out.join(format!("{}-{}.json", LABELS[index], round + 1));
        loads[index] = Some(Load::start(LABELS[index], spec, ports[index][2], json)?);
    }
    // CPU over the measured window only: from the end of the warm-up to just before the end.
    thread::sleep(spec.warmup + Duration::from_millis(300));
    let planned = spec.duration.saturating_sub(Duration::from_millis(600));
    let counting = servers
        .iter()
        .enumerate()
        .map(|(index, (tcp, http))| {
            let file =
                |tier: &str| out.join(format!("perf-{}-{tier}-{}.txt", LABELS[index], round + 1));
            Ok((
                perf::start(tcp.pid(), planned, &file("tcp"))?,
                perf::start(http.pid(), planned, &file("http"))?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let before = cpu_ticks(&servers)?;
    let started = Instant::now();
    thread::sleep(planned);
    let after = cpu_ticks(&servers)?;
    let window = started.elapsed().as_secs_f64();
    let mut events = Vec::new();
    for (tcp, http) in counting {
        events.push((tcp.finish()?, http.finish()?));
    }
    let mut samples = [None, None];
    let peak_mib = |server: &Process| -> anyhow::Result<f64> {
        let kib = server
            .proc_status("VmHWM")
            .with_context(|| format!("reading {}'s VmHWM", server.name()))?;
        Ok(kib as f64 / 1024.0)
    };
    for (index, load) in loads.into_iter().enumerate() {
        let report: Report = load.expect("started above").report()?;
        let requests = report.throughput * window;
        let per_request = |ticks: u64| ticks as f64 / ticks_per_second() * 1e6 / requests.max(1.0);
        samples[index] = Some(Sample {
            throughput: report.throughput,
            errors: report.errors,
            p99_ms: report.latency_ms.p99,
            tcp_us: per_request(after[index].0 - before[index].0),
            http_us: per_request(after[index].1 - before[index].1),
            // perf's window is the planned one, not the slightly longer measured one.
            tcp_events: events[index]
                .0
                .per(report.throughput * planned.as_secs_f64()),
            http_events: events[index]
                .1
                .per(report.throughput * planned.as_secs_f64()),
            tcp_mib: peak_mib(&servers[index].0)?,
            http_mib: peak_mib(&servers[index].1)?,
        });
    }
    for (mut tcp, mut http) in servers {
        http.stop(Duration::from_secs(15));
        tcp.stop(Duration::from_secs(15));
    }
    Ok(samples.map(|sample| sample.expect("both loads reported")))
}

/// `--dev` for an http-server that knows it (one from before the tier handshake does not).
pub(crate) fn dev(http_server: &Path) -> Vec<&'static str> {
    let help = Command::new(http_server).arg("--help").output();
    match help {
        Ok(output) if String::from_utf8_lossy(&output.stdout).contains("--dev") => vec!["--dev"],
        _ => Vec::new(),
    }
}

/// CPU time (user and system, clock ticks) of each stack's tcp-server and http-server.
fn cpu_ticks(servers: &[(Process, Process)]) -> anyhow::Result<Vec<(u64, u64)>> {
    servers
        .iter()
        .map(|(tcp, http)| Ok((process_ticks(tcp.pid())?, process_ticks(http.pid())?)))
        .collect()
}

/// utime + stime of a process, all its threads, from /proc/<pid>/stat.
fn process_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (did a server exit?)"))?;
    // The fields after the command name, which is in parentheses and may hold anything.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("no command name in /proc/<pid>/stat")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let field = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .and_then(|field| field.parse().ok())
            .with_context(|| format!("field {} of /proc/{pid}/stat", index + 3))
    };
    Ok(field(11)? + field(12)?)
}

/// The kernel's clock ticks per second, from `getconf CLK_TCK` (100 on Linux's usual builds,
/// assumed if getconf fails).
fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|ticks: &f64| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// The markdown table: each stack's medians, and the medians of the per-round ratios.
fn render(args: &Args, base_commit: &str, rounds: &[[Sample; 2]]) -> String {
    let of = |index: usize, pick: fn(&Sample) -> f64| {
        median(rounds.iter().map(|samples| pick(&samples[index])).collect())
    };
    let ratio = |pick: fn(&Sample) -> f64| {
        median(
            rounds
                .iter()
                .map(|samples| pick(&samples[1]) / pick(&samples[0]))
                .collect(),
        )
    };
    let cpu = |s: &Sample| s.tcp_us + s.http_us;
    let ahead = rounds
        .iter()
        .filter(|samples| samples[1].throughput > samples[0].throughput)
        .count();
    let errors = |index: usize| -> u64 { rounds.iter().map(|samples| samples[index].errors).sum() };
    let mut table = format!(
        "{}{} side by side with {} ({}): {} rounds of {} s, {} connections each, {} users\n\n",
        args.scenario.name(),
        if args.new_tls {
            " (new: tier link over TLS)"
        } else {
            ""
        },
        args.base,
        short(base_commit),
        rounds.len(),
        args.duration.as_secs(),
        args.connections / 2,
        grouped(args.users),
    );
    table.push_str(
        "| | requests/s (median) | CPU per request, tcp-server + http-server (us) | context \
         switches per request, tcp + http | system calls per request, tcp + http | peak RSS, \
         tcp + http (MiB) | p99 (ms) | errors |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (index, label) in LABELS.iter().enumerate() {
        let _ = writeln!(
            table,
            "| {label} | {:.0} | {:.0} + {:.0} | {:.1} + {:.1} | {:.1} + {:.1} | {:.0} + {:.0} | \
             {:.1} | {} |",
            of(index, |s| s.throughput),
            of(index, |s| s.tcp_us),
            of(index, |s| s.http_us),
            of(index, |s| s.tcp_events.context_switches),
            of(index, |s| s.http_events.context_switches),
            of(index, |s| s.tcp_events.syscalls),
            of(index, |s| s.http_events.syscalls),
            of(index, |s| s.tcp_mib),
            of(index, |s| s.http_mib),
            of(index, |s| s.p99_ms),
            errors(index),
        );
    }
    let _ = write!(
        table,
        "\nnew / base, median of the rounds' ratios: throughput {:.3}, CPU per request {:.3}; \
         new ahead in {ahead} of {} rounds",
        ratio(|s| s.throughput),
        ratio(cpu),
        rounds.len(),
    );
    table
}
