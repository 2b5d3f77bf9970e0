//! The chart of an incident: the victim, the top growers and the memcg
//! against its limit, as static SVG.
use super::*;

/// A line on an incident's chart.
pub(super) struct Plot {
    /// Raw (escaped when drawn).
    pub(super) label: String,
    pub(super) pid: Option<u64>,
    pub(super) class: &'static str,
    pub(super) color: &'static str,
    pub(super) points: Vec<(u64, f64)>,
}

pub(super) const GROWER_COLORS: [&str; GROWERS] = ["#1f77b4", "#ff7f0e", "#2ca02c"];

/// A history's points in time order, as (unix ms, bytes).
pub(super) fn history(h: &[(u64, u64)]) -> Vec<(u64, f64)> {
    let mut p: Vec<(u64, f64)> = h.iter().map(|&(t, b)| (t, b as f64)).collect();
    p.sort_by_key(|p| p.0);
    p.dedup_by_key(|p| p.0);
    p
}

/// The lines of an incident's chart: the memcg's usage, the victim, and
/// the top growers (from the incident, else from the summaries of its
/// scope). A line of fewer than two points is left out, legend and all.
pub(super) fn incident_plots(i: &IncidentView) -> Vec<Plot> {
    let v = i.inc;
    let vpid = v.victim.as_ref().map(|x| x.pid as u64);
    let (vpid_s, vcomm) = victim_of(v);
    let mut plots = vec![Plot {
        label: "memcg usage".into(),
        pid: None,
        class: "series memcg",
        color: "#555",
        points: history(&v.memcg_history),
    }];
    let mut victim = history(&v.victim_history);
    if victim.len() < 2 {
        if let Some(s) = i.nearby.iter().find(|s| Some(s.pid) == vpid) {
            victim = s.points.clone();
        }
    }
    plots.push(Plot {
        label: format!("victim {vcomm} ({vpid_s})"),
        pid: vpid,
        class: "series victim",
        color: "#d62728",
        points: victim,
    });
    let mut growers: Vec<Series> = v
        .growers
        .iter()
        .filter(|g| Some(g.pid as u64) != vpid)
        .map(|g| Series {
            pid: g.pid as u64,
            comm: g.comm.clone(),
            points: history(&g.history),
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
pub(super) const CW: f64 = 1000.0;
pub(super) const CH: f64 = 300.0;
pub(super) const PL: f64 = 76.0;
pub(super) const PR: f64 = 770.0;
pub(super) const PT: f64 = 16.0;
pub(super) const PB: f64 = 262.0;

pub(super) struct Axes {
    pub(super) t0: u64,
    pub(super) t1: u64,
    pub(super) ymax: f64,
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
pub(super) const HALO: &str = "paint-order=\"stroke\" stroke=\"#fff\" stroke-width=\"3\"";

/// One incident's chart, scaled on its own lines and its memcg's limit.
pub(super) fn chart_svg(plots: &[Plot], limit: Option<f64>, kill: u64) -> String {
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
    let t1 = t1.max(kill.saturating_add(kill.saturating_sub(t0) / 40));
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
pub(super) fn chart_ticks(a: &Axes, ystep: f64, kill: u64) -> String {
    let mut s = String::new();
    let mut k = 0.0;
    // ymax is a whole number of steps of about a fifth of the top: a few
    // ticks; bounded again here.
    while k * ystep <= a.ymax * 1.0001 && k < 64.0 {
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
    // Times are at most TS_MAX (so they fit an i64), and time_step cuts
    // the span into at most 8 steps: about 10 ticks; bounded again here.
    let first = -(kill.saturating_sub(a.t0) as f64 / step as f64).floor() as i64;
    let last = (a.t1.saturating_sub(kill) as f64 / step as f64).floor() as i64;
    for k in first..=last.min(first.saturating_add(64)) {
        let d = k.saturating_mul(step as i64);
        let x = a.x((kill as i64).saturating_add(d).max(0) as u64);
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

pub(super) fn plot_svg(a: &Axes, p: &Plot) -> String {
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

pub(super) fn limit_svg(a: &Axes, limit: Option<f64>, drawn: Option<f64>) -> String {
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

pub(super) fn legend_svg(plots: &[Plot]) -> String {
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
pub(super) fn byte_step(top: f64) -> f64 {
    let raw = (top / 5.0).max(1.0);
    2f64.powi(raw.log2().ceil() as i32)
}

/// 1.5 GiB, 32 MiB, 512 B: a tick label.
pub(super) fn short_bytes(v: f64) -> String {
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
pub(super) fn time_step(span_ms: u64, max: u64) -> u64 {
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
        step = step.saturating_mul(2);
    }
    step
}

/// "−30 s", "+2 min", "0": a time relative to the kill.
pub(super) fn rel_label(d_ms: i64, step: u64) -> String {
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
