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

use crate::{stats::median, step};

#[derive(Subcommand)]
pub enum Bench {
    /// Page-fault-heavy loop with and without leaktrace attached: the
    /// default path, the same with the loop as a suspect (its faults
    /// sampled with stacks), the per-fault hook path, its floor (empty
    /// programs), the classic fallback and bpftrace, alternated round by
    /// round; prints faults/s and paired ratios.
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
    /// What reading CPython frames at a suspect's sampled faults costs: a
    /// Python mmap/touch loop 24 frames deep, with nothing attached, as a
    /// suspect with the frame walk and with --no-python-frames; faults/s
    /// and the kernel time per sampled fault (--bpf-stats).
    Python {
        /// Alternation rounds.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Seconds per run.
        #[arg(long, default_value_t = 4.0)]
        secs: f64,
    },
    /// leaktrace's own cost on a host with many processes: CPU share of one
    /// core and peak RSS of `watch --json --top 20`, with N sleeping
    /// processes, for each N, rounds alternated.
    Scale {
        /// Numbers of sleeping processes (repeatable).
        #[arg(long = "procs", default_values_t = [1000usize, 10000, 20000])]
        procs: Vec<usize>,
        /// Seconds measured per run.
        #[arg(long, default_value_t = 20.0)]
        secs: f64,
        /// Rounds (each runs every N once).
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Also measure the per-fault hook path (it reads /proc every interval).
        #[arg(long)]
        compare_hooks: bool,
    },
}

const BPFTRACE_SCRIPT: &str = "tracepoint:kmem:rss_stat { @rss[pid, args->member] = args->size; }
tracepoint:exceptions:page_fault_user { @faults[pid] = count(); }
END { clear(@rss); clear(@faults); }";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Baseline,
    Leaktrace,
    Suspect,
    PerFault,
    Floor,
    Classic,
    Bpftrace,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Baseline => "baseline (nothing attached)",
            Mode::Leaktrace => "leaktrace default (iterator)",
            Mode::Suspect => "loop is a suspect (stacks 1/16)",
            Mode::PerFault => "per-fault hooks (tp_btf)",
            Mode::Floor => "per-fault floor (empty progs)",
            Mode::Classic => "per-fault hooks (classic tp)",
            Mode::Bpftrace => "bpftrace per-PID maps",
        }
    }

    /// leaktrace's arguments for this mode, if it runs leaktrace.
    fn args(self, workload: u32) -> Option<Vec<String>> {
        let base = ["watch", "--json", "--top", "5", "--interval", "1"];
        let extra: &[&str] = match self {
            Mode::Leaktrace => &[],
            Mode::Suspect => &["--evidence-pid"],
            Mode::PerFault => &["--data-path", "hooks"],
            Mode::Floor => &["--data-path", "hooks", "--bench-floor"],
            Mode::Classic => &["--data-path", "hooks", "--force-classic"],
            Mode::Baseline | Mode::Bpftrace => return None,
        };
        let mut v: Vec<String> = base.iter().chain(extra).map(|s| s.to_string()).collect();
        if self == Mode::Suspect {
            v.push(workload.to_string());
        }
        Some(v)
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

pub fn run(root: &Path, leaktrace: &Path, which: Bench) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark attaches eBPF programs: run it as root");
    }
    match which {
        Bench::Overhead {
            rounds,
            secs,
            mib,
            no_bpftrace,
            touch,
        } => overhead(root, leaktrace, rounds, secs, mib, no_bpftrace, &touch),
        Bench::Scale {
            procs,
            secs,
            rounds,
            compare_hooks,
        } => crate::scale::run(root, leaktrace, &procs, secs, rounds, compare_hooks),
        Bench::Python { rounds, secs } => crate::bench_python::run(root, leaktrace, rounds, secs),
    }
}

/// The workload, started and waiting for "go" on stdin.
struct Workload(Child);

impl Workload {
    fn start(
        helper: &Path,
        secs: f64,
        mib: u32,
        touch: &str,
    ) -> Result<(Self, BufReader<std::process::ChildStdout>)> {
        let mut c = Command::new(helper)
            .args(["faults", &secs.to_string(), &mib.to_string(), touch, "wait"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut out = BufReader::new(c.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("workload did not start: {line:?}");
        }
        Ok((Self(c), out))
    }

    fn go(&mut self, out: &mut BufReader<std::process::ChildStdout>) -> Result<f64> {
        use std::io::Write;
        let stdin = self.0.stdin.as_mut().context("workload stdin")?;
        writeln!(stdin, "go")?;
        let mut line = String::new();
        out.read_line(&mut line)?;
        let st = self.0.wait()?;
        if !st.success() {
            bail!("workload failed ({st})");
        }
        line.trim().parse().context("workload output")
    }
}

#[allow(clippy::too_many_arguments)]
fn overhead(
    root: &Path,
    leaktrace: &Path,
    rounds: usize,
    secs: f64,
    mib: u32,
    no_bpftrace: bool,
    touch: &str,
) -> Result<()> {
    let helper = root.join("target/release/lt-helper");
    let mut modes = vec![
        Mode::Baseline,
        Mode::Leaktrace,
        Mode::Suspect,
        Mode::PerFault,
        Mode::Floor,
        Mode::Classic,
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
            let (mut w, mut out) = Workload::start(&helper, secs, mib, touch)?;
            let _tracer = match (mode.args(w.0.id()), mode) {
                (Some(args), _) => Some(start(Command::new(leaktrace).args(&args), "\"type\":\"sample\"")?),
                (None, Mode::Bpftrace) => Some(start(
                    Command::new(bt.as_ref().unwrap()).args(["-e", BPFTRACE_SCRIPT]),
                    "Attaching",
                )?),
                (None, _) => None,
            };
            if mode == Mode::Suspect {
                // The loop becomes a suspect at the first sample and its
                // perf events open then: let that happen before timing.
                std::thread::sleep(Duration::from_millis(2500));
            }
            let pages = w.go(&mut out)?;
            eprintln!("round {} {:<32} {:>12.0} faults/s", r + 1, mode.name(), pages);
            results[i].push(pages);
        }
    }
    let base = median(&mut results[0].clone());
    println!();
    println!(
        "{:<32} {:>15} {:>8} {:>9} {:>13} {:>9}",
        "mode", "median faults/s", "ratio", "overhead", "paired ratio", "paired %"
    );
    for (i, m) in modes.iter().enumerate() {
        let med = median(&mut results[i].clone());
        // Each run divided by the baseline of its own round, then the
        // median: less sensitive to the machine drifting between rounds.
        let mut paired: Vec<f64> = results[i].iter().zip(&results[0]).map(|(x, b)| x / b).collect();
        let p = median(&mut paired);
        println!(
            "{:<32} {:>15.0} {:>8.3} {:>8.1}% {:>13.3} {:>8.1}%",
            m.name(),
            med,
            med / base,
            (1.0 - med / base) * 100.0,
            p,
            (1.0 - p) * 100.0
        );
    }
    Ok(())
}
