//! What an incident is, as written to --json and events.jsonl: the
//! `oom_kill` line and the types in it.
use serde::Deserialize;

use super::*;

/// Declares a closed set of words that an incident writes as JSON strings:
/// an enum that serializes as those exact strings (so the output is what
/// it was when these fields were `&'static str`), reads them back, and
/// gives them as `as_str()`. In the schemas they stay plain strings
/// (`#[schemars(with = "String")]` on the fields), as before.
macro_rules! words {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $v,)*
        }

        #[allow(dead_code)] // not every set of words is read back by name
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $s,)*
                }
            }
        }
    };
}

words! {
    /// Whether the choice of victim mattered (docs/verdict.md).
    VictimChoice {
        /// The victim was the process that grew the most.
        TopGrower = "top grower",
        /// Nothing in scope grew notably: any victim was as good.
        NothingGrew = "nothing grew",
        /// Another process grew more, but it was the victim's sibling
        /// doing the same work (same executable, command and memcg,
        /// growing alike): the choice did not matter.
        Sibling = "sibling",
        /// Another process grew more and it was not doing the same work.
        Wrong = "wrong",
    }
}

words! {
    /// The `type` of an incident line.
    IncidentKind { OomKill = "oom_kill", }
}

words! {
    /// What kind of group a [`GroupInfo`] is.
    GroupKind { Pool = "pool", }
}

words! {
    /// Where an incident's `memcg` comes from.
    MemcgFrom {
        /// The oom-kill: line of the kernel's report.
        Report = "report",
        /// struct oom_control (the oom-control hook).
        OomControl = "oom_control",
        /// The victim's own memcg (the report was rate-limited).
        Victim = "victim",
    }
}

words! {
    /// What the OOM reaper did with the victim.
    ReaperOutcome {
        Reaped = "reaped",
        Skipped = "skipped",
        NotSeen = "not seen",
    }
}

words! {
    /// Where a stalled task's time comes from.
    StallSource {
        /// Reclaim episodes sent by the kernel while the report printed.
        ReportReclaim = "reclaim during the report",
        /// The per-process reclaim counters sampled by watch.
        SampledReclaim = "reclaim around the OOM",
    }
}

words! {
    /// The hook that read struct oom_control.
    ControlSource {
        Fentry = "fentry oom_kill_process",
        Kprobe = "kprobe oom_kill_process",
    }
}

words! {
    /// enum oom_constraint, as words.
    ConstraintKind {
        Global = "global",
        Cpuset = "cpuset",
        Mempolicy = "mempolicy",
        Memcg = "memcg",
        /// A value this build does not know.
        Unknown = "unknown",
    }
}

words! {
    /// The hook that timed out_of_memory().
    LockSource {
        Fexit = "fexit out_of_memory",
        Kretprobe = "kretprobe out_of_memory",
    }
}

/// A pool (groups.rs): a parent and the children that run its image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GroupInfo {
    /// "pool".
    #[schemars(with = "String")]
    pub kind: GroupKind,
    pub leader_pid: u32,
    pub comm: String,
    pub members: usize,
    /// The members' RSS summed (shared copy-on-write pages once per member).
    pub rss_bytes: u64,
    /// The members' Pss summed (shared pages split among them), when read.
    pub pss_bytes: Option<u64>,
    pub growth_bytes_per_sec_long: f64,
    pub trend: crate::model::trend::Trend,
}

/// Another process in the OOM's scope that grew in the window, with its
/// RSS over the window, for the report's chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GrowerSeries {
    pub pid: u32,
    pub comm: String,
    pub growth_bytes: u64,
    pub history: Vec<(u64, u64)>,
}

/// The OOM memcg's own usage over the window before the kill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemcgGrowth {
    pub from_bytes: u64,
    pub to_bytes: u64,
    pub secs: f64,
    pub limit_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Grower {
    #[serde(flatten)]
    pub attribution: Attribution,
    pub pid: u32,
    pub comm: String,
    /// The largest rise of its RSS within the window (births, samples, a
    /// peak at exit and, for the victim, its RSS at the kill).
    pub growth_bytes: u64,
    pub from_bytes: u64,
    pub to_bytes: u64,
    pub window_s: f64,
    /// Its RSS was still rising in the last seconds before the kill.
    pub growing_at_kill: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Invoker {
    /// From its cgroup, when leaktrace knew the process.
    #[serde(flatten)]
    pub attribution: Attribution,
    /// The process (tgid) whose allocation invoked the OOM killer...
    pub pid: u32,
    /// ...and the thread that made it.
    pub tid: u32,
    pub comm: String,
    pub gfp_mask: Option<String>,
    pub order: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Victim {
    #[serde(flatten)]
    pub attribution: Attribution,
    pub pid: u32,
    pub comm: String,
    /// Its executable, when leaktrace read it: a process can name itself
    /// anything ("systemd"), its exe it cannot.
    #[serde(default)]
    pub exe: String,
    /// Its pid inside its PID namespace (a container), where it differs.
    #[serde(default)]
    pub ns_pid: Option<u32>,
    pub cmdline: String,
    pub cgroup: String,
    pub rss_anon_bytes: u64,
    pub rss_file_bytes: u64,
    pub rss_shmem_bytes: u64,
    pub total_vm_bytes: u64,
    pub pgtables_bytes: u64,
    pub uid: u32,
    pub oom_score_adj: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Line {
    pub ts_ns: u64,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CandidateOut {
    pub pid: u32,
    pub uid: Option<u32>,
    pub tgid: Option<u32>,
    pub name: String,
    pub rss_bytes: Option<u64>,
    pub rss_anon_bytes: Option<u64>,
    pub rss_file_bytes: Option<u64>,
    pub rss_shmem_bytes: Option<u64>,
    pub total_vm_bytes: Option<u64>,
    pub pgtables_bytes: Option<u64>,
    pub swapents: Option<u64>,
    pub oom_score_adj: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Timings {
    pub to_kill: Option<f64>,
    pub to_exit: Option<f64>,
    pub to_reaped: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VictimGrowth {
    pub from_bytes: u64,
    pub to_bytes: u64,
    pub secs: f64,
    /// How long before the kill the rise ended (0 when it ran up to the
    /// kill). Absent from recordings made before it was added.
    #[serde(default)]
    pub ended_before_kill_s: Option<f64>,
    /// The rise started at the process's birth (it allocated at start-up).
    #[serde(default)]
    pub from_birth: bool,
    /// Its RSS at the kill (the last point of its history).
    #[serde(default)]
    pub at_kill_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StalledTask {
    pub pid: u32,
    pub comm: String,
    pub stalled_ms: f64,
    /// "reclaim during the report" (kernel events) or "reclaim around the
    /// OOM" (per-process counters sampled by watch).
    #[schemars(with = "String")]
    pub source: StallSource,
}

/// How long the OOM froze things, and why (seed 004).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Stall {
    /// From "invoked oom-killer" to the victim being marked.
    pub report_ms: Option<f64>,
    /// The part of report_ms spent writing to consoles.
    pub console_ms: Option<f64>,
    pub console_method: String,
    /// Printing the task dump (vm.oom_dump_tasks): from the "Tasks state"
    /// header to the oom-kill: line.
    pub dump_tasks_ms: Option<f64>,
    /// Other tasks that stalled in reclaim around the OOM, largest first.
    pub stalled_tasks: Vec<StalledTask>,
    pub stalled_tasks_count: usize,
    pub stalled_ms_total: f64,
    pub psi_memory_some_us: Option<u64>,
    pub psi_memory_full_us: Option<u64>,
    /// The window the PSI deltas cover (from the report's start as seen by
    /// leaktrace to the incident's completion).
    pub psi_window_ms: Option<f64>,
    pub console_loglevel: Option<u8>,
    pub consoles: Vec<String>,
    pub diagnosis: String,
    pub recommendations: Vec<String>,
    /// The freeze is worth its own `oom_stall` line.
    pub notable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Incident {
    #[serde(rename = "type")]
    #[schemars(with = "String")]
    pub kind: IncidentKind,
    pub ts_ms: u64,
    pub invoker: Invoker,
    pub victim: Option<Victim>,
    pub constraint: String,
    pub memcg: Option<String>,
    /// Where `memcg` comes from: "report" (the oom-kill: line), or
    /// "victim" when the kernel rate-limited the report and only the
    /// "Memory cgroup out of memory: Killed process" line said it was a
    /// memcg OOM: then it is the victim's own memcg (the OOM may have been
    /// in one of its ancestors).
    #[schemars(with = "Option<String>")]
    pub memcg_from: Option<MemcgFrom>,
    pub memcg_usage_bytes: Option<u64>,
    pub memcg_limit_bytes: Option<u64>,
    pub report_lines: Vec<Line>,
    /// Both the "invoked oom-killer" and the "Killed process" lines were
    /// captured (the kernel rate-limits reports: 10 per 5 s).
    pub report_complete: bool,
    pub report_lines_dropped: usize,
    /// Task dump rows (vm.oom_dump_tasks=1), largest RSS first, at most 10.
    pub candidates: Vec<CandidateOut>,
    pub candidates_total: usize,
    /// Every dump row's RSS summed, and what that total means next to the
    /// memcg limit: RSS counts pages shared copy-on-write (a fork pool)
    /// once per process, so the total can exceed the limit.
    pub candidates_rss_bytes: Option<u64>,
    pub candidates_note: Option<String>,
    pub victim_history: Vec<(u64, u64)>,
    pub victim_growth: Option<VictimGrowth>,
    pub top_grower: Option<Grower>,
    pub victim_was_top_grower: bool,
    /// Whether the choice mattered: "top grower", "nothing grew",
    /// "sibling" (the top grower was the victim's sibling doing the same
    /// work: not a wrong victim) or "wrong" (docs/verdict.md). Absent from
    /// recordings made before it was added; then `victim_was_top_grower`
    /// alone decides.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub victim_choice: Option<VictimChoice>,
    /// Up to 3 other processes in scope that grew at least 1 MiB in the
    /// window, in the verdict's order, with their RSS over it.
    pub growers: Vec<GrowerSeries>,
    /// The victim's pool, when it was in one.
    pub victim_group: Option<GroupInfo>,
    /// The OOM memcg's usage over the window, as (unix ms, bytes), when
    /// leaktrace followed it, and its rise.
    pub memcg_history: Vec<(u64, u64)>,
    pub memcg_growth: Option<MemcgGrowth>,
    pub lost_events: u64,
    pub timings_ms: Timings,
    /// RSS the kill released: the victim's RSS at the kill minus what the
    /// reaper left (all of it once the victim exited).
    pub freed_bytes: Option<u64>,
    #[schemars(with = "String")]
    pub reaper: ReaperOutcome,
    pub summary: String,
    pub stall: Stall,
    /// The evidence bundle written for the victim before the kill, if any.
    pub evidence_dir: Option<String>,
    /// When the top grower was not the victim: its newest bundle from
    /// before the kill, if it had one (the culprit's flame graph).
    #[serde(default)]
    pub grower_evidence_dir: Option<String>,
    /// What memory was made of at the kill, from the kernel's report (the
    /// memcg's memory.stat, or the host's Mem-Info and slab table).
    #[serde(default)]
    pub memory_at_oom: Option<super::oom_memory::OomMemory>,
    /// The host memory ledger at the kill (the newest reading before it):
    /// memory no process holds (tmpfs, shmem, slab) that may explain it.
    #[serde(default)]
    pub host_ledger: Option<crate::model::ledger::Ledger>,
    /// Processes around the victim (parent and ancestors, siblings, its
    /// memcg) that exited within 10 s after it, in order.
    #[serde(default)]
    pub after_kill_exits: Vec<crate::model::aftermath::AfterExit>,
    /// Closed before it was complete because more than 64 OOMs were
    /// being assembled at once.
    pub closed_early: bool,
    /// The task whose context the report lines were printed in, when it was
    /// not the invoker (it held the console lock and printed them for it).
    pub report_printed_by: Option<u32>,
    /// struct oom_control as oom_kill_process() received it, where the
    /// kernel allows the oom-control hook (fentry, else kprobe); null where
    /// only the report text is available.
    pub oom_control: Option<OomControl>,
    /// How long out_of_memory() ran with oom_lock held, measured by fexit
    /// or kretprobe; null where neither is allowed.
    pub oom_lock: Option<OomLock>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OomControl {
    /// "fentry oom_kill_process" or "kprobe oom_kill_process".
    #[schemars(with = "String")]
    pub source: ControlSource,
    /// global, cpuset, mempolicy or memcg (enum oom_constraint).
    #[schemars(with = "String")]
    pub constraint: ConstraintKind,
    /// The memory the OOM killer weighed candidates against, in pages.
    pub totalpages: u64,
    pub totalpages_bytes: u64,
    pub chosen_pid: u32,
    /// oom_badness() of the victim: its pages plus oom_score_adj scaled.
    pub chosen_points: i64,
    /// The OOM memcg's kernfs id and, when leaktrace knows it, its path.
    pub memcg_id: Option<u64>,
    pub memcg: Option<String>,
    pub order: i32,
    pub gfp_mask: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OomLock {
    /// "fexit out_of_memory" or "kretprobe out_of_memory".
    #[schemars(with = "String")]
    pub source: LockSource,
    pub held_ms: f64,
}

/// The separate line for a notable freeze.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StallLine<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ms: u64,
    pub victim_pid: Option<u32>,
    pub invoker_pid: u32,
    pub stall: &'a Stall,
}

impl Incident {
    /// The verdict's answer, also for a recording made before
    /// `victim_choice` was written.
    pub fn choice(&self) -> VictimChoice {
        match (self.victim_choice, self.victim_was_top_grower, &self.top_grower) {
            (Some(c), _, _) => c,
            (None, true, Some(_)) => VictimChoice::TopGrower,
            (None, true, None) => VictimChoice::NothingGrew,
            (None, false, _) => VictimChoice::Wrong,
        }
    }

    /// The OOM killer chose wrongly: another process grew more, and it was
    /// not a sibling doing the same work. What `oom_wrong_victim_total`
    /// counts.
    pub fn wrong_victim(&self) -> bool {
        self.choice() == VictimChoice::Wrong
    }

    pub fn stall_line(&self) -> Option<StallLine<'_>> {
        self.stall.notable.then(|| StallLine {
            kind: "oom_stall",
            ts_ms: self.ts_ms,
            victim_pid: self.victim.as_ref().map(|v| v.pid),
            invoker_pid: self.invoker.pid,
            stall: &self.stall,
        })
    }
}
