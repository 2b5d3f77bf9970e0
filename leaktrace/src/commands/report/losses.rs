//! What a recording says it lost: the loss counters of its summaries (per
//! run of the recorder: they count from each start), the incidents that
//! were cut short, and the restarts of the recorder (a status line after
//! the first), with the gap before each.
use super::*;

use crate::{
    model::incident::Incident,
    sinks::{eventlog::SummaryRecord, StatusRecord},
};

/// Loss counters of one run, or summed over runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct RunLosses {
    pub(super) dropped_lines: u64,
    pub(super) oom_lost: u64,
    pub(super) oom_crit_lost: u64,
    pub(super) exits_lost: u64,
    pub(super) stacks_lost: u64,
    pub(super) stack_copies_lost: u64,
    pub(super) py_stacks_lost: u64,
    pub(super) exits_dropped: u64,
    pub(super) linger_dropped: u64,
    pub(super) sink_drops: u64,
    /// Hits of leaktrace's own bounds, by limit (at most MAX_LIMITS names).
    pub(super) limits: std::collections::BTreeMap<String, u64>,
}

/// Limit names kept from a recording (limits.rs has about 30).
const MAX_LIMITS: usize = 64;

impl RunLosses {
    fn fields(&mut self) -> [(&mut u64, &'static str); 10] {
        [
            (
                &mut self.dropped_lines,
                "lines the event log could not write (dropped_lines)",
            ),
            (
                &mut self.oom_lost,
                "OOM report lines lost in the kernel ring (oom_lost)",
            ),
            (
                &mut self.oom_crit_lost,
                "OOM kill/victim events lost in the kernel ring (oom_crit_lost)",
            ),
            (
                &mut self.exits_lost,
                "exit records lost in the kernel ring (exits_lost)",
            ),
            (&mut self.stacks_lost, "fault stacks lost (stacks_lost)"),
            (
                &mut self.stack_copies_lost,
                "user stack copies lost (stack_copies_lost)",
            ),
            (&mut self.py_stacks_lost, "Python stacks lost (py_stacks_lost)"),
            (
                &mut self.exits_dropped,
                "exit records dropped at the queue (exits_dropped)",
            ),
            (
                &mut self.linger_dropped,
                "exited processes forgotten at the cap (linger_dropped)",
            ),
            (
                &mut self.sink_drops,
                "events an output fell behind on (sink_drops)",
            ),
        ]
    }

    /// Each counter the larger of the two (the counters only rise in a run).
    fn max_with(&mut self, s: &SummaryRecord) {
        let k = &s.kernel;
        let sink: u64 = k.sink_drops.iter().fold(0, |a, d| a.saturating_add(d.1));
        let new = [
            s.dropped_lines,
            k.oom_lost,
            k.oom_crit_lost,
            k.exits_lost,
            k.stacks_lost,
            k.stack_copies_lost,
            k.py_stacks_lost,
            k.exits_dropped,
            k.linger_dropped,
            sink,
        ];
        for ((f, _), n) in self.fields().into_iter().zip(new) {
            *f = (*f).max(n);
        }
        // A name is a limit's (limits.rs: [a-z0-9_]); anything else in a
        // tampered file is not shown.
        let names = k
            .limits_hit
            .iter()
            .filter(|(n, _)| n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        for (name, n) in names {
            if self.limits.len() < MAX_LIMITS || self.limits.contains_key(name) {
                let e = self.limits.entry(cap_str(name, 64)).or_default();
                *e = (*e).max(*n);
            }
        }
    }

    fn add(&mut self, o: &RunLosses) {
        let mut o = o.clone();
        for ((f, _), (n, _)) in self.fields().into_iter().zip(o.fields()) {
            *f = f.saturating_add(*n);
        }
        for (name, n) in std::mem::take(&mut o.limits) {
            if self.limits.len() < MAX_LIMITS || self.limits.contains_key(&name) {
                let e = self.limits.entry(name).or_default();
                *e = e.saturating_add(n);
            }
        }
    }

    /// "N what" for each counter above zero.
    pub(super) fn lines(&self) -> Vec<String> {
        let mut me = self.clone();
        let mut v: Vec<String> = me
            .fields()
            .into_iter()
            .filter(|(n, _)| **n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        for (name, n) in self.limits.iter().filter(|(_, n)| **n > 0) {
            v.push(format!("{n} hit(s) of the limit {name} (limits_hit; docs/security.md)"));
        }
        v
    }
}

/// The recorder started again: a status line after the first.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Restart {
    /// The newest record before it, if any: nothing was recorded between.
    pub(super) from: Option<u64>,
    pub(super) at: u64,
    /// Its boot id differs from the run before (the host rebooted).
    pub(super) new_boot: bool,
    /// OOM kills no recorder saw, by the kernel's count since boot (same
    /// boot, both counts known).
    pub(super) missed_kills: Option<u64>,
}

#[derive(Debug, Default)]
pub(super) struct Losses {
    cur: RunLosses,
    /// Summed over the runs (after finish()).
    pub(super) total: RunLosses,
    pub(super) runs: u64,
    pub(super) restarts: Vec<Restart>,
    /// When a summary's loss counters rose, and which (at most
    /// MAX_RESTARTS; the later ones are in the totals only): marks on the
    /// timeline.
    pub(super) rises: Vec<(u64, String)>,
    /// Restarts beyond MAX_RESTARTS: counted only.
    pub(super) restarts_not_kept: u64,
    boot: Option<String>,
    /// The time of the newest record read so far.
    pub(super) last_ts: Option<u64>,
    /// The kernel's OOM kill count at the newest summary or status line,
    /// and the incidents recorded since.
    kills_seen: Option<u64>,
    incidents_since: u64,
    pub(super) lost_events: u64,
    pub(super) closed_early: u64,
    pub(super) incomplete_reports: u64,
    pub(super) report_lines_dropped: u64,
}

impl Losses {
    pub(super) fn summary(&mut self, s: &SummaryRecord) {
        let before = self.cur.clone();
        self.cur.max_with(s);
        if self.cur != before && self.rises.len() < MAX_RESTARTS {
            let mut d = self.cur.clone();
            let mut b = before;
            for ((n, _), (m, _)) in d.fields().into_iter().zip(b.fields()) {
                *n = n.saturating_sub(*m);
            }
            d.limits.retain(|k, v| {
                *v = v.saturating_sub(b.limits.get(k).copied().unwrap_or(0));
                *v > 0
            });
            self.rises.push((s.ts_ms, d.lines().join("; ")));
        }
        if s.oom_kills_since_boot.is_some() {
            (self.kills_seen, self.incidents_since) = (s.oom_kills_since_boot, 0);
        }
    }

    pub(super) fn status(&mut self, s: &StatusRecord) {
        self.runs += 1;
        let boot = s.boot_id.as_deref().map(|b| cap_str(b, 64));
        if self.runs > 1 {
            let new_boot = boot.is_some() && self.boot.is_some() && boot != self.boot;
            // Kills since the last count, less those the old run recorded.
            let missed_kills = match (new_boot, self.kills_seen, s.oom_kills_since_boot) {
                (false, Some(a), Some(b)) => Some(b.saturating_sub(a).saturating_sub(self.incidents_since)),
                _ => None,
            };
            if self.restarts.len() < MAX_RESTARTS {
                self.restarts.push(Restart {
                    from: self.last_ts,
                    at: s.ts_ms,
                    new_boot,
                    missed_kills,
                });
            } else {
                self.restarts_not_kept += 1;
            }
        }
        self.boot = boot;
        (self.kills_seen, self.incidents_since) = (s.oom_kills_since_boot, 0);
        let cur = std::mem::take(&mut self.cur);
        self.total.add(&cur);
    }

    pub(super) fn incident(&mut self, i: &Incident) {
        self.incidents_since += 1;
        self.lost_events = self.lost_events.saturating_add(i.lost_events);
        self.closed_early += u64::from(i.closed_early);
        self.incomplete_reports += u64::from(!i.report_complete);
        self.report_lines_dropped = self
            .report_lines_dropped
            .saturating_add(i.report_lines_dropped as u64);
    }

    pub(super) fn finish(&mut self) {
        let cur = std::mem::take(&mut self.cur);
        self.total.add(&cur);
    }

    /// Every loss in words, for the text and the page (raw: numbers and
    /// fixed words only).
    pub(super) fn lines(&self) -> Vec<String> {
        let mut v = self.total.lines();
        for (n, what) in [
            (
                self.lost_events,
                "kernel events lost while incidents were assembled (lost_events)",
            ),
            (
                self.closed_early,
                "incident(s) closed early, before they were complete (closed_early)",
            ),
            (
                self.incomplete_reports,
                "incident(s) whose kernel report was not captured whole",
            ),
            (
                self.report_lines_dropped,
                "kernel report lines not kept (report_lines_dropped)",
            ),
        ] {
            if n > 0 {
                v.push(format!("{n} {what}"));
            }
        }
        let restarts = self.restarts.len() as u64 + self.restarts_not_kept;
        if restarts > 0 {
            let boots = self.restarts.iter().filter(|r| r.new_boot).count();
            v.push(format!(
                "the recorder started {restarts} more time(s) ({boots} after a reboot): nothing was \
                 recorded in the gaps"
            ));
            let missed: u64 = self.restarts.iter().filter_map(|r| r.missed_kills).sum();
            if missed > 0 {
                v.push(format!(
                    "{missed} OOM kill(s) happened while no recorder ran (the kernel's count since boot, \
                     /proc/vmstat oom_kill)"
                ));
            }
        }
        v
    }
}
