//! The report as text: one block per incident.
use super::*;

use crate::{
    evidence::EvidenceRecord,
    model::incident::{GroupInfo, GroupKind, Incident},
};

pub(super) fn bytes(n: u64) -> String {
    crate::fmt::bytes(n as f64)
}

/// An optional number as text ("?" when it is missing).
pub(super) fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
}

/// An optional string field of a record, escaped for a terminal or a text
/// file.
pub(super) fn t<'a>(v: Option<&'a str>, default: &'a str) -> std::borrow::Cow<'a, str> {
    term(v.unwrap_or(default))
}

/// The skipped lines in words: "N of M lines skipped (...): 2 not JSON
/// (...); 1 ..." (None when none was).
pub(super) fn skipped_words(rec: &Recording) -> Option<String> {
    let n = rec.skipped_lines();
    if n == 0 {
        return None;
    }
    let why: Vec<String> = rec
        .skipped
        .iter()
        .map(|(k, n)| format!("{n} {}", k.describe()))
        .collect();
    Some(format!(
        "{n} of {} lines skipped (not readable as leaktrace v{} records): {}",
        rec.lines,
        crate::sinks::SCHEMA_VERSION,
        why.join("; ")
    ))
}

/// Where and when the recording was made, in words (raw: escape it):
/// "host h1, kernel 6.18.0, recorded A to B (3 min 12 s)".
pub(super) fn recorded_words(rec: &Recording) -> String {
    let mut w = Vec::new();
    w.push(format!("host {}", rec.host.as_deref().unwrap_or("(not recorded)")));
    w.push(format!("kernel {}", rec.kernel.as_deref().unwrap_or("(not recorded)")));
    if let (Some(a), Some(b)) = (rec.ts_min, rec.ts_max) {
        w.push(format!(
            "recorded {} to {} ({})",
            when(a),
            when(b),
            duration_words(b.saturating_sub(a))
        ));
    }
    w.join(", ")
}

/// The filter in words, with how many incidents it kept (raw).
pub(super) fn filtered_words(rec: &Recording) -> Option<String> {
    rec.filtered.as_ref().map(|f| {
        format!(
            "showing {}: {} of {} OOM incident(s)",
            f,
            rec.incidents.len(),
            rec.total_incidents
        )
    })
}

pub fn render_text(dir: &Path, rec: &Recording) -> String {
    let inc = incidents(rec);
    let entries = entries(&inc);
    let storms = entries.iter().filter(|e| e.is_storm()).count();
    let mut s = format!(
        "leaktrace report for {}: {} OOM incident(s){}, {} evidence event(s)\n   {}\n",
        term(&dir.display().to_string()),
        inc.len(),
        if storms > 0 {
            format!(" ({storms} storm(s) among them)")
        } else {
            String::new()
        },
        rec.evidence.len(),
        term(&recorded_words(rec))
    );
    if let Some(f) = filtered_words(rec) {
        let _ = writeln!(s, "   {}", term(&f));
    }
    if let Some(w) = skipped_words(rec) {
        let _ = writeln!(s, "({w})");
    }
    let losses = rec.losses.lines();
    if !losses.is_empty() {
        let _ = writeln!(s, "losses the recording shows:");
        for l in &losses {
            let _ = writeln!(s, "   {l}");
        }
        for r in &rec.losses.restarts {
            let _ = writeln!(s, "   {}", restart_words(r));
        }
    }
    for e in &entries {
        if e.is_storm() {
            text_storm(&mut s, &inc, e);
        } else {
            text_incident(&mut s, dir, inc[e.members[0]].n, &inc[e.members[0]]);
        }
    }
    s
}

/// A storm as one block: its kills, span, one verdict and the victims,
/// with the first kill's summary (`--incident N` shows any one in full).
pub(super) fn text_storm(s: &mut String, inc: &[IncidentView], e: &Entry) {
    let first = &inc[e.members[0]];
    let last = &inc[e.members[e.members.len() - 1]];
    let _ = writeln!(
        s,
        "\n== OOM storm, incidents {} to {}: {}",
        first.n,
        last.n,
        term(&storm_words(inc, e))
    );
    let _ = writeln!(s, "   right victim: {}", Choices::of(inc, e).words());
    let _ = writeln!(s, "   victims' pids: {}", pids(inc, e, TEXT_PIDS));
    let _ = writeln!(s, "   first kill: {}", term(&first.inc.summary));
    let _ = writeln!(
        s,
        "   (leaktrace report --incident N shows one of them in full)"
    );
}

/// A restart of the recorder in words (raw: numbers and dates only).
pub(super) fn restart_words(r: &Restart) -> String {
    let from = r
        .from
        .map(|f| format!(", nothing recorded since {}", when(f)))
        .unwrap_or_default();
    let boot = if r.new_boot { " after a reboot" } else { "" };
    format!("recorder started again at {}{boot}{from}", when(r.at))
}

pub(super) fn text_incident(s: &mut String, dir: &Path, n: usize, i: &IncidentView) {
    let v = i.inc;
    let _ = writeln!(s, "\n== incident {n}: {}", when(v.ts_ms));
    let _ = writeln!(s, "   {}", term(&v.summary));
    let inv = &v.invoker;
    let _ = writeln!(
        s,
        "   invoker: pid {} ({}), gfp_mask {}, order {}",
        inv.pid,
        term(&inv.comm),
        t(inv.gfp_mask.as_deref(), "?"),
        opt(inv.order)
    );
    if let Some(vic) = &v.victim {
        let _ = writeln!(
            s,
            "   victim:  pid {} ({}) `{}` in {}; anon {}, file {}, shmem {}, oom_score_adj {}",
            vic.pid,
            term(&vic.comm),
            term(&vic.cmdline),
            term(&vic.cgroup),
            bytes(vic.rss_anon_bytes),
            bytes(vic.rss_file_bytes),
            bytes(vic.rss_shmem_bytes),
            vic.oom_score_adj
        );
    }
    if let Some(g) = group_line(v.victim_group.as_ref()) {
        let _ = writeln!(s, "   victim's group: {}", term(&g));
    }
    if let Some(m) = &v.memcg {
        let _ = writeln!(
            s,
            "   memcg:   {}: usage {} of limit {}",
            term(m),
            opt(v.memcg_usage_bytes.map(bytes)),
            opt(v.memcg_limit_bytes.map(bytes))
        );
    }
    let _ = writeln!(s, "   right victim: {}", term(&verdict(v)));
    let _ = writeln!(s, "   stall: {}", term(&v.stall.diagnosis));
    if let Some(l) = &v.host_ledger {
        for x in l.findings.iter().take(3) {
            let _ = writeln!(s, "   host memory no process holds: {}", term(x));
        }
    }
    for l in incident_losses(v) {
        let _ = writeln!(s, "   lost: {l}");
    }
    match &v.evidence_dir {
        Some(d) => bundle_lines(s, dir, "evidence", d, i.evidence),
        None => {
            let _ = writeln!(s, "   evidence: none written before the kill");
        }
    }
    if let Some(d) = &v.grower_evidence_dir {
        let g = v.top_grower.as_ref();
        let label = format!(
            "evidence of the process that grew, pid {} ({})",
            opt(g.map(|g| g.pid)),
            t(g.map(|g| g.comm.as_str()), "?")
        );
        bundle_lines(s, dir, &label, d, None);
    }
}

/// What one incident says it lost, in words (raw: numbers only).
pub(super) fn incident_losses(v: &Incident) -> Vec<String> {
    let mut l = Vec::new();
    if v.lost_events > 0 {
        l.push(format!("{} kernel events while it was assembled", v.lost_events));
    }
    if v.closed_early {
        l.push("closed early, before it was complete".into());
    }
    if !v.report_complete {
        l.push("the kernel's report was not captured whole".into());
    }
    if v.report_lines_dropped > 0 {
        l.push(format!("{} kernel report lines not kept", v.report_lines_dropped));
    }
    l
}

/// A bundle an incident links: where it is, when and why it was written,
/// and its top stack.
fn bundle_lines(s: &mut String, dir: &Path, label: &str, d: &str, ev: Option<&EvidenceRecord>) {
    let _ = writeln!(s, "   {label}: {}", term(d));
    // The evidence event may have rotated out of the log.
    if let Some(e) = ev {
        let _ = writeln!(
            s,
            "     written {} ({}: {})",
            when(e.ts_ms),
            term(&e.reason),
            term(&e.detail)
        );
    }
    match bundle_path(dir, d) {
        BundleAt::Inside(b) => {
            if let Some(st) = top_stack(&b) {
                let _ = writeln!(s, "     top stack ({}):", term(st[0].trim_start_matches("== ")));
                for l in &st[1..] {
                    let _ = writeln!(s, "       {}", term(l));
                }
            }
        }
        BundleAt::Outside => {
            let _ = writeln!(s, "     {OUTSIDE}");
        }
        BundleAt::Missing => {}
    }
}

/// Said of a bundle whose directory leads out of the recording.
pub(super) const OUTSIDE: &str = "bundle outside the recording: not read";

/// Whether the right process was killed, in words (raw: escape it).
pub(super) fn verdict(v: &Incident) -> String {
    use crate::model::incident::VictimChoice;
    let g = &v.top_grower;
    match v.choice() {
        VictimChoice::TopGrower => "yes (it was the process that grew the most)".into(),
        VictimChoice::NothingGrew => "no process grew notably before the OOM".into(),
        VictimChoice::Sibling => format!(
            "the choice did not matter: pid {} ({}) grew {} in the {} s before, but it is a sibling \
             doing the same work",
            opt(g.as_ref().map(|g| g.pid)),
            g.as_ref().map_or("?", |g| g.comm.as_str()),
            opt(g.as_ref().map(|g| bytes(g.growth_bytes))),
            opt(g.as_ref().map(|g| g.window_s))
        ),
        VictimChoice::Wrong => format!(
            "NO - pid {} ({}) grew {} in the {} s before",
            opt(g.as_ref().map(|g| g.pid)),
            g.as_ref().map_or("?", |g| g.comm.as_str()),
            opt(g.as_ref().map(|g| bytes(g.growth_bytes))),
            opt(g.as_ref().map(|g| g.window_s))
        ),
    }
}

/// The victim's process group or pool, in words (raw: escape it).
pub(super) fn group_line(g: Option<&GroupInfo>) -> Option<String> {
    let g = g?;
    let kind = match g.kind {
        GroupKind::Pool => "a pool",
    };
    let mut s = format!(
        "{kind} of {} processes led by pid {} ({})",
        g.members, g.leader_pid, g.comm,
    );
    // Its size is its Pss (shared pages once); the RSS sum counts shared
    // pages once per member, so it is labelled as a sum.
    if let Some(p) = g.pss_bytes {
        let _ = write!(s, ", PSS {} (shared pages once)", bytes(p));
    }
    let _ = write!(s, ", members' RSS summed {}", bytes(g.rss_bytes));
    Some(s)
}
