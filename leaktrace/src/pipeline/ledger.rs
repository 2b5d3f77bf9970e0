//! The host memory ledger in the pipeline: a thread reads /proc/meminfo,
//! the tmpfs mounts, SysV shm and slabinfo every few seconds (never on the
//! sampling thread), and the sampling thread turns the newest reading into
//! the `ledger` of its sample.
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use crate::{
    fmt::{monotonic_ns, now_ms},
    host::{
        held_deleted,
        ledger::{self, Reading},
    },
    model::ledger::{Ledger, LedgerHistory, FINDING_BYTES},
};

/// How often the host is read.
pub const EVERY: Duration = Duration::from_secs(5);
/// Deleted files held open are looked for (a walk of every process's
/// descriptors, at most held_deleted::MAX_FDS) only while this much shmem
/// is mapped by no process, and at most this often.
const WALK_EVERY: Duration = Duration::from_secs(30);

type Latest = Arc<Mutex<Option<(f64, u64, Reading)>>>;

pub struct LedgerFeed {
    latest: Latest,
    /// Shmem mapped by no process, from the newest ledger, for the reader.
    unmapped: Arc<AtomicU64>,
    hist: LedgerHistory,
    last_t: f64,
    current: Option<Ledger>,
}

impl LedgerFeed {
    /// Starts the reader thread; it ends when `stop` is set.
    pub fn start(stop: Arc<AtomicBool>) -> anyhow::Result<Self> {
        let latest: Latest = Arc::default();
        let l = latest.clone();
        let unmapped = Arc::new(AtomicU64::new(0));
        let u = unmapped.clone();
        super::spawn("lt-ledger", move || {
            let mut walked: Option<Instant> = None;
            let mut reader = ledger::Reader::default();
            while !stop.load(Ordering::Relaxed) {
                let mut r = reader.read();
                if u.load(Ordering::Relaxed) >= FINDING_BYTES && walked.is_none_or(|w| w.elapsed() >= WALK_EVERY) {
                    let mounts: Vec<String> = r.tmpfs.iter().map(|m| m.0.clone()).collect();
                    r.held = Some(held_deleted::scan(&mounts));
                    walked = Some(Instant::now());
                }
                if let Ok(mut g) = l.lock() {
                    *g = Some((monotonic_ns() as f64 / 1e9, now_ms(), r));
                }
                std::thread::sleep(EVERY);
            }
        })?;
        Ok(Self {
            latest,
            unmapped,
            hist: LedgerHistory::default(),
            last_t: 0.0,
            current: None,
        })
    }

    /// The ledger for this sample: a new one when a new reading came in.
    /// `proc_shmem`: the shmem RSS of every live process, summed.
    pub fn next(&mut self, proc_shmem: u64) -> Option<Ledger> {
        let fresh = self.latest.lock().ok().and_then(|mut g| g.take());
        if let Some((t, ts_ms, r)) = fresh {
            if t > self.last_t {
                self.last_t = t;
                let l = self.hist.update(t, ts_ms, &r, proc_shmem);
                let unmapped = l.parts.iter().find(|p| p.name == "shmem_unmapped").map_or(0, |p| p.bytes);
                self.unmapped.store(unmapped, Ordering::Relaxed);
                self.current = Some(l);
            }
        }
        self.current.clone()
    }
}
