//! `leaktrace watch` and `leaktrace record`: their flags, and the
//! pipeline configuration they make. Nothing else happens here.
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::{
    evidence::TriggerArgs,
    kernel::loader::{self, DataPath, LoadOptions},
    pipeline::{self, Config, Output},
    sinks::{eventlog::EventLog, tui, View},
};

/// Processes `watch --json` prints per sample unless --top or --all says
/// otherwise.
pub const DEFAULT_JSON_TOP: usize = 50;

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// Write one JSON object per line to stdout instead of the live view.
    #[arg(long)]
    pub json: bool,
    /// Time between samples, 100ms to 1h (500ms, 2s, 1m; a bare number is
    /// seconds).
    #[arg(long, default_value_t = 1.0, value_parser = parse_interval, value_name = "DURATION")]
    pub interval: f64,
    /// Stop after this long (30s, 5m, 1h; a bare number is seconds; default:
    /// run until interrupted).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<f64>,
    /// Only show this process (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Show the N fastest-growing processes and the N largest groups
    /// (default with --json: 50; the live view shows what fits).
    #[arg(long, value_name = "N", conflicts_with = "all")]
    pub top: Option<usize>,
    /// Show every process in every sample (--json can then be large on a
    /// busy host: about 450 bytes per process per sample).
    #[arg(long)]
    pub all: bool,
    /// oom_score_adj for leaktrace itself, so that it survives the OOMs it
    /// records (-1000: never chosen by the OOM killer).
    #[arg(long, default_value_t = -1000, value_parser = clap::value_parser!(i32).range(-1000..=1000), value_name = "N", allow_hyphen_values = true)]
    pub oom_score_adj: i32,
    /// How processes are sampled: `auto` (the task iterator where the
    /// kernel has it, else the per-fault hooks), `iterator` or `hooks`.
    #[arg(long, value_enum, default_value_t = DataPath::Auto, value_name = "PATH")]
    pub data_path: DataPath,
    /// Use classic tracepoints even where tp_btf works (to test or compare
    /// the fallback hooks).
    #[arg(long)]
    pub force_classic: bool,
    /// Also attach empty programs on the two per-fault hooks (benchmark floor).
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
    #[command(flatten)]
    pub filter: crate::model::filter::FilterArgs,
    /// Run this command after each OOM incident is written to
    /// DIR/incidents/<ts>-<pid>/incident.json: no shell, {pid}, {comm} and
    /// {incident} replaced inside arguments, the victim in LEAKTRACE_PID,
    /// LEAKTRACE_COMM, LEAKTRACE_CGROUP, LEAKTRACE_UNIT,
    /// LEAKTRACE_CONTAINER_ID, LEAKTRACE_POD_UID, LEAKTRACE_WRONG_VICTIM
    /// and LEAKTRACE_INCIDENT; killed after --exec-timeout. Example:
    /// 'logger -t leaktrace OOM {comm} {incident}'.
    #[arg(long, value_name = "COMMAND", requires = "dir")]
    pub exec_on_oom: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// Where to write events.jsonl (rotated) and evidence/ bundles.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Also write every line as JSON to stdout (the top 50 processes per
    /// sample), for a consumer such as a log shipper. A consumer that
    /// falls behind loses lines (counted in `sink_drops`); the event log
    /// does not.
    #[arg(long)]
    pub json: bool,
    /// Time between samples, 100ms to 1h (500ms, 2s, 1m; a bare number is
    /// seconds).
    #[arg(long, default_value_t = 1.0, value_parser = parse_interval, value_name = "DURATION")]
    pub interval: f64,
    /// Stop after this long (30s, 5m, 1h; a bare number is seconds; default:
    /// until SIGTERM/SIGINT).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<f64>,
    /// Time between compact summaries of the top growers in events.jsonl
    /// (30s, 5m; a bare number is seconds).
    #[arg(long, default_value_t = 60.0, value_parser = parse_interval, value_name = "DURATION")]
    pub summary_interval: f64,
    /// Rotate events.jsonl when it would grow past this size (512K, 64M,
    /// 1G: binary units, M = MiB; a bare number is bytes).
    #[arg(long, default_value_t = 64 << 20, value_name = "SIZE", value_parser = crate::units::bytes)]
    pub max_file_bytes: u64,
    /// Keep at most this many event files (events.jsonl and its rotations,
    /// which are gzip-compressed: events.jsonl.1.gz, ...).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub max_files: usize,
    /// Keep evidence bundles under this size in total, oldest go first (64M,
    /// 1G: binary units, G = GiB; a bare number is bytes).
    #[arg(long, default_value_t = 1 << 30, value_name = "SIZE", value_parser = crate::units::bytes)]
    pub max_evidence_bytes: u64,
    /// oom_score_adj for leaktrace itself (-1000: never chosen by the OOM killer).
    #[arg(long, default_value_t = -1000, value_parser = clap::value_parser!(i32).range(-1000..=1000), value_name = "N", allow_hyphen_values = true)]
    pub oom_score_adj: i32,
    /// How processes are sampled: auto, iterator or hooks (see watch --help).
    #[arg(long, value_enum, default_value_t = DataPath::Auto, value_name = "PATH")]
    pub data_path: DataPath,
    /// Use classic tracepoints even where tp_btf works.
    #[arg(long)]
    pub force_classic: bool,
    /// Serve Prometheus/OpenMetrics text on this address, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Per-cgroup metrics only for this many cgroups, those with the most
    /// RSS (bounded cardinality; there are no per-process series).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub metrics_top: usize,
    /// Have the kernel count each leaktrace program's run time, exported
    /// as leaktrace_bpf_run_seconds_total. This turns on run-time stats for
    /// every BPF program on the host while leaktrace runs (two clock reads
    /// per program run), so it is off by default.
    #[arg(long, requires = "metrics")]
    pub bpf_stats: bool,
    #[command(flatten)]
    pub triggers: TriggerArgs,
    #[command(flatten)]
    pub filter: crate::model::filter::FilterArgs,
    /// Run this command after each OOM incident is written to
    /// DIR/incidents/<ts>-<pid>/incident.json: no shell, {pid}, {comm} and
    /// {incident} replaced inside arguments, the victim in LEAKTRACE_PID,
    /// LEAKTRACE_COMM, LEAKTRACE_CGROUP, LEAKTRACE_UNIT,
    /// LEAKTRACE_CONTAINER_ID, LEAKTRACE_POD_UID, LEAKTRACE_WRONG_VICTIM
    /// and LEAKTRACE_INCIDENT; killed after --exec-timeout. Example:
    /// 'logger -t leaktrace OOM {comm} {incident}'.
    #[arg(long, value_name = "COMMAND", requires = "dir")]
    pub exec_on_oom: Option<String>,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    let v = crate::units::secs(s)?;
    if !(0.1..=3600.0).contains(&v) {
        return Err("the interval must be between 100ms and 1h".into());
    }
    Ok(v)
}

fn parse_duration(s: &str) -> Result<f64, String> {
    let v = crate::units::secs(s)?;
    if v <= 0.0 {
        return Err("the duration must be positive".into());
    }
    Ok(v)
}

pub fn watch(mut args: WatchArgs, verbose: u8) -> Result<()> {
    loader::check_privileges().map_err(crate::exit::NoPermission)?;
    args.dir = args.dir.as_deref().map(absolute).transpose()?;
    let output = if args.json {
        Output::Json
    } else if tui::is_terminal() {
        Output::Tui
    } else {
        Output::Text
    };
    let top = match (args.all, args.top, args.json) {
        (true, _, _) => None,
        (false, Some(n), _) => Some(n),
        (false, None, true) => Some(DEFAULT_JSON_TOP),
        (false, None, false) => None,
    };
    // The live view shows what fits on a screen; the text table 25 rows.
    let rows = match output {
        Output::Tui => Some(top.unwrap_or(200)),
        Output::Text => Some(top.unwrap_or(25)),
        _ => top,
    };
    pipeline::run(Config {
        rows,
        output,
        view: View { pids: args.pids, top },
        interval: args.interval,
        duration: args.duration,
        triggers: args.triggers,
        dir: args.dir,
        max_evidence_bytes: None,
        oom_score_adj: args.oom_score_adj,
        load: LoadOptions {
            path: args.data_path,
            force_classic: args.force_classic,
            bench_floor: args.bench_floor,
            verbose,
        },
        debug_map_pids: args.debug_map_pids,
        filter: args.filter,
        exec_on_oom: args.exec_on_oom,
    })
}

/// `--dir` made absolute: hooks get it in {dir}, LEAKTRACE_DIR and
/// LEAKTRACE_INCIDENT, and run in `/`, where a relative path means
/// something else.
fn absolute(dir: &std::path::Path) -> Result<PathBuf> {
    std::path::absolute(dir).with_context(|| format!("cannot make {} absolute", dir.display()))
}

pub fn record(mut args: RecordArgs, verbose: u8) -> Result<()> {
    loader::check_privileges().map_err(crate::exit::NoPermission)?;
    args.dir = absolute(&args.dir)?;
    // Before anything is written: a second recorder on this directory
    // stops here (exit 1), and the first one's files stay as they are.
    let _lock = crate::dirlock::DirLock::take(&args.dir)?;
    let log = EventLog::open(&args.dir, args.max_file_bytes, args.max_files)
        .with_context(|| format!("cannot record into {}", args.dir.display()))?;
    pipeline::run(Config {
        // The summaries take the top 10 growers; metrics the top N; --json 50.
        rows: Some(
            args.metrics_top
                .max(if args.json { DEFAULT_JSON_TOP } else { 10 }),
        ),
        output: Output::Record {
            log,
            summary_every: args.summary_interval,
            metrics: args.metrics.map(|a| (a, args.metrics_top)),
            bpf_stats: args.bpf_stats,
            json: args.json,
        },
        view: View {
            pids: Vec::new(),
            top: Some(DEFAULT_JSON_TOP),
        },
        interval: args.interval,
        duration: args.duration,
        triggers: args.triggers,
        dir: Some(args.dir),
        max_evidence_bytes: Some(args.max_evidence_bytes),
        oom_score_adj: args.oom_score_adj,
        load: LoadOptions {
            path: args.data_path,
            force_classic: args.force_classic,
            bench_floor: false,
            verbose,
        },
        debug_map_pids: false,
        filter: args.filter,
        exec_on_oom: args.exec_on_oom,
    })
}
