//! tcp-server's entry point: parses the command line once into typed settings, binds, and hands
//! over to the library.

use std::io::IsTerminal;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use socket2::{Domain, Socket, Type};
use tcp_server::db::{self, Db, DbConfig};
use tcp_server::device::DeviceKey;
use tcp_server::ops::Context;
use tcp_server::password::{Hasher, PasswordParams};
use tcp_server::picture::{PictureConfig, Pictures};
use tcp_server::secrets::Secrets;
use tcp_server::server::{self, ServerConfig, Shutdown};
use tcp_server::stats::Stats;
use tcp_server::throttle::{Throttle, ThrottleConfig};
use tcp_server::token::TokenKey;

/// The gatehouse business-logic tier: accounts, passwords, sessions and profiles on PostgreSQL,
/// served to http-server over the gatehouse binary protocol.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the protocol until SIGINT or SIGTERM, then finish in-flight requests and exit 0.
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate {
        /// PostgreSQL URL, e.g. postgres://user:password@127.0.0.1:5432/gatehouse.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Load users 1..=N (user{i}, password secret-{i}) with real hashes; resumable. Run it with
    /// no server serving the database: a bulk load drops and rebuilds the users indexes.
    Seed(SeedArgs),
}

#[derive(Debug, Args)]
struct SeedArgs {
    /// How many users the table should hold when done.
    #[arg(long)]
    users: u64,
    /// PostgreSQL URL, e.g. postgres://user:password@127.0.0.1:5432/gatehouse.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Hashing threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    pepper: PepperArgs,
    #[command(flatten)]
    password: PasswordArgs,
}

/// Where the pepper comes from; seeding and serving must use the same one.
#[derive(Debug, Args)]
struct PepperArgs {
    /// File holding the pepper (the Argon2 secret), unless GATEHOUSE_PEPPER is set.
    #[arg(long, env = "GATEHOUSE_PEPPER_FILE", default_value = ".data/pepper")]
    pepper_file: PathBuf,
    /// Development set-up: create the pepper file (mode 0600) when it is missing.
    #[arg(long)]
    dev: bool,
}

impl PepperArgs {
    fn load(&self) -> anyhow::Result<Secrets> {
        // A GATEHOUSE_PEPPER that is set but unreadable must not fall back to the file: with
        // --dev that would mint a new pepper and lock every user out.
        let pepper = match std::env::var("GATEHOUSE_PEPPER") {
            Ok(value) => Some(value),
            Err(std::env::VarError::NotPresent) => None,
            Err(error) => anyhow::bail!("GATEHOUSE_PEPPER: {error}"),
        };
        Secrets::load(pepper.as_deref(), &self.pepper_file, self.dev)
    }
}

/// Password hashing cost; seeding and serving must use the same parameters.
#[derive(Debug, Args)]
struct PasswordArgs {
    /// Argon2id memory cost in KiB (m). See the README's table before raising it.
    #[arg(long, default_value_t = 64)]
    argon2_memory_kib: u32,
    /// Argon2id passes (t).
    #[arg(long, default_value_t = 1)]
    argon2_iterations: u32,
    /// Argon2id lanes (p).
    #[arg(long, default_value_t = 1)]
    argon2_parallelism: u32,
    /// Password hashes running at once at most (default: one per core).
    #[arg(long)]
    max_concurrent_hashes: Option<usize>,
}

impl PasswordArgs {
    fn hasher(&self, secrets: &Secrets) -> anyhow::Result<Hasher> {
        Hasher::new(
            PasswordParams {
                memory_kib: self.argon2_memory_kib,
                iterations: self.argon2_iterations,
                parallelism: self.argon2_parallelism,
            },
            secrets.pepper.clone(),
            self.max_concurrent_hashes.unwrap_or_else(cores),
        )
    }
}

fn cores() -> usize {
    thread::available_parallelism().map_or(2, usize::from)
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// PostgreSQL URL, e.g. postgres://user:password@127.0.0.1:5432/gatehouse.
    // Hidden in --help: the URL may hold a password.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Apply pending migrations before serving.
    #[arg(long)]
    migrate: bool,
    /// Worker threads: the most connections served at once. Past it, clients get Busy.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    workers: u32,
    /// Close a connection after this long without a request.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// The longest a request may take to arrive or a response to be written.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    io_timeout: Duration,
    /// Largest frame accepted, in bytes.
    #[arg(long, default_value_t = proto::DEFAULT_MAX_FRAME_LEN)]
    max_frame_len: u32,
    /// How long a session token stays valid.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    session_ttl: Duration,
    #[command(flatten)]
    pepper: PepperArgs,
    /// Database connections at most.
    #[arg(long, default_value_t = 32)]
    db_pool_size: u32,
    /// How long a request waits for a database connection.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    db_timeout: Duration,
    /// How long one database statement may run, lock waits included; past it the request
    /// gets Unavailable.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    db_statement_timeout: Duration,
    #[command(flatten)]
    password: PasswordArgs,
    /// Largest picture upload accepted, in bytes.
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    max_picture_bytes: usize,
    /// Widest or tallest picture decoded, in pixels; larger ones are refused.
    #[arg(long, default_value_t = 4096)]
    max_picture_dimension: u32,
    /// Stored pictures are shrunk to fit a square of this side, in pixels.
    #[arg(long, default_value_t = 512)]
    picture_size: u32,
    #[command(flatten)]
    throttle: ThrottleArgs,
    /// How long a device token (given at each login; it exempts that client from the lockout
    /// of unrecognised clients) is recognised.
    #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
    device_token_ttl: Duration,
}

/// Brute-force and flood protection (see docs/RELIABILITY.md for the policy and its numbers).
#[derive(Debug, Args)]
struct ThrottleArgs {
    /// Failed logins all unrecognised clients of one account may make (draining over
    /// --login-failure-window) before they are locked out of it; a device that logged in
    /// before is not.
    #[arg(long, default_value_t = ThrottleConfig::DEFAULT.account_failures, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    login_failures_per_account: u32,
    /// Failed logins one device token may make before that device is locked out.
    #[arg(long, default_value_t = ThrottleConfig::DEFAULT.device_failures, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    login_failures_per_device: u32,
    /// Failed logins one client address may make over all usernames (IPv6: per /64).
    #[arg(long, default_value_t = ThrottleConfig::DEFAULT.address_failures, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    login_failures_per_address: u32,
    /// How long a full count of failures takes to drain.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    login_failure_window: Duration,
    /// The first lockout at a limit; each further one doubles, up to --login-max-lockout.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    login_lockout: Duration,
    /// The longest lockout.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    login_max_lockout: Duration,
    /// Registrations one client address may make at once.
    #[arg(long, default_value_t = ThrottleConfig::DEFAULT.register_burst, value_parser = clap::value_parser!(u32).range(1..))]
    register_burst_per_address: u32,
    /// After that burst, one more registration per address per this interval.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    register_interval_per_address: Duration,
    /// Registrations per second over all clients, sustained.
    #[arg(long, default_value_t = ThrottleConfig::DEFAULT.register_global_rate, value_parser = clap::value_parser!(u32).range(1..))]
    register_global_rate: u32,
    /// Registrations over all clients in a burst.
    #[arg(long, default_value_t = ThrottleConfig::DEFAULT.register_global_burst, value_parser = clap::value_parser!(u32).range(1..))]
    register_global_burst: u32,
    /// Accounts whose failures are tracked at most (about 27 bytes each, allocated at start);
    /// past it, unrecognised clients of accounts not tracked are refused until counts drain.
    #[arg(long, default_value_t = ThrottleConfig::DEFAULT.max_accounts, value_parser = clap::value_parser!(u64).range(1..=100_000_000).map(|n| n as usize))]
    throttle_max_accounts: usize,
    /// Device tokens, and client addresses, tracked at most (each table).
    #[arg(long, default_value_t = ThrottleConfig::DEFAULT.max_clients, value_parser = clap::value_parser!(u64).range(1..=100_000_000).map(|n| n as usize))]
    throttle_max_clients: usize,
}

impl ThrottleArgs {
    fn config(&self) -> ThrottleConfig {
        ThrottleConfig {
            account_failures: self.login_failures_per_account,
            device_failures: self.login_failures_per_device,
            address_failures: self.login_failures_per_address,
            failure_window: self.login_failure_window,
            lockout: self.login_lockout,
            max_lockout: self.login_max_lockout,
            register_burst: self.register_burst_per_address,
            register_interval: self.register_interval_per_address,
            register_global_rate: self.register_global_rate,
            register_global_burst: self.register_global_burst,
            max_accounts: self.throttle_max_accounts,
            max_clients: self.throttle_max_clients,
        }
    }
}

fn main() {
    tcp_server::logging::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Migrate { database_url } => db::migrate(&database_url).map(|applied| {
            log::info!("applied {applied} migration(s)");
        }),
        Command::Seed(args) => seed(args),
    };
    if let Err(error) = result {
        log::error!("{error:#}");
        std::process::exit(1);
    }
}

fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let secrets = args.pepper.load()?;
    let hasher = args.password.hasher(&secrets)?;
    db::migrate(&args.database_url)?;
    let progress = std::io::stderr().is_terminal();
    let threads = args.threads.unwrap_or_else(cores);
    let started = std::time::Instant::now();
    let report =
        tcp_server::seed::seed(&args.database_url, args.users, &hasher, threads, progress)?;
    log::info!(
        "{} users were there, {} added, in {:.1}s",
        report.existing,
        report.added,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let secrets = args.pepper.load()?;
    if args.migrate {
        let applied = db::migrate(&args.database_url)?;
        log::info!("applied {applied} migration(s)");
    }
    let hasher = args.password.hasher(&secrets)?;
    let db = Db::new(
        &args.database_url,
        &DbConfig {
            pool_size: args.db_pool_size,
            checkout_timeout: args.db_timeout,
            connect_timeout: args.db_timeout,
            statement_timeout: args.db_statement_timeout,
        },
    )?;
    // Start regardless, so the servers can come up in any order; readiness follows the
    // database (see tcp-server/README.md, "Start-up without the database").
    match db.check() {
        Ok(()) => log::info!("the database answers"),
        Err(error) => log::warn!(
            "{error}; serving anyway: requests get Unavailable and Ping reports not ready \
             until the database answers"
        ),
    }
    let ctx = Arc::new(Context {
        db,
        hasher,
        tokens: TokenKey::new(secrets.token_key),
        pictures: Pictures::new(
            PictureConfig {
                max_bytes: args.max_picture_bytes,
                max_dimension: args.max_picture_dimension,
                stored_dimension: args.picture_size,
            },
            cores(),
        ),
        session_ttl: args.session_ttl,
        devices: DeviceKey::new(secrets.device_key),
        device_ttl: args.device_token_ttl,
        stats: Stats::default(),
        throttle: Throttle::new(&args.throttle.config()),
    });
    let janitor = Arc::clone(&ctx);
    thread::Builder::new()
        .name("janitor".to_owned())
        .spawn(move || {
            loop {
                thread::sleep(Duration::from_secs(600));
                match tcp_server::ops::prune_revocations(&janitor) {
                    Ok(0) => {}
                    Ok(pruned) => log::info!("pruned {pruned} expired session revocations"),
                    Err(error) => log::warn!("pruning session revocations: {error}"),
                }
            }
        })?;
    let listener = bind(args.listen)?;
    let shutdown = Shutdown::new(&listener)?;
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
    let on_signal = shutdown.clone();
    thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            let mut signals = signals.forever();
            if let Some(signal) = signals.next() {
                log::info!("signal {signal}: stopping after in-flight requests");
                on_signal.trigger();
            }
            if let Some(signal) = signals.next() {
                log::warn!("signal {signal} again: exiting without waiting");
                std::process::exit(1);
            }
        })?;
    let config = ServerConfig {
        workers: args.workers as usize,
        idle_timeout: args.idle_timeout,
        io_timeout: args.io_timeout,
        max_frame_len: args.max_frame_len,
    };
    server::run(listener, config, ctx, shutdown).context("serving")
}

/// A listener with a deep accept backlog, so bursts of connections queue in the kernel rather
/// than being refused.
fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket
        .bind(&address.into())
        .with_context(|| format!("binding {address}"))?;
    socket.listen(1024)?;
    Ok(socket.into())
}
