//! Evidence in the pipeline: the sampling thread decides (triggers and
//! suspects, pure and fast), and a worker thread does the slow part
//! (stacks, symbolization, /proc copies, the bundle on disk,
//! --exec-on-trigger), so that a slow disk or a huge binary never delays a
//! sample or the OOM ring.
use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{
        mpsc::{Receiver, SyncSender, TrySendError},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use crate::{
    evidence::{self, bundle, exec, symbolize, EvidenceEvent, RateLimit, Trigger, TriggerArgs},
    fmt::now_ms,
    host::cgroup::Cgroups,
    kernel::stacks::Stacks,
    model::{sample::ProcessRow, tracker::Tracker},
    outdir::OutDir,
    sinks::{Event, Fanout},
};

/// How often the worker looks for first samples of a bundle that had none,
/// for how long, and how many samples make the second bundle worth it.
const FOLLOW_TICK: Duration = Duration::from_millis(500);
const FOLLOW_FOR: Duration = Duration::from_secs(120);
const FOLLOW_MIN_SAMPLES: u64 = 8;
/// How long a trigger waits for a new suspect's stacks to be sampled.
const STACK_WAIT: Duration = Duration::from_secs(1);
/// Most suspects sampled at once.
const MAX_SUSPECTS: usize = crate::limits::SUSPECTS_MAX;

/// One bundle to write.
pub struct Job {
    pub ts_ms: u64,
    pub row: ProcessRow,
    /// When the process started (CLOCK_MONOTONIC ns): --exec-on-trigger
    /// runs only against this process, not a later one with its pid.
    pub start_ns: u64,
    pub trigger: Trigger,
    pub limit: u64,
    pub limit_source: String,
    /// How long the process's faults have been sampled (profile.pb.gz's
    /// duration).
    pub sampled_for: Duration,
}

/// pid -> its latest bundle and when it was written. An incident links a
/// bundle only if it is recent, so a reused pid never gets an old one.
pub type Bundles = Arc<Mutex<HashMap<u32, (String, Instant)>>>;

/// The decisions, on the sampling thread.
pub struct Triggers {
    pub args: TriggerArgs,
    rate: RateLimit,
    /// When each current suspect became one.
    sampled_since: HashMap<u32, Instant>,
    /// Bundles that could not be queued (the worker is behind).
    pub jobs_dropped: u64,
    /// Is there a stack sampler at all? Without one, triggers do not wait.
    pub stacks_live: bool,
    /// The memcgs with a limit seen in the last decision: (id, limit).
    pub limited: Vec<(u64, u64)>,
    /// Processes that crossed a trigger in the last FLAGGED_FOR: every
    /// output lists them, whatever its --top.
    flagged: HashMap<u32, Instant>,
    /// Since when each process's trend has been `growing` without a break.
    growing_since: HashMap<u32, Instant>,
    /// The same for each pool, by its leader, and its last bundle (a pool
    /// that recycles its workers would get one per new pid otherwise).
    group_growing_since: HashMap<u32, Instant>,
    group_fired: HashMap<u32, Instant>,
}

/// How long a process that crossed a trigger stays listed.
const FLAGGED_FOR: Duration = Duration::from_secs(60);
/// Most processes listed for a trigger at once.
const MAX_FLAGGED: usize = 256;

impl Triggers {
    pub fn new(args: TriggerArgs, stacks_live: bool) -> Self {
        Self {
            args,
            rate: RateLimit::default(),
            sampled_since: HashMap::new(),
            jobs_dropped: 0,
            stacks_live,
            limited: Vec::new(),
            flagged: HashMap::new(),
            growing_since: HashMap::new(),
            group_growing_since: HashMap::new(),
            group_fired: HashMap::new(),
        }
    }

    /// Queues a bundle for `pid`, within the cool-down and hourly budget.
    fn fire(
        &mut self,
        tracker: &Tracker,
        jobs: &SyncSender<Job>,
        pid: u32,
        trigger: Trigger,
        (limit, limit_source): (u64, String),
        sampled_for: Duration,
    ) {
        let now = Instant::now();
        if !self
            .rate
            .allow(pid, self.args.cooldown, self.args.max_bundles_per_hour, now)
        {
            return;
        }
        let (Some(row), Some(start_ns)) = (tracker.row(pid), tracker.start_ns(pid)) else {
            return;
        };
        let job = Job {
            ts_ms: now_ms(),
            row,
            start_ns,
            trigger,
            limit,
            limit_source,
            sampled_for,
        };
        if let Err(TrySendError::Full(_)) = jobs.try_send(job) {
            self.jobs_dropped += 1;
            crate::limits::EVIDENCE_JOBS.hit();
        }
    }

    /// The processes that crossed a trigger recently.
    pub fn flagged(&self) -> impl Iterator<Item = u32> + '_ {
        self.flagged.keys().copied()
    }

    /// The triggers that fire now (sent to `jobs`), and the suspects whose
    /// faults should be sampled (tgid -> 1 in N). Runs over every live
    /// process, with the tracker locked: light per-process data only, a
    /// full row only for a process whose trigger fires.
    pub fn decide(
        &mut self,
        tracker: &Tracker,
        cgroups: &mut Cgroups,
        jobs: &SyncSender<Job>,
    ) -> HashMap<u32, u32> {
        let psi = crate::host::facts::psi_full_avg10();
        let mem_total = crate::host::facts::meminfo_kb("MemTotal").unwrap_or(0) * 1024;
        let mut suspects: Vec<(f64, u32)> = Vec::new();
        let now = Instant::now();
        // Limits per cgroup, looked up once per tick (and cached for 10 s
        // by Cgroups): most of a host's processes share a few cgroups.
        let mut by_id: crate::fmt::FastMap<u64, Option<u64>> = Default::default();
        let mut by_path: crate::fmt::FastMap<&str, Option<u64>> = Default::default();
        let (ids, paths) = tracker.memcgs_in_use();
        for id in ids {
            by_id.insert(id, cgroups.limit_by_id(id));
        }
        for p in paths {
            by_path.insert(p, cgroups.limit(p));
        }
        // A process that is not growing and not named fires nothing and is
        // no suspect below half its RSS threshold: only those at or above
        // the smallest such threshold, and those that moved, are looked at
        // (docs/performance.md).
        let smallest = by_id
            .values()
            .chain(by_path.values())
            .map(|l| l.unwrap_or(mem_total))
            .chain(std::iter::once(mem_total))
            .filter(|l| *l > 0)
            .min()
            .unwrap_or(0);
        let min_rss = ((smallest as f64 * self.args.rss_pct / 200.0).floor() as u64).saturating_sub(1);
        let subjects = tracker.trigger_subjects(min_rss, &self.args.evidence_pids);
        // The PSI trigger's process: only worked out while PSI is over
        // its threshold; the fastest grower of the memcg at its limit,
        // else of the host (evidence::psi_pick).
        let top = if self.args.psi_full > 0.0 && psi.is_some_and(|p| p >= self.args.psi_full) {
            let picks: Vec<_> = subjects
                .iter()
                .map(|(s, _, id)| (s.clone(), *id, by_id.get(id).copied().flatten()))
                .collect();
            evidence::psi_pick(&picks, std::process::id())
        } else {
            None
        };
        let me = std::process::id();
        let mut growing: HashSet<u32> = HashSet::new();
        for (subj, cgroup, memcg_id) in subjects {
            // Never a bundle, or stack sampling, about leaktrace itself.
            if subj.pid == me {
                continue;
            }
            let growing_for = if subj.trend == crate::model::trend::Trend::Growing {
                growing.insert(subj.pid);
                now.duration_since(*self.growing_since.entry(subj.pid).or_insert(now))
                    .as_secs_f64()
            } else {
                0.0
            };
            let limit = if memcg_id != 0 {
                *by_id
                    .entry(memcg_id)
                    .or_insert_with(|| cgroups.limit_by_id(memcg_id))
            } else {
                *by_path.entry(cgroup).or_insert_with(|| cgroups.limit(cgroup))
            };
            let (limit, src) = match limit {
                Some(l) => (l, None),
                None => (mem_total, Some("MemTotal")),
            };
            // A slow leak is sampled from half its sustained time on, so
            // that its bundle has stacks.
            let slow = self.args.sustained_growth > 0.0 && growing_for >= self.args.sustained_growth / 2.0;
            if slow || evidence::is_suspect(&subj, limit, &self.args) {
                suspects.push((subj.growth_bytes_per_sec, subj.pid));
            }
            if !slow && !evidence::may_trigger(&subj, limit, &self.args, psi, top == Some(subj.pid)) {
                continue;
            }
            let src = src.map_or_else(|| format!("the memcg limit of {cgroup}"), str::to_string);
            let Some(t) = evidence::check(&subj, limit, &src, &self.args, psi, top == Some(subj.pid))
                .or_else(|| evidence::sustained(&subj, growing_for, &self.args))
            else {
                continue;
            };
            if self.flagged.len() < MAX_FLAGGED || self.flagged.contains_key(&subj.pid) {
                self.flagged.insert(subj.pid, now);
            }
            // Give a fresh suspect's stacks a moment to be sampled, unless
            // it is at its threshold already (it may be killed any moment)
            // or was named.
            let since = *self.sampled_since.entry(subj.pid).or_insert(now);
            let urgent = t.reason == "rss-pct" || t.reason == "pid" || t.reason == "sustained-growth";
            // Near the limit, waiting the whole moment would leave too
            // little time to write the bundle before the kill: a quarter
            // of the time left at most.
            let wait = t.secs_left.map_or(STACK_WAIT, |s| {
                STACK_WAIT.min(Duration::from_secs_f64((s * 0.25).clamp(0.0, 1.0)))
            });
            if self.stacks_live && !urgent && now.duration_since(since) < wait {
                suspects.push((f64::MAX, subj.pid));
                continue;
            }
            self.fire(
                tracker,
                jobs,
                subj.pid,
                t,
                (limit, src),
                now.duration_since(since),
            );
        }
        self.growing_since.retain(|pid, _| growing.contains(pid));
        self.sustained_groups(tracker, jobs, now, &mut suspects);
        self.limited = by_id.iter().filter_map(|(id, l)| Some((*id, (*l)?))).collect();
        self.flagged.retain(|_, t| now.duration_since(*t) < FLAGGED_FOR);
        let current: HashSet<u32> = suspects.iter().map(|s| s.1).collect();
        self.sampled_since.retain(|pid, _| current.contains(pid));
        for pid in &current {
            self.sampled_since.entry(*pid).or_insert(now);
        }
        suspects.sort_by(|a, b| b.0.total_cmp(&a.0));
        if current.len() > MAX_SUSPECTS {
            crate::limits::SUSPECTS.hit();
        }
        suspects
            .into_iter()
            .take(MAX_SUSPECTS)
            .map(|(_, pid)| (pid, self.args.stack_period.max(1)))
            .collect()
    }
}

impl Triggers {
    /// The slow-leak rule for pools (evidence::sustained_group): sampled
    /// from half the sustained time on, a bundle for the fastest member at
    /// the full time, one per cool-down per pool.
    fn sustained_groups(
        &mut self,
        tracker: &Tracker,
        jobs: &SyncSender<Job>,
        now: Instant,
        suspects: &mut Vec<(f64, u32)>,
    ) {
        if self.args.sustained_growth <= 0.0 {
            return;
        }
        let me = std::process::id();
        let mut growing = HashSet::new();
        let mut fire = Vec::new();
        for g in tracker.group_rows() {
            if g.trend != crate::model::trend::Trend::Growing || g.pids.contains(&me) {
                continue;
            }
            growing.insert(g.leader_pid);
            let since = *self.group_growing_since.entry(g.leader_pid).or_insert(now);
            let growing_for = now.duration_since(since).as_secs_f64();
            if growing_for < self.args.sustained_growth / 2.0 {
                continue;
            }
            let members: Vec<(u32, f64, u64)> = g
                .pids
                .iter()
                .filter_map(|&p| tracker.row(p).map(|r| (p, r.growth_bytes_per_sec, r.rss_bytes)))
                .collect();
            // Sampled ahead of the bundle, like a slow process.
            let Some((pid, t)) = evidence::sustained_group(
                g,
                growing_for.max(self.args.sustained_growth),
                &members,
                &self.args,
            ) else {
                continue;
            };
            suspects.push((g.growth_bytes_per_sec, pid));
            let cooled = self
                .group_fired
                .get(&g.leader_pid)
                .is_none_or(|t| now.duration_since(*t).as_secs_f64() >= self.args.cooldown);
            if growing_for >= self.args.sustained_growth && cooled {
                fire.push((g.leader_pid, pid, t));
            }
        }
        for (leader, pid, t) in fire {
            self.group_fired.insert(leader, now);
            let sampled = self
                .sampled_since
                .get(&pid)
                .map_or(Duration::ZERO, |s| now.duration_since(*s));
            self.fire(
                tracker,
                jobs,
                pid,
                t,
                (0, "none (the pool's sustained growth)".into()),
                sampled,
            );
        }
        self.group_growing_since.retain(|l, _| growing.contains(l));
        self.group_fired
            .retain(|_, t| now.duration_since(*t).as_secs_f64() < self.args.cooldown);
    }
}

/// What the bundle worker needs.
pub struct Worker {
    pub args: TriggerArgs,
    pub dir: Option<PathBuf>,
    pub exec: Option<Vec<String>>,
    pub max_evidence_bytes: Option<u64>,
    pub stacks: Option<Arc<Mutex<Stacks>>>,
    pub stack_mode: &'static str,
    pub tracker: Arc<Mutex<Tracker>>,
    pub bundles: Bundles,
    pub fanout: Arc<Fanout>,
}

impl Worker {
    pub fn run(self, jobs: Receiver<Job>) {
        let mut root: Option<Arc<OutDir>> = None;
        // Bundles written before any fault of their process was sampled:
        // a second bundle follows as soon as samples arrive.
        let mut waiting: Vec<(Job, Instant)> = Vec::new();
        loop {
            match jobs.recv_timeout(FOLLOW_TICK) {
                Ok(job) => {
                    let (ev, samples) = self.one(&job, &mut root);
                    if ev.dir.is_some() && samples == Some(0) && waiting.len() < MAX_SUSPECTS {
                        waiting.push((job, Instant::now() + FOLLOW_FOR));
                    }
                    self.fanout.send(Event::Evidence(Arc::new(ev)));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
            self.follow_up(&mut waiting, &mut root);
        }
    }

    /// Writes the second bundle of each waiting process that now has
    /// sampled faults; forgets those that waited too long or are gone.
    fn follow_up(&self, waiting: &mut Vec<(Job, Instant)>, root: &mut Option<Arc<OutDir>>) {
        let now = Instant::now();
        waiting.retain(|(_, until)| *until > now);
        let Some(stacks) = &self.stacks else {
            waiting.clear();
            return;
        };
        let ready: Vec<usize> = waiting
            .iter()
            .enumerate()
            .filter(|(_, (j, _))| {
                stacks.lock().is_ok_and(|s| {
                    s.collect_with_ids(j.row.pid).iter().map(|x| x.2).sum::<u64>() >= FOLLOW_MIN_SAMPLES
                })
            })
            .map(|(i, _)| i)
            .collect();
        for i in ready.into_iter().rev() {
            let (mut job, _) = waiting.swap_remove(i);
            let Some(row) = self.tracker.lock().ok().and_then(|t| t.row(job.row.pid)) else {
                continue;
            };
            job.row = row;
            job.ts_ms = crate::fmt::now_ms();
            job.trigger = Trigger {
                reason: "stacks-follow-up",
                detail: format!(
                    "the bundle written for the {} trigger had no sampled faults; these are the first",
                    job.trigger.reason
                ),
                secs_left: job.trigger.secs_left,
            };
            let (ev, _) = self.one(&job, root);
            self.fanout.send(Event::Evidence(Arc::new(ev)));
        }
    }

    /// The output directory's handle, opened again (and vetted again) if
    /// the directory was removed.
    fn root(&self, held: &mut Option<Arc<OutDir>>) -> anyhow::Result<Option<Arc<OutDir>>> {
        let Some(path) = &self.dir else { return Ok(None) };
        if held.as_ref().is_none_or(|d| d.is_deleted()) {
            *held = Some(Arc::new(OutDir::open(path)?));
        }
        Ok(held.clone())
    }

    /// Writes one bundle; returns its event and its sampled faults (None
    /// when stacks are not sampled at all).
    fn one(&self, job: &Job, held: &mut Option<Arc<OutDir>>) -> (EvidenceEvent, Option<u64>) {
        let row = &job.row;
        let mut ev = EvidenceEvent {
            kind: "evidence",
            ts_ms: job.ts_ms,
            pid: row.pid,
            comm: row.comm.clone(),
            reason: job.trigger.reason,
            detail: job.trigger.detail.clone(),
            dir: None,
            error: None,
        };
        let root = match self.root(held) {
            Ok(Some(r)) => r,
            Ok(None) => return (ev, None),
            Err(e) => {
                log::warn!("evidence bundle for pid {} not written: {e:#}", row.pid);
                ev.error = Some(format!("{e:#}"));
                return (ev, None);
            }
        };
        // Held from before the bundle is written: the command runs only if
        // this very process is still alive then.
        let target = self
            .exec
            .as_ref()
            .and_then(|_| exec::Target::open(row.pid, job.start_ns));
        let (stacks, extra_files, extra_meta, sampled) = self.stack_files(job);
        let timeline = self
            .tracker
            .lock()
            .map(|t| t.timeline(row.pid))
            .unwrap_or_default();
        let input = bundle::BundleInput {
            root: &root,
            ts_ms: job.ts_ms,
            row,
            trigger: &job.trigger,
            limit: job.limit,
            limit_source: &job.limit_source,
            args: &self.args,
            timeline,
            stacks,
            extra_files,
            extra_meta,
        };
        match bundle::write_bundle(&input) {
            Ok((d, handle)) => {
                self.written(job, &root, &d, handle, target);
                ev.dir = Some(d.to_string_lossy().into_owned());
            }
            Err(e) => {
                log::warn!("evidence bundle for pid {} not written: {e:#}", row.pid);
                ev.error = Some(format!("{e:#}"));
                crate::losses::output_write_failed();
            }
        }
        (ev, sampled)
    }

    /// stacks.txt, the other stack files and their meta.json fields, and
    /// the sampled faults (None: no stack sampler).
    fn stack_files(
        &self,
        job: &Job,
    ) -> (
        String,
        evidence::stackfiles::ExtraFiles,
        serde_json::Map<String, serde_json::Value>,
        Option<u64>,
    ) {
        let row = &job.row;
        let g = self.stacks.as_ref().map(|s| gather(s, row.pid));
        let samples = g.as_ref().map(|g| g.samples.clone());
        let sampled = samples.as_ref().map(|s| s.iter().map(|x| x.1).sum::<u64>());
        // stacks.txt first, as soon as possible: it needs the process
        // alive (its maps) and is the bundle's point. The other stack
        // files (build-ids, offsets, py-spy) follow and reuse its names.
        let period = self.args.stack_period;
        let page = crate::fmt::page_size();
        let (mut stacks, names) = match &samples {
            Some(samples) => symbolize::render_named(row.pid, &row.comm, period, page, samples, 20),
            None => (
                format!("# stack sampling unavailable ({})\n", self.stack_mode),
                Default::default(),
            ),
        };
        let py = g.as_ref().and_then(|g| {
            let py = g.py.as_ref()?;
            let name_of = |ip: u64| names.get(&ip).cloned().unwrap_or_else(|| format!("{ip:#x}"));
            stacks = evidence::pymix::text(py, period, page, 20, &name_of, &g.by_id) + &stacks;
            Some(evidence::stackfiles::PyExtras {
                input: py,
                fp: &g.fp_counts,
                by_id: &g.by_id,
            })
        });
        let (extra_files, mut extra_meta) = evidence::stackfiles::bundle_extras(
            row.pid,
            &row.comm,
            period,
            page,
            samples.as_deref(),
            self.args.py_spy.as_deref(),
            &names,
            py,
            job.sampled_for,
        );
        if let Some(why) = g.as_ref().and_then(|g| g.py_not.as_ref()) {
            let m = extra_meta
                .entry("python")
                .or_insert_with(|| serde_json::json!({}));
            if let Some(o) = m.as_object_mut() {
                o.insert("kernel_frames".into(), serde_json::json!({ "unavailable": why }));
            }
        }
        (stacks, extra_files, extra_meta, sampled)
    }

    /// After a bundle is written: remember it for the incidents, run
    /// --exec-on-trigger, keep the evidence budget.
    fn written(
        &self,
        job: &Job,
        root: &Arc<OutDir>,
        d: &std::path::Path,
        handle: OutDir,
        target: Option<exec::Target>,
    ) {
        let row = &job.row;

        let ds = d.to_string_lossy().into_owned();
        if let Ok(mut b) = self.bundles.lock() {
            b.insert(row.pid, (ds.clone(), Instant::now()));
            if b.len() > 4096 {
                b.retain(|_, (_, t)| t.elapsed() < Duration::from_secs(1800));
            }
        }
        if let Some(argv) = &self.exec {
            let job = exec::ExecJob {
                argv: exec::substitute(argv, row.pid, &row.comm, &d),
                bundle: handle,
                bundle_path: d.to_path_buf(),
                pid: row.pid,
                comm: row.comm.clone(),
                reason: job.trigger.reason,
                target,
                need_target: true,
                env: exec::place_env(&row.cgroup, &row.attribution),
                timeout: self.args.exec_timeout,
                delay: test_exec_delay(),
            };
            let (root, budget) = (root.clone(), self.max_evidence_bytes);
            // Bounded (evidence/hook_pool.rs). The command's output counts
            // against the budget too.
            crate::evidence::hook_pool::submit(job, move |_| {
                if let Some(m) = budget {
                    bundle::enforce_budget(&root, m);
                }
            });
        }
        if let Some(m) = self.max_evidence_bytes {
            bundle::enforce_budget(&root, m);
        }
    }
}

/// A suspect's sampled stacks, taken for a bundle.
struct Gathered {
    /// Native stacks (CFI where deeper), merged per unique stack.
    samples: Vec<(Vec<u64>, u64)>,
    /// The best native stack of each frame-pointer stack id, and the
    /// sampled faults of each id.
    by_id: HashMap<u32, Vec<u64>>,
    fp_counts: Vec<(u32, u64)>,
    /// Python frames, for a CPython suspect the kernel walked.
    py: Option<evidence::pymix::PyInput>,
    /// Why a CPython suspect's frames were not walked.
    py_not: Option<String>,
}

/// Takes the suspect's samples from the kernel maps (under the lock), then
/// unwinds and names them in the sandboxed children (outside it).
fn gather(stacks: &Mutex<Stacks>, pid: u32) -> Gathered {
    let (fp, copies, py, py_not) = stacks
        .lock()
        .map(|mut s| {
            s.drain_copies();
            let py =
                s.py.as_ref()
                    .and_then(|p| Some((p.target(pid)?.clone(), p.samples(pid))));
            let py_not = s.py.as_ref().and_then(|p| p.why_not(pid).map(String::from));
            (s.collect_with_ids(pid), s.copies(pid), py, py_not)
        })
        .unwrap_or_default();
    let fp_counts = fp.iter().map(|(id, _, n)| (*id, *n)).collect();
    // Frame-pointer stacks, replaced by CFI-unwound ones where the stack
    // copies go deeper (docs/stacks.md).
    let (samples, by_id) = symbolize::unwind_merge(pid, fp, &copies);
    let py = py.map(|(target, (samples, counts))| {
        let frames: Vec<_> = samples.iter().flat_map(|s| s.frames.iter().copied()).collect();
        let (funcs, error) = match evidence::pyframes::resolve(pid, &target, &frames) {
            Ok(f) => (f, None),
            Err(e) => (HashMap::new(), Some(e)),
        };
        evidence::pymix::PyInput {
            target,
            samples,
            counts,
            funcs,
            error,
        }
    });
    Gathered {
        samples,
        by_id,
        fp_counts,
        py,
        py_not,
    }
}

/// Tests widen the window between the bundle and the command to reuse a
/// pid inside it (tests/tests/security.rs).
fn test_exec_delay() -> Duration {
    std::env::var("LEAKTRACE_TEST_EXEC_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or_default()
}
