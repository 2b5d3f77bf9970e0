//! Reading a recording: each line of events.jsonl parsed as the type that
//! wrote it (the model's `Incident`, and the readers kept next to the
//! evidence, summary and status writers), into what the report keeps.
//! A line that is not such a record is skipped and counted by reason.
use super::*;

use crate::{
    evidence::EvidenceRecord,
    model::incident::Incident,
    sinks::{eventlog::SummaryRecord, StatusRecord},
};

/// One process's RSS (or a memcg's usage) over time: (unix ms, bytes).
#[derive(Clone, Debug, Default)]
pub(super) struct Series {
    pub(super) pid: u64,
    pub(super) comm: String,
    pub(super) points: Vec<(u64, f64)>,
}

/// A process row of a summary, as kept in the recent window.
pub(super) struct Row {
    pub(super) pid: u64,
    pub(super) comm: String,
    pub(super) cgroup: String,
    pub(super) rss: f64,
}

/// An incident as kept: the incident (trimmed to what the report shows),
/// and the summary series of the processes in its scope around the kill.
pub(super) struct Kept {
    pub(super) inc: Incident,
    pub(super) nearby: Vec<Series>,
    /// Its number in the whole recording, in time order (1 is the first),
    /// which a filter keeps.
    pub(super) n: usize,
}

/// Why a line was not used. Every skipped line is counted under one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    /// Not JSON: a line cut by a crash, bytes that are not text.
    NotJson,
    /// JSON, but with no `type` leaktrace writes.
    NoType,
    /// Its `type` is one this version does not write.
    UnknownType,
    /// Not readable as the record its `type` names (a field missing or of
    /// the wrong kind).
    Unreadable(&'static str),
    /// A time before 1970 or after the year 2200.
    BadTime,
    /// Longer than LINE_CAP.
    TooLong,
    /// The rest of a .gz rotation that does not decompress (counted once
    /// per file).
    BadCompressed,
    /// Over the report's memory budget (RETAINED_CAP, MAX_INCIDENTS,
    /// MAX_EVIDENCE): read, but not kept.
    OverBudget,
}

impl Skip {
    pub fn describe(self) -> String {
        match self {
            Skip::NotJson => "not JSON (e.g. a last line cut by a crash)".into(),
            Skip::NoType => "JSON without a leaktrace record type".into(),
            Skip::UnknownType => "a record type this version does not know".into(),
            Skip::Unreadable(k) => format!("not readable as its type ({k})"),
            Skip::BadTime => "a time outside 1970 to 2200".into(),
            Skip::TooLong => format!("longer than {} MiB", LINE_CAP >> 20),
            Skip::BadCompressed => "the rest of a compressed rotation that does not decompress".into(),
            Skip::OverBudget => format!(
                "over the report's memory budget ({} MiB, {MAX_INCIDENTS} incidents, {MAX_EVIDENCE} \
                 evidence events): later records not kept",
                RETAINED_CAP >> 20
            ),
        }
    }
}

/// A line parsed as the record its `type` names.
pub(super) enum Record {
    Incident(Box<Incident>),
    Evidence(EvidenceRecord),
    Summary(SummaryRecord),
    Status(StatusRecord),
    /// A record leaktrace writes that the report does not use.
    Unused,
}

/// Record types leaktrace writes that the report does not read.
const UNUSED_TYPES: [&str; 3] = ["sample", "oom_stall", "doctor"];

/// Parses one line (without its newline) as the type it declares.
pub(super) fn parse_line(raw: &[u8]) -> Result<Record, Skip> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "type")]
        kind: String,
    }
    let text = String::from_utf8_lossy(raw);
    let head: Head = serde_json::from_str(&text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Skip::NoType,
        _ => Skip::NotJson,
    })?;
    fn typed<T: serde::de::DeserializeOwned>(text: &str, kind: &'static str) -> Result<T, Skip> {
        serde_json::from_str(text).map_err(|_| Skip::Unreadable(kind))
    }
    let (rec, ts) = match head.kind.as_str() {
        "oom_kill" => {
            let i: Incident = typed(&text, "oom_kill")?;
            let ts = i.ts_ms;
            (Record::Incident(Box::new(i)), ts)
        }
        "evidence" => {
            let e: EvidenceRecord = typed(&text, "evidence")?;
            let ts = e.ts_ms;
            (Record::Evidence(e), ts)
        }
        "summary" => {
            let s: SummaryRecord = typed(&text, "summary")?;
            let ts = s.ts_ms;
            (Record::Summary(s), ts)
        }
        "status" => {
            let s: StatusRecord = typed(&text, "status")?;
            let ts = s.ts_ms;
            (Record::Status(s), ts)
        }
        k if UNUSED_TYPES.contains(&k) => return Ok(Record::Unused),
        _ => return Err(Skip::UnknownType),
    };
    if ts > TS_MAX {
        return Err(Skip::BadTime);
    }
    Ok(rec)
}

/// What `report` keeps of a recording, read one line at a time: the
/// incidents (trimmed) and evidence events, the runs of the recorder and
/// what they lost, and only the last minutes of summaries, from which each
/// incident takes the series of its scope when it is read. Lines that are
/// not records are skipped and counted, never fatal. Memory is bounded by
/// RETAINED_CAP, not by the length of the recording.
#[derive(Default)]
pub struct Recording {
    pub(super) incidents: Vec<Kept>,
    pub(super) evidence: Vec<EvidenceRecord>,
    pub(super) recent: VecDeque<(u64, Vec<Row>)>,
    pub(super) ts_min: Option<u64>,
    pub(super) ts_max: Option<u64>,
    pub(super) losses: Losses,
    pub lines: u64,
    pub skipped: BTreeMap<Skip, u64>,
    pub files: usize,
    /// Bytes charged for what is kept (an estimate, from the sizes of its
    /// strings and series).
    pub(super) retained: usize,
    /// The host's name and kernel release, from the newest status or
    /// summary that carries them (capped; a recording made before they
    /// were written has none).
    pub(super) host: Option<String>,
    pub(super) kernel: Option<String>,
    /// Incidents in the whole recording, and the filter in words, when
    /// `report` was asked for a part of it.
    pub(super) total_incidents: usize,
    pub(super) filtered: Option<String>,
}

impl Recording {
    /// Takes one line of events.jsonl.
    pub fn add_line(&mut self, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.lines += 1;
        match parse_line(raw) {
            Ok(r) => self.add_record(r),
            Err(why) => self.skip(why),
        }
    }

    pub(super) fn skip(&mut self, why: Skip) {
        *self.skipped.entry(why).or_default() += 1;
    }

    /// Lines skipped for any reason.
    pub fn skipped_lines(&self) -> u64 {
        self.skipped.values().sum()
    }

    fn add_record(&mut self, r: Record) {
        let ts = match &r {
            Record::Incident(i) => i.ts_ms,
            Record::Evidence(e) => e.ts_ms,
            Record::Summary(s) => s.ts_ms,
            Record::Status(s) => s.ts_ms,
            Record::Unused => return,
        };
        self.ts_min = Some(self.ts_min.map_or(ts, |m| m.min(ts)));
        match r {
            Record::Incident(mut i) => {
                trim_incident(&mut i);
                let cost = incident_bytes(&i);
                if self.incidents.len() >= MAX_INCIDENTS || !self.charge(cost) {
                    self.skip(Skip::OverBudget);
                } else {
                    let nearby = self.nearby(&i);
                    self.losses.incident(&i);
                    self.incidents.push(Kept { inc: *i, nearby, n: 0 });
                }
            }
            Record::Evidence(mut e) => {
                trim_evidence(&mut e);
                let cost = evidence_bytes(&e);
                if self.evidence.len() >= MAX_EVIDENCE || !self.charge(cost) {
                    self.skip(Skip::OverBudget);
                } else {
                    self.evidence.push(e);
                }
            }
            Record::Summary(s) => {
                self.losses.summary(&s);
                self.host_facts(s.host.as_deref(), s.kernel_release.as_deref());
                self.add_summary(s);
            }
            Record::Status(s) => {
                self.losses.status(&s);
                self.host_facts(s.host.as_deref(), None);
            }
            Record::Unused => {}
        }
        self.losses.last_ts = Some(ts);
        self.ts_max = Some(self.ts_max.map_or(ts, |m| m.max(ts)));
    }

    /// The newest host name and kernel release a record names.
    fn host_facts(&mut self, host: Option<&str>, kernel: Option<&str>) {
        if let Some(h) = host.filter(|h| !h.is_empty()) {
            self.host = Some(cap_str(h, COMM_CAP));
        }
        if let Some(k) = kernel.filter(|k| !k.is_empty()) {
            self.kernel = Some(cap_str(k, COMM_CAP));
        }
    }

    /// Takes `n` bytes of the budget, if they are left.
    fn charge(&mut self, n: usize) -> bool {
        if self.retained.saturating_add(n) > RETAINED_CAP {
            return false;
        }
        self.retained += n;
        true
    }

    fn add_summary(&mut self, s: SummaryRecord) {
        let ts = s.ts_ms;
        let rows = s
            .processes
            .into_iter()
            .take(SUMMARY_ROWS)
            .map(|p| Row {
                pid: p.pid as u64,
                comm: cap_str(&p.comm, 64),
                cgroup: cap_str(&p.cgroup, 1024),
                rss: p.rss_bytes as f64,
            })
            .collect();
        self.recent.push_back((ts, rows));
        while let Some(f) = self.recent.front() {
            if self.recent.len() > RECENT_SUMMARIES || f.0.saturating_add(RECENT_MS) < ts {
                self.recent.pop_front();
            } else {
                break;
            }
        }
    }

    /// The summary series around an incident's kill of the victim and of
    /// the (at most GROWERS) processes in its scope that grew the most.
    fn nearby(&self, inc: &Incident) -> Vec<Series> {
        let kill = inc.ts_ms;
        let first = |h: &[(u64, u64)]| h.first().map(|p| p.0);
        let start = [first(&inc.victim_history), first(&inc.memcg_history)]
            .into_iter()
            .flatten()
            .fold(kill.saturating_sub(CHART_BACK_MS), u64::min)
            .max(kill.saturating_sub(RECENT_MS));
        let end = kill.saturating_add(5_000);
        let victim = inc.victim.as_ref().map(|v| v.pid as u64);
        let mut by_pid: BTreeMap<u64, Series> = BTreeMap::new();
        for (ts, rows) in self.recent.iter().filter(|r| (start..=end).contains(&r.0)) {
            for r in rows {
                if Some(r.pid) == victim || in_scope(inc, &r.cgroup) {
                    let s = by_pid.entry(r.pid).or_insert_with(|| Series {
                        pid: r.pid,
                        comm: r.comm.clone(),
                        ..Series::default()
                    });
                    s.points.push((*ts, r.rss));
                }
            }
        }
        let (mut mine, mut others): (Vec<Series>, Vec<Series>) =
            by_pid.into_values().partition(|s| Some(s.pid) == victim);
        others.retain(|s| growth(&s.points) > 0.0);
        others.sort_by(|a, b| growth(&b.points).total_cmp(&growth(&a.points)));
        others.truncate(GROWERS);
        mine.extend(others);
        mine
    }

    pub(super) fn finish(&mut self) {
        self.incidents.sort_by_key(|i| i.inc.ts_ms);
        for (n, k) in self.incidents.iter_mut().enumerate() {
            k.n = n + 1;
        }
        self.total_incidents = self.incidents.len();
        self.recent.clear();
        self.losses.finish();
    }

    #[cfg(test)]
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Self {
        let mut r = Self::default();
        for l in lines {
            r.add_line(l.as_bytes());
        }
        r.finish();
        r
    }
}

/// Keeps the newest HISTORY_POINTS of a history, without points after
/// TS_MAX.
fn keep_tail(h: &mut Vec<(u64, u64)>) {
    h.retain(|p| p.0 <= TS_MAX);
    let n = h.len().saturating_sub(HISTORY_POINTS);
    h.drain(..n);
}

fn cap_in_place(s: &mut String, n: usize) {
    if s.len() > n {
        *s = cap_str(s, n);
    }
}

fn cap_opt(s: &mut Option<String>, n: usize) {
    if let Some(s) = s {
        cap_in_place(s, n);
    }
}

/// Drops what `report` never shows (the kernel's report lines, up to
/// thousands; the task dump; where processes were attributed; the memory
/// at the OOM), keeps the
/// newest HISTORY_POINTS of each history, and cuts every string it shows
/// to the bound the writer keeps to (a longer one was not written by
/// leaktrace).
pub(super) fn trim_incident(i: &mut Incident) {
    i.report_lines = Vec::new();
    i.candidates = Vec::new();
    i.after_kill_exits = Vec::new();
    i.stall.stalled_tasks = Vec::new();
    i.stall.recommendations = Vec::new();
    i.stall.consoles = Vec::new();
    i.invoker.attribution = Default::default();
    i.memory_at_oom = None;
    keep_tail(&mut i.victim_history);
    keep_tail(&mut i.memcg_history);
    i.growers.truncate(GROWERS + 1);
    for g in &mut i.growers {
        keep_tail(&mut g.history);
        cap_in_place(&mut g.comm, COMM_CAP);
    }
    cap_in_place(&mut i.summary, TEXT_CAP);
    cap_in_place(&mut i.constraint, COMM_CAP);
    cap_in_place(&mut i.invoker.comm, COMM_CAP);
    cap_opt(&mut i.invoker.gfp_mask, COMM_CAP);
    if let Some(v) = &mut i.victim {
        v.attribution = Default::default();
        cap_in_place(&mut v.comm, COMM_CAP);
        cap_in_place(&mut v.exe, TEXT_CAP);
        cap_in_place(&mut v.cmdline, TEXT_CAP);
        cap_in_place(&mut v.cgroup, TEXT_CAP);
    }
    if let Some(g) = &mut i.top_grower {
        g.attribution = Default::default();
        cap_in_place(&mut g.comm, COMM_CAP);
    }
    if let Some(g) = &mut i.victim_group {
        cap_in_place(&mut g.comm, COMM_CAP);
    }
    cap_opt(&mut i.memcg, TEXT_CAP);
    cap_opt(&mut i.candidates_note, TEXT_CAP);
    cap_opt(&mut i.evidence_dir, TEXT_CAP);
    cap_opt(&mut i.grower_evidence_dir, TEXT_CAP);
    cap_in_place(&mut i.stall.diagnosis, TEXT_CAP);
    cap_in_place(&mut i.stall.console_method, COMM_CAP);
    if let Some(l) = &mut i.host_ledger {
        l.parts = Vec::new();
        l.tmpfs = Vec::new();
        l.slab_caches = Vec::new();
        l.findings.truncate(3);
        for f in &mut l.findings {
            cap_in_place(f, TEXT_CAP);
        }
    }
    if let Some(c) = &mut i.oom_control {
        cap_opt(&mut c.memcg, TEXT_CAP);
        cap_in_place(&mut c.gfp_mask, COMM_CAP);
    }
}

/// The bytes an incident holds, about: the length of its JSON once
/// trimmed, plus its own size. Counted from every field, so a field the
/// model adds later, which trim_incident does not know, is charged too.
fn incident_bytes(i: &Incident) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Serializing a parsed Incident into a counter cannot fail; if it
    // did, the budget is charged in full.
    if serde_json::to_writer(&mut c, i).is_err() {
        return RETAINED_CAP;
    }
    std::mem::size_of::<Incident>() + c.0
}

pub(super) fn trim_evidence(e: &mut EvidenceRecord) {
    cap_in_place(&mut e.comm, COMM_CAP);
    cap_in_place(&mut e.reason, COMM_CAP);
    cap_in_place(&mut e.detail, TEXT_CAP);
    cap_opt(&mut e.dir, TEXT_CAP);
    cap_opt(&mut e.error, TEXT_CAP);
}

fn evidence_bytes(e: &EvidenceRecord) -> usize {
    std::mem::size_of::<EvidenceRecord>()
        + 64
        + e.comm.len()
        + e.reason.len()
        + e.detail.len()
        + e.dir.as_ref().map_or(0, String::len)
        + e.error.as_ref().map_or(0, String::len)
}

/// At most `n` bytes of `s`, cut on a char boundary.
pub(super) fn cap_str(s: &str, n: usize) -> String {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Whether a process in `cgroup` was in the scope of an incident: in its
/// memcg (or below it) for a memcg OOM, anywhere for any other.
pub(super) fn in_scope(inc: &Incident, cgroup: &str) -> bool {
    match (inc.constraint.as_str(), inc.memcg.as_deref()) {
        ("memcg", Some(m)) => {
            let m = m.trim_end_matches('/');
            m.is_empty()
                || cgroup
                    .strip_prefix(m)
                    .is_some_and(|r| r.is_empty() || r.starts_with('/'))
        }
        _ => true,
    }
}

/// Last minus first value of a series.
pub(super) fn growth(p: &[(u64, f64)]) -> f64 {
    match (p.first(), p.last()) {
        (Some(a), Some(b)) => b.1 - a.1,
        _ => 0.0,
    }
}

/// events.jsonl and its rotations (plain or gzip), oldest first, streamed
/// line by line.
pub fn load(dir: &Path) -> Result<Recording> {
    let files = event_files(dir)?;
    if files.is_empty() {
        bail!(
            "{} has no events.jsonl: is it a `leaktrace record --dir`?",
            dir.display()
        );
    }
    let mut rec = Recording::default();
    for f in files {
        let mut rd = open_events(&f)?;
        let mut line = Vec::new();
        loop {
            match next_line(&mut rd, &mut line, LINE_CAP) {
                Ok(Some(true)) => rec.add_line(&line),
                Ok(Some(false)) => {
                    rec.lines += 1;
                    rec.skip(Skip::TooLong);
                }
                Ok(None) => break,
                // A damaged compressed rotation: what came before the
                // damage is kept, the rest of that file is counted.
                Err(e) if f.gzip => {
                    rec.skip(Skip::BadCompressed);
                    log::warn!("{}: {e}; the rest of this file is not read", f.path.display());
                    break;
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", f.path.display())),
            }
        }
        rec.files += 1;
    }
    rec.finish();
    Ok(rec)
}

/// An incident as the report shows it: the model's `Incident`, its
/// evidence event, and the series of its scope.
pub(super) struct IncidentView<'a> {
    /// Its number in the whole recording (1 is the first).
    pub n: usize,
    pub inc: &'a Incident,
    pub evidence: Option<&'a EvidenceRecord>,
    pub(super) nearby: &'a [Series],
}

pub(super) fn incidents(rec: &Recording) -> Vec<IncidentView<'_>> {
    let by_dir: HashMap<&str, &EvidenceRecord> = rec
        .evidence
        .iter()
        .filter_map(|e| Some((e.dir.as_deref()?, e)))
        .collect();
    rec.incidents
        .iter()
        .map(|i| IncidentView {
            n: i.n,
            inc: &i.inc,
            evidence: i.inc.evidence_dir.as_deref().and_then(|d| by_dir.get(d).copied()),
            nearby: &i.nearby,
        })
        .collect()
}
