//! `leaktrace report DIR`: a recording turned into something a person
//! reads after the fact: incidents in time order as text, or one
//! self-contained HTML page with an SVG chart of RSS over time.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The directory given to `leaktrace record --dir`.
    pub dir: PathBuf,
    /// Also write one self-contained HTML page (chart and incidents) here.
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
}

/// Every JSON line of events.jsonl and its rotations, oldest first.
pub fn load_events(dir: &Path) -> Result<Vec<Value>> {
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
    let mut out = Vec::new();
    for (_, f) in files {
        let text = std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        out.extend(text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()));
    }
    Ok(out)
}

fn bytes(v: &Value) -> String {
    v.as_f64().map(crate::tui::bytes).unwrap_or_else(|| "?".into())
}

fn when(ms: u64) -> String {
    // UTC, to the second, without a date-time crate.
    let s = ms / 1000;
    let (days, rem) = (s / 86400, s % 86400);
    let (h, m, sec) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if mo <= 2 { 1 } else { 0 };
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{sec:02} UTC")
}

/// The first stack of a bundle's stacks.txt (its header line and frames).
fn top_stack(dir: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(Path::new(dir).join("stacks.txt")).ok()?;
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
}

fn incidents(events: &[Value]) -> Vec<Incident<'_>> {
    let mut v: Vec<Incident> = events
        .iter()
        .filter(|e| e["type"] == "oom_kill")
        .map(|i| {
            let evidence = i["evidence_dir"]
                .as_str()
                .and_then(|d| events.iter().find(|e| e["type"] == "evidence" && e["dir"] == d));
            Incident { v: i, evidence }
        })
        .collect();
    v.sort_by_key(|i| i.v["ts_ms"].as_u64().unwrap_or(0));
    v
}

pub fn render_text(dir: &Path, events: &[Value]) -> String {
    let inc = incidents(events);
    let bundles = events.iter().filter(|e| e["type"] == "evidence").count();
    let ts: Vec<u64> = events.iter().filter_map(|e| e["ts_ms"].as_u64()).collect();
    let mut s = format!(
        "leaktrace report for {}: {} OOM incident(s), {} evidence event(s)",
        dir.display(),
        inc.len(),
        bundles
    );
    if let (Some(a), Some(b)) = (ts.iter().min(), ts.iter().max()) {
        let _ = write!(s, ", recorded {} to {}", when(*a), when(*b));
    }
    s.push('\n');
    for (n, i) in inc.iter().enumerate() {
        let v = i.v;
        let _ = writeln!(
            s,
            "\n== incident {}: {}",
            n + 1,
            when(v["ts_ms"].as_u64().unwrap_or(0))
        );
        let _ = writeln!(s, "   {}", v["summary"].as_str().unwrap_or(""));
        let inv = &v["invoker"];
        let _ = writeln!(
            s,
            "   invoker: pid {} ({}), gfp_mask {}, order {}",
            inv["pid"],
            inv["comm"].as_str().unwrap_or("?"),
            inv["gfp_mask"].as_str().unwrap_or("?"),
            inv["order"]
        );
        let vic = &v["victim"];
        if vic.is_object() {
            let _ = writeln!(
                s,
                "   victim:  pid {} ({}) `{}` in {}; anon {}, file {}, shmem {}, oom_score_adj {}",
                vic["pid"],
                vic["comm"].as_str().unwrap_or("?"),
                vic["cmdline"].as_str().unwrap_or(""),
                vic["cgroup"].as_str().unwrap_or("?"),
                bytes(&vic["rss_anon_bytes"]),
                bytes(&vic["rss_file_bytes"]),
                bytes(&vic["rss_shmem_bytes"]),
                vic["oom_score_adj"]
            );
        }
        let right = v["victim_was_top_grower"].as_bool().unwrap_or(true);
        let g = &v["top_grower"];
        if right && g.is_object() {
            let _ = writeln!(s, "   right victim: yes (it was the process that grew the most)");
        } else if right {
            let _ = writeln!(s, "   right victim: no process grew notably before the OOM");
        } else {
            let _ = writeln!(
                s,
                "   right victim: NO - pid {} ({}) grew {} in the {} s before",
                g["pid"],
                g["comm"].as_str().unwrap_or("?"),
                bytes(&g["growth_bytes"]),
                g["window_s"]
            );
        }
        let _ = writeln!(s, "   stall: {}", v["stall"]["diagnosis"].as_str().unwrap_or("?"));
        match v["evidence_dir"].as_str() {
            Some(d) => {
                let _ = writeln!(s, "   evidence: {d}");
                // The evidence event may have rotated out of the log.
                if let Some(e) = i.evidence {
                    let _ = writeln!(
                        s,
                        "     written {} ({}: {})",
                        when(e["ts_ms"].as_u64().unwrap_or(0)),
                        e["reason"].as_str().unwrap_or("?"),
                        e["detail"].as_str().unwrap_or("")
                    );
                }
                if let Some(st) = top_stack(d) {
                    let _ = writeln!(s, "     top stack ({}):", st[0].trim_start_matches("== "));
                    for l in &st[1..] {
                        let _ = writeln!(s, "       {l}");
                    }
                }
            }
            None => {
                let _ = writeln!(s, "   evidence: none written before the kill");
            }
        }
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// (pid, comm) -> (unix ms, rss bytes) points.
type Series = BTreeMap<(u64, String), Vec<(u64, f64)>>;

/// RSS series per process from the summaries and the victims' histories.
fn series(events: &[Value]) -> Series {
    let mut m: Series = BTreeMap::new();
    for e in events {
        if e["type"] == "summary" {
            let ts = e["ts_ms"].as_u64().unwrap_or(0);
            for p in e["processes"].as_array().into_iter().flatten() {
                let key = (
                    p["pid"].as_u64().unwrap_or(0),
                    p["comm"].as_str().unwrap_or("").to_string(),
                );
                m.entry(key)
                    .or_default()
                    .push((ts, p["rss_bytes"].as_f64().unwrap_or(0.0)));
            }
        } else if e["type"] == "oom_kill" && e["victim"].is_object() {
            let key = (
                e["victim"]["pid"].as_u64().unwrap_or(0),
                e["victim"]["comm"].as_str().unwrap_or("").to_string(),
            );
            let pts = m.entry(key).or_default();
            for h in e["victim_history"].as_array().into_iter().flatten() {
                pts.push((h[0].as_u64().unwrap_or(0), h[1].as_f64().unwrap_or(0.0)));
            }
        }
    }
    for v in m.values_mut() {
        v.sort_by_key(|p| p.0);
        v.dedup_by_key(|p| p.0);
    }
    m
}

pub fn render_html(dir: &Path, events: &[Value]) -> String {
    let all = series(events);
    // The five processes that reached the most RSS.
    let mut top: Vec<_> = all.iter().collect();
    top.sort_by(|a, b| {
        let m = |v: &Vec<(u64, f64)>| v.iter().map(|p| p.1).fold(0.0, f64::max);
        m(b.1).total_cmp(&m(a.1))
    });
    top.truncate(5);
    let incs = incidents(events);
    let (w, h, pad) = (900.0, 320.0, 50.0);
    let ts: Vec<u64> = top
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.0))
        .chain(incs.iter().filter_map(|i| i.v["ts_ms"].as_u64()))
        .collect();
    let (t0, t1) = (
        ts.iter().min().copied().unwrap_or(0),
        ts.iter().max().copied().unwrap_or(1).max(1),
    );
    let ymax = top
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let x = |t: u64| pad + (t.saturating_sub(t0)) as f64 / (t1 - t0).max(1) as f64 * (w - 2.0 * pad);
    let y = |b: f64| h - pad - b / ymax * (h - 2.0 * pad);
    let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"];
    let mut svg = format!(
        "<svg id=\"rss-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\
         <rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/>\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"#888\"/>\
         <text x=\"4\" y=\"{}\" font-size=\"11\">{}</text><text x=\"4\" y=\"{}\" font-size=\"11\">0</text>",
        h - pad,
        w - pad,
        h - pad,
        h - pad,
        pad,
        esc(&crate::tui::bytes(ymax)),
        h - pad
    );
    for (i, ((pid, comm), pts)) in top.iter().enumerate() {
        let c = colors[i % colors.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1)))
            .collect();
        let _ = write!(
            svg,
            "<polyline class=\"series\" data-pid=\"{pid}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"{c}\">{} ({pid})</text>",
            path.join(" "),
            pad + 8.0,
            pad + 4.0 + 14.0 * i as f64,
            esc(comm)
        );
    }
    for (n, i) in incs.iter().enumerate() {
        let t = i.v["ts_ms"].as_u64().unwrap_or(t0);
        let _ = write!(
            svg,
            "<line class=\"oom-marker\" x1=\"{0:.1}\" y1=\"{pad}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"red\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{2:.1}\" y=\"{3}\" font-size=\"11\" fill=\"red\">OOM {4}</text>",
            x(t),
            h - pad,
            x(t) + 3.0,
            pad - 6.0,
            n + 1
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{pad}\" y=\"{}\" font-size=\"11\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text></svg>",
        h - pad + 16.0,
        esc(&when(t0)),
        w - pad,
        h - pad + 16.0,
        esc(&when(t1))
    );
    let mut body = String::new();
    for (n, i) in incs.iter().enumerate() {
        let v = i.v;
        let right = v["victim_was_top_grower"].as_bool().unwrap_or(true);
        let _ = write!(
            body,
            "<section class=\"incident\" id=\"incident-{}\" data-victim-pid=\"{}\"><h2>OOM {}: {}</h2><p>{}</p><ul>\
             <li>invoker: pid {} ({})</li><li>victim: pid {} ({}) <code>{}</code> in <code>{}</code></li>\
             <li class=\"{}\">right victim: {}</li><li>stall: {}</li>",
            n + 1,
            v["victim"]["pid"],
            n + 1,
            esc(&when(v["ts_ms"].as_u64().unwrap_or(0))),
            esc(v["summary"].as_str().unwrap_or("")),
            v["invoker"]["pid"],
            esc(v["invoker"]["comm"].as_str().unwrap_or("?")),
            v["victim"]["pid"],
            esc(v["victim"]["comm"].as_str().unwrap_or("?")),
            esc(v["victim"]["cmdline"].as_str().unwrap_or("")),
            esc(v["victim"]["cgroup"].as_str().unwrap_or("")),
            if right { "ok" } else { "wrong" },
            if right {
                "yes".to_string()
            } else {
                format!(
                    "NO, pid {} ({}) grew {}",
                    v["top_grower"]["pid"],
                    esc(v["top_grower"]["comm"].as_str().unwrap_or("?")),
                    esc(&bytes(&v["top_grower"]["growth_bytes"]))
                )
            },
            esc(v["stall"]["diagnosis"].as_str().unwrap_or(""))
        );
        if let Some(d) = v["evidence_dir"].as_str() {
            let _ = write!(body, "<li>evidence: <code>{}</code>", esc(d));
            if let Some(st) = top_stack(d) {
                let _ = write!(body, "<pre class=\"stack\">{}</pre>", esc(&st.join("\n")));
            }
            body.push_str("</li>");
        } else {
            body.push_str("<li>evidence: none written before the kill</li>");
        }
        body.push_str("</ul></section>");
    }
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>leaktrace report: {}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:1000px}} code,pre{{background:#f4f4f4}} \
         .wrong{{color:#b00;font-weight:bold}} section{{border-top:1px solid #ccc;margin-top:1em}}</style></head>\
         <body><h1>leaktrace report</h1><p>{} &mdash; {} OOM incident(s)</p><h2>RSS over time</h2>{svg}{body}</body></html>\n",
        esc(&dir.display().to_string()),
        esc(&dir.display().to_string()),
        incs.len()
    )
}

pub fn run(args: ReportArgs) -> Result<()> {
    let events = load_events(&args.dir)?;
    print!("{}", render_text(&args.dir, &events));
    if let Some(out) = &args.html {
        std::fs::write(out, render_html(&args.dir, &events))
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_rendering_from_a_synthetic_recording() {
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(when(1_795_304_114_687), "2026-11-21 23:35:14 UTC");
        let events: Vec<Value> = [
            r#"{"type":"summary","ts_ms":1000,"processes":[{"pid":7,"comm":"grower","rss_bytes":1048576}]}"#,
            r#"{"type":"summary","ts_ms":2000,"processes":[{"pid":7,"comm":"grower","rss_bytes":4194304}]}"#,
            r#"{"type":"oom_kill","ts_ms":2500,"summary":"memcg OOM in /a: killed pid 9 (big)","invoker":{"pid":7,"comm":"grower"},"victim":{"pid":9,"comm":"big","cmdline":"big <x>","cgroup":"/a"},"victim_was_top_grower":false,"top_grower":{"pid":7,"comm":"grower","growth_bytes":3145728,"window_s":60.0},"stall":{"diagnosis":"the OOM report took 0.5 ms"},"victim_history":[[1500,2097152]],"evidence_dir":null}"#,
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        let t = render_text(Path::new("/rec"), &events);
        assert!(t.contains("1 OOM incident(s)"), "{t}");
        assert!(
            t.contains("right victim: NO - pid 7 (grower) grew 3.0 MiB"),
            "{t}"
        );
        let h = render_html(Path::new("/rec"), &events);
        assert!(h.contains("id=\"rss-chart\""));
        assert!(h.contains("class=\"oom-marker\""));
        assert!(h.contains("id=\"incident-1\" data-victim-pid=\"9\""));
        assert!(h.contains("big &lt;x&gt;"), "escaped");
        assert_eq!(h.matches("class=\"series\"").count(), 2);
    }
}
