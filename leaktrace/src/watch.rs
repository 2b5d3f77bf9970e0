//! `leaktrace watch`: load, sample every interval, show.
use std::{
    io::Write,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use tokio::io::unix::AsyncFd;

use crate::{
    kernel::{KernelMaps, Merged},
    loader::{self, Capability, ProbeResult},
    tracker::{self, Procfs, Sample, TickInput, Tracker},
    trend, tui,
};

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// Write one JSON object per line to stdout instead of the live view.
    #[arg(long)]
    pub json: bool,
    /// Seconds between samples (0.1 to 3600).
    #[arg(long, default_value_t = 1.0, value_parser = parse_interval, value_name = "SECS")]
    pub interval: f64,
    /// Stop after this many seconds (default: run until interrupted).
    #[arg(long, value_parser = parse_duration, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Only show this process (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Only show the N fastest-growing processes and the N largest groups.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Use classic tracepoints even where tp_btf works (to test or compare
    /// the fallback path).
    #[arg(long)]
    pub force_classic: bool,
    /// Attach empty programs instead (benchmark floor; shows no data).
    #[arg(long, hide = true)]
    pub bench_floor: bool,
    /// Add the kernel map's keys to each JSON sample (for tests and debugging).
    #[arg(long, hide = true)]
    pub debug_map_pids: bool,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(0.1..=3600.0).contains(&v) {
        return Err("the interval must be between 0.1 and 3600 seconds".into());
    }
    Ok(v)
}

fn parse_duration(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(v > 0.0 && v.is_finite()) {
        return Err("the duration must be a positive number of seconds".into());
    }
    Ok(v)
}

#[derive(Serialize)]
struct StatusLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ts_ms: u64,
    version: &'static str,
    ebpf_toolchain: &'static str,
    hooks: &'a [ProbeResult],
    capabilities: &'a [Capability],
    notes: &'a [String],
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

enum Mode {
    Json,
    Tui,
    Text,
}

pub fn run(args: WatchArgs, verbose: u8) -> Result<()> {
    loader::check_privileges().map_err(|m| anyhow!(m))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args, verbose))
}

fn report_probes(probes: &[ProbeResult], caps: &[Capability], notes: &[String], verbose: u8) {
    for n in notes {
        log::info!("{n}");
    }
    for p in probes {
        match &p.live {
            Some(l) => log::info!("hook {:<7} live: {l} ({})", p.job, p.program.unwrap_or("")),
            None => log::warn!("hook {:<7} not available; leaktrace continues without it", p.job),
        }
        for s in &p.skipped {
            if p.live.is_some() {
                log::info!("hook {:<7} skipped {}: {}", p.job, s.program, s.reason);
            } else {
                log::warn!("hook {:<7} skipped {}: {}", p.job, s.program, s.reason);
            }
        }
    }
    if verbose > 0 {
        for c in caps {
            log::info!(
                "kernel {:<7} {}: {}",
                c.name,
                if c.available { "available" } else { "unavailable" },
                c.detail
            );
        }
        log::info!("eBPF object built with {}", loader::EBPF_TOOLCHAIN);
    }
}

async fn run_async(args: WatchArgs, verbose: u8) -> Result<()> {
    let mode = if args.json {
        Mode::Json
    } else if tui::is_terminal() {
        Mode::Tui
    } else {
        Mode::Text
    };
    let choice = if args.bench_floor {
        loader::HookChoice::BenchFloor
    } else if args.force_classic {
        loader::HookChoice::ForceClassic
    } else {
        loader::HookChoice::Best
    };
    let mut loaded = loader::load(verbose, choice)?;
    report_probes(&loaded.probes, &loaded.capabilities, &loaded.notes, verbose);

    // Kernel-side log records (aya-log), forwarded to our logger.
    match aya_log::EbpfLogger::init(&mut loaded.ebpf) {
        Ok(logger) => {
            // SAFETY: the logger owns its ring-buffer map fd and keeps it open
            // for as long as the AsyncFd (which owns the logger) exists.
            let mut fd = unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
                .map_err(|_| anyhow!("registering the kernel log ring buffer with tokio failed"))?;
            tokio::spawn(async move {
                loop {
                    let Ok(mut guard) = fd.readable_mut().await else {
                        break;
                    };
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            });
        }
        Err(e) => log::debug!("kernel log forwarding off: {e}"),
    }
    let mut maps = KernelMaps::take(&mut loaded.ebpf)?;

    let stdout = std::io::stdout();
    if let Mode::Json = mode {
        let line = StatusLine {
            kind: "status",
            ts_ms: now_ms(),
            version: env!("CARGO_PKG_VERSION"),
            ebpf_toolchain: loader::EBPF_TOOLCHAIN,
            hooks: &loaded.probes,
            capabilities: &loaded.capabilities,
            notes: &loaded.notes,
        };
        let mut out = stdout.lock();
        serde_json::to_writer(&mut out, &line)?;
        writeln!(out)?;
        out.flush()?;
    }

    let mut ui = match mode {
        Mode::Tui => Some(tui::Tui::start(&loaded.probes).context("starting the terminal view")?),
        _ => None,
    };
    let (quit_tx, mut quit_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    if ui.is_some() {
        tui::spawn_input_thread(quit_tx.clone());
    }
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;

    let params = trend::Params::default();
    let mut tracker = Tracker::new(params);
    let start = Instant::now();
    let deadline = args.duration.map(|d| start + Duration::from_secs_f64(d));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(args.interval));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut snapshot: Vec<(u32, Merged)> = Vec::with_capacity(4096);

    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = quit_rx.recv() => break,
        }
        maps.snapshot(&mut snapshot);
        let input = TickInput {
            t: start.elapsed().as_secs_f64(),
            ts_ms: now_ms(),
            kernel: &snapshot,
            counters: maps.counters(),
        };
        let (mut sample, stale) = tracker.tick(&Procfs, &input);
        for pid in stale {
            maps.remove(pid);
        }
        if args.debug_map_pids {
            let mut keys = maps.keys();
            keys.sort_unstable();
            sample.kernel.map_pids = Some(keys);
        }
        tracker::filter(&mut sample, &args.pids, args.top);
        match mode {
            Mode::Json => {
                if !write_json(&stdout, &sample)? {
                    break;
                }
            }
            Mode::Text => {
                if !write_text(&stdout, &sample)? {
                    break;
                }
            }
            Mode::Tui => {
                if let Some(ui) = ui.as_mut() {
                    ui.draw(&sample)?;
                }
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    drop(ui);
    // Programs are detached when `loaded.ebpf` is dropped.
    Ok(())
}

/// Returns false when stdout has been closed (e.g. `| head`): stop quietly.
fn write_json(stdout: &std::io::Stdout, sample: &Sample) -> Result<bool> {
    let mut out = stdout.lock();
    let r = serde_json::to_writer(&mut out, sample)
        .map_err(std::io::Error::from)
        .and_then(|_| writeln!(out))
        .and_then(|_| out.flush());
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

fn write_text(stdout: &std::io::Stdout, sample: &Sample) -> Result<bool> {
    let mut s = String::new();
    tui::render_text(sample, 25, &mut s);
    let mut out = stdout.lock();
    match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}
