//! The data path from the kernel to the sinks, one way:
//!
//! ```text
//! kernel: task iterator ─► sampling thread ─► model (tracker) ─► Fanout ─► sinks (each on its thread)
//!         exits ring ─────┘        │  └─► triggers ─► evidence worker ─┘
//!         /proc readers ◄──────────┘
//!         OOM rings ──────► OOM thread ─► incidents ───────────────┘
//! ```
//!
//! The main thread only waits for SIGINT/SIGTERM (and serves metrics), so
//! a signal is honoured within `STOP_GRACE` whatever else is stuck: the
//! threads are asked to stop, the sinks get that long to flush, and then
//! leaktrace exits, leaving any thread stuck in a read behind.
pub mod evidence;
pub mod ledger;
pub mod oom;
pub mod python;
pub mod sampling;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{atomic::AtomicBool, mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use tokio::io::unix::AsyncFd;

use crate::{
    evidence::{bundle, exec, TriggerArgs},
    kernel::{
        counters::CountersMap,
        exits::ExitsReader,
        hooks::HooksSampler,
        loader::{self, LoadOptions, Loaded},
        oom_ring::OomRings,
        stacks::Stacks,
        IterSampler, Sampler,
    },
    model::{tracker::Tracker, trend},
    sinks::{
        eventlog::EventLogSink, json::JsonSink, metrics::MetricsSink, text::TextSink, tui::TuiSink, Event,
        Fanout, OomScoreAdj, Sink, StatusLine, View,
    },
};

/// How long the sinks get to flush after a stop request. Detaching the
/// programs takes about 100 ms more (in parallel; one after another each
/// waits for an RCU grace period, about 900 ms for all of them).
pub const STOP_GRACE: Duration = Duration::from_millis(1000);

pub enum Output {
    Json,
    Text,
    Tui,
    /// `record`: the event log, and metrics if asked.
    Record {
        log: crate::sinks::eventlog::EventLog,
        summary_every: f64,
        metrics: Option<(SocketAddr, usize)>,
        /// Program run-time stats for the metrics (--bpf-stats).
        bpf_stats: bool,
        /// Also JSON lines on stdout.
        json: bool,
    },
}

pub struct Config {
    pub output: Output,
    pub view: View,
    pub interval: f64,
    pub duration: Option<f64>,
    pub triggers: TriggerArgs,
    /// Where bundles go (watch --dir, record --dir).
    pub dir: Option<PathBuf>,
    pub max_evidence_bytes: Option<u64>,
    pub oom_score_adj: i32,
    pub load: LoadOptions,
    /// Add the kernel map's keys to each sample (tests).
    pub debug_map_pids: bool,
    /// Rows each sample carries for the sinks (None: every process).
    pub rows: Option<usize>,
    /// --unit/--container/--cgroup/--comm.
    pub filter: crate::model::filter::FilterArgs,
    /// --exec-on-oom's template (needs `dir`).
    pub exec_on_oom: Option<String>,
}

pub fn run(cfg: Config) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let res = rt.block_on(run_async(cfg));
    // Every exit path (stop, SIGTERM, an error) ends the hooks: no command
    // outlives the recorder (a kill -9 is PR_SET_PDEATHSIG's, exec.rs).
    crate::evidence::hook_pool::kill_all();
    report_losses();
    res
}

/// One line at exit when something was lost: commands dropped, output
/// writes that failed.
fn report_losses() {
    let (started, peak, dropped) = crate::evidence::hook_pool::counts();
    if dropped > 0 {
        log::warn!(
            "exec hooks: {started} command(s) run, at most {peak} at once, {dropped} dropped \
             (limit exec_queue; see exec.json and lost_events_total{{kind=\"hooks\"}})"
        );
    }
    let lost = crate::losses::output_write_failures();
    if lost > 0 {
        log::warn!(
            "outputs: {lost} write(s) failed (event lines, bundles, incident or exec files); \
             lost, counted in lost_events_total{{kind=\"outputs\"}}"
        );
    }
}

async fn run_async(mut cfg: Config) -> Result<()> {
    let exec = cfg
        .triggers
        .exec_on_trigger
        .as_deref()
        .map(exec::split_template)
        .transpose()?;
    let exec_oom = cfg
        .exec_on_oom
        .as_deref()
        .map(exec::split_template)
        .transpose()
        .context("--exec-on-oom")?;
    if let Some(d) = &cfg.dir {
        let root = crate::outdir::OutDir::open(d)
            .with_context(|| format!("cannot write evidence into {}", d.display()))?;
        let n = bundle::clean_temp_bundles(&root);
        if n > 0 {
            log::warn!(
                "removed {n} half-written evidence bundle(s) left by an earlier crash in {}",
                d.display()
            );
        }
    }
    if exec.is_some() || exec_oom.is_some() {
        // Made now, not at the first hook: it also empties the hooks'
        // cgroups that a kill -9'd recorder left, and says where hooks run.
        // (Outside log::info!, whose arguments are not evaluated below -v.)
        let sandbox = crate::evidence::hook_sandbox::get();
        log::info!("exec hooks run in: {}", sandbox.describe());
    }
    set_bounds(&cfg);
    raise_nofile();
    let adj = set_oom_score_adj(cfg.oom_score_adj);
    crate::notify::status("loading and attaching the eBPF programs");
    let mut loaded = loader::load(cfg.load)?;
    report_probes(&loaded, cfg.load.verbose);
    forward_kernel_logs(&mut loaded);
    let parts = open_kernel(&mut loaded)?;

    let stop = Arc::new(AtomicBool::new(false));
    // The sinks take the output; the threads take the rest of the config.
    let output = std::mem::replace(&mut cfg.output, Output::Text);
    // Run-time stats stay on while this fd is open (until leaktrace exits).
    let _stats = matches!(output, Output::Record { bpf_stats: true, .. })
        .then(|| {
            aya::sys::enable_stats(aya::sys::Stats::RunTime)
                .map_err(|e| log::warn!("--bpf-stats: cannot turn on BPF run-time stats: {e}"))
                .ok()
        })
        .flatten();
    let (mut sinks, metrics) = build_sinks(output, &cfg.view, &loaded)?;
    if let (Some(argv), Some(d)) = (exec_oom, &cfg.dir) {
        sinks.push(Box::new(crate::sinks::exec_oom::ExecOnOomSink::new(
            argv,
            d.clone(),
            cfg.triggers.exec_timeout,
        )));
    }
    let fanout = Arc::new(Fanout::new(sinks, stop.clone()));
    fanout.send(Event::Status(Arc::new(status_line(&loaded, adj))));
    if let Some((addr, m)) = metrics {
        crate::sinks::metrics::serve(addr, m).await?;
        log::info!("metrics on http://{addr}/metrics");
    }
    let threads = start_threads(cfg, exec, parts, fanout.clone(), stop.clone())?;
    // Ready for systemd (Type=notify) only now: the programs are attached,
    // the status line is out and the sampling thread runs.
    crate::notify::status(&format!("hooks live: {}", hooks_line(&loaded)));
    crate::notify::send("READY=1");

    wait_for_stop(&stop).await?;
    crate::stopping::request(&stop);
    crate::notify::send("STOPPING=1");
    crate::notify::status("stopping: flushing the sinks and detaching the programs");
    let deadline = Instant::now() + STOP_GRACE;
    // The sampling and OOM threads notice at once (crate::stopping); the
    // OOM thread closes pending incidents as they stand. Then the sinks
    // flush.
    for t in &threads[..2] {
        while !t.is_finished() && Instant::now() < deadline - Duration::from_millis(500) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    fanout.shutdown(deadline);
    let t = Instant::now();
    detach_all(&mut loaded.ebpf);
    drop(loaded);
    if crate::notify::dropped() > 0 {
        log::warn!(
            "{} message(s) to the service manager could not be sent",
            crate::notify::dropped()
        );
    }
    if std::env::var_os("LEAKTRACE_MEMDBG").is_some() {
        eprintln!(
            "stop: programs detached in {:.0} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// The kernel side, taken apart for the threads that read it.
struct Parts {
    sampler: Box<dyn Sampler>,
    exits: Option<ExitsReader>,
    rings: OomRings,
    counters: CountersMap,
    stacks: Option<Arc<Mutex<Stacks>>>,
}

fn open_kernel(loaded: &mut Loaded) -> Result<Parts> {
    let page = crate::fmt::page_size();
    let sampler: Box<dyn Sampler> = match loaded.iter.take() {
        Some(it) => {
            let life = loaded
                .ebpf
                .take_map("PROC_LIFE")
                .and_then(|m| aya::maps::HashMap::try_from(m).ok());
            let ctl = loaded
                .ebpf
                .take_map("ITER_CTL")
                .and_then(|m| aya::maps::Array::try_from(m).ok());
            Box::new(IterSampler {
                iter: it,
                life,
                ctl,
                passes: 0,
                resync: false,
            })
        }
        None => Box::new(HooksSampler::take(&mut loaded.ebpf, page)?),
    };
    let stacks = match loaded.stack_mode.take() {
        Some(m) => Some(Arc::new(Mutex::new(Stacks::take(&mut loaded.ebpf, m)?))),
        None => None,
    };
    Ok(Parts {
        sampler,
        exits: ExitsReader::take(&mut loaded.ebpf, page).ok(),
        rings: OomRings::take(&mut loaded.ebpf)?,
        counters: CountersMap::take(&mut loaded.ebpf)?,
        stacks,
    })
}

/// The sampling, OOM and evidence threads, in that order.
fn start_threads(
    cfg: Config,
    exec: Option<Vec<String>>,
    parts: Parts,
    fanout: Arc<Fanout>,
    stop: Arc<AtomicBool>,
) -> Result<[std::thread::JoinHandle<()>; 3]> {
    let stack_mode = parts
        .stacks
        .as_ref()
        .and_then(|s| s.lock().ok().map(|s| s.mode_name()))
        .unwrap_or("no stack sampler on this kernel");
    let mut t = Tracker::new(trend::Params::default());
    t.filter = cfg.filter.clone();
    let tracker = Arc::new(Mutex::new(t));
    let bundles: evidence::Bundles = Arc::new(Mutex::new(HashMap::new()));
    let shared = Arc::new(sampling::Shared::default());
    let (jobs_tx, jobs_rx) = mpsc::sync_channel(crate::limits::EVIDENCE_QUEUE_LEN);
    let worker = evidence::Worker {
        args: cfg.triggers.clone(),
        dir: cfg.dir.clone(),
        exec,
        max_evidence_bytes: cfg.max_evidence_bytes,
        stacks: parts.stacks.clone(),
        stack_mode,
        tracker: tracker.clone(),
        bundles: bundles.clone(),
        fanout: fanout.clone(),
    };
    let sampling = sampling::Sampling {
        sampler: parts.sampler,
        exits: parts.exits,
        counters: parts.counters,
        python: match &parts.stacks {
            Some(s) if !cfg.triggers.no_python_frames && s.lock().is_ok_and(|s| s.py.is_some()) => {
                Some(python::Detector::start(s.clone())?)
            }
            _ => None,
        },
        ledger: ledger::LedgerFeed::start(stop.clone())?,
        stacks: parts.stacks.clone(),
        tracker: tracker.clone(),
        triggers: evidence::Triggers::new(cfg.triggers, parts.stacks.is_some()),
        jobs: jobs_tx,
        fanout: fanout.clone(),
        shared: shared.clone(),
        stop: stop.clone(),
        interval: Duration::from_secs_f64(cfg.interval),
        rows: cfg.rows,
        pids: cfg.view.pids.clone(),
        debug_map_pids: cfg.debug_map_pids,
        watchdog: crate::notify::Watchdog::from_env(),
        deadline: cfg.duration.map(|d| Instant::now() + Duration::from_secs_f64(d)),
    };
    let oom = oom::OomThread {
        rings: parts.rings,
        tracker,
        bundles,
        fanout,
        shared,
        stop,
        interval: Duration::from_secs_f64(cfg.interval),
    };
    Ok([
        spawn("lt-sample", move || sampling.run())?,
        spawn("lt-oom", move || oom.run())?,
        spawn("lt-evidence", move || worker.run(jobs_rx))?,
    ])
}

/// Detaches and unloads every program, all at once: each detach waits for
/// an RCU grace period, and in parallel they share them.
fn detach_all(ebpf: &mut aya::Ebpf) {
    use aya::programs::Program;
    std::thread::scope(|s| {
        for (_, p) in ebpf.programs_mut() {
            s.spawn(move || {
                let _ = match p {
                    Program::TracePoint(t) => t.unload(),
                    Program::BtfTracePoint(t) => t.unload(),
                    Program::Iter(t) => t.unload(),
                    Program::PerfEvent(t) => t.unload(),
                    Program::FEntry(t) => t.unload(),
                    _ => Ok(()),
                };
            });
        }
    });
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .with_context(|| format!("starting thread {name}"))
}

/// Until SIGINT, SIGTERM, or a thread or sink asks to stop (duration
/// reached, stdout closed, q pressed): crate::stopping wakes this at once.
async fn wait_for_stop(stop: &AtomicBool) -> Result<()> {
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
        _ = crate::stopping::requested(stop) => {}
    }
    Ok(())
}

type MetricsHandle = (SocketAddr, Arc<Mutex<crate::sinks::metrics::Metrics>>);
type Sinks = (Vec<Box<dyn Sink>>, Option<MetricsHandle>);

fn build_sinks(output: Output, view: &View, loaded: &Loaded) -> Result<Sinks> {
    Ok(match output {
        Output::Json => (vec![Box::new(JsonSink::new(view.clone()))], None),
        Output::Text => (vec![Box::new(TextSink::new(view.clone()))], None),
        Output::Tui => {
            let t = TuiSink::start(view.clone(), hooks_line(loaded)).context("starting the terminal view")?;
            (vec![Box::new(t)], None)
        }
        Output::Record {
            log,
            summary_every,
            metrics,
            bpf_stats,
            json,
        } => {
            let mut v: Vec<Box<dyn Sink>> = vec![Box::new(EventLogSink::new(log, summary_every))];
            if json {
                v.push(Box::new(JsonSink::new(view.clone())));
            }
            let handle = metrics.map(|(addr, top)| {
                let mut m = crate::sinks::metrics::Metrics::new(top);
                if bpf_stats {
                    m.programs = loaded
                        .ebpf
                        .programs()
                        .filter_map(|(name, p)| Some((p.info().ok()?.id(), name.to_string())))
                        .collect();
                }
                let m = Arc::new(Mutex::new(m));
                v.push(Box::new(MetricsSink(m.clone())));
                (addr, m)
            });
            (v, handle)
        }
    })
}

fn hooks_line(l: &Loaded) -> String {
    let live = l.probes.iter().filter(|p| p.live.is_some()).count();
    format!(
        "{live} of {} jobs live; data path: {} ({}) (leaktrace -v watch lists them)",
        l.probes.len(),
        l.data_path,
        l.data_path_why
    )
}

fn status_line(l: &Loaded, adj: OomScoreAdj) -> StatusLine {
    StatusLine {
        kind: "status",
        schema: crate::sinks::SCHEMA_VERSION,
        ts_ms: crate::fmt::now_ms(),
        host: crate::host::hostname(),
        boot_id: crate::host::boot_id(),
        oom_kills_since_boot: crate::host::facts::oom_kills_since_boot(),
        version: env!("CARGO_PKG_VERSION"),
        ebpf_toolchain: loader::EBPF_TOOLCHAIN,
        data_path: l.data_path,
        data_path_why: l.data_path_why.clone(),
        hooks: l.probes.clone(),
        capabilities: l.capabilities.clone(),
        notes: l.notes.clone(),
        oom_score_adj: adj,
        limits: crate::limits::bounds(),
    }
}

fn report_probes(l: &Loaded, verbose: u8) {
    for n in &l.notes {
        log::info!("{n}");
    }
    log::info!("data path: {} ({})", l.data_path, l.data_path_why);
    for p in &l.probes {
        match &p.live {
            Some(live) => match p.program {
                Some(prog) => log::info!("hook {:<7} live: {live} ({prog})", p.job),
                None => log::info!("hook {:<7} live: {live}", p.job),
            },
            None if p.skipped.iter().any(|s| s.reason.starts_with("not attached")) => {
                log::info!("hook {:<7} not attached on the {} path", p.job, l.data_path)
            }
            // Refinements of what the report text already gives (this
            // host's normal case): not worth a warning.
            None if p.job == "oom-control" || p.job.starts_with("oom-lock") => {
                log::info!(
                    "hook {:<7} not available; the OOM report text is used instead",
                    p.job
                )
            }
            None => log::warn!("hook {:<7} not available; leaktrace continues without it", p.job),
        }
        for s in &p.skipped {
            log::info!("hook {:<7} skipped {}: {}", p.job, s.program, s.reason);
        }
    }
    if verbose > 0 {
        for c in &l.capabilities {
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

/// Kernel-side log records (aya-log), forwarded to our logger.
fn forward_kernel_logs(l: &mut Loaded) {
    match aya_log::EbpfLogger::init(&mut l.ebpf) {
        Ok(logger) => {
            // SAFETY: the logger owns its ring-buffer map fd and keeps it
            // open for as long as the AsyncFd (which owns the logger) exists.
            let fd = match unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) } {
                Ok(fd) => fd,
                Err(_) => {
                    log::debug!("kernel log forwarding off: cannot register its ring buffer");
                    return;
                }
            };
            let mut fd = fd;
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
}

/// The bounds that come from the command line, in the limits table.
fn set_bounds(cfg: &Config) {
    use crate::limits;
    limits::BUNDLES_PER_HOUR.set_bound(cfg.triggers.max_bundles_per_hour as u64);
    limits::EVIDENCE_BYTES.set_bound(cfg.max_evidence_bytes.unwrap_or(0));
    limits::EXEC_SECONDS.set_bound(cfg.triggers.exec_timeout.ceil() as u64);
    for l in limits::ALL.iter() {
        log::info!("limit {:<26} {} {}: {}", l.name, l.bound(), l.unit, l.on_hit);
    }
}

/// Raises the soft limit on open files to the hard one: a /proc read that
/// fails with EMFILE is an error, never an exit, but it still blinds
/// leaktrace for a moment. The metrics server's own connections are capped
/// far below (limits::METRICS_CONNECTIONS_MAX).
fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit to fill, then to set.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
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
