//! Plain text on stdout when it is not a terminal and --json was not
//! given: a table per interval, and one line per evidence bundle and per
//! OOM kill. Every string a process controls goes through `fmt::term`.
use std::{fmt::Write as _, io::Write as _};

use anyhow::{Context, Result};

use super::{Event, Flow, Sink, View};
use crate::{
    fmt::{bytes, rate, term},
    model::sample::{ProcessRow, Sample},
};

pub struct TextSink {
    pub view: View,
    out: std::io::Stdout,
}

impl TextSink {
    pub fn new(view: View) -> Self {
        Self {
            view,
            out: std::io::stdout(),
        }
    }

    fn write(&self, s: &str) -> Result<bool> {
        let mut out = self.out.lock();
        match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e).context("writing to stdout"),
        }
    }
}

impl Sink for TextSink {
    fn name(&self) -> &'static str {
        "text"
    }

    fn handle(&mut self, ev: &Event) -> Result<Flow> {
        let text = match ev {
            Event::Status(_) => return Ok(Flow::Continue),
            Event::Sample(s) => {
                let mut t = String::new();
                render(s, &self.view, &mut t);
                t
            }
            Event::Evidence(e) => format!(
                "EVIDENCE: pid {} ({}): {} ({}) -> {}\n",
                e.pid,
                term(&e.comm),
                e.reason,
                term(&e.detail),
                term(e.dir.as_deref().unwrap_or("no --dir, not written"))
            ),
            Event::Incident(i) => format!(
                "OOM KILL: {}\nOOM STALL: {}\n",
                term(&i.summary),
                term(&i.stall.diagnosis)
            ),
        };
        Ok(if self.write(&text)? {
            Flow::Continue
        } else {
            Flow::Stop
        })
    }
}

fn row_text(p: &ProcessRow, out: &mut String) {
    let _ = writeln!(
        out,
        "{:>7} {:<15} {:<7} {:>13} {:>13} {:>10} {:>10} {:>10} {:>8} {}",
        p.pid,
        term(&p.comm),
        p.trend.as_str(),
        rate(p.growth_bytes_per_sec),
        rate(p.growth_bytes_per_sec_long),
        bytes(p.rss_bytes as f64),
        bytes(p.rss_anon_bytes as f64),
        bytes(p.rss_file_bytes as f64),
        format!("{:.0}", p.faults_per_sec),
        term(&p.cgroup)
    );
}

/// The plain-text table for pipes and logs: at most 25 processes and 5
/// groups of the view.
pub fn render(s: &Sample, view: &View, out: &mut String) {
    let _ = writeln!(
        out,
        "--- {} {} processes ({} data path, pass {:.1} ms)",
        crate::fmt::rfc3339(s.ts_ms),
        s.processes_total,
        s.kernel.data_path,
        s.kernel.pass_ms,
    );
    let _ = writeln!(
        out,
        "{:>7} {:<15} {:<7} {:>13} {:>13} {:>10} {:>10} {:>10} {:>8} CGROUP",
        "PID", "COMM", "TREND", "GROWTH 10s", "GROWTH 60s", "RSS", "ANON", "FILE", "FLT/s"
    );
    for p in view.rows(s).into_iter().take(25) {
        row_text(p, out);
    }
    for f in s.ledger.iter().flat_map(|l| l.findings.iter()) {
        let _ = writeln!(out, "LEDGER: {}", term(f));
    }
    for g in view.groups(s).into_iter().take(5) {
        let _ = writeln!(
            out,
            "group leader {} {} members={} {} growth={} ({}) trend={}",
            g.leader_pid,
            term(&g.comm),
            g.members,
            group_size(g),
            rate(g.growth_bytes_per_sec),
            g.growth_of,
            g.trend.as_str()
        );
    }
}

/// A group's size, labelled: Pss (shared pages once) and USS when every
/// member's is fresh; else the members' RSS summed, said to be a sum
/// (shared pages counted per member), never shown as the group's size.
pub fn group_size(g: &crate::model::sample::GroupRow) -> String {
    match (g.pss_bytes, g.uss_bytes) {
        (Some(p), Some(u)) => format!("pss={} uss={}", bytes(p as f64), bytes(u as f64)),
        _ => format!("rss_sum={} (pss not read yet)", bytes(g.rss_bytes as f64)),
    }
}
