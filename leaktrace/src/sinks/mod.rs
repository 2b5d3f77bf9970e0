//! Where results go: the live view, JSON lines, the plain-text table, the
//! event log of `record`, the metrics endpoint. Each is a [`Sink`] on its
//! own thread behind two bounded queues: incidents and evidence on a
//! priority lane, samples on another. A sink that falls behind (a stuck
//! pipe, a slow disk) loses events, which are counted and shown in every
//! sample; it never holds up tracing, the OOM ring or the other sinks.
pub mod eventlog;
pub mod rotation;
pub mod exec_oom;
pub mod json;
pub mod metrics;
pub mod metrics_format;
pub mod text;
pub mod tui;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    evidence::EvidenceEvent,
    kernel::loader::{Capability, ProbeResult},
    model::{incident::Incident, sample::Sample},
};

/// The version of the JSON contract, carried by the status line as
/// `schema`. Raise it when a field changes meaning or goes away (adding a
/// field is compatible, but the schemas in docs/schema change with it).
pub const SCHEMA_VERSION: u32 = 1;

/// The first line of `--json` and of events.jsonl: what is live and why.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct StatusLine {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The version of the JSON contract ([`crate::schema::VERSION`]):
    /// raised when a field changes meaning or goes away.
    pub schema: u32,
    pub ts_ms: u64,
    /// The host name, capped and decoded lossily.
    pub host: String,
    /// /proc/sys/kernel/random/boot_id: pids and monotonic timestamps are
    /// only comparable within one boot.
    pub boot_id: Option<String>,
    /// The kernel's OOM kills since boot (/proc/vmstat oom_kill) at start:
    /// against the last summary of the same boot, the kills missed while
    /// no recorder ran.
    pub oom_kills_since_boot: Option<u64>,
    pub version: &'static str,
    pub ebpf_toolchain: &'static str,
    /// "iterator" or "hooks", and why.
    pub data_path: &'static str,
    pub data_path_why: String,
    pub hooks: Vec<ProbeResult>,
    pub capabilities: Vec<Capability>,
    pub notes: Vec<String>,
    pub oom_score_adj: OomScoreAdj,
    /// The bounds leaktrace enforces on itself (docs/security.md).
    pub limits: Vec<crate::limits::Bound>,
}

/// A `status` line read back (by `report`: each one starts a run of the
/// recorder). Kept next to [`StatusLine`]; `a_status_line_reads_back`
/// fails when the two drift apart.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct StatusRecord {
    pub schema: u32,
    pub ts_ms: u64,
    pub boot_id: Option<String>,
    pub version: String,
    /// Absent from recordings made before it was added.
    #[serde(default)]
    pub oom_kills_since_boot: Option<u64>,
    /// The host's name. Absent from recordings made before it was read back.
    #[serde(default)]
    pub host: Option<String>,
}

/// What leaktrace asked for its own oom_score_adj and what it got.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct OomScoreAdj {
    pub requested: i32,
    pub effective: Option<i32>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Event {
    Status(Arc<StatusLine>),
    Sample(Arc<Sample>),
    Evidence(Arc<EvidenceEvent>),
    Incident(Arc<Incident>),
}

impl Event {
    fn priority(&self) -> bool {
        !matches!(self, Event::Sample(_))
    }
}

/// Keep going, or stop leaktrace (stdout was closed, the user pressed q).
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

pub trait Sink: Send {
    fn name(&self) -> &'static str;
    fn handle(&mut self, ev: &Event) -> anyhow::Result<Flow>;
    /// Called once when leaktrace stops, after the last event.
    fn finish(&mut self) {}
}

/// Samples queued per sink; incidents and evidence have their own queue.
pub const QUEUE: usize = crate::limits::SINK_QUEUE_LEN;
pub const PRIORITY_QUEUE: usize = crate::limits::PRIORITY_QUEUE_LEN;

struct Handle {
    name: &'static str,
    tx: SyncSender<Event>,
    prio: SyncSender<Event>,
    /// Rung after every event put on either lane: the sink thread sleeps
    /// on it, so it wakes for an event and at no other time (it used to
    /// wake 20 times a second to look at the priority lane: 0.1% of a core
    /// at 10,000 processes).
    bell: SyncSender<()>,
    dropped: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

/// Sends every event to every sink, never blocking. A sink that asks
/// leaktrace to stop sets the `stop` flag given to `new`.
pub struct Fanout {
    sinks: std::sync::Mutex<Vec<Handle>>,
}

impl Fanout {
    pub fn new(sinks: Vec<Box<dyn Sink>>, stop: Arc<AtomicBool>) -> Self {
        let handles = sinks
            .into_iter()
            .map(|mut s| {
                let (tx, rx) = mpsc::sync_channel(QUEUE);
                let (prio, prio_rx) = mpsc::sync_channel(PRIORITY_QUEUE);
                // One pending ring is enough: the thread drains both lanes
                // after each one it takes.
                let (bell, bell_rx) = mpsc::sync_channel(1);
                let stop = stop.clone();
                let name = s.name();
                let lanes = Lanes {
                    samples: rx,
                    prio: prio_rx,
                    bell: bell_rx,
                };
                let thread = std::thread::Builder::new()
                    .name(format!("lt-sink-{name}"))
                    .spawn(move || run_sink(s.as_mut(), lanes, &stop))
                    .expect("spawning a sink thread");
                Handle {
                    name,
                    tx,
                    prio,
                    bell,
                    dropped: Arc::new(AtomicU64::new(0)),
                    thread,
                }
            })
            .collect();
        Self {
            sinks: std::sync::Mutex::new(handles),
        }
    }

    pub fn send(&self, ev: Event) {
        let Ok(sinks) = self.sinks.lock() else { return };
        for h in sinks.iter() {
            let q = if ev.priority() { &h.prio } else { &h.tx };
            match q.try_send(ev.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    h.dropped.fetch_add(1, Ordering::Relaxed);
                    if ev.priority() {
                        crate::limits::PRIORITY_QUEUE.hit();
                    } else {
                        crate::limits::SINK_QUEUE.hit();
                    }
                }
            }
            // Full: a ring is pending, and the thread drains both lanes
            // after taking it, so this event is seen.
            let _ = h.bell.try_send(());
        }
    }

    /// Events each sink dropped so far.
    pub fn drops(&self) -> Vec<(String, u64)> {
        let Ok(sinks) = self.sinks.lock() else {
            return Vec::new();
        };
        sinks
            .iter()
            .map(|h| (h.name.to_string(), h.dropped.load(Ordering::Relaxed)))
            .collect()
    }

    /// Closes the queues and waits for the sinks to write what they have,
    /// until `deadline`; a sink stuck in a write is left behind.
    /// Later sends are dropped silently.
    pub fn shutdown(&self, deadline: Instant) {
        let handles = match self.sinks.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(_) => return,
        };
        let mut threads = Vec::new();
        for h in handles {
            drop(h.tx);
            drop(h.prio);
            drop(h.bell);
            threads.push((h.name, h.thread));
        }
        for (name, t) in threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                log::warn!("sink {name} did not finish in time (stuck writing?); leaving it behind");
            }
        }
    }
}

/// A sink thread's receiving ends.
struct Lanes {
    samples: Receiver<Event>,
    prio: Receiver<Event>,
    bell: Receiver<()>,
}

fn run_sink(s: &mut dyn Sink, lanes: Lanes, stop: &AtomicBool) {
    // Sleeps on the bell; after each ring, or once the senders are gone,
    // delivers everything queued, the priority lane first.
    loop {
        let last = lanes.bell.recv().is_err();
        if !drain(s, &lanes, stop) || last {
            break;
        }
    }
    s.finish();
}

/// Delivers everything queued; a priority event always goes before the
/// next sample (the status line, sent before the first sample, must stay
/// the first line: the JSON contract). False when the sink is done.
fn drain(s: &mut dyn Sink, lanes: &Lanes, stop: &AtomicBool) -> bool {
    loop {
        while let Ok(ev) = lanes.prio.try_recv() {
            if deliver(s, &ev, stop) {
                return false;
            }
        }
        match lanes.samples.try_recv() {
            Ok(ev) => {
                if deliver(s, &ev, stop) {
                    return false;
                }
            }
            Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return true,
        }
    }
}

/// Hands one event to the sink; true if the sink is done for good.
fn deliver(s: &mut dyn Sink, ev: &Event, stop: &AtomicBool) -> bool {
    match s.handle(ev) {
        Ok(Flow::Continue) => false,
        Ok(Flow::Stop) => {
            crate::stopping::request(stop);
            true
        }
        Err(e) => {
            log::warn!("{}: {e:#}", s.name());
            false
        }
    }
}

/// Which processes an output shows: --pid, --top, --all.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub pids: Vec<u32>,
    /// At most this many processes and groups; None = all.
    pub top: Option<usize>,
}

impl View {
    /// The rows of `s` this view shows: the chosen pids, or the top N by
    /// growth (the sample is sorted by growth) and every flagged process
    /// (one that crossed a trigger lately).
    pub fn rows<'a>(&self, s: &'a Sample) -> Vec<&'a crate::model::sample::ProcessRow> {
        let it = s
            .processes
            .iter()
            .filter(|p| self.pids.is_empty() || self.pids.contains(&p.pid));
        match self.top {
            Some(n) => it
                .enumerate()
                .filter(|(i, p)| *i < n || p.flagged)
                .map(|x| x.1)
                .collect(),
            None => it.collect(),
        }
    }

    pub fn groups<'a>(&self, s: &'a Sample) -> Vec<&'a crate::model::sample::GroupRow> {
        let it = s
            .groups
            .iter()
            .filter(|g| self.pids.is_empty() || g.pids.iter().any(|p| self.pids.contains(p)));
        match self.top {
            Some(n) => it.take(n).collect(),
            None => it.collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_line_reads_back() {
        let line = StatusLine {
            kind: "status",
            schema: SCHEMA_VERSION,
            ts_ms: 5,
            host: "h".into(),
            boot_id: Some("b".into()),
            oom_kills_since_boot: Some(3),
            version: "v",
            ebpf_toolchain: "t",
            data_path: "iterator",
            data_path_why: String::new(),
            hooks: vec![],
            capabilities: vec![],
            notes: vec![],
            oom_score_adj: OomScoreAdj {
                requested: -1000,
                effective: None,
                error: None,
            },
            limits: vec![],
        };
        let r: StatusRecord = serde_json::from_str(&crate::fmt::json_line(&line).unwrap()).unwrap();
        let want = StatusRecord {
            schema: SCHEMA_VERSION,
            ts_ms: 5,
            boot_id: Some("b".into()),
            version: "v".into(),
            oom_kills_since_boot: Some(3),
            host: Some("h".into()),
        };
        assert_eq!(r, want);
    }
    use std::sync::Mutex;

    /// A sink that never returns from its first write (a consumer that
    /// never reads), and one that records what it got.
    struct Stuck;
    impl Sink for Stuck {
        fn name(&self) -> &'static str {
            "stuck"
        }
        fn handle(&mut self, _: &Event) -> anyhow::Result<Flow> {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(Flow::Continue)
        }
    }
    struct Rec(Arc<Mutex<Vec<&'static str>>>);
    impl Sink for Rec {
        fn name(&self) -> &'static str {
            "rec"
        }
        fn handle(&mut self, ev: &Event) -> anyhow::Result<Flow> {
            self.0.lock().unwrap().push(match ev {
                Event::Sample(_) => "sample",
                Event::Incident(_) => "incident",
                _ => "other",
            });
            Ok(Flow::Continue)
        }
    }

    fn sample() -> Event {
        Event::Sample(Arc::new(Sample {
            kind: "sample",
            ts_ms: 0,
            interval_s: 1.0,
            processes_total: 0,
            processes: vec![],
            groups: vec![],
            cgroups: vec![],
            kernel: Default::default(),
            ledger: None,
        }))
    }

    #[test]
    fn a_priority_event_sent_first_is_written_first() {
        // The sink thread is waiting on the sample lane when both arrive:
        // the status line (priority) must still come out first.
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let f = Fanout::new(vec![Box::new(Rec(got.clone()))], stop);
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(20));
            f.send(Event::Evidence(Arc::new(EvidenceEvent {
                kind: "evidence",
                ts_ms: 0,
                pid: 1,
                comm: String::new(),
                reason: "pid",
                detail: String::new(),
                dir: None,
                error: None,
            })));
            f.send(sample());
        }
        f.shutdown(Instant::now() + Duration::from_secs(2));
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 40);
        for pair in got.chunks(2) {
            assert_eq!(pair, ["other", "sample"], "{got:?}");
        }
    }

    #[test]
    fn a_stuck_sink_drops_and_counts_while_the_others_get_everything() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let f = Fanout::new(vec![Box::new(Stuck), Box::new(Rec(got.clone()))], stop);
        for _ in 0..100 {
            f.send(sample());
            std::thread::sleep(Duration::from_millis(1));
        }
        let drops = f.drops();
        assert_eq!(drops[0].0, "stuck");
        assert!(drops[0].1 >= 100 - QUEUE as u64 - 1, "{drops:?}");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(got.lock().unwrap().len(), 100, "the other sink lost nothing");
        assert_eq!(drops[1].1, 0);
        let t = Instant::now();
        f.shutdown(Instant::now() + Duration::from_millis(300));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a stuck sink does not hold up shutdown"
        );
    }
}
