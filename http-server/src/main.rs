//! http-server's entry point. The server itself arrives with the http-server issue; for now the
//! binary only describes itself.

use clap::Parser;

/// The gatehouse client-facing tier: the public JSON API over HTTP/1.1, reaching tcp-server
/// through pooled connections that speak the gatehouse binary protocol.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("http-server: no commands yet; see --help");
    std::process::exit(2);
}
