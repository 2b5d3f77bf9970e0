//! The report as text: one block per incident.
use super::*;

pub(super) fn bytes(v: &Value) -> String {
    v.as_f64().map(crate::fmt::bytes).unwrap_or_else(|| "?".into())
}

/// A number field as text: never a string from the log, so it needs no
/// escaping ("?" when it is missing or not a number).
pub(super) fn num(v: &Value) -> String {
    match (v.as_u64(), v.as_i64(), v.as_f64()) {
        (Some(n), _, _) => n.to_string(),
        (_, Some(n), _) => n.to_string(),
        (_, _, Some(f)) => format!("{f}"),
        _ => "?".into(),
    }
}

/// A string field of an event, escaped for a terminal or a text file.
pub(super) fn t<'a>(v: &'a Value, default: &'a str) -> std::borrow::Cow<'a, str> {
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

pub(super) fn text_incident(s: &mut String, dir: &Path, n: usize, i: &IncidentView) {
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
    if let Some(f) = v["host_ledger"]["findings"].as_array().filter(|f| !f.is_empty()) {
        for x in f.iter().take(3) {
            let _ = writeln!(s, "   host memory no process holds: {}", t(x, ""));
        }
    }
    match v["evidence_dir"].as_str() {
        Some(d) => bundle_lines(s, dir, "evidence", d, i.evidence),
        None => {
            let _ = writeln!(s, "   evidence: none written before the kill");
        }
    }
    if let Some(d) = v["grower_evidence_dir"].as_str() {
        let label = format!(
            "evidence of the process that grew, pid {} ({})",
            num(&v["top_grower"]["pid"]),
            t(&v["top_grower"]["comm"], "?")
        );
        bundle_lines(s, dir, &label, d, None);
    }
}

/// A bundle an incident links: where it is, when and why it was written,
/// and its top stack.
fn bundle_lines(s: &mut String, dir: &Path, label: &str, d: &str, ev: Option<&Value>) {
    let _ = writeln!(s, "   {label}: {}", term(d));
    // The evidence event may have rotated out of the log.
    if let Some(e) = ev {
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
pub(super) fn verdict(v: &Value) -> String {
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
pub(super) fn group_line(g: &Value) -> Option<String> {
    if !g.is_object() {
        return None;
    }
    let kind = match g["kind"].as_str() {
        Some("pool") => "a pool",
        _ => "a group",
    };
    let mut s = format!(
        "{kind} of {} processes led by pid {} ({})",
        num(&g["members"]),
        num(&g["leader_pid"]),
        g["comm"].as_str().unwrap_or("?"),
    );
    // Its size is its Pss (shared pages once); the RSS sum counts shared
    // pages once per member, so it is labelled as a sum.
    if g["pss_bytes"].is_number() {
        let _ = write!(s, ", PSS {} (shared pages once)", bytes(&g["pss_bytes"]));
    }
    let _ = write!(s, ", members' RSS summed {}", bytes(&g["rss_bytes"]));
    Some(s)
}
