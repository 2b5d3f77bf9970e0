//! The sampling thread: once per interval it reads every process from the
//! kernel (one task-iterator pass, or the hooks' maps), takes the exit
//! records and /proc answers that arrived meanwhile, updates the model,
//! decides triggers and suspects, and hands the sample to the sinks. It
//! never reads /proc itself and never writes anything but to queues, so
//! nothing outside the kernel can make it late.
use std::{
    collections::HashMap,
    os::fd::RawFd,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::SyncSender,
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use super::evidence::{Job, Triggers};
use crate::{
    fmt::{monotonic_ns, now_ms},
    host::{cgroup::Cgroups, meta::MetaPool},
    kernel::{counters::CountersMap, exits::ExitsReader, stacks::Stacks, ProcSample, Sampler},
    model::{
        sample::KernelStatus,
        tracker::{Names, TickInput, Tracker},
    },
    sinks::{Event, Fanout},
};

impl Names for Cgroups {
    fn cgroup_of(&mut self, memcg_id: u64) -> Option<String> {
        self.path_of(memcg_id)
    }
    fn learn(&mut self, path: &str, raw: &[u8]) {
        Cgroups::learn(self, path, raw)
    }
    fn version(&self) -> u8 {
        Cgroups::version(self)
    }
}

/// The loop wakes at least this often between samples, or twice per
/// watchdog period if that is shorter; exit records and a stop request
/// (crate::stopping) wake it at once.
const WAKE_EVERY: Duration = Duration::from_secs(1);

/// Most exit records held between two samples (a fork storm).
const MAX_EXITS: usize = crate::limits::EXITS_PER_SAMPLE_MAX;

/// Counters the OOM thread reads (it does not own the counters map).
#[derive(Default)]
pub struct Shared {
    pub oom_lost: AtomicU64,
    /// The newest host memory ledger, for the incidents.
    pub ledger: Mutex<Option<crate::model::ledger::Ledger>>,
}

pub struct Sampling {
    pub sampler: Box<dyn Sampler>,
    pub exits: Option<ExitsReader>,
    pub counters: CountersMap,
    pub stacks: Option<Arc<Mutex<Stacks>>>,
    /// The host memory ledger's newest reading.
    pub ledger: super::ledger::LedgerFeed,
    /// Tells the kernel which suspects are CPython (None: no Python maps).
    pub python: Option<super::python::Detector>,
    pub tracker: Arc<Mutex<Tracker>>,
    pub triggers: Triggers,
    pub jobs: SyncSender<Job>,
    pub fanout: Arc<Fanout>,
    pub shared: Arc<Shared>,
    pub stop: Arc<AtomicBool>,
    pub interval: Duration,
    /// Rows the sinks need: the fastest growers up to this many (None: all),
    /// and these pids.
    pub rows: Option<usize>,
    pub pids: Vec<u32>,
    pub debug_map_pids: bool,
    pub deadline: Option<Instant>,
    /// systemd's watchdog, pinged from this loop only: if sampling hangs,
    /// the pings stop and systemd restarts leaktrace.
    pub watchdog: Option<crate::notify::Watchdog>,
}

/// Waits on `fd` for at most `timeout`; true if it became readable.
fn wait_readable(fd: Option<RawFd>, timeout: Duration) -> bool {
    // The exit ring, and the stop request's eventfd; a negative fd is
    // skipped by poll.
    let mut p = [fd, crate::stopping::fd()].map(|fd| libc::pollfd {
        fd: fd.unwrap_or(-1),
        events: libc::POLLIN,
        revents: 0,
    });
    // SAFETY: two pollfds, for the given number of ms.
    let n = unsafe { libc::poll(p.as_mut_ptr(), 2, timeout.as_millis().min(1000) as i32) };
    n > 0 && p[0].revents != 0
}

/// Test hook: LEAKTRACE_TEST_HANG_SAMPLER="TICK:SECS" makes the sampling
/// thread sleep SECS seconds in sample number TICK, as a sampler stuck in
/// the kernel would (the watchdog test checks that the pings stop).
fn test_hang(tick: u64) {
    static HANG: std::sync::OnceLock<Option<(u64, f64)>> = std::sync::OnceLock::new();
    let hang = HANG.get_or_init(|| {
        let v = std::env::var("LEAKTRACE_TEST_HANG_SAMPLER").ok()?;
        let (t, s) = v.split_once(':')?;
        Some((t.parse().ok()?, s.parse().ok()?))
    });
    if let Some((t, s)) = *hang {
        if t == tick {
            std::thread::sleep(Duration::from_secs_f64(s));
        }
    }
}

/// What the loop keeps between ticks.
struct State {
    meta: MetaPool,
    cgroups: Cgroups,
    /// The changed records of the last pass, and every process's tgid.
    procs: Vec<ProcSample>,
    live: Vec<u32>,
    exits: Vec<crate::kernel::exits::ExitSample>,
    exits_dropped: u64,
    ticks: u64,
}

impl Sampling {
    pub fn run(mut self) {
        let mut st = State {
            meta: MetaPool::new(),
            cgroups: Cgroups::detect(),
            procs: Vec::new(),
            live: Vec::new(),
            exits: Vec::new(),
            exits_dropped: 0,
            ticks: 0,
        };
        let mut next = Instant::now();
        while self.wait_until(next, &mut st) {
            next += self.interval;
            let now = Instant::now();
            if next < now {
                next = now + self.interval;
            }
            if !self.tick(&mut st) {
                break;
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                crate::stopping::request(&self.stop);
            }
        }
    }

    /// Keeps the exit ring drained until `next`; false if asked to stop.
    fn wait_until(&mut self, next: Instant, st: &mut State) -> bool {
        let exits_fd = self.exits.as_ref().map(|e| e.raw_fd());
        loop {
            if let Some(e) = self.exits.as_mut() {
                st.exits_dropped += e.drain(&mut st.exits, MAX_EXITS);
            }
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            if let Some(w) = self.watchdog.as_mut() {
                w.tick();
            }
            let now = Instant::now();
            if now >= next {
                return true;
            }
            let wake = self.watchdog.as_ref().map_or(WAKE_EVERY, |w| w.every().min(WAKE_EVERY));
            wait_readable(exits_fd, (next - now).min(wake));
        }
    }

    /// One sample: read the kernel, update the model, decide, send.
    /// False if the model is unusable (a poisoned lock).
    fn tick(&mut self, st: &mut State) -> bool {
        st.ticks += 1;
        test_hang(st.ticks);
        let t0 = Instant::now();
        let stats = match self.sampler.sample(&mut st.procs, &mut st.live) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("sampling failed: {e:#}");
                return true;
            }
        };
        let status = self.status(&stats, st);
        let mut answers = Vec::new();
        st.meta.take_answers(&mut answers);
        // Rows for the pids asked for, and for those that crossed a
        // trigger (listed whatever --top says).
        let flagged: Vec<u32> = self.triggers.flagged().collect();
        let (mut sample, requests, want, t_tick, proc_shmem) = {
            let Ok(mut tr) = self.tracker.lock() else {
                return false;
            };
            tr.apply_meta(answers, &mut st.cgroups);
            let (sample, requests) = tr.tick(
                TickInput {
                    t: monotonic_ns() as f64 / 1e9,
                    ts_ms: now_ms(),
                    procs: &st.procs,
                    live: Some(&st.live),
                    exits: &st.exits,
                    status,
                    hooks_path: self.sampler.name() == "hooks",
                    rows: self.rows,
                    pids: &self.pids,
                    flagged: &flagged,
                },
                &mut st.cgroups,
            );
            let t_tick = t0.elapsed();
            if tr.resync {
                self.sampler.resync();
            }
            let want = self.triggers.decide(&tr, &mut st.cgroups, &self.jobs);
            (sample, requests, want, t_tick, tr.shmem_bytes())
        };
        sample.ledger = self.ledger.next(proc_shmem);
        if let (Some(l), Ok(mut g)) = (&sample.ledger, self.shared.ledger.lock()) {
            if g.as_ref().is_none_or(|old| old.ts_ms != l.ts_ms) {
                *g = Some(l.clone());
            }
        }
        st.exits.clear();
        for r in requests {
            st.meta.request(r);
        }
        self.follow_memcgs(st);
        let t_trig = t0.elapsed();
        self.housekeeping(&want, st);
        self.fanout.send(Event::Sample(Arc::new(sample)));
        if std::env::var_os("LEAKTRACE_MEMDBG").is_some() {
            let (tracked, active, gone, regroups) = self
                .tracker
                .lock()
                .map(|mut t| t.debug_counts())
                .unwrap_or_default();
            eprintln!(
                "tick: pass {:.1} ms, model {:.1} ms, triggers {:.1} ms, total {:.1} ms; \
                 {} changed of {}, {tracked} tracked, {active} moving, {gone} lingering, {regroups} regroup(s)",
                stats.pass_ms,
                t_tick.as_secs_f64() * 1e3 - stats.pass_ms,
                (t_trig - t_tick).as_secs_f64() * 1e3,
                t0.elapsed().as_secs_f64() * 1e3,
                st.procs.len(),
                st.live.len(),
            );
        }
        true
    }

    /// The usage of the memcgs that limit tracked processes (cgroupfs
    /// files, at most MAX_MEMCGS), for time-to-limit and the incidents.
    fn follow_memcgs(&mut self, st: &mut State) {
        let t = monotonic_ns() as f64 / 1e9;
        let mut read: Vec<(u64, String, u64, u64)> = Vec::new();
        let mut by_path: crate::fmt::FastMap<String, (u64, u64)> = Default::default();
        for (id, _) in &self.triggers.limited {
            let Some((path, limit, usage)) = st.cgroups.binding_usage(*id) else {
                continue;
            };
            by_path.entry(path.clone()).or_insert((limit, usage));
            read.push((*id, path, limit, usage));
            if by_path.len() >= crate::model::tracker::MAX_MEMCGS {
                break;
            }
        }
        if let Ok(mut tr) = self.tracker.lock() {
            tr.record_memcgs(t, &read);
        }
    }

    /// The data path's health for this sample.
    fn status(&mut self, stats: &crate::kernel::SampleStats, st: &State) -> KernelStatus {
        let counters = self.counters.read();
        self.shared
            .oom_lost
            .store(counters.oom_lost + counters.oom_crit_lost, Ordering::Relaxed);
        KernelStatus {
            data_path: self.sampler.name(),
            pass_ms: stats.pass_ms,
            sampler_errors: stats.errors,
            counters,
            exits_dropped: st.exits_dropped,
            meta: st.meta.stats,
            stacks: self.stacks.as_ref().and_then(|s| s.lock().ok().map(|s| s.stats)),
            sink_drops: self.fanout.drops(),
            map_pids: self.debug_map_pids.then(|| self.sampler.map_keys()),
            limits_hit: crate::limits::hits(),
            ..Default::default()
        }
    }

    /// Suspects' perf events follow `want`; every 10 ticks the stacks and
    /// /proc requests of processes that are gone are forgotten (every live
    /// process counts, not only the rows the outputs show).
    fn housekeeping(&mut self, want: &HashMap<u32, u32>, st: &mut State) {
        let prune = st.ticks.is_multiple_of(10);
        // Every live process and its start time, from the model (a pass
        // holds only the records that changed).
        let alive: HashMap<u32, u64> = match self.tracker.lock() {
            Ok(tr) if prune => st
                .live
                .iter()
                .filter_map(|p| Some((*p, tr.start_ns(*p)?)))
                .collect(),
            _ => HashMap::new(),
        };
        if let Some(s) = &self.stacks {
            if let Ok(mut s) = s.lock() {
                s.set_suspects(want);
                if let (Some(d), Some(new)) = (&self.python, s.py.as_mut().map(|p| p.follow(want))) {
                    d.offer(&mut s, new);
                }
                if prune {
                    s.forget_except(&|pid| alive.contains_key(&pid));
                }
            }
        }
        if prune {
            st.meta
                .forget(|r| alive.get(&r.pid).is_some_and(|s| *s == r.start_ns));
        }
    }
}
