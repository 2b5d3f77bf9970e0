//! `leaktrace report DIR`: a recording turned into something a person
//! reads after the fact: incidents in time order as text, or one
//! self-contained HTML page (static SVG and CSS, no script): a timeline of
//! the incidents, and for each one a chart of the victim, the top growers
//! and the memcg against its limit, and a flame graph of the fault stacks
//! of its evidence bundle. docs/report.md describes the page.
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fmt::Write as _,
    io::{BufRead, Read},
    path::{Path, PathBuf},
};

use crate::fmt::{term, when};

use anyhow::{bail, Context, Result};
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The directory given to `leaktrace record --dir`.
    pub dir: PathBuf,
    /// Write one self-contained HTML page (timeline, charts, flame graphs)
    /// here. Then nothing goes to stdout unless --text is given.
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
    /// With --html: print the text report on stdout as well (without
    /// --html it always is).
    #[arg(long)]
    pub text: bool,
    /// Print the bundles' stacks symbolized on this machine from their
    /// stacks.raw.json (build-ids and file offsets): for bundles recorded
    /// on another machine. A binary is used only if its build-id matches;
    /// DIR may also be one bundle. Nothing else is printed.
    #[arg(long)]
    pub symbolize: bool,
    /// With --symbolize: also look for debug files under
    /// DIR/.build-id/xx/yyyy.debug (repeatable; /usr/lib/debug always).
    #[arg(long = "debug-dir", value_name = "DIR")]
    pub debug_dirs: Vec<PathBuf>,
}

/// Longest line `report` reads (an incident with a full task dump is about
/// 1 MiB); a longer one is skipped and counted.
const LINE_CAP: usize = 32 << 20;
/// How far back from the newest summary the summaries are kept, to draw
/// the growers of an incident when the incident does not carry them.
const RECENT_MS: u64 = 10 * 60 * 1000;
/// And at most this many summaries (0.5 s apart: 10 minutes).
const RECENT_SUMMARIES: usize = 1200;
/// Rows kept of one summary (record writes the top 10).
const SUMMARY_ROWS: usize = 10;
/// Points kept of one history in an incident (the newest).
const HISTORY_POINTS: usize = 2048;
/// A chart reaches back this far before the kill at least.
const CHART_BACK_MS: u64 = 60_000;
/// Growers drawn besides the victim.
const GROWERS: usize = 3;
/// Bundles not tied to an incident that get a flame graph (the newest).
const LOOSE_FLAMES: usize = 20;
/// Bytes read of a bundle's stacks file.
const STACKS_CAP: u64 = 8 << 20;

/// One process's RSS (or a memcg's usage) over time: (unix ms, bytes).
#[derive(Clone, Debug, Default)]
struct Series {
    pid: u64,
    comm: String,
    points: Vec<(u64, f64)>,
}

/// A process row of a summary, as kept in the recent window.
struct Row {
    pid: u64,
    comm: String,
    cgroup: String,
    rss: f64,
}

/// An incident as kept: the event (without its report lines), and the
/// summary series of the processes in its scope around the kill.
struct Kept {
    v: Value,
    nearby: Vec<Series>,
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
    incidents: Vec<Kept>,
    pub evidence: Vec<Value>,
    recent: VecDeque<(u64, Vec<Row>)>,
    ts_min: Option<u64>,
    ts_max: Option<u64>,
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

    fn finish(&mut self) {
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
fn trim_incident(v: &mut Value) {
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
fn cap_str(s: &str, n: usize) -> String {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Whether a process in `cgroup` was in the scope of an incident: in its
/// memcg (or below it) for a memcg OOM, anywhere for any other.
fn in_scope(inc: &Value, cgroup: &str) -> bool {
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
fn growth(p: &[(u64, f64)]) -> f64 {
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

fn bytes(v: &Value) -> String {
    v.as_f64().map(crate::fmt::bytes).unwrap_or_else(|| "?".into())
}

/// A number field as text: never a string from the log, so it needs no
/// escaping ("?" when it is missing or not a number).
fn num(v: &Value) -> String {
    match (v.as_u64(), v.as_i64(), v.as_f64()) {
        (Some(n), _, _) => n.to_string(),
        (_, Some(n), _) => n.to_string(),
        (_, _, Some(f)) => format!("{f}"),
        _ => "?".into(),
    }
}

/// Where a bundle is: its path as recorded, or, when the recording was
/// moved or copied, the directory of the same name under DIR/evidence.
fn bundle_path(rec_dir: &Path, d: &str) -> Option<PathBuf> {
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
fn read_bundle_file(bundle: &Path, name: &str, cap: u64) -> Option<String> {
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

/// The first stack of a bundle's stacks.txt (its header line and frames).
fn top_stack(bundle: &Path) -> Option<Vec<String>> {
    let text = read_bundle_file(bundle, "stacks.txt", STACKS_CAP)?;
    let mut lines = text.lines().skip_while(|l| !l.starts_with("== stack 1"));
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

pub struct Incident<'a> {
    pub v: &'a Value,
    pub evidence: Option<&'a Value>,
    nearby: &'a [Series],
}

fn incidents(rec: &Recording) -> Vec<Incident<'_>> {
    let by_dir: HashMap<&str, &Value> = rec
        .evidence
        .iter()
        .filter_map(|e| Some((e["dir"].as_str()?, e)))
        .collect();
    rec.incidents
        .iter()
        .map(|i| Incident {
            v: &i.v,
            evidence: i.v["evidence_dir"].as_str().and_then(|d| by_dir.get(d).copied()),
            nearby: &i.nearby,
        })
        .collect()
}

/// A string field of an event, escaped for a terminal or a text file.
fn t<'a>(v: &'a Value, default: &'a str) -> std::borrow::Cow<'a, str> {
    term(v.as_str().unwrap_or(default))
}

pub fn render_text(dir: &Path, rec: &Recording) -> String {
    let inc = incidents(rec);
    let mut s = format!(
        "leaktrace report for {}: {} OOM incident(s), {} evidence event(s)",
        term(&dir.display().to_string()),
        inc.len(),
        rec.evidence.len()
    );
    if let (Some(a), Some(b)) = (rec.ts_min, rec.ts_max) {
        let _ = write!(s, ", recorded {} to {}", when(a), when(b));
    }
    s.push('\n');
    if rec.skipped_lines > 0 {
        let _ = writeln!(
            s,
            "({} of {} lines skipped: not JSON, e.g. a last line cut by a crash)",
            rec.skipped_lines, rec.lines
        );
    }
    for (n, i) in inc.iter().enumerate() {
        text_incident(&mut s, dir, n + 1, i);
    }
    s
}

fn text_incident(s: &mut String, dir: &Path, n: usize, i: &Incident) {
    let v = i.v;
    let _ = writeln!(s, "\n== incident {n}: {}", when(v["ts_ms"].as_u64().unwrap_or(0)));
    let _ = writeln!(s, "   {}", t(&v["summary"], ""));
    let inv = &v["invoker"];
    let _ = writeln!(
        s,
        "   invoker: pid {} ({}), gfp_mask {}, order {}",
        num(&inv["pid"]),
        t(&inv["comm"], "?"),
        t(&inv["gfp_mask"], "?"),
        num(&inv["order"])
    );
    let vic = &v["victim"];
    if vic.is_object() {
        let _ = writeln!(
            s,
            "   victim:  pid {} ({}) `{}` in {}; anon {}, file {}, shmem {}, oom_score_adj {}",
            num(&vic["pid"]),
            t(&vic["comm"], "?"),
            t(&vic["cmdline"], ""),
            t(&vic["cgroup"], "?"),
            bytes(&vic["rss_anon_bytes"]),
            bytes(&vic["rss_file_bytes"]),
            bytes(&vic["rss_shmem_bytes"]),
            num(&vic["oom_score_adj"])
        );
    }
    if let Some(g) = group_line(&v["victim_group"]) {
        let _ = writeln!(s, "   victim's group: {}", term(&g));
    }
    if let Some(m) = v["memcg"].as_str() {
        let _ = writeln!(
            s,
            "   memcg:   {}: usage {} of limit {}",
            term(m),
            bytes(&v["memcg_usage_bytes"]),
            bytes(&v["memcg_limit_bytes"])
        );
    }
    let _ = writeln!(s, "   right victim: {}", term(&verdict(v)));
    let _ = writeln!(s, "   stall: {}", t(&v["stall"]["diagnosis"], "?"));
    let Some(d) = v["evidence_dir"].as_str() else {
        let _ = writeln!(s, "   evidence: none written before the kill");
        return;
    };
    let _ = writeln!(s, "   evidence: {}", term(d));
    // The evidence event may have rotated out of the log.
    if let Some(e) = i.evidence {
        let _ = writeln!(
            s,
            "     written {} ({}: {})",
            when(e["ts_ms"].as_u64().unwrap_or(0)),
            t(&e["reason"], "?"),
            t(&e["detail"], "")
        );
    }
    if let Some(st) = bundle_path(dir, d).and_then(|b| top_stack(&b)) {
        let _ = writeln!(s, "     top stack ({}):", term(st[0].trim_start_matches("== ")));
        for l in &st[1..] {
            let _ = writeln!(s, "       {}", term(l));
        }
    }
}

/// Whether the right process was killed, in words (raw: escape it).
fn verdict(v: &Value) -> String {
    let right = v["victim_was_top_grower"].as_bool().unwrap_or(true);
    let g = &v["top_grower"];
    if right && g.is_object() {
        "yes (it was the process that grew the most)".into()
    } else if right {
        "no process grew notably before the OOM".into()
    } else {
        format!(
            "NO - pid {} ({}) grew {} in the {} s before",
            num(&g["pid"]),
            g["comm"].as_str().unwrap_or("?"),
            bytes(&g["growth_bytes"]),
            num(&g["window_s"])
        )
    }
}

/// The victim's process group or pool, in words (raw: escape it).
fn group_line(g: &Value) -> Option<String> {
    if !g.is_object() {
        return None;
    }
    let kind = match g["kind"].as_str() {
        Some("pool") => "a pool",
        _ => "a group",
    };
    let mut s = format!(
        "{kind} of {} processes led by pid {} ({}), RSS {}",
        num(&g["members"]),
        num(&g["leader_pid"]),
        g["comm"].as_str().unwrap_or("?"),
        bytes(&g["rss_bytes"])
    );
    if g["pss_bytes"].is_number() {
        let _ = write!(s, ", PSS {}", bytes(&g["pss_bytes"]));
    }
    Some(s)
}

/// For HTML: control and bidi characters made visible first (as in a
/// terminal), then the HTML specials.
fn esc(s: &str) -> String {
    term(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A string field of an event, escaped for HTML.
fn h(v: &Value, default: &str) -> String {
    esc(v.as_str().unwrap_or(default))
}

// ---- Charts ----

/// A line on an incident's chart.
struct Plot {
    /// Raw (escaped when drawn).
    label: String,
    pid: Option<u64>,
    class: &'static str,
    color: &'static str,
    points: Vec<(u64, f64)>,
}

const GROWER_COLORS: [&str; GROWERS] = ["#1f77b4", "#ff7f0e", "#2ca02c"];

/// `[[unix_ms, bytes], ...]` in time order (malformed points dropped).
fn history(v: &Value) -> Vec<(u64, f64)> {
    let mut p: Vec<(u64, f64)> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p[0].as_u64()?, p[1].as_f64()?)))
        .collect();
    p.sort_by_key(|p| p.0);
    p.dedup_by_key(|p| p.0);
    p
}

/// The lines of an incident's chart: the memcg's usage, the victim, and
/// the top growers (from the incident, else from the summaries of its
/// scope). A line of fewer than two points is left out, legend and all.
fn incident_plots(i: &Incident) -> Vec<Plot> {
    let v = i.v;
    let vpid = v["victim"]["pid"].as_u64();
    let mut plots = vec![Plot {
        label: "memcg usage".into(),
        pid: None,
        class: "series memcg",
        color: "#555",
        points: history(&v["memcg_history"]),
    }];
    let mut victim = history(&v["victim_history"]);
    if victim.len() < 2 {
        if let Some(s) = i.nearby.iter().find(|s| Some(s.pid) == vpid) {
            victim = s.points.clone();
        }
    }
    plots.push(Plot {
        label: format!(
            "victim {} ({})",
            v["victim"]["comm"].as_str().unwrap_or("?"),
            num(&v["victim"]["pid"])
        ),
        pid: vpid,
        class: "series victim",
        color: "#d62728",
        points: victim,
    });
    let mut growers: Vec<Series> = v["growers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["pid"].as_u64() != vpid)
        .map(|g| Series {
            pid: g["pid"].as_u64().unwrap_or(0),
            comm: g["comm"].as_str().unwrap_or("?").to_string(),
            points: history(&g["history"]),
        })
        .filter(|s| s.points.len() >= 2)
        .take(GROWERS)
        .collect();
    if growers.is_empty() {
        growers = i.nearby.iter().filter(|s| Some(s.pid) != vpid).cloned().collect();
    }
    for (k, g) in growers.into_iter().take(GROWERS).enumerate() {
        plots.push(Plot {
            label: format!("{} ({})", g.comm, g.pid),
            pid: Some(g.pid),
            class: "series grower",
            color: GROWER_COLORS[k],
            points: g.points,
        });
    }
    plots.retain(|p| p.points.len() >= 2);
    plots
}

// Chart geometry: the plot area, and the legend right of it.
const CW: f64 = 1000.0;
const CH: f64 = 300.0;
const PL: f64 = 76.0;
const PR: f64 = 770.0;
const PT: f64 = 16.0;
const PB: f64 = 262.0;

struct Axes {
    t0: u64,
    t1: u64,
    ymax: f64,
}

impl Axes {
    fn x(&self, t: u64) -> f64 {
        PL + t.saturating_sub(self.t0) as f64 / self.t1.saturating_sub(self.t0).max(1) as f64 * (PR - PL)
    }
    fn y(&self, b: f64) -> f64 {
        PB - b / self.ymax * (PB - PT)
    }
}

/// A label drawn over lines: a white halo keeps it readable.
const HALO: &str = "paint-order=\"stroke\" stroke=\"#fff\" stroke-width=\"3\"";

/// One incident's chart, scaled on its own lines and its memcg's limit.
fn chart_svg(plots: &[Plot], limit: Option<f64>, kill: u64) -> String {
    let data_max = plots
        .iter()
        .flat_map(|p| p.points.iter().map(|q| q.1))
        .fold(0.0, f64::max);
    // A limit far above the data ("max", or a big parent) would flatten
    // every line: it is named then, not drawn.
    let drawn = limit.filter(|l| *l > 0.0 && (data_max == 0.0 || *l <= 4.0 * data_max));
    let top = data_max.max(drawn.unwrap_or(0.0)).max(1024.0) * 1.06;
    let ystep = byte_step(top);
    let ts = || plots.iter().flat_map(|p| p.points.iter().map(|q| q.0));
    let t0 = ts()
        .min()
        .unwrap_or(kill.saturating_sub(CHART_BACK_MS))
        .min(kill.saturating_sub(5_000));
    let t1 = ts().max().unwrap_or(kill).max(kill);
    // Room right of the kill for its mark.
    let t1 = t1.max(kill + (kill - t0) / 40);
    let a = Axes {
        t0,
        t1,
        ymax: (top / ystep).ceil() * ystep,
    };
    let mut s = format!(
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {CW} {CH}\" \
         width=\"{CW}\" height=\"{CH}\" role=\"img\">"
    );
    s += &chart_ticks(&a, ystep, kill);
    for p in plots {
        s += &plot_svg(&a, p);
    }
    s += &limit_svg(&a, limit, drawn);
    let kx = a.x(kill);
    let _ = write!(
        s,
        "<line class=\"oom-marker\" x1=\"{kx:.1}\" y1=\"{PT}\" x2=\"{kx:.1}\" y2=\"{PB}\" stroke=\"#b00\" \
         stroke-width=\"1.5\"/><text x=\"{:.1}\" y=\"{}\" text-anchor=\"end\" fill=\"#b00\" \
         font-weight=\"bold\" {HALO}>OOM kill</text>",
        kx - 4.0,
        PT + 11.0
    );
    s += &legend_svg(plots);
    s += "</svg>";
    s
}

/// Grid, byte ticks on the y axis, and time ticks on the x axis in
/// seconds (or minutes) from the kill.
fn chart_ticks(a: &Axes, ystep: f64, kill: u64) -> String {
    let mut s = String::new();
    let mut k = 0.0;
    while k * ystep <= a.ymax * 1.0001 {
        let y = a.y(k * ystep);
        let _ = write!(
            s,
            "<g class=\"tick y\"><line x1=\"{PL}\" y1=\"{y:.1}\" x2=\"{PR}\" y2=\"{y:.1}\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text></g>",
            PL - 6.0,
            y + 4.0,
            esc(&short_bytes(k * ystep))
        );
        k += 1.0;
    }
    let step = time_step(a.t1.saturating_sub(a.t0), 8);
    let first = -((kill - a.t0) as f64 / step as f64).floor() as i64;
    let last = ((a.t1 - kill) as f64 / step as f64).floor() as i64;
    for k in first..=last {
        let d = k * step as i64;
        let x = a.x((kill as i64 + d).max(0) as u64);
        let _ = write!(
            s,
            "<g class=\"tick x\"><line x1=\"{x:.1}\" y1=\"{PT}\" x2=\"{x:.1}\" y2=\"{PB}\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text></g>",
            PB + 16.0,
            rel_label(d, step)
        );
    }
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{PL}\" y1=\"{PB}\" x2=\"{PR}\" y2=\"{PB}\"/>\
         <line class=\"axis\" x1=\"{PL}\" y1=\"{PT}\" x2=\"{PL}\" y2=\"{PB}\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"axis-label\">time from the kill</text>",
        (PL + PR) / 2.0,
        PB + 34.0
    );
    s
}

fn plot_svg(a: &Axes, p: &Plot) -> String {
    let pts: Vec<String> = p
        .points
        .iter()
        .map(|q| format!("{:.1},{:.1}", a.x(q.0), a.y(q.1)))
        .collect();
    let pts = pts.join(" ");
    let pid = p.pid.map(|p| format!(" data-pid=\"{p}\"")).unwrap_or_default();
    let mut s = String::new();
    if p.class.ends_with("memcg") {
        // The usage as an area: it stays visible under a victim that is
        // the whole memcg.
        let (first, last) = (p.points[0].0, p.points[p.points.len() - 1].0);
        let _ = write!(
            s,
            "<polygon class=\"area\" fill=\"#888\" fill-opacity=\"0.15\" points=\"{:.1},{PB} {pts} {:.1},{PB}\"/>",
            a.x(first),
            a.x(last)
        );
    }
    let dash = if p.class.ends_with("memcg") {
        " stroke-dasharray=\"6 3\""
    } else {
        ""
    };
    let _ = write!(
        s,
        "<polyline class=\"{}\"{pid} fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash} \
         stroke-linejoin=\"round\" points=\"{pts}\"><title>{}</title></polyline>",
        p.class,
        p.color,
        esc(&p.label)
    );
    s
}

fn limit_svg(a: &Axes, limit: Option<f64>, drawn: Option<f64>) -> String {
    match (limit, drawn) {
        (_, Some(l)) => {
            let y = a.y(l);
            format!(
                "<line class=\"limit-line\" x1=\"{PL}\" y1=\"{y:.1}\" x2=\"{PR}\" y2=\"{y:.1}\" stroke=\"#b00\" \
                 stroke-width=\"1.5\" stroke-dasharray=\"8 4\"/><text class=\"limit-label\" x=\"{}\" \
                 y=\"{:.1}\" fill=\"#b00\" {HALO}>memcg limit {}</text>",
                PL + 6.0,
                y - 5.0,
                esc(&short_bytes(l))
            )
        }
        (Some(l), None) if l > 0.0 => format!(
            "<text class=\"limit-note\" x=\"{}\" y=\"{}\" fill=\"#b00\" {HALO}>memcg limit {}: far above, \
             not to scale</text>",
            PL + 6.0,
            PT + 11.0,
            esc(&short_bytes(l))
        ),
        _ => String::new(),
    }
}

fn legend_svg(plots: &[Plot]) -> String {
    let mut s = String::new();
    for (k, p) in plots.iter().enumerate() {
        let y = PT + 10.0 + 22.0 * k as f64;
        let label: String = if p.label.chars().count() > 28 {
            p.label.chars().take(27).chain(['…']).collect()
        } else {
            p.label.clone()
        };
        let dash = if p.class.ends_with("memcg") {
            " stroke-dasharray=\"6 3\""
        } else {
            ""
        };
        let _ = write!(
            s,
            "<g class=\"legend-item\"><title>{}</title><line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" \
             stroke=\"{}\" stroke-width=\"3\"{dash}/><text x=\"{}\" y=\"{}\">{}</text></g>",
            esc(&p.label),
            PR + 16.0,
            PR + 38.0,
            p.color,
            PR + 44.0,
            y + 4.0,
            esc(&label)
        );
    }
    s
}

/// A power of two of bytes that cuts `top` into about five.
fn byte_step(top: f64) -> f64 {
    let raw = (top / 5.0).max(1.0);
    2f64.powi(raw.log2().ceil() as i32)
}

/// 1.5 GiB, 32 MiB, 512 B: a tick label.
fn short_bytes(v: f64) -> String {
    for (d, u) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        let d = (1u64 << d) as f64;
        if v >= d {
            let x = format!("{:.2}", v / d);
            return format!("{} {u}", x.trim_end_matches('0').trim_end_matches('.'));
        }
    }
    format!("{v:.0} B")
}

/// A round step in ms that cuts `span_ms` into at most `max` parts.
fn time_step(span_ms: u64, max: u64) -> u64 {
    const S: u64 = 1000;
    const STEPS: [u64; 17] = [
        S,
        2 * S,
        5 * S,
        10 * S,
        15 * S,
        30 * S,
        60 * S,
        120 * S,
        300 * S,
        600 * S,
        900 * S,
        1800 * S,
        3600 * S,
        7200 * S,
        6 * 3600 * S,
        12 * 3600 * S,
        86400 * S,
    ];
    let mut step = STEPS
        .iter()
        .copied()
        .find(|s| span_ms / s <= max)
        .unwrap_or(STEPS[16]);
    while span_ms / step > max {
        step *= 2;
    }
    step
}

/// "−30 s", "+2 min", "0": a time relative to the kill.
fn rel_label(d_ms: i64, step: u64) -> String {
    if d_ms == 0 {
        return "0".into();
    }
    let sign = if d_ms < 0 { "\u{2212}" } else { "+" };
    let a = d_ms.unsigned_abs();
    if step.is_multiple_of(3_600_000) {
        format!("{sign}{} h", a / 3_600_000)
    } else if step.is_multiple_of(60_000) {
        format!("{sign}{} min", a / 60_000)
    } else {
        format!("{sign}{} s", a / 1000)
    }
}

// ---- Flame graphs ----

/// Stacks beyond this many distinct frames in a bundle are cut at the
/// deepest frame already known (their samples are kept there).
const FLAME_NODES: usize = 20_000;
/// Frames deeper than this are not drawn (their samples stay in the frame
/// above).
const FLAME_DEPTH: usize = 128;
/// Characters kept of a frame's name.
const FRAME_NAME_CAP: usize = 400;

/// Fault stacks merged on their common prefixes: a node's count is the
/// samples of every stack through it; children by name, in alphabetical
/// order as flame graphs are drawn.
#[derive(Default)]
struct Node {
    count: u64,
    children: BTreeMap<String, Node>,
}

#[derive(Default)]
struct Flame {
    root: Node,
    nodes: usize,
    depth: usize,
    source: &'static str,
    /// Samples x sampling period x page size: an estimate of the bytes a
    /// sample stands for (from stacks.txt's header).
    bytes_per_sample: Option<f64>,
}

impl Flame {
    /// Adds `count` samples of one stack, root first.
    fn add<'s>(&mut self, frames: impl Iterator<Item = &'s str>, count: u64) {
        if count == 0 {
            return;
        }
        self.root.count = self.root.count.saturating_add(count);
        let mut node = &mut self.root;
        for (d, f) in frames.enumerate().take(FLAME_DEPTH) {
            let name = cap_str(f.trim(), FRAME_NAME_CAP);
            if !node.children.contains_key(&name) {
                if self.nodes >= FLAME_NODES {
                    break;
                }
                self.nodes += 1;
            }
            node = node.children.entry(name).or_default();
            node.count = node.count.saturating_add(count);
            self.depth = self.depth.max(d + 1);
        }
    }
}

/// stacks.folded: `root;...;leaf COUNT` per line.
fn parse_folded(text: &str) -> Flame {
    let mut f = Flame {
        source: "stacks.folded",
        ..Flame::default()
    };
    for l in text.lines().map(str::trim_end) {
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let Some((stack, n)) = l.rsplit_once(' ') else {
            continue;
        };
        if let Ok(n) = n.parse::<u64>() {
            f.add(stack.split(';'), n);
        }
    }
    f
}

/// stacks.txt: `== stack N: COUNT sampled faults (...)` and its frames,
/// innermost first. Only the top stacks are listed there; the samples of
/// the others (the header's total minus these) get a frame of their own
/// so that the widths stay true.
fn parse_stacks_txt(text: &str) -> Flame {
    let mut f = Flame {
        source: "stacks.txt",
        ..Flame::default()
    };
    let mut total = None;
    let mut cur: Option<(u64, Vec<String>)> = None;
    let flush = |f: &mut Flame, cur: Option<(u64, Vec<String>)>| {
        if let Some((n, frames)) = cur {
            f.add(frames.iter().rev().map(String::as_str), n);
        }
    };
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("== stack ") {
            flush(&mut f, cur.take());
            let n = rest
                .split_once(": ")
                .and_then(|(_, r)| r.split_whitespace().next()?.parse::<u64>().ok());
            cur = n.map(|n| (n, Vec::new()));
        } else if let Some(h) = l.strip_prefix("# ") {
            let mut w = h.split_whitespace();
            if let (Some(n), Some("sampled")) = (w.next(), w.next()) {
                total = total.or(n.parse::<u64>().ok());
            }
        } else if let (Some((_, frames)), Some(name)) = (cur.as_mut(), txt_frame(l)) {
            frames.push(name);
        }
    }
    flush(&mut f, cur);
    if let Some(t) = total.filter(|t| *t > f.root.count) {
        let rest = t - f.root.count;
        f.add(std::iter::once("(stacks not listed in stacks.txt)"), rest);
    }
    f
}

/// A frame line of stacks.txt: `0xADDR name+0xOFF (file:line)` gives
/// `name`; `0xADDR ?? ...` gives `?? 0xADDR`.
fn txt_frame(l: &str) -> Option<String> {
    let l = l.trim();
    let (addr, rest) = l.split_once(' ').unwrap_or((l, ""));
    let hex = addr.strip_prefix("0x")?;
    let rest = rest.trim();
    if rest.is_empty() || rest.starts_with("??") {
        let a = u64::from_str_radix(hex, 16).ok()?;
        return Some(format!("?? {a:#x}"));
    }
    Some(strip_offset(rest).to_string())
}

/// `name+0x1f (file:12)` -> `name`: cut at the first `+0x<hex>` that ends
/// the line or is followed by ` (`. Names may hold spaces and parentheses.
fn strip_offset(s: &str) -> &str {
    let mut from = 0;
    while let Some(i) = s[from..].find("+0x") {
        let at = from + i;
        let after = &s[at + 3..];
        let tail = after.trim_start_matches(|c: char| c.is_ascii_hexdigit());
        if tail.len() < after.len() && (tail.is_empty() || tail.starts_with(" (")) {
            return &s[..at];
        }
        from = at + 3;
    }
    s
}

/// The period and page size in stacks.txt's header: "(1 in P faults)",
/// "page size (N B)".
fn bytes_per_sample(text: &str) -> Option<f64> {
    let after = |key: &str| -> Option<f64> {
        let rest = &text[text.find(key)? + key.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    Some(after("(1 in ")? * after("page size (")?)
}

/// A bundle's stacks: stacks.folded if it has one, else stacks.txt.
fn load_flame(bundle: &Path) -> Option<Flame> {
    let txt = read_bundle_file(bundle, "stacks.txt", STACKS_CAP);
    let mut f = match read_bundle_file(bundle, "stacks.folded", STACKS_CAP) {
        Some(folded) => parse_folded(&folded),
        None => parse_stacks_txt(txt.as_deref()?),
    };
    f.bytes_per_sample = txt.as_deref().and_then(bytes_per_sample);
    Some(f)
}

const FW: f64 = 1000.0;
const FH: f64 = 17.0;
const FPAD: f64 = 4.0;

struct FlameCtx<'a> {
    f: &'a Flame,
    scale: f64,
    height: f64,
}

/// The flame graph: root at the bottom, a frame's width its share of the
/// samples, a tooltip on each frame.
fn flame_svg(f: &Flame) -> String {
    let height = (f.depth + 1) as f64 * FH + 2.0 * FPAD;
    let cx = FlameCtx {
        f,
        scale: (FW - 2.0 * FPAD) / f.root.count.max(1) as f64,
        height,
    };
    let mut s = format!(
        "<svg class=\"flame\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {FW} {height}\" \
         width=\"{FW}\" height=\"{height}\" role=\"img\">"
    );
    flame_frame(&mut s, &cx, "all", &f.root, FPAD, 0);
    s += "</svg>";
    s
}

fn flame_frame(s: &mut String, cx: &FlameCtx, name: &str, node: &Node, x: f64, depth: usize) {
    let w = node.count as f64 * cx.scale;
    if w < 0.3 {
        return;
    }
    let y = cx.height - FPAD - (depth + 1) as f64 * FH;
    let pct = node.count as f64 * 100.0 / cx.f.root.count.max(1) as f64;
    let touched =
        cx.f.bytes_per_sample
            .map(|b| format!(", ~{} touched", crate::fmt::bytes(b * node.count as f64)))
            .unwrap_or_default();
    let fit = ((w - 6.0) / 6.7).max(0.0) as usize;
    let label: String = match name.chars().count() {
        _ if fit < 3 => String::new(),
        n if n > fit => name.chars().take(fit - 2).chain("..".chars()).collect(),
        _ => name.to_string(),
    };
    let _ = write!(
        s,
        "<g class=\"frame\"><title>{} \u{2014} {} sample{} ({pct:.1}%){touched}</title>\
         <rect x=\"{x:.2}\" y=\"{y:.1}\" width=\"{:.2}\" height=\"{}\" rx=\"2\" fill=\"{}\"/>",
        esc(name),
        node.count,
        if node.count == 1 { "" } else { "s" },
        (w - 0.5).max(0.1),
        FH - 1.0,
        frame_color(name, depth)
    );
    if !label.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + 3.0,
            y + 12.0,
            esc(&label)
        );
    }
    s.push_str("</g>");
    let mut cx_x = x;
    for (n, c) in &node.children {
        flame_frame(s, cx, n, c, cx_x, depth + 1);
        cx_x += c.count as f64 * cx.scale;
    }
}

/// Warm colours from a hash of the name (the same function, the same
/// colour); grey for the root and for frames without a symbol.
fn frame_color(name: &str, depth: usize) -> String {
    if depth == 0 || name.starts_with("??") || name.starts_with('(') {
        return "#c9c9c9".into();
    }
    // FNV-1a.
    let h = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    let (a, b, c) = (h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff);
    format!(
        "rgb({},{},{})",
        205 + a * 50 / 255,
        80 + b * 150 / 255,
        c * 55 / 255
    )
}

// ---- The page ----

pub fn render_html(dir: &Path, rec: &Recording) -> String {
    let incs = incidents(rec);
    let linked: HashMap<&str, usize> = incs
        .iter()
        .enumerate()
        .filter_map(|(n, i)| Some((i.v["evidence_dir"].as_str()?, n + 1)))
        .collect();
    // Bundles that no incident links to, newest first.
    let mut loose: Vec<&Value> = rec
        .evidence
        .iter()
        .filter(|e| e["dir"].as_str().is_some_and(|d| !linked.contains_key(d)))
        .collect();
    loose.sort_by_key(|e| std::cmp::Reverse(e["ts_ms"].as_u64().unwrap_or(0)));
    let mut anchors: HashMap<&str, String> = linked
        .iter()
        .map(|(d, n)| (*d, format!("incident-{n}")))
        .collect();
    for (k, e) in loose.iter().enumerate() {
        if let Some(d) = e["dir"].as_str() {
            anchors.entry(d).or_insert_with(|| format!("evidence-{}", k + 1));
        }
    }
    let mut body = overview_html(dir, rec, &incs, &anchors);
    for (n, i) in incs.iter().enumerate() {
        body += &incident_html(dir, n + 1, i);
    }
    body += &loose_html(dir, &loose);
    page(dir, &body)
}

const CSS: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#222;max-width:1040px;\
margin:20px auto;padding:0 16px}\
h1{font-size:22px;margin:0 0 2px}h2{font-size:18px;margin:0 0 4px}h3{font-size:15px;margin:14px 0 4px}\
.sub,.when,figcaption,.note{color:#666}.when{font-weight:normal;font-size:14px;margin-left:8px}\
code,pre{background:#f3f3f3;font:12px/1.4 ui-monospace,monospace;padding:1px 3px;word-break:break-all}\
pre{padding:8px;white-space:pre-wrap}\
section{border-top:1px solid #ddd;margin-top:24px;padding-top:14px}\
.summary{font-weight:600;margin:4px 0 8px}\
table{border-collapse:collapse}td,th{vertical-align:top;padding:2px 12px 2px 0;text-align:left}\
table.facts th{color:#666;font-weight:normal;white-space:nowrap}\
table.index{width:100%;font-size:13px}table.index th{border-bottom:1px solid #ccc}\
table.index td{border-bottom:1px solid #eee}\
.ok{color:#17692f}.wrong{color:#b00;font-weight:bold}\
figure{margin:10px 0}svg{display:block;width:100%;height:auto}\
svg text{font-family:system-ui,sans-serif;font-size:11px}\
.tick line{stroke:#e6e6e6}.tick text,.axis-label{fill:#555}.axis{stroke:#999}\
.timeline .tick line{stroke:#999}\
.flame text{font:11px ui-monospace,monospace;fill:#000;pointer-events:none}\
.flame .frame:hover rect{stroke:#000;stroke-width:1}\
details{margin:6px 0}summary{cursor:pointer;color:#444}";

fn page(dir: &Path, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>leaktrace report: {}</title><style>{CSS}</style></head><body>{body}</body></html>\n",
        esc(&dir.display().to_string())
    )
}

/// The head of the page: what was recorded, the timeline of incidents
/// and an index of them.
fn overview_html(dir: &Path, rec: &Recording, incs: &[Incident], anchors: &HashMap<&str, String>) -> String {
    let mut s = format!(
        "<h1>leaktrace report</h1><p class=\"sub\"><code>{}</code>: {} OOM incident(s), {} evidence \
         bundle(s)",
        esc(&dir.display().to_string()),
        incs.len(),
        rec.evidence.iter().filter(|e| e["dir"].is_string()).count()
    );
    if let (Some(a), Some(b)) = (rec.ts_min, rec.ts_max) {
        let _ = write!(s, ", recorded {} to {}", esc(&when(a)), esc(&when(b)));
    }
    if rec.skipped_lines > 0 {
        let _ = write!(
            s,
            ". {} of {} lines skipped (not JSON, e.g. a last line cut by a crash)",
            rec.skipped_lines, rec.lines
        );
    }
    s += ".</p>";
    if let (Some(a), Some(b)) = (rec.ts_min, rec.ts_max) {
        s += &timeline_svg(a, b, incs, &rec.evidence, anchors);
        s += "<p class=\"sub\">Red: an OOM kill (click it for the incident). Blue: an evidence bundle \
              written.</p>";
    }
    if incs.is_empty() {
        s += "<p>No OOM kill in this recording.</p>";
        return s;
    }
    s += "<table class=\"index\"><tr><th>#</th><th>time</th><th>victim</th><th>memcg</th>\
          <th>right victim</th></tr>";
    for (n, i) in incs.iter().enumerate() {
        let v = i.v;
        let right = v["victim_was_top_grower"].as_bool().unwrap_or(true);
        let _ = write!(
            s,
            "<tr><td><a href=\"#incident-{0}\">OOM {0}</a></td><td>{1}</td><td>{2} ({3})</td>\
             <td><code>{4}</code></td><td class=\"{5}\">{6}</td></tr>",
            n + 1,
            esc(&when(v["ts_ms"].as_u64().unwrap_or(0))),
            h(&v["victim"]["comm"], "?"),
            num(&v["victim"]["pid"]),
            h(&v["memcg"], "(global)"),
            if right { "ok" } else { "wrong" },
            if right { "yes" } else { "NO" }
        );
    }
    s + "</table>"
}

const TW: f64 = 1000.0;
const TL: f64 = 40.0;
const TR: f64 = 960.0;
const TAXIS: f64 = 46.0;

/// Where a time falls on the timeline.
struct Span {
    t0: u64,
    t1: u64,
}

impl Span {
    fn x(&self, t: u64) -> f64 {
        TL + t.saturating_sub(self.t0) as f64 / self.t1.saturating_sub(self.t0).max(1) as f64 * (TR - TL)
    }
}

/// The recording's span with wall-clock ticks, one red mark per incident
/// (a link to it) and a blue one per evidence bundle.
fn timeline_svg(a: u64, b: u64, incs: &[Incident], ev: &[Value], anchors: &HashMap<&str, String>) -> String {
    let sp = if b.saturating_sub(a) < 2_000 {
        Span {
            t0: a.saturating_sub(30_000),
            t1: b + 30_000,
        }
    } else {
        Span { t0: a, t1: b }
    };
    let mut s = format!(
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {TW} 80\" width=\"{TW}\" \
         height=\"80\" role=\"img\"><line class=\"axis\" x1=\"{TL}\" y1=\"{TAXIS}\" x2=\"{TR}\" y2=\"{TAXIS}\"/>"
    );
    let step = time_step(sp.t1 - sp.t0, 7);
    let mut t = sp.t0.div_ceil(step) * step;
    while t <= sp.t1 {
        let w = when(t);
        let label = match step {
            s if s >= 86_400_000 => &w[5..10],
            s if s >= 60_000 => &w[11..16],
            _ => &w[11..19],
        };
        let _ = write!(
            s,
            "<g class=\"tick x\"><line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{2}\"/>\
             <text x=\"{0:.1}\" y=\"74\" text-anchor=\"middle\">{3}</text></g>",
            sp.x(t),
            TAXIS - 3.0,
            TAXIS + 3.0,
            esc(label)
        );
        t += step;
    }
    for e in ev {
        let (Some(d), Some(ts)) = (e["dir"].as_str(), e["ts_ms"].as_u64()) else {
            continue;
        };
        let _ = write!(
            s,
            "<a href=\"#{}\"><g class=\"timeline-evidence\"><title>evidence for pid {} ({}) at {}: {}</title>\
             <path d=\"M{:.1} {} l-5 9 h10 z\" fill=\"#1f77b4\"/></g></a>",
            anchors.get(d).map(String::as_str).unwrap_or(""),
            num(&e["pid"]),
            h(&e["comm"], "?"),
            esc(&when(ts)),
            h(&e["reason"], "?"),
            sp.x(ts),
            TAXIS + 4.0
        );
    }
    s += &timeline_marks(&sp, incs);
    s + "</svg>"
}

/// A mark per incident, then over them one label per cluster of marks
/// closer than a label's width ("4", or "1\u{2013}3" for a burst).
fn timeline_marks(sp: &Span, incs: &[Incident]) -> String {
    let mut s = String::new();
    let mut clusters: Vec<(usize, usize, f64)> = Vec::new();
    for (n, i) in incs.iter().enumerate().map(|(n, i)| (n + 1, i)) {
        let ts = i.v["ts_ms"].as_u64().unwrap_or(sp.t0);
        let cx = sp.x(ts);
        match clusters.last_mut() {
            Some(c) if cx - c.2 < 26.0 => c.1 = n,
            _ => clusters.push((n, n, cx)),
        }
        let _ = write!(
            s,
            "<a href=\"#incident-{n}\"><g class=\"timeline-mark\" data-incident=\"{n}\"><title>OOM {n} at {}: \
             killed pid {} ({})</title><line x1=\"{cx:.1}\" y1=\"18\" x2=\"{cx:.1}\" y2=\"{TAXIS}\" \
             stroke=\"#b00\" stroke-width=\"2\"/><circle cx=\"{cx:.1}\" cy=\"18\" r=\"9\" fill=\"#b00\"/></g></a>",
            esc(&when(ts)),
            num(&i.v["victim"]["pid"]),
            h(&i.v["victim"]["comm"], "?"),
        );
    }
    for (first, last, cx) in clusters {
        let label = if first == last {
            first.to_string()
        } else {
            format!("{first}\u{2013}{last}")
        };
        let w = 8.0 + 6.0 * label.chars().count() as f64;
        let _ = write!(
            s,
            "<a href=\"#incident-{first}\"><g class=\"timeline-label\"><rect x=\"{:.1}\" y=\"9\" width=\"{w:.1}\" \
             height=\"18\" rx=\"9\" fill=\"#b00\"/><text x=\"{cx:.1}\" y=\"22\" text-anchor=\"middle\" \
             fill=\"#fff\" font-size=\"10\" font-weight=\"bold\">{label}</text></g></a>",
            cx - w / 2.0
        );
    }
    s
}

fn incident_html(dir: &Path, n: usize, i: &Incident) -> String {
    let v = i.v;
    let kill = v["ts_ms"].as_u64().unwrap_or(0);
    let mut s = format!(
        "<section class=\"incident\" id=\"incident-{n}\" data-victim-pid=\"{}\"><h2>OOM {n}: {} ({}) \
         killed<span class=\"when\">{}</span></h2><p class=\"summary\">{}</p>",
        num(&v["victim"]["pid"]),
        h(&v["victim"]["comm"], "?"),
        num(&v["victim"]["pid"]),
        esc(&when(kill)),
        h(&v["summary"], "")
    );
    s += &facts_html(i);
    let plots = incident_plots(i);
    let limit = v["memcg_limit_bytes"].as_f64();
    if plots.is_empty() && limit.is_none() {
        s += "<p class=\"note\">No memory history was recorded for this incident.</p>";
    } else {
        let back = plots
            .iter()
            .filter_map(|p| p.points.first())
            .map(|p| kill.saturating_sub(p.0))
            .max()
            .unwrap_or(0);
        let _ = write!(
            s,
            "<figure>{}<figcaption>The victim, the processes in its scope that grew the most and the \
             memcg's usage, in the {} s before the kill; this incident's own scale.{}</figcaption></figure>",
            chart_svg(&plots, limit, kill),
            back / 1000,
            if plots.is_empty() {
                " No history with two points or more was recorded."
            } else {
                ""
            }
        );
    }
    if let Some(d) = v["evidence_dir"].as_str() {
        let who = format!(
            "pid {} ({})",
            num(&v["victim"]["pid"]),
            v["victim"]["comm"].as_str().unwrap_or("?")
        );
        s += &bundle_html(dir, d, &who);
    }
    s + "</section>"
}

fn facts_html(i: &Incident) -> String {
    let v = i.v;
    let vic = &v["victim"];
    let mut rows: Vec<(&str, String)> = Vec::new();
    if vic.is_object() {
        rows.push((
            "victim",
            format!(
                "pid {} (<b>{}</b>) <code>{}</code> in <code>{}</code>; anon {}, file {}, shmem {}",
                num(&vic["pid"]),
                h(&vic["comm"], "?"),
                h(&vic["cmdline"], ""),
                h(&vic["cgroup"], "?"),
                bytes(&vic["rss_anon_bytes"]),
                bytes(&vic["rss_file_bytes"]),
                bytes(&vic["rss_shmem_bytes"])
            ),
        ));
    }
    if let Some(g) = group_line(&v["victim_group"]) {
        rows.push(("victim's group", esc(&g)));
    }
    let right = v["victim_was_top_grower"].as_bool().unwrap_or(true);
    rows.push((
        "right victim",
        format!(
            "<span class=\"{}\">{}</span>",
            if right { "ok" } else { "wrong" },
            esc(&verdict(v))
        ),
    ));
    if let Some(g) = v["victim_growth"].as_object() {
        rows.push((
            "victim grew",
            format!(
                "{} to {} in {:.1} s",
                bytes(&g["from_bytes"]),
                bytes(&g["to_bytes"]),
                g["secs"].as_f64().unwrap_or(0.0)
            ),
        ));
    }
    let inv = &v["invoker"];
    rows.push((
        "invoker",
        format!(
            "pid {} ({}), gfp_mask {}, order {}",
            num(&inv["pid"]),
            h(&inv["comm"], "?"),
            h(&inv["gfp_mask"], "?"),
            num(&inv["order"])
        ),
    ));
    let mut mem = format!("constraint {}", h(&v["constraint"], "?"));
    if let Some(m) = v["memcg"].as_str() {
        let _ = write!(
            mem,
            ", memcg <code>{}</code>: usage {} of limit {}",
            esc(m),
            bytes(&v["memcg_usage_bytes"]),
            bytes(&v["memcg_limit_bytes"])
        );
    }
    if v["freed_bytes"].is_number() {
        let _ = write!(mem, "; the kill freed {}", bytes(&v["freed_bytes"]));
    }
    rows.push(("memory", mem));
    rows.push(("stall", h(&v["stall"]["diagnosis"], "?")));
    rows.push(("evidence", evidence_fact(i)));
    let mut s = String::from("<table class=\"facts\">");
    for (k, val) in rows {
        let _ = write!(s, "<tr><th>{k}</th><td>{val}</td></tr>");
    }
    s + "</table>"
}

fn evidence_fact(i: &Incident) -> String {
    let Some(d) = i.v["evidence_dir"].as_str() else {
        return "none written before the kill".into();
    };
    let mut s = format!("<code>{}</code>", esc(d));
    if let Some(e) = i.evidence {
        let _ = write!(
            s,
            ", written {} ({}: {})",
            esc(&when(e["ts_ms"].as_u64().unwrap_or(0))),
            h(&e["reason"], "?"),
            h(&e["detail"], "")
        );
    }
    s
}

/// A bundle's flame graph and its top stack as text. `who` is raw.
fn bundle_html(rec_dir: &Path, d: &str, who: &str) -> String {
    let Some(b) = bundle_path(rec_dir, d) else {
        return format!(
            "<p class=\"note\">Bundle <code>{}</code> not found: removed by the evidence budget, or the \
             recording was moved without it.</p>",
            esc(d)
        );
    };
    let mut s = format!("<div class=\"bundle\"><h3>Where {} touched memory</h3>", esc(who));
    match load_flame(&b) {
        Some(f) if f.root.count > 0 => {
            let touched = f
                .bytes_per_sample
                .map(|b| format!(" (~{} touched)", crate::fmt::bytes(b * f.root.count as f64)))
                .unwrap_or_default();
            let _ = write!(
                s,
                "<figure>{}<figcaption>Flame graph of {} sampled page faults{touched}, from {}: the root \
                 at the bottom, each frame as wide as its share of the samples. Hover a frame for its \
                 numbers.</figcaption></figure>",
                flame_svg(&f),
                f.root.count,
                f.source
            );
        }
        _ => s += "<p class=\"note\">No sampled fault stacks in this bundle.</p>",
    }
    if let Some(st) = top_stack(&b) {
        let _ = write!(
            s,
            "<details><summary>top stack, as in stacks.txt</summary><pre class=\"stack\">{}</pre></details>",
            esc(&st.join("\n"))
        );
    }
    s += &python_stacks_html(&b);
    s + "</div>"
}

/// Most bytes of python_stacks.txt shown.
const PY_STACKS_CAP: u64 = 64 * 1024;

/// A CPython bundle's python_stacks.txt (py-spy's dump, escaped when it
/// was written, escaped again for HTML here), open by default: for a
/// Python program it says more than the interpreter's native stacks.
fn python_stacks_html(b: &Path) -> String {
    match read_bundle_file(b, "python_stacks.txt", PY_STACKS_CAP) {
        Some(t) => format!(
            "<details open><summary>Python stacks, as in python_stacks.txt</summary><pre class=\"stack\">{}</pre></details>",
            esc(&t)
        ),
        None => String::new(),
    }
}

/// Evidence bundles that no incident links to (a leak caught before any
/// OOM, or none at all): the newest with their flame graph.
fn loose_html(dir: &Path, loose: &[&Value]) -> String {
    if loose.is_empty() {
        return String::new();
    }
    let mut s =
        String::from("<section class=\"evidence-list\"><h2>Evidence bundles not tied to an OOM kill</h2>");
    for (k, e) in loose.iter().enumerate() {
        let d = e["dir"].as_str().unwrap_or("");
        let _ = write!(
            s,
            "<div class=\"evidence\" id=\"evidence-{}\" data-pid=\"{}\"><h3>pid {} ({}) at {}: {}</h3>\
             <p>{} <code>{}</code></p>",
            k + 1,
            num(&e["pid"]),
            num(&e["pid"]),
            h(&e["comm"], "?"),
            esc(&when(e["ts_ms"].as_u64().unwrap_or(0))),
            h(&e["reason"], "?"),
            h(&e["detail"], ""),
            esc(d)
        );
        if k < LOOSE_FLAMES {
            let who = format!("pid {} ({})", num(&e["pid"]), e["comm"].as_str().unwrap_or("?"));
            s += &bundle_html(dir, d, &who);
        }
        s += "</div>";
    }
    s + "</section>"
}

pub fn run(args: ReportArgs) -> Result<()> {
    if args.symbolize {
        print!("{}", super::offline::symbolize_text(&args.dir, &args.debug_dirs)?);
        return Ok(());
    }
    let rec = load(&args.dir)?;
    if args.html.is_none() || args.text {
        print!("{}", render_text(&args.dir, &rec));
    }
    if let Some(out) = &args.html {
        std::fs::write(out, render_html(&args.dir, &rec))
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {}", term(&out.display().to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for one test (removed first if a run left it).
    fn tmp(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("lt-report-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn dates_and_rendering_from_a_synthetic_recording() {
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(when(1_795_304_114_687), "2026-11-21 23:35:14 UTC");
        let events = Recording::from_lines([
            r#"{"type":"summary","ts_ms":1000,"processes":[{"pid":7,"comm":"grower","rss_bytes":1048576}]}"#,
            r#"{"type":"summary","ts_ms":2000,"processes":[{"pid":7,"comm":"grower","rss_bytes":4194304}]}"#,
            r#"{"type":"oom_kill","ts_ms":2500,"summary":"memcg OOM in /a: killed pid 9 (big)","invoker":{"pid":7,"comm":"grower"},"victim":{"pid":9,"comm":"big","cmdline":"big <x>","cgroup":"/a"},"victim_was_top_grower":false,"top_grower":{"pid":7,"comm":"grower","growth_bytes":3145728,"window_s":60.0},"stall":{"diagnosis":"the OOM report took 0.5 ms"},"victim_history":[[1500,2097152]],"evidence_dir":null}"#,
        ]);
        let t = render_text(Path::new("/rec"), &events);
        assert!(t.contains("1 OOM incident(s)"), "{t}");
        assert!(
            t.contains("right victim: NO - pid 7 (grower) grew 3.0 MiB"),
            "{t}"
        );
        let h = render_html(Path::new("/rec"), &events);
        assert!(h.contains("class=\"timeline\""));
        assert!(
            h.contains("href=\"#incident-1\""),
            "the timeline links the incident"
        );
        assert!(h.contains("class=\"oom-marker\""));
        assert!(h.contains("id=\"incident-1\" data-victim-pid=\"9\""));
        assert!(h.contains("big &lt;x&gt;"), "escaped");
        // The grower, from the summaries of the incident's scope; the
        // victim's one point is no line.
        assert_eq!(h.matches("<polyline").count(), 1, "{h}");
        assert!(h.contains("class=\"series grower\" data-pid=\"7\""));
        assert!(!h.contains("victim big (9)"), "no legend entry for one point");
    }

    const WITH_LIMIT: &str = r#"{"type":"oom_kill","ts_ms":100000,"constraint":"memcg","memcg":"/lt","memcg_limit_bytes":134217728,"memcg_usage_bytes":134217728,"invoker":{"pid":5,"comm":"leaker"},"victim":{"pid":5,"comm":"leaker","cgroup":"/lt"},"victim_was_top_grower":true,"stall":{"diagnosis":"fine"},"victim_history":[[40000,1048576],[70000,67108864],[99000,132120576]],"memcg_history":[[40000,2097152],[70000,69206016],[99500,134217728]],"growers":[{"pid":6,"comm":"lonely","growth_bytes":1,"history":[[90000,1]]},{"pid":8,"comm":"helper","growth_bytes":4194304,"history":[[50000,1048576],[98000,5242880]]}],"victim_group":{"kind":"pool","leader_pid":4,"comm":"master","members":3,"rss_bytes":140000000}}"#;

    #[test]
    fn the_chart_has_its_limit_ticks_and_only_series_with_data() {
        let rec = Recording::from_lines([
            // A large process outside the memcg must not set the scale.
            r#"{"type":"summary","ts_ms":90000,"processes":[{"pid":1,"comm":"huge","cgroup":"/other","rss_bytes":1e12}]}"#,
            r#"{"type":"summary","ts_ms":95000,"processes":[{"pid":1,"comm":"huge","cgroup":"/other","rss_bytes":2e12}]}"#,
            WITH_LIMIT,
        ]);
        let h = render_html(Path::new("/rec"), &rec);
        assert_eq!(h.matches("class=\"limit-line\"").count(), 1, "{h}");
        assert!(h.contains("memcg limit 128 MiB"), "{h}");
        assert!(h.matches("class=\"tick y\"").count() >= 3);
        assert!(h.matches("class=\"tick x\"").count() >= 3);
        assert!(h.contains(">\u{2212}30 s<"), "time from the kill: {h}");
        // memcg usage, the victim and one grower; the one-point grower
        // and the process outside the memcg are not drawn.
        assert_eq!(h.matches("<polyline").count(), 3, "{h}");
        assert_eq!(h.matches("class=\"legend-item\"").count(), 3, "{h}");
        assert!(h.contains("helper (8)"));
        assert!(!h.contains("lonely") && !h.contains("huge"), "{h}");
        // The top of the scale is a tick of at most 2x the limit.
        assert!(h.contains(">160 MiB<"), "{h}");
        assert!(h.contains("a pool of 3 processes led by pid 4 (master)"));
        assert!(!h.contains("class=\"flame\""), "no bundle, no flame graph");
    }

    #[test]
    fn without_history_the_limit_is_still_drawn() {
        let rec = Recording::from_lines([
            r#"{"type":"oom_kill","ts_ms":100000,"constraint":"memcg","memcg":"/lt","memcg_limit_bytes":134217728,"victim":{"pid":5,"comm":"x"},"victim_history":[]}"#,
        ]);
        let h = render_html(Path::new("/rec"), &rec);
        assert!(h.contains("class=\"limit-line\""), "{h}");
        assert!(!h.contains("<polyline"), "{h}");
        assert!(!h.contains("legend-item"), "{h}");
    }

    #[test]
    fn the_summary_fallback_keeps_to_the_incident_scope() {
        let s = |ts: u64, pid: u64, cg: &str, rss: u64| {
            format!(
                r#"{{"type":"summary","ts_ms":{ts},"processes":[{{"pid":{pid},"comm":"p{pid}","cgroup":"{cg}","rss_bytes":{rss}}}]}}"#
            )
        };
        let lines = [
            s(1000, 2, "/lt/child", 1 << 20),
            s(2000, 2, "/lt/child", 8 << 20),
            s(1000, 3, "/ltx", 1 << 20),
            s(2000, 3, "/ltx", 80 << 20),
            r#"{"type":"oom_kill","ts_ms":3000,"constraint":"memcg","memcg":"/lt","victim":{"pid":5,"comm":"v"}}"#.into(),
        ];
        let rec = Recording::from_lines(lines.iter().map(String::as_str));
        let h = render_html(Path::new("/rec"), &rec);
        assert!(h.contains("data-pid=\"2\""), "in /lt/child: {h}");
        assert!(!h.contains("data-pid=\"3\""), "/ltx is not under /lt");
    }

    const STACKS_TXT: &str = "# leaktrace stacks.txt: where pid 5 (leaker) touches its memory\n\
# user stacks of page faults, sampled in the kernel (1 in 16 faults) since it became a suspect;\n\
# symbolized with blazesym from the live process's ELF symbols and DWARF, in a child process.\n\
# 10 sampled faults in 3 distinct stacks. Bytes = samples x 16 x page size (4096 B), an estimate.\n\
\n== stack 1: 6 sampled faults (60.0%), ~0.4 MiB touched\n\
  0x0000000000401000 leak_into_cache+0x1f (src/main.rs:12)\n\
  0x0000000000402000 main+0x10 (src/main.rs:30)\n\
  0x0000000000403000 __libc_start_main+0x80\n\
\n== stack 2: 3 sampled faults (30.0%), ~0.2 MiB touched\n\
  0x0000000000409000 ?? (no symbol)\n\
  0x0000000000401500 operator new(unsigned long)+0x5 (new.cc:1)\n\
  0x0000000000402000 main+0x10 (src/main.rs:31)\n\
  0x0000000000403000 __libc_start_main+0x80\n";

    #[test]
    fn stacks_txt_becomes_a_tree_root_first() {
        let f = parse_stacks_txt(STACKS_TXT);
        assert_eq!(f.root.count, 10);
        let libc = &f.root.children["__libc_start_main"];
        let main = &libc.children["main"];
        assert_eq!((libc.count, main.count), (9, 9), "merged prefixes");
        assert_eq!(main.children["leak_into_cache"].count, 6);
        let new = &main.children["operator new(unsigned long)"];
        assert_eq!(new.children["?? 0x409000"].count, 3);
        assert_eq!(f.root.children["(stacks not listed in stacks.txt)"].count, 1);
        assert_eq!(f.depth, 4);
        assert_eq!(bytes_per_sample(STACKS_TXT), Some(16.0 * 4096.0));
        let svg = flame_svg(&f);
        // all, libc, main, leak_into_cache, operator new, ??, not listed.
        assert_eq!(svg.matches("<g class=\"frame\">").count(), 7, "{svg}");
        assert_eq!(svg.matches("<rect").count(), 7);
        assert!(
            svg.contains("<title>main \u{2014} 9 samples (90.0%)</title>"),
            "{svg}"
        );
        // The root at the bottom: its rect is the lowest.
        let y = |name: &str| -> f64 {
            let at = svg.find(&format!("<title>{name} ")).unwrap();
            let rest = &svg[at..];
            let y = &rest[rest.find(" y=\"").unwrap() + 4..];
            y[..y.find('"').unwrap()].parse().unwrap()
        };
        assert!(y("all") > y("__libc_start_main") && y("main") > y("leak_into_cache"));
    }

    #[test]
    fn a_folded_bundle_gets_a_flame_graph_even_when_the_recording_moved() {
        let dir = tmp("folded");
        let b = dir.join("evidence").join("1-2-leaker");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(
            b.join("stacks.folded"),
            "main;a;b 3\nmain;a;c 1\nmain;d 4\ntorn line\n",
        )
        .unwrap();
        std::fs::write(b.join("stacks.txt"), STACKS_TXT).unwrap();
        let rec = Recording::from_lines([
            r#"{"type":"evidence","ts_ms":500,"pid":5,"comm":"leaker","reason":"rss","detail":"d","dir":"/gone/evidence/1-2-leaker"}"#,
            r#"{"type":"oom_kill","ts_ms":1000,"victim":{"pid":5,"comm":"leaker"},"evidence_dir":"/gone/evidence/1-2-leaker"}"#,
        ]);
        let h = render_html(&dir, &rec);
        assert_eq!(h.matches("class=\"flame\"").count(), 1, "{h}");
        // all, main, a, b, c, d: identical prefixes merged.
        assert_eq!(h.matches("<g class=\"frame\">").count(), 6, "{h}");
        assert!(
            h.contains("<title>a \u{2014} 4 samples (50.0%), ~256.0 KiB touched</title>"),
            "{h}"
        );
        assert!(h.contains("from stacks.folded"));
        assert!(
            h.contains("leak_into_cache+0x1f"),
            "the top stack of stacks.txt, as text"
        );
        let t = render_text(&dir, &rec);
        assert!(t.contains("leak_into_cache+0x1f"), "{t}");
        // Not linked from an incident: a section of its own.
        let rec = Recording::from_lines([
            r#"{"type":"evidence","ts_ms":500,"pid":5,"comm":"leaker","reason":"rss","detail":"d","dir":"/gone/evidence/1-2-leaker"}"#,
        ]);
        let h = render_html(&dir, &rec);
        assert!(h.contains("id=\"evidence-1\""), "{h}");
        assert!(h.contains("href=\"#evidence-1\""), "the timeline links it");
        assert_eq!(h.matches("class=\"flame\"").count(), 1, "{h}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hostile_strings_torn_lines_and_bad_bytes_do_not_break_the_report() {
        let mut rec = Recording::default();
        rec.add_line(br#"{"type":"oom_kill","ts_ms":5,"summary":"killed \u001b[2J","invoker":{"pid":1,"comm":"\u001b]52;c;aGk=\u0007"},"victim":{"pid":2,"comm":"x\u202ey","cmdline":"\u001b[2J<script>alert(1)</script>","cgroup":"/a\u009b"},"victim_was_top_grower":true,"stall":{"diagnosis":"d"}}"#);
        rec.add_line(b"{\"type\":\"summary\",\"ts_ms\":6,\"processes\":[{\"pid\":2,\"comm\":\"\xff\xfe\",\"rss_bytes\":1}]}\n");
        rec.add_line(b"{\"type\":\"summ");
        rec.add_line(b"\xff\xff\xff\n");
        rec.finish();
        assert_eq!((rec.lines, rec.skipped_lines), (4, 2));
        let t = render_text(Path::new("/r"), &rec);
        assert!(t.contains("2 of 4 lines skipped"), "{t}");
        for bad in ['\x1b', '\x07', '\u{9b}', '\u{202e}'] {
            assert!(!t.contains(bad), "{bad:?} in {t}");
        }
        assert!(t.contains("\\x1b[2J"), "made visible: {t}");
        let h = render_html(Path::new("/r"), &rec);
        assert!(!h.contains("<script"), "{h}");
        assert!(!h.contains('\x1b'));
        assert!(h.contains("&lt;script&gt;"));
    }

    #[test]
    fn hostile_strings_in_charts_flames_and_numbers_are_escaped() {
        let dir = tmp("hostile");
        let b = dir.join("b");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(
            b.join("stacks.folded"),
            "main;<script>alert(1)</script>;\"><img src=x onerror=alert(1)> 5\n\u{1b}[2J;x\u{202e}y 2\n",
        )
        .unwrap();
        let inc = format!(
            r#"{{"type":"oom_kill","ts_ms":100000,"summary":"</title><script>x</script>","constraint":"memcg","memcg":"/a\"><script>","memcg_limit_bytes":1e6,"invoker":{{"pid":"<zz0>","comm":"<zz1>"}},"victim":{{"pid":"\"><script>","comm":"<svg onload=x>"}},"victim_history":[[1,1],[2,2]],"growers":[{{"pid":3,"comm":"<script>g","history":[[1,1],[2,5]]}}],"top_grower":{{"pid":"<zz2>","comm":"<script>"}},"victim_was_top_grower":false,"evidence_dir":"{}"}}"#,
            b.display()
        );
        let rec = Recording::from_lines([
            r#"{"type":"evidence","ts_ms":1,"pid":"<zz3>","comm":"<script>","reason":"<zz0>","detail":"<zz1>","dir":"/x/<script>"}"#,
            inc.as_str(),
        ]);
        let h = render_html(&dir, &rec);
        let lower = h.to_ascii_lowercase();
        for bad in [
            "<script",
            "<img",
            "<svg onload",
            "<zz0>",
            "<zz1>",
            "<zz2>",
            "<zz3>",
            "\x1b",
            "\u{202e}",
        ] {
            assert!(!lower.contains(bad), "{bad:?} in {h}");
        }
        assert!(h.contains("data-victim-pid=\"?\""), "a pid that is not a number");
        assert!(h.contains("class=\"flame\""));
        assert!(
            h.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "the frame is shown, escaped"
        );
        assert!(h.contains("\\x1b[2J"), "control characters made visible");
        let t = render_text(&dir, &rec);
        assert!(!t.contains('\x1b'));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn scales_ticks_and_frames_are_sane() {
        assert_eq!(short_bytes((128u64 << 20) as f64), "128 MiB");
        assert_eq!(short_bytes(1.25 * (1u64 << 30) as f64), "1.25 GiB");
        assert_eq!(short_bytes(0.0), "0 B");
        assert_eq!(byte_step(135.0 * (1u64 << 20) as f64), (32u64 << 20) as f64);
        assert_eq!(time_step(60_000, 8), 10_000);
        assert_eq!(time_step(30 * 86_400_000, 7), 4 * 86_400_000);
        assert_eq!(rel_label(-30_000, 10_000), "\u{2212}30 s");
        assert_eq!(rel_label(-120_000, 60_000), "\u{2212}2 min");
        assert_eq!(strip_offset("f(a+0x1)+0x1f (x.c:1)"), "f(a+0x1)");
        assert_eq!(strip_offset("g+0x2"), "g");
        assert_eq!(txt_frame("  0x00000000004011a0 ??"), Some("?? 0x4011a0".into()));
        assert_eq!(txt_frame("  (symbolization failed: x)"), None);
        let mut f = Flame::default();
        let deep: Vec<String> = (0..1000).map(|i| format!("f{i}")).collect();
        f.add(deep.iter().map(String::as_str), 1);
        assert_eq!(f.depth, FLAME_DEPTH);
    }

    #[test]
    fn python_stacks_are_shown_escaped() {
        let b = tmp("pystacks");
        assert_eq!(python_stacks_html(&b), "");
        std::fs::write(
            b.join("python_stacks.txt"),
            "Thread 1 (idle)\n    fetch_big_file (leak.py:7)\n    <script>x</script> (a.py:1)\n",
        )
        .unwrap();
        let h = python_stacks_html(&b);
        assert!(h.contains("fetch_big_file (leak.py:7)"), "{h}");
        assert!(!h.contains("<script>") && h.contains("&lt;script&gt;"), "{h}");
        std::fs::remove_dir_all(&b).unwrap();
    }
}
