//! `cargo xtask bench overhead`: the cost of leaktrace on the page-fault path.
//!
//! A single-threaded workload maps, touches and unmaps memory in a loop (one
//! page fault and two RSS counter updates per page). Runs with nothing
//! attached, with leaktrace attached (tp_btf hooks, and the classic
//! tracepoint fallback), and with an equivalent bpftrace script if bpftrace
//! can be installed, are alternated round by round in this one process, and
//! the medians are compared. Ratios, not absolute numbers, are the result:
//! the machine is shared and noisy.
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use crate::step;

#[derive(Subcommand)]
pub enum Bench {
    /// Page-fault-heavy loop with and without leaktrace attached.
    Overhead {
        /// Alternation rounds.
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        /// Seconds per workload run.
        #[arg(long, default_value_t = 4.0)]
        secs: f64,
        /// MiB mapped, touched and unmapped per loop iteration.
        #[arg(long, default_value_t = 64)]
        mib: u32,
        /// Skip the bpftrace comparison.
        #[arg(long)]
        no_bpftrace: bool,
        /// Write one byte per page (`byte`, the pure fault path) or every
        /// byte of each page (`page`, closer to a program using its memory).
        #[arg(long, default_value = "byte", value_parser = ["byte", "page"])]
        touch: String,
    },
}

const BPFTRACE_SCRIPT: &str = "tracepoint:kmem:rss_stat { @rss[pid, args->member] = args->size; }
tracepoint:exceptions:page_fault_user { @faults[pid] = count(); }
END { clear(@rss); clear(@faults); }";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Baseline,
    Floor,
    Leaktrace,
    LeaktraceClassic,
    Bpftrace,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Baseline => "baseline (nothing attached)",
            Mode::Floor => "empty tp_btf programs (floor)",
            Mode::Leaktrace => "leaktrace (tp_btf)",
            Mode::LeaktraceClassic => "leaktrace (classic tracepoints)",
            Mode::Bpftrace => "bpftrace per-PID maps",
        }
    }
}

struct Tracer(Child);

impl Drop for Tracer {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a tracer and waits until its stdout shows it is attached.
fn start(cmd: &mut Command, ready: &str) -> Result<Tracer> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("{cmd:?}"))?;
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let tracer = Tracer(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line)? == 0 {
            bail!("{cmd:?} exited before it was ready");
        }
        if line.contains(ready) {
            break;
        }
        if Instant::now() > deadline {
            bail!("{cmd:?} not ready after 60 s");
        }
    }
    // Keep draining stdout so the tracer never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    Ok(tracer)
}

fn bpftrace() -> Option<PathBuf> {
    let have = |p: &str| Path::new(p).exists().then(|| PathBuf::from(p));
    if let Some(p) = have("/usr/bin/bpftrace") {
        return Some(p);
    }
    step("installing bpftrace (Debian package) for the comparison");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "bpftrace"])
        .status()
        .map(|s| s.success());
    if !matches!(ok, Ok(true)) {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "bpftrace"])
            .status();
    }
    have("/usr/bin/bpftrace")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn run(root: &Path, leaktrace: &Path, which: Bench) -> Result<()> {
    let Bench::Overhead {
        rounds,
        secs,
        mib,
        no_bpftrace,
        touch,
    } = which;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark attaches eBPF programs: run it as root");
    }
    let helper = root.join("target/release/lt-helper");
    let mut modes = vec![
        Mode::Baseline,
        Mode::Floor,
        Mode::Leaktrace,
        Mode::LeaktraceClassic,
    ];
    let bt = if no_bpftrace { None } else { bpftrace() };
    match &bt {
        Some(_) => modes.push(Mode::Bpftrace),
        None if !no_bpftrace => eprintln!("bpftrace not available: comparison skipped"),
        None => {}
    }
    step(&format!(
        "overhead: {rounds} rounds x {} modes x {secs} s, mmap/touch/munmap of {mib} MiB per iteration, \
         writing one {} per page",
        modes.len(),
        if touch == "page" { "page" } else { "byte" }
    ));
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for r in 0..rounds {
        // Rotate the order each round so no mode always runs first.
        for k in 0..modes.len() {
            let i = (k + r) % modes.len();
            let mode = modes[i];
            let _tracer = match mode {
                Mode::Baseline => None,
                Mode::Leaktrace => Some(start(
                    Command::new(leaktrace).args(["watch", "--json", "--interval", "1"]),
                    "\"type\":\"sample\"",
                )?),
                Mode::Floor => Some(start(
                    Command::new(leaktrace).args(["watch", "--json", "--interval", "1", "--bench-floor"]),
                    "\"type\":\"sample\"",
                )?),
                Mode::LeaktraceClassic => Some(start(
                    Command::new(leaktrace).args(["watch", "--json", "--interval", "1", "--force-classic"]),
                    "\"type\":\"sample\"",
                )?),
                Mode::Bpftrace => Some(start(
                    Command::new(bt.as_ref().unwrap()).args(["-e", BPFTRACE_SCRIPT]),
                    "Attaching",
                )?),
            };
            let out = Command::new(&helper)
                .args(["faults", &secs.to_string(), &mib.to_string(), &touch])
                .output()?;
            if !out.status.success() {
                bail!("workload failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            let pages: f64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .context("workload output")?;
            eprintln!("round {} {:<32} {:>12.0} faults/s", r + 1, mode.name(), pages);
            results[i].push(pages);
        }
    }
    let base = median(&mut results[0].clone());
    println!();
    println!(
        "{:<32} {:>15} {:>8} {:>9} {:>13}",
        "mode", "median faults/s", "ratio", "overhead", "paired ratio"
    );
    for (i, m) in modes.iter().enumerate() {
        let med = median(&mut results[i].clone());
        // Each run divided by the baseline of its own round, then the
        // median: less sensitive to the machine drifting between rounds.
        let mut paired: Vec<f64> = results[i].iter().zip(&results[0]).map(|(x, b)| x / b).collect();
        println!(
            "{:<32} {:>15.0} {:>8.3} {:>8.1}% {:>13.3}",
            m.name(),
            med,
            med / base,
            (1.0 - med / base) * 100.0,
            median(&mut paired)
        );
    }
    Ok(())
}
