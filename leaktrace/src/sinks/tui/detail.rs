//! The detail screens Enter opens: a process (its RSS history as a
//! sparkline, memory by kind, its group, its cgroup and limit, its
//! bundles), a group, an OOM incident (the whole summary, the verdict and
//! its reasons, the stall, the kernel's report). Pure: lines of text,
//! every process-controlled string escaped.
use super::rows::rate;
use crate::{
    evidence::EvidenceEvent,
    fmt::{bytes, term, when},
    model::{
        incident::Incident,
        sample::{CgroupRow, GroupRow, ProcessRow},
    },
};

/// One process's RSS at each sample the view saw, oldest first.
pub struct ProcessData<'a> {
    pub pid: u32,
    pub row: Option<&'a ProcessRow>,
    pub history: &'a [u64],
    pub interval_s: f64,
    pub group: Option<&'a GroupRow>,
    pub cgroup: Option<&'a CgroupRow>,
    pub bundles: Vec<&'a EvidenceEvent>,
    /// Evidence events (of any process) the view no longer keeps.
    pub bundles_dropped: u64,
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` values as block characters, lowest to highest.
pub fn spark(values: &[u64], width: usize) -> String {
    let v = &values[values.len().saturating_sub(width)..];
    let (Some(lo), Some(hi)) = (v.iter().min(), v.iter().max()) else {
        return String::new();
    };
    let span = (hi - lo) as f64;
    v.iter()
        .map(|x| {
            let i = if span == 0.0 {
                0
            } else {
                (((x - lo) as f64 / span) * 7.0).round() as usize
            };
            BARS[i.min(7)]
        })
        .collect()
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "not read lately".into(), |b| bytes(b as f64))
}

pub fn process(d: &ProcessData, width: usize) -> Vec<String> {
    let mut v = Vec::new();
    let Some(p) = d.row else {
        v.push(format!(
            "pid {} is not in the latest sample (it exited, or left the top rows)",
            d.pid
        ));
        history_lines(&mut v, d, width);
        return v;
    };
    v.push(format!(
        "pid {}  {}  (parent {}, {} threads)",
        p.pid,
        term(&p.comm),
        p.ppid,
        p.threads
    ));
    v.push(format!("  cmdline  {}", term(&p.cmdline)));
    v.push(format!("  exe      {}", term(&p.exe)));
    v.push(format!(
        "  trend {}  oom_score_adj {}  source {}{}",
        p.trend.as_str(),
        p.oom_score_adj,
        p.source,
        if p.flagged {
            "  crossed a trigger lately"
        } else {
            ""
        }
    ));
    v.push(String::new());
    history_lines(&mut v, d, width);
    v.push(String::new());
    v.push("Memory by kind".into());
    for (k, b) in [
        ("RSS", p.rss_bytes),
        ("anon", p.rss_anon_bytes),
        ("file", p.rss_file_bytes),
        ("shmem", p.rss_shmem_bytes),
        ("swap", p.swap_bytes),
        ("peak RSS", p.peak_rss_bytes),
    ] {
        v.push(format!("  {k:<10} {}", bytes(b as f64)));
    }
    v.push(format!("  {:<10} {}", "PSS", opt(p.pss_bytes)));
    v.push(format!("  {:<10} {}", "USS", opt(p.uss_bytes)));
    v.push(format!(
        "  growth ({})  {} over 10 s, {} over 60 s",
        p.growth_of,
        rate(p.growth_bytes_per_sec),
        rate(p.growth_bytes_per_sec_long)
    ));
    v.push(format!(
        "  faults {:.0}/s  forks {:.1}/s  reclaim stall {:.1} ms/s",
        p.faults_per_sec, p.forks_per_sec, p.reclaim_stall_ms_per_sec
    ));
    v.push(String::new());
    group_lines(&mut v, d.group);
    v.push(String::new());
    cgroup_lines(&mut v, p, d.cgroup);
    v.push(String::new());
    bundle_lines(&mut v, &d.bundles);
    if d.bundles_dropped > 0 {
        v.push(format!(
            "  ({} older evidence events not kept)",
            d.bundles_dropped
        ));
    }
    v
}

fn history_lines(v: &mut Vec<String>, d: &ProcessData, width: usize) {
    let h = d.history;
    let (Some(lo), Some(hi)) = (h.iter().min(), h.iter().max()) else {
        v.push("RSS history: none yet".into());
        return;
    };
    let n = h.len().min(width.saturating_sub(4).max(8));
    v.push(format!(
        "RSS history, last {n} samples ({:.0} s): {} to {}",
        n as f64 * d.interval_s,
        bytes(*lo as f64),
        bytes(*hi as f64)
    ));
    v.push(format!("  {}", spark(h, n)));
}

fn group_lines(v: &mut Vec<String>, g: Option<&GroupRow>) {
    let Some(g) = g else {
        v.push("Group: none (not in a group of the same image)".into());
        return;
    };
    v.push(format!(
        "Group: leader {} {}, {} members",
        g.leader_pid,
        term(&g.comm),
        g.members
    ));
    v.push(format!(
        "  PSS {}  USS {}  RSS sum {}",
        opt(g.pss_bytes),
        opt(g.uss_bytes),
        bytes(g.rss_bytes as f64)
    ));
    v.push(format!(
        "  growth ({}) {} over 10 s, {} over 60 s, {}",
        g.growth_of,
        rate(g.growth_bytes_per_sec),
        rate(g.growth_bytes_per_sec_long),
        g.trend.as_str()
    ));
}

fn cgroup_lines(v: &mut Vec<String>, p: &ProcessRow, c: Option<&CgroupRow>) {
    v.push(format!("Cgroup (v{}): {}", p.cgroup_version, term(&p.cgroup)));
    if let Some(l) = crate::host::attribution::label(&p.attribution) {
        v.push(format!("  {}", term(&l)));
    }
    match c {
        Some(c) => {
            v.push(format!(
                "  {} processes, RSS {}, {}",
                c.processes,
                bytes(c.rss_bytes as f64),
                rate(c.growth_bytes_per_sec)
            ));
            match (c.limit_bytes, c.limit_usage_bytes) {
                (Some(l), Some(u)) => v.push(format!(
                    "  limit {}, usage {} ({:.0}%)",
                    bytes(l as f64),
                    bytes(u as f64),
                    u as f64 * 100.0 / l.max(1) as f64
                )),
                (Some(l), None) => v.push(format!("  limit {}", bytes(l as f64))),
                _ => v.push("  no memory limit followed".into()),
            }
        }
        None => v.push("  limit: not known (not among the cgroups with the most RSS)".into()),
    }
}

fn bundle_lines(v: &mut Vec<String>, b: &[&EvidenceEvent]) {
    if b.is_empty() {
        v.push("Evidence bundles: none since the view started".into());
        return;
    }
    v.push(format!("Evidence bundles: {}", b.len()));
    for e in b {
        let place = match (&e.dir, &e.error) {
            (_, Some(err)) => format!("failed: {}", term(err)),
            (Some(d), None) => term(d).into_owned(),
            (None, None) => "not written (watch without --dir)".into(),
        };
        v.push(format!("  {}  {}  {}", when(e.ts_ms), e.reason, place));
        if !e.detail.is_empty() {
            v.push(format!("    {}", term(&e.detail)));
        }
    }
}

pub fn group(g: Option<&GroupRow>, leader: u32) -> Vec<String> {
    let mut v = Vec::new();
    if g.is_none() {
        v.push(format!("the group led by {leader} is not in the latest sample"));
    }
    group_lines(&mut v, g);
    if let Some(g) = g {
        v.push(format!("  exe {}", term(&g.exe)));
        let pids: Vec<String> = g.pids.iter().map(|p| p.to_string()).collect();
        v.push(format!("  members {}", pids.join(" ")));
    }
    v
}

/// Every line of an incident: summary, verdict and reasons, stall,
/// evidence, the kernel's report.
pub fn incident(i: &Incident) -> Vec<String> {
    let mut v = vec![format!(
        "OOM kill at {}  constraint {}",
        when(i.ts_ms),
        term(&i.constraint)
    )];
    v.push(String::new());
    v.push("Summary".into());
    v.extend(i.summary.lines().map(|l| format!("  {}", term(l))));
    v.push(String::new());
    super::verdict::lines(&mut v, i);
    v.push(String::new());
    super::verdict::stall_lines(&mut v, &i.stall);
    v.push(String::new());
    v.push("Evidence".into());
    for (what, d) in [
        ("victim", &i.evidence_dir),
        ("top grower", &i.grower_evidence_dir),
    ] {
        if let Some(d) = d {
            v.push(format!("  {what}: {}", term(d)));
        }
    }
    if i.evidence_dir.is_none() && i.grower_evidence_dir.is_none() {
        v.push("  no bundle from before the kill".into());
    }
    v.push(String::new());
    v.push(format!(
        "Kernel report: {} lines{}{}",
        i.report_lines.len(),
        if i.report_complete { "" } else { " (incomplete)" },
        if i.report_lines_dropped > 0 {
            format!(", {} dropped", i.report_lines_dropped)
        } else {
            String::new()
        }
    ));
    v.extend(i.report_lines.iter().map(|l| format!("  {}", term(&l.text))));
    v
}

/// `s` cut into rows of at most `w` display cells; the rows after the
/// first are indented, so a continuation reads as one.
pub fn hard_wrap(s: &str, w: usize) -> Vec<String> {
    let w = w.max(8);
    let mut out = vec![String::new()];
    let mut used = 0;
    for c in s.chars() {
        let cw = super::layout::width(c.encode_utf8(&mut [0; 4])) as usize;
        if used + cw > w {
            out.push("    ".into());
            used = 4;
        }
        if let Some(last) = out.last_mut() {
            last.push(c);
        }
        used += cw;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_wrap_into_indented_rows_of_the_width() {
        assert_eq!(hard_wrap("abcdefghijkl", 8), ["abcdefgh", "    ijkl"]);
        assert_eq!(hard_wrap("", 8), [""]);
        let rows = hard_wrap(&"x".repeat(100), 20);
        assert!(rows.iter().all(|r| r.chars().count() <= 20));
        assert_eq!(rows.iter().map(|r| r.trim().len()).sum::<usize>(), 100);
    }

    #[test]
    fn a_sparkline_spans_low_to_high_and_keeps_the_newest() {
        assert_eq!(spark(&[1, 2, 3, 4, 5, 6, 7, 8], 8), "▁▂▃▄▅▆▇█");
        assert_eq!(spark(&[9, 0, 7], 2), "▁█");
        assert_eq!(spark(&[5, 5], 10), "▁▁");
        assert_eq!(spark(&[], 10), "");
    }

    #[test]
    fn a_process_detail_has_history_kinds_group_cgroup_and_bundles() {
        let mut p = super::super::rows::tests::row(42, "leaky\u{1b}[2J", 100, 1048576.0, None);
        p.cgroup = "/leaktrace-test".into();
        let c = CgroupRow {
            cgroup: p.cgroup.clone(),
            attribution: Default::default(),
            processes: 1,
            rss_bytes: 100 << 20,
            growth_bytes_per_sec: 0.0,
            limit_bytes: Some(200 << 20),
            limit_usage_bytes: Some(150 << 20),
        };
        let e = EvidenceEvent {
            kind: "evidence",
            ts_ms: 0,
            pid: 42,
            comm: "leaky".into(),
            reason: "growth",
            detail: String::new(),
            dir: Some("/var/lib/x/evidence/1".into()),
            error: None,
        };
        let d = ProcessData {
            pid: 42,
            row: Some(&p),
            history: &[10 << 20, 20 << 20, 100 << 20],
            interval_s: 1.0,
            group: None,
            cgroup: Some(&c),
            bundles: vec![&e],
            bundles_dropped: 3,
        };
        let text = process(&d, 80).join("\n");
        for want in [
            "pid 42  leaky\\x1b[2J",
            "RSS history, last 3 samples (3 s): 10.0 MiB to 100.0 MiB",
            "▁▂█",
            "anon       50.0 MiB",
            "Group: none",
            "limit 200.0 MiB, usage 150.0 MiB (75%)",
            "/var/lib/x/evidence/1",
            "(3 older evidence events not kept)",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
        assert!(!text.contains('\u{1b}'));
    }
}
