//! `--json`: one JSON object per line on stdout. JSON escapes every
//! control character, so hostile strings are safe here as they are.
use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{Event, Flow, Sink, View};
use crate::model::sample::{GroupRow, KernelStatus, ProcessRow};

pub struct JsonSink {
    pub view: View,
    out: std::io::Stdout,
}

impl JsonSink {
    pub fn new(view: View) -> Self {
        Self {
            view,
            out: std::io::stdout(),
        }
    }
}

/// A sample as `--json` prints it: the rows of the view, and how many
/// processes there were in all.
#[derive(Serialize, schemars::JsonSchema)]
pub struct SampleOut<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ms: u64,
    pub interval_s: f64,
    pub processes_total: usize,
    pub processes: Vec<&'a ProcessRow>,
    pub groups: Vec<&'a GroupRow>,
    pub cgroups: &'a [crate::model::sample::CgroupRow],
    pub kernel: &'a KernelStatus,
    /// The host memory ledger (docs/ledger.md); null until the first reading.
    pub ledger: Option<&'a crate::model::ledger::Ledger>,
}

/// Writes one line; Ok(false) when stdout has been closed (`| head`).
pub fn write_line<T: Serialize>(out: &std::io::Stdout, v: &T) -> Result<bool> {
    let mut out = out.lock();
    let r = crate::fmt::json_to_writer(&mut out, v)
        .map_err(std::io::Error::from)
        .and_then(|_| writeln!(out))
        .and_then(|_| out.flush());
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

impl Sink for JsonSink {
    fn name(&self) -> &'static str {
        "json"
    }

    fn handle(&mut self, ev: &Event) -> Result<Flow> {
        let ok = match ev {
            Event::Status(s) => write_line(&self.out, s.as_ref())?,
            Event::Sample(s) => write_line(
                &self.out,
                &SampleOut {
                    kind: "sample",
                    ts_ms: s.ts_ms,
                    interval_s: s.interval_s,
                    processes_total: s.processes_total,
                    processes: self.view.rows(s),
                    groups: self.view.groups(s),
                    cgroups: &s.cgroups,
                    kernel: &s.kernel,
                    ledger: s.ledger.as_ref(),
                },
            )?,
            Event::Evidence(e) => write_line(&self.out, e.as_ref())?,
            Event::Incident(i) => {
                write_line(&self.out, i.as_ref())?
                    && match i.stall_line() {
                        Some(l) => write_line(&self.out, &l)?,
                        None => true,
                    }
            }
        };
        Ok(if ok { Flow::Continue } else { Flow::Stop })
    }
}
