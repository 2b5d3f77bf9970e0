//! Prometheus text metrics for `record --metrics ADDR`. Per-process series
//! only for the top N processes by growth, rebuilt every sample, so the
//! number of series stays bounded whatever the host runs.
use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context, Result};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use std::sync::atomic::AtomicU64;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    rss: Family<Labels, Gauge<f64, AtomicU64>>,
    growth: Family<Labels, Gauge<f64, AtomicU64>>,
    oom_kills: Family<Labels, Counter>,
    stall_seconds: Counter<f64, AtomicU64>,
    stalled_task_seconds: Counter<f64, AtomicU64>,
    bundles: Counter,
    dropped: Family<Labels, Gauge<f64, AtomicU64>>,
    pub top_n: usize,
}

impl Metrics {
    pub fn new(top_n: usize) -> Self {
        let mut registry = Registry::with_prefix("leaktrace");
        let rss = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let growth = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let oom_kills = Family::<Labels, Counter>::default();
        let stall_seconds = Counter::<f64, AtomicU64>::default();
        let stalled_task_seconds = Counter::<f64, AtomicU64>::default();
        let bundles = Counter::default();
        let dropped = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "process_rss_bytes",
            "RSS of the top growing processes",
            rss.clone(),
        );
        registry.register(
            "process_growth_bytes_per_second",
            "RSS growth over the short window, top growing processes",
            growth.clone(),
        );
        registry.register("oom_kills", "OOM kills seen, by constraint", oom_kills.clone());
        registry.register(
            "oom_report_seconds",
            "Time spent printing OOM reports (oom_lock held)",
            stall_seconds.clone(),
        );
        registry.register(
            "oom_stalled_task_seconds",
            "Time other tasks stalled in reclaim around OOMs",
            stalled_task_seconds.clone(),
        );
        registry.register("evidence_bundles", "Evidence bundles written", bundles.clone());
        registry.register(
            "dropped_events",
            "Events lost or not attributed, by kind",
            dropped.clone(),
        );
        Self {
            registry,
            rss,
            growth,
            oom_kills,
            stall_seconds,
            stalled_task_seconds,
            bundles,
            dropped,
            top_n,
        }
    }

    pub fn sample(&self, s: &crate::tracker::Sample, dropped_lines: u64) {
        self.rss.clear();
        self.growth.clear();
        for p in s.processes.iter().take(self.top_n) {
            let l: Labels = vec![("pid".into(), p.pid.to_string()), ("comm".into(), p.comm.clone())];
            self.rss.get_or_create(&l).set(p.rss_bytes as f64);
            self.growth.get_or_create(&l).set(p.growth_bytes_per_sec);
        }
        let k = &s.kernel.counters;
        for (kind, v) in [
            ("oom_ring_buffer", k.oom_lost),
            ("rss_unattributed", k.rss_unattributed),
            ("map_insert_failed", k.insert_failed),
            ("event_log_lines", dropped_lines),
        ] {
            self.dropped
                .get_or_create(&vec![("kind".into(), kind.into())])
                .set(v as f64);
        }
    }

    pub fn incident(&self, i: &crate::oom::Incident) {
        self.oom_kills
            .get_or_create(&vec![("constraint".into(), i.constraint.clone())])
            .inc();
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

/// Serves GET /metrics (any path) on `addr` until the process exits.
pub async fn serve(addr: SocketAddr, metrics: Arc<std::sync::Mutex<Metrics>>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                // EMFILE and friends: back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), sock.read(&mut buf)).await;
                let body = metrics.lock().map(|m| m.render()).unwrap_or_default();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(())
}
