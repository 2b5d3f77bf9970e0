//! Which part of a recording a report shows: a time window (an RFC 3339
//! time, or a duration before the recording's end), a cgroup, a unit, a
//! pid, or one incident by its number. Pure: parsed from the flags,
//! applied to what `load` kept.
use super::*;

use crate::{evidence::EvidenceRecord, model::incident::Incident};

/// A `--since`/`--until` value: a time, or a duration back from the end
/// of the recording (`10m`: ten minutes before its newest record).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimeArg {
    At(u64),
    BeforeEnd(u64),
}

impl TimeArg {
    /// The unix ms it names in a recording whose newest record is `end`.
    pub(super) fn resolve(self, end: u64) -> u64 {
        match self {
            TimeArg::At(t) => t,
            TimeArg::BeforeEnd(d) => end.saturating_sub(d),
        }
    }
}

/// Parses `--since`/`--until`: RFC 3339 (`2026-12-05T14:00:00Z`, a
/// fraction and an offset such as `+01:00` allowed, a space for the `T`)
/// or a duration (`30s`, `10m`, `2h`).
pub fn time_arg(s: &str) -> Result<TimeArg, String> {
    let t = s.trim();
    if let Ok(secs) = crate::units::secs(t) {
        return Ok(TimeArg::BeforeEnd((secs * 1000.0) as u64));
    }
    rfc3339_ms(t).map(TimeArg::At).ok_or_else(|| {
        format!(
            "'{s}' is neither an RFC 3339 time (2026-12-05T14:00:00Z) nor a duration before the \
             recording's end (10m, 1h)"
        )
    })
}

/// An RFC 3339 date-time as unix ms (None when it is not one, or before
/// 1970).
pub(super) fn rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let p = s.get(r)?;
        p.bytes().all(|c| c.is_ascii_digit()).then(|| p.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0i64;
    if let Some(f) = rest.strip_prefix('.') {
        let n = f.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let digits = &f[..n.min(3)];
        ms = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
        rest = &f[n..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let v = num(s.len() - 5..s.len() - 3)? * 60 + num(s.len() - 2..s.len())?;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let t = ((days * 86400 + h * 3600 + mi * 60 + sec - offset_min * 60) * 1000) + ms;
    u64::try_from(t).ok()
}

/// What the flags ask to see.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub since: Option<TimeArg>,
    pub until: Option<TimeArg>,
    /// A cgroup path: this cgroup and those below it.
    pub cgroup: Option<String>,
    /// A systemd unit, as attribution names it from the cgroup path.
    pub unit: Option<String>,
    /// A victim, invoker or top grower.
    pub pid: Option<u32>,
    /// One incident, by its number in the whole recording (1 is the first).
    pub incident: Option<usize>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.since.is_none()
            && self.until.is_none()
            && self.cgroup.is_none()
            && self.unit.is_none()
            && self.pid.is_none()
            && self.incident.is_none()
    }

    /// The time window in unix ms, for a recording ending at `end`.
    pub(super) fn window(&self, end: u64) -> (u64, u64) {
        (
            self.since.map_or(0, |t| t.resolve(end)),
            self.until.map_or(u64::MAX, |t| t.resolve(end)),
        )
    }

    /// Whether the incident numbered `n` (from 1) is shown.
    pub(super) fn incident(&self, n: usize, i: &Incident, (from, to): (u64, u64)) -> bool {
        let cgroups = [i.memcg.as_deref(), i.victim.as_ref().map(|v| v.cgroup.as_str())];
        self.incident.is_none_or(|k| k == n)
            && (from..=to).contains(&i.ts_ms)
            && self.cgroup.as_deref().is_none_or(|c| cgroups.iter().flatten().any(|g| under(g, c)))
            && self.unit.as_deref().is_none_or(|u| {
                cgroups
                    .iter()
                    .flatten()
                    .any(|g| crate::host::attribution::attribute(g).unit.as_deref() == Some(u))
            })
            && self.pid.is_none_or(|p| {
                i.victim.as_ref().is_some_and(|v| v.pid == p)
                    || i.invoker.pid == p
                    || i.top_grower.as_ref().is_some_and(|g| g.pid == p)
            })
    }

    /// Whether an evidence event is shown: in the window, of the pid when
    /// one is asked for. Bundles carry no cgroup in their event, so a
    /// cgroup, unit or incident filter keeps only those the shown
    /// incidents link to (decided by the caller).
    pub(super) fn evidence(&self, e: &EvidenceRecord, (from, to): (u64, u64)) -> bool {
        (from..=to).contains(&e.ts_ms) && self.pid.is_none_or(|p| e.pid == p)
    }

    /// The filter in words, for the head of the report (raw: escape it).
    pub(super) fn describe(&self, end: u64) -> String {
        let mut w = Vec::new();
        let (from, to) = self.window(end);
        if self.since.is_some() {
            w.push(format!("since {}", when(from)));
        }
        if self.until.is_some() {
            w.push(format!("until {}", when(to)));
        }
        if let Some(c) = &self.cgroup {
            w.push(format!("cgroup {c}"));
        }
        if let Some(u) = &self.unit {
            w.push(format!("unit {u}"));
        }
        if let Some(p) = self.pid {
            w.push(format!("pid {p}"));
        }
        if let Some(n) = self.incident {
            w.push(format!("incident {n}"));
        }
        w.join(", ")
    }
}

/// `cgroup` is `prefix` or below it.
fn under(cgroup: &str, prefix: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    p.is_empty()
        || cgroup
            .strip_prefix(p)
            .is_some_and(|r| r.is_empty() || r.starts_with('/'))
}

/// Keeps of `rec` what `f` asks for: the incidents it selects (keeping
/// their numbers in the whole recording), and the evidence events in its
/// window; with a cgroup, unit or incident filter, only the bundles that
/// the kept incidents link to.
pub(super) fn apply(rec: &mut Recording, f: &Filter) {
    if f.is_empty() {
        return;
    }
    let end = rec.ts_max.unwrap_or(0);
    let win = f.window(end);
    rec.incidents.retain(|k| f.incident(k.n, &k.inc, win));
    let by_place = f.cgroup.is_some() || f.unit.is_some() || f.incident.is_some();
    let linked: std::collections::HashSet<String> = rec
        .incidents
        .iter()
        .flat_map(|k| [k.inc.evidence_dir.clone(), k.inc.grower_evidence_dir.clone()])
        .flatten()
        .collect();
    rec.evidence.retain(|e| {
        f.evidence(e, win) && (!by_place || e.dir.as_ref().is_some_and(|d| linked.contains(d)))
    });
    rec.filtered = Some(f.describe(end));
}
