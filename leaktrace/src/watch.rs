//! `leaktrace watch`: load, sample every interval, show.
use std::{
    collections::HashMap,
    io::Write,
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use tokio::io::unix::AsyncFd;

use crate::{
    evidence::{self, EvidenceEvent, TriggerArgs},
    kernel::{self, KernelMaps, Merged},
    loader::{self, Capability, ProbeResult},
    oom,
    record::EventLog,
    stacks::{self, StackMaps},
    tracker::{self, OomView, Procfs, Sample, TickInput, Tracker},
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
    /// oom_score_adj for leaktrace itself, so that it survives the OOMs it
    /// records (-1000: never chosen by the OOM killer).
    #[arg(long, default_value_t = -1000, value_parser = clap::value_parser!(i32).range(-1000..=1000), value_name = "N", allow_hyphen_values = true)]
    pub oom_score_adj: i32,
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
    /// Write evidence bundles under DIR/evidence when a trigger fires
    /// (without it, watch still reports the triggers).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub triggers: TriggerArgs,
}

#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// Where to write events.jsonl (rotated) and evidence/ bundles.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Seconds between samples.
    #[arg(long, default_value_t = 1.0, value_parser = parse_interval, value_name = "SECS")]
    pub interval: f64,
    /// Stop after this many seconds (default: until SIGTERM/SIGINT).
    #[arg(long, value_parser = parse_duration, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Seconds between compact summaries of the top growers in events.jsonl.
    #[arg(long, default_value_t = 60.0, value_parser = parse_interval, value_name = "SECS")]
    pub summary_interval: f64,
    /// Rotate events.jsonl when it would grow past this many bytes.
    #[arg(long, default_value_t = 64 << 20, value_name = "BYTES")]
    pub max_file_bytes: u64,
    /// Keep at most this many event files (events.jsonl and its rotations).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub max_files: usize,
    /// Keep evidence bundles under this many bytes in total (oldest go first).
    #[arg(long, default_value_t = 1 << 30, value_name = "BYTES")]
    pub max_evidence_bytes: u64,
    /// oom_score_adj for leaktrace itself (-1000: never chosen by the OOM killer).
    #[arg(long, default_value_t = -1000, value_parser = clap::value_parser!(i32).range(-1000..=1000), value_name = "N", allow_hyphen_values = true)]
    pub oom_score_adj: i32,
    /// Use classic tracepoints even where tp_btf works.
    #[arg(long)]
    pub force_classic: bool,
    /// Serve Prometheus/OpenMetrics text on this address, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Per-process metrics only for this many top growers (bounded cardinality).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub metrics_top: usize,
    #[command(flatten)]
    pub triggers: TriggerArgs,
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
    oom_score_adj: &'a OomScoreAdj,
}

/// What leaktrace asked for its own oom_score_adj and what it got.
#[derive(Serialize)]
struct OomScoreAdj {
    requested: i32,
    effective: Option<i32>,
    error: Option<String>,
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
    Record,
}

pub fn run(args: WatchArgs, verbose: u8) -> Result<()> {
    loader::check_privileges().map_err(|m| anyhow!(m))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args, None, verbose))
}

/// What `record` adds to the watch loop.
pub struct RecordSink {
    log: EventLog,
    summary_every: f64,
    max_evidence_bytes: u64,
    metrics: Option<(std::net::SocketAddr, usize)>,
}

pub fn record(args: RecordArgs, verbose: u8) -> Result<()> {
    loader::check_privileges().map_err(|m| anyhow!(m))?;
    let log = EventLog::open(&args.dir, args.max_file_bytes, args.max_files)
        .with_context(|| format!("cannot record into {}", args.dir.display()))?;
    let watch = WatchArgs {
        json: false,
        interval: args.interval,
        duration: args.duration,
        pids: Vec::new(),
        top: None,
        oom_score_adj: args.oom_score_adj,
        force_classic: args.force_classic,
        bench_floor: false,
        debug_map_pids: false,
        dir: Some(args.dir.clone()),
        triggers: args.triggers,
    };
    let sink = RecordSink {
        log,
        summary_every: args.summary_interval,
        max_evidence_bytes: args.max_evidence_bytes,
        metrics: args.metrics.map(|a| (a, args.metrics_top)),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(watch, Some(sink), verbose))
}

/// The compact periodic line of `record`.
#[derive(Serialize)]
struct SummaryLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ts_ms: u64,
    processes: Vec<SummaryRow<'a>>,
    groups: &'a [tracker::GroupRow],
    kernel: &'a tracker::KernelStatus,
    dropped_lines: u64,
}

#[derive(Serialize)]
struct SummaryRow<'a> {
    pid: u32,
    comm: &'a str,
    cgroup: &'a str,
    rss_bytes: u64,
    growth_bytes_per_sec: f64,
    growth_bytes_per_sec_long: f64,
    trend: trend::Trend,
}

/// How long a trigger waits for a new suspect's stacks to be sampled.
const STACK_WAIT: Duration = Duration::from_secs(1);

/// Triggers, suspects and bundles, run once per sample.
struct Evidence {
    args: TriggerArgs,
    dir: Option<PathBuf>,
    exec: Option<Vec<String>>,
    limits: evidence::Limits,
    rate: evidence::RateLimit,
    /// When each current suspect became one. A trigger for a suspect
    /// younger than STACK_WAIT waits for stack samples, unless it is urgent.
    sampled_since: HashMap<u32, Instant>,
    /// pid -> its latest bundle and when it was written. An incident links
    /// a bundle only if it is recent, so a reused pid never gets an old one.
    bundles: HashMap<u32, (String, Instant)>,
    ticks: u64,
}

impl Evidence {
    fn tick(
        &mut self,
        sample: &Sample,
        tracker: &Tracker,
        stacks: &mut Option<StackMaps>,
        max_bytes: Option<u64>,
    ) -> Vec<EvidenceEvent> {
        self.ticks += 1;
        let psi = crate::host::psi_full_avg10();
        let top = sample
            .processes
            .iter()
            .filter(|p| p.growth_bytes_per_sec > 0.0)
            .max_by(|a, b| a.growth_bytes_per_sec.total_cmp(&b.growth_bytes_per_sec))
            .map(|p| p.pid);
        let mut suspects: Vec<(f64, u32)> = Vec::new();
        let mut out = Vec::new();
        let now = Instant::now();
        for row in &sample.processes {
            let (limit, src) = self.limits.for_row(row);
            if evidence::is_suspect(row, limit, &self.args) {
                suspects.push((row.growth_bytes_per_sec, row.pid));
            }
            let Some(t) = evidence::check(row, limit, &src, &self.args, psi, top == Some(row.pid)) else {
                continue;
            };
            // Give a fresh suspect's stacks a moment to be sampled, unless
            // it is at its threshold already (it may be killed any moment)
            // or was named.
            let since = *self.sampled_since.entry(row.pid).or_insert(now);
            let urgent = t.reason == "rss-pct" || t.reason == "pid";
            if stacks.is_some() && !urgent && now.duration_since(since) < STACK_WAIT {
                suspects.push((f64::MAX, row.pid));
                continue;
            }
            if !self
                .rate
                .allow(row.pid, self.args.cooldown, self.args.max_bundles_per_hour, now)
            {
                continue;
            }
            let ts_ms = now_ms();
            let mut ev = EvidenceEvent {
                kind: "evidence",
                ts_ms,
                pid: row.pid,
                comm: row.comm.clone(),
                reason: t.reason,
                detail: t.detail.clone(),
                dir: None,
                error: None,
            };
            if let Some(root) = &self.dir {
                let stack_text = match stacks.as_ref() {
                    Some(s) => stacks::render(
                        row.pid,
                        &row.comm,
                        self.args.stack_period,
                        crate::procfs::page_size(),
                        &s.collect(row.pid),
                        20,
                    ),
                    None => "# stack sampling unavailable (page_fault_user hook not live)\n".into(),
                };
                let timeline = tracker.snapshot(row.pid).map(|s| s.history).unwrap_or_default();
                let input = evidence::BundleInput {
                    root,
                    ts_ms,
                    row,
                    trigger: &t,
                    limit,
                    limit_source: &src,
                    args: &self.args,
                    timeline,
                    stacks: stack_text,
                };
                match evidence::write_bundle(&input) {
                    Ok(d) => {
                        let ds = d.to_string_lossy().into_owned();
                        self.bundles.insert(row.pid, (ds.clone(), Instant::now()));
                        if self.bundles.len() > 4096 {
                            self.bundles
                                .retain(|_, (_, t)| t.elapsed() < Duration::from_secs(1800));
                        }
                        if let Some(argv) = &self.exec {
                            let argv = evidence::substitute(argv, row.pid, &row.comm, &d);
                            tokio::spawn(evidence::run_exec(argv, d.clone(), self.args.exec_timeout));
                        }
                        if let Some(m) = max_bytes {
                            evidence::enforce_budget(root, m);
                        }
                        ev.dir = Some(ds);
                    }
                    Err(e) => {
                        log::warn!("evidence bundle for pid {} not written: {e:#}", row.pid);
                        ev.error = Some(format!("{e:#}"));
                    }
                }
            }
            out.push(ev);
        }
        // Remember since when each suspect has been sampled.
        let current: std::collections::HashSet<u32> = suspects.iter().map(|s| s.1).collect();
        self.sampled_since.retain(|pid, _| current.contains(pid));
        for pid in &current {
            self.sampled_since.entry(*pid).or_insert(now);
        }
        if let Some(s) = stacks.as_mut() {
            suspects.sort_by(|a, b| b.0.total_cmp(&a.0));
            let want: HashMap<u32, u32> = suspects
                .into_iter()
                .take(64)
                .map(|(_, pid)| (pid, self.args.stack_period.max(1)))
                .collect();
            s.set_suspects(&want);
            if self.ticks.is_multiple_of(10) {
                let alive: std::collections::HashSet<u32> = sample.processes.iter().map(|p| p.pid).collect();
                s.forget_except(&|pid| alive.contains(&pid));
            }
        }
        out
    }
}

fn report_probes(probes: &[ProbeResult], caps: &[Capability], notes: &[String], verbose: u8) {
    for n in notes {
        log::info!("{n}");
    }
    for p in probes {
        match &p.live {
            Some(l) => match p.program {
                Some(prog) => log::info!("hook {:<7} live: {l} ({prog})", p.job),
                None => log::info!("hook {:<7} live: {l}", p.job),
            },
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

async fn run_async(args: WatchArgs, mut sink: Option<RecordSink>, verbose: u8) -> Result<()> {
    let exec = args
        .triggers
        .exec_on_trigger
        .as_deref()
        .map(evidence::split_template)
        .transpose()?;
    if let Some(d) = &args.dir {
        evidence::ensure_dir(d).with_context(|| format!("cannot write evidence into {}", d.display()))?;
    }
    let mode = if sink.is_some() {
        Mode::Record
    } else if args.json {
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
    let adj = set_oom_score_adj(args.oom_score_adj);
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
    let oom_ring = kernel::take_oom_events(&mut loaded.ebpf)?;
    let faults_live = loaded
        .probes
        .iter()
        .any(|p| p.job == "faults" && p.live.is_some());
    let mut stack_maps = if faults_live {
        StackMaps::take(&mut loaded.ebpf).ok()
    } else {
        None
    };
    let mut evidence = Evidence {
        args: args.triggers.clone(),
        dir: args.dir.clone(),
        exec,
        limits: Default::default(),
        rate: Default::default(),
        bundles: HashMap::new(),
        sampled_since: HashMap::new(),
        ticks: 0,
    };
    let mut last_summary: Option<Instant> = None;
    let metrics = match sink.as_ref().and_then(|r| r.metrics) {
        Some((addr, top)) => {
            let m = std::sync::Arc::new(std::sync::Mutex::new(crate::metrics::Metrics::new(top)));
            crate::metrics::serve(addr, m.clone()).await?;
            log::info!("metrics on http://{addr}/metrics");
            Some(m)
        }
        None => None,
    };
    // SAFETY: the RingBuf owns its map fd and keeps it open for as long as
    // the AsyncFd that owns it.
    let mut oom_fd = unsafe { AsyncFd::register_with_interest(oom_ring, tokio::io::Interest::READABLE) }
        .map_err(|_| anyhow!("registering the OOM ring buffer with tokio failed"))?;

    let stdout = std::io::stdout();
    if let Mode::Json | Mode::Record = mode {
        let line = StatusLine {
            kind: "status",
            ts_ms: now_ms(),
            version: env!("CARGO_PKG_VERSION"),
            ebpf_toolchain: loader::EBPF_TOOLCHAIN,
            hooks: &loaded.probes,
            capabilities: &loaded.capabilities,
            notes: &loaded.notes,
            oom_score_adj: &adj,
        };
        match sink.as_mut() {
            Some(r) => r.log.write_line(&serde_json::to_string(&line)?),
            None => {
                let mut out = stdout.lock();
                serde_json::to_writer(&mut out, &line)?;
                writeln!(out)?;
                out.flush()?;
            }
        }
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
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;

    let params = trend::Params::default();
    let mut tracker = Tracker::new(params);
    let mut assembler = oom::Assembler::new();
    let mut recent = oom::Recent::new(8);
    let start = Instant::now();
    let deadline = args.duration.map(|d| start + Duration::from_secs_f64(d));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(args.interval));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut snapshot: Vec<(u32, Merged)> = Vec::with_capacity(4096);
    let mut last_sample: Option<Sample> = None;

    enum Wake {
        Tick,
        Oom,
        Quit,
    }
    loop {
        let wake = tokio::select! {
            _ = ticker.tick() => Wake::Tick,
            r = oom_fd.readable_mut() => {
                let mut guard = r.context("waiting on the OOM ring buffer")?;
                let lost = maps.counters().oom_lost;
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    if let Some(rec) = oom::Record::decode(&item) {
                        assembler.handle(rec, &OomView(&tracker), lost);
                    }
                }
                guard.clear_ready();
                Wake::Oom
            }
            _ = sigint.recv() => Wake::Quit,
            _ = sigterm.recv() => Wake::Quit,
            _ = quit_rx.recv() => Wake::Quit,
        };
        if let Wake::Quit = wake {
            break;
        }
        if let Wake::Tick = wake {
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
            // Triggers look at every process, before --pid/--top filtering.
            let max_bytes = sink.as_ref().map(|r| r.max_evidence_bytes);
            if let (Some(m), Some(r)) = (metrics.as_ref(), sink.as_ref()) {
                if let Ok(m) = m.lock() {
                    m.sample(&sample, r.log.dropped_lines);
                }
            }
            for ev in evidence.tick(&sample, &tracker, &mut stack_maps, max_bytes) {
                if let (Some(m), Some(_)) = (metrics.as_ref(), ev.dir.as_ref()) {
                    if let Ok(m) = m.lock() {
                        m.bundle();
                    }
                }
                let ok = match mode {
                    Mode::Json => write_json(&stdout, &ev)?,
                    Mode::Text => write_line(
                        &stdout,
                        &format!(
                            "EVIDENCE: pid {} ({}): {} ({}) -> {}",
                            ev.pid,
                            ev.comm,
                            ev.reason,
                            ev.detail,
                            ev.dir.as_deref().unwrap_or("no --dir, not written")
                        ),
                    )?,
                    Mode::Tui => true,
                    Mode::Record => {
                        if let Some(r) = sink.as_mut() {
                            r.log.write_line(&serde_json::to_string(&ev)?);
                        }
                        true
                    }
                };
                if !ok {
                    return Ok(());
                }
            }
            if let Some(r) = sink.as_mut() {
                if last_summary.is_none_or(|t| t.elapsed().as_secs_f64() >= r.summary_every) {
                    last_summary = Some(Instant::now());
                    let line = SummaryLine {
                        kind: "summary",
                        ts_ms: sample.ts_ms,
                        processes: sample
                            .processes
                            .iter()
                            .take(10)
                            .map(|p| SummaryRow {
                                pid: p.pid,
                                comm: &p.comm,
                                cgroup: &p.cgroup,
                                rss_bytes: p.rss_bytes,
                                growth_bytes_per_sec: p.growth_bytes_per_sec,
                                growth_bytes_per_sec_long: p.growth_bytes_per_sec_long,
                                trend: p.trend,
                            })
                            .collect(),
                        groups: &sample.groups[..sample.groups.len().min(5)],
                        kernel: &sample.kernel,
                        dropped_lines: r.log.dropped_lines,
                    };
                    let text = serde_json::to_string(&line)?;
                    r.log.write_line(&text);
                }
            }
            tracker::filter(&mut sample, &args.pids, args.top);
            last_sample = Some(sample);
        }
        // Incidents first: an OOM kill is what the user most needs to see.
        let lost = maps.counters().oom_lost;
        for mut incident in assembler.poll(tracker::monotonic_ns(), &OomView(&tracker), lost) {
            incident.evidence_dir = incident
                .victim
                .as_ref()
                .and_then(|v| evidence.bundles.get(&v.pid))
                .filter(|(_, t)| t.elapsed() < Duration::from_secs(1800))
                .map(|(d, _)| d.clone());
            if let Some(m) = metrics.as_ref() {
                if let Ok(m) = m.lock() {
                    m.incident(&incident);
                }
            }
            let ok = match mode {
                Mode::Record => {
                    if let Some(r) = sink.as_mut() {
                        r.log.write_line(&serde_json::to_string(&incident)?);
                        if let Some(l) = incident.stall_line() {
                            r.log.write_line(&serde_json::to_string(&l)?);
                        }
                    }
                    true
                }
                Mode::Json => {
                    write_json(&stdout, &incident)?
                        && incident
                            .stall_line()
                            .map(|l| write_json(&stdout, &l))
                            .transpose()?
                            .unwrap_or(true)
                }
                Mode::Text => {
                    write_line(&stdout, &format!("OOM KILL: {}", incident.summary))?
                        && write_line(&stdout, &format!("OOM STALL: {}", incident.stall.diagnosis))?
                }
                Mode::Tui => true,
            };
            recent.push(incident);
            if !ok {
                return Ok(());
            }
        }
        if let (Wake::Tick, Some(sample)) = (&wake, last_sample.as_ref()) {
            let ok = match mode {
                Mode::Json => write_json(&stdout, sample)?,
                Mode::Text => write_text(&stdout, sample)?,
                Mode::Tui => {
                    if let Some(ui) = ui.as_mut() {
                        ui.draw(sample, &recent)?;
                    }
                    true
                }
                Mode::Record => true,
            };
            if !ok {
                break;
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    drop(ui);
    if let Some(r) = sink.as_mut() {
        r.log.flush();
    }
    // Programs are detached when `loaded.ebpf` is dropped.
    Ok(())
}

fn write_line(stdout: &std::io::Stdout, line: &str) -> Result<bool> {
    let mut out = stdout.lock();
    match writeln!(out, "{line}").and_then(|_| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

/// Returns false when stdout has been closed (e.g. `| head`): stop quietly.
fn write_json<T: Serialize>(stdout: &std::io::Stdout, sample: &T) -> Result<bool> {
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

/// Protects leaktrace from the OOM killer (it must survive the OOM it is
/// recording). Lowering it needs CAP_SYS_RESOURCE; failure is a warning,
/// tracing still works, and the status line says what is in effect.
fn set_oom_score_adj(v: i32) -> OomScoreAdj {
    let error = std::fs::write("/proc/self/oom_score_adj", v.to_string())
        .err()
        .map(|e| {
            log::warn!(
                "could not set leaktrace's oom_score_adj to {v} ({e}; lowering it needs CAP_SYS_RESOURCE): \
             leaktrace itself could be chosen by the OOM killer"
            );
            e.to_string()
        });
    let effective = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    OomScoreAdj {
        requested: v,
        effective,
        error,
    }
}
