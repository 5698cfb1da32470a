//! What each request is: the scenarios, the mix of a `mixed` run, and the request bytes each
//! one sends. Credentials follow tcp-server's seeding scheme: user `user{i}` has password
//! `secret-{i}` for i in 1..=N.

use std::fmt;
use std::str::FromStr;

/// One kind of request, and a scenario made of only that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// Log in as a user drawn uniformly from the N seeded users.
    LoginRandom,
    /// Log in as one of the first 200 seeded users.
    LoginFixed,
    /// Register an account with a name never used before.
    Register,
    /// Read the profile with the connection's session (logged in once per connection).
    Profile,
    /// Change the nickname with the connection's session.
    Update,
    /// Change the password of an account of the connection's own (registered for the run, as
    /// seeded users' passwords are too weak to be set again), to a fresh random one each time.
    ChangePassword,
    /// `GET /healthz`: no backend work, to measure the HTTP path and the client itself.
    Health,
}

impl Step {
    /// Every step.
    pub const ALL: [Step; 7] = [
        Step::LoginRandom,
        Step::LoginFixed,
        Step::Register,
        Step::Profile,
        Step::Update,
        Step::ChangePassword,
        Step::Health,
    ];

    /// The name `--scenario` takes.
    pub fn name(self) -> &'static str {
        match self {
            Step::LoginRandom => "login-random",
            Step::LoginFixed => "login-fixed",
            Step::Register => "register",
            Step::Profile => "profile",
            Step::Update => "update",
            Step::ChangePassword => "change-password",
            Step::Health => "health",
        }
    }

    /// Whether the step needs the connection to hold a session of a seeded user first.
    pub fn needs_session(self) -> bool {
        matches!(self, Step::Profile | Step::Update)
    }

    /// Whether the step needs an account of the connection's own, with a session.
    pub fn needs_own_account(self) -> bool {
        matches!(self, Step::ChangePassword)
    }
}

impl FromStr for Step {
    type Err = String;

    fn from_str(text: &str) -> Result<Step, String> {
        Step::ALL
            .into_iter()
            .find(|step| step.name() == text)
            .ok_or_else(|| {
                let names: Vec<_> = Step::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "unknown scenario {text:?}; one of {}, mixed",
                    names.join(", ")
                )
            })
    }
}

/// Steps with weights; a single-step scenario is a mix of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    /// (step, weight), weights above zero.
    entries: Vec<(Step, u32)>,
    total: u32,
}

impl Mix {
    /// A mix of one step.
    pub fn single(step: Step) -> Mix {
        Mix {
            entries: vec![(step, 1)],
            total: 1,
        }
    }

    /// `login-random=80,profile=15,update=5`: weights are relative.
    pub fn parse(text: &str) -> Result<Mix, String> {
        let mut entries: Vec<(Step, u32)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected step=weight"))?;
            let step: Step = name.trim().parse()?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight must be a whole number"))?;
            if entries.iter().any(|(s, _)| *s == step) {
                return Err(format!("{} appears twice", step.name()));
            }
            if weight > 0 {
                entries.push((step, weight));
            }
        }
        let total = entries
            .iter()
            .try_fold(0u32, |sum, (_, w)| sum.checked_add(*w))
            .ok_or("the weights are too large")?;
        if total == 0 {
            return Err("a mix needs at least one step with a weight above 0".to_owned());
        }
        Ok(Mix { entries, total })
    }

    /// The step for a draw in `0..total()`.
    pub fn pick(&self, draw: u32) -> Step {
        let mut left = draw % self.total;
        for &(step, weight) in &self.entries {
            if left < weight {
                return step;
            }
            left -= weight;
        }
        self.entries[0].0
    }

    /// The sum of the weights: draws for [`Mix::pick`] are taken below it.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Whether a step of the mix needs a session.
    pub fn needs_session(&self) -> bool {
        self.entries.iter().any(|(step, _)| step.needs_session())
    }

    /// Whether a step of the mix needs an account of the connection's own.
    pub fn needs_own_account(&self) -> bool {
        self.entries
            .iter()
            .any(|(step, _)| step.needs_own_account())
    }

    /// The steps with a weight above zero.
    pub fn steps(&self) -> impl Iterator<Item = Step> + '_ {
        self.entries.iter().map(|(step, _)| *step)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [(step, _)] = self.entries.as_slice() {
            return f.write_str(step.name());
        }
        let parts: Vec<String> = self
            .entries
            .iter()
            .map(|(step, weight)| format!("{}={weight}", step.name()))
            .collect();
        write!(f, "mixed({})", parts.join(","))
    }
}

/// The default weights of `--scenario mixed`.
pub const DEFAULT_MIX: &str = "login-random=60,profile=30,update=5,register=5";

/// The password of the accounts `register` creates: long and uncommon enough for the password
/// rules.
pub const REGISTER_PASSWORD: &str = "load test password";

/// A random password the password rules accept: 20 letters and digits, about 119 bits.
pub fn random_password(rng: &mut fastrand::Rng) -> String {
    (0..20).map(|_| rng.alphanumeric()).collect()
}

/// How many users `login-fixed` cycles through.
pub const FIXED_USERS: u64 = 200;

/// Writes the bytes of one request into `out` (cleared first).
pub struct RequestWriter {
    host: String,
}

impl RequestWriter {
    /// Requests for the server known as `host` (the `Host` header).
    pub fn new(host: &str) -> RequestWriter {
        RequestWriter {
            host: host.to_owned(),
        }
    }

    /// `POST /api/v1/sessions` for seeded user `i`.
    pub fn login(&self, out: &mut Vec<u8>, user: u64) {
        let body = format!(r#"{{"username":"user{user}","password":"secret-{user}"}}"#);
        self.json(out, "POST", "/api/v1/sessions", None, &body);
    }

    /// `POST /api/v1/users` with a fresh name.
    pub fn register(&self, out: &mut Vec<u8>, username: &str) {
        self.register_with(out, username, REGISTER_PASSWORD);
    }

    /// `POST /api/v1/users` with a fresh name and this password (JSON-safe: no quote or
    /// backslash).
    pub fn register_with(&self, out: &mut Vec<u8>, username: &str, password: &str) {
        let body = format!(r#"{{"username":"{username}","password":"{password}"}}"#);
        self.json(out, "POST", "/api/v1/users", None, &body);
    }

    /// `POST /api/v1/sessions` for an account of the run's own.
    pub fn login_as(&self, out: &mut Vec<u8>, username: &str, password: &str) {
        let body = format!(r#"{{"username":"{username}","password":"{password}"}}"#);
        self.json(out, "POST", "/api/v1/sessions", None, &body);
    }

    /// `PUT /api/v1/me/password` from `current` to `new` (JSON-safe passwords).
    pub fn change_password(&self, out: &mut Vec<u8>, token: &str, current: &str, new: &str) {
        let body = format!(r#"{{"current_password":"{current}","new_password":"{new}"}}"#);
        self.json(out, "PUT", "/api/v1/me/password", Some(token), &body);
    }

    /// `GET /api/v1/me` with a session.
    pub fn profile(&self, out: &mut Vec<u8>, token: &str) {
        out.clear();
        out.extend_from_slice(
            format!(
                "GET /api/v1/me HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n",
                self.host
            )
            .as_bytes(),
        );
    }

    /// `PATCH /api/v1/me` with a new nickname.
    pub fn update(&self, out: &mut Vec<u8>, token: &str, nickname: &str) {
        let body = format!(r#"{{"nickname":"{nickname}"}}"#);
        self.json(out, "PATCH", "/api/v1/me", Some(token), &body);
    }

    /// `GET /healthz`.
    pub fn health(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(
            format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", self.host).as_bytes(),
        );
    }

    fn json(&self, out: &mut Vec<u8>, method: &str, path: &str, token: Option<&str>, body: &str) {
        out.clear();
        let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
        out.extend_from_slice(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
                self.host,
                body.len()
            )
            .as_bytes(),
        );
    }
}

/// The `token` of a login response body.
pub fn token_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Session {
        token: String,
    }
    serde_json::from_slice::<Session>(body)
        .ok()
        .map(|s| s.token)
}
