//! `cargo xtask bench`: the benchmark of the README, in one run on this machine. It brings up
//! PostgreSQL, seeds the users (skipped when already there), starts tcp-server and http-server
//! (release), and measures, side by side:
//! 1. the database ceiling: pgbench running tcp-server's own login lookup
//!    (`tcp_server::ops::LOGIN_LOOKUP`) over the servers' transport (the scripts' unix
//!    socket), and over loopback TCP too;
//! 2. client efficiency: loadtest against wrk on GET /healthz, same connections and time;
//! 3. login-random and login-fixed, closed loop, with each server's context switches and
//!    system calls per login during login-random (`perf stat`);
//! 4. login-random, open loop at `--rate`, then a sweep at 50-90% of login-random's throughput
//!    (the highest rate whose p99 stays under 10 ms, and the curve as an SVG), and a `perf`
//!    profile of each server during one more login-random run;
//! 5. profile, register and change-password, closed loop;
//! 6. login-fixed again with tcp-server restarted at `--argon2 owasp`, against the bound the hash
//!    itself sets (cores / verify time, the verify time measured here in this run);
//! 7. the tier link: login-random with both servers restarted with `--tier-tls` (certificates
//!    from scripts/tier-ca), with the tier handshakes each needed (tcp-server's count of
//!    `Hello`), and, with `--clear-link-base`, that revision's servers;
//! 8. peak RSS and threads of both servers.
//!
//! It writes a markdown table (bench.md) and everything as JSON (bench.json, with one loadtest
//! report per run, and each run's JSON and SVG beside it) under `--out`, prints the table, and
//! stops what it started. Needs wrk and perf (each installed with apt-get when missing, as root
//! or through passwordless sudo) and pgbench (it comes with the server package scripts/postgres
//! installs).

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use loadtest::Report;
use loadtest::scenario::Step;
use serde_json::json;

use crate::http::{Call, Outcome};
use crate::load::{Spec, grouped};
use crate::perf::{self, Counts};
use crate::stack::{self, Process, Profile, Stop, say};

/// The command line (documented on `Command` in main.rs, which clap shows).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seeded users (seeded when missing; 10 million take about 3 minutes).
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    users: u64,
    /// Measured time of each login run: whole seconds or minutes (60s, 2m).
    #[arg(long, default_value = "60s", value_parser = parse_seconds)]
    duration: Duration,
    /// Measured time of the other runs, pgbench and wrk.
    #[arg(long, default_value = "30s", value_parser = parse_seconds)]
    short: Duration,
    /// Connections of every load (and of wrk).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    connections: u32,
    /// Logins a second of the open-loop run.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u32).range(1..))]
    rate: u32,
    /// A revision whose servers give a "link in clear, no handshake" row, for example 370f808,
    /// the last before the tier handshake (it differs from this tree in other changes too;
    /// `cargo xtask ab --base` measures a pair side by side). `none`, the default, skips it.
    #[arg(long, default_value = "none")]
    clear_link_base: String,
    /// Where the table, the JSON and each run's files go (relative to the workspace's root).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

/// A duration for `--duration` and `--short`: whole seconds, at least one (loadtest reports
/// whole seconds; wrk and pgbench take seconds).
pub(crate) fn parse_seconds(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))?;
    if duration.is_zero() || duration.subsec_nanos() != 0 {
        return Err(format!(
            "durations are whole seconds or minutes, at least 1 s (60s, 2m), not {text:?}"
        ));
    }
    Ok(duration)
}

/// Where the servers listen.
struct Ports {
    tcp: u16,
    tcp_admin: u16,
    http: u16,
    http_admin: u16,
}

impl Ports {
    fn from_env() -> anyhow::Result<Ports> {
        let port = |name: &str, default: u16| -> anyhow::Result<u16> {
            match std::env::var(name) {
                Ok(value) => value
                    .parse()
                    .with_context(|| format!("{name} must be a port number, not {value:?}")),
                Err(_) => Ok(default),
            }
        };
        Ok(Ports {
            tcp: port("GATEHOUSE_TCP_PORT", 7070)?,
            tcp_admin: port("GATEHOUSE_TCP_ADMIN_PORT", 9070)?,
            http: port("GATEHOUSE_HTTP_PORT", 8080)?,
            http_admin: port("GATEHOUSE_ADMIN_PORT", 9080)?,
        })
    }
}

/// The loadtest runs, one per row of the table.
struct Runs {
    health: Report,
    login_random: Report,
    login_fixed: Report,
    login_open: Report,
    /// login-random open loop at fractions of login-random's closed-loop throughput, slowest
    /// first: (rate asked, report).
    open_sweep: Vec<(f64, Report)>,
    profile: Report,
    register: Report,
    change_password: Report,
    login_owasp: Report,
    /// login-random on `--clear-link-base`'s servers, with that revision's short commit.
    login_clear: Option<(String, Report)>,
    login_tls: Report,
}

/// Tier handshakes tcp-server answered during a run: login-random over the authenticated
/// link, and over TLS.
struct Handshakes {
    plain: u64,
    tls: u64,
}

/// One verification's median time, in seconds, at each preset, measured in this process
/// before the loads (one thread, nothing else running): what the hash bound is made of.
struct VerifyTimes {
    fast: f64,
    owasp: f64,
}

/// Everything the table shows.
struct Results {
    machine: Machine,
    users: u64,
    connections: u32,
    rate: u32,
    pgbench_tps: f64,
    /// pgbench over loopback TCP too, when the servers use the unix socket.
    pgbench_tcp_tps: Option<f64>,
    wrk_rps: f64,
    /// Peak RSS (VmHWM), KiB: tcp-server, http-server.
    rss_kib: (u64, u64),
    /// Peak threads, sampled each second: tcp-server, http-server.
    threads: (u64, u64),
    /// Context switches and system calls per login during login-random: tcp-server,
    /// http-server.
    per_login: (Counts, Counts),
    /// How the servers (and pgbench) reach PostgreSQL: "unix socket" or "TCP".
    transport: &'static str,
    verify: VerifyTimes,
    handshakes: Handshakes,
    runs: Runs,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let out = stack::root().join(&args.out);
    let ports = Ports::from_env()?;
    stack::raise_open_files_limit();
    ensure_tool("wrk", "wrk")?;
    ensure_tool("perf", "linux-perf")?;
    let pgbench = find_pgbench()?;
    let binaries = stack::build_servers(Profile::Release)?;
    let clear_base = match args.clear_link_base.as_str() {
        "none" => None,
        revision => Some(crate::ab::build_base(
            revision,
            &stack::root().join("target/ab"),
        )?),
    };
    stack::check_ports_free(&[ports.tcp, ports.tcp_admin, ports.http, ports.http_admin])?;

    let database_url = stack::seeded_database(&binaries, args.users)?;

    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize()?;
    let _ = fs::remove_file(out.join("loadtest.txt"));
    say("argon2id: timing verifications at each preset, one per core at once (the hash bound)");
    let verify = VerifyTimes::measure(Machine::this()?.cores)?;
    // The TLS run's CA and certificates, made now so that the flags exist from the start.
    let tls_args = stack::tier_tls(&out.join("tier-tls"))?;
    let start_tcp = |preset: &str, tls: bool| {
        let mut command = Command::new(&binaries.tcp_server);
        command
            .args(["serve", "--migrate", "--dev", "--argon2", preset])
            .args(if tls {
                tls_args("tcp-server")
            } else {
                Vec::new()
            })
            .args(["--listen", &format!("127.0.0.1:{}", ports.tcp)])
            .args(["--admin-listen", &format!("127.0.0.1:{}", ports.tcp_admin)])
            // The register run spreads its connections over many loopback addresses (20
            // registrations from each, within the per-address burst), so the per-address
            // limits stay at their defaults; the limit over all clients (100 a second) is
            // raised above what the machine can do, or the run would measure it.
            .args(["--register-global-rate", "1000000"])
            .args(["--register-global-burst", "1000000"])
            .env("DATABASE_URL", &database_url);
        let name = if tls { "tcp-server-tls" } else { preset };
        start_fresh(&format!("tcp-server-{name}"), command, &out)
    };
    let start_http = |tls: bool| {
        let mut command = Command::new(&binaries.http_server);
        command
            .arg("--dev")
            .args(["--listen", &format!("127.0.0.1:{}", ports.http)])
            .args(["--admin-listen", &format!("127.0.0.1:{}", ports.http_admin)])
            .args(["--backend", &format!("127.0.0.1:{}", ports.tcp)])
            .args(if tls {
                tls_args("http-server")
            } else {
                Vec::new()
            });
        start_fresh(
            if tls {
                "http-server-tls"
            } else {
                "http-server"
            },
            command,
            &out,
        )
    };
    let mut tcp = start_tcp("fast", false)?;
    let mut http = start_http(false)?;
    wait_ready(&mut tcp, &mut http, ports.http)?;
    say(&format!(
        "serving: http://127.0.0.1:{} (tcp-server pid {}, http-server pid {}; logs in {})",
        ports.http,
        tcp.pid(),
        http.pid(),
        out.display()
    ));
    let peaks = ThreadPeaks::start(tcp.pid(), http.pid());

    let short = args.short.as_secs();
    let transport = transport(&database_url);
    say(&format!(
        "pgbench: the login lookup, prepared, 64 clients over the servers' transport \
         ({transport}), {short} s"
    ));
    let lookup = out.join("lookup.sql");
    fs::write(
        &lookup,
        pgbench_script(tcp_server::ops::LOGIN_LOOKUP, args.users)?,
    )?;
    let run_pgbench = |name: &str, url: &str| -> anyhow::Result<f64> {
        let mut command = Command::new(&pgbench);
        command
            .args(["-n", "-M", "prepared", "-c", "64", "-j", "2"])
            .args(["-T", &short.to_string()])
            .arg("-f")
            .arg(&lookup)
            .arg(url);
        let (status, text) = run_logged(name, command, &out)?;
        ensure!(
            status.is_some_and(|s| s.success()),
            "{name} failed: {}",
            tail(&text, 3)
        );
        pgbench_tps(&text).with_context(|| format!("no `tps = ` line in {name}'s output"))
    };
    let pgbench_tps = run_pgbench("pgbench", &database_url)?;
    // Over the socket, also over loopback TCP (the cluster listens on both): the ratio the
    // earlier tables gave, and how much the transport moves PostgreSQL's own rate.
    let pgbench_tcp_tps = match over_tcp(&database_url) {
        Some(url) if transport == "unix socket" => {
            say(&format!("pgbench: the same over loopback TCP, {short} s"));
            Some(run_pgbench("pgbench-tcp", &url)?)
        }
        _ => None,
    };

    let url = format!("http://127.0.0.1:{}", ports.http);
    say(&format!(
        "wrk: GET /healthz, {} connections, {short} s",
        args.connections
    ));
    let mut command = Command::new("wrk");
    command
        .args(["-t2", &format!("-c{}", args.connections)])
        .args([format!("-d{short}s"), format!("{url}/healthz")]);
    let (status, text) = run_logged("wrk", command, &out)?;
    ensure!(
        status.is_some_and(|s| s.success()),
        "wrk failed: {}",
        tail(&text, 3)
    );
    let wrk_rps = wrk_rps(&text).context("no `Requests/sec:` line in wrk's output")?;

    let connections = args.connections as usize;
    let spec = |step, duration| Spec::new(step, args.users, connections, duration);
    let measure = |name: &str, spec: Spec| measure(name, &spec, ports.http, &out);
    let health = measure(
        "health",
        Spec {
            warmup: Duration::from_secs(2),
            ..spec(Step::Health, args.short)
        },
    )?;
    let hellos = || hellos(ports.tcp_admin);
    let before = hellos()?;
    let login_spec = spec(Step::LoginRandom, args.duration);
    let window = observed_window(&login_spec);
    let (login_random, (tcp_counts, http_counts)) = during_window(
        &login_spec,
        || measure("login-random", login_spec.clone()),
        |window| {
            let tcp_count = perf::start(tcp.pid(), window, &out.join("perf-stat-tcp-server.txt"))?;
            let http_count =
                perf::start(http.pid(), window, &out.join("perf-stat-http-server.txt"))?;
            Ok((tcp_count.finish()?, http_count.finish()?))
        },
    )?;
    let logins = login_random.throughput * window.as_secs_f64();
    let per_login = (tcp_counts.per(logins), http_counts.per(logins));
    let plain_handshakes = hellos()? - before;
    let login_fixed = measure("login-fixed", spec(Step::LoginFixed, args.duration))?;
    let login_open = measure(
        "login-open",
        Spec {
            rate: Some(f64::from(args.rate)),
            ..spec(Step::LoginRandom, args.duration)
        },
    )?;
    // The tail goal: the highest open-loop rate whose p99 stays under 10 ms, as a fraction of
    // the closed-loop maximum just measured.
    let mut open_sweep = Vec::new();
    for percent in SWEEP_PERCENTS {
        let rate = (login_random.throughput * f64::from(percent) / 100.0).round();
        let report = measure(
            &format!("login-open-{percent}"),
            Spec {
                rate: Some(rate),
                ..spec(Step::LoginRandom, args.short)
            },
        )?;
        open_sweep.push((rate, report));
    }
    let curve = out.join("login-open-curve.svg");
    plot_sweep(&open_sweep, login_random.throughput, &curve)
        .with_context(|| format!("drawing {}", curve.display()))?;
    // Where each server's time goes during login-random: perf's call-graph samples, as a
    // report per server beside the table. Not counted in any row.
    say("profiling both servers during login-random (perf record)");
    let profile_spec = spec(Step::LoginRandom, args.short);
    during_window(
        &profile_spec,
        || measure("login-random-profiled", profile_spec.clone()),
        |window| {
            let tcp_record = perf::record(tcp.pid(), window, &out.join("perf-tcp-server.data"))?;
            let http_record = perf::record(http.pid(), window, &out.join("perf-http-server.data"))?;
            tcp_record.finish(&out.join("profile-tcp-server.txt"))?;
            http_record.finish(&out.join("profile-http-server.txt"))
        },
    )?;
    let profile = measure("profile", spec(Step::Profile, args.short))?;
    let register = measure(
        "register",
        Spec {
            spread_sources: Some(20),
            ..spec(Step::Register, args.short)
        },
    )?;
    let change_password = measure(
        "change-password",
        Spec {
            spread_sources: Some(20),
            ..spec(Step::ChangePassword, args.short)
        },
    )?;

    let vm_hwm = |server: &Process| {
        server
            .proc_status("VmHWM")
            .with_context(|| format!("reading {}'s VmHWM", server.name()))
    };
    let rss_kib = (vm_hwm(&tcp)?, vm_hwm(&http)?);
    let threads = peaks.finish();

    // The owasp preset: tcp-server restarted with it, the same 200 users as login-fixed. Their
    // first login re-hashes them at owasp, which the long warm-up covers; a last pass at the
    // end re-hashes them back. http-server's pooled sockets to the old process are found closed
    // and replaced.
    say("restarting tcp-server with --argon2 owasp");
    tcp.stop(Duration::from_secs(15));
    tcp = start_tcp("owasp", false)?;
    wait_ready(&mut tcp, &mut http, ports.http)?;
    let login_owasp = measure(
        "login-owasp",
        Spec {
            warmup: Duration::from_secs(20),
            ..spec(Step::LoginFixed, args.short)
        },
    )?;

    http.stop(Duration::from_secs(15));
    tcp.stop(Duration::from_secs(15));
    // The link in clear with no tier handshake: the servers of a revision from before it. No
    // --migrate: it would refuse a schema with migrations it does not know.
    let login_clear = match &clear_base {
        None => None,
        Some((commit, base)) => {
            let commit: String = commit.chars().take(7).collect();
            say(&format!(
                "starting the servers of {commit} (link in clear, no handshake)"
            ));
            let mut command = Command::new(&base.tcp_server);
            command
                .args(["serve", "--dev"])
                .args(["--listen", &format!("127.0.0.1:{}", ports.tcp)])
                .args(["--admin-listen", &format!("127.0.0.1:{}", ports.tcp_admin)])
                .env("DATABASE_URL", &database_url);
            tcp = start_fresh(&format!("tcp-server-{commit}"), command, &out)?;
            let mut command = Command::new(&base.http_server);
            command
                .args(crate::ab::dev(&base.http_server))
                .args(["--listen", &format!("127.0.0.1:{}", ports.http)])
                .args(["--admin-listen", &format!("127.0.0.1:{}", ports.http_admin)])
                .args(["--backend", &format!("127.0.0.1:{}", ports.tcp)]);
            http = start_fresh(&format!("http-server-{commit}"), command, &out)?;
            wait_ready(&mut tcp, &mut http, ports.http)?;
            let report = measure("login-random-clear", spec(Step::LoginRandom, args.duration))?;
            http.stop(Duration::from_secs(15));
            tcp.stop(Duration::from_secs(15));
            Some((commit, report))
        }
    };

    // The tier link over TLS: both servers restarted with certificates of a private CA made
    // for the run, then login-random as before.
    say("restarting both servers with --tier-tls");
    tcp = start_tcp("fast", true)?;
    http = start_http(true)?;
    wait_ready(&mut tcp, &mut http, ports.http)?;
    let before = hellos()?;
    let login_tls = measure("login-random-tls", spec(Step::LoginRandom, args.duration))?;
    let handshakes = Handshakes {
        plain: plain_handshakes,
        tls: hellos()? - before,
    };
    // The 200 users back at fast (not measured): otherwise the next run's login-fixed begins
    // by verifying owasp hashes, 19 MiB each in whichever worker, which the allocator keeps
    // (tcp-server's peak RSS went from 65 to 635 MiB that way).
    say("re-hashing the login-fixed users back at --argon2 fast");
    measure(
        "login-fixed-restore",
        Spec {
            warmup: Duration::from_secs(1),
            ..spec(Step::LoginFixed, Duration::from_secs(5))
        },
    )?;
    drop((http, tcp));
    let runs = Runs {
        health,
        login_random,
        login_fixed,
        login_open,
        open_sweep,
        profile,
        register,
        change_password,
        login_owasp,
        login_clear,
        login_tls,
    };

    let results = Results {
        machine: Machine::this()?,
        users: args.users,
        connections: args.connections,
        rate: args.rate,
        pgbench_tps,
        pgbench_tcp_tps,
        wrk_rps,
        rss_kib,
        threads,
        per_login,
        transport,
        verify,
        handshakes,
        runs,
    };
    let table = render(&results);
    fs::write(out.join("bench.md"), format!("{table}\n"))?;
    fs::write(
        out.join("bench.json"),
        serde_json::to_vec_pretty(&to_json(&results))?,
    )?;
    println!("{table}");
    say(&format!(
        "written: {0}/bench.md, {0}/bench.json (per-run JSON and SVG beside them)",
        out.display()
    ));
    Ok(())
}

/// The part of a run's measured time the servers are observed over: from half a second after
/// the warm-up to half a second before the end, so that no observation runs past the load.
fn observed_window(spec: &Spec) -> Duration {
    spec.duration.saturating_sub(Duration::from_secs(1))
}

/// Runs `load` while `observe` watches the servers on another thread over the run's
/// [`observed_window`], which it is given; returns both results.
fn during_window<T: Send>(
    spec: &Spec,
    load: impl FnOnce() -> anyhow::Result<Report>,
    observe: impl FnOnce(Duration) -> anyhow::Result<T> + Send,
) -> anyhow::Result<(Report, T)> {
    let window = observed_window(spec);
    let delay = spec.warmup + Duration::from_millis(500);
    thread::scope(|scope| {
        let observer = scope.spawn(move || {
            thread::sleep(delay);
            observe(window)
        });
        let report = load();
        let observed = observer
            .join()
            .expect("the observing thread does not panic");
        Ok((report?, observed?))
    })
}

/// The open-loop sweep's rates, in percent of login-random's closed-loop throughput.
const SWEEP_PERCENTS: [u32; 5] = [50, 60, 70, 80, 90];

/// The tail goal's bound on p99.
const TAIL_P99_MS: f64 = 10.0;

/// The highest rate of the sweep whose p99 stayed under [`TAIL_P99_MS`] with no errors, if any.
fn highest_under_bound(sweep: &[(f64, Report)]) -> Option<&(f64, Report)> {
    sweep
        .iter()
        .filter(|(_, report)| report.latency_ms.p99 < TAIL_P99_MS && report.errors == 0)
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// How a database URL reaches PostgreSQL: a host that is a directory (percent-encoded in the
/// URL's host, or a `host=` parameter) is its unix socket.
fn transport(url: &str) -> &'static str {
    let host = url
        .split_once('@')
        .map_or(url, |(_, rest)| rest)
        .to_ascii_lowercase();
    if host.starts_with("%2f") || host.contains("host=/") || host.contains("host=%2f") {
        "unix socket"
    } else {
        "TCP"
    }
}

/// A unix-socket URL of scripts/postgres (`user:password@%2Fsocket%2Fdir:port/db`) as the
/// same cluster over loopback TCP, which it also listens on; `None` for any other URL.
fn over_tcp(url: &str) -> Option<String> {
    let (head, rest) = url.split_once('@')?;
    let (host_port, tail) = rest.split_once('/')?;
    let (host, port) = host_port.rsplit_once(':')?;
    host.to_ascii_lowercase()
        .starts_with("%2f")
        .then(|| format!("{head}@127.0.0.1:{port}/{tail}"))
}

/// The sweep as a picture: p50, p99 and p99.9 against the rate asked, on a log scale, with
/// the 10 ms bound and the closed-loop maximum drawn in.
fn plot_sweep(sweep: &[(f64, Report)], closed_loop: f64, path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let top = sweep
            .iter()
            .map(|(_, r)| r.latency_ms.p999)
            .fold(TAIL_P99_MS * 2.0, f64::max)
            * 1.5;
        let right = closed_loop * 1.05;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "login-random, open loop: latency from the intended send time",
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..right, (0.05f64..top).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("logins/s asked")
            .y_desc("latency (ms, log scale)")
            .draw()?;
        type Line = (&'static str, RGBColor, fn(&Report) -> f64);
        let lines: [Line; 3] = [
            ("p50", GREEN, |r| r.latency_ms.p50),
            ("p99", MAGENTA, |r| r.latency_ms.p99),
            ("p99.9", RED, |r| r.latency_ms.p999),
        ];
        for (label, color, value) in lines {
            let points: Vec<(f64, f64)> = sweep
                .iter()
                .map(|(rate, report)| (*rate, value(report).max(0.05)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), &color))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )?;
        }
        chart
            .draw_series(LineSeries::new(
                [(0.0, TAIL_P99_MS), (right, TAIL_P99_MS)],
                BLACK.stroke_width(1),
            ))?
            .label("10 ms")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        chart
            .draw_series(LineSeries::new(
                [(closed_loop, 0.05), (closed_loop, top)],
                BLUE.stroke_width(1),
            ))?
            .label("closed-loop maximum")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|error| anyhow::anyhow!("{error}"))
}

/// Tier handshakes tcp-server has answered (its count of `Hello` requests), from its admin
/// listener.
fn hellos(admin_port: u16) -> anyhow::Result<u64> {
    let answer = crate::http::Call::get(admin_port, "/metrics").send();
    ensure!(
        answer.outcome == crate::http::Outcome::Status(200),
        "tcp-server's /metrics answered {}",
        answer.outcome
    );
    let text = String::from_utf8_lossy(&answer.body);
    text.lines()
        .find_map(|line| line.strip_prefix("gatehouse_tcp_requests_total{kind=\"hello\"} "))
        .and_then(|count| count.trim().parse::<f64>().ok())
        .map(|count| count as u64)
        .context("no hello count in tcp-server's /metrics")
}

/// Starts a server with a fresh log, `<out>/<name>.log`.
pub(crate) fn start_fresh(name: &str, command: Command, out: &Path) -> anyhow::Result<Process> {
    let _ = fs::remove_file(out.join(format!("{name}.log")));
    Process::start(name, command, Some(out))
}

/// Runs a measuring program to its end (stopped by the clean-up like a server); its exit and
/// its output, also left in `<out>/<name>.log`.
fn run_logged(
    name: &str,
    command: Command,
    out: &Path,
) -> anyhow::Result<(Option<ExitStatus>, String)> {
    let mut process = start_fresh(name, command, out)?;
    let status = process.wait_for_exit();
    Ok((status, process.log_text()))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits up to 30 s for http-server's /readyz, failing at once if a server exits.
pub(crate) fn wait_ready(tcp: &mut Process, http: &mut Process, port: u16) -> anyhow::Result<()> {
    let ready = || {
        Call::get(port, "/readyz")
            .timeout(Duration::from_secs(2))
            .send()
            .outcome
    };
    for _ in 0..150 {
        if ready() == Outcome::Status(200) {
            return Ok(());
        }
        for server in [&mut *tcp, &mut *http] {
            if !server.alive() {
                bail!("{} exited: {}", server.name(), server.log_tail(3));
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
    bail!(
        "the servers did not become ready (logs: {}, {})",
        tcp.log_tail(3),
        http.log_tail(3)
    )
}

/// One loadtest run, in this process: its report, printed and written as JSON and SVG.
fn measure(name: &str, spec: &Spec, port: u16, out: &Path) -> anyhow::Result<Report> {
    say(&format!(
        "loadtest {name}: {}, {} connections, {} s{}",
        spec.step.name(),
        spec.connections,
        spec.duration.as_secs(),
        spec.rate
            .map_or(String::new(), |rate| format!(", open loop at {rate}/s"))
    ));
    let report = loadtest::run(&spec.config(port)).with_context(|| format!("running {name}"))?;
    let table = report.table();
    eprint!("{table}");
    fs::File::options()
        .create(true)
        .append(true)
        .open(out.join("loadtest.txt"))?
        .write_all(table.as_bytes())?;
    fs::write(
        out.join(format!("{name}.json")),
        serde_json::to_vec_pretty(&report)?,
    )?;
    let svg = out.join(format!("{name}.svg"));
    loadtest::plot::svg(&report, &svg)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("drawing {}", svg.display()))?;
    Ok(report)
}

impl VerifyTimes {
    /// The median time of one verification at each preset while one runs on every core at
    /// once, as tcp-server runs them under load (one hash per core): argon2 at 19 MiB is
    /// bound by memory bandwidth, which the cores share, so one verification alone is faster
    /// than each of two together, and a bound made from it would be one no server can reach.
    fn measure(cores: usize) -> anyhow::Result<VerifyTimes> {
        use tcp_server::password::{Hasher, PasswordParams, Verified};
        let median = |params: PasswordParams, rounds: usize| -> anyhow::Result<f64> {
            let pepper = tcp_server::secrets::Keyring::single("a pepper to time verifications")?;
            let hasher = Hasher::new(params, pepper, cores)?;
            let stored = hasher.hash("correct horse battery staple")?;
            let mut times: Vec<f64> = thread::scope(|scope| {
                let threads: Vec<_> = (0..cores)
                    .map(|_| {
                        scope.spawn(|| {
                            (0..rounds)
                                .map(|_| {
                                    let started = std::time::Instant::now();
                                    let verified =
                                        hasher.verify("correct horse battery staple", &stored);
                                    debug_assert!(matches!(verified, Verified::Match { .. }));
                                    started.elapsed().as_secs_f64()
                                })
                                .collect::<Vec<f64>>()
                        })
                    })
                    .collect();
                threads
                    .into_iter()
                    .flat_map(|thread| thread.join().unwrap_or_default())
                    .collect()
            });
            anyhow::ensure!(!times.is_empty(), "no verification was timed");
            times.sort_by(f64::total_cmp);
            Ok(times[times.len() / 2])
        };
        Ok(VerifyTimes {
            fast: median(PasswordParams::DEFAULT, 401)?,
            owasp: median(PasswordParams::OWASP, 21)?,
        })
    }
}

/// The most threads each server had, sampled each second while the loads run.
struct ThreadPeaks {
    stop: Stop,
    thread: JoinHandle<(u64, u64)>,
}

impl ThreadPeaks {
    fn start(tcp: u32, http: u32) -> ThreadPeaks {
        let stop = Stop::new();
        let thread = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut peaks = (0, 0);
                loop {
                    let (Some(t), Some(h)) = (
                        stack::proc_status(tcp, "Threads"),
                        stack::proc_status(http, "Threads"),
                    ) else {
                        return peaks;
                    };
                    peaks = (peaks.0.max(t), peaks.1.max(h));
                    if stop.wait(Duration::from_secs(1)) {
                        return peaks;
                    }
                }
            })
        };
        ThreadPeaks { stop, thread }
    }

    fn finish(self) -> (u64, u64) {
        self.stop.set();
        self.thread.join().unwrap_or_default()
    }
}

/// The pgbench script for tcp-server's login lookup: the username key `$1` becomes
/// `'user' || :uid`, a seeded user drawn uniformly from 1..=users.
fn pgbench_script(lookup: &str, users: u64) -> anyhow::Result<String> {
    ensure!(
        lookup.matches('$').count() == 1 && lookup.matches("$1").count() == 1,
        "the login lookup has parameters other than $1: {lookup}"
    );
    let query = lookup.trim().trim_end_matches(';');
    Ok(format!(
        "\\set uid random(1, {users})\n{};\n",
        query.replace("$1", "'user' || :uid")
    ))
}

/// pgbench's `tps = 48948.123456 (without initial connection time)`.
fn pgbench_tps(output: &str) -> Option<f64> {
    output
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// wrk's `Requests/sec:  73892.12`.
fn wrk_rps(output: &str) -> Option<f64> {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix("Requests/sec:"))
        .and_then(|rest| rest.trim().parse().ok())
}

/// Whether `program` is on the PATH.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// Installs `program` from the Debian package `package` with apt-get when missing: as root,
/// or through passwordless sudo.
pub(crate) fn ensure_tool(program: &str, package: &str) -> anyhow::Result<()> {
    if on_path(program).is_some() {
        return Ok(());
    }
    let root = fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    let sudo = !root
        && Command::new("sudo")
            .args(["-n", "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !root && !sudo {
        bail!("{program} is missing; install it (apt-get install {package}) or run as root");
    }
    say(&format!("installing {program} (Debian package {package})"));
    for args in [&["update", "-qq"][..], &["install", "-y", "-qq", package]] {
        let mut command = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        let status = command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            // Our stdout carries only the table.
            .stdout(std::io::stderr())
            .status()
            .context("running apt-get")?;
        ensure!(status.success(), "apt-get {} failed", args.join(" "));
    }
    ensure!(
        on_path(program).is_some(),
        "installed {package}, but {program} is not on the PATH"
    );
    Ok(())
}

/// The newest /usr/lib/postgresql/<version>/bin/pgbench, else pgbench on the PATH.
fn find_pgbench() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let path = entry.path().join("bin/pgbench");
            path.is_file().then_some((version, path))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, path)| path)
        .or_else(|| on_path("pgbench"))
        .context("pgbench not found (it comes with the PostgreSQL server package)")
}

/// The machine, as the table's first line describes it.
struct Machine {
    cores: usize,
    cpu: String,
    memory_gib: u64,
    kernel: String,
}

impl Machine {
    fn this() -> anyhow::Result<Machine> {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo")?;
        let meminfo = fs::read_to_string("/proc/meminfo")?;
        Ok(Machine {
            cores: thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: cpu_model(&cpuinfo).unwrap_or_else(|| "?".to_owned()),
            memory_gib: memory_gib(&meminfo).unwrap_or(0),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")?
                .trim()
                .to_owned(),
        })
    }
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| Some(line.split_once(':')?.1.trim().to_owned()))
}

/// MemTotal, rounded to GiB.
fn memory_gib(meminfo: &str) -> Option<u64> {
    let kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((kib as f64 / 1_048_576.0).round() as u64)
}

/// The table of bench.md.
fn render(results: &Results) -> String {
    let Results {
        machine: m,
        runs,
        pgbench_tps,
        wrk_rps,
        ..
    } = results;
    let mut out = format!(
        "Machine: {} cores ({}), {} GiB, Linux {}; load generator on the same machine.\n\
         Users: {}; connections: {}.\n\n\
         | run | throughput (req/s) | errors | p50 ms | p99 ms | p99.9 ms | max ms | notes |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
        m.cores,
        m.cpu,
        m.memory_gib,
        m.kernel,
        grouped(results.users),
        results.connections
    );
    let mut row = |label: &str, r: &Report, notes: &str| {
        let l = &r.latency_ms;
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {notes} |",
            grouped(r.throughput.round() as u64),
            r.errors,
            l.p50,
            l.p99,
            l.p999,
            l.max
        );
    };
    let tps = grouped(pgbench_tps.round() as u64);
    let transport = results.transport;
    row(
        "login-random, closed loop",
        &runs.login_random,
        &format!(
            "{:.2} of pgbench's {tps} tps for the same lookup, both over PostgreSQL's {transport}{}",
            runs.login_random.throughput / pgbench_tps,
            results.pgbench_tcp_tps.map_or(String::new(), |tcp| format!(
                " ({:.2} of its {} tps over loopback TCP)",
                runs.login_random.throughput / tcp,
                grouped(tcp.round() as u64)
            ))
        ),
    );
    let cores = m.cores as f64;
    let bound = |verify: f64| cores / verify;
    let fast_bound = bound(results.verify.fast);
    row(
        "login-fixed (200 users), closed loop",
        &runs.login_fixed,
        &format!(
            "`--argon2 fast`: {:.2} of the hash bound ({} logins/s: {} cores / {:.0} µs per verification)",
            runs.login_fixed.ok_throughput / fast_bound,
            grouped(fast_bound.round() as u64),
            m.cores,
            results.verify.fast * 1e6
        ),
    );
    row(
        &format!("login-random, open loop at {}/s", results.rate),
        &runs.login_open,
        &format!(
            "{} late sends; latency from the intended send time",
            runs.login_open.late_sends
        ),
    );
    match highest_under_bound(&runs.open_sweep) {
        Some((rate, report)) => row(
            &format!("login-random, open loop: the highest rate with p99 under {TAIL_P99_MS} ms"),
            report,
            &format!(
                "{:.2} of the closed-loop maximum ({} of {} asked); the sweep: {}",
                rate / runs.login_random.throughput,
                grouped(*rate as u64),
                grouped(runs.login_random.throughput.round() as u64),
                sweep_summary(&runs.open_sweep)
            ),
        ),
        None => {
            if let Some((rate, report)) = runs.open_sweep.first() {
                row(
                    &format!("login-random, open loop at {}/s", grouped(*rate as u64)),
                    report,
                    &format!(
                        "no rate of the sweep kept p99 under {TAIL_P99_MS} ms; the sweep: {}",
                        sweep_summary(&runs.open_sweep)
                    ),
                );
            }
        }
    }
    row("profile (GET /api/v1/me), closed loop", &runs.profile, "");
    row(
        "register, closed loop",
        &runs.register,
        "20 per client address (loadtest --spread-sources 20); overall limit raised",
    );
    row(
        "change-password (PUT /api/v1/me/password), closed loop",
        &runs.change_password,
        "each connection on an account of its own, registered first (not counted)",
    );
    let owasp = &runs.login_owasp;
    let owasp_bound = bound(results.verify.owasp);
    let count = |outcome: &str| owasp.outcomes.get(outcome).copied().unwrap_or(0);
    row(
        "login-fixed (200 users), `--argon2 owasp`, closed loop",
        owasp,
        &format!(
            "{:.0} logins/s, {:.2} of the hash bound ({:.0}/s: {} cores / {:.1} ms); the rest 503 \
             ({}) once past the queue bounds (2 s for a worker, 1 s for a hash), {} time-outs; \
             each 503's Retry-After waited out",
            owasp.ok_throughput,
            owasp.ok_throughput / owasp_bound,
            owasp_bound,
            m.cores,
            results.verify.owasp * 1e3,
            grouped(count("503")),
            count("timeout")
        ),
    );
    if let Some((commit, clear)) = &runs.login_clear {
        row(
            &format!("login-random, {commit}'s servers: link in clear, no tier handshake"),
            clear,
            &format!(
                "login-random above is {:.2} of it (this tree's authenticated link; {commit} \
                 differs in other changes too)",
                runs.login_random.throughput / clear.throughput
            ),
        );
    }
    let tls = &runs.login_tls;
    row(
        "login-random, TLS tier link, closed loop",
        tls,
        &format!(
            "{:.2} of login-random's throughput over the authenticated link in clear; tier \
             handshakes: {} (TLS) and {} (clear), one per pooled socket",
            tls.throughput / runs.login_random.throughput,
            results.handshakes.tls,
            results.handshakes.plain
        ),
    );
    row(
        "GET /healthz (loadtest)",
        &runs.health,
        &format!(
            "wrk: {} req/s; loadtest/wrk = {:.2}",
            grouped(wrk_rps.round() as u64),
            runs.health.throughput / wrk_rps
        ),
    );
    let (tcp, http) = results.rss_kib;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let _ = write!(
        out,
        "\npgbench (login lookup, prepared, 64 clients, {transport}): {tps} tps{}.\n\
         Peak RSS: tcp-server {:.0} MiB + http-server {:.0} MiB = {:.0} MiB; peak threads: \
         tcp-server {}, http-server {}.\n\
         Per login during login-random (perf stat): tcp-server {:.1} context switches and {:.1} \
         system calls, http-server {:.1} and {:.1}.",
        results.pgbench_tcp_tps.map_or(String::new(), |tcp| format!(
            "; over loopback TCP: {} tps",
            grouped(tcp.round() as u64)
        )),
        mib(tcp),
        mib(http),
        mib(tcp + http),
        results.threads.0,
        results.threads.1,
        results.per_login.0.context_switches,
        results.per_login.0.syscalls,
        results.per_login.1.context_switches,
        results.per_login.1.syscalls,
    );
    out
}

/// The sweep in one cell: each rate asked with its p99.
fn sweep_summary(sweep: &[(f64, Report)]) -> String {
    sweep
        .iter()
        .map(|(rate, report)| {
            format!(
                "{}/s p99 {:.1} ms{}",
                grouped(*rate as u64),
                report.latency_ms.p99,
                if report.errors > 0 {
                    format!(" ({} errors)", report.errors)
                } else {
                    String::new()
                }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// bench.json: the figures of the table and every run's full report.
fn to_json(results: &Results) -> serde_json::Value {
    let runs = &results.runs;
    json!({
        "pgbench_tps": results.pgbench_tps,
        "pgbench_tcp_tps": results.pgbench_tcp_tps,
        "wrk_rps": results.wrk_rps,
        "peak_rss_kib": {"tcp_server": results.rss_kib.0, "http_server": results.rss_kib.1},
        "peak_threads": {"tcp_server": results.threads.0, "http_server": results.threads.1},
        "users": results.users,
        "connections": results.connections,
        "database_transport": results.transport,
        "per_login": {
            "tcp_server": {
                "context_switches": results.per_login.0.context_switches,
                "syscalls": results.per_login.0.syscalls,
            },
            "http_server": {
                "context_switches": results.per_login.1.context_switches,
                "syscalls": results.per_login.1.syscalls,
            },
        },
        "open_loop_sweep": runs.open_sweep.iter().map(|(rate, report)| json!({
            "rate": rate,
            "report": report,
        })).collect::<Vec<_>>(),
        "runs": {
            "health": runs.health,
            "login-random": runs.login_random,
            "login-fixed": runs.login_fixed,
            "login-open": runs.login_open,
            "profile": runs.profile,
            "register": runs.register,
            "change-password": runs.change_password,
            "login-owasp": runs.login_owasp,
            "login-random-tls": runs.login_tls,
            "login-random-clear": runs.login_clear.as_ref().map(|(_, report)| report),
        },
        "tier_handshakes": {"clear": results.handshakes.plain, "tls": results.handshakes.tls},
        "clear_link_base": runs.login_clear.as_ref().map(|(commit, _)| commit),
        "verify_seconds": {"fast": results.verify.fast, "owasp": results.verify.owasp},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::fake_report;

    #[test]
    fn durations_are_whole_seconds_or_minutes() {
        assert_eq!(parse_seconds("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_seconds("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_seconds("1m30s"), Ok(Duration::from_secs(90)));
        for bad in ["0s", "500ms", "1500ms", "60", "", "soon"] {
            assert!(parse_seconds(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_pgbench_script_substitutes_the_username_key() {
        let lookup = "SELECT id FROM users WHERE lower(username COLLATE \"C\") = $1";
        assert_eq!(
            pgbench_script(lookup, 10_000_000).unwrap(),
            "\\set uid random(1, 10000000)\n\
             SELECT id FROM users WHERE lower(username COLLATE \"C\") = 'user' || :uid;\n"
        );
        assert!(pgbench_script("SELECT 1 WHERE $1 = $2", 5).is_err());
        assert!(pgbench_script("SELECT 1", 5).is_err());
    }

    #[test]
    fn the_pgbench_script_runs_tcp_servers_own_lookup() {
        let script = pgbench_script(tcp_server::ops::LOGIN_LOOKUP, 20_000).unwrap();
        let (set, query) = script.split_once('\n').unwrap();
        assert_eq!(set, "\\set uid random(1, 20000)");
        assert!(!query.contains('$'), "{query}");
        assert!(query.contains("= 'user' || :uid"), "{query}");
        assert!(
            query.ends_with(";\n") && query.matches(';').count() == 1,
            "{query}"
        );
    }

    #[test]
    fn pgbench_and_wrk_figures_are_read_from_their_output() {
        let pgbench = "number of transactions actually processed: 1468440\n\
                       latency average = 1.307 ms\n\
                       initial connection time = 30.446 ms\n\
                       tps = 48948.123456 (without initial connection time)\n";
        assert_eq!(pgbench_tps(pgbench), Some(48948.123456));
        assert_eq!(pgbench_tps("pgbench: error: connection failed"), None);
        let wrk = "  2217024 requests in 30.00s, 190.29MB read\n\
                   Requests/sec:  73892.12\n\
                   Transfer/sec:      6.34MB\n";
        assert_eq!(wrk_rps(wrk), Some(73892.12));
        assert_eq!(wrk_rps("unable to connect"), None);
    }

    #[test]
    fn the_machine_is_read_from_proc() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\n\
                       model name\t: Intel(R) Xeon(R) Processor\nflags\t: fpu\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        assert_eq!(
            memory_gib("MemTotal:       24660812 kB\nMemFree: 1 kB\n"),
            Some(24)
        );
        assert_eq!(memory_gib("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn a_url_naming_a_socket_directory_is_the_unix_socket() {
        assert_eq!(
            transport("postgres://u:p@%2Fwork%2Fmain%2F.data%2Fpostgres-socket:25432/db"),
            "unix socket"
        );
        assert_eq!(
            transport("postgresql:///db?user=u&host=/var/run/postgresql"),
            "unix socket"
        );
        assert_eq!(transport("postgres://u:p@127.0.0.1:25432/db"), "TCP");
        assert_eq!(transport("postgres://u:p@db.example/db?host=db2"), "TCP");
        assert_eq!(
            over_tcp("postgres://u:p@%2Fwork%2Fmain%2F.data%2Fpostgres-socket:25432/db").as_deref(),
            Some("postgres://u:p@127.0.0.1:25432/db")
        );
        assert_eq!(over_tcp("postgres://u:p@127.0.0.1:25432/db"), None);
    }

    #[test]
    fn the_table_has_the_readmes_rows_and_figures() {
        let report = |throughput| fake_report(throughput, 0, &[("200", 100)]);
        let results = Results {
            machine: Machine {
                cores: 2,
                cpu: "Intel(R) Xeon(R) Processor".to_owned(),
                memory_gib: 24,
                kernel: "6.18.44".to_owned(),
            },
            users: 10_000_000,
            connections: 1000,
            rate: 3000,
            pgbench_tps: 48_948.4,
            pgbench_tcp_tps: Some(24_474.2),
            wrk_rps: 73_892.1,
            rss_kib: (32 * 1024, 75 * 1024),
            threads: (262, 1025),
            per_login: (
                Counts {
                    context_switches: 2.25,
                    syscalls: 7.1,
                },
                Counts {
                    context_switches: 2.3,
                    syscalls: 6.24,
                },
            ),
            transport: "unix socket",
            verify: VerifyTimes {
                fast: 45e-6,
                owasp: 24.2e-3,
            },
            handshakes: Handshakes { plain: 17, tls: 16 },
            runs: Runs {
                health: report(78_992.0),
                login_random: report(13_315.2),
                login_fixed: report(13_669.0),
                login_open: report(3_000.0),
                open_sweep: [
                    (6_658.0, 3.1),
                    (7_989.0, 4.5),
                    (9_321.0, 9.9),
                    (10_652.0, 31.0),
                ]
                .into_iter()
                .map(|(rate, p99)| {
                    let mut run = report(rate);
                    run.latency_ms.p99 = p99;
                    (rate, run)
                })
                .collect(),
                profile: report(19_033.0),
                register: report(7_819.0),
                change_password: report(2_000.0),
                login_owasp: fake_report(75.0, 900, &[("200", 75), ("503", 900)]),
                login_clear: Some(("370f808".to_owned(), report(14_000.0))),
                login_tls: report(12_650.0),
            },
        };
        let table = render(&results);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "Machine: 2 cores (Intel(R) Xeon(R) Processor), 24 GiB, Linux 6.18.44; load \
             generator on the same machine."
        );
        assert_eq!(lines[1], "Users: 10,000,000; connections: 1000.");
        assert_eq!(
            lines[3],
            "| run | throughput (req/s) | errors | p50 ms | p99 ms | p99.9 ms | max ms | notes |"
        );
        assert_eq!(
            lines[5],
            "| login-random, closed loop | 13,315 | 0 | 74.62 | 85.57 | 92.86 | 158.97 | 0.27 of \
             pgbench's 48,948 tps for the same lookup, both over PostgreSQL's unix socket (0.54 \
             of its 24,474 tps over loopback TCP) |"
        );
        assert_eq!(
            lines[6],
            "| login-fixed (200 users), closed loop | 13,669 | 0 | 74.62 | 85.57 | 92.86 | \
             158.97 | `--argon2 fast`: 0.31 of the hash bound (44,444 logins/s: 2 cores / 45 µs \
             per verification) |"
        );
        assert!(lines[7].starts_with("| login-random, open loop at 3000/s | 3,000 |"));
        assert!(lines[7].ends_with("| 0 late sends; latency from the intended send time |"));
        assert_eq!(
            lines[8],
            "| login-random, open loop: the highest rate with p99 under 10 ms | 9,321 | 0 | 74.62 \
             | 9.90 | 92.86 | 158.97 | 0.70 of the closed-loop maximum (9,321 of 13,315 asked); \
             the sweep: 6,658/s p99 3.1 ms, 7,989/s p99 4.5 ms, 9,321/s p99 9.9 ms, 10,652/s p99 \
             31.0 ms |"
        );
        assert!(
            lines[11]
                .starts_with("| change-password (PUT /api/v1/me/password), closed loop | 2,000 |")
        );
        assert_eq!(
            lines[12],
            "| login-fixed (200 users), `--argon2 owasp`, closed loop | 75 | 900 | 74.62 | 85.57 \
             | 92.86 | 158.97 | 75 logins/s, 0.91 of the hash bound (83/s: 2 cores / 24.2 ms); \
             the rest 503 (900) once past the queue bounds (2 s for a worker, 1 s for a hash), 0 \
             time-outs; each 503's Retry-After waited out |"
        );
        assert_eq!(
            lines[13],
            "| login-random, 370f808's servers: link in clear, no tier handshake | 14,000 | 0 | \
             74.62 | 85.57 | 92.86 | 158.97 | login-random above is 0.95 of it (this tree's \
             authenticated link; 370f808 differs in other changes too) |"
        );
        assert!(lines[14].starts_with("| login-random, TLS tier link, closed loop | 12,650 |"));
        assert!(lines[14].ends_with(
            "| 0.95 of login-random's throughput over the authenticated link in clear; tier \
             handshakes: 16 (TLS) and 17 (clear), one per pooled socket |"
        ));
        assert!(lines[15].ends_with("| wrk: 73,892 req/s; loadtest/wrk = 1.07 |"));
        assert_eq!(lines.len(), 20);
        assert_eq!(
            lines[17],
            "pgbench (login lookup, prepared, 64 clients, unix socket): 48,948 tps; over loopback \
             TCP: 24,474 tps."
        );
        assert_eq!(
            lines[19],
            "Per login during login-random (perf stat): tcp-server 2.2 context switches and 7.1 \
             system calls, http-server 2.3 and 6.2."
        );
        assert_eq!(
            lines[18],
            "Peak RSS: tcp-server 32 MiB + http-server 75 MiB = 107 MiB; peak threads: \
             tcp-server 262, http-server 1025."
        );
        let json = to_json(&results);
        assert_eq!(json["peak_rss_kib"]["http_server"], 75 * 1024);
        assert_eq!(json["runs"]["login-random"]["throughput"], 13_315.2);
        assert_eq!(json["runs"]["login-owasp"]["ok_throughput"], 75.0);
        assert_eq!(json["verify_seconds"]["owasp"], 24.2e-3);
        assert_eq!(json["tier_handshakes"]["tls"], 16);
    }
}
