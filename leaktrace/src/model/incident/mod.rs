//! OOM incidents: the kernel events from the OOM ring buffer are assembled
//! into one incident per kill. Pure logic: the kernel records come in as
//! [`Record`]s and what leaktrace knows about processes comes through the
//! [`OomContext`] trait, so the assembly is tested without a kernel.
pub mod kernel_text;

use leaktrace_common::OomConstraint;

use crate::host::attribution::{attribute, Attribution};
use serde::Serialize;

pub use crate::kernel::oom_ring::Record;
use crate::kernel::oom_ring::{
    ConsoleLine, Constraint, Control, HookSource, LineEnd, LockHeld, OomEvent, ReaperStage, Victim as Marked,
};
use kernel_text::{Candidate, Report};

/// Most report lines kept per incident (a global OOM on a busy host prints
/// one line per task).
pub const MAX_LINES: usize = crate::limits::OOM_REPORT_LINES_MAX;
/// Incidents being assembled at once.
const MAX_PENDING: usize = crate::limits::PENDING_INCIDENTS_MAX;
/// How long after the kill to wait for the victim's exit and the reaper.
const SETTLE_NS: u64 = 10_000_000_000;
/// After the victim exited, how long to wait for the reaper to finish.
const AFTER_EXIT_NS: u64 = 1_000_000_000;
/// A report with no victim (nothing killable) is closed after this.
const NO_VICTIM_NS: u64 = 30_000_000_000;
/// Growth below this is not "growing" for the right/wrong victim question.
const MIN_GROWTH: f64 = 4.0 * 1024.0 * 1024.0;
/// The window before the OOM in which growth is compared.
pub const GROWTH_WINDOW_S: f64 = 60.0;

/// What leaktrace knew about a process just before the OOM.
#[derive(Debug, Clone, Default)]
pub struct ProcSnapshot {
    pub comm: String,
    pub cmdline: String,
    pub cgroup: String,
    /// (unix ms, rss bytes), oldest first: its samples, its birth and its
    /// peak at exit when the kernel reported them.
    pub history: Vec<(u64, u64)>,
    /// (unix ms, RSS bytes) at the birth of its current image.
    pub birth_ms: Option<(u64, u64)>,
    /// The pool it was in, when it was in one.
    pub group: Option<GroupInfo>,
    /// The kernel's exit record for it has been applied (comm, memcg,
    /// argv, birth and peak are final).
    pub exited: bool,
}

/// A pool (groups.rs): a parent and the children that run its image.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct GroupInfo {
    /// "pool".
    pub kind: &'static str,
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
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct GrowerSeries {
    pub pid: u32,
    pub comm: String,
    pub growth_bytes: u64,
    pub history: Vec<(u64, u64)>,
}

/// The OOM memcg's own usage over the window before the kill.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MemcgGrowth {
    pub from_bytes: u64,
    pub to_bytes: u64,
    pub secs: f64,
    pub limit_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
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

pub trait OomContext {
    /// What is known about `pid` (the process that started at `start_ns`,
    /// when given), alive or recently exited.
    fn snapshot(&self, pid: u32, start_ns: Option<u64>) -> Option<ProcSnapshot>;
    /// An OOM victim as the kernel kept it when it was marked: its birth
    /// and argv. The model learns of a process born after its last sample
    /// only from its exit record, which the sampling thread hands over at
    /// its next sample; on a loaded host that can be after the incident
    /// has waited long enough and closed. Told here, while the victim is
    /// alive, the model ranks it with its birth and names it with its
    /// command line whatever the timing.
    fn victim_marked(&self, _pid: u32, _life: &leaktrace_common::Life) {}
    /// The process that grew most in the `window_s` seconds before the
    /// kill, among those whose cgroup is `scope` or below it (None: all
    /// processes), the victim included with its RSS at the kill:
    /// `victim` = (pid, CLOCK_MONOTONIC seconds of the kill, RSS bytes).
    fn top_grower(
        &self,
        scope: Option<&str>,
        window_s: f64,
        victim: Option<(u32, f64, u64)>,
    ) -> Option<Grower>;
    /// The first `n` by the same order, each with its RSS over the window
    /// as (unix ms, bytes).
    fn top_growers(
        &self,
        scope: Option<&str>,
        window_s: f64,
        victim: Option<(u32, f64, u64)>,
        n: usize,
    ) -> Vec<(Grower, Vec<(u64, u64)>)> {
        let _ = n;
        self.top_grower(scope, window_s, victim)
            .map(|g| (g, Vec::new()))
            .into_iter()
            .collect()
    }
    /// A memcg's limit and usage as (unix ms, bytes) between two
    /// CLOCK_MONOTONIC times in seconds, when leaktrace followed it.
    fn memcg_history(&self, _path: &str, _from_s: f64, _to_s: f64) -> Option<(u64, Vec<(u64, u64)>)> {
        None
    }
    /// The path of the memcg with this kernfs id, when leaktrace knows it.
    fn memcg_path(&self, _id: u64) -> Option<String> {
        None
    }
    /// CLOCK_MONOTONIC ns (the kernel's timestamps) to unix ms.
    fn mono_to_unix_ms(&self, ns: u64) -> u64;
    fn page_size(&self) -> u64;
    /// Processes in `scope` with time in reclaim in the `window_s` seconds
    /// before `at_ns` (CLOCK_MONOTONIC; None: now) and the sample after it:
    /// (pid, comm, ms), from the kernel's per-process counters.
    fn reclaimers(
        &self,
        _scope: Option<&str>,
        _window_s: f64,
        _at_ns: Option<u64>,
    ) -> Vec<(u32, String, f64)> {
        Vec::new()
    }
    /// PSI memory totals (some, full) in µs, and CLOCK_MONOTONIC ns now.
    fn psi(&self) -> Option<(u64, u64, u64)> {
        None
    }
    /// Consoles, printk levels and OOM sysctls, for the diagnosis.
    fn host(&self) -> Option<crate::host::facts::Facts> {
        None
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Victim {
    #[serde(flatten)]
    pub attribution: Attribution,
    pub pid: u32,
    pub comm: String,
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

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Line {
    pub ts_ns: u64,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Timings {
    pub to_kill: Option<f64>,
    pub to_exit: Option<f64>,
    pub to_reaped: Option<f64>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct VictimGrowth {
    pub from_bytes: u64,
    pub to_bytes: u64,
    pub secs: f64,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StalledTask {
    pub pid: u32,
    pub comm: String,
    pub stalled_ms: f64,
    /// "reclaim during the report" (kernel events) or "reclaim around the
    /// OOM" (per-process counters sampled by watch).
    pub source: &'static str,
}

/// How long the OOM froze things, and why (seed 004).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Stall {
    /// From "invoked oom-killer" to the victim being marked.
    pub report_ms: Option<f64>,
    /// The part of report_ms spent writing to consoles.
    pub console_ms: Option<f64>,
    pub console_method: &'static str,
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

/// Gaps between report lines longer than this are counted as console time
/// (formatting a line takes microseconds; a console write of ~100 bytes
/// takes about a millisecond even at 1 Mbit/s).
pub const CONSOLE_GAP_FLOOR_NS: u64 = 100_000;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Incident {
    #[serde(rename = "type")]
    pub kind: &'static str,
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
    pub memcg_from: Option<&'static str>,
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
    pub reaper: &'static str,
    pub summary: String,
    pub stall: Stall,
    /// The evidence bundle written for the victim before the kill, if any.
    pub evidence_dir: Option<String>,
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

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct OomControl {
    /// "fentry oom_kill_process" or "kprobe oom_kill_process".
    pub source: &'static str,
    /// global, cpuset, mempolicy or memcg (enum oom_constraint).
    pub constraint: &'static str,
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

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct OomLock {
    /// "fexit out_of_memory" or "kretprobe out_of_memory".
    pub source: &'static str,
    pub held_ms: f64,
}

fn oom_control_out(r: &Record<Control>, ctx: &dyn OomContext, page: u64) -> OomControl {
    let c = &r.event;
    let constraint = match c.constraint {
        Constraint::Known(OomConstraint::None) => "global",
        Constraint::Known(OomConstraint::Cpuset) => "cpuset",
        Constraint::Known(OomConstraint::MemoryPolicy) => "mempolicy",
        Constraint::Known(OomConstraint::Memcg) => "memcg",
        Constraint::Unknown(_) => "unknown",
    };
    OomControl {
        source: match c.source {
            HookSource::Kprobe => "kprobe oom_kill_process",
            HookSource::Trampoline => "fentry oom_kill_process",
        },
        constraint,
        totalpages: c.totalpages,
        totalpages_bytes: c.totalpages.saturating_mul(page),
        chosen_pid: r.target,
        chosen_points: c.chosen_points,
        memcg_id: c.memcg_id,
        memcg: c.memcg_id.and_then(|id| ctx.memcg_path(id)),
        order: c.order,
        gfp_mask: format!("{:#x}", c.gfp_mask),
    }
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

#[derive(Debug, Default)]
struct Pending {
    invoker_tid: u32,
    /// The invoker's process, from the kernel's records.
    invoker_tgid: Option<u32>,
    invoker_comm: String,
    start_ns: Option<u64>,
    lines: Vec<Line>,
    lines_dropped: usize,
    /// The last line was a fragment that the next one continues.
    last_open: bool,
    report_done: bool,
    /// oom:mark_victim (its `ts_ns` is the time of the kill).
    mark: Option<Record<Marked>>,
    snapshot: Option<ProcSnapshot>,
    sigkill: Option<u64>,
    exit_ns: Option<u64>,
    reap_finish_ns: Option<u64>,
    reap_skipped: bool,
    reaped: Option<kernel_text::Reaped>,
    lost_before: u64,
    created_ns: u64,
    /// (tgid, comm, begin ns, end ns) of reclaim episodes near the report.
    stalls: Vec<(u32, String, u64, u64)>,
    psi_start: Option<(u64, u64, u64)>,
    /// Consoles and printk levels as they were when the report started.
    host: Option<crate::host::facts::Facts>,
    /// The task the report lines came from, when it was not the invoker.
    report_task: Option<u32>,
    /// struct oom_control from the oom-control hook (OOM_CONTROL record).
    control: Option<Record<Control>>,
    /// out_of_memory()'s run with oom_lock held (OOM_LOCK_HELD record).
    lock_held: Option<Record<LockHeld>>,
}

impl Pending {
    fn victim_pid(&self) -> Option<u32> {
        self.mark.as_ref().map(|r| r.target)
    }
}

pub struct Assembler {
    /// After the victim exited, wait at least until its exit record has
    /// reached the model (one sample later at most), and this long in any
    /// case. Default AFTER_EXIT_NS.
    pub after_exit_ns: u64,
    pending: Vec<Pending>,
    /// Pending incidents pushed out by MAX_PENDING newer ones: they are
    /// closed early (as incomplete incidents), never dropped.
    evicted: Vec<Pending>,
    pub closed_early: u64,
}

fn mib(b: f64) -> String {
    crate::fmt::bytes(b)
}

impl Default for Assembler {
    fn default() -> Self {
        Self {
            after_exit_ns: AFTER_EXIT_NS,
            pending: Vec::new(),
            evicted: Vec::new(),
            closed_early: 0,
        }
    }
}

impl Assembler {
    pub fn new() -> Self {
        Self::default()
    }

    fn by_invoker(&mut self, tid: u32) -> Option<&mut Pending> {
        self.pending
            .iter_mut()
            .rev()
            .find(|p| p.invoker_tid == tid && !p.report_done)
    }

    fn by_victim(&mut self, pid: u32) -> Option<&mut Pending> {
        self.pending
            .iter_mut()
            .rev()
            .find(|p| p.victim_pid() == Some(pid))
    }

    fn open(&mut self, tid: u32, tgid: u32, comm: &str, ts: u64, lost: u64) -> &mut Pending {
        if self.pending.len() >= MAX_PENDING {
            // Closed now with what it has: a kill is never lost for want
            // of room.
            self.evicted.push(self.pending.remove(0));
            self.closed_early += 1;
            crate::limits::PENDING_INCIDENTS.hit();
        }
        self.pending.push(Pending {
            invoker_tid: tid,
            invoker_tgid: (tgid != 0).then_some(tgid),
            invoker_comm: comm.to_string(),
            lost_before: lost,
            created_ns: ts,
            ..Default::default()
        });
        self.pending.last_mut().unwrap()
    }

    /// Feeds one kernel record. `lost` is the kernel's running count of OOM
    /// events that did not fit in the ring buffer.
    ///
    /// The `match` has no `_` arm on purpose: a new kind of OOM record
    /// (a new `OomEvent` variant) does not compile until it is handled here.
    pub fn handle(&mut self, r: Record, ctx: &dyn OomContext, lost: u64) {
        let event = r.event.clone();
        match event {
            OomEvent::Line(l) => self.console(r.with(l), ctx, lost),
            OomEvent::MarkVictim(v) => self.mark_victim(r.with(v), ctx, lost),
            OomEvent::Sigkill { .. } => {
                if let Some(p) = self.by_invoker(r.pid) {
                    p.sigkill.get_or_insert(r.ts_ns);
                }
            }
            OomEvent::VictimExit => {
                if let Some(p) = self.by_victim(r.target) {
                    p.exit_ns.get_or_insert(r.ts_ns);
                }
            }
            OomEvent::Reaper(ReaperStage::Finish) => {
                if let Some(p) = self.by_victim(r.target) {
                    p.reap_finish_ns.get_or_insert(r.ts_ns);
                }
            }
            OomEvent::Reaper(ReaperStage::Skip) => {
                if let Some(p) = self.by_victim(r.target) {
                    p.reap_skipped = true;
                }
            }
            // The reaper's wake-up and start add nothing that its finish
            // (or skip) does not say.
            OomEvent::Reaper(ReaperStage::Wake | ReaperStage::Start) => {}
            OomEvent::ReclaimStall(st) => {
                let (b, e) = (st.begin_ns, st.end_ns);
                // Every report whose time is near the episode.
                for p in self.pending.iter_mut() {
                    let start = p.start_ns.unwrap_or(p.created_ns);
                    let end = p.mark.as_ref().map(|m| m.ts_ns).unwrap_or(start) + 2_000_000_000;
                    if e + 2_000_000_000 >= start && b <= end && p.stalls.len() < 4096 {
                        p.stalls.push((r.tgid, r.comm.clone(), b, e));
                    }
                }
            }
            OomEvent::Control(c) => {
                // oom_kill_process() runs before the victim is marked, in
                // the invoker: the mark that follows finds this pending.
                let tid = r.pid;
                let p = match self.by_invoker(tid) {
                    Some(p) if p.mark.is_none() && p.control.is_none() => p,
                    _ => self.open(tid, r.tgid, &r.comm, r.ts_ns, lost),
                };
                p.control = Some(r.with(c));
            }
            OomEvent::LockHeld(l) => {
                // out_of_memory() returned after the kill: the newest
                // incident of this invoker that began inside that run.
                let (b, e) = (l.enter_ns, l.return_ns);
                if let Some(p) = self.pending.iter_mut().rev().find(|p| {
                    (p.invoker_tid == r.target || p.report_task == Some(r.target))
                        && p.lock_held.is_none()
                        && (b..=e).contains(&p.mark.as_ref().map(|m| m.ts_ns).unwrap_or(p.created_ns))
                }) {
                    p.lock_held = Some(r.with(l));
                }
            }
        }
    }

    fn mark_victim(&mut self, r: Record<Marked>, ctx: &dyn OomContext, lost: u64) {
        let tid = r.pid;
        let victim = r.target;
        let p = match self.by_invoker(tid) {
            Some(p) if p.mark.is_none() => p,
            // A rate-limited report prints no header: the kill is
            // still an incident.
            _ => self.open(tid, r.tgid, &r.comm, r.ts_ns, lost),
        };
        if let Some(l) = r.event.life.as_ref() {
            ctx.victim_marked(victim, l);
        }
        // Known now, while the victim is certainly alive; the
        // verdict is made when the incident is complete.
        p.snapshot = ctx.snapshot(victim, victim_start(&r));
        p.mark = Some(r);
    }

    fn console(&mut self, r: Record<ConsoleLine>, ctx: &dyn OomContext, lost: u64) {
        let starts = r.event.starts;
        let text = &r.event.text;
        if let Some(reaped) = kernel_text::parse_reaped(text) {
            if let Some(p) = self.by_victim(reaped.pid) {
                p.reaped = Some(reaped);
            }
            return;
        }
        let killed = kernel_text::parse_killed(text);
        let tid = r.pid;
        let p = if starts {
            let comm = kernel_text::parse_invoked(text)
                .map(|i| i.comm)
                .unwrap_or_else(|| r.comm.clone());
            let psi = ctx.psi();
            // oom_kill_process() is entered just before it prints the
            // report: its struct oom_control record (the other ring, often
            // read first) already opened this incident.
            let opened = self.pending.iter().rposition(|p| {
                p.invoker_tid == tid
                    && p.control.is_some()
                    && p.lines.is_empty()
                    && p.mark.is_none()
                    && p.start_ns.is_none()
            });
            let p = match opened {
                Some(i) => {
                    let p = &mut self.pending[i];
                    p.invoker_comm = comm;
                    p
                }
                None => self.open(tid, r.tgid, &comm, r.ts_ns, lost),
            };
            p.start_ns = Some(r.ts_ns);
            p.psi_start = psi;
            p.host = ctx.host();
            p
        } else if let Some(p) = self
            .pending
            .iter_mut()
            .rev()
            .find(|p| p.invoker_tid == tid && !p.report_done)
        {
            p
        } else if let Some(k) = &killed {
            // The "Killed process" line of a rate-limited report.
            match self
                .pending
                .iter_mut()
                .rev()
                .find(|p| p.victim_pid() == Some(k.pid) && !p.report_done)
            {
                Some(p) => p,
                None => return,
            }
        } else {
            return;
        };
        let ConsoleLine { end, text, .. } = r.event;
        // pr_cont fragments (e.g. the oom-kill:constraint= line is printed
        // in pieces) are joined back into the line dmesg would show.
        let continues =
            p.last_open || (end == LineEnd::Unknown && text.starts_with(',') && !p.lines.is_empty());
        let n = p.lines.len();
        match p.lines.last_mut() {
            Some(last) if continues && last.text.len() + text.len() <= 4096 => last.text.push_str(&text),
            _ if n < MAX_LINES => p.lines.push(Line { ts_ns: r.ts_ns, text }),
            _ => {
                p.lines_dropped += 1;
                crate::limits::OOM_REPORT_LINES.hit();
            }
        }
        p.last_open = end == LineEnd::Fragment;
        if killed.is_some() {
            p.report_done = true;
        }
    }

    /// A report whose lines came from another task than the one that marked
    /// the victim (another task held the console lock and printed them), or
    /// that were handled after the victim's mark, ends up as two pending
    /// incidents: one with the victim and no lines, one with the lines and
    /// no victim. The lines name the victim ("oom-kill:...,pid=N",
    /// "Killed process N"): join them into the first.
    fn merge_split_reports(&mut self) {
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].mark.is_some() || self.pending[i].lines.is_empty() {
                i += 1;
                continue;
            }
            let rep = kernel_text::parse(self.pending[i].lines.iter().map(|l| l.text.as_str()));
            let named = rep
                .killed
                .as_ref()
                .map(|k| k.pid)
                .or_else(|| rep.constraint.as_ref().and_then(|c| c.pid));
            let target = named.and_then(|v| {
                self.pending
                    .iter()
                    .position(|p| p.victim_pid() == Some(v) && p.lines.is_empty())
            });
            match target {
                Some(t) => {
                    let lines = self.pending.remove(i);
                    let t = if t > i { t - 1 } else { t };
                    let p = &mut self.pending[t];
                    p.start_ns = lines.start_ns;
                    p.psi_start = lines.psi_start.or(p.psi_start);
                    p.host = lines.host.or(p.host.take());
                    p.lines = lines.lines;
                    p.lines_dropped = lines.lines_dropped;
                    p.report_done = lines.report_done;
                    p.stalls.extend(lines.stalls);
                    p.report_task = Some(lines.invoker_tid);
                    p.control = lines.control.or(p.control.take());
                    p.lock_held = lines.lock_held.or(p.lock_held.take());
                }
                None => i += 1,
            }
        }
    }

    /// Incidents that are complete, or have waited long enough.
    pub fn poll(&mut self, now_ns: u64, ctx: &dyn OomContext, lost: u64) -> Vec<Incident> {
        let mut out: Vec<Incident> = std::mem::take(&mut self.evicted)
            .into_iter()
            .map(|p| {
                let mut i = finish(p, ctx, lost);
                i.closed_early = true;
                i
            })
            .collect();
        self.merge_split_reports();
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            let ready = match &p.mark {
                Some(r) => {
                    let mark_ns = &r.ts_ns;
                    // Reaped (or the reaper gave up) and the victim's exit
                    // record is in the model; or long enough after the exit.
                    let settled = match p.exit_ns {
                        Some(exit) => {
                            let known = || ctx.snapshot(r.target, victim_start(r)).is_some_and(|s| s.exited);
                            ((p.reap_finish_ns.is_some() || p.reap_skipped) && known())
                                || now_ns >= exit + self.after_exit_ns
                        }
                        None => false,
                    };
                    (p.report_done || p.start_ns.is_none()) && settled || now_ns >= mark_ns + SETTLE_NS
                }
                None => now_ns >= p.created_ns + NO_VICTIM_NS,
            };
            if ready {
                let p = self.pending.remove(i);
                // oom_kill_process() entered but nothing followed (the
                // chosen task was already exiting): not a kill.
                if p.mark.is_none() && p.lines.is_empty() && p.control.is_some() {
                    continue;
                }
                out.push(finish(p, ctx, lost));
            } else {
                i += 1;
            }
        }
        out
    }
}

/// The victim's start time as the kernel kept it: with its pid, its
/// identity in the model.
fn victim_start(r: &Record<Marked>) -> Option<u64> {
    r.event.life.map(|l| l.start_ns).filter(|s| *s != 0)
}

fn ms_between(a: Option<u64>, b: Option<u64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b >= a => Some((b - a) as f64 / 1e6),
        _ => None,
    }
}

fn candidates_out(c: &[Candidate], page: u64) -> Vec<CandidateOut> {
    let mut v: Vec<&Candidate> = c.iter().collect();
    v.sort_by_key(|c| std::cmp::Reverse(c.rss.unwrap_or(0)));
    v.into_iter()
        .take(10)
        .map(|c| CandidateOut {
            pid: c.pid,
            uid: c.uid,
            tgid: c.tgid,
            name: c.name.clone(),
            rss_bytes: c.rss.map(|v| v * page),
            rss_anon_bytes: c.rss_anon.map(|v| v * page),
            rss_file_bytes: c.rss_file.map(|v| v * page),
            rss_shmem_bytes: c.rss_shmem.map(|v| v * page),
            total_vm_bytes: c.total_vm.map(|v| v * page),
            pgtables_bytes: c.pgtables_bytes,
            swapents: c.swapents,
            oom_score_adj: c.oom_score_adj,
        })
        .collect()
}

fn finish(p: Pending, ctx: &dyn OomContext, lost: u64) -> Incident {
    let rep: Report = kernel_text::parse(p.lines.iter().map(|l| l.text.as_str()));
    let page = ctx.page_size();
    let mark_ns = p.mark.as_ref().map(|m| m.ts_ns);
    // Asked again now: a victim that lived less than one sample was
    // unknown at the kill, and one that moved to another memcg just before
    // it was killed had its old one; its exit record (comm, memcg, argv,
    // birth) has arrived since. The snapshot from the kill stays if the
    // victim is no longer known.
    let fresh = p
        .mark
        .as_ref()
        .and_then(|r| ctx.snapshot(r.target, victim_start(r)));
    let snap = match (fresh, &p.snapshot) {
        // The one from the kill knew the memcg and the new one does not
        // (a memcg too new to be named yet): keep its memcg.
        (Some(mut f), Some(old)) if f.cgroup.is_empty() => {
            f.cgroup.clone_from(&old.cgroup);
            f
        }
        (Some(f), _) => f,
        (None, old) => old.clone().unwrap_or_default(),
    };
    // A memcg OOM whose report was rate-limited has no constraint line;
    // its "Memory cgroup out of memory" kill line still says it was one,
    // and the victim's memcg is the best name for it.
    let memcg_kill = rep
        .killed
        .as_ref()
        .is_some_and(|k| k.message.starts_with("Memory cgroup"));
    let constraint = rep
        .constraint
        .as_ref()
        .map(|c| c.kind.clone())
        .unwrap_or_else(|| {
            if memcg_kill {
                "memcg".into()
            } else {
                "unknown".into()
            }
        });
    let control = p.control.as_ref().map(|r| oom_control_out(r, ctx, page));
    // The report text is what this host has; where the kernel gave
    // struct oom_control and the report was cut (rate limit), it fills in.
    let constraint = match &control {
        Some(c) if constraint == "unknown" || (rep.constraint.is_none() && c.constraint != "global") => {
            c.constraint.to_string()
        }
        _ => constraint,
    };
    let control_memcg = control
        .as_ref()
        .filter(|c| c.constraint == "memcg")
        .and_then(|c| c.memcg.clone());
    let (memcg, memcg_from) = match rep.constraint.as_ref() {
        Some(c) if c.kind == "memcg" => (c.oom_memcg.clone(), c.oom_memcg.as_ref().map(|_| "report")),
        Some(_) => (None, None),
        None if control_memcg.is_some() => (control_memcg, Some("oom_control")),
        None if memcg_kill && !snap.cgroup.is_empty() => (Some(snap.cgroup.clone()), Some("victim")),
        None => (None, None),
    };
    let victim = p.mark.as_ref().map(|r| {
        let m = &r.event;
        let comm = if !snap.comm.is_empty() {
            snap.comm.clone()
        } else if let Some(k) = rep.killed.as_ref().filter(|k| k.pid == r.target) {
            k.comm.clone()
        } else {
            rep.constraint
                .as_ref()
                .and_then(|c| c.task.clone())
                .unwrap_or_default()
        };
        let cgroup = if snap.cgroup.is_empty() {
            rep.constraint
                .as_ref()
                .and_then(|c| c.task_memcg.clone())
                .unwrap_or_default()
        } else {
            snap.cgroup.clone()
        };
        Victim {
            attribution: attribute(&cgroup),
            pid: r.target,
            comm,
            cmdline: snap.cmdline.clone(),
            cgroup,
            rss_anon_bytes: m.rss_anon_bytes,
            rss_file_bytes: m.rss_file_bytes,
            rss_shmem_bytes: m.rss_shmem_bytes,
            total_vm_bytes: m.total_vm_bytes,
            uid: m.uid,
            pgtables_bytes: m.pgtables_bytes,
            oom_score_adj: m.oom_score_adj,
        }
    });
    let victim_rss = victim
        .as_ref()
        .map(|v| v.rss_anon_bytes + v.rss_file_bytes + v.rss_shmem_bytes);
    let mut history = snap.history.clone();
    if let (Some(rss), Some(t)) = (victim_rss, mark_ns) {
        // Samples after the kill see a victim being torn down (the reaper
        // frees its memory): they are not part of its growth.
        let kill_ms = ctx.mono_to_unix_ms(t);
        history.retain(|p| p.0 < kill_ms);
        history.push((kill_ms, rss));
    }
    // The victim's own rise over the window, with its RSS at the kill.
    let victim_growth = victim_growth(&history, snap.birth_ms);
    // The verdict: every process in the OOM's scope, the victim included
    // with its RSS at the kill, compared over the same window ending at
    // the kill (docs/verdict.md).
    let scope = memcg.clone();
    let ranked = victim
        .as_ref()
        .zip(mark_ns)
        .map(|(v, t)| {
            ctx.top_growers(
                scope.as_deref(),
                GROWTH_WINDOW_S,
                Some((v.pid, t as f64 / 1e9, victim_rss.unwrap_or(0))),
                4,
            )
        })
        .unwrap_or_default();
    let grower = ranked
        .first()
        .map(|g| g.0.clone())
        .filter(|g| g.growth_bytes as f64 >= MIN_GROWTH);
    let victim_pid = victim.as_ref().map(|v| v.pid);
    let growers: Vec<GrowerSeries> = ranked
        .into_iter()
        .filter(|(g, _)| Some(g.pid) != victim_pid && g.growth_bytes >= 1 << 20)
        .take(3)
        .map(|(g, history)| GrowerSeries {
            pid: g.pid,
            comm: g.comm,
            growth_bytes: g.growth_bytes,
            history,
        })
        .collect();
    let (memcg_history, memcg_growth) = memcg_window(
        ctx,
        memcg.as_deref(),
        mark_ns,
        rep.memcg_usage_kb.map(|k| k * 1024),
    );
    // True when the victim grew the most, or when nothing in scope grew
    // notably (then top_grower is null): never true with another pid.
    let victim_was_top_grower = match (&grower, &victim) {
        (None, _) => true,
        (Some(g), Some(v)) => g.pid == v.pid,
        (Some(_), None) => false,
    };
    let start = p.start_ns.or(p.sigkill).or(mark_ns);
    let timings = Timings {
        to_kill: ms_between(start, mark_ns),
        to_exit: ms_between(start, p.exit_ns),
        to_reaped: ms_between(start, p.reap_finish_ns),
    };
    let freed_bytes = victim.as_ref().and_then(|v| {
        let before = v.rss_anon_bytes + v.rss_file_bytes + v.rss_shmem_bytes;
        if p.exit_ns.is_some() {
            Some(before)
        } else {
            p.reaped.as_ref().map(|r| {
                let after =
                    (r.anon_rss_kb.unwrap_or(0) + r.file_rss_kb.unwrap_or(0) + r.shmem_rss_kb.unwrap_or(0))
                        * 1024;
                before.saturating_sub(after)
            })
        }
    });
    let reaper = if p.reap_finish_ns.is_some() {
        "reaped"
    } else if p.reap_skipped {
        "skipped"
    } else {
        "not seen"
    };
    let victim_group = snap.group.clone();
    let candidates_rss_bytes = (!rep.candidates.is_empty()).then(|| {
        rep.candidates
            .iter()
            .map(|c| c.rss.unwrap_or(0) * page)
            .sum::<u64>()
    });
    let candidates_note = match (candidates_rss_bytes, rep.memcg_limit_kb.map(|k| k * 1024)) {
        (Some(sum), Some(limit)) if sum > limit => Some(format!(
            "the {} tasks in the dump add up to {} RSS, more than the {} limit: RSS counts pages shared \
             copy-on-write (a fork pool) once per process; the memcg charges them once",
            rep.candidates.len(),
            mib(sum as f64),
            mib(limit as f64)
        )),
        (Some(sum), Some(limit)) => Some(format!(
            "the {} tasks in the dump add up to {} RSS of the {} limit (the rest is page cache and kernel memory \
             charged to the memcg)",
            rep.candidates.len(),
            mib(sum as f64),
            mib(limit as f64)
        )),
        _ => None,
    };
    let summary = summarize(
        &constraint,
        memcg.as_deref(),
        &victim,
        &victim_growth,
        &grower,
        victim_was_top_grower,
    ) + &context_sentences(victim_group.as_ref(), memcg_growth.as_ref());
    let stall = stall(&p, ctx, mark_ns, memcg.as_deref(), victim.as_ref().map(|v| v.pid));
    let invoked = rep.invoked.clone();
    let oom_lock = p.lock_held.as_ref().map(|r| OomLock {
        source: match r.event.source {
            HookSource::Kprobe => "kretprobe out_of_memory",
            HookSource::Trampoline => "fexit out_of_memory",
        },
        held_ms: r.event.return_ns.saturating_sub(r.event.enter_ns) as f64 / 1e6,
    });
    let invoker_pid = p
        .mark
        .as_ref()
        .map(|m| m.tgid)
        .filter(|t| *t != 0)
        .or(p.invoker_tgid)
        .unwrap_or(p.invoker_tid);
    let invoker_attr = ctx
        .snapshot(invoker_pid, None)
        .map(|s| attribute(&s.cgroup))
        .unwrap_or_default();
    Incident {
        kind: "oom_kill",
        ts_ms: ctx.mono_to_unix_ms(mark_ns.or(p.start_ns).unwrap_or(p.created_ns)),
        invoker: Invoker {
            attribution: invoker_attr,
            pid: invoker_pid,
            tid: p.invoker_tid,
            comm: invoked
                .as_ref()
                .map(|i| i.comm.clone())
                .unwrap_or(p.invoker_comm.clone()),
            gfp_mask: invoked.as_ref().map(|i| i.gfp_mask.clone()),
            order: invoked.as_ref().and_then(|i| i.order),
        },
        victim,
        constraint,
        memcg,
        memcg_from,
        memcg_usage_bytes: rep.memcg_usage_kb.map(|v| v * 1024),
        memcg_limit_bytes: rep.memcg_limit_kb.map(|v| v * 1024),
        report_complete: rep.invoked.is_some() && rep.killed.is_some(),
        report_lines_dropped: p.lines_dropped,
        report_lines: p.lines,
        candidates: candidates_out(&rep.candidates, page),
        candidates_total: rep.candidates.len(),
        candidates_rss_bytes,
        candidates_note,
        victim_history: history,
        victim_growth,
        top_grower: grower,
        victim_was_top_grower,
        growers,
        victim_group,
        memcg_history,
        memcg_growth,
        lost_events: lost.saturating_sub(p.lost_before),
        timings_ms: timings,
        freed_bytes,
        reaper,
        summary,
        stall,
        evidence_dir: None,
        closed_early: false,
        report_printed_by: p.report_task,
        oom_control: control,
        oom_lock,
    }
}

/// The victim's largest rise in the growth window: (from, to, seconds).
/// None when it did not grow notably.
fn victim_growth(history: &[(u64, u64)], birth: Option<(u64, u64)>) -> Option<VictimGrowth> {
    let end = history.last()?.0;
    let start = end.saturating_sub((GROWTH_WINDOW_S * 1000.0) as u64);
    let mut pts: Vec<(u64, u64)> = history.iter().copied().filter(|h| h.0 >= start).collect();
    if let Some(b) = birth.filter(|b| b.0 >= start && !pts.contains(b)) {
        let at = pts.partition_point(|p| p.0 < b.0);
        pts.insert(at, b);
    }
    let (mut lo, mut best) = (pts.first()?, None::<((u64, u64), (u64, u64))>);
    for p in &pts {
        if p.1 < lo.1 {
            lo = p;
        }
        if p.1 > lo.1 && best.is_none_or(|(a, b)| p.1 - lo.1 > b.1 - a.1) {
            best = Some((*lo, *p));
        }
    }
    let (a, b) = best?;
    ((b.1 - a.1) as f64 >= MIN_GROWTH).then(|| VictimGrowth {
        from_bytes: a.1,
        to_bytes: b.1,
        secs: b.0.saturating_sub(a.0) as f64 / 1000.0,
    })
}

fn stall(
    p: &Pending,
    ctx: &dyn OomContext,
    mark_ns: Option<u64>,
    memcg: Option<&str>,
    victim: Option<u32>,
) -> Stall {
    let report_ms = ms_between(p.start_ns, mark_ns);
    // Console time: the gaps between consecutive report lines (printed by
    // the invoking task, which writes each line to the legacy consoles
    // before it formats the next), less a floor for the formatting itself,
    // counted only after lines that the console printed: those whose level
    // is below console_loglevel. Counting every gap would turn preemption
    // during a sub-millisecond report into "console time".
    let host_then = p.host.clone();
    let levels = host_then.as_ref().and_then(|h| h.printk);
    let end = mark_ns.unwrap_or(u64::MAX);
    let upto: Vec<&Line> = p.lines.iter().filter(|l| l.ts_ns <= end).collect();
    let line_levels = report_line_levels(
        upto.iter().map(|l| l.text.as_str()),
        levels.map(|l| l.default_message_loglevel).unwrap_or(4),
    );
    let console_ns: u64 = upto
        .windows(2)
        .zip(&line_levels)
        .filter(|(_, lvl)| levels.is_none_or(|l| **lvl < l.console_loglevel))
        .map(|(w, _)| {
            w[1].ts_ns
                .saturating_sub(w[0].ts_ns)
                .saturating_sub(CONSOLE_GAP_FLOOR_NS)
        })
        .sum();
    let console_ms = (p.start_ns.is_some() && upto.len() >= 2).then_some(console_ns as f64 / 1e6);
    let find = |pred: &dyn Fn(&str) -> bool| p.lines.iter().find(|l| pred(&l.text)).map(|l| l.ts_ns);
    let dump_tasks_ms = ms_between(
        find(&|t: &str| t.starts_with("Tasks state")),
        find(&|t: &str| t.starts_with("oom-kill:")),
    );
    // Stalled tasks: kernel reclaim episodes near the report, and the
    // per-process reclaim counters around it. Not the invoker (its time is
    // the report) and not the victim.
    let mut tasks: Vec<StalledTask> = Vec::new();
    let invoker_tgid = p
        .mark
        .as_ref()
        .map(|m| m.tgid)
        .or(p.invoker_tgid)
        .unwrap_or(p.invoker_tid);
    for (tgid, comm, b, e) in &p.stalls {
        if *tgid == invoker_tgid || Some(*tgid) == victim {
            continue;
        }
        let ms = e.saturating_sub(*b) as f64 / 1e6;
        match tasks.iter_mut().find(|t| t.pid == *tgid) {
            Some(t) => t.stalled_ms += ms,
            None => tasks.push(StalledTask {
                pid: *tgid,
                comm: comm.clone(),
                stalled_ms: ms,
                source: "reclaim during the report",
            }),
        }
    }
    for (pid, comm, ms) in ctx.reclaimers(memcg, 3.0, mark_ns.or(p.start_ns)) {
        if pid == invoker_tgid || Some(pid) == victim {
            continue;
        }
        match tasks.iter_mut().find(|t| t.pid == pid) {
            Some(t) => t.stalled_ms = t.stalled_ms.max(ms),
            None => tasks.push(StalledTask {
                pid,
                comm,
                stalled_ms: ms,
                source: "reclaim around the OOM",
            }),
        }
    }
    tasks.sort_by(|a, b| b.stalled_ms.total_cmp(&a.stalled_ms));
    let stalled_ms_total: f64 = tasks.iter().map(|t| t.stalled_ms).fold(0.0, |a, b| a + b);
    let stalled_tasks_count = tasks.len();
    tasks.truncate(20);
    let psi_end = ctx.psi();
    let (psi_some, psi_full, psi_window_ms) = match (p.psi_start, psi_end) {
        (Some((s0, f0, t0)), Some((s1, f1, t1))) => (
            Some(s1.saturating_sub(s0)),
            Some(f1.saturating_sub(f0)),
            Some(t1.saturating_sub(t0) as f64 / 1e6),
        ),
        _ => (None, None, None),
    };
    let host = host_then.or_else(|| ctx.host());
    let console_loglevel = host.as_ref().and_then(|h| h.printk).map(|p| p.console_loglevel);
    let consoles: Vec<String> = host
        .as_ref()
        .map(|h| {
            h.consoles
                .iter()
                .filter(|c| c.enabled)
                .map(|c| match c.baud {
                    Some(b) => format!("{} ({b} baud)", c.name),
                    None => c.name.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    // The dump this OOM printed, not the host's task count: a memcg OOM
    // lists the memcg's tasks only.
    let dump_rows = p
        .lines
        .iter()
        .skip_while(|l| !l.text.starts_with("Tasks state"))
        .skip(2)
        .take_while(|l| l.text.trim_start().starts_with('['))
        .count();
    let recommendations = host
        .clone()
        .map(|mut h| {
            h.tasks = dump_rows as u64;
            crate::host::facts::recommendations(&h)
        })
        .unwrap_or_default();
    let diagnosis = diagnose(
        report_ms,
        console_ms,
        &consoles,
        console_loglevel,
        stalled_tasks_count,
        stalled_ms_total,
    );
    Stall {
        report_ms,
        console_ms,
        console_method: "line-gap estimate: gaps between report lines in the invoking task, after the lines \
                         the console printed (level below console_loglevel), less 100 µs each",
        dump_tasks_ms,
        notable: report_ms.unwrap_or(0.0) >= 500.0 || stalled_ms_total >= 1000.0,
        stalled_tasks: tasks,
        stalled_tasks_count,
        stalled_ms_total,
        psi_memory_some_us: psi_some,
        psi_memory_full_us: psi_full,
        psi_window_ms,
        console_loglevel,
        consoles,
        diagnosis,
        recommendations,
    }
}

/// The printk level of each report line, from where it sits in the report
/// (the kernel prints the header at KERN_WARNING, the stack at the default
/// message level, memory state, task dump and the oom-kill: line at
/// KERN_INFO, and "Killed process" at KERN_ERR).
pub fn report_line_levels<'a>(lines: impl Iterator<Item = &'a str>, default_level: u8) -> Vec<u8> {
    let mut in_stack = false;
    lines
        .map(|l| {
            if l.contains(" invoked oom-killer:") {
                in_stack = true;
                4
            } else if l.contains("Killed process ") {
                3
            } else if l.starts_with("oom-kill:")
                || l.starts_with("Mem-Info")
                || l.starts_with("memory: usage")
                || l.starts_with("Tasks state")
            {
                in_stack = false;
                6
            } else if in_stack {
                default_level
            } else {
                6
            }
        })
        .collect()
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

/// One sentence in plain words.
pub fn diagnose(
    report_ms: Option<f64>,
    console_ms: Option<f64>,
    consoles: &[String],
    console_loglevel: Option<u8>,
    stalled: usize,
    stalled_ms: f64,
) -> String {
    let Some(report) = report_ms else {
        return "the OOM report was not captured (rate-limited by the kernel or printk:console unavailable)"
            .into();
    };
    let mut s = format!("the OOM report took {}", fmt_ms(report));
    if let Some(c) = console_ms.filter(|_| report > 0.0) {
        let share = (c / report * 100.0).min(100.0);
        let names = if consoles.is_empty() {
            "the console".to_string()
        } else {
            format!("console {}", consoles.join(", "))
        };
        if share >= 50.0 {
            s += &format!(", {share:.0}% of it writing to {names}");
        } else {
            s += &format!(", {share:.0}% of it console output");
            if let Some(l) = console_loglevel.filter(|l| *l <= 4) {
                s += &format!(" (console_loglevel {l} keeps the report off the console)");
            }
        }
    }
    if stalled > 0 {
        s += &format!(
            "; {stalled} other task{} waited {} in total",
            if stalled == 1 { "" } else { "s" },
            fmt_ms(stalled_ms)
        );
    }
    s
}

fn summarize(
    constraint: &str,
    memcg: Option<&str>,
    victim: &Option<Victim>,
    growth: &Option<VictimGrowth>,
    grower: &Option<Grower>,
    right_victim: bool,
) -> String {
    let scope = match (constraint, memcg) {
        ("memcg", Some(m)) => format!("memcg OOM in {m}"),
        ("unknown", _) => "OOM".to_string(),
        (c, _) => format!("{c} OOM"),
    };
    let Some(v) = victim else {
        return format!("{scope}: the OOM killer found no victim");
    };
    let mut s = format!("{scope}: killed pid {} ({})", v.pid, v.comm);
    match growth {
        Some(g) => {
            s += &format!(
                ", which grew from {} to {} in {}",
                mib(g.from_bytes as f64),
                mib(g.to_bytes as f64),
                secs(g.secs)
            );
        }
        None => s += ", which did not grow notably before the OOM",
    }
    if !right_victim {
        if let Some(g) = grower {
            s += &format!(
                ". The victim was NOT the process that grew: pid {} ({}) grew {} in the {:.0} s before the OOM",
                g.pid,
                g.comm,
                mib(g.growth_bytes as f64),
                g.window_s
            );
        }
    }
    s
}

/// The OOM memcg's usage in the window before the kill, and its rise.
/// The samples before the kill, then its usage at the kill: the report's
/// "memory: usage" line, or, when the kernel rate-limited the report, the
/// limit it hit (a memcg OOM happens at the limit). The rise is from the
/// lowest sample to the kill.
fn memcg_window(
    ctx: &dyn OomContext,
    memcg: Option<&str>,
    mark_ns: Option<u64>,
    usage_at_kill: Option<u64>,
) -> (Vec<(u64, u64)>, Option<MemcgGrowth>) {
    let (Some(m), Some(t)) = (memcg, mark_ns) else {
        return (Vec::new(), None);
    };
    let kill_ms = ctx.mono_to_unix_ms(t);
    let t = t as f64 / 1e9;
    let Some((limit, mut pts)) = ctx.memcg_history(m, t - GROWTH_WINDOW_S, t) else {
        return (Vec::new(), None);
    };
    pts.retain(|p| p.0 < kill_ms);
    pts.push((kill_ms, usage_at_kill.unwrap_or(limit)));
    let low = pts.iter().min_by_key(|p| p.1).copied();
    let growth = match (low, pts.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => Some(MemcgGrowth {
            from_bytes: a.1,
            to_bytes: b.1,
            secs: (b.0 - a.0) as f64 / 1000.0,
            limit_bytes: limit,
        }),
        _ => None,
    };
    (pts, growth)
}

/// What the verdict adds about the victim's pool and the memcg as a
/// whole (docs/verdict.md).
fn context_sentences(group: Option<&GroupInfo>, memcg: Option<&MemcgGrowth>) -> String {
    let mut s = String::new();
    if let Some(g) = group {
        s += &format!(
            ". It was in the pool of pid {} ({}): {} processes, {} RSS",
            g.leader_pid,
            g.comm,
            g.members,
            mib(g.rss_bytes as f64)
        );
        if let Some(p) = g.pss_bytes {
            s += &format!(" ({} Pss, shared pages counted once)", mib(p as f64));
        }
    }
    if let Some(m) = memcg {
        if m.to_bytes > m.from_bytes + (1 << 20) {
            s += &format!(
                ". The memcg grew from {} to {} in {} (limit {})",
                mib(m.from_bytes as f64),
                mib(m.to_bytes as f64),
                secs(m.secs),
                mib(m.limit_bytes as f64)
            );
        }
    }
    s
}

/// "0.4 s", "12 s": one decimal below 10 s, so a half-second burst is not "0 s".
fn secs(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1} s")
    } else {
        format!("{v:.0} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the scopes asked for, to check them.
    #[derive(Default)]
    struct Ctx(std::cell::RefCell<Vec<Option<String>>>);
    impl OomContext for Ctx {
        fn snapshot(&self, pid: u32, _start: Option<u64>) -> Option<ProcSnapshot> {
            (pid == 100).then(|| ProcSnapshot {
                comm: "big".into(),
                cmdline: "big --serve".into(),
                cgroup: "/app".into(),
                history: vec![(1_000, 500 << 20), (2_000, 500 << 20)],
                exited: true,
                ..Default::default()
            })
        }
        fn top_grower(
            &self,
            scope: Option<&str>,
            window_s: f64,
            _victim: Option<(u32, f64, u64)>,
        ) -> Option<Grower> {
            self.0.borrow_mut().push(scope.map(str::to_string));
            Some(Grower {
                attribution: Default::default(),
                pid: 200,
                comm: "grower".into(),
                growth_bytes: 90 << 20,
                from_bytes: 10 << 20,
                to_bytes: 100 << 20,
                window_s,
                growing_at_kill: true,
            })
        }
        fn mono_to_unix_ms(&self, ns: u64) -> u64 {
            ns / 1_000_000
        }
        fn page_size(&self) -> u64 {
            4096
        }
    }

    fn rec(pid: u32, target: u32, ts_ms: u64, event: OomEvent) -> Record {
        Record {
            pid,
            tgid: pid,
            target,
            ts_ns: ts_ms * 1_000_000,
            comm: "grower".into(),
            event,
        }
    }

    fn line_ending(pid: u32, ts_ms: u64, text: &str, starts: bool, end: LineEnd) -> Record {
        let l = ConsoleLine {
            starts,
            end,
            text: text.into(),
        };
        rec(pid, 0, ts_ms, OomEvent::Line(l))
    }

    /// A whole console line (it ended with a newline).
    fn line(pid: u32, ts_ms: u64, text: &str) -> Record {
        line_ending(pid, ts_ms, text, false, LineEnd::Newline)
    }

    /// The first line of a report.
    fn first_line(pid: u32, ts_ms: u64, text: &str) -> Record {
        line_ending(pid, ts_ms, text, true, LineEnd::Newline)
    }

    /// A pr_cont fragment that the next line continues.
    fn fragment(pid: u32, ts_ms: u64, text: &str) -> Record {
        line_ending(pid, ts_ms, text, false, LineEnd::Fragment)
    }

    /// oom:mark_victim with these sizes in kB and oom_score_adj.
    fn mark(pid: u32, victim: u32, ts_ms: u64, anon_kb: u64, pgtables_kb: u64, adj: i32) -> Record {
        let kb = |v: u64| v * 1024;
        let v = Marked {
            total_vm_bytes: kb(1000),
            rss_anon_bytes: kb(anon_kb),
            rss_file_bytes: 0,
            rss_shmem_bytes: 0,
            pgtables_bytes: kb(pgtables_kb),
            uid: 0,
            oom_score_adj: adj,
            life: None,
        };
        rec(pid, victim, ts_ms, OomEvent::MarkVictim(v))
    }

    fn victim_exit(victim: u32, ts_ms: u64) -> Record {
        rec(0, victim, ts_ms, OomEvent::VictimExit)
    }

    fn reaped(victim: u32, ts_ms: u64) -> Record {
        rec(0, victim, ts_ms, OomEvent::Reaper(ReaperStage::Finish))
    }

    fn report_lines(a: &mut Assembler, ctx: &Ctx, tid: u32, victim: u32, t0: u64) {
        let first = first_line(
            tid,
            t0,
            "grower invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        );
        a.handle(first, ctx, 0);
        a.handle(
            line(tid, t0 + 1, "memory: usage 131072kB, limit 131072kB, failcnt 10"),
            ctx,
            0,
        );
        // The constraint line arrives in pr_cont fragments.
        let frag = fragment(
            tid,
            t0 + 2,
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null)",
        );
        a.handle(frag, ctx, 0);
        let frag = fragment(tid, t0 + 2, ",cpuset=/,mems_allowed=0,oom_memcg=/app");
        a.handle(frag, ctx, 0);
        a.handle(
            line(tid, t0 + 2, ",task_memcg=/app,task=big,pid=100,uid=0"),
            ctx,
            0,
        );
        a.handle(mark(tid, victim, t0 + 3, 100 * 1024, 8, 1000), ctx, 0);
        a.handle(line(tid, t0 + 4, "Memory cgroup out of memory: Killed process 100 (big) total-vm:1000kB, anon-rss:102400kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:8kB oom_score_adj:1000"), ctx, 0);
    }

    fn control_rec(tid: u32, victim: u32, ts_ms: u64) -> Record {
        let c = Control {
            constraint: Constraint::Known(OomConstraint::Memcg),
            totalpages: 32768,
            chosen_points: 25050,
            memcg_id: Some(27),
            order: 0,
            gfp_mask: 0xcc0,
            source: HookSource::Trampoline,
        };
        rec(tid, victim, ts_ms, OomEvent::Control(c))
    }

    /// struct oom_control comes on the victims' ring, the report on the
    /// other: whichever is read first, one incident carries both, and the
    /// oom_lock time lands in it too.
    #[test]
    fn oom_control_joins_its_report_in_either_ring_order() {
        for control_first in [true, false] {
            let mut a = Assembler::new();
            let ctx = Ctx::default();
            if control_first {
                a.handle(control_rec(200, 100, 9_999), &ctx, 0);
                report_lines(&mut a, &ctx, 200, 100, 10_000);
            } else {
                // The console ring drained first, all of it; then the
                // victims' ring: the control record precedes the mark.
                let mut b = Assembler::new();
                report_lines(&mut b, &ctx, 200, 100, 10_000);
                let mark = b.pending.iter_mut().find_map(|p| p.mark.take()).unwrap();
                let mark = mark.clone().with(OomEvent::MarkVictim(mark.event));
                a = b;
                a.pending.retain(|p| !p.lines.is_empty());
                a.handle(control_rec(200, 100, 9_999), &ctx, 0);
                a.handle(mark, &ctx, 0);
            }
            let lock = LockHeld {
                enter_ns: 9_998 * 1_000_000,
                return_ns: 10_010 * 1_000_000,
                ret: 1,
                source: HookSource::Trampoline,
            };
            a.handle(rec(200, 200, 10_010, OomEvent::LockHeld(lock)), &ctx, 0);
            a.handle(victim_exit(100, 10_020), &ctx, 0);
            a.handle(reaped(100, 10_030), &ctx, 0);
            let out = a.poll(20_000 * 1_000_000, &ctx, 0);
            assert_eq!(out.len(), 1, "control first: {control_first}");
            let i = &out[0];
            let oc = i.oom_control.as_ref().expect("oom_control");
            assert_eq!(
                (
                    oc.constraint,
                    oc.totalpages,
                    oc.chosen_pid,
                    oc.chosen_points,
                    oc.memcg_id
                ),
                ("memcg", 32768, 100, 25050, Some(27))
            );
            assert_eq!(
                (oc.source, oc.gfp_mask.as_str(), oc.order),
                ("fentry oom_kill_process", "0xcc0", 0)
            );
            assert_eq!(i.report_lines.len(), 4);
            assert_eq!(i.victim.as_ref().unwrap().pid, 100);
            let lock = i.oom_lock.as_ref().expect("oom_lock");
            assert_eq!((lock.source, lock.held_ms), ("fexit out_of_memory", 12.0));
        }
    }

    /// oom_kill_process() entered, but the chosen task was already exiting
    /// and nothing was killed: no incident.
    #[test]
    fn oom_control_alone_is_not_an_incident() {
        let mut a = Assembler::new();
        let ctx = Ctx::default();
        a.handle(control_rec(200, 100, 10_000), &ctx, 0);
        assert!(a.poll(100_000 * 1_000_000, &ctx, 0).is_empty());
        assert!(a.pending.is_empty());
    }

    #[test]
    fn innocent_victim_is_flagged_and_timings_are_relative_to_invocation() {
        let mut a = Assembler::new();
        let ctx = Ctx::default();
        report_lines(&mut a, &ctx, 200, 100, 10_000);
        assert!(
            a.poll(10_004 * 1_000_000, &ctx, 0).is_empty(),
            "waits for the exit"
        );
        a.handle(victim_exit(100, 10_020), &ctx, 0);
        a.handle(reaped(100, 10_030), &ctx, 0);
        let out = a.poll(10_031 * 1_000_000, &ctx, 2);
        assert_eq!(out.len(), 1);
        assert_eq!(
            ctx.0.borrow().as_slice(),
            &[Some("/app".to_string())],
            "growth compared inside the memcg"
        );
        let i = &out[0];
        assert_eq!(i.constraint, "memcg");
        assert_eq!(i.memcg.as_deref(), Some("/app"));
        assert_eq!(i.memcg_limit_bytes, Some(128 << 20));
        let v = i.victim.as_ref().unwrap();
        assert_eq!((v.pid, v.comm.as_str(), v.oom_score_adj), (100, "big", 1000));
        assert_eq!(v.rss_anon_bytes, 100 << 20);
        assert!(!i.victim_was_top_grower);
        assert_eq!(i.top_grower.as_ref().unwrap().pid, 200);
        assert!(
            i.summary.contains("NOT the process that grew: pid 200 (grower)"),
            "{}",
            i.summary
        );
        assert_eq!(i.timings_ms.to_kill, Some(3.0));
        assert_eq!(i.timings_ms.to_exit, Some(20.0));
        assert_eq!(i.timings_ms.to_reaped, Some(30.0));
        assert_eq!(i.report_lines.len(), 4);
        assert!(i.report_complete);
        assert_eq!(i.lost_events, 2);
        assert_eq!(i.invoker.pid, 200);
        assert_eq!(i.invoker.gfp_mask.as_deref(), Some("0xcc0(GFP_KERNEL)"));
    }

    #[test]
    fn interleaved_reports_stay_apart() {
        let mut a = Assembler::new();
        let ctx = Ctx::default();
        // Two invokers printing at the same time.
        let s1 = first_line(
            1,
            100,
            "a invoked oom-killer: gfp_mask=0x0, order=0, oom_score_adj=0",
        );
        let s2 = first_line(
            2,
            101,
            "b invoked oom-killer: gfp_mask=0x0, order=0, oom_score_adj=0",
        );
        a.handle(s1, &ctx, 0);
        a.handle(s2, &ctx, 0);
        a.handle(
            line(
                2,
                102,
                "oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/b,task_memcg=/b,task=b,pid=2,uid=0",
            ),
            &ctx,
            0,
        );
        a.handle(
            line(
                1,
                103,
                "oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/a,task_memcg=/a,task=a,pid=1,uid=0",
            ),
            &ctx,
            0,
        );
        let out = a.poll(u64::MAX / 2, &ctx, 0);
        assert_eq!(out.len(), 2);
        for i in &out {
            let want = if i.invoker.pid == 1 { "/a" } else { "/b" };
            assert!(i
                .report_lines
                .iter()
                .all(|l| !l.text.contains("oom_memcg") || l.text.contains(want)));
            assert!(i.victim.is_none());
        }
    }

    #[test]
    fn a_report_printed_by_another_task_joins_its_victim() {
        let mut a = Assembler::new();
        let ctx = Ctx::default();
        // The victim is marked first, by the invoker (tid 200)...
        a.handle(mark(200, 100, 10_000, 100 * 1024, 8, 0), &ctx, 0);
        // ...and the report lines come from task 300, which held the
        // console lock, with timestamps before the mark.
        let first = first_line(
            300,
            9_999,
            "grower invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        );
        a.handle(first, &ctx, 0);
        a.handle(
            line(
                300,
                10_001,
                "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/app,task_memcg=/app,task=big,pid=100,uid=0",
            ),
            &ctx,
            0,
        );
        a.handle(line(300, 10_002, "Memory cgroup out of memory: Killed process 100 (big) total-vm:1000kB, anon-rss:102400kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:8kB oom_score_adj:0"), &ctx, 0);
        a.handle(victim_exit(100, 10_020), &ctx, 0);
        let out = a.poll(10_020 * 1_000_000 + AFTER_EXIT_NS + 1, &ctx, 0);
        assert_eq!(out.len(), 1, "one incident, not two");
        let i = &out[0];
        assert_eq!(i.constraint, "memcg");
        assert_eq!(i.memcg.as_deref(), Some("/app"));
        assert_eq!(i.report_lines.len(), 3);
        assert_eq!(i.invoker.pid, 200);
        assert_eq!(i.report_printed_by, Some(300));
        assert!(a.poll(u64::MAX / 2, &ctx, 0).is_empty(), "no orphan left");
    }

    #[test]
    fn rate_limited_report_still_makes_an_incident() {
        let mut a = Assembler::new();
        let ctx = Ctx::default();
        a.handle(mark(7, 100, 50, 1024, 0, 0), &ctx, 0);
        a.handle(line(7, 51, "Memory cgroup out of memory: Killed process 100 (big) total-vm:1kB, anon-rss:1024kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:0kB oom_score_adj:0"), &ctx, 0);
        a.handle(victim_exit(100, 60), &ctx, 0);
        let out = a.poll(2_000 * 1_000_000, &ctx, 0);
        assert_eq!(out.len(), 1);
        assert!(!out[0].report_complete);
        assert_eq!(out[0].report_lines.len(), 1);
        assert_eq!(out[0].victim.as_ref().unwrap().pid, 100);
    }

    #[test]
    fn line_levels_follow_the_report_structure() {
        let lines = [
            "x invoked oom-killer: gfp_mask=0x0, order=0, oom_score_adj=0",
            "CPU: 0 UID: 0 PID: 1 Comm: x",
            " dump_stack_lvl+0x57/0x80",
            "memory: usage 1kB, limit 1kB, failcnt 1",
            "[  pid  ]   uid  tgid total_vm      rss name",
            "oom-kill:constraint=CONSTRAINT_MEMCG",
            "Memory cgroup out of memory: Killed process 1 (x)",
        ];
        assert_eq!(
            report_line_levels(lines.into_iter(), 4),
            vec![4, 4, 4, 6, 6, 6, 3]
        );
    }
}
