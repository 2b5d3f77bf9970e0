//! `cargo xtask bench scale`: leaktrace's own cost on a host with many
//! processes. N sleeping processes are started (`lt-helper idle N`), then
//! `leaktrace watch --json --top 20` runs next to them; after a settling
//! time its CPU time (utime + stime of all its threads, which includes the
//! kernel time of the iterator pass it reads) is measured over a fixed
//! wall time, and its peak RSS (VmHWM) is read at the end. Every N is run
//! once per round, rounds alternate, and the medians are printed, with the
//! cost per process: CPU µs per process per second, and the marginal CPU
//! and RSS of each step up in N.
//!
//! Settling: leaktrace reads every new process's metadata from /proc once
//! (cmdline, exe, cgroup), off the sampling thread; at 10,000 processes
//! that is 10,000 reads, a start-up cost. The measurement starts when those
//! are done (the sample's meta backlog is empty) and SETTLE_S has passed;
//! the start-up time and CPU are printed apart.
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{stats::median, step};

/// Seconds a new leaktrace runs before measuring, at least: the first reads
/// of every process's metadata are a start-up cost, not the steady state.
const SETTLE_S: f64 = 5.0;
/// At most this long for the metadata reads to finish.
const SETTLE_MAX_S: f64 = 120.0;

struct Idle(Child);

impl Drop for Idle {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as f64
    } else {
        100.0
    }
}

/// utime + stime of a process, in clock ticks (all its threads).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &s[s.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; f[0] is field 3.
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

fn vm_hwm_kib(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmHWM")
}

struct Run {
    cpu_pct: f64,
    peak_mib: f64,
    /// VmRSS at the end.
    rss_mib: f64,
    pass_ms: f64,
    out_bytes_per_sample: f64,
    /// Start-up: seconds until the metadata reads were done, and the CPU
    /// seconds spent until then.
    startup_s: f64,
    startup_cpu_s: f64,
    /// New processes per second on the host while measured (the machine
    /// is shared: other work starts processes leaktrace must follow).
    forks_per_s: f64,
}

/// Processes created since boot (/proc/stat).
fn forks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("processes ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn vm_rss_kib(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS")
}

/// Processes running now.
fn processes() -> usize {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Waits (up to 30 s) until the processes of an earlier N are gone.
fn wait_quiet(limit: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes() > limit && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn measure(leaktrace: &Path, path: &str, secs: f64) -> Result<Run> {
    let mut child = Command::new(leaktrace)
        .args([
            "watch",
            "--json",
            "--top",
            "20",
            "--interval",
            "1",
            "--data-path",
            path,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let out = BufReader::new(child.stdout.take().unwrap());
    let started = Instant::now();
    // pass_ms, the meta backlog and the bytes of each sample line.
    let seen: Arc<Mutex<Vec<(f64, usize, u64)>>> = Arc::default();
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            if !line.starts_with("{\"type\":\"sample\"") {
                continue;
            }
            let pass = line
                .split("\"pass_ms\":")
                .nth(1)
                .and_then(|r| r.split([',', '}']).next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN);
            let backlog = line
                .split("\"backlog\":")
                .nth(1)
                .and_then(|r| r.split([',', '}']).next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(u64::MAX);
            s2.lock().unwrap().push((pass, line.len() + 1, backlog));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().is_empty() {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("leaktrace gave no sample in 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs_f64(SETTLE_S));
    while seen.lock().unwrap().last().is_none_or(|s| s.2 != 0)
        && started.elapsed().as_secs_f64() < SETTLE_MAX_S
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let startup_s = started.elapsed().as_secs_f64();
    let n0 = seen.lock().unwrap().len();
    let (t0, w0) = (cpu_ticks(pid)?, Instant::now());
    let startup_cpu_s = t0 as f64 / clk_tck();
    let forks0 = forks();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (t1, wall) = (cpu_ticks(pid)?, w0.elapsed().as_secs_f64());
    let forks_per_s = (forks() - forks0) as f64 / wall;
    let peak = vm_hwm_kib(pid)? as f64 / 1024.0;
    let rss = vm_rss_kib(pid)? as f64 / 1024.0;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let _ = child.wait();
    let s = seen.lock().unwrap();
    let mut passes: Vec<f64> = s[n0..].iter().map(|p| p.0).filter(|v| v.is_finite()).collect();
    let bytes: Vec<f64> = s[n0..].iter().map(|p| p.1 as f64).collect();
    Ok(Run {
        cpu_pct: (t1 - t0) as f64 / clk_tck() / wall * 100.0,
        peak_mib: peak,
        rss_mib: rss,
        pass_ms: median(&mut passes),
        out_bytes_per_sample: bytes.iter().sum::<f64>() / bytes.len().max(1) as f64,
        startup_s,
        startup_cpu_s,
        forks_per_s,
    })
}

pub fn run(
    root: &Path,
    leaktrace: &Path,
    procs: &[usize],
    secs: f64,
    rounds: usize,
    compare_hooks: bool,
) -> Result<()> {
    let helper = root.join("target/release/lt-helper");
    let mut paths = vec!["iterator"];
    if compare_hooks {
        paths.push("hooks");
    }
    step(&format!(
        "scale: {rounds} rounds x N in {procs:?} x paths {paths:?}, {SETTLE_S} s settle + {secs} s measured each"
    ));
    let mut res: BTreeMap<(usize, &str), Vec<Run>> = BTreeMap::new();
    let base = processes();
    step(&format!(
        "{base} processes run before the benchmark's own; load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    ));
    for r in 0..rounds {
        for &n in procs {
            wait_quiet(base + 500);
            let pid_max: usize = std::fs::read_to_string("/proc/sys/kernel/pid_max")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(32_768);
            if processes() + n + 1000 > pid_max {
                eprintln!("round {} N={n}: skipped, pid_max {pid_max} leaves no room", r + 1);
                continue;
            }
            let mut c = Command::new(&helper)
                .args(["idle", &n.to_string(), "3600"])
                .stdout(Stdio::piped())
                .spawn()?;
            let mut line = String::new();
            BufReader::new(c.stdout.take().unwrap()).read_line(&mut line)?;
            let _idle = Idle(c);
            if line.trim() != "ready" {
                bail!("could not start {n} sleeping processes");
            }
            for &p in &paths {
                let run = measure(leaktrace, p, secs)?;
                eprintln!(
                    "round {} N={n:<6} {p:<9} cpu {:>6.2}% of a core, peak RSS {:>6.1} MiB (now {:.1}), pass {:>7.2} ms, {:>7.0} B/sample; start-up {:.0} s, {:.2} CPU s; host: {:.1} new processes/s",
                    r + 1,
                    run.cpu_pct,
                    run.peak_mib,
                    run.rss_mib,
                    run.pass_ms,
                    run.out_bytes_per_sample,
                    run.startup_s,
                    run.startup_cpu_s,
                    run.forks_per_s
                );
                res.entry((n, p)).or_default().push(run);
            }
        }
    }
    println!();
    println!(
        "{:>7} {:<9} {:>14} {:>15} {:>12} {:>14} {:>13} {:>12}",
        "procs",
        "path",
        "cpu % of core",
        "peak RSS (MiB)",
        "pass (ms)",
        "JSON B/sample",
        "cpu us/proc/s",
        "start-up (s)"
    );
    let mut curve: BTreeMap<&str, Vec<(usize, f64, f64)>> = BTreeMap::new();
    for ((n, p), runs) in &res {
        let m = |f: &dyn Fn(&Run) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
        let cpu = m(&|r| r.cpu_pct);
        let peak = m(&|r| r.peak_mib);
        println!(
            "{n:>7} {p:<9} {:>14.2} {:>15.1} {:>12.2} {:>14.0} {:>13.3} {:>12.0}",
            cpu,
            peak,
            m(&|r| r.pass_ms),
            m(&|r| r.out_bytes_per_sample),
            cpu / 100.0 * 1e6 / *n as f64,
            m(&|r| r.startup_s)
        );
        curve.entry(p).or_default().push((*n, cpu, peak));
    }
    // The cost of each step up in N: what one more process costs.
    for (p, pts) in &curve {
        for w in pts.windows(2) {
            let ((n0, c0, m0), (n1, c1, m1)) = (w[0], w[1]);
            let dn = (n1 - n0) as f64;
            println!(
                "{p}: {n0} -> {n1} processes: {:.3} us of CPU per process per second, {:.0} bytes of peak RSS per process",
                (c1 - c0) / 100.0 * 1e6 / dn,
                (m1 - m0) * 1048576.0 / dn
            );
        }
    }
    Ok(())
}
