//! The OOM thread: drains the two OOM rings as soon as they are readable,
//! assembles incidents and hands them to the sinks. It does nothing else,
//! so a stuck sink, a slow disk or a long sampling pass cannot make the
//! rings overflow. What it needs from the model (the victim's history, the
//! top grower) it reads under a short lock.
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use super::{evidence::Bundles, sampling::Shared};
use crate::{
    fmt::monotonic_ns,
    host::facts,
    kernel::oom_ring::OomRings,
    model::{
        incident::{Assembler, Grower, Incident, OomContext, ProcSnapshot},
        tracker::Tracker,
    },
    sinks::{Event, Fanout},
};

/// The model as the assembler sees it.
struct View<'a>(&'a Mutex<Tracker>);

impl OomContext for View<'_> {
    fn snapshot(&self, pid: u32, start_ns: Option<u64>) -> Option<ProcSnapshot> {
        self.0.lock().ok()?.snapshot_of(pid, start_ns)
    }
    fn victim_marked(&self, pid: u32, life: &leaktrace_common::Life) {
        if let Ok(mut t) = self.0.lock() {
            t.victim_marked(pid, life, crate::fmt::page_size());
        }
    }
    fn top_grower(
        &self,
        scope: Option<&str>,
        window_s: f64,
        victim: Option<(u32, f64, u64)>,
    ) -> Option<Grower> {
        self.0.lock().ok()?.top_grower(scope, window_s, victim)
    }
    fn top_growers(
        &self,
        scope: Option<&str>,
        window_s: f64,
        victim: Option<(u32, f64, u64)>,
        n: usize,
    ) -> Vec<(Grower, Vec<(u64, u64)>)> {
        self.0
            .lock()
            .map(|t| t.top_growers(scope, window_s, victim, n))
            .unwrap_or_default()
    }
    fn memcg_history(&self, path: &str, from_s: f64, to_s: f64) -> Option<(u64, Vec<(u64, u64)>)> {
        self.0.lock().ok()?.memcg_history(path, from_s, to_s)
    }
    fn reclaimers(&self, scope: Option<&str>, window_s: f64, at_ns: Option<u64>) -> Vec<(u32, String, f64)> {
        self.0
            .lock()
            .map(|t| t.reclaimers(scope, window_s, at_ns.map(|n| n as f64 / 1e9)))
            .unwrap_or_default()
    }
    fn memcg_path(&self, id: u64) -> Option<String> {
        self.0.lock().ok()?.memcg_path_by_id(id)
    }
    fn mono_to_unix_ms(&self, ns: u64) -> u64 {
        crate::fmt::mono_to_unix_ms(ns)
    }
    fn page_size(&self) -> u64 {
        crate::fmt::page_size()
    }
    fn psi(&self) -> Option<(u64, u64, u64)> {
        facts::psi_totals().map(|(s, f)| (s, f, monotonic_ns()))
    }
    fn host(&self) -> Option<facts::Facts> {
        Some(facts::read())
    }
}

/// After an OOM record, the thread wakes every 100 ms this long.
const QUIET_AFTER: Duration = Duration::from_secs(60);

pub struct OomThread {
    pub rings: OomRings,
    pub tracker: Arc<Mutex<Tracker>>,
    pub bundles: Bundles,
    pub fanout: Arc<Fanout>,
    pub shared: Arc<Shared>,
    pub stop: Arc<AtomicBool>,
    /// The sampling interval: a victim's exit record reaches the model at
    /// the next sample.
    pub interval: Duration,
}

/// How long a complete incident waits for the exits its kill set off
/// (they reach the model at the next sample).
const AFTERMATH_WAIT: Duration = Duration::from_secs(4);

impl OomThread {
    /// Links the bundles, the host ledger and the exits that followed,
    /// then sends the incident.
    fn send(&self, mut inc: Incident) {
        let bundle_of = |pid: u32| {
            let b = self.bundles.lock().ok()?;
            b.get(&pid)
                .filter(|(_, t)| t.elapsed() < Duration::from_secs(1800))
                .map(|(d, _)| d.clone())
        };
        inc.evidence_dir = inc.victim.as_ref().and_then(|v| bundle_of(v.pid));
        // The culprit's evidence, when the verdict names another.
        let victim = inc.victim.as_ref().map(|v| v.pid);
        inc.grower_evidence_dir = inc
            .top_grower
            .as_ref()
            .filter(|g| Some(g.pid) != victim)
            .and_then(|g| bundle_of(g.pid));
        inc.host_ledger = self.shared.ledger.lock().ok().and_then(|l| l.clone());
        if let Some(v) = victim {
            inc.after_kill_exits = self
                .tracker
                .lock()
                .map(|t| t.aftermath.after(v))
                .unwrap_or_default();
            if let Some(s) = crate::model::aftermath::sentence(v, &inc.after_kill_exits) {
                inc.summary = format!("{}; {s}", inc.summary);
            }
        }
        self.fanout.send(Event::Incident(Arc::new(inc)));
    }

    pub fn run(mut self) {
        let mut asm = Assembler::new();
        asm.after_exit_ns = asm
            .after_exit_ns
            .max((self.interval + Duration::from_millis(500)).as_nanos() as u64);
        let mut recs = Vec::new();
        let fds = self.rings.raw_fds();
        let view = View(&self.tracker);
        // Records too short for their kind, or of a kind this build does
        // not know: dropped, and counted with the kernel's lost events so
        // that an incident says it may be missing something.
        let mut undecoded = 0u64;
        let mut held: Vec<(Incident, Instant)> = Vec::new();
        // When a record last came: incidents are assembled on time (every
        // 100 ms) for a while after one; a quiet host is looked at once a
        // second (a record or a stop request wakes the poll at once).
        let mut last_record: Option<Instant> = None;
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            // The two rings, and the stop request's eventfd (skipped by
            // poll when absent, as -1).
            let mut p = [fds[0], fds[1], crate::stopping::fd().unwrap_or(-1)].map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            if !stopping {
                let busy = !held.is_empty() || last_record.is_some_and(|t| t.elapsed() < QUIET_AFTER);
                let ms = if busy { 100 } else { 1000 };
                // SAFETY: three pollfds; a timeout in ms.
                unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
            }
            let bad = self.rings.drain(&mut recs);
            if bad > 0 && undecoded == 0 {
                log::warn!("OOM ring: {bad} record(s) could not be decoded and were dropped");
            }
            undecoded += bad;
            let lost = self.shared.oom_lost.load(Ordering::Relaxed) + undecoded;
            for r in recs.drain(..) {
                last_record = Some(Instant::now());
                asm.handle(r, &view, lost);
            }
            // At shutdown, whatever is pending is closed as it stands.
            let now = if stopping { u64::MAX / 2 } else { monotonic_ns() };
            for inc in asm.poll(now, &view, lost) {
                held.push((inc, Instant::now()));
            }
            // Held a moment for the exits the kill sets off to arrive.
            let mut i = 0;
            while i < held.len() {
                if stopping || held[i].1.elapsed() >= AFTERMATH_WAIT {
                    let (inc, _) = held.swap_remove(i);
                    self.send(inc);
                } else {
                    i += 1;
                }
            }
            if stopping {
                break;
            }
        }
    }
}
