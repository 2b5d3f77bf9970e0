//! The bounds leaktrace enforces on itself, in one table, each with a count
//! of the times it was hit. A process on the host controls its comm, argv,
//! cgroup names, how often it forks and how many OOMs it causes; none of
//! that may make leaktrace's memory, files or threads grow without bound,
//! and nothing may be cut or dropped silently. Every bound here is in
//! docs/security.md, in the status line (`limits`), in every JSON sample
//! (`kernel.limits_hit`), in the metrics (`leaktrace_limit_hits_total`)
//! and, the first time it is hit, in a warning on stderr.
//!
//! This module sits at the bottom of the module graph (like `fmt`): the
//! places that enforce a bound count their hits here without importing
//! each other.
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

// The bounds enforced by constants elsewhere are defined here, so that the
// table and the code cannot disagree.
pub const CMDLINE_BYTES: usize = 4096;
pub const CGROUP_PATH_BYTES: usize = 4096;
pub const EXE_PATH_BYTES: usize = 4096;
pub const OOM_REPORT_LINES_MAX: usize = 8192;
pub const PENDING_INCIDENTS_MAX: usize = 64;
pub const LINGERING_MAX: usize = 4096;
pub const EXITS_PER_SAMPLE_MAX: usize = 16_384;
pub const META_BACKLOG_MAX: usize = 65_536;
pub const SINK_QUEUE_LEN: usize = 8;
pub const PRIORITY_QUEUE_LEN: usize = 256;
pub const EVIDENCE_QUEUE_LEN: usize = 16;
pub const SUSPECTS_MAX: usize = 64;
pub const STACK_THREADS_PER_SUSPECT: usize = 256;
pub const STACK_COPIES_PER_SUSPECT: usize = 16;
pub const PY_STACKS_PER_PROCESS: usize = 4096;
pub const UNWIND_MODULES_MAX: usize = 128;
pub const UNWIND_MODULE_BYTES: u64 = 256 << 20;
pub const METRICS_CONNECTIONS_MAX: usize = 64;
pub const METRICS_IO_SECS: u64 = 5;
pub const ROLLUP_READS_PER_ROUND: usize = 16;
pub const METRICS_HEAD_SECS: u64 = 2;
pub const HOOKS_RUNNING_MAX: usize = 4;
pub const HOOKS_QUEUE_MAX: usize = 16;

pub struct Limit {
    pub name: &'static str,
    pub unit: &'static str,
    /// What happens when it is hit, for the warning and the docs.
    pub on_hit: &'static str,
    bound: AtomicU64,
    hits: AtomicU64,
}

impl Limit {
    const fn new(name: &'static str, bound: u64, unit: &'static str, on_hit: &'static str) -> Self {
        Self {
            name,
            unit,
            on_hit,
            bound: AtomicU64::new(bound),
            hits: AtomicU64::new(0),
        }
    }

    pub fn bound(&self) -> u64 {
        self.bound.load(Ordering::Relaxed)
    }

    /// For bounds set on the command line (the evidence budget, the
    /// event log size).
    pub fn set_bound(&self, v: u64) {
        self.bound.store(v, Ordering::Relaxed);
    }

    pub fn hit(&self) {
        self.hit_n(1);
    }

    pub fn hit_n(&self, n: u64) {
        if n == 0 {
            return;
        }
        if self.hits.fetch_add(n, Ordering::Relaxed) == 0 {
            log::warn!(
                "limit {} ({} {}) reached: {}; counted in kernel.limits_hit",
                self.name,
                self.bound(),
                self.unit,
                self.on_hit
            );
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

pub static CMDLINE: Limit = Limit::new(
    "cmdline_bytes",
    CMDLINE_BYTES as u64,
    "bytes",
    "a longer command line is cut",
);
pub static COMM: Limit = Limit::new("comm_bytes", 16, "bytes", "a longer name is cut");
pub static CGROUP_PATH: Limit = Limit::new(
    "cgroup_path_bytes",
    CGROUP_PATH_BYTES as u64,
    "bytes",
    "a longer cgroup path is cut",
);
pub static EXE_PATH: Limit = Limit::new(
    "exe_path_bytes",
    EXE_PATH_BYTES as u64,
    "bytes",
    "a longer executable path is cut",
);
pub static METRICS_CONNECTIONS: Limit = Limit::new(
    "metrics_connections",
    METRICS_CONNECTIONS_MAX as u64,
    "connections",
    "a further connection to --metrics is closed at once",
);
pub static METRICS_EVICTED: Limit = Limit::new(
    "metrics_idle_evicted",
    METRICS_HEAD_SECS,
    "s to send the request",
    "a metrics client that sent no request in time, or the oldest such one when all connections are taken, is dropped",
);
pub static HOOKS_RUNNING: Limit = Limit::new(
    "exec_running",
    HOOKS_RUNNING_MAX as u64,
    "commands",
    "a further --exec-on-trigger/--exec-on-oom command waits for a free slot",
);
pub static HOOKS_QUEUE: Limit = Limit::new(
    "exec_queue",
    HOOKS_QUEUE_MAX as u64,
    "commands waiting",
    "a further command is dropped, not run: lost_events_total{kind=\"hooks\"}, and its exec.json says dropped",
);
pub static METRICS_TIMEOUT: Limit = Limit::new(
    "metrics_io_seconds",
    METRICS_IO_SECS,
    "s",
    "a metrics client that does not send its request or read the answer in time is dropped",
);
pub static OOM_REPORT_LINES: Limit = Limit::new(
    "oom_report_lines",
    OOM_REPORT_LINES_MAX as u64,
    "lines per incident",
    "further lines of one OOM report (a huge task dump) are counted, not kept",
);
pub static PENDING_INCIDENTS: Limit = Limit::new(
    "pending_incidents",
    PENDING_INCIDENTS_MAX as u64,
    "incidents",
    "the oldest incident being assembled is closed early (closed_early), never dropped",
);
pub static LINGERING: Limit = Limit::new(
    "lingering_processes",
    LINGERING_MAX as u64,
    "processes",
    "the oldest exited process kept for OOM verdicts is forgotten",
);
pub static EXITS_PER_TICK: Limit = Limit::new(
    "exit_records_per_sample",
    EXITS_PER_SAMPLE_MAX as u64,
    "records",
    "further exit records of short-lived growers in one interval are counted, not kept",
);
pub static META_BACKLOG: Limit = Limit::new(
    "proc_read_backlog",
    META_BACKLOG_MAX as u64,
    "requests",
    "a /proc read request is dropped and asked again later",
);
pub static ROLLUP_READS: Limit = Limit::new(
    "smaps_rollup_reads_per_round",
    ROLLUP_READS_PER_ROUND as u64,
    "reads",
    "the processes whose Pss/USS was read longest ago go first; the others wait a round",
);
pub static SINK_QUEUE: Limit = Limit::new(
    "sink_queue",
    SINK_QUEUE_LEN as u64,
    "samples per output",
    "an output that falls behind loses samples (kernel.sink_drops)",
);
pub static PRIORITY_QUEUE: Limit = Limit::new(
    "priority_queue",
    PRIORITY_QUEUE_LEN as u64,
    "incidents and evidence per output",
    "an output that falls far behind loses incidents (kernel.sink_drops)",
);
pub static EVIDENCE_JOBS: Limit = Limit::new(
    "evidence_queue",
    EVIDENCE_QUEUE_LEN as u64,
    "bundles",
    "a bundle is not written while the evidence worker is this far behind",
);
pub static BUNDLES_PER_HOUR: Limit = Limit::new(
    "bundles_per_hour",
    30,
    "bundles",
    "a trigger writes no bundle (--max-bundles-per-hour)",
);
pub static EVIDENCE_BYTES: Limit = Limit::new(
    "evidence_bytes",
    0,
    "bytes (0: no budget)",
    "the oldest bundle is deleted (--max-evidence-bytes)",
);
pub static EVENT_LOG_BYTES: Limit = Limit::new(
    "event_log_bytes",
    0,
    "bytes",
    "the oldest events.jsonl rotation is deleted (--max-file-bytes x --max-files)",
);
pub static EXEC_SECONDS: Limit = Limit::new(
    "exec_seconds",
    30,
    "s",
    "the --exec-on-trigger command and every process in its group are killed",
);
pub static EXEC_OUTPUT: Limit = Limit::new(
    "exec_output_bytes",
    16 << 20,
    "bytes per stream",
    "the --exec-on-trigger command gets SIGXFSZ when its output file reaches it",
);
pub static SYMBOLIZER_MEMORY: Limit = Limit::new(
    "symbolizer_memory_bytes",
    1 << 30,
    "bytes",
    "the symbolizer child fails its allocation and the stacks keep raw addresses",
);
pub static SYMBOLIZER_SECONDS: Limit = Limit::new(
    "symbolizer_seconds",
    20,
    "s",
    "the symbolizer child is killed and the stacks keep raw addresses",
);
pub static SUSPECTS: Limit = Limit::new(
    "suspects",
    SUSPECTS_MAX as u64,
    "processes",
    "only the fastest-growing suspects get their faults sampled",
);
pub static STACK_THREADS: Limit = Limit::new(
    "stack_threads_per_suspect",
    STACK_THREADS_PER_SUSPECT as u64,
    "threads",
    "further threads of a suspect get no perf event of their own",
);
pub static STACK_COPIES: Limit = Limit::new(
    "stack_copies_per_suspect",
    STACK_COPIES_PER_SUSPECT as u64,
    "16 KiB stack copies",
    "a further copy replaces an older one of the same suspect (round robin)",
);
pub static PY_STACKS: Limit = Limit::new(
    "python_stacks_per_process",
    PY_STACKS_PER_PROCESS as u64,
    "distinct Python stacks",
    "the frames of further stacks are not kept: their samples count as samples without frames",
);
pub static UNWIND_MODULES: Limit = Limit::new(
    "unwind_modules",
    UNWIND_MODULES_MAX as u64,
    "mapped binaries per process",
    "further binaries of the process get no CFI: their frames fall back to frame pointers",
);
pub static UNWIND_MODULE_SIZE: Limit = Limit::new(
    "unwind_module_bytes",
    UNWIND_MODULE_BYTES,
    "bytes",
    "a larger binary is not read for CFI: its frames fall back to frame pointers",
);

pub static INCIDENT_FILES: Limit = Limit::new(
    "incident_directories",
    1000,
    "directories",
    "the oldest --exec-on-oom incident directory is deleted",
);

pub static ALL: [&Limit; 33] = [
    &CMDLINE,
    &COMM,
    &CGROUP_PATH,
    &EXE_PATH,
    &METRICS_CONNECTIONS,
    &METRICS_TIMEOUT,
    &METRICS_EVICTED,
    &OOM_REPORT_LINES,
    &PENDING_INCIDENTS,
    &LINGERING,
    &EXITS_PER_TICK,
    &META_BACKLOG,
    &ROLLUP_READS,
    &SINK_QUEUE,
    &PRIORITY_QUEUE,
    &EVIDENCE_JOBS,
    &BUNDLES_PER_HOUR,
    &EVIDENCE_BYTES,
    &EVENT_LOG_BYTES,
    &EXEC_SECONDS,
    &EXEC_OUTPUT,
    &HOOKS_RUNNING,
    &HOOKS_QUEUE,
    &SYMBOLIZER_MEMORY,
    &SYMBOLIZER_SECONDS,
    &STACK_COPIES,
    &PY_STACKS,
    &UNWIND_MODULES,
    &UNWIND_MODULE_SIZE,
    &SUSPECTS,
    &STACK_THREADS,
    &TEMP_BUNDLES,
    &INCIDENT_FILES,
];

pub static TEMP_BUNDLES: Limit = Limit::new(
    "leftover_temp_bundles",
    0,
    "directories",
    "a half-written bundle left by a crash is removed at start",
);

/// One bound, for the status line.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Bound {
    pub name: &'static str,
    pub bound: u64,
    pub unit: &'static str,
    pub on_hit: &'static str,
}

pub fn bounds() -> Vec<Bound> {
    ALL.iter()
        .map(|l| Bound {
            name: l.name,
            bound: l.bound(),
            unit: l.unit,
            on_hit: l.on_hit,
        })
        .collect()
}

/// Hits so far of every limit (zeros included, so that a consumer sees the
/// names); a JSON object by name.
#[derive(Debug, Clone, Default)]
pub struct Hits(pub Vec<(&'static str, u64)>);

impl Serialize for Hits {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Every limit by name, each a count: the names are fixed, so all are
/// required and no other is allowed.
impl schemars::JsonSchema for Hits {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Hits".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let props: serde_json::Map<String, serde_json::Value> = ALL
            .iter()
            .map(|l| {
                (
                    l.name.to_string(),
                    serde_json::json!({"type": "integer", "minimum": 0}),
                )
            })
            .collect();
        let names: Vec<&str> = ALL.iter().map(|l| l.name).collect();
        schemars::json_schema!({
            "description": "How often each of leaktrace's own bounds was hit (docs/security.md).",
            "type": "object",
            "properties": props,
            "required": names,
            "additionalProperties": false
        })
    }
}

pub fn hits() -> Hits {
    Hits(ALL.iter().map(|l| (l.name, l.hits())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_is_listed_once_and_counts() {
        let mut names: Vec<_> = ALL.iter().map(|l| l.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        let before = TEMP_BUNDLES.hits();
        TEMP_BUNDLES.hit_n(2);
        assert_eq!(TEMP_BUNDLES.hits(), before + 2);
        assert!(hits()
            .0
            .iter()
            .any(|(n, v)| *n == "leftover_temp_bundles" && *v >= 2));
        let j = serde_json::to_value(hits()).unwrap();
        assert!(j["leftover_temp_bundles"].as_u64().unwrap() >= 2, "{j}");
        assert!(j["cmdline_bytes"].as_u64().is_some());
    }
}
