//! The host memory ledger in the pipeline: a thread reads /proc/meminfo,
//! the tmpfs mounts, SysV shm and slabinfo every few seconds (never on the
//! sampling thread), and the sampling thread turns the newest reading into
//! the `ledger` of its sample.
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use crate::{
    fmt::{monotonic_ns, now_ms},
    host::ledger::{self, Reading},
    model::ledger::{Ledger, LedgerHistory},
};

/// How often the host is read.
pub const EVERY: Duration = Duration::from_secs(5);

type Latest = Arc<Mutex<Option<(f64, u64, Reading)>>>;

pub struct LedgerFeed {
    latest: Latest,
    hist: LedgerHistory,
    last_t: f64,
    current: Option<Ledger>,
}

impl LedgerFeed {
    /// Starts the reader thread; it ends when `stop` is set.
    pub fn start(stop: Arc<AtomicBool>) -> anyhow::Result<Self> {
        let latest: Latest = Arc::default();
        let l = latest.clone();
        super::spawn("lt-ledger", move || {
            while !stop.load(Ordering::Relaxed) {
                let r = ledger::read();
                if let Ok(mut g) = l.lock() {
                    *g = Some((monotonic_ns() as f64 / 1e9, now_ms(), r));
                }
                std::thread::sleep(EVERY);
            }
        })?;
        Ok(Self {
            latest,
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
                self.current = Some(self.hist.update(t, ts_ms, &r, proc_shmem));
            }
        }
        self.current.clone()
    }
}
