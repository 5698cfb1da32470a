//! loadtest's entry point. The load generator arrives with the loadtest issue; for now the binary
//! only describes itself.

use clap::Parser;

/// The gatehouse load generator: drives the HTTP API with a fixed number of keep-alive
/// connections and reports throughput and latency percentiles.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("loadtest: no scenarios yet; see --help");
    std::process::exit(2);
}
