//! `cargo xtask bench python`: what reading CPython frames at sampled
//! faults costs. A Python loop, 24 Python frames deep, maps, touches and
//! unmaps memory; it runs with nothing attached, as a suspect with the
//! frame walk, and as a suspect with `--no-python-frames`, alternated round
//! by round. Reports the loop's faults/s and, from `--bpf-stats`, the
//! kernel time per run of `fault_sample` (one run per sampled fault).
use std::{
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{stats::median, step};

const SCRIPT: &str = r#"import mmap, sys, time
SIZE = 32 << 20
def touch(m):
    for i in range(0, SIZE, 4096):
        m[i] = 1
def dig(n, secs):
    if n:
        return dig(n - 1, secs)
    pages, end = 0, time.time() + secs
    while time.time() < end:
        m = mmap.mmap(-1, SIZE)
        touch(m)
        m.close()
        pages += SIZE // 4096
    return pages
print("ready", flush=True)
sys.stdin.readline()
secs = float(sys.argv[1])
print(dig(24, secs) / secs, flush=True)
"#;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Baseline,
    Walk,
    NoWalk,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Baseline => "baseline (nothing attached)",
            Mode::Walk => "suspect, Python frames read",
            Mode::NoWalk => "suspect, --no-python-frames",
        }
    }
}

/// leaktrace record with metrics, the loop named as the suspect.
struct Tracer(Child);

impl Drop for Tracer {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let _ = self.0.wait();
    }
}

fn metric(addr: &str, name: &str) -> Option<f64> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find(|l| l.starts_with(name) && l.contains("fault_sample"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// One run: (faults/s of the loop, µs per fault_sample run if traced).
fn one(
    leaktrace: &Path,
    py: &Path,
    dir: &Path,
    mode: Mode,
    secs: f64,
    port: u16,
) -> Result<(f64, Option<f64>)> {
    let script = dir.join("bench_loop.py");
    std::fs::write(&script, SCRIPT)?;
    let mut w = Command::new(py)
        .arg(&script)
        .arg(secs.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting python")?;
    let mut out = BufReader::new(w.stdout.take().context("stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    let addr = format!("127.0.0.1:{port}");
    let tracer = match mode {
        Mode::Baseline => None,
        Mode::Walk | Mode::NoWalk => {
            let mut c = Command::new(leaktrace);
            c.args([
                "record",
                "--interval",
                "1",
                "--bpf-stats",
                "--metrics",
                &addr,
                "--dir",
            ])
            .arg(dir.join("rec"))
            .args(["--evidence-pid", &w.id().to_string(), "--cooldown", "3600"]);
            if mode == Mode::NoWalk {
                c.arg("--no-python-frames");
            }
            let t = Tracer(c.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?);
            let deadline = Instant::now() + Duration::from_secs(60);
            while metric(&addr, "leaktrace_bpf_runs_total").is_none() {
                if Instant::now() > deadline {
                    bail!("leaktrace's metrics never answered on {addr}");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Some(t)
        }
    };
    // The suspect's perf events (and the Python detection) start within a
    // tick or two: let that happen before timing.
    if tracer.is_some() {
        std::thread::sleep(Duration::from_millis(3000));
    }
    let before = (
        metric(&addr, "leaktrace_bpf_run_seconds_total"),
        metric(&addr, "leaktrace_bpf_runs_total"),
    );
    w.stdin.as_mut().context("stdin")?.write_all(b"go\n")?;
    line.clear();
    out.read_line(&mut line)?;
    let rate: f64 = line
        .trim()
        .parse()
        .with_context(|| format!("loop said {line:?}"))?;
    let after = (
        metric(&addr, "leaktrace_bpf_run_seconds_total"),
        metric(&addr, "leaktrace_bpf_runs_total"),
    );
    let _ = w.wait();
    drop(tracer);
    let per = match (before, after) {
        ((Some(t0), Some(n0)), (Some(t1), Some(n1))) if n1 > n0 => Some((t1 - t0) / (n1 - n0) * 1e6),
        _ => None,
    };
    Ok((rate, per))
}

pub fn run(root: &Path, leaktrace: &Path, rounds: usize, secs: f64) -> Result<()> {
    let py = Path::new("/usr/bin/python3");
    if !py.exists() {
        bail!("/usr/bin/python3 is needed (apt-get install python3)");
    }
    let dir = root.join("target/tmp/bench-python");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let modes = [Mode::Baseline, Mode::Walk, Mode::NoWalk];
    step(&format!(
        "python: {rounds} rounds x {} modes x {secs} s, a Python loop 24 frames deep mapping and touching 32 MiB",
        modes.len()
    ));
    let port = 19000 + (std::process::id() % 1000) as u16;
    let mut rates = vec![Vec::new(); modes.len()];
    let mut costs = vec![Vec::new(); modes.len()];
    for r in 0..rounds {
        for k in 0..modes.len() {
            let i = (k + r) % modes.len();
            let (rate, per) = one(leaktrace, py, &dir, modes[i], secs, port)?;
            eprintln!(
                "round {} {:<30} {:>10.0} faults/s {}",
                r + 1,
                modes[i].name(),
                rate,
                per.map(|p| format!("{p:.2} µs/sample")).unwrap_or_default()
            );
            rates[i].push(rate);
            costs[i].extend(per);
        }
    }
    let base = median(&mut rates[0].clone());
    println!(
        "\n{:<30} {:>15} {:>9} {:>16}",
        "mode", "median faults/s", "overhead", "µs per sample"
    );
    for (i, m) in modes.iter().enumerate() {
        let med = median(&mut rates[i].clone());
        let cost = if costs[i].is_empty() {
            "-".into()
        } else {
            format!("{:.2}", median(&mut costs[i].clone()))
        };
        println!(
            "{:<30} {:>15.0} {:>8.1}% {:>16}",
            m.name(),
            med,
            (1.0 - med / base) * 100.0,
            cost
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
