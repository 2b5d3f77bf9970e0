//! The report as one self-contained HTML page: the overview and timeline,
//! each incident with its facts, chart and flame graph, and the bundles
//! not tied to an incident.
use super::*;

use crate::{evidence::EvidenceRecord, model::incident::Incident};

/// For HTML: control and bidi characters made visible first (as in a
/// terminal), then the HTML specials.
pub(super) fn esc(s: &str) -> String {
    term(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// For HTML inside <pre>: each line escaped as by `esc`, the newlines
/// kept as newlines (esc alone shows them as a visible `\x0a`).
pub(super) fn esc_lines(s: &str) -> String {
    s.split('\n').map(esc).collect::<Vec<_>>().join("\n")
}

/// The CSS class and the word of the index for a verdict.
pub(super) fn choice_class(v: &Incident) -> (&'static str, &'static str) {
    use crate::model::incident::VictimChoice;
    match v.choice() {
        VictimChoice::TopGrower | VictimChoice::NothingGrew => ("ok", "yes"),
        VictimChoice::Sibling => ("ok", "sibling"),
        VictimChoice::Wrong => ("wrong", "NO"),
    }
}

/// An optional string field of a record, escaped for HTML.
pub(super) fn h(v: Option<&str>, default: &str) -> String {
    esc(v.unwrap_or(default))
}

/// The victim's pid and comm, raw ("?" when the incident has no victim).
pub(super) fn victim_of(v: &Incident) -> (String, &str) {
    match &v.victim {
        Some(x) => (x.pid.to_string(), x.comm.as_str()),
        None => ("?".into(), "?"),
    }
}

// ---- Charts ----

pub fn render_html(dir: &Path, rec: &Recording) -> String {
    let incs = incidents(rec);
    let entries = entries(&incs);
    let linked: HashMap<&str, usize> = incs
        .iter()
        .flat_map(|i| {
            [
                i.inc.evidence_dir.as_deref(),
                i.inc.grower_evidence_dir.as_deref(),
            ]
            .into_iter()
            .flatten()
            .map(move |d| (d, i.n))
        })
        .collect();
    // Bundles that no incident links to, newest first.
    let mut loose: Vec<&EvidenceRecord> = rec
        .evidence
        .iter()
        .filter(|e| e.dir.as_deref().is_some_and(|d| !linked.contains_key(d)))
        .collect();
    loose.sort_by_key(|e| std::cmp::Reverse(e.ts_ms));
    let mut anchors: HashMap<&str, String> = linked
        .iter()
        .map(|(d, n)| (*d, format!("incident-{n}")))
        .collect();
    for (k, e) in loose.iter().enumerate() {
        if let Some(d) = e.dir.as_deref() {
            anchors.entry(d).or_insert_with(|| format!("evidence-{}", k + 1));
        }
    }
    let mut body = overview_html(dir, rec, &incs, &entries, &anchors);
    for e in &entries {
        if e.is_storm() {
            body += &storm_html(dir, &incs, e);
        } else {
            let i = &incs[e.members[0]];
            body += &incident_html(dir, i.n, i);
        }
    }
    body += &loose_html(dir, &loose);
    page(dir, &body)
}

pub(super) const CSS: &str = "\
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

pub(super) fn page(dir: &Path, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>leaktrace report: {}</title><style>{CSS}</style></head><body>{body}</body></html>\n",
        esc(&dir.display().to_string())
    )
}

/// The head of the page: what was recorded, the timeline of incidents
/// and an index of them.
pub(super) fn overview_html(
    dir: &Path,
    rec: &Recording,
    incs: &[IncidentView],
    entries: &[Entry],
    anchors: &HashMap<&str, String>,
) -> String {
    let storms = entries.iter().filter(|e| e.is_storm()).count();
    let mut s = format!(
        "<h1>leaktrace report</h1><p class=\"sub\"><code>{}</code>: {} OOM incident(s){}, {} evidence \
         bundle(s); <span class=\"recorded\">{}</span>",
        esc(&dir.display().to_string()),
        incs.len(),
        if storms > 0 {
            format!(" in {storms} storm(s) and {} single kill(s)", entries.len() - storms)
        } else {
            String::new()
        },
        rec.evidence.iter().filter(|e| e.dir.is_some()).count(),
        esc(&recorded_words(rec))
    );
    if let Some(f) = filtered_words(rec) {
        let _ = write!(s, ". <span class=\"filtered\">{}</span>", esc(&f));
    }
    if let Some(w) = skipped_words(rec) {
        let _ = write!(s, ". <span class=\"skipped\">{}</span>", esc(&w));
    }
    s += ".</p>";
    s += &losses_html(rec);
    if let (Some(a), Some(b)) = (rec.ts_min, rec.ts_max) {
        s += &timeline_svg(a, b, incs, entries, &rec.evidence, anchors);
        s += &timeline_gaps(&Span::of(a, b), &rec.losses.restarts);
        s += &timeline_losses(&Span::of(a, b), incs, &rec.losses.rises);
        s += "</svg>";
        s += "<p class=\"sub\">Red: an OOM kill, or a band for a storm of kills, with their count \
              (click it for the incident). Blue: an evidence bundle written.";
        if !rec.losses.restarts.is_empty() {
            s += " Grey: the recorder was not running.";
        }
        if s.contains("class=\"timeline-loss\"") {
            s += " Orange: something was lost then (hover for what).";
        }
        s += "</p>";
    }
    if incs.is_empty() {
        s += "<p>No OOM kill in this recording.</p>";
        return s;
    }
    s + &index_html(incs, entries)
}

/// One row per entry: a single kill, or a storm with its count and span.
pub(super) fn index_html(incs: &[IncidentView], entries: &[Entry]) -> String {
    let mut s = String::from(
        "<table class=\"index\"><tr><th>#</th><th>time</th><th>victim</th><th>memcg</th>\
         <th>right victim</th></tr>",
    );
    for e in entries {
        let i = &incs[e.members[0]];
        let v = i.inc;
        let (vpid, vcomm) = victim_of(v);
        if e.is_storm() {
            let c = Choices::of(incs, e);
            let (a, b) = span(incs, e);
            let _ = write!(
                s,
                "<tr class=\"storm-row\"><td><a href=\"#storm-{0}\">storm {0}\u{2013}{1}</a></td><td>{2}, {3}</td>\
                 <td>{4} kills ({5})</td><td><code>{6}</code></td><td class=\"{7}\">{8}</td></tr>",
                i.n,
                incs[e.members[e.members.len() - 1]].n,
                esc(&when(a)),
                duration_words(b.saturating_sub(a)),
                e.members.len(),
                esc(&commands(incs, e, 2)),
                h(v.memcg.as_deref(), "(global)"),
                if c.wrong == 0 { "ok" } else { "wrong" },
                if c.wrong == 0 {
                    "yes".to_string()
                } else {
                    format!("NO for {}", c.wrong)
                }
            );
            continue;
        }
        let (class, word) = choice_class(v);
        let _ = write!(
            s,
            "<tr><td><a href=\"#incident-{0}\">OOM {0}</a></td><td>{1}</td><td>{2} ({3})</td>\
             <td><code>{4}</code></td><td class=\"{5}\">{6}</td></tr>",
            i.n,
            esc(&when(v.ts_ms)),
            esc(vcomm),
            vpid,
            h(v.memcg.as_deref(), "(global)"),
            class,
            word
        );
    }
    s + "</table>"
}

/// A storm: what it was, its one verdict, the first kill in full, and
/// every kill as a row of a folded list.
pub(super) fn storm_html(dir: &Path, incs: &[IncidentView], e: &Entry) -> String {
    let first = &incs[e.members[0]];
    let c = Choices::of(incs, e);
    let mut s = format!(
        "<section class=\"storm\" id=\"storm-{}\" data-kills=\"{}\"><h2>OOM storm: {}</h2>\
         <p class=\"summary\">Right victim: <span class=\"{}\">{}</span></p>\
         <p>Victims' pids: {}</p>",
        first.n,
        e.members.len(),
        esc(&storm_words(incs, e)),
        if c.wrong == 0 { "ok" } else { "wrong" },
        esc(&c.words()),
        pids(incs, e, usize::MAX)
    );
    let _ = write!(
        s,
        "<details><summary>all {} kills</summary><table class=\"index\"><tr><th>#</th><th>time (UTC)</th>\
         <th>victim</th><th>right victim</th><th>victim grew</th></tr>",
        e.members.len()
    );
    for (k, &m) in e.members.iter().enumerate() {
        let i = &incs[m];
        let v = i.inc;
        let (vpid, vcomm) = victim_of(v);
        let (class, word) = choice_class(v);
        let w = when(v.ts_ms);
        // The first kill's own section below carries its anchor.
        let id = if k == 0 { String::new() } else { format!(" id=\"incident-{}\"", i.n) };
        let _ = write!(
            s,
            "<tr{id}><td>{}</td><td>{}.{:03}</td><td>{} ({})</td><td class=\"{class}\">{word}</td><td>{}</td></tr>",
            i.n,
            esc(w.get(11..19).unwrap_or("")),
            v.ts_ms % 1000,
            vpid,
            esc(vcomm),
            v.victim_growth
                .as_ref()
                .map_or("not notably".into(), |g| esc(&crate::model::incident::growth_words(g)))
        );
    }
    s += "</table></details><h3>The first kill of the storm</h3>";
    s += &incident_html(dir, first.n, first);
    s + "</section>"
}

pub(super) const TW: f64 = 1000.0;
pub(super) const TL: f64 = 40.0;
pub(super) const TR: f64 = 960.0;
pub(super) const TAXIS: f64 = 46.0;

/// Where a time falls on the timeline.
pub(super) struct Span {
    pub(super) t0: u64,
    pub(super) t1: u64,
}

impl Span {
    /// The span drawn for records from `a` to `b` (widened when short).
    pub(super) fn of(a: u64, b: u64) -> Span {
        if b.saturating_sub(a) < 2_000 {
            Span {
                t0: a.saturating_sub(30_000),
                t1: b.saturating_add(30_000),
            }
        } else {
            Span { t0: a, t1: b }
        }
    }

    fn x(&self, t: u64) -> f64 {
        TL + t.saturating_sub(self.t0) as f64 / self.t1.saturating_sub(self.t0).max(1) as f64 * (TR - TL)
    }
}

/// The recording's span with wall-clock ticks, one red mark per incident
/// (a link to it) and a blue one per evidence bundle.
pub(super) fn timeline_svg(
    a: u64,
    b: u64,
    incs: &[IncidentView],
    entries: &[Entry],
    ev: &[EvidenceRecord],
    anchors: &HashMap<&str, String>,
) -> String {
    let sp = Span::of(a, b);
    let mut s = format!(
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {TW} 80\" width=\"{TW}\" \
         height=\"80\" role=\"img\"><line class=\"axis\" x1=\"{TL}\" y1=\"{TAXIS}\" x2=\"{TR}\" y2=\"{TAXIS}\"/>"
    );
    let step = time_step(sp.t1.saturating_sub(sp.t0), 7);
    let mut t = sp.t0.div_ceil(step).saturating_mul(step);
    // At most 7 ticks fit the span (time_step); the count is bounded
    // again here so that no span can make this loop long.
    for _ in 0..16 {
        if t > sp.t1 {
            break;
        }
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
        let Some(next) = t.checked_add(step) else { break };
        t = next;
    }
    // One mark per 3 px at most: a thousand bundles in a storm would
    // otherwise pile into one blot (and bloat the page).
    let mut last_x = f64::NEG_INFINITY;
    for e in ev {
        let (Some(d), ts) = (e.dir.as_deref(), e.ts_ms) else {
            continue;
        };
        if (sp.x(ts) - last_x).abs() < 3.0 {
            continue;
        }
        last_x = sp.x(ts);
        let _ = write!(
            s,
            "<a href=\"#{}\"><g class=\"timeline-evidence\"><title>evidence for pid {} ({}) at {}: {}</title>\
             <path d=\"M{:.1} {} l-5 9 h10 z\" fill=\"#1f77b4\"/></g></a>",
            anchors.get(d).map(String::as_str).unwrap_or(""),
            e.pid,
            esc(&e.comm),
            esc(&when(ts)),
            esc(&e.reason),
            sp.x(ts),
            TAXIS + 4.0
        );
    }
    s += &timeline_marks(&sp, incs, entries);
    s
}

/// A grey band on the timeline for each time the recorder was not
/// running (from the newest record before a restart to the restart).
pub(super) fn timeline_gaps(sp: &Span, restarts: &[Restart]) -> String {
    let mut s = String::new();
    for r in restarts {
        let from = r.from.unwrap_or(r.at).min(r.at);
        let (x0, x1) = (sp.x(from), sp.x(r.at));
        let _ = write!(
            s,
            "<g class=\"timeline-gap\"><title>{}</title><rect x=\"{x0:.1}\" y=\"{}\" width=\"{:.1}\" \
             height=\"10\" fill=\"#999\" fill-opacity=\"0.5\"/><line x1=\"{x1:.1}\" y1=\"{}\" x2=\"{x1:.1}\" \
             y2=\"{}\" stroke=\"#666\" stroke-width=\"1.5\" stroke-dasharray=\"3 2\"/></g>",
            esc(&restart_words(r)),
            TAXIS - 5.0,
            (x1 - x0).max(1.5),
            TAXIS - 14.0,
            TAXIS + 8.0
        );
    }
    s
}

/// An orange mark under the axis where something was lost: an incident
/// closed early, with lost kernel events or an incomplete kernel report,
/// and each summary whose loss counters rose since the one before.
pub(super) fn timeline_losses(sp: &Span, incs: &[IncidentView], rises: &[(u64, String)]) -> String {
    let mut s = String::new();
    let mut mark = |ts: u64, what: &str| {
        let x = sp.x(ts);
        let _ = write!(
            s,
            "<g class=\"timeline-loss\"><title>{}: {}</title><path d=\"M{:.1} {:.1} l5 8 l-10 0 z\" \
             fill=\"#e80\"/></g>",
            esc(&when(ts)),
            esc(what),
            x,
            TAXIS + 2.0
        );
    };
    for i in incs {
        let v = i.inc;
        let mut what = Vec::new();
        if v.closed_early {
            what.push("incident closed early".to_string());
        }
        if v.lost_events > 0 {
            what.push(format!("{} kernel events lost", v.lost_events));
        }
        if !v.report_complete {
            what.push("kernel report not captured whole".to_string());
        }
        if !what.is_empty() {
            mark(v.ts_ms, &what.join("; "));
        }
    }
    for (ts, what) in rises {
        mark(*ts, what);
    }
    s
}

/// The losses the recording shows, as a list under the overview.
pub(super) fn losses_html(rec: &Recording) -> String {
    let l = rec.losses.lines();
    if l.is_empty() {
        return String::new();
    }
    let mut s = String::from("<div class=\"losses\"><b>Losses the recording shows:</b><ul>");
    for x in l {
        let _ = write!(s, "<li>{}</li>", esc(&x));
    }
    s + "</ul></div>"
}

/// A cluster of entries on the timeline: from x0 to x1, how many kills,
/// the anchor of its first entry and a title.
struct Blob {
    x0: f64,
    x1: f64,
    kills: usize,
    anchor: String,
    label: String,
    titles: Vec<String>,
}

/// Closest two clusters come (px): two labels of up to 6 characters
/// (38 px) centred on them never overlap.
const LABEL_GAP: f64 = 44.0;

/// One red mark per entry (a single kill, or a band from a storm's first
/// to its last kill), merged with its neighbours when closer than a label:
/// a merged cluster is one band labelled with its count of kills, so that
/// no two marks or labels overlap however many kills there were.
pub(super) fn timeline_marks(sp: &Span, incs: &[IncidentView], entries: &[Entry]) -> String {
    let mut blobs: Vec<Blob> = Vec::new();
    for e in entries {
        let (a, b) = span(incs, e);
        let first = &incs[e.members[0]];
        let (x0, x1) = (sp.x(a), sp.x(b));
        let (anchor, title) = if e.is_storm() {
            (format!("storm-{}", first.n), format!("OOM storm: {}", storm_words(incs, e)))
        } else {
            let (vpid, vcomm) = victim_of(first.inc);
            (
                format!("incident-{}", first.n),
                format!("OOM {} at {}: killed pid {} ({})", first.n, when(a), vpid, vcomm),
            )
        };
        match blobs.last_mut() {
            Some(c) if x0 - c.x1 < LABEL_GAP => {
                c.x1 = c.x1.max(x1);
                c.kills += e.members.len();
                if c.titles.len() < 5 {
                    c.titles.push(title);
                }
            }
            _ => blobs.push(Blob {
                x0,
                x1,
                kills: e.members.len(),
                anchor,
                label: first.n.to_string(),
                titles: vec![title],
            }),
        }
    }
    let mut s = String::new();
    for c in &blobs {
        let label = if c.kills == 1 {
            c.label.clone()
        } else {
            format!("\u{d7}{}", c.kills)
        };
        let more = if c.titles.len() < 5 { "" } else { "\n…" };
        let w = 8.0 + 6.0 * label.chars().count() as f64;
        let cx = (c.x0 + c.x1) / 2.0;
        let _ = write!(
            s,
            "<a href=\"#{}\"><g class=\"timeline-mark\" data-kills=\"{}\"><title>{}{more}</title>\
             <rect x=\"{:.1}\" y=\"22\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#b00\" fill-opacity=\"0.6\"/>\
             <line x1=\"{cx:.1}\" y1=\"18\" x2=\"{cx:.1}\" y2=\"{TAXIS}\" stroke=\"#b00\" stroke-width=\"2\"/></g>\
             <g class=\"timeline-label\"><rect x=\"{:.1}\" y=\"9\" width=\"{w:.1}\" height=\"18\" rx=\"9\" \
             fill=\"#b00\"/><text x=\"{cx:.1}\" y=\"22\" text-anchor=\"middle\" fill=\"#fff\" font-size=\"10\" \
             font-weight=\"bold\">{}</text></g></a>",
            c.anchor,
            c.kills,
            esc(&c.titles.join("\n")),
            c.x0 - 1.0,
            (c.x1 - c.x0 + 2.0).max(2.0),
            TAXIS - 22.0,
            cx - w / 2.0,
            esc(&label)
        );
    }
    s
}

pub(super) fn incident_html(dir: &Path, n: usize, i: &IncidentView) -> String {
    let v = i.inc;
    let kill = v.ts_ms;
    let (vpid, vcomm) = victim_of(v);
    let mut s = format!(
        "<section class=\"incident\" id=\"incident-{n}\" data-victim-pid=\"{}\"><h2>OOM {n}: {} ({}) \
         killed<span class=\"when\">{}</span></h2><p class=\"summary\">{}</p>",
        vpid,
        esc(vcomm),
        vpid,
        esc(&when(kill)),
        esc(&v.summary)
    );
    s += &facts_html(i);
    let plots = incident_plots(i);
    let limit = v.memcg_limit_bytes.map(|l| l as f64);
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
    if let Some(d) = &v.evidence_dir {
        let who = format!("pid {vpid} ({vcomm})");
        s += &bundle_html(dir, d, &who);
    }
    // The culprit's bundle, when the killer chose another process.
    if let Some(d) = &v.grower_evidence_dir {
        let g = v.top_grower.as_ref();
        let who = format!(
            "pid {} ({}), the process that grew",
            opt(g.map(|g| g.pid)),
            g.map_or("?", |g| g.comm.as_str())
        );
        s += &bundle_html(dir, d, &who);
    }
    s + "</section>"
}

pub(super) fn facts_html(i: &IncidentView) -> String {
    let v = i.inc;
    let mut rows: Vec<(&str, String)> = Vec::new();
    if let Some(vic) = &v.victim {
        rows.push((
            "victim",
            format!(
                "pid {} (<b>{}</b>) <code>{}</code> in <code>{}</code>; anon {}, file {}, shmem {}",
                vic.pid,
                esc(&vic.comm),
                esc(&vic.cmdline),
                esc(&vic.cgroup),
                bytes(vic.rss_anon_bytes),
                bytes(vic.rss_file_bytes),
                bytes(vic.rss_shmem_bytes)
            ),
        ));
    }
    if let Some(g) = group_line(v.victim_group.as_ref()) {
        rows.push(("victim's group", esc(&g)));
    }
    rows.push((
        "right victim",
        format!(
            "<span class=\"{}\">{}</span>",
            choice_class(v).0,
            esc(&verdict(v))
        ),
    ));
    if let Some(g) = &v.victim_growth {
        rows.push((
            "victim grew",
            esc(&crate::model::incident::growth_words(g)),
        ));
    }
    let inv = &v.invoker;
    rows.push((
        "invoker",
        format!(
            "pid {} ({}), gfp_mask {}, order {}",
            inv.pid,
            esc(&inv.comm),
            h(inv.gfp_mask.as_deref(), "?"),
            opt(inv.order)
        ),
    ));
    let mut mem = format!("constraint {}", esc(&v.constraint));
    if let Some(m) = &v.memcg {
        let _ = write!(
            mem,
            ", memcg <code>{}</code>: usage {} of limit {}",
            esc(m),
            opt(v.memcg_usage_bytes.map(bytes)),
            opt(v.memcg_limit_bytes.map(bytes))
        );
    }
    if let Some(f) = v.freed_bytes {
        let _ = write!(mem, "; the kill freed {}", bytes(f));
    }
    rows.push(("memory", mem));
    rows.push(("stall", esc(&v.stall.diagnosis)));
    rows.push(("evidence", evidence_fact(i)));
    let lost = incident_losses(v);
    if !lost.is_empty() {
        rows.push(("lost", esc(&lost.join("; "))));
    }
    let mut s = String::from("<table class=\"facts\">");
    for (k, val) in rows {
        let _ = write!(s, "<tr><th>{k}</th><td>{val}</td></tr>");
    }
    s + "</table>"
}

pub(super) fn evidence_fact(i: &IncidentView) -> String {
    let grower = i
        .inc
        .grower_evidence_dir
        .as_deref()
        .map(|g| format!("; of the process that grew: <code>{}</code> (below)", esc(g)))
        .unwrap_or_default();
    let Some(d) = i.inc.evidence_dir.as_deref() else {
        return format!("none written for the victim before the kill{grower}");
    };
    let mut s = format!("<code>{}</code>", esc(d));
    if let Some(e) = i.evidence {
        let _ = write!(
            s,
            ", written {} ({}: {})",
            esc(&when(e.ts_ms)),
            esc(&e.reason),
            esc(&e.detail)
        );
    }
    s + &grower
}

/// A bundle's flame graph and its top stack as text. `who` is raw.
pub(super) fn bundle_html(rec_dir: &Path, d: &str, who: &str) -> String {
    let b = match bundle_path(rec_dir, d) {
        BundleAt::Inside(b) => b,
        BundleAt::Outside => {
            return format!("<p class=\"note\">Bundle <code>{}</code>: {OUTSIDE}.</p>", esc(d));
        }
        BundleAt::Missing => {
            return format!(
                "<p class=\"note\">Bundle <code>{}</code> not found: removed by the evidence budget, or the \
                 recording was moved without it.</p>",
                esc(d)
            );
        }
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
            esc_lines(&st.join("\n"))
        );
    }
    s += &python_stacks_html(&b);
    s + "</div>"
}

/// Most bytes of python_stacks.txt shown.
pub(super) const PY_STACKS_CAP: u64 = 64 * 1024;

/// A CPython bundle's python_stacks.txt (py-spy's dump, escaped when it
/// was written, escaped again for HTML here), open by default: for a
/// Python program it says more than the interpreter's native stacks.
pub(super) fn python_stacks_html(b: &Path) -> String {
    match read_bundle_file(b, "python_stacks.txt", PY_STACKS_CAP) {
        Some(t) => format!(
            "<details open><summary>Python stacks, as in python_stacks.txt</summary><pre class=\"stack\">{}</pre></details>",
            esc_lines(&t)
        ),
        None => String::new(),
    }
}

/// Evidence bundles that no incident links to (a leak caught before any
/// OOM, or none at all): the newest with their flame graph.
pub(super) fn loose_html(dir: &Path, loose: &[&EvidenceRecord]) -> String {
    if loose.is_empty() {
        return String::new();
    }
    let mut s =
        String::from("<section class=\"evidence-list\"><h2>Evidence bundles not tied to an OOM kill</h2>");
    for (k, e) in loose.iter().enumerate().take(LOOSE_LISTED) {
        let d = e.dir.as_deref().unwrap_or("");
        let _ = write!(
            s,
            "<div class=\"evidence\" id=\"evidence-{}\" data-pid=\"{}\"><h3>pid {} ({}) at {}: {}</h3>\
             <p>{} <code>{}</code></p>",
            k + 1,
            e.pid,
            e.pid,
            esc(&e.comm),
            esc(&when(e.ts_ms)),
            esc(&e.reason),
            esc(&e.detail),
            esc(d)
        );
        if k < LOOSE_FLAMES {
            let who = format!("pid {} ({})", e.pid, e.comm);
            s += &bundle_html(dir, d, &who);
        }
        s += "</div>";
    }
    if loose.len() > LOOSE_LISTED {
        let _ = write!(
            s,
            "<p class=\"note\">{} older bundles not listed.</p>",
            loose.len() - LOOSE_LISTED
        );
    }
    s + "</section>"
}
