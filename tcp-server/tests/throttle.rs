//! The login throttle on the real binary under a flood: memory stays within the bound
//! docs/RELIABILITY.md states, the throttle keeps counting (it never lets an attempt through
//! uncounted), and a real account is protected afterwards exactly as before.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use proto::{ErrorCode, Request, Response, Secret};
use tcp_server::throttle::{Throttle, ThrottleConfig};

use crate::support::{Client, PEPPER, database_url, unique_name};

/// tcp-server's binary with its default throttle, the cheapest argon2 parameters (the flood's
/// cost is the throttle's, not the hash's) and its log discarded; killed on drop.
struct Binary {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Binary {
    fn start() -> Binary {
        let free = || {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        };
        let (addr, admin) = (free(), free());
        let child = Command::new(env!("CARGO_BIN_EXE_tcp-server"))
            .args(["serve", "--listen", &addr.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--argon2-memory-kib", "8", "--workers", "32"])
            // Every client of the test connects from 127.0.0.1.
            .args(["--max-connections-per-peer", "32"])
            .env("DATABASE_URL", database_url())
            .env("GATEHOUSE_PEPPER", std::str::from_utf8(PEPPER).unwrap())
            .env("GATEHOUSE_TOKEN_KEY", std::str::from_utf8(PEPPER).unwrap())
            .env(
                "GATEHOUSE_TIER_KEY",
                std::str::from_utf8(testkit::TIER_SECRET).unwrap(),
            )
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tcp-server");
        let binary = Binary { child, addr, admin };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "tcp-server did not start");
            thread::sleep(Duration::from_millis(50));
        }
        binary
    }

    /// A line of /proc/<pid>/status, in bytes (`VmRSS`, `VmHWM`).
    fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status
            .lines()
            .find(|line| line.starts_with(field))
            .unwrap_or_else(|| panic!("no {field} in /proc/pid/status"));
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap();
        kib * 1024
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn login(username: &str, password: &str, client: &str, device: Option<&Secret>) -> Request {
    Request::Login(proto::Login {
        username: username.to_owned(),
        password: Secret::new(password),
        client: Some(client.to_owned()),
        device: device.cloned(),
    })
}

fn code(response: &Response) -> Option<ErrorCode> {
    match response {
        Response::Error(error) => Some(error.code),
        _ => None,
    }
}

/// The guesser's 20 attempts: what each got.
fn twenty_guesses(client: &mut Client, victim: &str) -> Vec<Option<ErrorCode>> {
    (0..20)
        .map(|i| {
            code(&client.call(login(
                victim,
                "wrong horse",
                &format!("192.0.2.{}", 100 + i),
                None,
            )))
        })
        .collect()
}

#[test]
fn a_flood_of_failed_logins_over_half_a_million_usernames_changes_nothing_for_a_real_account() {
    const FLOOD: usize = 500_000;
    const THREADS: usize = 8;
    // Each address stays under its own limit (100), so every attempt reaches the account
    // table: 10,000 addresses of 50 failures each.
    const PER_ADDRESS: usize = 50;
    let server = Binary::start();
    let mut client = Client::connect(server.addr);

    // The owner and a control account, registered and logged in before the flood.
    let (victim, control) = (unique_name("victim"), unique_name("control"));
    for name in [&victim, &control] {
        client.call(Request::Register(proto::Register {
            username: name.clone(),
            password: Secret::new("correct horse"),
            nickname: None,
            client: Some(format!("192.0.2.{}", name.len())),
        }));
    }
    let Response::Login(owner) = client.call(login(&victim, "correct horse", "198.51.100.7", None))
    else {
        panic!("the owner could not log in");
    };
    // What 20 guesses get on an account nobody flooded: the yardstick.
    let before = twenty_guesses(&mut client, &control);
    assert_eq!(
        before
            .iter()
            .filter(|c| **c == Some(ErrorCode::InvalidCredentials))
            .count(),
        10,
        "{before:?}"
    );
    let rss_before = server.memory("VmRSS:");

    // The flood: made-up names that break the username rules, so each costs the server a
    // dummy hash and no query, as cheap as an attacker can make it.
    let started = Instant::now();
    thread::scope(|scope| {
        for t in 0..THREADS {
            let addr = server.addr;
            scope.spawn(move || {
                let mut flooder = Client::connect(addr);
                for i in (t..FLOOD).step_by(THREADS) {
                    let address = i / PER_ADDRESS;
                    let client = format!(
                        "10.{}.{}.{}",
                        address >> 16,
                        (address >> 8) & 255,
                        address & 255
                    );
                    let reply = flooder.call(login(&format!("flood!{i}"), "guess", &client, None));
                    assert_eq!(
                        code(&reply),
                        Some(ErrorCode::InvalidCredentials),
                        "attempt {i}"
                    );
                }
            });
        }
    });
    eprintln!(
        "{FLOOD} failed logins in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Every made-up name is still counted.
    let metrics = testkit::scrape(server.admin);
    let accounts = testkit::metric(
        &metrics,
        "gatehouse_tcp_throttle_entries",
        &[("table", "accounts")],
    )
    .expect("the throttle's fill is exported");
    assert!(accounts >= FLOOD as f64, "{accounts} accounts tracked");

    // The same 20 guesses on the flooded-over real account get exactly the same answers.
    let after = twenty_guesses(&mut client, &victim);
    assert_eq!(after, before, "after the flood");
    // Its owner, with the device token of the earlier login, logs in at once.
    let reply = client.call(login(
        &victim,
        "correct horse",
        "198.51.100.7",
        Some(&owner.device_token),
    ));
    assert!(matches!(reply, Response::Login(_)), "{reply:?}");

    // Memory: the growth stays within the tables' bound, allocated at start.
    let bound = Throttle::memory_bound(&ThrottleConfig::DEFAULT) as u64;
    let peak = server.memory("VmHWM:");
    eprintln!(
        "RSS {} MiB before the flood, peak {} MiB; the throttle's bound is {} MiB",
        rss_before >> 20,
        peak >> 20,
        bound >> 20
    );
    assert!(
        peak.saturating_sub(rss_before) <= bound,
        "grew {} MiB, over the bound of {} MiB",
        (peak - rss_before) >> 20,
        bound >> 20
    );
}
