//! What one sampling interval produces: the rows every sink shows.
use serde::Serialize;

use super::trend::Trend;
use crate::kernel::Counters;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ProcessRow {
    /// unit, slice, runtime, container_id, pod_uid from its cgroup path
    /// (null when they do not apply; docs/attribution.md).
    #[serde(flatten)]
    pub attribution: crate::host::attribution::Attribution,
    pub pid: u32,
    pub ppid: u32,
    /// Decoded lossily from the kernel's bytes; escaped by every sink that
    /// writes to a terminal or a text file.
    pub comm: String,
    pub cmdline: String,
    pub exe: String,
    pub cgroup: String,
    pub cgroup_version: u8,
    /// The memory cgroup's kernfs id (0 when unknown).
    pub memcg_id: u64,
    pub threads: u32,
    pub rss_bytes: u64,
    pub rss_anon_bytes: u64,
    pub rss_file_bytes: u64,
    pub rss_shmem_bytes: u64,
    pub swap_bytes: u64,
    /// The highest RSS the kernel has recorded for this image (its lazy
    /// high-water mark, or the current RSS if higher).
    pub peak_rss_bytes: u64,
    /// Growth over the 10 s and the 60 s window, of RSS, or of USS when
    /// only USS grows (see `growth_of`).
    pub growth_bytes_per_sec: f64,
    pub growth_bytes_per_sec_long: f64,
    /// "rss", or "uss" when the growth and trend are its private memory's:
    /// a forked worker copying the pages it shares (copy-on-write) keeps
    /// its RSS while the host loses memory.
    pub growth_of: &'static str,
    /// From /proc/<pid>/smaps_rollup, read every few seconds for the
    /// suspects, growers and the largest groups' members (null when not
    /// read lately). Pss: shared pages split among their mappers. USS
    /// (Private_Clean + Private_Dirty): what its exit would free.
    pub pss_bytes: Option<u64>,
    pub uss_bytes: Option<u64>,
    /// The USS's 10 s growth rate (null when never read).
    pub uss_growth_bytes_per_sec: Option<f64>,
    pub faults_per_sec: f64,
    pub forks_per_sec: f64,
    /// Milliseconds per second its threads spent in direct or memcg
    /// reclaim (allocation stalls), over the last interval.
    pub reclaim_stall_ms_per_sec: f64,
    pub trend: Trend,
    pub oom_score_adj: i32,
    /// "kernel" when the counters come from the eBPF programs, "procfs"
    /// for a process whose counters the hooks path has not seen change.
    pub source: &'static str,
    /// It crossed an evidence trigger in the last 60 s: listed whatever
    /// --top says.
    pub flagged: bool,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct GroupRow {
    /// The leader's unit, container and pod.
    #[serde(flatten)]
    pub attribution: crate::host::attribution::Attribution,
    pub leader_pid: u32,
    pub comm: String,
    pub exe: String,
    pub members: usize,
    /// The first 64 members by pid (`members` counts them all).
    pub pids: Vec<u32>,
    /// The members' RSS summed: shared pages once per member, so NOT the
    /// group's size when they share pages (use `pss_bytes`).
    pub rss_bytes: u64,
    /// The group's 10 s rate: of its Pss sum when every member's is fresh
    /// (`growth_of` "pss"), else the members' RSS rates summed ("rss_sum").
    pub growth_bytes_per_sec: f64,
    /// The same series over the 60 s window, and its trend (the process
    /// rule applied to the Pss sum, or to the total RSS).
    pub growth_bytes_per_sec_long: f64,
    pub trend: Trend,
    /// "pss" or "rss_sum": the series `growth_*` and `trend` come from.
    pub growth_of: &'static str,
    /// The group's memory with shared copy-on-write pages counted once:
    /// the sum of the members' Pss from /proc/<pid>/smaps_rollup, read for
    /// the top groups at a bounded rate (null unless every member's read
    /// is fresh).
    pub pss_bytes: Option<u64>,
    /// The members' USS summed: what the group's exit would free at least.
    pub uss_bytes: Option<u64>,
    /// The Pss sum's 10 s growth rate (null when the sum is not fresh).
    pub pss_growth_bytes_per_sec: Option<f64>,
}

/// One cgroup's processes together: the top cgroups by RSS in a sample.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CgroupRow {
    pub cgroup: String,
    #[serde(flatten)]
    pub attribution: crate::host::attribution::Attribution,
    pub processes: usize,
    /// Its processes' RSS summed (shared pages once per process).
    pub rss_bytes: u64,
    /// Their 10 s rates summed.
    pub growth_bytes_per_sec: f64,
    /// The memcg limit that applies and the usage of the memcg that sets
    /// it, when leaktrace follows that memcg.
    pub limit_bytes: Option<u64>,
    pub limit_usage_bytes: Option<u64>,
}

/// The health of the data path, carried by every sample: nothing is lost
/// without a count here.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct KernelStatus {
    /// "iterator" or "hooks".
    pub data_path: &'static str,
    /// Processes the last pass returned.
    pub tracked_pids: usize,
    /// Wall time of the last pass in ms.
    pub pass_ms: f64,
    /// Records that could not be decoded, or /proc reads that failed for
    /// another reason than the process being gone.
    pub sampler_errors: u64,
    #[serde(flatten)]
    pub counters: Counters,
    /// Exit records that arrived while the queue was full.
    pub exits_dropped: u64,
    pub meta: crate::host::meta::MetaStats,
    pub stacks: Option<crate::kernel::stacks::StackStats>,
    /// Per sink: events dropped because the sink fell behind.
    pub sink_drops: Vec<(String, u64)>,
    /// Exited processes kept for OOM verdicts, and those dropped at the cap.
    pub lingering: usize,
    pub linger_dropped: u64,
    /// How often each of leaktrace's own bounds was hit (docs/security.md).
    pub limits_hit: crate::limits::Hits,
    /// The kernel map's keys (only with --debug-map-pids).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map_pids: Option<Vec<u32>>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Sample {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ms: u64,
    pub interval_s: f64,
    /// Live processes in all; `processes` holds the rows the outputs show
    /// (the fastest growers, and any process asked for by pid).
    pub processes_total: usize,
    pub processes: Vec<ProcessRow>,
    pub groups: Vec<GroupRow>,
    /// The cgroups holding the most RSS (at most 20; metrics and the
    /// summaries use them).
    pub cgroups: Vec<CgroupRow>,
    pub kernel: KernelStatus,
    /// The host memory ledger (docs/ledger.md), refreshed every few
    /// seconds; null until the first reading.
    pub ledger: Option<super::ledger::Ledger>,
}

/// What the evidence trigger rule looks at in a process (the model makes
/// them, `evidence` judges them).
#[derive(Debug, Clone, Copy)]
pub struct Subject {
    pub pid: u32,
    pub rss_bytes: u64,
    pub growth_bytes_per_sec: f64,
    pub trend: crate::model::trend::Trend,
    /// The memcg that limits it: usage now and growth (bytes/s), when
    /// followed. Time to limit is the memcg's, not the process's alone.
    pub memcg: Option<(u64, f64)>,
}
