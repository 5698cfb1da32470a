//! tcp-server's entry point. The server itself arrives with the tcp-server issue; for now the
//! binary only describes itself.

use clap::Parser;

/// The gatehouse business-logic tier: accounts, passwords, sessions, profiles and pictures on
/// PostgreSQL, served to http-server over the gatehouse binary protocol.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("tcp-server: no commands yet; see --help");
    std::process::exit(2);
}
