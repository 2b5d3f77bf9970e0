//! /proc reads on worker threads: metadata (cmdline, exe, cgroup), and the
//! proportional set size of the top groups' members (smaps_rollup).
//!
//! Such a read can block: the cmdline of a process whose mmap lock is held
//! (a D-state process during an OOM), a binary on a stuck FUSE mount. So
//! the sampling thread never reads /proc itself: it queues requests and
//! takes the answers that have arrived at its next tick. A worker that is
//! stuck longer than `STUCK_AFTER` is written off and replaced, up to
//! `MAX_WORKERS` threads in all. Requests wait in a backlog (bounded:
//! `BACKLOG`) and are fed to the workers as they free up; past the bound
//! they are dropped, counted, and asked again at a later tick.
use std::{
    collections::{HashSet, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, Sender, SyncSender, TrySendError},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use super::procfs::{self, Meta, ProcErr};

/// A read request: the process (pid and start time, so that a reused pid
/// is never answered with another process's metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Req {
    pub pid: u32,
    pub start_ns: u64,
    pub what: Want,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Want {
    Meta,
    /// Pss and USS from /proc/<pid>/smaps_rollup (walks every mapping
    /// under the mmap lock: asked for a few processes at a bounded rate).
    Rollup,
}

#[derive(Debug)]
pub enum Reply {
    Meta(Meta),
    Rollup(procfs::Rollup),
}

#[derive(Debug)]
pub struct Answer {
    pub req: Req,
    pub result: Result<Reply, ProcErr>,
}

fn read_real(req: Req) -> Result<Reply, ProcErr> {
    match req.what {
        Want::Meta => procfs::read_meta(req.pid).map(Reply::Meta),
        Want::Rollup => procfs::read_rollup(req.pid).map(Reply::Rollup),
    }
}

const QUEUE: usize = 256;
const BACKLOG: usize = crate::limits::META_BACKLOG_MAX;
const WORKERS: usize = 2;
const MAX_WORKERS: usize = 8;
const STUCK_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug, Default, Clone, Copy, serde::Serialize, schemars::JsonSchema)]
pub struct MetaStats {
    pub requested: u64,
    pub answered: u64,
    /// Requests that did not fit in the backlog (asked again later).
    pub queue_full: u64,
    /// Requests waiting now.
    pub backlog: usize,
    /// Workers that were stuck in a read and were replaced.
    pub stuck_workers: u64,
    /// Reads that failed for another reason than the process being gone.
    pub failed: u64,
}

struct Worker {
    /// ms since the pool started when the current read began; 0 = idle.
    busy_since_ms: Arc<AtomicU64>,
    written_off: bool,
}

pub struct MetaPool {
    tx: SyncSender<Req>,
    shared_rx: Arc<Mutex<Receiver<Req>>>,
    answers_tx: Sender<Answer>,
    answers: Receiver<Answer>,
    inflight: HashSet<Req>,
    backlog: VecDeque<Req>,
    workers: Vec<Worker>,
    t0: Instant,
    pub stats: MetaStats,
    read: fn(Req) -> Result<Reply, ProcErr>,
}

impl MetaPool {
    pub fn new() -> Self {
        Self::with_reader(read_real)
    }

    /// A pool with another reader (tests use a slow one).
    pub fn with_reader(read: fn(Req) -> Result<Reply, ProcErr>) -> Self {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (answers_tx, answers) = mpsc::channel();
        let mut p = Self {
            tx,
            shared_rx: Arc::new(Mutex::new(rx)),
            answers_tx,
            answers,
            inflight: HashSet::new(),
            backlog: VecDeque::new(),
            workers: Vec::new(),
            t0: Instant::now(),
            stats: MetaStats::default(),
            read,
        };
        for _ in 0..WORKERS {
            p.spawn();
        }
        p
    }

    fn spawn(&mut self) {
        let busy = Arc::new(AtomicU64::new(0));
        let (rx, tx, b, t0, read) = (
            self.shared_rx.clone(),
            self.answers_tx.clone(),
            busy.clone(),
            self.t0,
            self.read,
        );
        let spawned = std::thread::Builder::new()
            .name("lt-proc".into())
            .spawn(move || loop {
                let req = {
                    let Ok(rx) = rx.lock() else { return };
                    match rx.recv() {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                };
                b.store(t0.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
                let result = read(req);
                b.store(0, Ordering::Relaxed);
                if tx.send(Answer { req, result }).is_err() {
                    return;
                }
            });
        match spawned {
            Ok(_) => self.workers.push(Worker {
                busy_since_ms: busy,
                written_off: false,
            }),
            Err(e) => log::warn!("cannot start a /proc reader thread: {e}"),
        }
    }

    /// Asks for the metadata of a process, unless it is already asked.
    pub fn request(&mut self, req: Req) {
        if self.inflight.contains(&req) {
            return;
        }
        if self.backlog.len() >= BACKLOG {
            self.stats.queue_full += 1;
            crate::limits::META_BACKLOG.hit();
            return;
        }
        self.inflight.insert(req);
        self.backlog.push_back(req);
        self.stats.requested += 1;
        self.pump();
    }

    /// Moves waiting requests to the workers' queue while it has room.
    fn pump(&mut self) {
        while let Some(req) = self.backlog.pop_front() {
            match self.tx.try_send(req) {
                Ok(()) => {}
                Err(TrySendError::Full(r)) => {
                    self.backlog.push_front(r);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        self.stats.backlog = self.backlog.len();
    }

    /// The answers that have arrived; never blocks. Also replaces workers
    /// stuck in a read.
    pub fn take_answers(&mut self, out: &mut Vec<Answer>) {
        self.pump();
        while let Ok(a) = self.answers.try_recv() {
            self.inflight.remove(&a.req);
            self.stats.answered += 1;
            if matches!(a.result, Err(ProcErr::Failed(_))) {
                self.stats.failed += 1;
            }
            out.push(a);
        }
        let now = self.t0.elapsed().as_millis() as u64 + 1;
        let mut replace = 0;
        for w in self.workers.iter_mut().filter(|w| !w.written_off) {
            let since = w.busy_since_ms.load(Ordering::Relaxed);
            if since != 0 && now.saturating_sub(since) > STUCK_AFTER.as_millis() as u64 {
                w.written_off = true;
                self.stats.stuck_workers += 1;
                replace += 1;
            }
        }
        for _ in 0..replace {
            if self.workers.len() < MAX_WORKERS {
                self.spawn();
            }
        }
        // A written-off worker that came back is usable again.
        for w in self.workers.iter_mut().filter(|w| w.written_off) {
            if w.busy_since_ms.load(Ordering::Relaxed) == 0 {
                w.written_off = false;
            }
        }
    }

    /// Requests in flight (for forgetting those of gone processes).
    pub fn forget(&mut self, keep: impl Fn(&Req) -> bool) {
        self.inflight.retain(|r| keep(r));
        self.backlog.retain(|r| keep(r));
    }
}

impl Default for MetaPool {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow(req: Req) -> Result<Reply, ProcErr> {
        if req.pid == 666 {
            // A read that never returns (a D-state process).
            std::thread::sleep(Duration::from_secs(3600));
        }
        Ok(Reply::Meta(Meta {
            cmdline: format!("proc {}", req.pid),
            ..Default::default()
        }))
    }

    fn req(pid: u32, start_ns: u64) -> Req {
        Req {
            pid,
            start_ns,
            what: Want::Meta,
        }
    }

    fn wait_answers(p: &mut MetaPool, n: usize) -> Vec<Answer> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < n {
            assert!(Instant::now() < deadline, "only {} answers", got.len());
            p.take_answers(&mut got);
            std::thread::sleep(Duration::from_millis(20));
        }
        got
    }

    #[test]
    fn a_stuck_read_does_not_stop_the_others() {
        let mut p = MetaPool::with_reader(slow);
        // Two stuck reads take both first workers.
        p.request(req(666, 1));
        p.request(req(666, 2));
        std::thread::sleep(STUCK_AFTER + Duration::from_millis(300));
        let mut none = Vec::new();
        p.take_answers(&mut none);
        assert!(none.is_empty());
        assert_eq!(p.stats.stuck_workers, 2, "both are written off and replaced");
        for pid in 1..=5 {
            p.request(req(pid, 0));
        }
        let got = wait_answers(&mut p, 5);
        assert!(got.iter().all(|a| a.result.is_ok()));
        // The same request twice in flight is asked once.
        p.request(req(9, 0));
        p.request(req(9, 0));
        assert_eq!(wait_answers(&mut p, 1).len(), 1);
    }
}
