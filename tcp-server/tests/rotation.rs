//! Rotating both secrets while logins run on two tcp-servers, step by step on one server then
//! the other, as docs/OPERATIONS.md tells an operator to: no login fails, hashes under the old pepper are re-hashed under the new one as their owners log in,
//! tokens of the old key work until it is retired and are refused after. Then the same through
//! the binary: SIGHUP reloads the files, a ring that does not load changes nothing, and
//! `tcp-server peppers` counts the accounts under each pepper.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use proto::{ErrorCode, Request, Response, Secret, Session};
use tcp_server::secrets::{self, Keyring, Secrets};

use crate::support::{Client, FAST, FreshDatabase, TestServer, context_for, eventually};

const PEPPER_0: &str = "the-old-pepper-0123456789";
const PEPPER_1: &str = "the-new-pepper-9876543210";
const TOKEN_KEY_0: &str = "the-old-token-key-0123456789";
const TOKEN_KEY_1: &str = "the-new-token-key-9876543210";
const PASSWORD: &str = "correct horse battery";

fn secrets(peppers: &str, token_keys: &str) -> Secrets {
    Secrets {
        peppers: Keyring::parse(peppers).unwrap(),
        token_keys: Keyring::parse(token_keys).unwrap(),
    }
}

fn register(client: &mut Client, name: &str) {
    let response = client.call(Request::Register(proto::Register {
        username: name.to_owned(),
        password: Secret::new(PASSWORD),
        nickname: None,
        client: None,
    }));
    assert!(matches!(response, Response::Register(_)), "{response:?}");
}

/// A login's session, or the error's code (`None`: an answer that is not an error).
fn login(client: &mut Client, name: &str) -> Result<Session, Option<ErrorCode>> {
    match client.call(Request::Login(proto::Login {
        username: name.to_owned(),
        password: Secret::new(PASSWORD),
        client: None,
        device: None,
    })) {
        Response::Login(session) => Ok(session),
        Response::Error(error) => Err(Some(error.code)),
        _ => Err(None),
    }
}

/// What reading the profile with `token` gets: the profile, or the error's code.
fn profile(client: &mut Client, token: &Secret) -> Result<(), Option<ErrorCode>> {
    match client.call(Request::GetProfile(proto::GetProfile {
        token: token.clone(),
    })) {
        Response::GetProfile(_) => Ok(()),
        Response::Error(error) => Err(Some(error.code)),
        _ => Err(None),
    }
}

#[test]
fn both_secrets_rotate_under_load_with_no_failed_login() {
    const ACCOUNTS: usize = 40;
    const LOADERS: usize = 4;
    let database = FreshDatabase::create();
    let ctxs: Vec<Arc<_>> = (0..2)
        .map(|_| {
            let ctx = Arc::new(context_for(&database.url, FAST, Duration::from_secs(3600)));
            ctx.set_secrets(&secrets(PEPPER_0, TOKEN_KEY_0));
            ctx
        })
        .collect();
    let servers: Vec<TestServer> = ctxs
        .iter()
        .map(|ctx| TestServer::start_shared(16, Arc::clone(ctx)))
        .collect();
    let mut client = servers[0].client();
    let names: Vec<String> = (0..ACCOUNTS).map(|i| format!("rotate{i}")).collect();
    for name in &names {
        register(&mut client, name);
    }
    // One account whose owner does not come back during the rotation.
    register(&mut client, "dormant");
    let old_tokens: Vec<Secret> = names
        .iter()
        .map(|name| login(&mut client, name).unwrap().token)
        .collect();
    assert_eq!(
        secrets::accounts_by_pepper(&database.url).unwrap(),
        [(Some(0), ACCOUNTS as i64 + 1)]
    );

    // The load: every loader logs in as each account in turn and reads the profile with the
    // new session on the other server, counting what each phase of the rotation got.
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let logins: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
    let failures = Arc::new(Mutex::new(Vec::new()));
    let loaders: Vec<_> = (0..LOADERS)
        .map(|loader| {
            let (names, phase, stop) = (names.clone(), phase.clone(), stop.clone());
            let (logins, failures) = (logins.clone(), failures.clone());
            let mut client = servers[loader % 2].client();
            let mut other = servers[(loader + 1) % 2].client();
            thread::spawn(move || {
                for name in names.iter().cycle().skip(loader * 7) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let now = phase.load(Ordering::Relaxed);
                    match login(&mut client, name) {
                        Ok(session) => match profile(&mut other, &session.token) {
                            Ok(()) => {
                                logins[now].fetch_add(1, Ordering::Relaxed);
                            }
                            Err(code) => failures.lock().unwrap().push(format!(
                                "phase {now}: {name}'s new session refused: {code:?}"
                            )),
                        },
                        Err(code) => failures
                            .lock()
                            .unwrap()
                            .push(format!("phase {now}: {name}'s login: {code:?}")),
                    }
                }
            })
        })
        .collect();
    let next_phase = |secrets: Secrets| {
        // Let each phase carry load before the next; each server takes the step in turn, with
        // load running between.
        thread::sleep(Duration::from_millis(300));
        for ctx in &ctxs {
            ctx.set_secrets(&secrets);
            thread::sleep(Duration::from_millis(150));
        }
        phase.fetch_add(1, Ordering::Relaxed);
    };

    // 1. The new keys join every ring; the old ones stay current.
    next_phase(secrets(
        &format!("0 {PEPPER_0} current\n1 {PEPPER_1}"),
        &format!("0 {TOKEN_KEY_0} current\n1 {TOKEN_KEY_1}"),
    ));
    // 2. The new keys become current.
    next_phase(secrets(
        &format!("0 {PEPPER_0}\n1 {PEPPER_1} current"),
        &format!("0 {TOKEN_KEY_0}\n1 {TOKEN_KEY_1} current"),
    ));
    // Every account that logs in moves to pepper 1; the dormant one stays on pepper 0.
    let mut counts = Vec::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            counts = secrets::accounts_by_pepper(&database.url).unwrap();
            counts == [(Some(0), 1), (Some(1), ACCOUNTS as i64)]
        }),
        "accounts by pepper: {counts:?}"
    );
    // Tokens of the old key still work while it is in the ring.
    for token in &old_tokens {
        assert_eq!(profile(&mut client, token), Ok(()));
    }
    // 3. The old keys are retired.
    next_phase(secrets(
        &format!("1 {PEPPER_1}"),
        &format!("1 {TOKEN_KEY_1}"),
    ));
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for loader in loaders {
        loader.join().unwrap();
    }

    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
    let per_phase: Vec<usize> = logins.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    assert!(
        per_phase.iter().all(|&n| n >= LOADERS),
        "logins per phase: {per_phase:?}"
    );
    // The old key's tokens are refused now, the new key's are not.
    for token in &old_tokens {
        assert_eq!(
            profile(&mut client, token),
            Err(Some(ErrorCode::Unauthorized))
        );
    }
    let session = login(&mut client, &names[0]).unwrap();
    assert_eq!(profile(&mut client, &session.token), Ok(()));
    // The account that never logged in is still under the retired pepper: this is what
    // `tcp-server peppers` is for, before a pepper leaves the ring.
    assert_eq!(
        login(&mut client, "dormant").err(),
        Some(Some(ErrorCode::InvalidCredentials))
    );
}

/// The real binary, serving keyrings from files in a directory of the test's own; killed on
/// drop.
struct Binary {
    child: Child,
    addr: std::net::SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Binary {
    fn start(database_url: &str, dir: &Path) -> Binary {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let admin = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tcp-server"))
            .args(["serve", "--listen", &addr.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--argon2-memory-kib", "8"])
            .arg("--pepper-file")
            .arg(dir.join("pepper"))
            .arg("--token-key-file")
            .arg(dir.join("token-key"))
            .env("DATABASE_URL", database_url)
            .env(
                "GATEHOUSE_TIER_KEY",
                std::str::from_utf8(testkit::TIER_SECRET).unwrap(),
            )
            .env_remove("GATEHOUSE_PEPPER")
            .env_remove("GATEHOUSE_TOKEN_KEY")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tcp-server");
        let log = Arc::new(Mutex::new(String::new()));
        let (stderr, sink) = (child.stderr.take().unwrap(), log.clone());
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let binary = Binary { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "tcp-server did not start: {}",
                binary.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
        binary
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGHUP, then waits for `line` in the log: the reload's outcome.
    fn hang_up_until_logged(&self, line: &str) {
        self.hang_up();
        assert!(
            eventually(Duration::from_secs(10), || self.log().contains(line)),
            "no {line:?} after SIGHUP: {}",
            self.log()
        );
    }

    /// SIGHUP, with kill(1): our code may not use `unsafe`, so not libc::kill.
    fn hang_up(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_secret(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn sighup_reloads_the_rings_from_their_files_and_the_report_counts_accounts_per_pepper() {
    let database = FreshDatabase::create();
    let dir = std::env::temp_dir().join(format!("gatehouse-rotation-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    write_secret(&dir.join("pepper"), &format!("{PEPPER_0}\n"));
    write_secret(&dir.join("token-key"), &format!("{TOKEN_KEY_0}\n"));
    let server = Binary::start(&database.url, &dir);
    let mut client = Client::connect(server.addr);
    register(&mut client, "reloaded");
    let old = login(&mut client, "reloaded").unwrap();
    let report = |pepper_file: &Path| {
        let output = Command::new(env!("CARGO_BIN_EXE_tcp-server"))
            .args(["peppers", "--database-url", &database.url])
            .arg("--pepper-file")
            .arg(pepper_file)
            .env_remove("GATEHOUSE_PEPPER")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let rows = |report: &str| -> Vec<Vec<String>> {
        report
            .lines()
            .skip(1)
            .map(|line| line.split_whitespace().map(str::to_owned).collect())
            .collect()
    };
    assert_eq!(rows(&report(&dir.join("pepper"))), [["0", "1", "current"]]);

    // A ring that does not load is refused, and the rings in use stay.
    write_secret(
        &dir.join("pepper"),
        &format!("0 {PEPPER_0}\n1 {PEPPER_1}\n"),
    );
    server.hang_up_until_logged("keeping the keyrings in use");
    login(&mut client, "reloaded").unwrap();

    // The new keys made current: a login re-hashes under pepper 1.
    write_secret(
        &dir.join("pepper"),
        &format!("0 {PEPPER_0}\n1 {PEPPER_1} current\n"),
    );
    write_secret(
        &dir.join("token-key"),
        &format!("0 {TOKEN_KEY_0}\n1 {TOKEN_KEY_1} current\n"),
    );
    server.hang_up_until_logged("reloaded the keyrings: peppers 0, 1 (current)");
    let new = login(&mut client, "reloaded").unwrap();
    assert_eq!(rows(&report(&dir.join("pepper"))), [["1", "1", "current"]]);
    assert_eq!(profile(&mut client, &old.token), Ok(()));

    // The old token key retired: its sessions end, the new key's do not.
    write_secret(&dir.join("token-key"), &format!("1 {TOKEN_KEY_1}\n"));
    server.hang_up();
    assert!(
        eventually(Duration::from_secs(10), || {
            profile(&mut client, &old.token) == Err(Some(ErrorCode::Unauthorized))
        }),
        "{}",
        server.log()
    );
    assert_eq!(profile(&mut client, &new.token), Ok(()));
    // New accounts get the current pepper; against a ring without it, the report says those
    // accounts could not log in.
    register(&mut client, "later");
    assert_eq!(rows(&report(&dir.join("pepper"))), [["1", "2", "current"]]);
    write_secret(&dir.join("old-pepper"), &format!("{PEPPER_0}\n"));
    let against_old = report(&dir.join("old-pepper"));
    assert_eq!(
        rows(&against_old)[0][..3],
        ["1", "2", "NO:"],
        "{against_old}"
    );
    fs::remove_dir_all(&dir).unwrap();
}
