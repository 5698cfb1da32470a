//! tcp-server's entry point: parses the command line into [`Settings`], binds, and hands over
//! to the library. Every default shown by `--help` is the library's own constant.

use std::io::IsTerminal;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use humantime::Duration;
use service::Shutdown;
use service::link;
use service::logging::LogFormat;
use service::secret::Source;
use socket2::{Domain, Socket, Type};
use tcp_server::db::{self, DbConfig};
use tcp_server::ops::Context;
use tcp_server::password::{Hasher, PasswordParams, Preset};
use tcp_server::picture::PictureConfig;
use tcp_server::secrets::{self, Keyring, Secrets};
use tcp_server::server::{self, Listeners, ServerConfig};
use tcp_server::settings::{self, Settings};
use tcp_server::throttle::ThrottleConfig;

/// The gatehouse business-logic tier: accounts, passwords, sessions and profiles on PostgreSQL,
/// served to http-server over the gatehouse binary protocol.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written to stderr: text, or one JSON object per line. RUST_LOG sets
    /// the level (default info).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "GATEHOUSE_LOG_FORMAT"
    )]
    log_format: LogFormat,
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
    /// Count the accounts whose password hash uses each pepper, to tell when an old pepper can
    /// leave the ring (docs/OPERATIONS.md, "Rotating the secrets").
    Peppers(PeppersArgs),
    /// Load both keyrings as `serve` would and print their key ids, or say what is wrong and
    /// exit 1: check edited files before a reload (the systemd unit's reload does).
    CheckKeyrings(KeyringFiles),
}

#[derive(Debug, Args)]
struct PeppersArgs {
    /// PostgreSQL URL, e.g. postgres://user:password@127.0.0.1:5432/gatehouse.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// The pepper ring to compare with (GATEHOUSE_PEPPER instead, if set).
    #[arg(long, env = "GATEHOUSE_PEPPER_FILE", default_value = ".data/pepper")]
    pepper_file: PathBuf,
}

/// Where the two keyrings are, for `check-keyrings`.
#[derive(Debug, Args)]
struct KeyringFiles {
    /// The pepper ring (GATEHOUSE_PEPPER instead, if set).
    #[arg(long, env = "GATEHOUSE_PEPPER_FILE", default_value = ".data/pepper")]
    pepper_file: PathBuf,
    /// The token key ring (GATEHOUSE_TOKEN_KEY instead, if set).
    #[arg(
        long,
        env = "GATEHOUSE_TOKEN_KEY_FILE",
        default_value = ".data/token-key"
    )]
    token_key_file: PathBuf,
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

/// Where the peppers come from; seeding and serving must use the same ones.
#[derive(Debug, Clone, Args)]
struct PepperArgs {
    /// File holding the peppers (the Argon2 secrets): one per line, "<id> <secret>", the one
    /// new hashes use marked "current"; a lone secret is pepper 0. GATEHOUSE_PEPPER instead, if
    /// set. Reloaded on SIGHUP.
    #[arg(long, env = "GATEHOUSE_PEPPER_FILE", default_value = ".data/pepper")]
    pepper_file: PathBuf,
    /// Development set-up: create the pepper file and, to serve, the token key and tier key
    /// files (mode 0600) when they are missing.
    #[arg(long)]
    dev: bool,
}

impl PepperArgs {
    fn source(&self) -> Source<'_> {
        Source {
            what: "pepper",
            variable: "GATEHOUSE_PEPPER",
            file: &self.pepper_file,
            create: self.dev,
        }
    }

    fn load(&self) -> anyhow::Result<Keyring> {
        secrets::load_ring(self.source())
    }
}

/// Where both keyrings come from.
#[derive(Debug, Clone)]
struct SecretFiles {
    pepper: PepperArgs,
    token_key_file: PathBuf,
}

impl SecretFiles {
    fn load(&self) -> anyhow::Result<Secrets> {
        Secrets::load(
            self.pepper.source(),
            Source {
                what: "token key",
                variable: "GATEHOUSE_TOKEN_KEY",
                file: &self.token_key_file,
                create: self.pepper.dev,
            },
        )
    }

    /// As [`SecretFiles::load`], but never creating a file: a reload must not mint a secret.
    fn reload(&self) -> anyhow::Result<Secrets> {
        let files = SecretFiles {
            pepper: PepperArgs {
                dev: false,
                ..self.pepper.clone()
            },
            ..self.clone()
        };
        files.load()
    }
}

/// Password hashing cost; seeding and serving must use the same parameters.
#[derive(Debug, Args)]
struct PasswordArgs {
    /// Hashing strength: fast (m=64 KiB, t=1, p=1; over 10,000 logins a second on two cores)
    /// or owasp (m=19 MiB, t=2, p=1; OWASP's minimum). The --argon2-* flags override its
    /// parts. Stored hashes of another strength are upgraded at their next login.
    #[arg(long, value_enum, default_value_t = Preset::Fast)]
    argon2: Preset,
    /// Argon2id memory cost in KiB (m), instead of the preset's.
    #[arg(long)]
    argon2_memory_kib: Option<u32>,
    /// Argon2id passes (t), instead of the preset's.
    #[arg(long)]
    argon2_iterations: Option<u32>,
    /// Argon2id lanes (p), instead of the preset's.
    #[arg(long)]
    argon2_parallelism: Option<u32>,
    /// Password hashes running at once at most (default: one per core).
    #[arg(long)]
    max_concurrent_hashes: Option<usize>,
}

impl PasswordArgs {
    fn params(&self) -> PasswordParams {
        let preset = self.argon2.params();
        PasswordParams {
            memory_kib: self.argon2_memory_kib.unwrap_or(preset.memory_kib),
            iterations: self.argon2_iterations.unwrap_or(preset.iterations),
            parallelism: self.argon2_parallelism.unwrap_or(preset.parallelism),
        }
    }

    fn max_concurrent(&self) -> usize {
        self.max_concurrent_hashes.unwrap_or_else(settings::cores)
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on for the protocol.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Where the operator's endpoints listen (HTTP): /metrics, /healthz and /readyz. Keep it on
    /// loopback or a private network.
    #[arg(long, default_value = "127.0.0.1:9070")]
    admin_listen: SocketAddr,
    /// PostgreSQL URL, e.g. postgres://user:password@127.0.0.1:5432/gatehouse: the primary,
    /// which takes every write.
    // Hidden in --help: the URL may hold a password.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// A streaming replica of the primary (repeatable). Logins, profile and picture reads go to
    /// a replica once it has replayed every write acknowledged before the read began, so none
    /// answers from the past; else the primary answers them.
    #[arg(long, value_name = "URL")]
    replica_url: Vec<String>,
    /// The most a replica may lag behind the primary and still get reads.
    #[arg(long, default_value_t = DbConfig::DEFAULT.max_replica_lag.into())]
    max_replica_lag: Duration,
    /// Apply pending migrations before serving.
    #[arg(long)]
    migrate: bool,
    /// Worker threads: the most connections served at once. Past it, clients get Busy.
    #[arg(long, default_value_t = ServerConfig::DEFAULT.workers as u32, value_parser = clap::value_parser!(u32).range(1..=65536))]
    workers: u32,
    /// Connections one peer address may hold at once; past it, Busy. Default: a quarter of
    /// the workers (an http-server holds 16 by default). Raise it when several http-servers
    /// reach this one from one address (behind NAT).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_connections_per_peer: Option<u32>,
    /// File holding the tier key, which http-servers must prove they hold before any request
    /// (GATEHOUSE_TIER_KEY instead, if set). --dev creates it when missing.
    #[arg(
        long,
        env = "GATEHOUSE_TIER_KEY_FILE",
        default_value = ".data/tier-key"
    )]
    tier_key_file: PathBuf,
    #[command(flatten)]
    tls: link::TlsArgs,
    /// Close a connection after this long without a request.
    #[arg(long, default_value_t = ServerConfig::DEFAULT.idle_timeout.into())]
    idle_timeout: Duration,
    /// The longest a request may take to arrive or a response to be written.
    #[arg(long, default_value_t = ServerConfig::DEFAULT.io_timeout.into())]
    io_timeout: Duration,
    /// Largest frame accepted, in bytes.
    #[arg(long, default_value_t = ServerConfig::DEFAULT.max_frame_len)]
    max_frame_len: u32,
    /// How long a session token stays valid.
    #[arg(long, default_value_t = settings::SESSION_TTL.into())]
    session_ttl: Duration,
    /// How long a device token (given at each login; it exempts that client from the lockout
    /// of unrecognised clients) is recognised.
    #[arg(long, default_value_t = settings::DEVICE_TTL.into())]
    device_token_ttl: Duration,
    /// How long the username of a deleted account stays taken before anyone may register it
    /// again.
    #[arg(long, default_value_t = settings::DELETED_USERNAME_HOLD.into())]
    deleted_username_hold: Duration,
    #[command(flatten)]
    pepper: PepperArgs,
    /// File holding the token keys, from which session and device tokens are signed: one per
    /// line as for the peppers. GATEHOUSE_TOKEN_KEY instead, if set. Reloaded on SIGHUP.
    #[arg(
        long,
        env = "GATEHOUSE_TOKEN_KEY_FILE",
        default_value = ".data/token-key"
    )]
    token_key_file: PathBuf,
    /// Database connections at most.
    #[arg(long, default_value_t = DbConfig::DEFAULT.pool_size)]
    db_pool_size: u32,
    /// How long a request waits for a database connection, and a connect may take.
    #[arg(long, default_value_t = DbConfig::DEFAULT.checkout_timeout.into())]
    db_timeout: Duration,
    /// How long one database statement may run, lock waits included; past it the request
    /// gets Unavailable.
    #[arg(long, default_value_t = DbConfig::DEFAULT.statement_timeout.into())]
    db_statement_timeout: Duration,
    #[command(flatten)]
    password: PasswordArgs,
    /// The longest a login, registration or password change waits for its password hash to
    /// start; one that would wait longer (judged from the hashes queued ahead of it) gets Busy
    /// at once, a 503 with Retry-After from http-server. Keep it well under http-server's
    /// --request-timeout, so that overload is answered 503, not 504.
    #[arg(long, default_value_t = settings::MAX_HASH_WAIT.into())]
    max_hash_wait: Duration,
    /// Largest picture upload accepted, in bytes.
    #[arg(long, default_value_t = PictureConfig::DEFAULT.max_bytes)]
    max_picture_bytes: usize,
    /// Widest or tallest picture decoded, in pixels; larger ones are refused.
    #[arg(long, default_value_t = PictureConfig::DEFAULT.max_dimension)]
    max_picture_dimension: u32,
    /// Stored pictures are shrunk to fit a square of this side, in pixels.
    #[arg(long, default_value_t = PictureConfig::DEFAULT.stored_dimension)]
    picture_size: u32,
    #[command(flatten)]
    throttle: ThrottleArgs,
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
    #[arg(long, default_value_t = ThrottleConfig::DEFAULT.failure_window.into())]
    login_failure_window: Duration,
    /// The first lockout at a limit; each further one doubles, up to --login-max-lockout.
    #[arg(long, default_value_t = ThrottleConfig::DEFAULT.lockout.into())]
    login_lockout: Duration,
    /// The longest lockout.
    #[arg(long, default_value_t = ThrottleConfig::DEFAULT.max_lockout.into())]
    login_max_lockout: Duration,
    /// Registrations one client address may make at once.
    #[arg(long, default_value_t = ThrottleConfig::DEFAULT.register_burst, value_parser = clap::value_parser!(u32).range(1..))]
    register_burst_per_address: u32,
    /// After that burst, one more registration per address per this interval.
    #[arg(long, default_value_t = ThrottleConfig::DEFAULT.register_interval.into())]
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
            failure_window: self.login_failure_window.into(),
            lockout: self.login_lockout.into(),
            max_lockout: self.login_max_lockout.into(),
            register_burst: self.register_burst_per_address,
            register_interval: self.register_interval_per_address.into(),
            register_global_rate: self.register_global_rate,
            register_global_burst: self.register_global_burst,
            max_accounts: self.throttle_max_accounts,
            max_clients: self.throttle_max_clients,
        }
    }
}

impl ServeArgs {
    fn settings(&self) -> Settings {
        Settings {
            db: DbConfig {
                pool_size: self.db_pool_size,
                checkout_timeout: self.db_timeout.into(),
                connect_timeout: self.db_timeout.into(),
                statement_timeout: self.db_statement_timeout.into(),
                max_replica_lag: self.max_replica_lag.into(),
            },
            replica_urls: self.replica_url.clone(),
            password: self.password.params(),
            max_concurrent_hashes: self.password.max_concurrent(),
            max_hash_wait: self.max_hash_wait.into(),
            pictures: PictureConfig {
                max_bytes: self.max_picture_bytes,
                max_dimension: self.max_picture_dimension,
                stored_dimension: self.picture_size,
            },
            session_ttl: self.session_ttl.into(),
            device_ttl: self.device_token_ttl.into(),
            deleted_username_hold: self.deleted_username_hold.into(),
            throttle: self.throttle.config(),
            server: ServerConfig {
                workers: self.workers as usize,
                max_per_peer: self
                    .max_connections_per_peer
                    .map_or((self.workers as usize / 4).max(1), |max| max as usize),
                idle_timeout: self.idle_timeout.into(),
                io_timeout: self.io_timeout.into(),
                max_frame_len: self.max_frame_len,
                ..ServerConfig::DEFAULT
            },
            ..Settings::new(&self.database_url)
        }
    }
}

fn main() {
    let cli = Cli::parse();
    tcp_server::logging::init(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Migrate { database_url } => db::migrate(&database_url).map(|applied| {
            log::info!("applied {applied} migration(s)");
        }),
        Command::Seed(args) => seed(&args),
        Command::Peppers(args) => peppers(&args),
        Command::CheckKeyrings(files) => SecretFiles {
            pepper: PepperArgs {
                pepper_file: files.pepper_file,
                dev: false,
            },
            token_key_file: files.token_key_file,
        }
        .load()
        .map(|secrets| {
            println!(
                "peppers {}; token keys {}",
                secrets.peppers, secrets.token_keys
            );
        }),
    };
    if let Err(error) = result {
        log::error!("{error:#}");
        std::process::exit(1);
    }
}

fn seed(args: &SeedArgs) -> anyhow::Result<()> {
    let hasher = Hasher::new(
        args.password.params(),
        args.pepper.load()?,
        args.password.max_concurrent(),
    )?;
    db::migrate(&args.database_url)?;
    let progress = std::io::stderr().is_terminal();
    let threads = args.threads.unwrap_or_else(settings::cores);
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

fn peppers(args: &PeppersArgs) -> anyhow::Result<()> {
    let pepper = PepperArgs {
        pepper_file: args.pepper_file.clone(),
        dev: false,
    };
    let ring = pepper.load()?;
    let counts = secrets::accounts_by_pepper(&args.database_url)?;
    let source = match std::env::var_os("GATEHOUSE_PEPPER") {
        Some(_) => "GATEHOUSE_PEPPER".to_owned(),
        None => args.pepper_file.display().to_string(),
    };
    println!("pepper  accounts  in {source}");
    for (id, accounts) in counts {
        let (id, held) = match id {
            Some(id) if id == ring.current().0 => (id.to_string(), "current"),
            Some(id) if ring.get(id).is_some() => (id.to_string(), "yes"),
            Some(id) => (id.to_string(), "NO: these accounts cannot log in"),
            None => ("?".to_owned(), "NO: not a pepper id of ours"),
        };
        println!("{id:>6}  {accounts:>8}  {held}");
    }
    Ok(())
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    // First: SIGHUP would otherwise kill a server still starting.
    let hangups = settings::Hangups::catch().context("installing the SIGHUP handler")?;
    let mut settings = args.settings();
    let files = SecretFiles {
        pepper: args.pepper.clone(),
        token_key_file: args.token_key_file.clone(),
    };
    let secrets = files.load()?;
    log::info!(
        "peppers {}; token keys {} (SIGHUP reloads them)",
        secrets.peppers,
        secrets.token_keys
    );
    let tier_key = load_tier_key(&args.tier_key_file, args.pepper.dev)?;
    log::info!("tier key {}: peers must prove they hold it", tier_key.id());
    if args.migrate {
        let applied = db::migrate(&settings.database_url)?;
        log::info!("applied {applied} migration(s)");
    }
    log::info!(
        "password hashing: {} (--argon2 {}), at most {} at once, waiting at most {}",
        settings.password,
        args.password.argon2,
        settings.max_concurrent_hashes,
        humantime::format_duration(settings.max_hash_wait)
    );
    if let Some(files) = args.tls.files("tcp-server") {
        settings.server.tls = Some(link::server_config(&files).context("--tier-tls")?);
        log::info!("tier link: {}", files.describe());
    }
    if settings.server.tls.is_none() && !args.listen.ip().is_loopback() {
        log::warn!(
            "the tier link on {} is not encrypted: passwords and tokens cross the network in \
             clear; use --tier-tls unless that network is private to the tiers",
            args.listen
        );
    }
    let ctx = Arc::new(Context::new(&settings, &secrets)?);
    ctx.reload_secrets_on(hangups, move || files.reload())
        .context("starting the reload thread")?;
    // Start regardless, so the servers can come up in any order; readiness follows the
    // database (see tcp-server/README.md, "Start-up without the database").
    match ctx.db.check() {
        Ok(()) => log::info!("the database answers"),
        Err(error) => log::warn!(
            "{error}; serving anyway: requests get Unavailable and Ping reports not ready \
             until the database answers"
        ),
    }
    let listeners = Listeners {
        protocol: bind(args.listen, 1024)?,
        admin: bind(args.admin_listen, 64)?,
    };
    let shutdown = Shutdown::new();
    shutdown
        .stop_on_signals()
        .context("installing signal handlers")?;
    server::run(listeners, &settings.server, ctx, tier_key, shutdown).context("serving")
}

/// The tier key, from GATEHOUSE_TIER_KEY or `file` (created with `create`).
fn load_tier_key(file: &std::path::Path, create: bool) -> anyhow::Result<proto::TierKey> {
    let secret = service::secret::load(service::secret::Source {
        what: "tier key",
        variable: "GATEHOUSE_TIER_KEY",
        file,
        create,
    })?;
    proto::TierKey::from_secret(&secret)
        .with_context(|| format!("the tier key in {}", file.display()))
}

/// A listener with a deep accept backlog, so bursts of connections queue in the kernel rather
/// than being refused.
fn bind(address: SocketAddr, backlog: i32) -> anyhow::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket
        .bind(&address.into())
        .with_context(|| format!("binding {address}"))?;
    socket.listen(backlog)?;
    Ok(socket.into())
}
