//! xtask's command line, through the built binary: what it offers, and bad arguments refused
//! before anything is built or started.
//!
//! Being an integration test, this also makes `cargo test --workspace` build the xtask binary
//! with the tests' features; scripts/test runs that binary for the chaos scenarios rather than
//! `cargo xtask`, which would compile a second set of dependencies (disk and minutes of CI).

use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("the xtask binary runs")
}

#[test]
fn help_names_every_command() {
    let out = xtask(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["chaos", "bench", "ab"] {
        assert!(
            help.lines()
                .any(|line| line.trim_start().starts_with(command)),
            "{command} missing from:\n{help}"
        );
    }
}

#[test]
fn an_unknown_scenario_is_refused_before_anything_starts() {
    let out = xtask(&["chaos", "--debug", "--only", "1,99"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown scenarios: 99"), "{stderr}");
    // Refused while parsing: no build, no PostgreSQL, no server.
    assert!(!stderr.contains("building"), "{stderr}");
    assert!(!stderr.contains("scripts/postgres"), "{stderr}");
}

#[test]
fn a_dropped_scenario_says_where_it_went() {
    let out = xtask(&["chaos", "--debug", "--only", "7"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("covered by in-process tests"), "{stderr}");
}
