//! The settings of a serving tcp-server, built once (by the binary from its command line, by
//! the tests for their needs) and turned into the operations' [`Context`] by
//! [`Context::new`]. Every default is written once, in the `DEFAULT` constant of the part it
//! configures, and the command line shows the same constants.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use signal_hook::consts::SIGHUP;
use signal_hook::iterator::Signals;

use crate::db::{Db, DbConfig};
use crate::device::DeviceKey;
use crate::metrics::Metrics;
use crate::ops::Context;
use crate::password::{Hasher, PasswordParams};
use crate::picture::{PictureConfig, Pictures};
use crate::secrets::Secrets;
use crate::server::ServerConfig;
use crate::throttle::{Throttle, ThrottleConfig};
use crate::token::TokenKey;

/// The longest a password hash waits to start, by default: a fifth of http-server's default
/// request timeout (5 s), so that a login queued behind others is answered, or refused with
/// Busy, long before http-server gives up on it.
pub const MAX_HASH_WAIT: Duration = Duration::from_secs(1);
/// How long a session token stays valid, by default.
pub const SESSION_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a device token is recognised, by default: three months (as humantime counts a
/// month, 30.44 days, so that `--help` shows "3months").
pub const DEVICE_TTL: Duration = Duration::from_secs(3 * 2_630_016);
/// How long a deleted account's username stays taken, by default: 30 days, so that whoever
/// knew the account by its name (its contacts, a password manager, a link) is not met by
/// somebody else under it the next day.
pub const DELETED_USERNAME_HOLD: Duration = Duration::from_secs(30 * 86_400);

/// Everything a serving tcp-server is configured with, but its secrets.
#[derive(Debug, Clone)]
pub struct Settings {
    /// PostgreSQL URL: the primary.
    pub database_url: String,
    /// Streaming replicas of it, which serve reads.
    pub replica_urls: Vec<String>,
    /// The database pool.
    pub db: DbConfig,
    /// Argon2id cost.
    pub password: PasswordParams,
    /// Password hashes running at once at most.
    pub max_concurrent_hashes: usize,
    /// The longest a password hash waits to start; past it (expected or actual), `Busy`.
    pub max_hash_wait: Duration,
    /// Picture limits.
    pub pictures: PictureConfig,
    /// Pictures decoded at once at most.
    pub max_concurrent_pictures: usize,
    /// How long a session token stays valid.
    pub session_ttl: Duration,
    /// How long a device token is recognised.
    pub device_ttl: Duration,
    /// How long a deleted account's username stays taken.
    pub deleted_username_hold: Duration,
    /// Brute-force and flood protection.
    pub throttle: ThrottleConfig,
    /// The server loop.
    pub server: ServerConfig,
}

impl Settings {
    /// The defaults for a server on `database_url`; hashes and pictures at most one per core at
    /// once.
    pub fn new(database_url: impl Into<String>) -> Settings {
        let cores = cores();
        Settings {
            database_url: database_url.into(),
            replica_urls: Vec::new(),
            db: DbConfig::DEFAULT,
            password: PasswordParams::DEFAULT,
            max_concurrent_hashes: cores,
            max_hash_wait: MAX_HASH_WAIT,
            pictures: PictureConfig::DEFAULT,
            max_concurrent_pictures: cores,
            session_ttl: SESSION_TTL,
            device_ttl: DEVICE_TTL,
            deleted_username_hold: DELETED_USERNAME_HOLD,
            throttle: ThrottleConfig::DEFAULT,
            server: ServerConfig::DEFAULT,
        }
    }
}

/// SIGHUP caught, from the moment this is made: a reload asked for while the server is still
/// starting waits for [`Context::reload_secrets_on`] instead of killing the process (SIGHUP's
/// default action).
pub struct Hangups(Signals);

impl Hangups {
    /// Catches SIGHUP from now on.
    pub fn catch() -> std::io::Result<Hangups> {
        Signals::new([SIGHUP]).map(Hangups)
    }
}

/// The cores of this machine (two when it cannot be told).
pub fn cores() -> usize {
    thread::available_parallelism().map_or(2, usize::from)
}

impl Context {
    /// Everything the operations use, built from `settings` and `secrets`. Opens no database
    /// connection: the pool connects lazily, so the server starts whether or not PostgreSQL is
    /// up.
    pub fn new(settings: &Settings, secrets: &Secrets) -> anyhow::Result<Context> {
        Ok(Context {
            db: Db::new(&settings.database_url, &settings.replica_urls, &settings.db)?,
            hasher: Hasher::with_max_wait(
                settings.password,
                secrets.peppers.clone(),
                settings.max_concurrent_hashes,
                Some(settings.max_hash_wait),
            )?,
            tokens: TokenKey::new(&secrets.token_keys),
            pictures: Pictures::new(settings.pictures.clone(), settings.max_concurrent_pictures),
            session_ttl: settings.session_ttl,
            devices: DeviceKey::new(&secrets.token_keys),
            device_ttl: settings.device_ttl,
            deleted_username_hold: settings.deleted_username_hold,
            metrics: {
                let metrics = Metrics::new();
                metrics.set_keyrings(secrets);
                metrics
            },
            throttle: Throttle::new(&settings.throttle),
        })
    }

    /// Reloads the keyrings with `load` at each SIGHUP caught by `hangups`, on a thread of its
    /// own. A reload that fails (a file missing, a ring malformed) changes nothing and is
    /// logged.
    pub fn reload_secrets_on(
        self: &Arc<Self>,
        hangups: Hangups,
        load: impl Fn() -> anyhow::Result<Secrets> + Send + 'static,
    ) -> std::io::Result<()> {
        let Hangups(mut signals) = hangups;
        let ctx = Arc::clone(self);
        thread::Builder::new()
            .name("reload".to_owned())
            .spawn(move || {
                for _ in signals.forever() {
                    match load() {
                        Ok(secrets) => {
                            ctx.set_secrets(&secrets);
                            log::info!(
                                "SIGHUP: reloaded the keyrings: peppers {}; token keys {}",
                                secrets.peppers,
                                secrets.token_keys
                            );
                        }
                        Err(error) => log::error!(
                            "SIGHUP: keeping the keyrings in use, the new ones do not load: \
                             {error:#}"
                        ),
                    }
                }
            })?;
        Ok(())
    }

    /// Takes new keyrings while serving (a reload): each request uses the rings of the moment
    /// it reads them. Rotation without lockout relies on it (docs/OPERATIONS.md).
    pub fn set_secrets(&self, secrets: &Secrets) {
        self.hasher.set_peppers(secrets.peppers.clone());
        self.tokens.set(&secrets.token_keys);
        self.devices.set(&secrets.token_keys);
        self.metrics.set_keyrings(secrets);
    }
}
