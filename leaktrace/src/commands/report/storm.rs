//! OOM storms: kills in one memcg (or, for global OOMs, of one command)
//! within a short time become one entry of the report, with their count,
//! span, victims, commands and one verdict for the group, so that 900
//! kills of one pool read as one event and not as 900. Pure: grouped from
//! the incidents.
//!
//! A memcg storm is not split by the victims' comm: a worker killed while
//! its shell was still exec'ing it is named "sh" (seen in
//! tests/tests/report_storm.rs: 7 of 210 kills), and splitting on that
//! made two interleaved entries of one storm. The storm lists its
//! commands with their counts instead.
use super::*;

use crate::model::incident::VictimChoice;

/// A kill joins the storm of its memcg and command when it comes at most
/// this long after the storm's last kill.
pub(super) const STORM_GAP_MS: u64 = 60_000;
/// Fewer kills than this are shown one by one.
pub(super) const STORM_MIN: usize = 3;
/// Victims' pids listed in the text report of one storm (the HTML lists
/// them all, folded).
pub(super) const TEXT_PIDS: usize = 100;

/// One entry of the report: a single incident, or a storm. `members` are
/// indexes into the incidents, in time order.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    pub(super) members: Vec<usize>,
}

impl Entry {
    pub(super) fn is_storm(&self) -> bool {
        self.members.len() >= STORM_MIN
    }
}

/// The key kills of one storm share: the OOM's memcg, or for a global
/// OOM (no memcg) the victim's comm.
fn key(v: &IncidentView) -> (String, String) {
    match &v.inc.memcg {
        Some(m) => (m.clone(), String::new()),
        None => (
            String::new(),
            v.inc.victim.as_ref().map(|x| x.comm.clone()).unwrap_or_default(),
        ),
    }
}

/// The victims' comms of an entry with their counts, most first (ties in
/// name order), at most `max` of them and how many others (raw).
pub(super) fn commands(incs: &[IncidentView], e: &Entry, max: usize) -> String {
    let mut n: BTreeMap<&str, usize> = BTreeMap::new();
    for &m in &e.members {
        *n.entry(incs[m].inc.victim.as_ref().map_or("?", |v| v.comm.as_str())).or_default() += 1;
    }
    let mut v: Vec<(&str, usize)> = n.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut parts: Vec<String> = v.iter().take(max).map(|(c, k)| format!("{k} of {c}")).collect();
    if v.len() > max {
        parts.push(format!("{} other commands", v.len() - max));
    }
    parts.join(", ")
}

/// The incidents (in time order) as entries, in the order of their first
/// kill: a kill joins the open group of its key when it is within
/// STORM_GAP_MS of that group's last kill; groups of fewer than STORM_MIN
/// kills are split back into single incidents.
pub(super) fn entries(incs: &[IncidentView]) -> Vec<Entry> {
    let mut groups: Vec<Entry> = Vec::new();
    let mut open: HashMap<(String, String), usize> = HashMap::new();
    for (k, v) in incs.iter().enumerate() {
        let key = key(v);
        let join = open.get(&key).copied().filter(|&g| {
            let last = groups[g].members.last().map_or(0, |&m| incs[m].inc.ts_ms);
            v.inc.ts_ms.saturating_sub(last) <= STORM_GAP_MS
        });
        match join {
            Some(g) => groups[g].members.push(k),
            None => {
                groups.push(Entry { members: vec![k] });
                open.insert(key, groups.len() - 1);
            }
        }
    }
    let mut out: Vec<Entry> = Vec::with_capacity(groups.len());
    for g in groups {
        if g.is_storm() {
            out.push(g);
        } else {
            out.extend(g.members.into_iter().map(|m| Entry { members: vec![m] }));
        }
    }
    out.sort_by_key(|e| e.members.first().copied());
    out
}

/// How many kills of a group got each answer of the verdict.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Choices {
    pub(super) top_grower: usize,
    pub(super) sibling: usize,
    pub(super) nothing_grew: usize,
    pub(super) wrong: usize,
}

impl Choices {
    pub(super) fn of(incs: &[IncidentView], e: &Entry) -> Choices {
        let mut c = Choices::default();
        for &m in &e.members {
            match incs[m].inc.choice() {
                VictimChoice::TopGrower => c.top_grower += 1,
                VictimChoice::Sibling => c.sibling += 1,
                VictimChoice::NothingGrew => c.nothing_grew += 1,
                VictimChoice::Wrong => c.wrong += 1,
            }
        }
        c
    }

    /// The group's one verdict in words (raw: numbers and fixed words).
    pub(super) fn words(&self) -> String {
        let n = self.top_grower + self.sibling + self.nothing_grew + self.wrong;
        let mut parts = Vec::new();
        if self.top_grower > 0 {
            parts.push(format!("{} killed the process that grew the most", self.top_grower));
        }
        if self.sibling > 0 {
            parts.push(format!(
                "{} killed a sibling doing the same work as the top grower (the choice did not matter)",
                self.sibling
            ));
        }
        if self.nothing_grew > 0 {
            parts.push(format!("{} came when nothing grew notably", self.nothing_grew));
        }
        if self.wrong > 0 {
            parts.push(format!("{} killed a WRONG victim", self.wrong));
        }
        let head = if self.wrong == 0 {
            "yes".to_string()
        } else {
            format!("NO for {} of {n}", self.wrong)
        };
        format!("{head}: of {n} kills, {}", parts.join("; "))
    }
}

/// The first and last kill of an entry, in unix ms.
pub(super) fn span(incs: &[IncidentView], e: &Entry) -> (u64, u64) {
    let ts = |m: &usize| incs[*m].inc.ts_ms;
    (
        e.members.first().map_or(0, ts),
        e.members.last().map_or(0, ts),
    )
}

/// "926 kills in /pool (919 of lt-helper, 7 of sh), from A to B (3 min
/// 12 s)" (raw).
pub(super) fn storm_words(incs: &[IncidentView], e: &Entry) -> String {
    let first = incs[e.members[0]].inc;
    let place = first.memcg.as_deref().unwrap_or("the host (global OOM)");
    let (a, b) = span(incs, e);
    format!(
        "{} kills in {place} ({}), from {} to {} ({})",
        e.members.len(),
        commands(incs, e, 3),
        when(a),
        when(b),
        duration_words(b.saturating_sub(a))
    )
}

/// A span of time for people: "0.4 s", "12 s", "3 min 12 s", "2 h 5 min".
pub(super) fn duration_words(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..10 => format!("{:.1} s", ms as f64 / 1000.0),
        10..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// The victims' pids, in kill order, at most `max` of them and how many
/// more there were.
pub(super) fn pids(incs: &[IncidentView], e: &Entry, max: usize) -> String {
    let mut s: Vec<String> = e
        .members
        .iter()
        .take(max)
        .map(|&m| incs[m].inc.victim.as_ref().map_or("?".into(), |v| v.pid.to_string()))
        .collect();
    if e.members.len() > max {
        s.push(format!("and {} more", e.members.len() - max));
    }
    s.join(" ")
}
