//! An incident's verdict and its reasons, and its stall, as lines for the
//! incident detail screen.
use crate::{
    fmt::{bytes, term},
    model::incident::{Incident, Stall},
};

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.1} ms"))
}

pub fn lines(v: &mut Vec<String>, i: &Incident) {
    v.push("Verdict".into());
    match &i.victim {
        Some(x) => v.push(format!(
            "  victim {} {}  RSS anon {}, file {}, shmem {}  oom_score_adj {}",
            x.pid,
            term(&x.comm),
            bytes(x.rss_anon_bytes as f64),
            bytes(x.rss_file_bytes as f64),
            bytes(x.rss_shmem_bytes as f64),
            x.oom_score_adj
        )),
        None => v.push("  victim: not seen".into()),
    }
    use crate::model::incident::VictimChoice;
    v.push(match i.choice() {
        VictimChoice::TopGrower => "  the victim was the top grower".into(),
        VictimChoice::NothingGrew => "  nothing grew notably: any victim was as good".into(),
        VictimChoice::Sibling => {
            "  the top grower was the victim's sibling doing the same work: the choice did not matter".into()
        }
        VictimChoice::Wrong => "  WRONG VICTIM: another process grew more, and not as the victim's sibling".into(),
    });
    v.push("Reasons".into());
    if let Some(g) = &i.top_grower {
        v.push(format!(
            "  top grower {} {}: +{} ({} to {} in {:.0} s){}",
            g.pid,
            term(&g.comm),
            bytes(g.growth_bytes as f64),
            bytes(g.from_bytes as f64),
            bytes(g.to_bytes as f64),
            g.window_s,
            if g.growing_at_kill {
                ", still growing at the kill"
            } else {
                ""
            }
        ));
    }
    if let Some(g) = &i.victim_growth {
        v.push(format!(
            "  victim grew {} to {} in {:.0} s",
            bytes(g.from_bytes as f64),
            bytes(g.to_bytes as f64),
            g.secs
        ));
    }
    for g in &i.growers {
        v.push(format!(
            "  also grew: {} {} +{}",
            g.pid,
            term(&g.comm),
            bytes(g.growth_bytes as f64)
        ));
    }
    if let Some(g) = &i.victim_group {
        v.push(format!(
            "  victim's {}: leader {} {}, {} members, RSS sum {}",
            g.kind.as_str(),
            g.leader_pid,
            term(&g.comm),
            g.members,
            bytes(g.rss_bytes as f64)
        ));
    }
    memcg_lines(v, i);
    for c in i.candidates.iter().take(5) {
        v.push(format!(
            "  candidate {} {}  RSS {}",
            c.pid,
            term(&c.name),
            c.rss_bytes.map_or_else(|| "-".into(), |b| bytes(b as f64))
        ));
    }
    if i.candidates_total > 5 {
        v.push(format!(
            "  ... {} candidates in the task dump",
            i.candidates_total
        ));
    }
    if let Some(n) = &i.candidates_note {
        v.push(format!("  {}", term(n)));
    }
    v.push(format!(
        "  freed {}  reaper {}  to kill {}, to exit {}, to reaped {}",
        i.freed_bytes.map_or_else(|| "-".into(), |b| bytes(b as f64)),
        i.reaper.as_str(),
        ms(i.timings_ms.to_kill),
        ms(i.timings_ms.to_exit),
        ms(i.timings_ms.to_reaped)
    ));
    if i.lost_events > 0 {
        v.push(format!("  lost events around it: {}", i.lost_events));
    }
}

fn memcg_lines(v: &mut Vec<String>, i: &Incident) {
    let Some(m) = &i.memcg else { return };
    let usage = match (i.memcg_usage_bytes, i.memcg_limit_bytes) {
        (Some(u), Some(l)) => format!(", usage {} of limit {}", bytes(u as f64), bytes(l as f64)),
        (None, Some(l)) => format!(", limit {}", bytes(l as f64)),
        _ => String::new(),
    };
    v.push(format!("  memcg {}{usage}", term(m)));
    if let Some(g) = &i.memcg_growth {
        v.push(format!(
            "  memcg rose {} to {} in {:.0} s",
            bytes(g.from_bytes as f64),
            bytes(g.to_bytes as f64),
            g.secs
        ));
    }
}

pub fn stall_lines(v: &mut Vec<String>, s: &Stall) {
    v.push(format!("Stall{}", if s.notable { " (notable)" } else { "" }));
    if !s.diagnosis.is_empty() {
        v.push(format!("  {}", term(&s.diagnosis)));
    }
    v.push(format!(
        "  report {}  console {} ({})  task dump {}",
        ms(s.report_ms),
        ms(s.console_ms),
        term(&s.console_method),
        ms(s.dump_tasks_ms)
    ));
    v.push(format!(
        "  stalled tasks {} ({:.1} ms in all)",
        s.stalled_tasks_count, s.stalled_ms_total
    ));
    for t in s.stalled_tasks.iter().take(5) {
        v.push(format!(
            "    {} {} {:.1} ms ({})",
            t.pid,
            term(&t.comm),
            t.stalled_ms,
            t.source.as_str()
        ));
    }
    if let (Some(some), Some(full)) = (s.psi_memory_some_us, s.psi_memory_full_us) {
        v.push(format!("  PSI memory some {some} us, full {full} us"));
    }
    for r in &s.recommendations {
        v.push(format!("  - {}", term(r)));
    }
}
