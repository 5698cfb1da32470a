//! http-server's entry point: parses the command line into a [`Config`], binds, and hands over
//! to the library. Every default shown by `--help` is the library's own constant.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;
use clap::Parser;
use http_server::{
    BackendConfig, BackendTls, BodyPace, Config, LISTEN_DEFAULTS, Listen, Listeners, Shutdown,
};
use humantime::Duration;
use service::link;

/// The gatehouse client-facing tier: the public JSON API (API v1) over HTTP/1.1, reaching
/// tcp-server through pooled connections that speak the gatehouse binary protocol.
///
/// Stops on SIGINT or SIGTERM: no new connections, requests already received are answered,
/// exit 0. A second signal exits at once.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// How log lines are written to stderr: text, or one JSON object per line. RUST_LOG sets
    /// the level (default info; debug adds a line per request).
    #[arg(long, value_enum, default_value_t, env = "GATEHOUSE_LOG_FORMAT")]
    log_format: service::logging::LogFormat,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// File holding the tier key this server proves to its backends (GATEHOUSE_TIER_KEY
    /// instead, if set); the same key as the tcp-servers'.
    #[arg(
        long,
        env = "GATEHOUSE_TIER_KEY_FILE",
        default_value = ".data/tier-key"
    )]
    tier_key_file: std::path::PathBuf,
    /// Development set-up: create the tier key file (mode 0600) when it is missing.
    #[arg(long)]
    dev: bool,
    /// Where the operator's endpoints listen: /metrics (served nowhere else), /healthz and
    /// /readyz. Keep it on loopback or a private network.
    #[arg(long, default_value = "127.0.0.1:9080")]
    admin_listen: SocketAddr,
    /// A tcp-server address; repeat for several. Requests spread over those that answer.
    #[arg(long = "backend", default_value = BackendConfig::DEFAULT_ADDRESS)]
    backends: Vec<SocketAddr>,
    #[command(flatten)]
    tls: link::TlsArgs,
    /// The name the backends' certificates must carry (default: each backend's IP address).
    #[arg(long, requires = "tier_tls")]
    tier_tls_server_name: Option<String>,
    /// Allow backends off loopback without --tier-tls: passwords and tokens then cross the
    /// network in clear, which is only fine on a network private to the tiers.
    #[arg(long, conflicts_with = "tier_tls")]
    tier_plaintext: bool,
    /// Worker threads answering requests (tiny_http adds one light thread per connection).
    #[arg(long, default_value_t = Config::DEFAULT.workers as u32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    workers: u32,
    /// Sockets per backend at most.
    #[arg(long, default_value_t = BackendConfig::DEFAULT.pool_size, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pool_size: u32,
    /// The longest wait for a free backend socket; past it the client gets 503 backend_busy.
    #[arg(long, default_value_t = BackendConfig::DEFAULT.pool_wait.into())]
    pool_wait: Duration,
    /// The longest a connect to a backend may take.
    #[arg(long, default_value_t = BackendConfig::DEFAULT.connect_timeout.into())]
    connect_timeout: Duration,
    /// The longest a backend may take to answer; past it the client gets 504 backend_timeout.
    #[arg(long, default_value_t = BackendConfig::DEFAULT.request_timeout.into())]
    request_timeout: Duration,
    /// Backend sockets idle this long are closed (keep below tcp-server's --idle-timeout).
    #[arg(long, default_value_t = BackendConfig::DEFAULT.idle_timeout.into())]
    backend_idle_timeout: Duration,
    /// A client connection that sends nothing for this long is closed (keep-alive idle, or a
    /// stalled request head or body).
    #[arg(long, default_value_t = LISTEN_DEFAULTS.idle_timeout.into())]
    client_idle_timeout: Duration,
    /// The longest one write of a response to a client may block.
    #[arg(long, default_value_t = LISTEN_DEFAULTS.write_timeout.into())]
    client_write_timeout: Duration,
    /// The largest JSON request body, in bytes (413 past it).
    #[arg(long, default_value_t = Config::DEFAULT.max_json_body as u64, value_parser = clap::value_parser!(u64).range(2..=tiny_http::PRE_READ_LIMIT as u64))]
    max_json_body: u64,
    /// The largest picture upload, in bytes (413 past it); tcp-server has its own limit too.
    #[arg(long, default_value_t = Config::DEFAULT.max_picture_body as u64, value_parser = clap::value_parser!(u64).range(1..=(proto::DEFAULT_MAX_FRAME_LEN as u64 - 1024)))]
    max_picture_body: u64,
    /// The slowest a request body may arrive, in bytes a second on average after its first
    /// second (408 past it): a 2 MiB picture then has about a minute.
    #[arg(long, default_value_t = Config::DEFAULT.body_pace.min_rate, value_parser = clap::value_parser!(u64).range(1..))]
    min_body_rate: u64,
    /// Workers that may read a large body (a picture over 16 KiB) at once; past it uploads get
    /// 503 uploads_busy. Default: a quarter of the workers, at least one.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    body_slots: Option<u32>,
    /// The longest a request may wait for a worker; one that waited longer gets a quick 503
    /// overloaded with Retry-After instead of its answer (the health checks are always answered).
    /// Keep it under the clients' own time-outs, so that overload reaches them as a 503.
    #[arg(long, default_value_t = Config::DEFAULT.max_queue_wait.into())]
    max_queue_wait: Duration,
    /// A reverse proxy (its IP address) whose X-Forwarded-For names the client, for the
    /// per-address limits; repeat for several. From any other peer the header is ignored.
    #[arg(long = "trusted-proxy")]
    trusted_proxies: Vec<IpAddr>,
    /// After SIGINT/SIGTERM, how long requests already received may still be answered.
    #[arg(long, default_value_t = Config::DEFAULT.shutdown_grace.into())]
    shutdown_grace: Duration,
    /// Make the web pages' session cookie Secure (sent over HTTPS only) and name it
    /// __Host-gatehouse_session, which no sibling subdomain can set; set it when clients reach
    /// this server through a TLS-terminating proxy. Switching it signs the pages' users out.
    #[arg(long)]
    secure_cookies: bool,
    /// Where browsers reach the web pages, as an origin (https://accounts.example.com): what
    /// the Origin header of their changes must be. By default http:// (https:// with
    /// --secure-cookies) and the Host header; set it when a proxy rewrites Host.
    #[arg(long, value_parser = parse_origin)]
    public_origin: Option<String>,
    /// The listener's accept backlog (capped by net.core.somaxconn).
    #[arg(long, default_value_t = LISTEN_DEFAULTS.backlog)]
    backlog: i32,
}

impl Cli {
    fn config(&self) -> anyhow::Result<Config> {
        if self.secure_cookies
            && self
                .public_origin
                .as_deref()
                .is_some_and(|origin| origin.starts_with("http://"))
        {
            anyhow::bail!(
                "--secure-cookies with an http:// --public-origin: browsers keep Secure cookies \
                 for HTTPS pages only"
            );
        }
        let tls = self.tls()?;
        if tls.is_none()
            && !self.tier_plaintext
            && let Some(remote) = self.backends.iter().find(|b| !b.ip().is_loopback())
        {
            anyhow::bail!(
                "backend {remote} is not on loopback: use --tier-tls (or --tier-plaintext on a \
                 network private to the tiers)"
            );
        }
        Ok(Config {
            workers: self.workers as usize,
            backend: BackendConfig {
                addresses: self.backends.clone(),
                pool_size: self.pool_size,
                pool_wait: self.pool_wait.into(),
                connect_timeout: self.connect_timeout.into(),
                request_timeout: self.request_timeout.into(),
                idle_timeout: self.backend_idle_timeout.into(),
                tls,
                ..BackendConfig::DEFAULT
            },
            max_json_body: self.max_json_body as usize,
            max_picture_body: self.max_picture_body as usize,
            body_pace: BodyPace {
                min_rate: self.min_body_rate,
                ..Config::DEFAULT.body_pace
            },
            body_slots: self
                .body_slots
                .map_or((self.workers as usize / 4).max(1), |slots| slots as usize),
            max_queue_wait: self.max_queue_wait.into(),
            trusted_proxies: self.trusted_proxies.clone(),
            shutdown_grace: self.shutdown_grace.into(),
            secure_cookies: self.secure_cookies,
            public_origin: self.public_origin.clone(),
        })
    }

    fn tls(&self) -> anyhow::Result<Option<BackendTls>> {
        let Some(files) = self.tls.files("http-server") else {
            return Ok(None);
        };
        let config = link::client_config(&files).context("--tier-tls")?;
        log::info!("tier link: {}", files.describe());
        Ok(Some(BackendTls {
            config,
            server_name: self.tier_tls_server_name.clone(),
        }))
    }

    fn listen(&self, address: SocketAddr) -> Listen {
        Listen {
            address,
            backlog: self.backlog,
            idle_timeout: self.client_idle_timeout.into(),
            write_timeout: self.client_write_timeout.into(),
        }
    }
}

fn main() {
    let cli = Cli::parse();
    service::logging::init(cli.log_format, &[]);
    if let Err(error) = serve(&cli) {
        log::error!("{error:#}");
        std::process::exit(1);
    }
}

fn serve(cli: &Cli) -> anyhow::Result<()> {
    let config = cli.config()?;
    let file = &cli.tier_key_file;
    let secret = service::secret::load(service::secret::Source {
        what: "tier key",
        variable: "GATEHOUSE_TIER_KEY",
        file,
        create: cli.dev,
    })?;
    let tier_key = proto::TierKey::from_secret(&secret)
        .with_context(|| format!("the tier key in {}", file.display()))?;
    log::info!("tier key {}", tier_key.id());
    // tiny_http holds two descriptors per client connection; the default soft limit (often
    // 1024) would run out near 500 connections.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => log::debug!("open files limit: {limit}"),
        Err(error) => log::warn!("could not raise the open files limit: {error}"),
    }
    let bind = |address| {
        http_server::bind(&cli.listen(address)).with_context(|| format!("binding {address}"))
    };
    let listeners = Listeners {
        public: bind(cli.listen)?,
        admin: bind(cli.admin_listen)?,
    };
    let shutdown = Shutdown::new();
    shutdown
        .stop_on_signals()
        .context("installing signal handlers")?;
    http_server::run(listeners, config, tier_key, shutdown).context("serving")
}

/// An origin as browsers send it: scheme, host and optional port, no path.
fn parse_origin(text: &str) -> Result<String, String> {
    let origin = text.trim_end_matches('/');
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or("an origin starts with https:// or http://")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err("an origin is scheme://host[:port], with no path, query or user".to_owned());
    }
    // Browsers leave a scheme's default port out of `Origin`.
    let origin = origin.to_ascii_lowercase();
    let origin = if origin.starts_with("https://") {
        origin.strip_suffix(":443")
    } else {
        origin.strip_suffix(":80")
    }
    .map_or(origin.clone(), str::to_owned);
    Ok(origin)
}

#[cfg(test)]
mod tests {
    use super::parse_origin;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert_eq!(
            parse_origin("https://Accounts.Example.com/").as_deref(),
            Ok("https://accounts.example.com")
        );
        assert_eq!(
            parse_origin("http://127.0.0.1:8080").as_deref(),
            Ok("http://127.0.0.1:8080")
        );
        assert_eq!(
            parse_origin("https://x.example:443").as_deref(),
            Ok("https://x.example")
        );
        assert_eq!(parse_origin("http://x:80").as_deref(), Ok("http://x"));
        for bad in [
            "accounts.example.com",
            "ftp://x",
            "https://",
            "https://x/path",
            "https://u@x",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
