//! `cargo xtask bench scale`: leaktrace's own cost on a host with many
//! processes. N sleeping processes are started (`lt-helper idle N`), then
//! `leaktrace watch --json --top 20` runs next to them; after a settling
//! time its CPU time (utime + stime of all its threads, which includes the
//! kernel time of the iterator pass it reads) is measured over a fixed
//! wall time, and its peak RSS (VmHWM) is read at the end. Every N is run
//! once per round, rounds alternate, and the medians are printed.
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

/// Seconds a new leaktrace runs before measuring: the first reads of every
/// process's metadata are a start-up cost, not the steady state.
const SETTLE_S: f64 = 5.0;

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
    pass_ms: f64,
    out_bytes_per_sample: f64,
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
    // pass_ms of each sample and the bytes of each sample line.
    let seen: Arc<Mutex<Vec<(f64, usize)>>> = Arc::default();
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
            s2.lock().unwrap().push((pass, line.len() + 1));
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
    let n0 = seen.lock().unwrap().len();
    let (t0, w0) = (cpu_ticks(pid)?, Instant::now());
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (t1, wall) = (cpu_ticks(pid)?, w0.elapsed().as_secs_f64());
    let peak = vm_hwm_kib(pid)? as f64 / 1024.0;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let _ = child.wait();
    let s = seen.lock().unwrap();
    let mut passes: Vec<f64> = s[n0..].iter().map(|p| p.0).filter(|v| v.is_finite()).collect();
    let bytes: Vec<f64> = s[n0..].iter().map(|p| p.1 as f64).collect();
    Ok(Run {
        cpu_pct: (t1 - t0) as f64 / clk_tck() / wall * 100.0,
        peak_mib: peak,
        pass_ms: median(&mut passes),
        out_bytes_per_sample: bytes.iter().sum::<f64>() / bytes.len().max(1) as f64,
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
    for r in 0..rounds {
        for &n in procs {
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
                    "round {} N={n:<6} {p:<9} cpu {:>6.2}% of a core, peak RSS {:>6.1} MiB, pass {:>7.2} ms, {:>7.0} B/sample",
                    r + 1,
                    run.cpu_pct,
                    run.peak_mib,
                    run.pass_ms,
                    run.out_bytes_per_sample
                );
                res.entry((n, p)).or_default().push(run);
            }
        }
    }
    println!();
    println!(
        "{:>7} {:<9} {:>14} {:>15} {:>12} {:>14}",
        "procs", "path", "cpu % of core", "peak RSS (MiB)", "pass (ms)", "JSON B/sample"
    );
    for ((n, p), runs) in &res {
        let m = |f: &dyn Fn(&Run) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
        println!(
            "{n:>7} {p:<9} {:>14.2} {:>15.1} {:>12.2} {:>14.0}",
            m(&|r| r.cpu_pct),
            m(&|r| r.peak_mib),
            m(&|r| r.pass_ms),
            m(&|r| r.out_bytes_per_sample)
        );
    }
    Ok(())
}
