//! The gatehouse load generator: one synchronous thread per keep-alive HTTP/1.1 connection,
//! closed loop (each connection sends its next request when the last is answered) or open loop
//! (requests at a fixed rate, latency measured from each one's intended send time), with an
//! HdrHistogram of latencies, a live line each second and a final report.
//!
//! # Layout
//! - `lib.rs` (this file): [`Config`] and [`run`], the worker and collector threads.
//! - `scenario`: the steps (login, register, profile, ...), mixes and request bytes.
//! - `schedule`: open-loop send times.
//! - `http`: one lean keep-alive connection (httparse for responses).
//! - `stats`: samples, per-second histograms, the merged report.
//! - `plot`: the SVG picture of a report.

mod http;
pub mod plot;
pub mod scenario;
mod schedule;
mod stats;

pub use stats::{Latency, Report, SecondReport};

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::http::{Connection, Failure};
use crate::scenario::{FIXED_USERS, Mix, RequestWriter, Step};
use crate::schedule::{LATE_AFTER, Plan};
use crate::stats::{Outcome, Recording, Sample, outcome_name};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server, as given (for the report).
    pub url: String,
    /// Where to connect.
    pub address: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// The steps and their weights.
    pub mix: Mix,
    /// Seeded users to draw from (`user1` .. `userN`).
    pub users: u64,
    /// Connections, each with its own thread.
    pub connections: usize,
    /// Measured time, after the warm-up.
    pub duration: Duration,
    /// Time before measuring starts; its requests are sent but not counted.
    pub warmup: Duration,
    /// Open loop: requests per second over all connections.
    pub rate: Option<f64>,
    /// The longest wait for a response.
    pub timeout: Duration,
    /// Print a line each second to stderr.
    pub live: bool,
    /// Many clients: each connection opens from its own loopback address, and moves to a
    /// fresh one after this many requests (see [`Sources`]).
    pub spread_sources: Option<u64>,
}

/// Source addresses in 127.0.0.0/8 for connections that should look like many clients (the
/// service limits some requests per client address): every call gives one not given before in
/// this run, starting at a random point so that runs close together do not share them.
pub struct Sources {
    next: AtomicU32,
}

impl Sources {
    /// Addresses `127.a.b.c` with `a` in 1..=254 and `c` in 1..=254: about 16.5 million.
    const COUNT: u32 = 254 * 256 * 254;

    /// A fresh sequence.
    pub fn new() -> Sources {
        Sources {
            next: AtomicU32::new(fastrand::u32(..Self::COUNT)),
        }
    }

    /// The next address.
    pub fn take(&self) -> IpAddr {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % Self::COUNT;
        let (c, rest) = (n % 254, n / 254);
        let (b, a) = (rest % 256, rest / 256);
        IpAddr::V4(Ipv4Addr::new(127, 1 + a as u8, b as u8, 1 + c as u8))
    }
}

impl Default for Sources {
    fn default() -> Self {
        Sources::new()
    }
}

/// Runs the load and returns the report.
pub fn run(config: &Config) -> std::io::Result<Report> {
    let (samples, received) = crossbeam_channel::unbounded::<Sample>();
    let recording = Arc::new(Mutex::new(Recording::default()));
    let collector = {
        let recording = Arc::clone(&recording);
        thread::Builder::new()
            .name("collector".to_owned())
            .spawn(move || collect(&received, &recording))?
    };
    // Everyone connects first; the clock starts when all are ready.
    let ready = Arc::new(Barrier::new(config.connections + 1));
    let start = Arc::new(Mutex::new(None::<Instant>));
    let run_id = fastrand::u32(..);
    if config.spread_sources.is_some() && !config.address.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "spreading connections over source addresses needs a loopback server",
        ));
    }
    let sources = Arc::new(Sources::new());
    let mut workers = Vec::with_capacity(config.connections);
    for index in 0..config.connections {
        let (config, samples, ready, start, sources) = (
            config.clone(),
            samples.clone(),
            Arc::clone(&ready),
            Arc::clone(&start),
            Arc::clone(&sources),
        );
        workers.push(
            thread::Builder::new()
                .name(format!("conn-{index}"))
                // Buffers live on the heap; a small stack keeps 1,000 threads light.
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut worker = Worker::new(&config, index, run_id, sources);
                    let _ = worker.connection.connect();
                    // Sessions are opened before the clock starts, so the steps that use one
                    // are measured alone (a 401 later opens a new one, inside its step).
                    if worker.mix.needs_session() {
                        let _ = worker.log_in();
                    }
                    if worker.mix.needs_own_account() {
                        let _ = worker.open_account();
                    }
                    ready.wait();
                    let Some(start) = *start.lock() else { return };
                    worker.run(start, &samples);
                })?,
        );
    }
    drop(samples);
    ready_and_start(&ready, &start);
    let started = start.lock().expect("set just above");
    let total = config.warmup + config.duration;
    let mut shown = 0;
    while workers.iter().any(|w| !w.is_finished()) {
        thread::sleep(Duration::from_millis(100));
        let elapsed = started.elapsed().as_secs() as usize;
        if config.live && elapsed > shown && shown < total.as_secs() as usize {
            live_line(&recording.lock(), shown, config.warmup);
            shown = elapsed;
        }
    }
    for worker in workers {
        let _ = worker.join();
    }
    let _ = collector.join();
    let recording = recording.lock();
    Ok(report(config, &recording))
}

fn ready_and_start(ready: &Barrier, start: &Mutex<Option<Instant>>) {
    *start.lock() = Some(Instant::now());
    ready.wait();
}

fn collect(received: &Receiver<Sample>, recording: &Mutex<Recording>) {
    while let Ok(sample) = received.recv() {
        let mut recording = recording.lock();
        recording.record(&sample);
        // Take what else is waiting under the same lock.
        for sample in received.try_iter().take(10_000) {
            recording.record(&sample);
        }
    }
}

fn live_line(recording: &Recording, second: usize, warmup: Duration) {
    let Some(s) = recording.seconds.get(second) else {
        return;
    };
    let phase = if (second as u64) < warmup.as_secs() {
        " (warm-up)"
    } else {
        ""
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "[{:>4}s] {:>8} req/s  errors {:>6}  p50 {:>8.2} ms  p99 {:>8.2} ms{phase}",
        second + 1,
        s.requests(),
        s.errors,
        s.histogram.value_at_quantile(0.5) as f64 / 1000.0,
        s.histogram.value_at_quantile(0.99) as f64 / 1000.0,
    );
}

fn report(config: &Config, recording: &Recording) -> Report {
    let from = config.warmup.as_secs() as usize;
    let to = (config.warmup + config.duration).as_secs() as usize;
    let totals = recording.merge(from, to);
    let measured = config.duration.as_secs_f64();
    let requests = totals.histogram.len();
    let ok: u64 = totals
        .outcomes
        .iter()
        .filter(|(outcome, _)| outcome.is_ok())
        .map(|(_, count)| count)
        .sum();
    Report {
        url: config.url.clone(),
        scenario: config.mix.to_string(),
        connections: config.connections,
        rate: config.rate,
        warmup_seconds: config.warmup.as_secs_f64(),
        measured_seconds: measured,
        requests,
        errors: totals.errors,
        error_rate: if requests == 0 {
            0.0
        } else {
            totals.errors as f64 / requests as f64
        },
        throughput: totals.completed as f64 / measured,
        ok_throughput: ok as f64 / measured,
        latency_ms: Latency::of(&totals.histogram),
        late_sends: totals.late,
        outcomes: totals
            .outcomes
            .iter()
            .map(|(outcome, count)| (outcome_name(*outcome), *count))
            .collect(),
        per_second: recording
            .seconds
            .iter()
            .enumerate()
            .take(to)
            .map(|(index, second)| SecondReport::of(index, second, index < from))
            .collect(),
    }
}

/// One connection's loop.
struct Worker {
    connection: Connection,
    writer: RequestWriter,
    mix: Mix,
    rng: fastrand::Rng,
    users: u64,
    plan: Option<Plan>,
    end: Duration,
    /// The longest wait for one answer.
    timeout: Duration,
    session: Option<String>,
    /// For `change-password`: the connection's own account.
    account: Option<Account>,
    request: Vec<u8>,
    /// For fresh usernames: unique per run, connection and request.
    name_prefix: String,
    sequence: u64,
    /// With `Config::spread_sources`: where fresh source addresses come from, and how many
    /// requests are left from the current one.
    sources: Option<(Arc<Sources>, u64)>,
    requests_left: u64,
}

/// An account a connection registered for itself, and its session.
struct Account {
    password: String,
    token: String,
}

impl Worker {
    fn new(config: &Config, index: usize, run_id: u32, sources: Arc<Sources>) -> Worker {
        let mut connection = Connection::new(config.address, config.timeout);
        let spread = config.spread_sources.map(|per| (sources, per.max(1)));
        if let Some((sources, _)) = &spread {
            connection.move_to(sources.take());
        }
        Worker {
            connection,
            writer: RequestWriter::new(&config.host),
            mix: config.mix.clone(),
            rng: fastrand::Rng::new(),
            users: config.users.max(1),
            plan: config
                .rate
                .map(|rate| Plan::new(index, config.connections, rate)),
            end: config.warmup + config.duration,
            timeout: config.timeout,
            session: None,
            account: None,
            request: Vec::with_capacity(512),
            name_prefix: format!("lt{run_id:08x}c{index}n"),
            sequence: 0,
            requests_left: spread.as_ref().map_or(u64::MAX, |(_, per)| *per),
            sources: spread,
        }
    }

    /// With spread sources: moves to a fresh source address once this one has sent its share.
    fn count_request(&mut self) {
        self.requests_left = self.requests_left.saturating_sub(1);
        if self.requests_left == 0
            && let Some((sources, per)) = &self.sources
        {
            self.connection.move_to(sources.take());
            self.requests_left = *per;
        }
    }

    fn run(&mut self, start: Instant, samples: &Sender<Sample>) {
        let mut k = 0;
        let mut previous_done = start;
        loop {
            let intended = match &self.plan {
                Some(plan) => plan.intended(k),
                None => start.elapsed(),
            };
            if intended >= self.end {
                return;
            }
            if let Some(plan) = &self.plan
                && start.elapsed() > self.end + self.timeout
            {
                // A stalled server has left this connection far behind its schedule: the sends
                // it can no longer make are failures, not omissions, and the run ends on time.
                let mut due = k;
                while plan.intended(due) < self.end {
                    let sample = Sample {
                        at: plan.intended(due),
                        latency: start.elapsed().saturating_sub(plan.intended(due)),
                        outcome: Outcome::Failed(Failure::Timeout),
                        late: true,
                    };
                    if samples.send(sample).is_err() {
                        return;
                    }
                    due += 1;
                }
                return;
            }
            k += 1;
            if self.plan.is_some() {
                let at = start + intended;
                let now = Instant::now();
                if at > now {
                    thread::sleep(at - now);
                }
            }
            let step = self.mix.pick(self.rng.u32(..self.mix.total()));
            let sent = Instant::now();
            let outcome = self.step(step);
            let done = Instant::now();
            let from = if self.plan.is_some() {
                start + intended
            } else {
                sent
            };
            let sample = Sample {
                at: intended,
                latency: done.saturating_duration_since(from),
                outcome,
                // The connection was still waiting for its previous answer when this request
                // was due: the generator could not keep the schedule. (A thread waking a
                // little late is not that; its delay is in the latency.)
                late: self.plan.is_some() && previous_done > start + intended + LATE_AFTER,
            };
            previous_done = done;
            if samples.send(sample).is_err() {
                return;
            }
            if matches!(outcome, Outcome::Failed(Failure::Connect)) && self.plan.is_none() {
                // A refused connect returns at once; do not spin on it.
                thread::sleep(Duration::from_millis(10));
            }
            // A refusal that says when to come back (503 or 429 with Retry-After) is waited
            // out, as a well-behaved client does: retried at once, it would load the server
            // with refusals and measure that. Only in closed loop: an open loop keeps its
            // schedule.
            if self.plan.is_none()
                && matches!(outcome, Outcome::Status(429 | 503))
                && let Some(wait) = self.connection.retry_after()
            {
                thread::sleep(wait.min(self.end.saturating_sub(start.elapsed())));
            }
        }
    }

    /// Sends one request of `step` (logging in first when the step needs a session).
    fn step(&mut self, step: Step) -> Outcome {
        if step.needs_session()
            && self.session.is_none()
            && let Err(outcome) = self.log_in()
        {
            return outcome;
        }
        if step == Step::ChangePassword {
            return self.change_password();
        }
        match step {
            Step::LoginRandom => {
                let user = self.rng.u64(1..=self.users);
                self.writer.login(&mut self.request, user);
            }
            Step::LoginFixed => {
                let user = self.rng.u64(1..=FIXED_USERS.min(self.users));
                self.writer.login(&mut self.request, user);
            }
            Step::Register => {
                self.sequence += 1;
                let name = format!("{}{}", self.name_prefix, self.sequence);
                self.writer.register(&mut self.request, &name);
            }
            Step::Profile => {
                let token = self.session.as_deref().unwrap_or_default();
                self.writer.profile(&mut self.request, token);
            }
            Step::Update => {
                self.sequence += 1;
                let token = self.session.as_deref().unwrap_or_default();
                let nickname = format!("nick {}", self.sequence);
                self.writer.update(&mut self.request, token, &nickname);
            }
            Step::Health => self.writer.health(&mut self.request),
            Step::ChangePassword => unreachable!("answered above"),
        }
        self.count_request();
        match self.connection.send(&self.request) {
            Ok(answer) => {
                if answer.status == 401 && step.needs_session() {
                    self.session = None;
                }
                Outcome::Status(answer.status)
            }
            Err(failure) => Outcome::Failed(failure),
        }
    }

    /// Changes the password of the connection's own account (opening one first if it has
    /// none) to a fresh random one, and carries on with the new session the answer gives.
    fn change_password(&mut self) -> Outcome {
        if self.account.is_none()
            && let Err(outcome) = self.open_account()
        {
            return outcome;
        }
        let account = self.account.as_ref().expect("opened above");
        let new = scenario::random_password(&mut self.rng);
        self.writer
            .change_password(&mut self.request, &account.token, &account.password, &new);
        self.count_request();
        match self.connection.send(&self.request) {
            Ok(answer) => {
                match answer.status {
                    200 => match scenario::token_of(answer.body) {
                        Some(token) => {
                            let account = self.account.as_mut().expect("opened above");
                            account.token = token;
                            account.password = new;
                        }
                        None => return Outcome::Failed(Failure::Protocol),
                    },
                    // The session or the password is no longer what this connection holds:
                    // start again with a new account.
                    401 => self.account = None,
                    _ => {}
                }
                Outcome::Status(answer.status)
            }
            // Whether the change was made is unknown, so the account's password is too.
            Err(failure) => {
                self.account = None;
                Outcome::Failed(failure)
            }
        }
    }

    /// Registers an account of the connection's own, with a random password, and logs in.
    fn open_account(&mut self) -> Result<(), Outcome> {
        self.sequence += 1;
        let username = format!("{}a{}", self.name_prefix, self.sequence);
        let password = scenario::random_password(&mut self.rng);
        self.writer
            .register_with(&mut self.request, &username, &password);
        self.count_request();
        match self.connection.send(&self.request) {
            Ok(answer) if answer.status == 201 => {}
            Ok(answer) => return Err(Outcome::Status(answer.status)),
            Err(failure) => return Err(Outcome::Failed(failure)),
        }
        self.writer
            .login_as(&mut self.request, &username, &password);
        self.count_request();
        match self.connection.send(&self.request) {
            Ok(answer) if answer.status == 200 => {
                let token =
                    scenario::token_of(answer.body).ok_or(Outcome::Failed(Failure::Protocol))?;
                self.account = Some(Account { password, token });
                Ok(())
            }
            Ok(answer) => Err(Outcome::Status(answer.status)),
            Err(failure) => Err(Outcome::Failed(failure)),
        }
    }

    fn log_in(&mut self) -> Result<(), Outcome> {
        let user = self.rng.u64(1..=self.users);
        self.writer.login(&mut self.request, user);
        match self.connection.send(&self.request) {
            Ok(answer) if answer.status == 200 => {
                self.session = scenario::token_of(answer.body);
                self.session
                    .as_ref()
                    .map(|_| ())
                    .ok_or(Outcome::Failed(Failure::Protocol))
            }
            Ok(answer) => Err(Outcome::Status(answer.status)),
            Err(failure) => Err(Outcome::Failed(failure)),
        }
    }
}
