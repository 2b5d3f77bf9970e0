//! The aggregator: turns what the kernel sampled (one `ProcSample` per
//! process per interval, plus the exits of short lives) and the metadata
//! read from /proc into samples: per-process rows with rates and trends,
//! and process groups. Pure: no I/O here. Metadata arrives as answers to
//! the requests a tick returns, and memcg ids are named through `Names`,
//! so everything is tested on synthetic inputs.
use std::{
    cmp::Reverse,
    collections::{BTreeSet, VecDeque},
    sync::Arc,
};

use leaktrace_common::{member, Life};

use crate::fmt::FastMap;
use crate::{
    host::attribution::{attribute, Attribution},
    model::incident::Grower,
};

use super::{
    groups,
    history::{TickHistory, TickTimes},
    private::{self, ProcPrivate},
    sample::{CgroupRow, GroupRow, KernelStatus, ProcessRow, Sample},
    trend::{self, Trend},
};
use crate::{
    host::{
        cgroup::in_scope,
        meta::{Answer, Reply, Req, Want},
        procfs::{Meta, ProcErr},
    },
    kernel::{exits::ExitSample, ProcSample},
};

/// Names memory cgroups by their kernfs id (`host::cgroup::Cgroups`).
pub trait Names {
    fn cgroup_of(&mut self, memcg_id: u64) -> Option<String>;
    /// A cgroup path seen in /proc: as shown, and its bytes.
    fn learn(&mut self, path: &str, raw: &[u8]);
    fn version(&self) -> u8;
}

/// How long an exited process stays known to the OOM verdict: the growth
/// window, so every process that grew in the window can be named.
pub const LINGER_S: f64 = 60.0;
/// At most this many exited processes are kept (fork storms); the oldest go first.
pub const MAX_LINGER: usize = crate::limits::LINGERING_MAX;
/// How much RSS history to keep per process, in seconds.
pub const HISTORY_S: f64 = 300.0;
/// A process still growing at the kill: RSS up at least END_MIN bytes in
/// the last END_S seconds before it.
pub const END_S: f64 = 5.0;
pub const END_MIN: f64 = 1024.0 * 1024.0;
/// A process seen gone this long before the kill had exited before it.
const EXIT_SLACK_S: f64 = 0.5;
/// Pss/USS reads (private.rs) for the members of this many groups, besides
/// the suspects and growers.
const PSS_GROUPS: usize = 5;
/// Groups with more members than this get no Pss/USS reads for their
/// members: at ROLLUP_READS_PER_ROUND reads every private::ROUND_S, each
/// would be read about once a minute, and the group's sum needs every
/// member read within private::FRESH_S.
const PSS_GROUP_MAX: usize = 256;
/// Reclaim counted for an OOM: up to the sample after it, at most this
/// long after (intervals up to 2 s).
const RECLAIM_AFTER_S: f64 = 2.0;
/// A failed /proc read is asked again after this long.
const META_RETRY_S: f64 = 10.0;
/// On the hooks path the kernel does not say when a process moves or
/// execs, so its metadata is read again this often.
const HOOKS_META_REFRESH_S: f64 = 10.0;

fn lossy_comm(b: &[u8; 16]) -> String {
    crate::fmt::comm_str(b)
}

/// argv bytes kept by the kernel at exec, as a command line.
pub fn args_cmdline(args: &[u8]) -> String {
    crate::host::procfs::parse_cmdline(args)
}

/// What a live process adds to the tracker's indexes (`Index`), as it
/// was added: removed with the same values.
#[derive(Debug, Clone)]
struct Acct {
    visible: bool,
    resident: u64,
    shmem: u64,
    cgroup: Arc<str>,
    memcg_id: u64,
}

/// One process. Boxed in the tracker's tables: a table's rehash moves 16
/// bytes per process, not the whole record (docs/performance.md).
#[derive(Debug, Clone)]
struct Tracked {
    pid: u32,
    start_ns: u64,
    ppid: u32,
    comm_raw: [u8; 16],
    comm: String,
    threads: u32,
    oom_score_adj: i32,
    memcg_id: u64,
    exec_id: u64,
    meta: Option<Box<Meta>>,
    /// The cgroup /proc named (interned), for a process the kernel does
    /// not name the memcg of.
    meta_cgroup: Option<(Arc<str>, u8)>,
    /// (memcg id, exec id) the metadata was read for.
    meta_key: Option<(u64, u64)>,
    /// When it was last asked, and for which key.
    meta_asked: Option<(f64, (u64, u64))>,
    /// The command line the kernel kept at exec, when /proc had none.
    kernel_cmdline: Option<String>,
    /// The memory cgroup (named by its id, else from /proc; interned:
    /// processes of one cgroup share it) and its version.
    cgroup: Arc<str>,
    cgroup_version: u8,
    rss: [u64; 4],
    peak: u64,
    from_kernel: bool,
    history: TickHistory,
    /// The last tick it was alive (u64::MAX while it is).
    last_tick: u64,
    /// (t, RSS) when its current image was born (fork or exec).
    birth: Option<(f64, u64)>,
    counts: Option<(u64, u64, u64)>,
    faults_per_sec: f64,
    forks_per_sec: f64,
    reclaim_ms_per_sec: f64,
    /// The tick of its last changed record (the rates above are that
    /// tick's).
    rates_at: u64,
    /// (t, cumulative reclaim ns) when it changed, last few. A process
    /// first seen with 0 has no entry until it reclaims: `reclaim_zero_at`
    /// stands for that first (t, 0).
    reclaim_hist: VecDeque<(f64, u64)>,
    reclaim_zero_at: Option<f64>,
    exited_at: Option<f64>,
    /// Who it belongs to (unit, container, pod): its cgroup's, shared
    /// with the other processes in that cgroup.
    attr: Arc<Attribution>,
    /// It passes --unit/--container/--cgroup/--comm (true without them).
    visible: bool,
    /// Its Pss and USS reads (suspects, growers, top groups' members);
    /// None until the first.
    private: Option<Box<ProcPrivate>>,
    /// "uss" when its growth and trend are its USS's (copy-on-write
    /// copying that RSS does not see), else "rss".
    growth_of: &'static str,
    /// What it adds to the indexes now (None: not in them).
    acct: Option<Acct>,
    /// Live processes whose parent it is (grouping: a process without
    /// children leads nobody, so it can join or leave a group alone).
    kids: u32,
    /// `exited_at` is the kernel's exit time (an exit record), not the
    /// sample that found the process gone.
    exit_exact: bool,
    /// Its peak when it exited, from the kernel.
    exit_peak: Option<(f64, u64)>,
    /// Computed at each tick (cached for processes whose RSS has not
    /// changed within the long window: growth 0, stable).
    growth_short: f64,
    growth_long: f64,
    trend: Trend,
}

impl Tracked {
    fn new(pid: u32, start_ns: u64, empty: &(Arc<str>, Arc<Attribution>)) -> Self {
        Self {
            pid,
            start_ns,
            ppid: 0,
            comm_raw: [0; 16],
            comm: String::new(),
            threads: 0,
            oom_score_adj: 0,
            memcg_id: 0,
            exec_id: 0,
            meta: None,
            meta_cgroup: None,
            meta_key: None,
            meta_asked: None,
            kernel_cmdline: None,
            cgroup: empty.0.clone(),
            cgroup_version: 0,
            rss: [0; 4],
            peak: 0,
            from_kernel: true,
            history: TickHistory::default(),
            last_tick: u64::MAX,
            birth: None,
            counts: None,
            faults_per_sec: 0.0,
            forks_per_sec: 0.0,
            reclaim_ms_per_sec: 0.0,
            rates_at: 0,
            reclaim_hist: VecDeque::new(),
            reclaim_zero_at: None,
            exited_at: None,
            attr: empty.1.clone(),
            visible: true,
            private: None,
            growth_of: "rss",
            acct: None,
            kids: 0,
            exit_exact: false,
            exit_peak: None,
            growth_short: 0.0,
            growth_long: 0.0,
            trend: Trend::Stable,
        }
    }

    fn attribution(&self) -> Attribution {
        (*self.attr).clone()
    }

    /// The last tick of its history: now while it lives.
    fn end_tick(&self, now: u64) -> u64 {
        self.last_tick.min(now)
    }

    fn pss_uss(&self) -> Option<crate::host::procfs::Rollup> {
        self.private.as_ref().and_then(|p| p.now)
    }

    /// The reclaim counter's changes, with the implicit first zero.
    fn reclaim_points(&self) -> impl DoubleEndedIterator<Item = (f64, u64)> + Clone + '_ {
        self.reclaim_zero_at
            .map(|t| (t, 0))
            .into_iter()
            .chain(self.reclaim_hist.iter().copied())
    }

    /// Its row as of tick `now`: its per-second rates are those of its
    /// last changed record, and 0 if that was not this tick (an unchanged
    /// process faulted, forked and reclaimed nothing since).
    fn row(&self, now: u64) -> ProcessRow {
        let moved = self.rates_at == now;
        let rate = |v: f64| if moved { v } else { 0.0 };
        ProcessRow {
            flagged: false,
            attribution: self.attribution(),
            pid: self.pid,
            ppid: self.ppid,
            comm: self.comm.clone(),
            cmdline: self.cmdline(),
            exe: self.meta.as_ref().map(|m| m.exe.clone()).unwrap_or_default(),
            cgroup: self.cgroup.to_string(),
            cgroup_version: self.cgroup_version,
            memcg_id: self.memcg_id,
            threads: self.threads,
            rss_bytes: self.resident(),
            rss_anon_bytes: self.rss[member::ANON],
            rss_file_bytes: self.rss[member::FILE],
            rss_shmem_bytes: self.rss[member::SHMEM],
            swap_bytes: self.rss[member::SWAP],
            peak_rss_bytes: self.peak,
            growth_bytes_per_sec: self.growth_short,
            growth_bytes_per_sec_long: self.growth_long,
            growth_of: self.growth_of,
            pss_bytes: self.pss_uss().map(|r| r.pss),
            uss_bytes: self.pss_uss().map(|r| r.uss),
            uss_growth_bytes_per_sec: self.private.as_ref().and_then(|p| p.now.map(|_| p.rates.short)),
            faults_per_sec: rate(self.faults_per_sec),
            forks_per_sec: rate(self.forks_per_sec),
            reclaim_stall_ms_per_sec: rate(self.reclaim_ms_per_sec),
            trend: self.trend,
            oom_score_adj: self.oom_score_adj,
            source: if self.from_kernel { "kernel" } else { "procfs" },
        }
    }

    /// Growth rates and trend for this tick: RSS's, or USS's when only
    /// USS grows (a forked worker copying the pages it shares).
    fn classify(
        &mut self,
        t_now: f64,
        params: &trend::Params,
        times: &TickTimes,
        now: u64,
        buf: &mut Vec<(f64, f64)>,
    ) {
        let uss = match self.private.as_mut() {
            Some(p) => {
                p.classify(t_now, params, buf);
                p.rates
            }
            None => Default::default(),
        };
        self.classify_rss(t_now, params, times, now, buf);
        self.growth_of = "rss";
        if uss.trend == Trend::Growing && self.trend != Trend::Growing {
            (self.growth_short, self.growth_long, self.trend) = (uss.short, uss.long, Trend::Growing);
            self.growth_of = "uss";
        }
    }

    /// RSS rates and trend; nothing is computed for a process whose RSS
    /// has not changed within the long window.
    fn classify_rss(
        &mut self,
        t_now: f64,
        params: &trend::Params,
        times: &TickTimes,
        now: u64,
        buf: &mut Vec<(f64, f64)>,
    ) {
        if !self.history.changed_since(t_now - params.long_window_s, times) {
            (self.growth_short, self.growth_long, self.trend) = (0.0, 0.0, Trend::Stable);
            return;
        }
        self.history
            .points(t_now - params.long_window_s, self.end_tick(now), times, buf);
        self.growth_short = trend::slope(trend::window(buf, params.short_window_s));
        self.growth_long = trend::slope(buf);
        self.trend = trend::classify(buf, params);
    }

    fn set_comm(&mut self, raw: &[u8; 16]) {
        if *raw != self.comm_raw {
            self.comm_raw = *raw;
            self.comm = lossy_comm(raw);
        }
    }

    fn resident(&self) -> u64 {
        self.rss[member::FILE] + self.rss[member::ANON] + self.rss[member::SHMEM]
    }

    fn cmdline(&self) -> String {
        match (&self.meta, &self.kernel_cmdline) {
            (Some(m), _) if !m.cmdline.is_empty() => m.cmdline.clone(),
            (_, Some(k)) => k.clone(),
            _ => String::new(),
        }
    }

    /// Does it still need `classify` every tick: RSS changed within the
    /// long window, or a fresh Pss/USS read?
    fn active(&self, t_now: f64, params: &trend::Params, times: &TickTimes) -> bool {
        self.history.changed_since(t_now - params.long_window_s, times) || self.pss_uss().is_some()
    }

    /// The points of its life from time `from`: samples, birth, exit peak.
    fn points(&self, from: f64, times: &TickTimes, now: u64, buf: &mut Vec<(f64, f64)>) {
        self.history.points(from, self.end_tick(now), times, buf);
        if let Some((t, v)) = self.birth.filter(|b| b.0 >= from) {
            let at = buf.partition_point(|p| p.0 < t);
            buf.insert(at, (t, v as f64));
        }
        if let Some((t, v)) = self.exit_peak.filter(|p| p.0 >= from) {
            buf.push((t, v as f64));
        }
    }
}

/// Values for one tick.
pub struct TickInput<'a> {
    /// Seconds on CLOCK_MONOTONIC (the kernel's clock).
    pub t: f64,
    pub ts_ms: u64,
    /// The processes whose record changed (an unchanged one may be here
    /// too, flagged `unchanged`).
    pub procs: &'a [ProcSample],
    /// Every process of the pass, changed or not, by tgid (None: those in
    /// `procs`).
    pub live: Option<&'a [u32]>,
    pub exits: &'a [ExitSample],
    /// The data path's health, carried into the sample.
    pub status: KernelStatus,
    /// The hooks path: the kernel does not report execs and cgroup moves.
    pub hooks_path: bool,
    /// Rows to build: the fastest growers up to this many (None: every
    /// process), and these pids in any case.
    pub rows: Option<usize>,
    pub pids: &'a [u32],
    /// Processes that crossed a trigger lately: rows in any case, marked.
    pub flagged: &'a [u32],
}

/// One memory cgroup's usage over time: a memcg that sets the limit of
/// tracked processes.
struct MemcgTrack {
    limit: u64,
    hist: super::history::History,
    seen: f64,
}

/// Cgroups listed per sample.
pub const MAX_CGROUP_ROWS: usize = 20;

/// At most this many memcgs have their usage followed.
pub const MAX_MEMCGS: usize = 256;

/// What the live processes add up to, kept as they change, so that a
/// sample costs nothing per unchanged process: visible processes by RSS
/// (the rows after the growers, the trigger candidates), per-cgroup
/// totals, the memcgs in use and the shmem total.
#[derive(Default)]
struct Index {
    /// Visible processes, largest RSS first (then pid).
    by_rss: BTreeSet<(Reverse<u64>, u32)>,
    /// Visible processes per cgroup path: (processes, RSS, a memcg id).
    cgroups: FastMap<Arc<str>, (usize, u64, u64)>,
    /// Visible processes per memcg id, and per cgroup path for those
    /// whose memcg id is unknown (0).
    memcgs: FastMap<u64, usize>,
    unnamed: FastMap<Arc<str>, usize>,
    /// shmem RSS of every live process.
    shmem: u64,
}

impl Index {
    fn add(&mut self, tr: &mut Tracked) {
        self.remove(tr);
        let a = Acct {
            visible: tr.visible,
            resident: tr.resident(),
            shmem: tr.rss[member::SHMEM],
            cgroup: tr.cgroup.clone(),
            memcg_id: tr.memcg_id,
        };
        self.shmem += a.shmem;
        if a.visible {
            self.by_rss.insert((Reverse(a.resident), tr.pid));
            if !a.cgroup.is_empty() {
                let e = self.cgroups.entry(a.cgroup.clone()).or_insert((0, 0, a.memcg_id));
                e.0 += 1;
                e.1 += a.resident;
            }
            if a.memcg_id != 0 {
                *self.memcgs.entry(a.memcg_id).or_default() += 1;
            } else {
                *self.unnamed.entry(a.cgroup.clone()).or_default() += 1;
            }
        }
        tr.acct = Some(a);
    }

    fn remove(&mut self, tr: &mut Tracked) {
        let Some(a) = tr.acct.take() else { return };
        self.shmem -= a.shmem;
        if !a.visible {
            return;
        }
        self.by_rss.remove(&(Reverse(a.resident), tr.pid));
        if !a.cgroup.is_empty() {
            if let Some(e) = self.cgroups.get_mut(&a.cgroup) {
                e.0 -= 1;
                e.1 -= a.resident;
                if e.0 == 0 {
                    self.cgroups.remove(&a.cgroup);
                }
            }
        }
        if a.memcg_id != 0 {
            if let Some(n) = self.memcgs.get_mut(&a.memcg_id) {
                *n -= 1;
                if *n == 0 {
                    self.memcgs.remove(&a.memcg_id);
                }
            }
        } else if let Some(n) = self.unnamed.get_mut(&a.cgroup) {
            *n -= 1;
            if *n == 0 {
                self.unnamed.remove(&a.cgroup);
            }
        }
    }
}

/// The groups of the last regrouping, with their totals kept up to date.
#[derive(Default)]
struct GroupCache {
    found: Vec<groups::Group>,
    /// pid -> its group in `found`.
    of: FastMap<u32, usize>,
    /// The groups must be found again over every process (at start, or
    /// when a process that others follow changed or left).
    dirty: bool,
    /// Processes to place in their group at the next sample: new ones,
    /// and those whose parent, image, comm or exe changed.
    place: Vec<u32>,
}

/// More processes to place than this: find every group again instead.
const PLACE_MAX: usize = 256;

fn member(tr: &Tracked) -> groups::Member<'_> {
    groups::Member {
        pid: tr.pid,
        ppid: tr.ppid,
        start_ns: tr.start_ns,
        exe: tr.meta.as_ref().map_or("", |m| m.exe.as_str()),
        comm: tr.comm.as_str(),
        exec_id: tr.exec_id,
        rss_bytes: tr.resident(),
        growth_bytes_per_sec: 0.0,
    }
}

pub struct Tracker {
    pub params: trend::Params,
    /// --unit/--container/--cgroup/--comm: rows, groups and triggers see
    /// only the processes that pass; verdicts see every process.
    pub filter: super::filter::FilterArgs,
    procs: FastMap<u32, Box<Tracked>>,
    /// Victims and the exits around them (what a kill set off).
    pub aftermath: super::aftermath::Aftermath,
    /// Exited processes, newest last (see LINGER_S).
    gone: VecDeque<Box<Tracked>>,
    /// The time of each tick in the history window.
    times: TickTimes,
    /// The tgids of the last pass, sorted, and a buffer for the next.
    live: Vec<u32>,
    live_next: Vec<u32>,
    /// Processes added between two passes (an OOM victim's mark): gone
    /// unless the next pass has them.
    added_between: Vec<u32>,
    /// Processes whose rates and trend are computed every tick (RSS
    /// changed within the long window, or a fresh Pss/USS read); every
    /// other process is stable with growth 0.
    active: FastMap<u32, ()>,
    index: Index,
    group_cache: GroupCache,
    /// Cgroup paths and their attribution, shared by the processes in them.
    interned: FastMap<Arc<str>, Arc<Attribution>>,
    empty: (Arc<str>, Arc<Attribution>),
    /// Regroupings (for LEAKTRACE_MEMDBG).
    regroups: u64,
    pub linger_dropped: u64,
    last_t: Option<f64>,
    ticks: u64,
    /// An unchanged-record came for a process the tracker does not know:
    /// the next pass must send whole records.
    pub resync: bool,
    /// unix ms minus monotonic ms: converts history times for output.
    wall_offset_ms: f64,
    buf: Vec<(f64, f64)>,
    /// Total RSS of each group over time, by its leader (pid, start).
    group_hist: FastMap<(u32, u64), super::history::History>,
    /// Pss and USS sums of each group over time, by its leader.
    group_private: FastMap<(u32, u64), private::GroupPrivate>,
    /// The groups of the last sample, every one (rows show the top).
    groups: Vec<GroupRow>,
    /// The memcgs that set the limits of tracked processes, by path: their
    /// usage over time; and which one limits each memcg id.
    memcgs: FastMap<String, MemcgTrack>,
    /// memcg id of processes -> (usage, short growth) of the memcg that
    /// limits it, as of the last sample.
    memcg_now: FastMap<u64, (u64, f64)>,
    /// memcg id of processes -> the limit that applies to it.
    memcg_limit_of: FastMap<u64, u64>,
    /// Pss/USS reads wanted this round, and the last round's time.
    rollups_wanted: Vec<Req>,
    last_rollup_round: f64,
}

impl Tracker {
    pub fn new(params: trend::Params) -> Self {
        Self {
            params,
            filter: Default::default(),
            procs: FastMap::default(),
            aftermath: Default::default(),
            gone: VecDeque::new(),
            times: TickTimes::default(),
            live: Vec::new(),
            live_next: Vec::new(),
            added_between: Vec::new(),
            active: FastMap::default(),
            index: Index::default(),
            group_cache: GroupCache::default(),
            interned: FastMap::default(),
            empty: (Arc::from(""), Arc::new(Attribution::default())),
            regroups: 0,
            linger_dropped: 0,
            last_t: None,
            ticks: 0,
            resync: false,
            wall_offset_ms: 0.0,
            buf: Vec::new(),
            group_hist: FastMap::default(),
            group_private: FastMap::default(),
            groups: Vec::new(),
            rollups_wanted: Vec::new(),
            last_rollup_round: f64::NEG_INFINITY,
            memcgs: FastMap::default(),
            memcg_now: FastMap::default(),
            memcg_limit_of: FastMap::default(),
        }
    }

    /// Metadata that arrived from the /proc readers.
    pub fn apply_meta(&mut self, answers: Vec<Answer>, names: &mut dyn Names) {
        for a in answers {
            let Some(tr) = self.procs.get_mut(&a.req.pid) else {
                continue;
            };
            if tr.start_ns != a.req.start_ns {
                continue;
            }
            match a.result {
                Ok(Reply::Rollup(r)) => {
                    tr.private
                        .get_or_insert_with(Default::default)
                        .record(self.last_t.unwrap_or(0.0), r);
                    self.active.insert(tr.pid, ());
                }
                Ok(Reply::Meta(mut m)) => {
                    if !m.cgroup.is_empty() {
                        names.learn(&m.cgroup, &m.cgroup_raw);
                    }
                    tr.meta_key = tr.meta_asked.map(|(_, k)| k);
                    let (cg, attr) = intern(&mut self.interned, &self.empty, &m.cgroup);
                    tr.meta_cgroup = Some((cg.clone(), m.cgroup_version));
                    if tr.cgroup.is_empty() || tr.memcg_id == 0 {
                        (tr.cgroup, tr.attr, tr.cgroup_version) = (cg, attr, m.cgroup_version);
                    }
                    // Kept once, interned, in `meta_cgroup`.
                    m.cgroup = String::new();
                    m.cgroup_raw = Vec::new();
                    if tr.meta.as_ref().is_none_or(|old| old.exe != m.exe) {
                        self.group_cache.place.push(tr.pid);
                    }
                    tr.meta = Some(Box::new(m));
                    let pid = tr.pid;
                    self.reindex(pid);
                }
                // The iterator, not /proc, says whether a process lives.
                Err(ProcErr::Gone) | Err(ProcErr::Failed(_)) => {}
            }
        }
    }

    /// Visibility and the indexes, after a process changed.
    fn reindex(&mut self, pid: u32) {
        let Some(tr) = self.procs.get_mut(&pid) else {
            return;
        };
        tr.visible = self.filter.is_empty() || self.filter.matches(&tr.comm, &tr.cgroup, &tr.attr);
        let old = tr.acct.as_ref().map(|a| a.resident);
        self.index.add(tr);
        // The group's total follows its members' RSS.
        if let (Some(old), Some(&g)) = (old, self.group_cache.of.get(&pid)) {
            if let Some(g) = self.group_cache.found.get_mut(g) {
                g.rss_bytes = (g.rss_bytes + tr.resident()).saturating_sub(old);
            }
        }
    }

    /// A live process is gone (exited, or its pid reused): it lingers for
    /// the verdicts. `t` is when, unless it is known already.
    fn retire(&mut self, mut tr: Box<Tracked>, t: f64, last_tick: u64) {
        tr.exited_at.get_or_insert(t);
        tr.last_tick = tr.last_tick.min(last_tick);
        let resident = tr.acct.as_ref().map_or(tr.resident(), |a| a.resident);
        self.leave_group(tr.pid, tr.kids, resident);
        self.index.remove(&mut tr);
        self.active.remove(&tr.pid);
        if let Some(parent) = self.procs.get_mut(&tr.ppid) {
            parent.kids = parent.kids.saturating_sub(1);
        }
        self.gone.push_back(tr);
    }

    /// One sampling step. Returns the sample and the /proc reads wanted.
    /// Costs nothing per process the kernel found unchanged, apart from
    /// the merge of the pass's sorted tgids with the last one's.
    pub fn tick(&mut self, input: TickInput, names: &mut dyn Names) -> (Sample, Vec<Req>) {
        let t = input.t;
        let dt = self.last_t.map(|l| t - l).filter(|d| *d > 0.0);
        self.last_t = Some(t);
        self.wall_offset_ms = input.ts_ms as f64 - t * 1000.0;
        let mut requests = Vec::new();
        self.ticks += 1;
        let tick = self.ticks;
        self.times.push(tick, t, t - HISTORY_S);
        let first_tick = self.times.first().unwrap_or(tick);
        self.resync = false;
        // Every process of this pass, sorted (the kernel walks pids in
        // order, so this is a check, not a sort).
        let mut cur = std::mem::take(&mut self.live_next);
        cur.clear();
        match input.live {
            Some(l) => cur.extend_from_slice(l),
            None => cur.extend(input.procs.iter().map(|p| p.tgid)),
        }
        if !cur.is_sorted() {
            cur.sort_unstable();
        }
        cur.dedup();
        for p in input.procs {
            if p.unchanged {
                continue;
            }
            let fresh = self.procs.get(&p.tgid).is_none_or(|tr| tr.start_ns != p.start_ns);
            if fresh {
                // New process, or a reused pid: the old one is gone.
                if let Some(old) = self.procs.remove(&p.tgid) {
                    self.retire(old, t, tick - 1);
                }
                self.procs
                    .insert(p.tgid, Box::new(Tracked::new(p.tgid, p.start_ns, &self.empty)));
            }
            let Some(tr) = self.procs.get_mut(&p.tgid) else {
                continue;
            };
            let old_memcg = tr.memcg_id;
            let old_ppid = (!fresh).then_some(tr.ppid);
            let (moved, regroup) = update(tr, p, t, tick, dt, input.hooks_path);
            if fresh || regroup {
                self.group_cache.place.push(p.tgid);
            }
            if old_ppid != Some(p.ppid) {
                if let Some(old) = old_ppid.and_then(|pp| self.procs.get_mut(&pp)) {
                    old.kids = old.kids.saturating_sub(1);
                }
                if let Some(parent) = self.procs.get_mut(&p.ppid) {
                    parent.kids += 1;
                }
            }
            let Some(tr) = self.procs.get_mut(&p.tgid) else {
                continue;
            };
            if fresh || tr.memcg_id != old_memcg || tr.cgroup.is_empty() {
                let (cg, v) = cgroup_of(tr, names);
                let (cg, attr) = match cg {
                    Named::Kernel(s) => intern(&mut self.interned, &self.empty, &s),
                    Named::Proc(cg) => {
                        let attr = intern(&mut self.interned, &self.empty, &cg).1;
                        (cg, attr)
                    }
                };
                (tr.cgroup, tr.attr, tr.cgroup_version) = (cg, attr, v);
            }
            tr.history.trim_before(first_tick);
            if moved || fresh {
                self.active.insert(tr.pid, ());
            }
            let key = (tr.memcg_id, tr.exec_id);
            let stale = tr.meta_key != Some(key)
                || (input.hooks_path
                    && tr
                        .meta_asked
                        .is_some_and(|(at, _)| t - at >= HOOKS_META_REFRESH_S));
            let asked_recently = tr
                .meta_asked
                .is_some_and(|(at, k)| k == key && t - at < META_RETRY_S);
            if stale && !asked_recently {
                tr.meta_asked = Some((t, key));
                requests.push(Req {
                    pid: tr.pid,
                    start_ns: tr.start_ns,
                    what: Want::Meta,
                });
            }
            self.reindex(p.tgid);
        }
        // Gone from the kernel's list: exited. They linger for the
        // verdicts. One merge of the last pass's tgids with this one's;
        // a tgid new to this pass that no record made known is a process
        // the kernel thinks we know: the next pass sends every record.
        let prev = std::mem::take(&mut self.live);
        let (mut i, mut j) = (0, 0);
        let mut dead = Vec::new();
        while i < prev.len() || j < cur.len() {
            let (a, b) = (prev.get(i).copied(), cur.get(j).copied());
            if a.is_some() && a == b {
                i += 1;
                j += 1;
            } else if let Some(a) = a.filter(|a| b.is_none_or(|b| *a < b)) {
                dead.push(a);
                i += 1;
            } else if let Some(b) = b {
                if !self.procs.contains_key(&b) {
                    self.resync = true;
                }
                j += 1;
            } else {
                break;
            }
        }
        for pid in std::mem::take(&mut self.added_between) {
            if cur.binary_search(&pid).is_err() && prev.binary_search(&pid).is_err() {
                dead.push(pid);
            }
        }
        for pid in dead {
            if let Some(tr) = self.procs.remove(&pid) {
                self.retire(tr, t, tick - 1);
            }
        }
        self.live = cur;
        self.live_next = prev;
        for e in input.exits {
            self.aftermath.record(e);
            self.exit(e, names);
        }
        while self
            .gone
            .front()
            .is_some_and(|g| g.exited_at.unwrap_or(t) < t - LINGER_S)
        {
            self.gone.pop_front();
        }
        while self.gone.len() > MAX_LINGER {
            self.gone.pop_front();
            self.linger_dropped += 1;
            crate::limits::LINGERING.hit();
        }
        let sample = self.sample(
            input.ts_ms,
            dt,
            input.status,
            input.rows,
            input.pids,
            input.flagged,
        );
        requests.append(&mut self.rollups_wanted);
        (sample, requests)
    }

    /// For LEAKTRACE_MEMDBG: processes followed, of which moving, lingering,
    /// groups found again since the last call.
    pub fn debug_counts(&mut self) -> (usize, usize, usize, u64) {
        (
            self.procs.len(),
            self.active.len(),
            self.gone.len(),
            std::mem::take(&mut self.regroups),
        )
    }

    /// Shmem RSS of every live process (the ledger's unmapped shmem).
    pub fn shmem_bytes(&self) -> u64 {
        self.index.shmem
    }

    /// An OOM victim as the kernel kept it when it was marked (see
    /// `OomContext::victim_marked`): one the model already follows gets
    /// the birth and argv it lacks; one born after the last sample is
    /// followed from now on, so the verdict ranks it by its birth and its
    /// RSS at the kill. Samples and its exit record complete it later.
    pub fn victim_marked(&mut self, pid: u32, life: &Life, page: u64) {
        if life.start_ns == 0 {
            return;
        }
        let birth = (life.birth_ns != 0).then(|| (life.birth_ns as f64 / 1e9, life.birth_rss_pages * page));
        let args = life.argv();
        let cmd = (!args.is_empty()).then(|| args_cmdline(args));
        let known = self.procs.get(&pid).is_some_and(|t| t.start_ns == life.start_ns)
            || self
                .gone
                .iter()
                .any(|g| g.pid == pid && g.start_ns == life.start_ns);
        if !known {
            // A reused pid: the process the model knew by it is gone.
            if let Some(old) = self.procs.remove(&pid) {
                self.retire(old, life.start_ns as f64 / 1e9, self.ticks);
            }
            let tr = Box::new(Tracked::new(pid, life.start_ns, &self.empty));
            self.procs.insert(pid, tr);
            self.added_between.push(pid);
            self.reindex(pid);
        }
        let tr = match self.procs.get_mut(&pid).filter(|t| t.start_ns == life.start_ns) {
            Some(tr) => tr,
            None => match self
                .gone
                .iter_mut()
                .find(|g| g.pid == pid && g.start_ns == life.start_ns)
            {
                Some(g) => g,
                None => return,
            },
        };
        if tr.birth.is_none() {
            tr.birth = birth;
        }
        if tr.kernel_cmdline.is_none() {
            tr.kernel_cmdline = cmd;
        }
    }

    /// An exit record: a process that grew and died. If it was sampled, its
    /// lingering entry gets its peak; if it lived between two samples, it
    /// is known from the record alone.
    fn exit(&mut self, e: &ExitSample, names: &mut dyn Names) {
        let t_exit = e.exit_ns as f64 / 1e9;
        let peak = e.peak_bytes.map(|p| (t_exit, p));
        let cmd = (!e.args.is_empty()).then(|| args_cmdline(&e.args));
        // A process still in the live list (its exit came before the
        // iterator noticed) moves to the lingering list now.
        if self
            .procs
            .get(&e.tgid)
            .is_some_and(|tr| tr.start_ns == e.start_ns)
        {
            if let Some(mut tr) = self.procs.remove(&e.tgid) {
                tr.exited_at = Some(t_exit);
                tr.exit_exact = true;
                let last = if self.live.binary_search(&e.tgid).is_ok() {
                    self.ticks
                } else {
                    self.ticks.saturating_sub(1)
                };
                self.retire(tr, t_exit, last);
            }
        }
        if let Some(g) = self
            .gone
            .iter_mut()
            .rev()
            .find(|g| g.pid == e.tgid && (g.start_ns == e.start_ns || e.start_ns == 0))
        {
            g.exit_peak = peak.or(g.exit_peak);
            g.exited_at = Some(t_exit);
            g.exit_exact = true;
            // First seen as a zombie (its life already ended in the
            // kernel): its birth is in the record only.
            if g.birth.is_none() {
                g.birth = e.birth.map(|(ns, b)| (ns as f64 / 1e9, b));
            }
            // Its memcg when it died (it may have moved since the last
            // sample).
            if e.memcg_id != 0 && e.memcg_id != g.memcg_id {
                if let Some(cg) = names.cgroup_of(e.memcg_id) {
                    g.memcg_id = e.memcg_id;
                    (g.cgroup, g.attr) = intern(&mut self.interned, &self.empty, &cg);
                    g.cgroup_version = names.version();
                }
            }
            if g.kernel_cmdline.is_none() {
                g.kernel_cmdline = cmd;
            }
            // Known only from its OOM mark until now.
            if g.comm.is_empty() {
                g.set_comm(&e.comm);
            }
            if g.ppid == 0 {
                g.ppid = e.ppid;
            }
            return;
        }
        let mut tr = Box::new(Tracked::new(e.tgid, e.start_ns, &self.empty));
        tr.ppid = e.ppid;
        tr.set_comm(&e.comm);
        tr.memcg_id = e.memcg_id;
        tr.kernel_cmdline = cmd;
        tr.birth = e.birth.map(|(ns, b)| (ns as f64 / 1e9, b));
        tr.exit_peak = peak;
        tr.exited_at = Some(t_exit);
        tr.exit_exact = true;
        tr.last_tick = 0;
        if let Some(cg) = names.cgroup_of(e.memcg_id) {
            (tr.cgroup, tr.attr) = intern(&mut self.interned, &self.empty, &cg);
            tr.cgroup_version = names.version();
        }
        self.gone.push_back(tr);
    }

    fn sample(
        &mut self,
        ts_ms: u64,
        dt: Option<f64>,
        mut status: KernelStatus,
        rows: Option<usize>,
        pids: &[u32],
        flagged: &[u32],
    ) -> Sample {
        let params = self.params;
        let t_now = self.last_t.unwrap_or(0.0);
        let now = self.ticks;
        // Rates and trends of the processes that moved lately; every other
        // one is stable with growth 0 and is not touched.
        let active: Vec<u32> = self.active.keys().copied().collect();
        for pid in active {
            let Some(tr) = self.procs.get_mut(&pid) else {
                self.active.remove(&pid);
                continue;
            };
            tr.classify(t_now, &params, &self.times, now, &mut self.buf);
            if !tr.active(t_now, &params, &self.times) {
                self.active.remove(&pid);
            }
        }
        // Order by growth, then RSS, then pid, and build rows for the
        // ones shown. Only the moving processes and the largest still
        // ones can be among the first `limit`.
        let by_growth = |a: &(f64, u64, u32), b: &(f64, u64, u32)| {
            b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2))
        };
        let limit = rows.unwrap_or(usize::MAX);
        let key = |tr: &Tracked| (tr.growth_short, tr.resident(), tr.pid);
        let mut order: Vec<(f64, u64, u32)> = if limit >= self.index.by_rss.len() {
            self.procs
                .values()
                .filter(|tr| tr.visible)
                .map(|tr| key(tr))
                .collect()
        } else {
            let mut v: Vec<(f64, u64, u32)> = self
                .active
                .keys()
                .chain(pids.iter())
                .chain(flagged.iter())
                .filter_map(|p| self.procs.get(p))
                .filter(|tr| tr.visible)
                .map(|tr| key(tr))
                .collect();
            v.extend(
                self.index
                    .by_rss
                    .iter()
                    .filter(|(_, pid)| !self.active.contains_key(pid))
                    .take(limit)
                    .map(|(r, pid)| (0.0, r.0, *pid)),
            );
            v.sort_unstable_by_key(|x| x.2);
            v.dedup_by_key(|x| x.2);
            v
        };
        if limit < order.len() {
            order.select_nth_unstable_by(limit, by_growth);
            order[..limit].sort_unstable_by(by_growth);
        } else {
            order.sort_unstable_by(by_growth);
        }
        let processes: Vec<ProcessRow> = order
            .iter()
            .enumerate()
            .filter(|(i, o)| *i < limit || pids.contains(&o.2) || flagged.contains(&o.2))
            .filter_map(|(_, o)| {
                let mut r = self.procs.get(&o.2).map(|t| t.row(now))?;
                r.flagged = flagged.contains(&o.2);
                Some(r)
            })
            .collect();
        self.update_groups(t_now, flagged);
        let groups = self
            .groups
            .iter()
            .filter(|g| self.procs.get(&g.leader_pid).is_some_and(|t| t.visible))
            .take(limit.max(20))
            .cloned()
            .collect();
        let cgroups = self.cgroup_rows(MAX_CGROUP_ROWS);
        status.tracked_pids = self.procs.len();
        status.lingering = self.gone.len();
        status.linger_dropped = self.linger_dropped;
        Sample {
            kind: "sample",
            ts_ms,
            interval_s: dt.unwrap_or(0.0),
            processes_total: self.procs.len(),
            processes,
            groups,
            cgroups,
            kernel: status,
            ledger: None,
        }
    }

    /// Finds the groups again (groups.rs) over every live process, when a
    /// process came, went or changed what grouping looks at.
    fn regroup(&mut self) {
        let members: Vec<groups::Member> = self
            .procs
            .values()
            .map(|tr| groups::Member {
                pid: tr.pid,
                ppid: tr.ppid,
                start_ns: tr.start_ns,
                exe: tr.meta.as_ref().map_or("", |m| m.exe.as_str()),
                comm: tr.comm.as_str(),
                exec_id: tr.exec_id,
                rss_bytes: tr.resident(),
                growth_bytes_per_sec: 0.0,
            })
            .collect();
        let found = groups::group(&members);
        drop(members);
        self.regroups += 1;
        let parents: Vec<u32> = self.procs.values().map(|t| t.ppid).collect();
        for tr in self.procs.values_mut() {
            tr.kids = 0;
        }
        for pp in parents {
            if let Some(p) = self.procs.get_mut(&pp) {
                p.kids += 1;
            }
        }
        let c = &mut self.group_cache;
        c.place.clear();
        c.of.clear();
        for (i, g) in found.iter().enumerate() {
            for p in &g.all {
                c.of.insert(*p, i);
            }
        }
        c.found = found;
        c.dirty = false;
    }

    /// Groups and pools (groups.rs) of every live process, each with its
    /// total RSS over time: a 10 s and a 60 s rate and a trend, as for a
    /// process. The groups are found again only when a process came, went
    /// or changed parent, image or exe; their RSS totals follow their
    /// members' changes, and their summed rate is that of the members
    /// that moved.
    fn update_groups(&mut self, t_now: f64, flagged: &[u32]) {
        let mut place = std::mem::take(&mut self.group_cache.place);
        if !self.group_cache.dirty && place.len() <= PLACE_MAX {
            // Parents before their children; a parent whose children are
            // all placed after it is placed like a process without any.
            place.sort_unstable_by_key(|p| (self.procs.get(p).map_or(0, |t| t.start_ns), *p));
            place.dedup();
            let mut pending: FastMap<u32, u32> = FastMap::default();
            for p in &place {
                if let Some(t) = self.procs.get(p) {
                    *pending.entry(t.ppid).or_default() += 1;
                }
            }
            for pid in place {
                let kids_pending = pending.get(&pid).copied().unwrap_or(0);
                if !self.place(pid, kids_pending) {
                    self.group_cache.dirty = true;
                    break;
                }
            }
        } else {
            self.group_cache.dirty = true;
        }
        // Dissolved groups are left in place until the next full pass.
        let alive = self.group_cache.found.iter().filter(|g| g.members >= 2).count();
        if self.group_cache.found.len() > 64 && self.group_cache.found.len() > 2 * alive {
            self.group_cache.dirty = true;
        }
        if self.group_cache.dirty {
            self.regroup();
        }
        for g in &mut self.group_cache.found {
            if g.pids_stale {
                g.list_pids();
            }
        }
        for g in &mut self.group_cache.found {
            g.growth_bytes_per_sec = 0.0;
        }
        for pid in self.active.keys() {
            if let (Some(&i), Some(tr)) = (self.group_cache.of.get(pid), self.procs.get(pid)) {
                self.group_cache.found[i].growth_bytes_per_sec += tr.growth_short;
            }
        }
        let mut found = std::mem::take(&mut self.group_cache.found);
        let mut by_size: Vec<usize> = (0..found.len()).filter(|&i| found[i].members >= 2).collect();
        by_size.sort_by(|&a, &b| {
            found[b]
                .rss_bytes
                .cmp(&found[a].rss_bytes)
                .then(found[a].leader_pid.cmp(&found[b].leader_pid))
        });
        let ordered: Vec<&groups::Group> = by_size.iter().map(|&i| &found[i]).collect();
        self.want_rollups(&ordered, flagged, t_now);
        let params = self.params;
        let mut seen: FastMap<(u32, u64), ()> = FastMap::default();
        let mut rows = Vec::with_capacity(found.len());
        for g in ordered {
            let key = (g.leader_pid, g.leader_start_ns);
            seen.insert(key, ());
            let h = self.group_hist.entry(key).or_default();
            h.push(t_now, g.rss_bytes as f64);
            h.trim_before(t_now - HISTORY_S);
            self.buf.clear();
            h.points(t_now - params.long_window_s, &mut self.buf);
            let mut long = trend::slope(&self.buf);
            let mut trend = trend::classify(&self.buf, &params);
            // The total's own 10 s slope: the members' rates summed miss a
            // pool that grows by new members (each one step, then flat).
            let short_from = t_now - params.short_window_s;
            let short = &self.buf[self.buf.partition_point(|p| p.0 < short_from)..];
            let mut growth = if short.len() >= 2 {
                trend::slope(short)
            } else {
                g.growth_bytes_per_sec
            };
            let sums = private::sums(
                g.all
                    .iter()
                    .map(|p| self.procs.get(p).and_then(|t| t.private.as_deref())),
                t_now,
            );
            let mut pss_growth = None;
            if let Some(sums) = sums {
                // Shared pages once: the group's own memory, not RSS summed.
                let r =
                    self.group_private
                        .entry(key)
                        .or_default()
                        .update(t_now, sums, &params, &mut self.buf);
                (growth, long, trend, pss_growth) = (r.short, r.long, r.trend, Some(r.short));
            }
            rows.push(GroupRow {
                attribution: self
                    .procs
                    .get(&g.leader_pid)
                    .map(|t| t.attribution())
                    .unwrap_or_default(),
                comm: self
                    .procs
                    .get(&g.leader_pid)
                    .map(|t| t.comm.clone())
                    .unwrap_or_default(),
                leader_pid: g.leader_pid,
                exe: g.exe.clone(),
                members: g.members,
                pids: g.pids.clone(),
                rss_bytes: g.rss_bytes,
                growth_bytes_per_sec: growth,
                growth_bytes_per_sec_long: long,
                trend,
                growth_of: if sums.is_some() { "pss" } else { "rss_sum" },
                pss_bytes: sums.map(|s| s.0),
                uss_bytes: sums.map(|s| s.1),
                pss_growth_bytes_per_sec: pss_growth,
            });
        }
        self.group_hist.retain(|k, _| seen.contains_key(k));
        self.group_private.retain(|k, _| seen.contains_key(k));
        self.groups = rows;
        std::mem::swap(&mut self.group_cache.found, &mut found);
    }

    /// The leader of `pid`'s group, by the rule of groups.rs: the top of
    /// its chain of same-image parents.
    fn leader_of(&self, pid: u32) -> Option<u32> {
        let mut cur = self.procs.get(&pid)?;
        for _ in 0..64 {
            match self.procs.get(&cur.ppid) {
                Some(parent) if groups::same_image(&member(cur), &member(parent)) => cur = parent,
                _ => break,
            }
        }
        Some(cur.pid)
    }

    /// Puts `pid` in the group it belongs to now, alone (no full
    /// regrouping). False when that is not enough: it has children (it may
    /// lead them), or it leads its group.
    fn place(&mut self, pid: u32, kids_placed_after: u32) -> bool {
        let Some(tr) = self.procs.get(&pid) else {
            return true;
        };
        if tr.kids > kids_placed_after {
            return false;
        }
        let c = &self.group_cache;
        if let Some(g) = c.of.get(&pid).and_then(|&i| c.found.get(i)) {
            if g.leader_pid == pid {
                return false;
            }
        }
        let (kids, resident) = (tr.kids.saturating_sub(kids_placed_after), tr.resident());
        self.leave_group(pid, kids, resident);
        let Some(leader) = self.leader_of(pid) else {
            return true;
        };
        if leader == pid {
            return true;
        }
        let (Some(l), Some(me)) = (self.procs.get(&leader), self.procs.get(&pid)) else {
            return true;
        };
        let c = &mut self.group_cache;
        match c.of.get(&leader).copied() {
            Some(i) => {
                let g = &mut c.found[i];
                g.all.push(pid);
                g.members += 1;
                g.rss_bytes += me.resident();
                g.pids_stale = true;
                c.of.insert(pid, i);
            }
            None => {
                // Its parent, alone until now, leads a new group of two.
                if l.pid != me.ppid {
                    return false;
                }
                let i = c.found.len();
                c.found.push(groups::Group {
                    leader_pid: l.pid,
                    leader_start_ns: l.start_ns,
                    exe: l.meta.as_ref().map_or(String::new(), |m| m.exe.clone()),
                    members: 2,
                    pids: Vec::new(),
                    all: vec![l.pid, pid],
                    rss_bytes: l.resident() + me.resident(),
                    growth_bytes_per_sec: 0.0,
                    pids_stale: true,
                });
                c.of.insert(l.pid, i);
                c.of.insert(pid, i);
            }
        }
        true
    }

    /// `pid` leaves its group (it exited, or is placed again). A process
    /// that others follow (children, or the leader) needs a full regroup.
    fn leave_group(&mut self, pid: u32, kids: u32, resident: u64) {
        let c = &mut self.group_cache;
        let Some(i) = c.of.get(&pid).copied() else { return };
        let Some(g) = c.found.get_mut(i) else { return };
        if kids > 0 || g.leader_pid == pid {
            c.dirty = true;
            return;
        }
        c.of.remove(&pid);
        if let Some(at) = g.all.iter().position(|p| *p == pid) {
            g.all.swap_remove(at);
        }
        g.members = g.all.len();
        g.rss_bytes = g.rss_bytes.saturating_sub(resident);
        g.pids_stale = true;
        if g.members < 2 {
            for p in g.all.drain(..) {
                c.of.remove(&p);
            }
            g.members = 0;
        }
    }

    /// The `n` cgroups whose visible processes hold the most RSS.
    fn cgroup_rows(&self, n: usize) -> Vec<CgroupRow> {
        // (processes, rss, growth, memcg id) per cgroup path
        type Acc = (usize, u64, f64, u64);
        let mut v: Vec<(&str, Acc)> = self
            .index
            .cgroups
            .iter()
            .map(|(cg, &(n, rss, memcg))| (&**cg, (n, rss, 0.0, memcg)))
            .collect();
        if v.len() > n {
            v.select_nth_unstable_by(n, |a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(b.0)));
            v.truncate(n);
        }
        v.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(b.0)));
        // Growth: only processes that moved have any.
        for pid in self.active.keys() {
            let Some(tr) = self.procs.get(pid).filter(|t| t.visible && t.growth_short != 0.0) else {
                continue;
            };
            if let Some(e) = v.iter_mut().find(|e| e.0 == &*tr.cgroup) {
                e.1 .2 += tr.growth_short;
            }
        }
        v.into_iter()
            .map(|(cg, (n, rss, g, memcg))| {
                let lim = self
                    .memcg_now
                    .get(&memcg)
                    .copied()
                    .zip(self.memcg_limit_of.get(&memcg).copied());
                CgroupRow {
                    cgroup: cg.to_string(),
                    attribution: self
                        .interned
                        .get(cg)
                        .map_or_else(|| attribute(cg), |a| (**a).clone()),
                    processes: n,
                    rss_bytes: rss,
                    growth_bytes_per_sec: g,
                    limit_bytes: lim.map(|l| l.1),
                    limit_usage_bytes: lim.map(|l| l.0 .0),
                }
            })
            .collect()
    }

    /// Every private::ROUND_S, a round of Pss/USS reads: the suspects
    /// (flagged) and growers, then the members of the PSS_GROUPS largest
    /// groups (RSS counts a pool's shared pages once per member; Pss splits
    /// them, USS shows copy-on-write copying). At most
    /// ROLLUP_READS_PER_ROUND, the longest unread first; the rest counted.
    fn want_rollups(&mut self, found: &[&groups::Group], flagged: &[u32], t_now: f64) {
        if t_now - self.last_rollup_round < private::ROUND_S {
            return;
        }
        self.last_rollup_round = t_now;
        // Growing processes are among those that moved (`active`).
        let growers = self
            .active
            .keys()
            .chain(flagged.iter())
            .filter_map(|p| self.procs.get(p))
            .filter(|t| t.visible && (t.trend == Trend::Growing || flagged.contains(&t.pid)))
            .map(|t| t.pid);
        // A group larger than PSS_GROUP_MAX is left out: its members would
        // each be read less than once a minute, never fresh together, and
        // listing them costs every round (a 10,000-member pool, 10,000
        // lookups every 3 s).
        let members = found
            .iter()
            .take(PSS_GROUPS)
            .filter(|g| g.all.len() <= PSS_GROUP_MAX)
            .flat_map(|g| g.all.iter().copied());
        // Not a process whose RSS is growing: RSS already shows its growth,
        // and a read holds the mmap lock of a process faulting at full
        // speed, often in memcg reclaim (15-72 ms per GiB, docs/performance.md).
        let mut cands: Vec<(u32, Option<f64>)> = growers
            .chain(members)
            .filter_map(|pid| self.procs.get(&pid).map(|t| (pid, t)))
            .filter(|(_, t)| !(t.trend == Trend::Growing && t.growth_of == "rss"))
            .map(|(pid, t)| (pid, t.private.as_ref().and_then(|p| p.read_at())))
            .collect();
        let waiting = private::pick(&mut cands, crate::limits::ROLLUP_READS_PER_ROUND);
        crate::limits::ROLLUP_READS.hit_n(waiting as u64);
        for (pid, _) in cands {
            if let Some(tr) = self.procs.get(&pid) {
                self.rollups_wanted.push(Req {
                    pid,
                    start_ns: tr.start_ns,
                    what: Want::Rollup,
                });
            }
        }
    }

    /// The limiting memcgs read this sample: (memcg id of processes, the
    /// path of the memcg that limits it, limit, usage). Memcgs not read
    /// this sample are forgotten; at most MAX_MEMCGS are followed.
    pub fn record_memcgs(&mut self, t: f64, read: &[(u64, String, u64, u64)]) {
        let mut of_id: Vec<(u64, &str)> = Vec::with_capacity(read.len());
        self.memcg_limit_of.clear();
        for (id, path, limit, usage) in read {
            if !self.memcgs.contains_key(path) && self.memcgs.len() >= MAX_MEMCGS {
                continue;
            }
            of_id.push((*id, path));
            self.memcg_limit_of.insert(*id, *limit);
            let m = self.memcgs.entry(path.clone()).or_insert_with(|| MemcgTrack {
                limit: *limit,
                hist: Default::default(),
                seen: f64::NEG_INFINITY,
            });
            m.limit = *limit;
            if m.seen != t {
                m.seen = t;
                m.hist.push(t, *usage as f64);
                m.hist.trim_before(t - HISTORY_S);
            }
        }
        // Kept a while after its processes are gone: an OOM that emptied
        // it is assembled seconds later.
        self.memcgs.retain(|_, m| t - m.seen <= LINGER_S);
        // Each memcg's state once, not once per process.
        let mut pts = Vec::new();
        let mut by_path: FastMap<&str, (u64, f64)> = FastMap::default();
        self.memcg_now.clear();
        for (id, path) in of_id {
            let st = *by_path.entry(path).or_insert_with(|| {
                pts.clear();
                if let Some(m) = self.memcgs.get(path) {
                    m.hist.points(t - self.params.short_window_s, &mut pts);
                }
                (pts.last().map_or(0, |p| p.1 as u64), trend::slope(&pts))
            });
            self.memcg_now.insert(id, st);
        }
    }

    /// The cgroup path of a memcg by its kernfs id, from the processes
    /// (alive or lingering) last seen in it.
    pub fn memcg_path_by_id(&self, id: u64) -> Option<String> {
        self.procs
            .values()
            .chain(self.gone.iter())
            .find(|t| t.memcg_id == id && !t.cgroup.is_empty())
            .map(|t| t.cgroup.to_string())
    }

    /// For processes in memcg `id`: the limiting memcg's usage and its
    /// growth over the short window (bytes/s), as of the last sample.
    pub fn memcg_state(&self, id: u64) -> Option<(u64, f64)> {
        self.memcg_now.get(&id).copied()
    }

    /// A memcg's limit and usage as (unix ms, bytes) between two
    /// CLOCK_MONOTONIC times in seconds, by its path.
    pub fn memcg_history(&self, path: &str, from: f64, to: f64) -> Option<(u64, Vec<(u64, u64)>)> {
        let m = self.memcgs.get(path)?;
        let mut pts = Vec::new();
        m.hist.points(from, &mut pts);
        Some((
            m.limit,
            pts.into_iter()
                .filter(|p| p.0 <= to)
                .map(|(t, v)| (self.to_ms(t), v as u64))
                .collect(),
        ))
    }

    /// Every group (pool) of the last sample.
    pub fn group_rows(&self) -> &[GroupRow] {
        &self.groups
    }

    /// The group (pool) that `pid` is in, if any, from the last sample.
    pub fn group_of(&self, pid: u32) -> Option<&GroupRow> {
        self.groups
            .iter()
            .find(|g| g.leader_pid == pid || g.pids.contains(&pid))
    }

    fn subject<'a>(&'a self, tr: &'a Tracked) -> (crate::model::sample::Subject, &'a str, u64) {
        (
            crate::model::sample::Subject {
                pid: tr.pid,
                rss_bytes: tr.resident(),
                growth_bytes_per_sec: tr.growth_short,
                trend: tr.trend,
                memcg: self.memcg_state(tr.memcg_id),
            },
            &*tr.cgroup,
            tr.memcg_id,
        )
    }

    /// The processes a trigger can fire for, as `subjects` gives them:
    /// those that moved lately (only they can be growing), those named,
    /// and the still ones with at least `min_rss` bytes. Every other
    /// process is stable and smaller than any threshold.
    pub fn trigger_subjects(
        &self,
        min_rss: u64,
        named: &[u32],
    ) -> Vec<(crate::model::sample::Subject, &str, u64)> {
        let mut pids: Vec<u32> = self.active.keys().chain(named.iter()).copied().collect();
        pids.extend(
            self.index
                .by_rss
                .iter()
                .take_while(|(r, _)| r.0 >= min_rss)
                .map(|(_, p)| *p),
        );
        pids.sort_unstable();
        pids.dedup();
        pids.iter()
            .filter_map(|p| self.procs.get(p))
            .filter(|tr| tr.visible)
            .map(|tr| self.subject(tr))
            .collect()
    }

    /// The memcg ids of the visible processes, and the cgroup paths of
    /// those whose memcg id is unknown.
    pub fn memcgs_in_use(&self) -> (Vec<u64>, Vec<&str>) {
        (
            self.index.memcgs.keys().copied().collect(),
            self.index.unnamed.keys().map(|k| &**k).collect(),
        )
    }

    /// The full row of a live process.
    pub fn row(&self, pid: u32) -> Option<ProcessRow> {
        self.procs.get(&pid).map(|t| t.row(self.ticks))
    }

    /// When the live process `pid` started (CLOCK_MONOTONIC ns).
    pub fn start_ns(&self, pid: u32) -> Option<u64> {
        self.procs.get(&pid).map(|t| t.start_ns)
    }

    fn to_ms(&self, t: f64) -> u64 {
        (self.wall_offset_ms + t * 1000.0).max(0.0) as u64
    }

    /// The process `pid` (the one that started at `start_ns` if given and
    /// known; a reused pid is another process), alive or recently exited.
    fn find(&self, pid: u32, start_ns: Option<u64>) -> Option<&Tracked> {
        let all = || {
            self.procs
                .get(&pid)
                .into_iter()
                .chain(self.gone.iter().rev().filter(move |g| g.pid == pid))
        };
        if let Some(s) = start_ns {
            if let Some(t) = all().find(|t| t.start_ns == s) {
                return Some(&**t);
            }
        }
        all().next().map(|b| &**b)
    }

    /// What we know about `pid`, alive or recently exited, for an incident.
    pub fn snapshot(&self, pid: u32) -> Option<crate::model::incident::ProcSnapshot> {
        self.snapshot_of(pid, None)
    }

    pub fn snapshot_of(
        &self,
        pid: u32,
        start_ns: Option<u64>,
    ) -> Option<crate::model::incident::ProcSnapshot> {
        let tr = self.find(pid, start_ns)?;
        let mut pts = Vec::new();
        tr.points(f64::NEG_INFINITY, &self.times, self.ticks, &mut pts);
        Some(crate::model::incident::ProcSnapshot {
            comm: tr.comm.clone(),
            cmdline: self.cmdline_or_inherited(tr),
            cgroup: tr.cgroup.to_string(),
            exe: tr.meta.as_ref().map(|m| m.exe.clone()).unwrap_or_default(),
            ns_pid: tr.meta.as_ref().and_then(|m| m.ns_pid),
            history: pts.iter().map(|&(t, rss)| (self.to_ms(t), rss as u64)).collect(),
            birth_ms: tr.birth.map(|(t, b)| (self.to_ms(t), b)),
            group: self.group_of(pid).map(|g| crate::model::incident::GroupInfo {
                kind: crate::model::incident::GroupKind::Pool,
                leader_pid: g.leader_pid,
                comm: g.comm.clone(),
                members: g.members,
                rss_bytes: g.rss_bytes,
                pss_bytes: g.pss_bytes,
                growth_bytes_per_sec_long: g.growth_bytes_per_sec_long,
                trend: g.trend,
            }),
            exited: tr.exit_exact,
        })
    }

    /// Its command line; before its own /proc read has arrived (a pool
    /// worker forked within a second of an OOM), its parent's when it runs
    /// its parent's image: forked and not exec'd since. The exec id, which
    /// only an exec changes and a fork copies, is the parent's, and so is
    /// the comm. Until it execs, a child's argv is its parent's (the
    /// kernel's exit records say the same, lifecycle.rs). The hooks path
    /// reads no exec id (0): nothing is inherited there.
    fn cmdline_or_inherited(&self, tr: &Tracked) -> String {
        let own = tr.cmdline();
        if !own.is_empty() || tr.exec_id == 0 {
            return own;
        }
        match self.procs.get(&tr.ppid) {
            Some(p) if p.exec_id == tr.exec_id && p.comm_raw == tr.comm_raw => p.cmdline(),
            _ => String::new(),
        }
    }

    /// Processes in `scope` whose threads spent time in reclaim during the
    /// last `window_s` seconds, with that time in ms, largest first.
    pub fn reclaimers(&self, scope: Option<&str>, window_s: f64, at: Option<f64>) -> Vec<(u32, String, f64)> {
        let Some(now) = self.last_t else { return Vec::new() };
        // The window ends at the first sample after `at` (the counters are
        // read once per sample), or now; the incident is often finished
        // seconds after the OOM, when newer reclaim is not its own.
        let at = at.unwrap_or(now);
        let mut v: Vec<(u32, String, f64)> = self
            .procs
            .values()
            .chain(self.gone.iter())
            .filter(|tr| in_scope(scope, &tr.cgroup))
            .filter_map(|tr| {
                let h = tr.reclaim_points();
                // The counter as the sample just after `at` read it (the
                // history holds changes only).
                let last = h.clone().rev().find(|x| x.0 <= at + RECLAIM_AFTER_S)?.1;
                let before = h
                    .clone()
                    .rev()
                    .find(|x| x.0 < at - window_s)
                    .map(|x| x.1)
                    .unwrap_or(h.clone().next()?.1);
                let ms = last.saturating_sub(before) as f64 / 1e6;
                (ms > 0.0).then(|| (tr.pid, tr.comm.clone(), ms))
            })
            .collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2));
        v
    }

    /// The top grower for an OOM verdict (docs/verdict.md): among the
    /// processes in cgroup `scope` or below that were alive at the kill
    /// (those that exited before it hold nothing), the ones still growing
    /// at the kill (RSS up at least END_MIN in the last END_S seconds) come
    /// first; among them, the largest rise in the `window_s` seconds before
    /// the kill wins. Rises count births, samples and, for the victim, its
    /// RSS at the kill: `victim` = (pid, CLOCK_MONOTONIC seconds of the
    /// kill, RSS bytes). Without a victim the window ends now.
    pub fn top_grower(
        &self,
        scope: Option<&str>,
        window_s: f64,
        victim: Option<(u32, f64, u64)>,
    ) -> Option<Grower> {
        self.top_growers(scope, window_s, victim, 1)
            .into_iter()
            .next()
            .map(|g| g.0)
    }

    /// The `n` first processes by the verdict's order (see top_grower),
    /// each with its RSS over the window as (unix ms, bytes).
    pub fn top_growers(
        &self,
        scope: Option<&str>,
        window_s: f64,
        victim: Option<(u32, f64, u64)>,
        n: usize,
    ) -> Vec<(Grower, Vec<(u64, u64)>)> {
        let Some(kill_t) = victim.map(|v| v.1).or(self.last_t) else {
            return Vec::new();
        };
        let from = kill_t - window_s;
        let mut buf = Vec::new();
        // (still growing at the kill, the grower, its series)
        type Ranked = (bool, Grower, Vec<(u64, u64)>);
        let mut all: Vec<Ranked> = Vec::new();
        for tr in self.procs.values().chain(self.gone.iter()) {
            let is_victim = victim.is_some_and(|v| v.0 == tr.pid);
            if !is_victim {
                if !in_scope(scope, &tr.cgroup) {
                    continue;
                }
                // An exact exit before the kill, or a process found gone
                // by a sample more than the slack before it.
                let slack = if tr.exit_exact { 0.0 } else { EXIT_SLACK_S };
                if tr.exited_at.is_some_and(|e| e < kill_t - slack) {
                    continue;
                }
                // Born after the kill: in a burst of OOMs, the next
                // process is known by the time this verdict is made.
                if tr.start_ns != 0 && tr.start_ns as f64 / 1e9 > kill_t {
                    continue;
                }
            }
            tr.points(from, &self.times, self.ticks, &mut buf);
            // The window ends at the kill for every input (samples, peaks
            // at exit): in a storm the next victim's sample taken 89 ms
            // after this kill shows growth this kill could not have seen.
            buf.retain(|p| p.0 <= kill_t);
            if let Some((_, t, b)) = victim.filter(|_| is_victim) {
                // Its samples after the kill see it torn down.
                buf.retain(|p| p.0 < t);
                buf.push((t, b as f64));
            }
            let (rise, lo, hi) = largest_rise(&buf);
            if rise <= 0.0 {
                continue;
            }
            let end = buf.last().map_or(0.0, |p| p.1);
            let end_min = buf
                .iter()
                .filter(|p| p.0 >= kill_t - END_S)
                .map(|p| p.1)
                .fold(f64::INFINITY, f64::min);
            let growing = end - end_min >= END_MIN;
            let g = Grower {
                attribution: tr.attribution(),
                pid: tr.pid,
                comm: tr.comm.clone(),
                growth_bytes: rise as u64,
                from_bytes: lo as u64,
                to_bytes: hi as u64,
                window_s,
                growing_at_kill: growing,
            };
            let hist = buf.iter().map(|(t, v)| (self.to_ms(*t), *v as u64)).collect();
            all.push((growing, g, hist));
        }
        // Still growing at the kill first, then the largest rise.
        all.sort_by(|a, b| {
            (b.0, b.1.growth_bytes)
                .cmp(&(a.0, a.1.growth_bytes))
                .then(a.1.pid.cmp(&b.1.pid))
        });
        all.into_iter().take(n).map(|(_, g, h)| (g, h)).collect()
    }

    /// RSS history of `pid` as (unix ms, bytes), for an evidence bundle.
    pub fn timeline(&self, pid: u32) -> Vec<(u64, u64)> {
        self.snapshot(pid).map(|s| s.history).unwrap_or_default()
    }
}

/// The largest rise in a series: (rise, the low before it, the high).
pub fn largest_rise(pts: &[(f64, f64)]) -> (f64, f64, f64) {
    let mut min = f64::INFINITY;
    let mut best = (0.0, 0.0, 0.0);
    for &(_, v) in pts {
        if v < min {
            min = v;
        }
        if v - min > best.0 {
            best = (v - min, min, v);
        }
    }
    best
}

/// A cgroup path and its attribution, interned: the processes of one
/// cgroup share one copy.
fn intern(
    map: &mut FastMap<Arc<str>, Arc<Attribution>>,
    empty: &(Arc<str>, Arc<Attribution>),
    path: &str,
) -> (Arc<str>, Arc<Attribution>) {
    if path.is_empty() {
        return empty.clone();
    }
    if let Some((k, v)) = map.get_key_value(path) {
        return (k.clone(), v.clone());
    }
    // Paths no process uses any more go when the table has doubled.
    if map.len() >= 1024 && map.len().is_power_of_two() {
        map.retain(|k, _| Arc::strong_count(k) > 1);
    }
    let (k, v): (Arc<str>, Arc<Attribution>) = (Arc::from(path), Arc::new(attribute(path)));
    map.insert(k.clone(), v.clone());
    (k, v)
}

/// A process's cgroup: named from its memcg id by the kernel's side, or
/// the one /proc gave.
enum Named {
    Kernel(String),
    Proc(Arc<str>),
}

fn cgroup_of(tr: &Tracked, names: &mut dyn Names) -> (Named, u8) {
    if let Some(p) = names.cgroup_of(tr.memcg_id) {
        return (Named::Kernel(p), names.version());
    }
    match &tr.meta_cgroup {
        Some((cg, v)) => (Named::Proc(cg.clone()), *v),
        None => (Named::Proc(Arc::from("")), 0),
    }
}

/// A changed record. Returns (its RSS changed, something grouping looks
/// at changed: parent, image, comm). The history gets a new run only when
/// the RSS changed.
fn update(
    tr: &mut Tracked,
    p: &ProcSample,
    t: f64,
    tick: u64,
    dt: Option<f64>,
    hooks_path: bool,
) -> (bool, bool) {
    let regroup = tr.ppid != p.ppid || tr.exec_id != p.exec_id || tr.comm_raw != p.comm;
    let before = tr.resident();
    tr.ppid = p.ppid;
    tr.set_comm(&p.comm);
    tr.threads = p.threads;
    tr.oom_score_adj = p.oom_score_adj;
    if p.memcg_id != 0 || !hooks_path {
        tr.memcg_id = p.memcg_id;
    }
    if p.exec_id != tr.exec_id || tr.birth.is_none() {
        tr.birth = p.birth.map(|(ns, b)| (ns as f64 / 1e9, b));
        if p.exec_id != tr.exec_id {
            // A new image: its peak is its own from now on.
            tr.peak = 0;
        }
    }
    tr.exec_id = p.exec_id;
    if !p.no_mm {
        tr.rss = p.rss;
    }
    tr.from_kernel = !hooks_path || p.rss.iter().any(|v| *v != 0);
    tr.peak = tr.peak.max(p.hiwater_bytes).max(tr.resident());
    (tr.faults_per_sec, tr.forks_per_sec, tr.reclaim_ms_per_sec) = (0.0, 0.0, 0.0);
    if let (Some(dt), Some((f, k, r))) = (dt, tr.counts) {
        // The counts are those of its last changed record, which may be
        // several ticks old (unchanged records carry none): the rate is
        // over that span, ticks being evenly spaced.
        let span = dt * tick.saturating_sub(tr.rates_at).max(1) as f64;
        tr.faults_per_sec = p.faults.saturating_sub(f) as f64 / span;
        tr.forks_per_sec = p.forks.saturating_sub(k) as f64 / span;
        tr.reclaim_ms_per_sec = p.reclaim_ns.saturating_sub(r) as f64 / 1e6 / span;
    }
    tr.rates_at = tick;
    tr.counts = Some((p.faults, p.forks, p.reclaim_ns));
    let last_reclaim = tr
        .reclaim_hist
        .back()
        .map(|h| h.1)
        .or(tr.reclaim_zero_at.map(|_| 0));
    if last_reclaim.is_none_or(|v| v != p.reclaim_ns) {
        if last_reclaim.is_none() && p.reclaim_ns == 0 {
            tr.reclaim_zero_at = Some(t);
        } else {
            tr.reclaim_hist.push_back((t, p.reclaim_ns));
            if tr.reclaim_hist.len() + usize::from(tr.reclaim_zero_at.is_some()) > 16
                && tr.reclaim_zero_at.take().is_none()
            {
                tr.reclaim_hist.pop_front();
            }
        }
    }
    let moved = tr.history.since().is_none() || before != tr.resident();
    tr.history.push(tick, tr.resident() as f64);
    (moved, regroup)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-process sizes docs/performance.md states ("Memory").
    #[test]
    fn per_process_sizes_stay_as_documented() {
        let sizes = [
            ("Tracked (boxed)", std::mem::size_of::<Tracked>(), 640),
            ("ProcSample", std::mem::size_of::<ProcSample>(), 192),
            ("Meta (boxed)", std::mem::size_of::<Meta>(), 120),
            ("TickHistory", std::mem::size_of::<TickHistory>(), 64),
        ];
        for (name, size, bound) in sizes {
            eprintln!("{name}: {size} bytes");
            assert!(
                size <= bound,
                "{name} is {size} bytes, docs/performance.md says at most {bound}"
            );
        }
    }

    const MIB: u64 = 1 << 20;

    use std::collections::HashMap;

    #[derive(Default)]
    struct FakeNames(HashMap<u64, String>);
    impl Names for FakeNames {
        fn cgroup_of(&mut self, id: u64) -> Option<String> {
            self.0.get(&id).cloned()
        }
        fn learn(&mut self, _: &str, _: &[u8]) {}
        fn version(&self) -> u8 {
            1
        }
    }

    fn proc(pid: u32, start: u64, anon: u64) -> ProcSample {
        ProcSample {
            tgid: pid,
            ppid: 1,
            start_ns: start,
            comm: *b"x\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            threads: 1,
            rss: [0, anon, 0, 0],
            hiwater_bytes: 0,
            total_vm_bytes: 0,
            faults: 0,
            maj_faults: 0,
            memcg_id: 7,
            exec_id: 1,
            forks: 0,
            reclaim_ns: 0,
            birth: None,
            oom_score_adj: 0,
            no_mm: false,
            unchanged: false,
        }
    }

    fn tick(
        tr: &mut Tracker,
        names: &mut FakeNames,
        t: f64,
        procs: &[ProcSample],
        exits: &[ExitSample],
    ) -> (Sample, Vec<Req>) {
        tr.tick(
            TickInput {
                t,
                ts_ms: (t * 1000.0) as u64,
                procs,
                live: None,
                exits,
                status: KernelStatus::default(),
                hooks_path: false,
                rows: None,
                pids: &[],
                flagged: &[],
            },
            names,
        )
    }

    #[test]
    fn rates_trend_and_metadata_requests() {
        let mut names = FakeNames::default();
        names.0.insert(7, "/app".into());
        let mut tr = Tracker::new(trend::Params::default());
        let mut last = None;
        let mut asked = 0;
        for i in 0..12u64 {
            let mut p = proc(10, 100, MIB + 32 * MIB * i);
            p.faults = 100 * i;
            let (s, req) = tick(&mut tr, &mut names, i as f64, &[p, proc(11, 100, 5 * MIB)], &[]);
            asked += req.iter().filter(|r| r.what == Want::Meta).count();
            if i == 9 {
                assert_eq!(asked, 2, "metadata is asked once per process");
            }
            last = Some(s);
        }
        assert_eq!(asked, 4, "an unanswered request is asked again after 10 s");
        let s = last.unwrap();
        let grow = s.processes.iter().find(|p| p.pid == 10).unwrap();
        assert_eq!(grow.trend, Trend::Growing);
        assert!((grow.growth_bytes_per_sec - 32.0 * MIB as f64).abs() < 1.0);
        assert!((grow.faults_per_sec - 100.0).abs() < 1e-9);
        assert_eq!(grow.cgroup, "/app", "named by its memcg id");
        let idle = s.processes.iter().find(|p| p.pid == 11).unwrap();
        assert_eq!(idle.trend, Trend::Stable);
        assert_eq!(s.processes[0].pid, 10, "sorted by growth");
    }

    #[test]
    fn a_pool_copying_shared_pages_grows_by_uss_and_pss_with_flat_rss() {
        use crate::host::procfs::Rollup;
        let mut names = FakeNames::default();
        let mut tr = Tracker::new(trend::Params::default());
        let mut pending: Vec<Req> = Vec::new();
        let mut last = None;
        let mut rounds = 0;
        for i in 0..45u64 {
            let t = i as f64;
            // Workers 11 and 12 (forked by 10) each copy 8 MiB/s of the
            // 600 MiB they share with it, the same pages, from the start
            // (clamped at 500 MiB): a page both copied is the parent's
            // alone, the rest is shared by all three.
            let copied = |at: f64| ((8.0 * at) as u64).min(500) * MIB;
            let answers = pending
                .drain(..)
                .filter(|r| r.what == Want::Rollup)
                .map(|req| {
                    let c = copied(t - 1.0);
                    let shared = 600 * MIB - c;
                    let r = Rollup {
                        pss: c + shared / 3,
                        uss: c,
                    };
                    Answer {
                        req,
                        result: Ok(Reply::Rollup(r)),
                    }
                })
                .collect();
            tr.apply_meta(answers, &mut names);
            let ps: Vec<ProcSample> = [10, 11, 12]
                .iter()
                .map(|&pid| ProcSample {
                    ppid: if pid == 10 { 1 } else { 10 },
                    ..proc(pid, 100 + pid as u64, 600 * MIB)
                })
                .collect();
            let (s, req) = tick(&mut tr, &mut names, t, &ps, &[]);
            let n = req.iter().filter(|r| r.what == Want::Rollup).count();
            assert!(n == 0 || n == 3, "a round reads the 3 members: {req:?}");
            rounds += (n > 0) as u32;
            pending = req;
            last = Some(s);
        }
        assert_eq!(rounds, 15, "a round every {} s", private::ROUND_S);
        let s = last.unwrap();
        let w = s.processes.iter().find(|p| p.pid == 11).unwrap();
        assert_eq!((w.trend, w.growth_of), (Trend::Growing, "uss"), "{w:?}");
        let want = 8.0 * MIB as f64;
        assert!((w.growth_bytes_per_sec - want).abs() < 0.05 * want, "{w:?}");
        assert_eq!(w.rss_bytes, 600 * MIB);
        assert!(w.uss_bytes.is_some() && w.pss_bytes.is_some());
        let g = &s.groups[0];
        assert_eq!((g.leader_pid, g.members, g.growth_of), (10, 3, "pss"), "{g:?}");
        assert_eq!(g.trend, Trend::Growing);
        assert!(
            (g.growth_bytes_per_sec - 2.0 * want).abs() < 0.05 * 2.0 * want,
            "{g:?}"
        );
        assert_eq!(g.rss_bytes, 1800 * MIB);
        // Pss counts each page once: the 600 MiB plus the two copies (USS
        // sums the three private sets, 3 copies).
        let (pss, uss) = (g.pss_bytes.unwrap(), g.uss_bytes.unwrap());
        assert!(pss.abs_diff(600 * MIB + uss / 3 * 2) < 16, "{g:?}");
        assert!(uss > 900 * MIB, "{g:?}");
    }

    /// Answers a metadata request with this command line.
    fn answer_cmdline(tr: &mut Tracker, names: &mut FakeNames, req: Req, cmdline: &str) {
        tr.apply_meta(
            vec![Answer {
                req,
                result: Ok(Reply::Meta(Meta {
                    cmdline: cmdline.into(),
                    ..Default::default()
                })),
            }],
            names,
        );
    }

    #[test]
    fn metadata_is_read_again_after_exec_or_a_cgroup_move() {
        let mut names = FakeNames::default();
        let mut tr = Tracker::new(trend::Params::default());
        let p = proc(10, 100, MIB);
        let (_, req) = tick(&mut tr, &mut names, 0.0, std::slice::from_ref(&p), &[]);
        assert_eq!(req.len(), 1);
        answer_cmdline(&mut tr, &mut names, req[0], "sh -c x");
        let (s, req) = tick(&mut tr, &mut names, 1.0, std::slice::from_ref(&p), &[]);
        assert!(req.is_empty());
        assert_eq!(s.processes[0].cmdline, "sh -c x");
        let mut moved = p.clone();
        moved.memcg_id = 8;
        moved.exec_id = 2;
        let (_, req) = tick(&mut tr, &mut names, 2.0, &[moved], &[]);
        assert_eq!(req.len(), 1, "an exec or a move asks again");
    }

    /// A worker forked within a second of an OOM has no /proc read yet:
    /// the verdict's sibling rule gets its parent's command line while it
    /// runs its parent's image, and nothing once it has exec'd.
    #[test]
    fn a_fresh_fork_has_its_parents_command_line_until_it_execs() {
        let mut names = FakeNames::default();
        let mut tr = Tracker::new(trend::Params::default());
        let parent = proc(10, 100, MIB);
        let (_, req) = tick(&mut tr, &mut names, 0.0, std::slice::from_ref(&parent), &[]);
        answer_cmdline(&mut tr, &mut names, req[0], "python3 pool.py");
        let mut child = proc(11, 200, MIB);
        child.ppid = 10;
        tick(&mut tr, &mut names, 1.0, &[parent.clone(), child.clone()], &[]);
        let snap = tr.snapshot_of(11, Some(200)).unwrap();
        assert_eq!(snap.cmdline, "python3 pool.py");
        // After an exec (a new exec id) it is not its parent's image.
        child.exec_id = 2;
        tick(&mut tr, &mut names, 2.0, &[parent.clone(), child.clone()], &[]);
        assert_eq!(tr.snapshot_of(11, Some(200)).unwrap().cmdline, "");
        // Nor with another comm.
        child.exec_id = 1;
        child.comm = *b"y\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
        tick(&mut tr, &mut names, 3.0, &[parent.clone(), child.clone()], &[]);
        assert_eq!(tr.snapshot_of(11, Some(200)).unwrap().cmdline, "");
        // The parent's own command line is its own.
        assert_eq!(tr.snapshot_of(10, Some(100)).unwrap().cmdline, "python3 pool.py");
        // Nor on the hooks path, where no exec id is read (0 for all).
        let mut hooks = Tracker::new(trend::Params::default());
        let mut parent = proc(20, 100, MIB);
        parent.exec_id = 0;
        let (_, req) = tick(&mut hooks, &mut names, 0.0, std::slice::from_ref(&parent), &[]);
        answer_cmdline(&mut hooks, &mut names, req[0], "python3 pool.py");
        let mut child = proc(21, 200, MIB);
        (child.ppid, child.exec_id) = (20, 0);
        tick(&mut hooks, &mut names, 1.0, &[parent, child], &[]);
        assert_eq!(hooks.snapshot_of(21, Some(200)).unwrap().cmdline, "");
    }

    #[test]
    fn a_comm_that_is_not_utf8_is_still_a_process() {
        let mut names = FakeNames::default();
        let mut tr = Tracker::new(trend::Params::default());
        let mut p = proc(10, 100, MIB);
        p.comm = *b"\x1b]52;\xff\x07\0\0\0\0\0\0\0\0\0";
        let (s, _) = tick(&mut tr, &mut names, 0.0, &[p], &[]);
        assert_eq!(s.processes.len(), 1);
        assert_eq!(s.processes[0].comm, "\u{1b}]52;\u{fffd}\u{7}");
    }

    #[test]
    fn a_dead_grower_is_still_known_to_the_oom_verdict() {
        let mut names = FakeNames::default();
        names.0.insert(7, "/app".into());
        let mut tr = Tracker::new(trend::Params::default());
        for i in 0..6u64 {
            tick(
                &mut tr,
                &mut names,
                i as f64 * 0.5,
                &[proc(10, 100, (i + 1) * 20 * MIB)],
                &[],
            );
        }
        let (s, _) = tick(&mut tr, &mut names, 3.0, &[], &[]);
        assert!(s.processes.is_empty(), "not shown once gone");
        let snap = tr.snapshot(10).expect("still known after it died");
        assert_eq!(snap.history.len(), 6);
        // The victim's RSS at the kill counts too.
        let g = tr.top_grower(None, 60.0, Some((10, 3.1, 128 * MIB))).unwrap();
        assert_eq!((g.pid, g.growth_bytes), (10, 108 * MIB));
        tick(&mut tr, &mut names, 3.0 + LINGER_S + 1.0, &[], &[]);
        assert!(tr.snapshot(10).is_none(), "forgotten after the linger time");
    }

    #[test]
    fn reclaim_around_an_oom_counts_even_when_the_incident_closes_late() {
        let mut names = FakeNames::default();
        names.0.insert(7, "/app".into());
        let mut tr = Tracker::new(trend::Params::default());
        let mut p = proc(5, 5, 8 * MIB);
        for i in 0..40 {
            let t = i as f64 * 0.5;
            // 12 ms in reclaim between the samples at 4.5 s and 5.0 s.
            p.reclaim_ns = if t >= 5.0 { 12_000_000 } else { 0 };
            tick(&mut tr, &mut names, t, &[p.clone()], &[]);
        }
        // Asked 15 s after an OOM at 4.8 s: the reclaim is its own.
        let r = tr.reclaimers(Some("/app"), 3.0, Some(4.8));
        assert_eq!(r.len(), 1, "{r:?}");
        assert!((r[0].2 - 12.0).abs() < 1e-9, "{r:?}");
        // Not that of an OOM now, long after.
        assert!(tr.reclaimers(Some("/app"), 3.0, None).is_empty());
        // Nor of one before it started.
        assert!(tr.reclaimers(Some("/app"), 3.0, Some(1.0)).is_empty());
    }

    #[test]
    fn a_life_between_two_samples_is_a_grower_with_its_cmdline() {
        let mut names = FakeNames::default();
        names.0.insert(7, "/app".into());
        let mut tr = Tracker::new(trend::Params::default());
        tick(&mut tr, &mut names, 0.0, &[proc(1, 1, 6 * MIB)], &[]);
        let e = ExitSample {
            tgid: 50,
            ppid: 1,
            comm: *b"stress-ng-bighe\0",
            exit_ns: 900_000_000,
            start_ns: 400_000_000,
            birth: Some((400_000_000, 6 * MIB)),
            peak_bytes: Some(509 * MIB),
            memcg_id: 7,
            exit_code: 9,
            oom_victim: true,
            after_kill: false,
            args: b"stress-ng-bigheap [run]     \0".to_vec(),
        };
        tick(&mut tr, &mut names, 1.0, &[proc(1, 1, 6 * MIB)], &[e]);
        // It was the OOM victim, killed at 0.9 s.
        let g = tr
            .top_grower(Some("/app"), 60.0, Some((50, 0.9, 509 * MIB)))
            .unwrap();
        assert_eq!((g.pid, g.growth_bytes), (50, 503 * MIB));
        // For a kill after it exited, it is not a candidate.
        assert!(tr
            .top_grower(Some("/app"), 60.0, Some((1, 1.0, 6 * MIB)))
            .is_none());
        let snap = tr.snapshot(50).unwrap();
        assert_eq!(snap.cmdline, "stress-ng-bigheap [run]");
        assert_eq!(snap.cgroup, "/app");
    }

    #[test]
    fn a_victim_known_only_from_its_mark_is_ranked_and_named() {
        // Born at 0.4 s, killed at 0.9 s: no sample saw it, and its exit
        // record has not reached the model when the verdict is made.
        let mut names = FakeNames::default();
        names.0.insert(7, "/app".into());
        let mut tr = Tracker::new(trend::Params::default());
        tick(&mut tr, &mut names, 0.0, &[proc(1, 1, 6 * MIB)], &[]);
        let mut life = Life {
            start_ns: 400_000_000,
            birth_ns: 400_000_000,
            birth_rss_pages: 256,
            flags: leaktrace_common::life_flag::FORKED,
            ..Life::default()
        };
        let argv = [b"stress-ng\0--bigheap\0".as_slice(), b"1\0"].concat();
        life.args[..argv.len()].copy_from_slice(&argv);
        life.args_len = argv.len() as u32;
        tr.victim_marked(50, &life, 4096);
        let g = tr
            .top_grower(Some("/app"), 60.0, Some((50, 0.9, 509 * MIB)))
            .unwrap();
        assert_eq!((g.pid, g.growth_bytes), (50, 508 * MIB));
        let snap = tr.snapshot_of(50, Some(400_000_000)).unwrap();
        assert_eq!(snap.cmdline, "stress-ng --bigheap 1");
        assert_eq!(snap.birth_ms.map(|b| b.1), Some(MIB));
        // The next sample no longer sees it; its exit record completes it.
        let e = ExitSample {
            tgid: 50,
            ppid: 1,
            comm: *b"stress-ng-bighe\0",
            exit_ns: 950_000_000,
            start_ns: 400_000_000,
            birth: Some((400_000_000, MIB)),
            peak_bytes: Some(509 * MIB),
            memcg_id: 7,
            exit_code: 9,
            oom_victim: true,
            after_kill: false,
            args: argv.clone(),
        };
        tick(&mut tr, &mut names, 1.0, &[proc(1, 1, 6 * MIB)], &[e]);
        let snap = tr.snapshot_of(50, Some(400_000_000)).unwrap();
        assert!(snap.exited);
        assert_eq!(
            (snap.comm.as_str(), snap.cgroup.as_str()),
            ("stress-ng-bighe", "/app")
        );
        assert_eq!(tr.procs.len(), 1, "one record of it, lingering");
        assert_eq!(tr.gone.iter().filter(|g| g.pid == 50).count(), 1);
        // A mark without a start time (no life kept) changes nothing.
        tr.victim_marked(60, &Life::default(), 4096);
        assert!(tr.snapshot(60).is_none());
    }

    #[test]
    fn a_step_that_stopped_loses_to_a_process_still_growing_at_the_kill() {
        // The innocent sibling: born 9 s before the OOM, 150 MiB at once,
        // then flat. The grower: 16 MiB/s until the kill.
        let mut names = FakeNames::default();
        names.0.insert(7, "/app".into());
        let mut tr = Tracker::new(trend::Params::default());
        for i in 0..10u64 {
            let mut big = proc(20, 5, 150 * MIB);
            big.birth = Some((0, 0));
            let grow = proc(21, 6, (i.saturating_sub(3)) * 16 * MIB);
            tick(&mut tr, &mut names, i as f64, &[big, grow], &[]);
        }
        let g = tr
            .top_grower(Some("/app"), 60.0, Some((20, 9.5, 150 * MIB)))
            .unwrap();
        assert_eq!(g.pid, 21, "{g:?}");
        assert!(g.growing_at_kill);
        // An earlier victim that exited before this kill is not a candidate.
        let e = ExitSample {
            tgid: 30,
            ppid: 1,
            comm: [0; 16],
            exit_ns: 8_000_000_000,
            start_ns: 7_000_000_000,
            birth: Some((7_000_000_000, 0)),
            peak_bytes: Some(500 * MIB),
            memcg_id: 7,
            exit_code: 9,
            oom_victim: true,
            after_kill: false,
            args: vec![],
        };
        tick(&mut tr, &mut names, 10.0, &[proc(21, 6, 110 * MIB)], &[e]);
        let g = tr
            .top_grower(Some("/app"), 60.0, Some((21, 10.2, 112 * MIB)))
            .unwrap();
        assert_eq!(g.pid, 21, "the process killed earlier holds nothing: {g:?}");
    }

    #[test]
    fn the_verdict_never_looks_past_the_kill() {
        // An OOM storm: two siblings grow at the same pace, 20 is killed at
        // 5.0 s. 21 is sampled 89 ms later, 100 MiB higher, and exits (the
        // next victim) with a bigger peak: neither point may count.
        let mut names = FakeNames::default();
        names.0.insert(7, "/app".into());
        let mut tr = Tracker::new(trend::Params::default());
        for i in 0..6u64 {
            let a = proc(20, 5, (i + 1) * 20 * MIB);
            let b = proc(21, 6, (i + 1) * 18 * MIB);
            tick(&mut tr, &mut names, i as f64, &[a, b], &[]);
        }
        tick(&mut tr, &mut names, 5.089, &[proc(21, 6, 220 * MIB)], &[]);
        let e = ExitSample {
            tgid: 21,
            ppid: 1,
            comm: [0; 16],
            exit_ns: 5_200_000_000,
            start_ns: 6,
            birth: None,
            peak_bytes: Some(400 * MIB),
            memcg_id: 7,
            exit_code: 9,
            oom_victim: true,
            after_kill: false,
            args: vec![],
        };
        tick(&mut tr, &mut names, 5.3, &[], &[e]);
        let g = tr
            .top_grower(Some("/app"), 60.0, Some((20, 5.0, 125 * MIB)))
            .unwrap();
        assert_eq!(g.pid, 20, "the victim grew most up to its kill: {g:?}");
        let all = tr.top_growers(Some("/app"), 60.0, Some((20, 5.0, 125 * MIB)), 4);
        let b = all
            .iter()
            .find(|x| x.0.pid == 21)
            .expect("21 grew before the kill");
        assert!(
            b.0.to_bytes <= 108 * MIB,
            "only its points up to the kill: {:?}",
            b.0
        );
        assert!(
            b.1.iter().all(|p| p.0 <= 5000),
            "its series ends at the kill: {:?}",
            b.1
        );
    }

    fn tick_rows(
        tr: &mut Tracker,
        names: &mut FakeNames,
        t: f64,
        procs: &[ProcSample],
        rows: Option<usize>,
    ) -> Sample {
        tr.tick(
            TickInput {
                t,
                ts_ms: (t * 1000.0) as u64,
                procs,
                live: None,
                exits: &[],
                status: KernelStatus::default(),
                hooks_path: false,
                rows,
                pids: &[],
                flagged: &[],
            },
            names,
        )
        .0
    }

    /// A process that stops faulting comes as an unchanged record (its
    /// tgid only): its rates are 0, its RSS and history are kept.
    #[test]
    fn an_unchanged_process_keeps_its_values_and_has_no_rates() {
        let mut names = FakeNames::default();
        let mut tr = Tracker::new(trend::Params::default());
        for i in 0..6u64 {
            let mut p = proc(10, 100, 4 * MIB + i * MIB);
            p.faults = 1000 * i;
            tick(&mut tr, &mut names, i as f64, &[p], &[]);
        }
        let r = tr.row(10).unwrap();
        assert!(r.faults_per_sec > 0.0 && r.rss_bytes == 9 * MIB, "{r:?}");
        for i in 6..10u64 {
            tr.tick(
                TickInput {
                    t: i as f64,
                    ts_ms: i * 1000,
                    procs: &[],
                    live: Some(&[10]),
                    exits: &[],
                    status: KernelStatus::default(),
                    hooks_path: false,
                    rows: None,
                    pids: &[],
                    flagged: &[],
                },
                &mut names,
            );
        }
        let r = tr.row(10).unwrap();
        assert_eq!((r.faults_per_sec, r.rss_bytes), (0.0, 9 * MIB), "{r:?}");
        // Its history has a sample at every tick, unchanged ones too.
        assert_eq!(tr.timeline(10).len(), 10);
        assert!(!tr.resync, "a known process");
        // It moves again: 5000 faults since tick 5, five ticks ago.
        let mut p = proc(10, 100, 10 * MIB);
        p.faults = 5000 + 5000;
        tick(&mut tr, &mut names, 10.0, &[p], &[]);
        let r = tr.row(10).unwrap();
        assert!(
            (r.faults_per_sec - 1000.0).abs() < 1e-6,
            "a rate over the 5 s since the last change: {r:?}"
        );
    }

    /// The top rows come from the processes that moved and the index by
    /// RSS; they must be the first rows of the full order.
    #[test]
    fn top_rows_are_the_first_rows_of_the_full_order() {
        let mut names = FakeNames::default();
        names.0.insert(7, "/app".into());
        let (mut top, mut all) = (Tracker::new(trend::Params::default()), Tracker::new(trend::Params::default()));
        for i in 0..40u64 {
            let procs: Vec<ProcSample> = (0..300u32)
                .map(|p| {
                    // Every 7th grows, every 11th shrinks, the rest are still
                    // with RSS spread over a range (ties included).
                    let base = (p as u64 % 50) * MIB;
                    let rss = match p {
                        _ if p % 7 == 0 => base + i * (p as u64 + 1) * 4096,
                        _ if p % 11 == 0 => base + (40 - i) * MIB / 8,
                        _ => base,
                    };
                    proc(1000 + p, 5, rss)
                })
                .collect();
            let a = tick_rows(&mut top, &mut names, i as f64, &procs, Some(20));
            let b = tick_rows(&mut all, &mut names, i as f64, &procs, None);
            let pa: Vec<u32> = a.processes.iter().map(|r| r.pid).collect();
            let pb: Vec<u32> = b.processes.iter().take(20).map(|r| r.pid).collect();
            assert_eq!(pa, pb, "tick {i}");
            assert_eq!(a.cgroups.len(), 1);
            assert_eq!(
                (a.cgroups[0].processes, a.cgroups[0].rss_bytes),
                (b.cgroups[0].processes, b.cgroups[0].rss_bytes)
            );
            let g = |s: &Sample| s.cgroups[0].growth_bytes_per_sec;
            assert!((g(&a) - g(&b)).abs() <= 1e-6 * g(&b).abs().max(1.0), "{} {}", g(&a), g(&b));
        }
    }

    /// Groups kept as processes come, go and move must be the groups a
    /// full regrouping finds.
    #[test]
    fn groups_kept_as_processes_change_are_the_groups_found_from_scratch() {
        let mut names = FakeNames::default();
        let mut tr = Tracker::new(trend::Params::default());
        let pool = |pid: u32, ppid: u32, exec: u64, start: u64| {
            let mut p = proc(pid, start, MIB * (pid as u64 % 7 + 1));
            p.ppid = ppid;
            p.exec_id = exec;
            p
        };
        // A pool (100, its workers forked without exec), a shell (200) and
        // its children (other images), and a second pool under 300.
        let mut live: Vec<ProcSample> = vec![pool(100, 1, 10, 1), pool(200, 1, 20, 1), pool(300, 1, 30, 1)];
        live.extend((0..8).map(|k| pool(110 + k, 100, 10, 2)));
        let mut regroups = 0;
        for i in 0..30u32 {
            // Workers come and go; a shell child starts; one worker forks
            // a grandchild; a process is reparented to 1.
            match i % 5 {
                0 => live.push(pool(400 + i, 100, 10, 10 + i as u64)),
                1 => live.push(pool(500 + i, 200, 50 + i as u64, 10 + i as u64)),
                2 => {
                    if let Some(at) = live.iter().position(|p| p.ppid == 100) {
                        live.remove(at);
                    }
                }
                3 => live.push(pool(600 + i, 300, 30, 10 + i as u64)),
                _ => {
                    if let Some(w) = live.iter().find(|p| p.ppid == 100).map(|p| p.tgid) {
                        live.push(pool(700 + i, w, 10, 10 + i as u64));
                    }
                }
            }
            if i == 17 {
                // The second pool's leader exits: its workers go to init.
                live.retain(|p| p.tgid != 300);
                for p in live.iter_mut().filter(|p| p.ppid == 300) {
                    p.ppid = 1;
                }
            }
            let a = tick_rows(&mut tr, &mut names, i as f64, &live, None);
            let mut fresh = Tracker::new(trend::Params::default());
            let b = tick_rows(&mut fresh, &mut names, i as f64, &live, None);
            let key = |s: &Sample| {
                let mut g: Vec<(u32, usize, Vec<u32>, u64)> = s
                    .groups
                    .iter()
                    .map(|g| (g.leader_pid, g.members, g.pids.clone(), g.rss_bytes))
                    .collect();
                g.sort();
                g
            };
            assert_eq!(key(&a), key(&b), "tick {i}");
            regroups += tr.debug_counts().3;
        }
        // Every tick changed something; only the first tick, the pool
        // leader's exit and the exits of workers with children of their own
        // (their children's chain breaks) find every group again.
        assert!(regroups <= 6, "{regroups} full regroupings in 30 ticks");
    }

    #[test]
    fn reused_pid_starts_over() {
        let mut names = FakeNames::default();
        let mut tr = Tracker::new(trend::Params::default());
        for i in 0..5u64 {
            tick(
                &mut tr,
                &mut names,
                i as f64,
                &[proc(10, 100, (i + 1) * 100 * MIB)],
                &[],
            );
        }
        let (s, req) = tick(&mut tr, &mut names, 5.0, &[proc(10, 999, MIB)], &[]);
        assert_eq!(req.len(), 1, "the new process's metadata is asked");
        assert_eq!(s.processes[0].growth_bytes_per_sec, 0.0, "history was reset");
    }
}
