//! gatehouse's own tooling, run as `cargo xtask <command>` (the alias is in `.cargo/config.toml`):
//! the chaos scenarios and the benchmark, driving the real binaries.
//!
//! # Layout
//! - `main.rs` (this file): the command line and the dispatch.
//! - `chaos`: the fault, overload and hostile-input scenarios and their table.
//! - `bench`: the benchmark (pgbench, wrk, loadtest) and its table.
//! - `ab`: this tree against another revision, both serving at once.
//! - `stack`: process plumbing both share: building, starting and stopping the servers by pid,
//!   PostgreSQL through `scripts/postgres`, and the clean-up on exit, Ctrl-C or SIGTERM.
//! - `load`: loadtest as a library, run in the background of a scenario.
//! - `perf`: context switches and system calls of a server over a window (`perf stat`).
//! - `http`: a small blocking HTTP/1.1 client with the control the scenarios need (source
//!   address, one deadline, failures told apart).

mod ab;
mod bench;
mod chaos;
mod http;
mod load;
mod perf;
mod stack;

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// gatehouse's own tooling: `cargo xtask chaos`, `bench` and `ab` build the servers,
/// bring up PostgreSQL (scripts/postgres), and drive the real binaries.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fault, overload and hostile-input scenarios against the real binaries and PostgreSQL;
    /// prints the table of docs/RELIABILITY.md and exits 1 if any scenario fails.
    ///
    /// Uses the private cluster of scripts/postgres (DATABASE_URL is ignored) with a database
    /// of its own, gatehouse_chaos; scenarios 3 and 4 restart and stop the cluster, and it is
    /// put back as found at the end (stopped if this started it), after Ctrl-C or SIGTERM too.
    /// Ports: tcp-servers 27071-27073 (admin 29071-29073), http-server 28081 (admin 28091).
    /// Logs and each load's JSON go to target/chaos/. Scenarios 6-9 of docs/RELIABILITY.md are
    /// covered by in-process tests (http-server/tests/robustness.rs,
    /// tcp-server/tests/protocol.rs).
    Chaos(chaos::Args),
    /// The benchmark: pgbench on the login lookup, wrk against loadtest, and the loadtest runs
    /// of the README's table; writes bench.md and bench.json.
    ///
    /// Release binaries; tcp-server on 127.0.0.1:7070 (admin 9070), http-server on 8080 (admin
    /// 9080), changed with GATEHOUSE_TCP_PORT, GATEHOUSE_TCP_ADMIN_PORT, GATEHOUSE_HTTP_PORT and
    /// GATEHOUSE_ADMIN_PORT. Uses DATABASE_URL when set, else the private cluster of
    /// scripts/postgres (stopped at the end if this started it). Needs pgbench, and wrk
    /// (installed with apt-get when missing, as root or through passwordless sudo).
    Bench(bench::Args),
    /// This tree's servers against another revision's (--base), side by side: both stacks
    /// serve at once against one database, each loaded with half the connections, for several
    /// rounds; prints each stack's medians and the medians of the per-round ratios (throughput,
    /// CPU per request), and writes ab.md and ab.json.
    ///
    /// The base is exported with git archive and built (release) under --out, once per commit.
    /// Ports: this tree 7070/9070 (tcp-server) and 8080/9080 (http-server), the base one above
    /// each. Uses DATABASE_URL when set, else the private cluster of scripts/postgres (stopped
    /// at the end if this started it). Both servers get --dev: no secrets are needed. This
    /// tree's seeding migrates the database; the base serves it as it is, so it must know no
    /// migration this tree lacks.
    Ab(ab::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let release = match &cli.command {
        Command::Chaos(args) => !args.debug,
        Command::Bench(_) | Command::Ab(_) => true,
    };
    if release && let Err(error) = reexec_optimised() {
        eprintln!("cargo xtask: error: {error:#}");
        return ExitCode::FAILURE;
    }
    if let Err(error) = stack::clean_up_on_signals() {
        eprintln!("cargo xtask: error: {error:#}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Chaos(args) => chaos::run(&args),
        Command::Bench(args) => bench::run(&args).map(|()| true),
        Command::Ab(args) => ab::run(&args).map(|()| true),
    };
    // Whatever happened, nothing this run started is left behind.
    stack::finish();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("cargo xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Set in the environment of the optimised xtask that a debug one replaced itself with.
const OPTIMISED: &str = "GATEHOUSE_XTASK_OPTIMISED";

/// Replaces this process with an optimised build of itself, unless it is one. loadtest runs in
/// this process and measures the release servers: unoptimised, it would take the CPU they
/// need and measure itself (the loadtest/wrk ratio, the open loop's send times). Returns only
/// when there is nothing to do.
fn reexec_optimised() -> anyhow::Result<()> {
    if !cfg!(debug_assertions) || std::env::var_os(OPTIMISED).is_some() {
        return Ok(());
    }
    stack::say("building xtask itself in release: the load generator runs inside it");
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let error = stack::cargo()
        .args(["run", "--release", "--locked", "--package", "xtask", "--"])
        .args(args)
        .env(OPTIMISED, "1")
        .current_dir(stack::root())
        .exec();
    Err(anyhow::Error::new(error).context("running cargo run --release --package xtask"))
}
