//! A running process seen through `perf`: its context switches and system calls over a window
//! (`perf stat`, all threads included; the benchmark and `ab` divide them by the requests served
//! in the same window), and where its time goes (`perf record`, then `perf report`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, ensure};

/// The events counted, in `perf stat -e` syntax: every switch away from a thread (voluntary or
/// not), and every entry into a system call.
const EVENTS: &str = "context-switches,raw_syscalls:sys_enter";

/// A `perf stat` attached to one process for a fixed window.
pub struct Counting {
    child: Child,
    out: PathBuf,
}

/// What a window counted.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub context_switches: f64,
    pub syscalls: f64,
}

impl Counts {
    /// Per request, for `requests` served in the window.
    pub fn per(self, requests: f64) -> Counts {
        let requests = requests.max(1.0);
        Counts {
            context_switches: self.context_switches / requests,
            syscalls: self.syscalls / requests,
        }
    }
}

/// Starts counting `pid`'s events for `window`; the output goes to `out`.
pub fn start(pid: u32, window: Duration, out: &Path) -> anyhow::Result<Counting> {
    Ok(Counting {
        child: attach(&["stat", "-x", ",", "-e", EVENTS], out, pid, window)?,
        out: out.to_owned(),
    })
}

impl Counting {
    /// Waits for the window to end and reads the counts.
    pub fn finish(self) -> anyhow::Result<Counts> {
        let output = self.child.wait_with_output().context("waiting for perf")?;
        ensure!(
            output.status.success(),
            "perf stat failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let text = fs::read_to_string(&self.out)
            .with_context(|| format!("reading {}", self.out.display()))?;
        parse(&text).with_context(|| format!("no counts in {}", self.out.display()))
    }
}

/// Starts `perf <command>` attached to `pid` for `window`, writing to `out`.
fn attach(command: &[&str], out: &Path, pid: u32, window: Duration) -> anyhow::Result<Child> {
    Command::new("perf")
        .args(command)
        .arg("-o")
        .arg(out)
        .args(["-p", &pid.to_string(), "--", "sleep"])
        .arg(format!("{:.3}", window.as_secs_f64()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running perf (Debian package linux-perf)")
}

/// A `perf record` of one process's call stacks for a fixed window.
pub struct Recording {
    child: Child,
    data: PathBuf,
}

/// Samples `pid`'s stacks (all threads, 499 a second: off the timer's beat) for `window`
/// into `data`.
pub fn record(pid: u32, window: Duration, data: &Path) -> anyhow::Result<Recording> {
    Ok(Recording {
        child: attach(&["record", "-g", "-F", "499"], data, pid, window)?,
        data: data.to_owned(),
    })
}

impl Recording {
    /// Waits for the window to end and writes perf's flat report (self time by symbol, every
    /// symbol above half a percent) to `report`.
    pub fn finish(self, report: &Path) -> anyhow::Result<()> {
        let output = self.child.wait_with_output().context("waiting for perf")?;
        ensure!(
            output.status.success(),
            "perf record failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let output = Command::new("perf")
            .args(["report", "--stdio", "--no-children", "-g", "none"])
            .args(["--sort", "dso,symbol", "--percent-limit", "0.5", "-i"])
            .arg(&self.data)
            .output()
            .context("running perf report")?;
        ensure!(
            output.status.success(),
            "perf report failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        fs::write(report, &output.stdout).with_context(|| format!("writing {}", report.display()))
    }
}

/// Reads `perf stat -x,` output: `value,unit,event,...` lines. `<not counted>` (the process
/// never ran in the window) is 0; `<not supported>` (no such event here) is refused.
fn parse(text: &str) -> Option<Counts> {
    let count = |event: &str| -> Option<f64> {
        text.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.get(2) != Some(&event) {
                return None;
            }
            match fields[0] {
                "<not counted>" => Some(0.0),
                value => value.parse().ok(),
            }
        })
    };
    Some(Counts {
        context_switches: count("context-switches")?,
        syscalls: count("raw_syscalls:sys_enter")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_stat_csv_is_read() {
        let text = "# started on Sat Nov 28 08:30:00 2026\n\n\
                    41234,,context-switches,10003456789,100.00,,\n\
                    512345,,raw_syscalls:sys_enter,10003456789,100.00,,\n";
        assert_eq!(
            parse(text),
            Some(Counts {
                context_switches: 41234.0,
                syscalls: 512345.0
            })
        );
        let missing = "<not supported>,,raw_syscalls:sys_enter,0,100.00,,\n\
                       41234,,context-switches,10003456789,100.00,,\n";
        assert_eq!(parse(missing), None);
        let idle = "<not counted>,,context-switches,0,100.00,,\n\
                    <not counted>,,raw_syscalls:sys_enter,0,100.00,,\n";
        assert_eq!(parse(idle), Some(Counts::default()));
    }
}
