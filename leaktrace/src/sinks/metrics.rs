//! Prometheus/OpenMetrics text for `record --metrics ADDR` (the format
//! a scrape asks for: metrics_format.rs), by the book:
//! counters end in `_total` and cumulative counts are counters; there is
//! no `pid` label anywhere (a pid is not an identity, and per-process
//! series are unbounded); per-cgroup series exist for the top N cgroups by
//! RSS only, rebuilt every sample; OOM kills are counted by cgroup with a
//! bounded number of label sets. Every label value is escaped and capped.
use std::{collections::HashSet, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use std::sync::atomic::AtomicU64;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    host::attribution::Attribution,
    sinks::{metrics_format as format, StatusLine},
};

type Labels = Vec<(String, String)>;
type GaugeF = Gauge<f64, AtomicU64>;
type CounterF = Counter<f64, AtomicU64>;

/// Label sets `oom_kills_total` keeps before it counts new cgroups under
/// cgroup="_other".
const MAX_OOM_LABEL_SETS: usize = 200;
/// Longest label value.
const LABEL_CAP: usize = 256;

/// A label value from a string a process controls: control characters
/// made visible, capped.
fn lv(s: &str) -> String {
    let t = crate::fmt::term(s);
    let mut end = t.len().min(LABEL_CAP);
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    t[..end].to_string()
}

fn who(cgroup: &str, a: &Attribution) -> Labels {
    vec![
        ("cgroup".into(), lv(cgroup)),
        ("unit".into(), lv(a.unit.as_deref().unwrap_or(""))),
        ("container_id".into(), lv(a.container_id.as_deref().unwrap_or(""))),
        ("pod_uid".into(), lv(a.pod_uid.as_deref().unwrap_or(""))),
    ]
}

pub struct Metrics {
    registry: Registry,
    cgroup_rss: Family<Labels, GaugeF>,
    cgroup_growth: Family<Labels, GaugeF>,
    cgroup_limit: Family<Labels, GaugeF>,
    cgroup_processes: Family<Labels, GaugeF>,
    oom_kills: Family<Labels, Counter>,
    /// The label sets oom_kills has, to bound them.
    oom_sets: HashSet<Labels>,
    wrong_victim: Family<Labels, Counter>,
    last_kill: GaugeF,
    stall_seconds: CounterF,
    stalled_task_seconds: CounterF,
    bundles: Counter,
    lost: Family<Labels, Counter>,
    limit_hits: Family<Labels, Counter>,
    build_info: Family<Labels, Gauge>,
    hook_live: Family<Labels, Gauge>,
    bpf_run_seconds: Family<Labels, CounterF>,
    bpf_runs: Family<Labels, Counter>,
    host_memory: Family<Labels, GaugeF>,
    host_memory_growth: Family<Labels, GaugeF>,
    tmpfs_bytes: Family<Labels, GaugeF>,
    /// Our programs' kernel ids and names, when run-time stats are on.
    pub programs: Vec<(u32, String)>,
    pub top_n: usize,
}

/// Sets a counter to a cumulative value read elsewhere (it only grows).
fn set_total(c: &Counter, v: u64) {
    let seen = c.get();
    if v > seen {
        c.inc_by(v - seen);
    }
}

impl Metrics {
    pub fn new(top_n: usize) -> Self {
        let mut r = Registry::with_prefix("leaktrace");
        let m = Self {
            registry: Registry::default(),
            cgroup_rss: Family::default(),
            cgroup_growth: Family::default(),
            cgroup_limit: Family::default(),
            cgroup_processes: Family::default(),
            oom_kills: Family::default(),
            oom_sets: HashSet::new(),
            wrong_victim: Family::default(),
            last_kill: GaugeF::default(),
            stall_seconds: CounterF::default(),
            stalled_task_seconds: CounterF::default(),
            bundles: Counter::default(),
            lost: Family::default(),
            limit_hits: Family::default(),
            build_info: Family::default(),
            hook_live: Family::default(),
            bpf_run_seconds: Family::default(),
            bpf_runs: Family::default(),
            host_memory: Family::default(),
            host_memory_growth: Family::default(),
            tmpfs_bytes: Family::default(),
            programs: Vec::new(),
            top_n,
        };
        m.register_host(&mut r);
        m.register_oom_and_self(&mut r);
        Self { registry: r, ..m }
    }

    /// The host ledger and the cgroups.
    fn register_host(&self, r: &mut Registry) {
        r.register(
            "host_memory_bytes",
            "The host memory ledger: MemTotal by part (docs/ledger.md)",
            self.host_memory.clone(),
        );
        r.register(
            "host_memory_growth_bytes_per_second",
            "Growth of each part of the host memory ledger over the last 2 minutes",
            self.host_memory_growth.clone(),
        );
        r.register(
            "tmpfs_used_bytes",
            "Used bytes of the largest tmpfs mounts (shmem by mount)",
            self.tmpfs_bytes.clone(),
        );
        r.register(
            "cgroup_rss_bytes",
            "RSS of the processes in a cgroup, for the top cgroups by RSS",
            self.cgroup_rss.clone(),
        );
        r.register(
            "cgroup_growth_bytes_per_second",
            "Growth of a cgroup's processes' RSS over 10 s, for the top cgroups",
            self.cgroup_growth.clone(),
        );
        r.register(
            "cgroup_limit_bytes",
            "The memcg limit that applies to a cgroup (the smallest on its path), for the top cgroups",
            self.cgroup_limit.clone(),
        );
        r.register(
            "cgroup_processes",
            "Processes in a cgroup, for the top cgroups",
            self.cgroup_processes.clone(),
        );

    }

    /// OOM kills, evidence, and leaktrace's own health.
    fn register_oom_and_self(&self, r: &mut Registry) {
        r.register(
            "oom_kills",
            "OOM kills seen, by the victim's cgroup, unit, container and pod, and the constraint",
            self.oom_kills.clone(),
        );
        r.register(
            "oom_wrong_victim",
            "OOM kills whose victim was not the process that grew the most (docs/verdict.md)",
            self.wrong_victim.clone(),
        );
        r.register(
            "last_oom_kill_timestamp_seconds",
            "Unix time of the last OOM kill seen",
            self.last_kill.clone(),
        );
        r.register(
            "oom_report_seconds",
            "Time spent printing OOM reports (oom_lock held)",
            self.stall_seconds.clone(),
        );
        r.register(
            "oom_stalled_task_seconds",
            "Time other tasks stalled in reclaim around OOMs",
            self.stalled_task_seconds.clone(),
        );
        r.register("evidence_bundles", "Evidence bundles written", self.bundles.clone());
        r.register(
            "lost_events",
            "Events lost or not attributed, by kind (kernel rings and maps, outputs)",
            self.lost.clone(),
        );
        r.register(
            "limit_hits",
            "Times one of leaktrace's own bounds was hit (docs/security.md), by limit",
            self.limit_hits.clone(),
        );
        r.register(
            "build_info",
            "leaktrace's version, the kernel and the data path; always 1",
            self.build_info.clone(),
        );
        r.register(
            "hook_live",
            "1 when the hook for a job is attached, 0 when it is not, by the job's name; jobs the data path does not use are left out",
            self.hook_live.clone(),
        );
        r.register(
            "bpf_run_seconds",
            "Time the kernel ran each leaktrace program (only with --bpf-stats)",
            self.bpf_run_seconds.clone(),
        );
        r.register(
            "bpf_runs",
            "Runs of each leaktrace program (only with --bpf-stats)",
            self.bpf_runs.clone(),
        );
    }


    /// The status line: what is live.
    pub fn status(&self, st: &StatusLine) {
        let kernel = crate::host::facts::kernel_release().unwrap_or_default();
        self.build_info
            .get_or_create(&vec![
                ("version".into(), st.version.into()),
                ("kernel".into(), lv(&kernel)),
                ("data_path".into(), st.data_path.into()),
            ])
            .set(1);
        // Jobs the data path leaves off by design have no series: a 0
        // means a hook that should be attached is not. The label is
        // `hook`, not `job`: Prometheus owns `job` (the scrape job) and
        // renames a target's own `job` to `exported_job`.
        for p in st.hooks.iter().filter(|p| !p.unused) {
            self.hook_live
                .get_or_create(&vec![("hook".into(), p.job.into())])
                .set(p.live.is_some() as i64);
        }
    }

    pub fn sample(&self, s: &crate::model::sample::Sample) {
        for f in [
            &self.cgroup_rss,
            &self.cgroup_growth,
            &self.cgroup_limit,
            &self.cgroup_processes,
        ] {
            f.clear();
        }
        if let Some(l) = &s.ledger {
            self.tmpfs_bytes.clear();
            for p in &l.parts {
                let k = vec![("part".into(), p.name.clone())];
                self.host_memory.get_or_create(&k).set(p.bytes as f64);
                self.host_memory_growth
                    .get_or_create(&k)
                    .set(p.growth_bytes_per_sec);
            }
            for t in &l.tmpfs {
                self.tmpfs_bytes
                    .get_or_create(&vec![("mount".into(), lv(&t.name))])
                    .set(t.bytes as f64);
            }
        }
        for c in s.cgroups.iter().take(self.top_n) {
            let l = who(&c.cgroup, &c.attribution);
            self.cgroup_rss.get_or_create(&l).set(c.rss_bytes as f64);
            self.cgroup_growth.get_or_create(&l).set(c.growth_bytes_per_sec);
            self.cgroup_processes.get_or_create(&l).set(c.processes as f64);
            if let Some(lim) = c.limit_bytes {
                self.cgroup_limit.get_or_create(&l).set(lim as f64);
            }
        }
        let k = &s.kernel.counters;
        // Outputs: samples an output fell behind on, and every write that
        // failed (lines, bundles, incident files, exec.json; losses.rs).
        let sinks: u64 =
            s.kernel.sink_drops.iter().map(|d| d.1).sum::<u64>() + crate::losses::output_write_failures();
        let (_, _, hooks_dropped) = crate::evidence::hook_pool::counts();
        for (kind, v) in [
            ("oom_ring", k.oom_lost),
            ("oom_crit_ring", k.oom_crit_lost),
            ("exits_ring", k.exits_lost),
            ("stacks", k.stacks_lost),
            ("stack_copies_ring", k.stack_copies_lost),
            ("python_stacks", k.py_stacks_lost),
            ("rss_unattributed", k.rss_unattributed),
            ("map_insert_failed", k.insert_failed + k.life_insert_failed),
            ("exits_queue", s.kernel.exits_dropped),
            ("outputs", sinks),
            ("hooks", hooks_dropped),
        ] {
            set_total(&self.lost.get_or_create(&vec![("kind".into(), kind.into())]), v);
        }
        for (name, v) in &s.kernel.limits_hit.0 {
            set_total(
                &self
                    .limit_hits
                    .get_or_create(&vec![("limit".into(), (*name).into())]),
                *v,
            );
        }
        for (id, name) in &self.programs {
            let Some(info) = aya::programs::loaded_programs()
                .filter_map(|p| p.ok())
                .find(|p| p.id() == *id)
            else {
                continue;
            };
            let l = vec![("program".into(), name.clone())];
            let c = self.bpf_run_seconds.get_or_create(&l);
            let secs = info.run_time().as_secs_f64();
            if secs > c.get() {
                c.inc_by(secs - c.get());
            }
            set_total(&self.bpf_runs.get_or_create(&l), info.run_count());
        }
    }

    pub fn incident(&mut self, i: &crate::model::incident::Incident) {
        let (cg, attr) = i
            .victim
            .as_ref()
            .map(|v| (v.cgroup.as_str(), v.attribution.clone()))
            .unwrap_or(("", Attribution::default()));
        let mut l = who(cg, &attr);
        l.push(("constraint".into(), lv(&i.constraint)));
        // A bounded number of label sets: past it, new cgroups count together.
        if !self.oom_sets.contains(&l) {
            if self.oom_sets.len() >= MAX_OOM_LABEL_SETS {
                l = vec![
                    ("cgroup".into(), "_other".into()),
                    ("unit".into(), String::new()),
                    ("container_id".into(), String::new()),
                    ("pod_uid".into(), String::new()),
                    ("constraint".into(), lv(&i.constraint)),
                ];
            } else {
                self.oom_sets.insert(l.clone());
            }
        }
        self.oom_kills.get_or_create(&l).inc();
        if i.wrong_victim() {
            self.wrong_victim.get_or_create(&l[..4].to_vec()).inc();
        }
        self.last_kill.set(i.ts_ms as f64 / 1000.0);
        self.stall_seconds
            .inc_by(i.stall.report_ms.unwrap_or(0.0) / 1000.0);
        self.stalled_task_seconds
            .inc_by(i.stall.stalled_ms_total / 1000.0);
    }

    pub fn bundle(&self) {
        self.bundles.inc();
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = encode(&mut s, &self.registry);
        s
    }
}

/// Feeds the registry from the event stream.
pub struct MetricsSink(pub Arc<std::sync::Mutex<Metrics>>);

impl super::Sink for MetricsSink {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn handle(&mut self, ev: &super::Event) -> anyhow::Result<super::Flow> {
        let Ok(mut m) = self.0.lock() else {
            return Ok(super::Flow::Continue);
        };
        match ev {
            super::Event::Status(s) => m.status(s),
            super::Event::Sample(s) => m.sample(s),
            super::Event::Incident(i) => m.incident(i),
            super::Event::Evidence(e) if e.dir.is_some() => m.bundle(),
            _ => {}
        }
        Ok(super::Flow::Continue)
    }
}

/// What a request gets: the metrics for GET or HEAD of /metrics (a query
/// string is ignored), 404 for anything else, including a request that is
/// not HTTP at all.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Metrics { head_only: bool },
    NotFound,
}

fn route(request: &[u8]) -> Answer {
    let line = request.split(|&b| b == b'\n').next().unwrap_or(b"");
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next().unwrap_or(b""), parts.next().unwrap_or(b""));
    let path = target.split(|&b| b == b'?').next().unwrap_or(b"");
    match (method, path) {
        (b"GET", b"/metrics") => Answer::Metrics { head_only: false },
        (b"HEAD", b"/metrics") => Answer::Metrics { head_only: true },
        _ => Answer::NotFound,
    }
}

/// Reads the request head: up to the blank line, at most 4 KiB.
async fn read_head(sock: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while buf.len() < 4096
        && !buf.windows(4).any(|w| w == b"\r\n\r\n")
        && !buf.windows(2).any(|w| w == b"\n\n")
    {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

async fn answer(
    mut sock: tokio::net::TcpStream,
    metrics: Arc<std::sync::Mutex<Metrics>>,
    asked: Arc<std::sync::atomic::AtomicBool>,
) {
    // A scraper sends its request at once; a client that has sent none
    // after METRICS_HEAD_SECS is only holding a slot.
    let head = Duration::from_secs(crate::limits::METRICS_HEAD_SECS);
    let Ok(Ok(req)) = tokio::time::timeout(head, read_head(&mut sock)).await else {
        crate::limits::METRICS_EVICTED.hit();
        return;
    };
    asked.store(true, std::sync::atomic::Ordering::Relaxed);
    let (status, ctype, body, head_only) = match route(&req) {
        Answer::Metrics { head_only } => {
            let om = metrics.lock().map(|m| m.render()).unwrap_or_default();
            match format::negotiate(&req) {
                format::Format::OpenMetrics => ("200 OK", format::OPENMETRICS, om, head_only),
                format::Format::Text => ("200 OK", format::TEXT, format::to_text(&om), head_only),
            }
        }
        Answer::NotFound => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: leaktrace serves GET /metrics\n".to_string(),
            false,
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    let write = async {
        sock.write_all(&out).await?;
        sock.shutdown().await
    };
    let io = Duration::from_secs(crate::limits::METRICS_IO_SECS);
    if tokio::time::timeout(io, write).await.is_err() {
        crate::limits::METRICS_TIMEOUT.hit();
    }
}

/// One open connection: when it was accepted, whether its request came,
/// and its task (to evict it).
struct Conn {
    id: u64,
    asked: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::AbortHandle,
}

/// The open connections, oldest first (at most METRICS_CONNECTIONS_MAX).
type Conns = Arc<std::sync::Mutex<std::collections::VecDeque<Conn>>>;

/// Removes its connection from the table when the task ends or is aborted.
struct Slot(Conns, u64);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.0.lock() {
            c.retain(|c| c.id != self.1);
        }
    }
}

/// Makes room for a new connection: none is needed below the cap; at the
/// cap, the oldest connection that has not sent its request is closed
/// (idle clients cannot lock a scraper out). False if every connection
/// is busy answering a request.
fn make_room(conns: &Conns) -> bool {
    let Ok(mut c) = conns.lock() else { return false };
    if c.len() < crate::limits::METRICS_CONNECTIONS_MAX {
        return true;
    }
    let Some(i) = c
        .iter()
        .position(|c| !c.asked.load(std::sync::atomic::Ordering::Relaxed))
    else {
        return false;
    };
    if let Some(old) = c.remove(i) {
        old.task.abort();
        crate::limits::METRICS_EVICTED.hit();
    }
    true
}

/// Serves GET /metrics on `addr` until the process exits. At most
/// METRICS_CONNECTIONS_MAX connections are open at once, so a local user
/// with a connection loop can neither use up leaktrace's file descriptors
/// (which would blind its /proc reads) nor its memory. Nor can idle
/// connections lock the scrapers out: a client has METRICS_HEAD_SECS to
/// send its request, and when all slots are taken the oldest client that
/// has sent none is closed for the new one. A further connection while
/// every slot is answering a request is closed at once and counted. A
/// client gets METRICS_IO_SECS to take the answer.
pub async fn serve(addr: SocketAddr, metrics: Arc<std::sync::Mutex<Metrics>>) -> Result<()> {
    if !addr.ip().is_loopback() {
        log::warn!(
            "--metrics {addr} is not a loopback address: whoever can reach it reads the metrics (cgroup, \
             unit and container names) and can hold its connections; see docs/security.md, \"Metrics port\""
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let conns: Conns = Arc::default();
    tokio::spawn(async move {
        let mut next = 0u64;
        loop {
            let sock = match listener.accept().await {
                Ok((sock, _)) => sock,
                Err(_) => {
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if !make_room(&conns) {
                crate::limits::METRICS_CONNECTIONS.hit();
                drop(sock);
                continue;
            }
            next += 1;
            let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (metrics, a, slot) = (metrics.clone(), asked.clone(), Slot(conns.clone(), next));
            let task = tokio::spawn(async move {
                let _slot = slot;
                answer(sock, metrics, a).await;
            });
            if let Ok(mut c) = conns.lock() {
                c.push_back(Conn {
                    id: next,
                    asked,
                    task: task.abort_handle(),
                });
            }
            // Let the new task read its request before the next accept: in
            // a flood the backlog could otherwise evict a scraper whose
            // request is already waiting in its socket.
            tokio::task::yield_now().await;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_and_head_of_metrics_are_answered() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Answer::Metrics { head_only: false }
        );
        assert_eq!(
            route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Answer::Metrics { head_only: false }
        );
        assert_eq!(
            route(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Answer::Metrics { head_only: true }
        );
        for r in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET /metricsx HTTP/1.1\r\n\r\n",
            b"POST /metrics HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01garbage",
            b"",
        ] {
            assert_eq!(route(r), Answer::NotFound, "{r:?}");
        }
    }
}
