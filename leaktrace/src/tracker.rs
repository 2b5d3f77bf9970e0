//! The aggregator: turns kernel snapshots plus /proc metadata into samples
//! (per-process rows with rates and trends, and process groups). Pure
//! except for the /proc reads, which go through the `ProcSource` trait so
//! the logic is testable on synthetic inputs.
use std::collections::{HashMap, HashSet, VecDeque};

use leaktrace_common::member;
use serde::Serialize;

use crate::{
    groups,
    kernel::{Counters, Merged},
    procfs::{ProcInfo, Stat, StatusRss},
    trend::{self, Trend},
};

/// Where process metadata comes from (/proc in production).
pub trait ProcSource {
    fn pids(&self) -> Vec<u32>;
    fn stat(&self, pid: u32) -> Option<Stat>;
    fn info(&self, pid: u32) -> Option<ProcInfo>;
    fn status_rss(&self, pid: u32) -> Option<StatusRss>;
}

pub struct Procfs;

impl ProcSource for Procfs {
    fn pids(&self) -> Vec<u32> {
        crate::procfs::pids()
    }
    fn stat(&self, pid: u32) -> Option<Stat> {
        crate::procfs::read_stat(pid)
    }
    fn info(&self, pid: u32) -> Option<ProcInfo> {
        crate::procfs::read_info(pid)
    }
    fn status_rss(&self, pid: u32) -> Option<StatusRss> {
        crate::procfs::read_status_rss(pid)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessRow {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub cmdline: String,
    pub exe: String,
    pub cgroup: String,
    pub cgroup_version: u8,
    pub rss_bytes: u64,
    pub rss_anon_bytes: u64,
    pub rss_file_bytes: u64,
    pub rss_shmem_bytes: u64,
    pub swap_bytes: u64,
    pub growth_bytes_per_sec: f64,
    pub growth_bytes_per_sec_long: f64,
    pub faults_per_sec: f64,
    pub forks_per_sec: f64,
    /// Milliseconds per second its threads spent in direct or memcg
    /// reclaim (allocation stalls), over the last interval.
    pub reclaim_stall_ms_per_sec: f64,
    pub trend: Trend,
    /// "kernel" when the RSS counters come from the eBPF programs, "procfs"
    /// for a process that has not changed since leaktrace started.
    pub source: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    pub leader_pid: u32,
    pub comm: String,
    pub exe: String,
    pub members: usize,
    pub pids: Vec<u32>,
    pub rss_bytes: u64,
    pub growth_bytes_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KernelStatus {
    /// Processes currently in the kernel's per-PID map.
    pub tracked_pids: usize,
    #[serde(flatten)]
    pub counters: Counters,
    /// The keys of the kernel map (only with --debug-map-pids).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map_pids: Option<Vec<u32>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ms: u64,
    pub interval_s: f64,
    pub processes: Vec<ProcessRow>,
    pub groups: Vec<GroupRow>,
    pub kernel: KernelStatus,
}

struct Tracked {
    info: ProcInfo,
    /// /proc/<pid>/status at discovery, for counters the kernel has not
    /// reported since leaktrace started.
    baseline: StatusRss,
    rss: [u64; 4],
    from_kernel: bool,
    history: VecDeque<(f64, f64)>,
    last_faults: Option<u64>,
    last_forks: Option<u64>,
    faults_per_sec: f64,
    forks_per_sec: f64,
    last_reclaim_ns: Option<u64>,
    reclaim_ms_per_sec: f64,
    /// (t, cumulative reclaim ns), last few samples, for OOM incidents.
    reclaim_hist: VecDeque<(f64, u64)>,
}

pub struct Tracker {
    pub params: trend::Params,
    /// How much RSS history to keep per process, in seconds.
    pub history_s: f64,
    procs: HashMap<u32, Tracked>,
    last_t: Option<f64>,
    ticks: u64,
    /// unix ms at t = 0 of the monotonic clock the history uses.
    wall0_ms: f64,
}

/// Values for one tick, from the kernel.
pub struct TickInput<'a> {
    /// Seconds on a monotonic clock.
    pub t: f64,
    pub ts_ms: u64,
    pub kernel: &'a [(u32, Merged)],
    pub counters: Counters,
}

impl Tracker {
    pub fn new(params: trend::Params) -> Self {
        Self {
            // Five minutes: enough to show how an OOM victim grew.
            history_s: 300.0,
            params,
            procs: HashMap::new(),
            last_t: None,
            ticks: 0,
            wall0_ms: 0.0,
        }
    }

    /// One sampling step. Returns the sample and the pids whose kernel
    /// entries should be deleted (the process is gone or a zombie).
    pub fn tick(&mut self, src: &dyn ProcSource, input: &TickInput) -> (Sample, Vec<u32>) {
        let dt = self.last_t.map(|l| input.t - l).filter(|d| *d > 0.0);
        self.last_t = Some(input.t);
        self.ticks += 1;
        self.wall0_ms = input.ts_ms as f64 - input.t * 1000.0;
        let mut stale = Vec::new();
        let kernel: HashMap<u32, &Merged> = input.kernel.iter().map(|(p, m)| (*p, m)).collect();

        // Processes alive now: every /proc entry that is not a zombie.
        let mut alive: HashSet<u32> = HashSet::new();
        for pid in src.pids() {
            let Some(stat) = src.stat(pid) else { continue };
            if stat.state == 'Z' || stat.state == 'X' {
                continue;
            }
            let known = self.procs.get(&pid).map(|t| t.info.start_time);
            if known != Some(stat.start_time) {
                // New process, or a reused pid: start over.
                self.procs.remove(&pid);
                let Some(info) = src.info(pid) else { continue };
                let baseline = src.status_rss(pid).unwrap_or_default();
                self.procs.insert(
                    pid,
                    Tracked {
                        info,
                        baseline,
                        rss: [0; 4],
                        from_kernel: false,
                        history: VecDeque::new(),
                        last_faults: None,
                        last_forks: None,
                        faults_per_sec: 0.0,
                        forks_per_sec: 0.0,
                        last_reclaim_ns: None,
                        reclaim_ms_per_sec: 0.0,
                        reclaim_hist: VecDeque::new(),
                    },
                );
            } else if let Some(t) = self.procs.get_mut(&pid) {
                t.info.ppid = stat.ppid;
                t.info.comm = stat.comm;
                // A process may be moved into another cgroup after it started.
                if self.ticks.is_multiple_of(5) {
                    if let Some(i) = src.info(pid) {
                        t.info.cgroup = i.cgroup;
                        t.info.cgroup_version = i.cgroup_version;
                        t.info.cmdline = i.cmdline;
                    }
                }
            }
            alive.insert(pid);
        }
        self.procs.retain(|pid, _| alive.contains(pid));
        for (pid, _) in input.kernel {
            if !alive.contains(pid) {
                stale.push(*pid);
            }
        }

        let t_now = input.t;
        let horizon = self.history_s;
        for (pid, tr) in self.procs.iter_mut() {
            let k = kernel.get(pid);
            let base = [
                tr.baseline.file,
                tr.baseline.anon,
                tr.baseline.swap,
                tr.baseline.shmem,
            ];
            for (i, (slot, base)) in tr.rss.iter_mut().zip(base).enumerate() {
                *slot = match k.and_then(|m| m.rss[i]) {
                    Some(v) => v.max(0) as u64,
                    None => base,
                };
            }
            tr.from_kernel = k.is_some_and(|m| m.rss.iter().any(Option::is_some));
            if let Some(m) = k {
                if let (Some(dt), Some(lf)) = (dt, tr.last_faults) {
                    tr.faults_per_sec = m.faults.saturating_sub(lf) as f64 / dt;
                }
                if let (Some(dt), Some(lf)) = (dt, tr.last_forks) {
                    tr.forks_per_sec = m.forks.saturating_sub(lf) as f64 / dt;
                }
                if let (Some(dt), Some(lr)) = (dt, tr.last_reclaim_ns) {
                    tr.reclaim_ms_per_sec = m.reclaim_ns.saturating_sub(lr) as f64 / 1e6 / dt;
                }
                tr.last_faults = Some(m.faults);
                tr.last_forks = Some(m.forks);
                tr.last_reclaim_ns = Some(m.reclaim_ns);
                tr.reclaim_hist.push_back((t_now, m.reclaim_ns));
                if tr.reclaim_hist.len() > 16 {
                    tr.reclaim_hist.pop_front();
                }
            } else {
                tr.faults_per_sec = 0.0;
                tr.forks_per_sec = 0.0;
                tr.reclaim_ms_per_sec = 0.0;
            }
            let rss = (tr.rss[member::FILE] + tr.rss[member::ANON] + tr.rss[member::SHMEM]) as f64;
            tr.history.push_back((t_now, rss));
            while tr.history.front().is_some_and(|&(t, _)| t < t_now - horizon) {
                tr.history.pop_front();
            }
        }

        let mut processes: Vec<ProcessRow> = self
            .procs
            .iter_mut()
            .map(|(pid, tr)| {
                let h = tr.history.make_contiguous();
                ProcessRow {
                    pid: *pid,
                    ppid: tr.info.ppid,
                    comm: tr.info.comm.clone(),
                    cmdline: tr.info.cmdline.clone(),
                    exe: tr.info.exe.clone(),
                    cgroup: tr.info.cgroup.clone(),
                    cgroup_version: tr.info.cgroup_version,
                    rss_bytes: tr.rss[member::FILE] + tr.rss[member::ANON] + tr.rss[member::SHMEM],
                    rss_anon_bytes: tr.rss[member::ANON],
                    rss_file_bytes: tr.rss[member::FILE],
                    rss_shmem_bytes: tr.rss[member::SHMEM],
                    swap_bytes: tr.rss[member::SWAP],
                    growth_bytes_per_sec: trend::slope(trend::window(h, self.params.short_window_s)),
                    growth_bytes_per_sec_long: trend::slope(trend::window(h, self.params.long_window_s)),
                    faults_per_sec: tr.faults_per_sec,
                    forks_per_sec: tr.forks_per_sec,
                    reclaim_stall_ms_per_sec: tr.reclaim_ms_per_sec,
                    trend: trend::classify(h, &self.params),
                    source: if tr.from_kernel { "kernel" } else { "procfs" },
                }
            })
            .collect();
        processes.sort_by(|a, b| {
            b.growth_bytes_per_sec
                .total_cmp(&a.growth_bytes_per_sec)
                .then(b.rss_bytes.cmp(&a.rss_bytes))
                .then(a.pid.cmp(&b.pid))
        });

        let members: Vec<groups::Member> = processes
            .iter()
            .map(|p| groups::Member {
                pid: p.pid,
                ppid: p.ppid,
                exe: &p.exe,
                rss_bytes: p.rss_bytes,
                growth_bytes_per_sec: p.growth_bytes_per_sec,
            })
            .collect();
        let groups = groups::group(&members)
            .into_iter()
            .map(|g| GroupRow {
                comm: self
                    .procs
                    .get(&g.leader_pid)
                    .map(|t| t.info.comm.clone())
                    .unwrap_or_default(),
                leader_pid: g.leader_pid,
                exe: g.exe,
                members: g.pids.len(),
                pids: g.pids,
                rss_bytes: g.rss_bytes,
                growth_bytes_per_sec: g.growth_bytes_per_sec,
            })
            .collect();

        let sample = Sample {
            kind: "sample",
            ts_ms: input.ts_ms,
            interval_s: dt.unwrap_or(0.0),
            processes,
            groups,
            kernel: KernelStatus {
                tracked_pids: input.kernel.len(),
                counters: input.counters,
                map_pids: None,
            },
        };
        (sample, stale)
    }
}

impl Tracker {
    fn to_ms(&self, t: f64) -> u64 {
        (self.wall0_ms + t * 1000.0).max(0.0) as u64
    }

    /// What we know about `pid`, for an OOM incident.
    pub fn snapshot(&self, pid: u32) -> Option<crate::oom::ProcSnapshot> {
        let tr = self.procs.get(&pid)?;
        Some(crate::oom::ProcSnapshot {
            comm: tr.info.comm.clone(),
            cmdline: tr.info.cmdline.clone(),
            cgroup: tr.info.cgroup.clone(),
            history: tr
                .history
                .iter()
                .map(|&(t, rss)| (self.to_ms(t), rss as u64))
                .collect(),
        })
    }

    /// Processes in `scope` whose threads spent time in reclaim during the
    /// last `window_s` seconds, with that time in ms (from the kernel's
    /// per-process reclaim counters), largest first.
    pub fn reclaimers(&self, scope: Option<&str>, window_s: f64) -> Vec<(u32, String, f64)> {
        let Some(now) = self.last_t else { return Vec::new() };
        let mut v: Vec<(u32, String, f64)> = self
            .procs
            .iter()
            .filter(|(_, tr)| in_scope(scope, &tr.info.cgroup))
            .filter_map(|(pid, tr)| {
                let last = tr.reclaim_hist.back()?.1;
                let base = tr
                    .reclaim_hist
                    .iter()
                    .find(|h| h.0 >= now - window_s)
                    .map(|h| h.1)?;
                // The sample just before the window, if there is one.
                let before = tr
                    .reclaim_hist
                    .iter()
                    .rev()
                    .find(|h| h.0 < now - window_s)
                    .map(|h| h.1)
                    .unwrap_or(base);
                let ms = last.saturating_sub(before) as f64 / 1e6;
                (ms > 0.0).then(|| (*pid, tr.info.comm.clone(), ms))
            })
            .collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2));
        v
    }

    /// The process whose RSS rose most (newest minus the window's minimum)
    /// over the last `window_s`, among processes in cgroup `scope` or below.
    pub fn top_grower(&self, scope: Option<&str>, window_s: f64) -> Option<crate::oom::Grower> {
        self.procs
            .iter()
            .filter(|(_, tr)| in_scope(scope, &tr.info.cgroup))
            .filter_map(|(pid, tr)| {
                let (t_last, last) = *tr.history.back()?;
                let min = tr
                    .history
                    .iter()
                    .filter(|h| h.0 >= t_last - window_s)
                    .map(|h| h.1)
                    .fold(f64::INFINITY, f64::min);
                let growth = (last - min).max(0.0);
                Some(crate::oom::Grower {
                    pid: *pid,
                    comm: tr.info.comm.clone(),
                    growth_bytes: growth as u64,
                    from_bytes: min as u64,
                    to_bytes: last as u64,
                    window_s,
                })
            })
            .max_by_key(|g| g.growth_bytes)
    }
}

/// Is cgroup `cg` the cgroup `scope` or below it? (None or "/": everything.)
fn in_scope(scope: Option<&str>, cg: &str) -> bool {
    match scope {
        None | Some("/") => true,
        Some(s) => cg == s || cg.strip_prefix(s).is_some_and(|r| r.starts_with('/')),
    }
}

/// CLOCK_MONOTONIC now, in ns (the clock of bpf_ktime_get_ns).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The tracker as seen by the OOM assembler.
pub struct OomView<'a>(pub &'a Tracker);

impl crate::oom::OomContext for OomView<'_> {
    fn snapshot(&self, pid: u32) -> Option<crate::oom::ProcSnapshot> {
        self.0.snapshot(pid)
    }
    fn top_grower(&self, scope: Option<&str>, window_s: f64) -> Option<crate::oom::Grower> {
        self.0.top_grower(scope, window_s)
    }
    fn reclaimers(&self, scope: Option<&str>, window_s: f64) -> Vec<(u32, String, f64)> {
        self.0.reclaimers(scope, window_s)
    }
    fn mono_to_unix_ms(&self, ns: u64) -> u64 {
        let now_mono = monotonic_ns() as i128;
        let now_unix = crate::watch::now_ms() as i128;
        (now_unix - (now_mono - ns as i128) / 1_000_000).max(0) as u64
    }
    fn page_size(&self) -> u64 {
        crate::procfs::page_size()
    }
    fn psi(&self) -> Option<(u64, u64, u64)> {
        crate::host::psi_totals().map(|(s, f)| (s, f, monotonic_ns()))
    }
    fn host(&self) -> Option<crate::host::Facts> {
        Some(crate::host::read())
    }
}

/// Applies the user's --pid and --top filters to a sample.
pub fn filter(sample: &mut Sample, pids: &[u32], top: Option<usize>) {
    if !pids.is_empty() {
        sample.processes.retain(|p| pids.contains(&p.pid));
        sample.groups.retain(|g| g.pids.iter().any(|p| pids.contains(p)));
    }
    if let Some(n) = top {
        sample.processes.truncate(n);
        sample.groups.truncate(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct FakeProc {
        procs: RefCell<HashMap<u32, (Stat, ProcInfo, StatusRss)>>,
    }

    impl FakeProc {
        fn add(&self, pid: u32, ppid: u32, exe: &str, start: u64, anon_kb: u64) {
            let stat = Stat {
                comm: "x".into(),
                state: 'S',
                ppid,
                start_time: start,
            };
            let info = ProcInfo {
                ppid,
                comm: "x".into(),
                exe: exe.into(),
                start_time: start,
                ..Default::default()
            };
            let rss = StatusRss {
                anon: anon_kb * 1024,
                ..Default::default()
            };
            self.procs.borrow_mut().insert(pid, (stat, info, rss));
        }
    }

    impl ProcSource for FakeProc {
        fn pids(&self) -> Vec<u32> {
            self.procs.borrow().keys().copied().collect()
        }
        fn stat(&self, pid: u32) -> Option<Stat> {
            self.procs.borrow().get(&pid).map(|p| p.0.clone())
        }
        fn info(&self, pid: u32) -> Option<ProcInfo> {
            self.procs.borrow().get(&pid).map(|p| p.1.clone())
        }
        fn status_rss(&self, pid: u32) -> Option<StatusRss> {
            self.procs.borrow().get(&pid).map(|p| p.2)
        }
    }

    fn kernel_anon(pid: u32, bytes: i64, faults: u64) -> (u32, Merged) {
        let mut m = Merged::default();
        m.rss[member::ANON] = Some(bytes);
        m.faults = faults;
        (pid, m)
    }

    fn tick(tr: &mut Tracker, src: &FakeProc, t: f64, k: &[(u32, Merged)]) -> (Sample, Vec<u32>) {
        tr.tick(
            src,
            &TickInput {
                t,
                ts_ms: (t * 1000.0) as u64,
                kernel: k,
                counters: Counters::default(),
            },
        )
    }

    #[test]
    fn rates_trend_baseline_and_stale_entries() {
        let src = FakeProc::default();
        src.add(10, 1, "/bin/grow", 100, 1000);
        src.add(11, 1, "/bin/idle", 100, 5000);
        let mut tr = Tracker::new(trend::Params::default());
        const MIB: i64 = 1 << 20;
        let mut last = None;
        for i in 0..12 {
            let k = [kernel_anon(10, MIB + 32 * MIB * i, 100 * i as u64)];
            last = Some(tick(&mut tr, &src, i as f64, &k).0);
        }
        let s = last.unwrap();
        let grow = s.processes.iter().find(|p| p.pid == 10).unwrap();
        assert_eq!(grow.trend, Trend::Growing);
        assert!((grow.growth_bytes_per_sec - 32.0 * MIB as f64).abs() < 1.0);
        assert!((grow.faults_per_sec - 100.0).abs() < 1e-9);
        assert_eq!(grow.source, "kernel");
        let idle = s.processes.iter().find(|p| p.pid == 11).unwrap();
        assert_eq!(idle.rss_anon_bytes, 5000 * 1024, "baseline from /proc");
        assert_eq!(idle.trend, Trend::Stable);
        assert_eq!(idle.source, "procfs");
        assert_eq!(s.processes[0].pid, 10, "sorted by growth");

        // Process 10 exits; its kernel entry is reported stale.
        src.procs.borrow_mut().remove(&10);
        let (s, stale) = tick(&mut tr, &src, 12.0, &[kernel_anon(10, MIB, 0)]);
        assert!(s.processes.iter().all(|p| p.pid != 10));
        assert_eq!(stale, vec![10]);
    }

    #[test]
    fn reused_pid_starts_over() {
        let src = FakeProc::default();
        src.add(10, 1, "/bin/a", 100, 0);
        let mut tr = Tracker::new(trend::Params::default());
        for i in 0..5 {
            tick(
                &mut tr,
                &src,
                i as f64,
                &[kernel_anon(10, (i + 1) * (100 << 20), 0)],
            );
        }
        src.add(10, 1, "/bin/b", 999, 0);
        let (s, _) = tick(&mut tr, &src, 5.0, &[kernel_anon(10, 1 << 20, 0)]);
        let p = s.processes.iter().find(|p| p.pid == 10).unwrap();
        assert_eq!(p.exe, "/bin/b");
        assert_eq!(p.growth_bytes_per_sec, 0.0, "history was reset");
    }

    #[test]
    fn filters() {
        let src = FakeProc::default();
        for pid in 10..20 {
            src.add(pid, 1, "/bin/a", 1, 10);
        }
        let mut tr = Tracker::new(trend::Params::default());
        let (mut s, _) = tick(&mut tr, &src, 0.0, &[]);
        assert_eq!(s.groups.len(), 1);
        assert_eq!(s.groups[0].members, 10);
        filter(&mut s, &[12, 13], Some(1));
        assert_eq!(s.processes.len(), 1);
        assert_eq!(s.groups.len(), 1);
    }
}
