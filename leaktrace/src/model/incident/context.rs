//! The context port: what the assembler asks of the rest of leaktrace
//! (the model's view of processes, memcgs, clocks and host facts), so that
//! the assembly is tested without a kernel or a tracker.
use super::*;

/// What leaktrace knew about a process just before the OOM.
#[derive(Debug, Clone, Default)]
pub struct ProcSnapshot {
    pub comm: String,
    pub cmdline: String,
    pub cgroup: String,
    /// Its executable's path, when /proc was read (a comm can be anything).
    pub exe: String,
    /// Its pid in its own PID namespace, where that differs.
    pub ns_pid: Option<u32>,
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
