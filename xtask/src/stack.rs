//! Process plumbing shared by `chaos` and `bench`: the workspace's paths, building the servers,
//! starting and stopping them by pid, PostgreSQL through `scripts/postgres`, and the clean-up
//! that runs the same way on success, failure, Ctrl-C and SIGTERM.
//!
//! Every child this module starts is kept in one registry, owned there rather than by the
//! caller, so that the signal thread can stop them all while the main thread is busy (in a
//! load run, say). PostgreSQL operations share one lock for the same reason: a clean-up never
//! races a scenario's restart.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::BufRead as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// A line of progress, on stderr (stdout carries only the results).
pub fn say(message: &str) {
    eprintln!("==> {message}");
}

/// The workspace's root: xtask sits right below it.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent directory")
}

/// The cargo that runs us, when it says so.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Which build of the servers to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

/// The server binaries, where cargo says it built them.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub tcp_server: PathBuf,
    pub http_server: PathBuf,
}

/// Builds tcp-server and http-server and returns their paths, read from cargo's own messages
/// (so `CARGO_TARGET_DIR` and `build.target-dir` are honoured without guessing).
pub fn build_servers(profile: Profile) -> anyhow::Result<Binaries> {
    // scripts/test has built the debug binaries with the tests (GATEHOUSE_USE_BUILT); a build of
    // these two packages alone would compile the dependencies again with other features.
    if profile == Profile::Debug && std::env::var_os("GATEHOUSE_USE_BUILT").is_some() {
        let binaries = Binaries {
            tcp_server: root().join("target/debug/tcp-server"),
            http_server: root().join("target/debug/http-server"),
        };
        for binary in [&binaries.tcp_server, &binaries.http_server] {
            ensure!(
                binary.is_file(),
                "GATEHOUSE_USE_BUILT is set, but {} is missing",
                binary.display()
            );
        }
        say("using the debug servers the tests built (GATEHOUSE_USE_BUILT)");
        return Ok(binaries);
    }
    say(&format!("building the servers ({profile:?})").to_lowercase());
    let mut command = cargo();
    command.args([
        "build",
        "--locked",
        "--message-format=json-render-diagnostics",
    ]);
    if profile == Profile::Release {
        command.arg("--release");
    }
    let output = command
        .args(["--package", "tcp-server", "--package", "http-server"])
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    ensure!(output.status.success(), "cargo build failed");
    let mut executables = BTreeMap::new();
    for line in output.stdout.lines() {
        let line = line?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && let (Some(name), Some(path)) = (
                message["target"]["name"].as_str(),
                message["executable"].as_str(),
            )
        {
            executables.insert(name.to_owned(), PathBuf::from(path));
        }
    }
    let mut take = |name: &str| {
        executables
            .remove(name)
            .with_context(|| format!("cargo build reported no {name} executable"))
    };
    Ok(Binaries {
        tcp_server: take("tcp-server")?,
        http_server: take("http-server")?,
    })
}

/// The database the loads run against, with `users` seeded users (seeded by `binaries`'
/// tcp-server when missing): DATABASE_URL when set, else the private cluster of
/// scripts/postgres, stopped at the end if it was not running.
pub fn seeded_database(binaries: &Binaries, users: u64) -> anyhow::Result<String> {
    let given_url = std::env::var("DATABASE_URL").ok();
    if given_url.is_none() && !postgres_running()? {
        postgres_at_exit(AtExit::Stop);
    }
    let database_url = postgres("start", given_url.as_deref())?;
    say(&format!(
        "seeding {} users (skipped when already there; 10 million take about 3 minutes)",
        crate::load::grouped(users)
    ));
    let mut seed = Command::new(&binaries.tcp_server);
    seed.args(["seed", "--users", &users.to_string(), "--dev"])
        .env("DATABASE_URL", &database_url);
    let status = Process::start("seed", seed, None)?.wait_for_exit();
    ensure!(status.is_some_and(|s| s.success()), "seeding failed");
    Ok(database_url)
}

/// A private CA and both tier certificates in `dir`, made by scripts/tier-ca; the flags that
/// give `side` ("tcp-server" or "http-server") its files there, `--tier-tls` first.
pub fn tier_tls(dir: &Path) -> anyhow::Result<impl Fn(&str) -> Vec<String> + use<>> {
    let status = Command::new(root().join("scripts/tier-ca"))
        .arg("--dir")
        .arg(dir)
        .status()
        .context("running scripts/tier-ca")?;
    anyhow::ensure!(status.success(), "scripts/tier-ca failed");
    let dir = dir.to_owned();
    Ok(move |side: &str| {
        let file = |name: String| dir.join(name).display().to_string();
        vec![
            "--tier-tls".to_owned(),
            "--tier-tls-cert".to_owned(),
            file(format!("{side}.crt")),
            "--tier-tls-key".to_owned(),
            file(format!("{side}.key")),
            "--tier-tls-ca".to_owned(),
            file("ca.crt".to_owned()),
        ]
    })
}

/// Lets the servers and the load generator hold thousands of sockets; children inherit it.
pub fn raise_open_files_limit() {
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        say(&format!(
            "warning: could not raise the open files limit: {error}"
        ));
    }
}

/// Fails when something already listens on one of `ports` (on 127.0.0.1).
pub fn check_ports_free(ports: &[u16]) -> anyhow::Result<()> {
    for &port in ports {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok() {
            bail!("port {port} is in use");
        }
    }
    Ok(())
}

/// Calls `predicate` every `step` until it holds or `timeout` has passed; whether it held.
pub fn wait_until(timeout: Duration, step: Duration, mut predicate: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if predicate() {
            return true;
        }
        thread::sleep(step);
    }
    predicate()
}

/// A stop request that sleeping threads see at once (a flag and a condition variable).
#[derive(Clone, Default)]
pub struct Stop(Arc<(Mutex<bool>, Condvar)>);

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    pub fn set(&self) {
        *lock(&self.0.0) = true;
        self.0.1.notify_all();
    }

    pub fn is_set(&self) -> bool {
        *lock(&self.0.0)
    }

    /// Sleeps `timeout` unless stopped first; whether it was stopped.
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = lock(&self.0.0);
        let (stopped, _) = self
            .0
            .1
            .wait_timeout_while(guard, timeout, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        *stopped
    }
}

/// A lock that a panicking scenario cannot poison for the clean-up.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// --- the children ------------------------------------------------------------------------------

/// Every child started here and not yet reaped, by pid. A pid in it cannot have been reused,
/// so signalling it hits our own process and nothing else.
struct Registry {
    children: BTreeMap<u32, Child>,
    /// Set by the clean-up: nothing new starts after it.
    closed: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    children: BTreeMap::new(),
    closed: false,
});

/// Where a server stands.
#[derive(Debug, Clone, Copy)]
enum State {
    Running,
    Exited(ExitStatus),
    /// Stopped by the clean-up after a signal.
    Gone,
}

/// A process started by us (a server, or the seeding), stopped by pid only. It stops (SIGTERM,
/// then SIGKILL after 15 s) when dropped.
pub struct Process {
    name: String,
    pid: u32,
    log: PathBuf,
    state: State,
}

impl Process {
    /// Starts `command` with its working directory the workspace's root, so the servers'
    /// relative defaults such as `.data/pepper` resolve as documented. Its output is appended to
    /// `<logs>/<name>.log`, or shared with ours without `logs`.
    pub fn start(name: &str, mut command: Command, logs: Option<&Path>) -> anyhow::Result<Process> {
        command.current_dir(root()).stdin(Stdio::null());
        let mut log = PathBuf::new();
        if let Some(logs) = logs {
            log = logs.join(format!("{name}.log"));
            let file = File::options()
                .create(true)
                .append(true)
                .open(&log)
                .with_context(|| format!("opening {}", log.display()))?;
            command.stdout(file.try_clone()?).stderr(file);
        }
        let mut registry = lock(&REGISTRY);
        ensure!(!registry.closed, "stopping: {name} not started");
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        let pid = child.id();
        registry.children.insert(pid, child);
        Ok(Process {
            name: name.to_owned(),
            pid,
            log,
            state: State::Running,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn poll(&mut self) -> State {
        if let State::Running = self.state {
            let mut registry = lock(&REGISTRY);
            self.state = match registry.children.get_mut(&self.pid) {
                None => State::Gone,
                Some(child) => match child.try_wait() {
                    Ok(None) => State::Running,
                    Ok(Some(status)) => State::Exited(status),
                    Err(_) => State::Gone,
                },
            };
            if !matches!(self.state, State::Running) {
                registry.children.remove(&self.pid);
            }
        }
        self.state
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.poll(), State::Running)
    }

    /// Sends SIGTERM with kill(1) (our code may not use `unsafe`, so not libc::kill), under
    /// the registry's lock so that the pid is still our unreaped child.
    pub fn terminate(&mut self) {
        if self.alive() {
            let registry = lock(&REGISTRY);
            if registry.children.contains_key(&self.pid) {
                signal(self.pid, "TERM");
            }
        }
    }

    /// SIGKILL, and waits for the exit.
    pub fn kill(&mut self) {
        if self.alive() {
            let mut registry = lock(&REGISTRY);
            if let Some(mut child) = registry.children.remove(&self.pid) {
                let _ = child.kill();
                self.state = child.wait().map_or(State::Gone, State::Exited);
            }
        }
    }

    /// Waits up to `timeout` for the exit; its status, if it exited.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_until(timeout, Duration::from_millis(10), || !self.alive());
        match self.state {
            State::Exited(status) => Some(status),
            State::Running | State::Gone => None,
        }
    }

    /// Waits however long it takes; the exit status, unless the clean-up took it.
    pub fn wait_for_exit(&mut self) -> Option<ExitStatus> {
        while self.alive() {
            thread::sleep(Duration::from_millis(50));
        }
        match self.state {
            State::Exited(status) => Some(status),
            State::Running | State::Gone => None,
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        self.terminate();
        if self.wait(grace).is_none() {
            self.kill();
        }
    }

    /// Everything it wrote so far.
    pub fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Its log's last `lines` lines, for an error message.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// A number from /proc/<pid>/status, such as `VmRSS` or `VmHWM` (KiB) or `Threads`.
    pub fn proc_status(&self, field: &str) -> Option<u64> {
        proc_status(self.pid, field)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(15));
    }
}

/// A number from /proc/<pid>/status.
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&text, field)
}

/// The number after `field:` in the text of a /proc status file.
fn status_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Stops every child still running: SIGTERM, up to 5 s to exit, then SIGKILL. Nothing starts
/// after it.
fn stop_all_children() {
    let children = {
        let mut registry = lock(&REGISTRY);
        registry.closed = true;
        std::mem::take(&mut registry.children)
    };
    let mut children: Vec<Child> = children.into_values().collect();
    for child in &children {
        signal(child.id(), "TERM");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && children
            .iter_mut()
            .any(|child| matches!(child.try_wait(), Ok(None)))
    {
        thread::sleep(Duration::from_millis(20));
    }
    for child in &mut children {
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

// --- PostgreSQL --------------------------------------------------------------------------------

/// What the clean-up does to the private cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtExit {
    /// It was running before: make sure it runs again (a scenario may have stopped it).
    Start,
    /// We started it: stop it.
    Stop,
}

struct Postgres {
    at_exit: Option<AtExit>,
    closed: bool,
}

/// Held for every `scripts/postgres` command, so the clean-up waits for one under way.
static POSTGRES: Mutex<Postgres> = Mutex::new(Postgres {
    at_exit: None,
    closed: false,
});

/// Says what the clean-up must do to PostgreSQL.
pub fn postgres_at_exit(at_exit: AtExit) {
    lock(&POSTGRES).at_exit = Some(at_exit);
}

fn postgres_command(args: &[&str], database_url: Option<&str>) -> Command {
    let mut command = Command::new(root().join("scripts/postgres"));
    command.args(args).current_dir(root());
    // Without DATABASE_URL, scripts/postgres manages the private cluster instead of using one.
    match database_url {
        Some(url) => command.env("DATABASE_URL", url),
        None => command.env_remove("DATABASE_URL"),
    };
    command
}

/// `scripts/postgres <command>` (start, stop, restart, status); its stdout (the URL, for
/// start). `database_url` is passed on: with it, start only prints it back.
pub fn postgres(command: &str, database_url: Option<&str>) -> anyhow::Result<String> {
    let state = lock(&POSTGRES);
    ensure!(
        !state.closed,
        "stopping: scripts/postgres {command} not run"
    );
    let output = postgres_command(&[command], database_url)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running scripts/postgres {command}"))?;
    drop(state);
    ensure!(
        output.status.success(),
        "scripts/postgres {command} failed ({})",
        output.status
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Whether the private cluster is running (`scripts/postgres status`).
pub fn postgres_running() -> anyhow::Result<bool> {
    let _state = lock(&POSTGRES);
    let status = postgres_command(&["status"], None)
        .stdout(Stdio::null())
        .status()
        .context("running scripts/postgres status")?;
    match status.code() {
        Some(0) => Ok(true),
        Some(3) => Ok(false),
        _ => bail!("scripts/postgres status failed ({status})"),
    }
}

/// One SQL statement through psql on `database_url`; its output, unaligned and trimmed.
pub fn psql(database_url: &str, sql: &str) -> anyhow::Result<String> {
    let output = postgres_command(&["psql", "-X", "-q", "-At", "-c", sql], Some(database_url))
        .output()
        .context("running scripts/postgres psql")?;
    ensure!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Puts PostgreSQL back as found; nothing runs scripts/postgres after it.
fn restore_postgres() {
    let mut state = lock(&POSTGRES);
    state.closed = true;
    let Some(at_exit) = state.at_exit.take() else {
        return;
    };
    let command = match at_exit {
        AtExit::Start => "start",
        AtExit::Stop => "stop",
    };
    let status = postgres_command(&[command], None)
        .stdout(Stdio::null())
        .status();
    if !status.is_ok_and(|status| status.success()) {
        say(&format!("warning: scripts/postgres {command} failed"));
    }
}

// --- the clean-up ------------------------------------------------------------------------------

/// Held for the whole clean-up, so that a second caller returns only once it is done.
static FINISH: Mutex<()> = Mutex::new(());

/// Stops every child still running and puts PostgreSQL back as found. Idempotent; called at
/// the end of `main` and by the signal thread.
pub fn finish() {
    let _finishing = lock(&FINISH);
    stop_all_children();
    restore_postgres();
}

/// On SIGINT or SIGTERM (Ctrl-C, a CI timeout), cleans up and exits 128 + the signal, whatever
/// the main thread is doing.
pub fn clean_up_on_signals() -> anyhow::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
    thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            // Later signals are caught and ignored: the clean-up is bounded (5 s for the
            // children, then PostgreSQL), and cutting it short would leave them behind.
            if let Some(number) = signals.forever().next() {
                say(&format!("signal {number}: stopping what this run started"));
                finish();
                std::process::exit(128 + number);
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_by_exact_name() {
        let text = "Name:\ttcp-server\nVmHWM:\t   37888 kB\nVmRSS:\t   9216 kB\nThreads:\t262\n";
        assert_eq!(status_field(text, "VmHWM"), Some(37888));
        assert_eq!(status_field(text, "VmRSS"), Some(9216));
        assert_eq!(status_field(text, "Threads"), Some(262));
        assert_eq!(status_field(text, "Vm"), None);
        assert_eq!(status_field(text, "VmSwap"), None);
    }

    #[test]
    fn a_stop_wakes_a_waiting_thread() {
        let stop = Stop::new();
        let waiter = {
            let stop = stop.clone();
            thread::spawn(move || stop.wait(Duration::from_secs(60)))
        };
        stop.set();
        assert!(waiter.join().unwrap());
        assert!(!Stop::new().wait(Duration::from_millis(1)));
    }
}
