//! Reading a recording: events.jsonl and its rotations, line by line,
//! into what the report keeps (incidents, evidence, recent summaries),
//! and the files of the evidence bundles.
use super::*;

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

/// An incident as kept: the event (without its report lines), and the
/// summary series of the processes in its scope around the kill.
pub(super) struct Kept {
    pub(super) v: Value,
    pub(super) nearby: Vec<Series>,
}

/// What `report` keeps of a recording, read one line at a time: the
/// incidents and evidence events whole (incidents without their kernel
/// report lines), and only the last minutes of summaries, from which each
/// incident takes the series of its scope when it is read. Lines that are
/// not JSON (a torn last line, bytes that are not UTF-8) are skipped and
/// counted, never fatal. Memory is bounded by the number of incidents,
/// not by the length of the recording.
#[derive(Default)]
pub struct Recording {
    pub(super) incidents: Vec<Kept>,
    pub evidence: Vec<Value>,
    pub(super) recent: VecDeque<(u64, Vec<Row>)>,
    pub(super) ts_min: Option<u64>,
    pub(super) ts_max: Option<u64>,
    pub lines: u64,
    pub skipped_lines: u64,
    pub files: usize,
}

impl Recording {
    /// Takes one line of events.jsonl.
    pub fn add_line(&mut self, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.lines += 1;
        let text = String::from_utf8_lossy(raw);
        let Ok(mut v) = serde_json::from_str::<Value>(&text) else {
            self.skipped_lines += 1;
            return;
        };
        if let Some(t) = v["ts_ms"].as_u64() {
            self.ts_min = Some(self.ts_min.map_or(t, |m| m.min(t)));
            self.ts_max = Some(self.ts_max.map_or(t, |m| m.max(t)));
        }
        match v["type"].as_str() {
            Some("oom_kill") => {
                trim_incident(&mut v);
                let nearby = self.nearby(&v);
                self.incidents.push(Kept { v, nearby });
            }
            Some("evidence") => self.evidence.push(v),
            Some("summary") => self.add_summary(&v),
            _ => {}
        }
    }

    fn add_summary(&mut self, v: &Value) {
        let Some(ts) = v["ts_ms"].as_u64() else { return };
        let rows = v["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .take(SUMMARY_ROWS)
            .filter_map(|p| {
                Some(Row {
                    pid: p["pid"].as_u64()?,
                    comm: cap_str(p["comm"].as_str().unwrap_or("?"), 64),
                    cgroup: cap_str(p["cgroup"].as_str().unwrap_or(""), 1024),
                    rss: p["rss_bytes"].as_f64()?,
                })
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
    fn nearby(&self, inc: &Value) -> Vec<Series> {
        let kill = inc["ts_ms"].as_u64().unwrap_or(0);
        let first = |k: &str| {
            inc[k]
                .as_array()
                .and_then(|a| a.first())
                .and_then(|p| p[0].as_u64())
        };
        let start = [first("victim_history"), first("memcg_history")]
            .into_iter()
            .flatten()
            .fold(kill.saturating_sub(CHART_BACK_MS), u64::min)
            .max(kill.saturating_sub(RECENT_MS));
        let end = kill.saturating_add(5_000);
        let victim = inc["victim"]["pid"].as_u64();
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
        self.incidents.sort_by_key(|i| i.v["ts_ms"].as_u64().unwrap_or(0));
        self.recent.clear();
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

/// Drops what `report` never shows (the kernel's report lines, up to
/// thousands) and keeps the newest HISTORY_POINTS of each history.
pub(super) fn trim_incident(v: &mut Value) {
    let Some(o) = v.as_object_mut() else { return };
    o.remove("report_lines");
    let keep_tail = |h: &mut Value| {
        if let Some(a) = h.as_array_mut() {
            let n = a.len().saturating_sub(HISTORY_POINTS);
            a.drain(..n);
        }
    };
    for k in ["victim_history", "memcg_history"] {
        if let Some(h) = o.get_mut(k) {
            keep_tail(h);
        }
    }
    if let Some(gs) = o.get_mut("growers").and_then(Value::as_array_mut) {
        gs.truncate(GROWERS + 1);
        for g in gs {
            if let Some(h) = g.get_mut("history") {
                keep_tail(h);
            }
        }
    }
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
pub(super) fn in_scope(inc: &Value, cgroup: &str) -> bool {
    match (inc["constraint"].as_str(), inc["memcg"].as_str()) {
        (Some("memcg"), Some(m)) => {
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

/// events.jsonl and its rotations, oldest first, streamed line by line.
pub fn load(dir: &Path) -> Result<Recording> {
    let mut files: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = if name == "events.jsonl" {
                0
            } else {
                name.strip_prefix("events.jsonl.")?.parse().ok()?
            };
            Some((n, e.path()))
        })
        .collect();
    if files.is_empty() {
        bail!(
            "{} has no events.jsonl: is it a `leaktrace record --dir`?",
            dir.display()
        );
    }
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut rec = Recording::default();
    for (_, f) in files {
        let file = std::fs::File::open(&f).with_context(|| format!("reading {}", f.display()))?;
        let mut rd = std::io::BufReader::with_capacity(1 << 16, file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut rd)
                .take(LINE_CAP as u64)
                .read_until(b'\n', &mut line)
                .with_context(|| format!("reading {}", f.display()))?;
            if n == 0 {
                break;
            }
            if line.len() >= LINE_CAP && line.last() != Some(&b'\n') {
                // Too long: skip to its end.
                rec.lines += 1;
                rec.skipped_lines += 1;
                let mut rest = Vec::new();
                while rd.read_until(b'\n', &mut rest)? > 0 && rest.last() != Some(&b'\n') {
                    rest.clear();
                }
                continue;
            }
            rec.add_line(&line);
        }
        rec.files += 1;
    }
    rec.finish();
    Ok(rec)
}

/// Where a bundle is: its path as recorded, or, when the recording was
/// moved or copied, the directory of the same name under DIR/evidence.
pub(super) fn bundle_path(rec_dir: &Path, d: &str) -> Option<PathBuf> {
    let p = Path::new(d);
    if p.is_dir() {
        return Some(p.to_path_buf());
    }
    let moved = rec_dir.join("evidence").join(p.file_name()?);
    moved.is_dir().then_some(moved)
}

/// A regular file of a bundle, at most `cap` bytes of it, decoded lossily.
/// Opened without following a symlink and without blocking (a FIFO
/// planted in its place must not hang the report).
pub(super) fn read_bundle_file(bundle: &Path, name: &str, cap: u64) -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(bundle.join(name))
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut buf = Vec::new();
    f.take(cap).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The first stack of a bundle's stacks.txt (its header line and frames):
/// the first Python stack for a CPython process, else the first native one.
pub(super) fn top_stack(bundle: &Path) -> Option<Vec<String>> {
    let text = read_bundle_file(bundle, "stacks.txt", STACKS_CAP)?;
    let first = if text.contains("\n== Python stack 1:") {
        "== Python stack 1"
    } else {
        "== stack 1"
    };
    let mut lines = text.lines().skip_while(|l| !l.starts_with(first));
    let head = lines.next()?.to_string();
    let mut v = vec![head];
    v.extend(
        lines
            .take_while(|l| !l.is_empty() && !l.starts_with("=="))
            .take(8)
            .map(|l| l.trim().to_string()),
    );
    Some(v)
}

/// An incident line as the report shows it: the JSON as written (not
/// the model's `Incident`: old or hand-written lines are shown with what
/// they have), its evidence event, and the series of its scope.
pub(super) struct IncidentView<'a> {
    pub v: &'a Value,
    pub evidence: Option<&'a Value>,
    pub(super) nearby: &'a [Series],
}

pub(super) fn incidents(rec: &Recording) -> Vec<IncidentView<'_>> {
    let by_dir: HashMap<&str, &Value> = rec
        .evidence
        .iter()
        .filter_map(|e| Some((e["dir"].as_str()?, e)))
        .collect();
    rec.incidents
        .iter()
        .map(|i| IncidentView {
            v: &i.v,
            evidence: i.v["evidence_dir"].as_str().and_then(|d| by_dir.get(d).copied()),
            nearby: &i.nearby,
        })
        .collect()
}
