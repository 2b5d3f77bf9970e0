//! The stall diagnosis: how long the OOM froze things (report, console,
//! task dump, reclaim of other tasks, PSI) and why.
use super::*;

/// Gaps between report lines longer than this are counted as console time
/// (formatting a line takes microseconds; a console write of ~100 bytes
/// takes about a millisecond even at 1 Mbit/s).
pub const CONSOLE_GAP_FLOOR_NS: u64 = 100_000;

pub(super) fn stall(
    p: &Pending,
    ctx: &dyn OomContext,
    mark_ns: Option<u64>,
    memcg: Option<&str>,
    victim: Option<u32>,
) -> Stall {
    let report_ms = ms_between(p.start_ns, mark_ns);
    let host_then = p.host.clone();
    let console_ms = console_ms(p, host_then.as_ref(), mark_ns);
    let find = |pred: &dyn Fn(&str) -> bool| p.lines.iter().find(|l| pred(&l.text)).map(|l| l.ts_ns);
    let dump_tasks_ms = ms_between(
        find(&|t: &str| t.starts_with("Tasks state")),
        find(&|t: &str| t.starts_with("oom-kill:")),
    );
    let mut tasks = stalled_tasks(p, ctx, mark_ns, memcg, victim);
    let stalled_ms_total: f64 = tasks.iter().map(|t| t.stalled_ms).fold(0.0, |a, b| a + b);
    let stalled_tasks_count = tasks.len();
    tasks.truncate(20);
    let (psi_some, psi_full, psi_window_ms) = match (p.psi_start, ctx.psi()) {
        (Some((s0, f0, t0)), Some((s1, f1, t1))) => (
            Some(s1.saturating_sub(s0)),
            Some(f1.saturating_sub(f0)),
            Some(t1.saturating_sub(t0) as f64 / 1e6),
        ),
        _ => (None, None, None),
    };
    let host = host_then.or_else(|| ctx.host());
    let console_loglevel = host.as_ref().and_then(|h| h.printk).map(|p| p.console_loglevel);
    let consoles = enabled_consoles(host.as_ref());
    let recommendations = recommendations(p, host);
    let diagnosis = diagnose(
        report_ms,
        console_ms,
        &consoles,
        console_loglevel,
        stalled_tasks_count,
        stalled_ms_total,
    );
    Stall {
        report_ms,
        console_ms,
        console_method: "line-gap estimate: gaps between report lines in the invoking task, after the lines \
                         the console printed (level below console_loglevel), less 100 µs each"
            .into(),
        dump_tasks_ms,
        notable: report_ms.unwrap_or(0.0) >= 500.0 || stalled_ms_total >= 1000.0,
        stalled_tasks: tasks,
        stalled_tasks_count,
        stalled_ms_total,
        psi_memory_some_us: psi_some,
        psi_memory_full_us: psi_full,
        psi_window_ms,
        console_loglevel,
        consoles,
        diagnosis,
        recommendations,
    }
}

/// Console time: the gaps between consecutive report lines (printed by
/// the invoking task, which writes each line to the legacy consoles
/// before it formats the next), less a floor for the formatting itself,
/// counted only after lines that the console printed: those whose level
/// is below console_loglevel. Counting every gap would turn preemption
/// during a sub-millisecond report into "console time".
fn console_ms(
    p: &Pending,
    host_then: Option<&crate::host::facts::Facts>,
    mark_ns: Option<u64>,
) -> Option<f64> {
    let levels = host_then.and_then(|h| h.printk);
    let end = mark_ns.unwrap_or(u64::MAX);
    let upto: Vec<&Line> = p.lines.iter().filter(|l| l.ts_ns <= end).collect();
    let line_levels = report_line_levels(
        upto.iter().map(|l| l.text.as_str()),
        levels.map(|l| l.default_message_loglevel).unwrap_or(4),
    );
    let console_ns: u64 = upto
        .windows(2)
        .zip(&line_levels)
        .filter(|(_, lvl)| levels.is_none_or(|l| **lvl < l.console_loglevel))
        .map(|(w, _)| {
            w[1].ts_ns
                .saturating_sub(w[0].ts_ns)
                .saturating_sub(CONSOLE_GAP_FLOOR_NS)
        })
        .sum();
    (p.start_ns.is_some() && upto.len() >= 2).then_some(console_ns as f64 / 1e6)
}

/// Stalled tasks, largest first: kernel reclaim episodes near the report,
/// and the per-process reclaim counters around it. Not the invoker (its
/// time is the report) and not the victim.
fn stalled_tasks(
    p: &Pending,
    ctx: &dyn OomContext,
    mark_ns: Option<u64>,
    memcg: Option<&str>,
    victim: Option<u32>,
) -> Vec<StalledTask> {
    let mut tasks: Vec<StalledTask> = Vec::new();
    let invoker_tgid = p
        .mark
        .as_ref()
        .map(|m| m.tgid)
        .or(p.invoker_tgid)
        .unwrap_or(p.invoker_tid);
    for (tgid, comm, b, e) in &p.stalls {
        if *tgid == invoker_tgid || Some(*tgid) == victim {
            continue;
        }
        let ms = e.saturating_sub(*b) as f64 / 1e6;
        match tasks.iter_mut().find(|t| t.pid == *tgid) {
            Some(t) => t.stalled_ms += ms,
            None => tasks.push(StalledTask {
                pid: *tgid,
                comm: comm.clone(),
                stalled_ms: ms,
                source: StallSource::ReportReclaim,
            }),
        }
    }
    for (pid, comm, ms) in ctx.reclaimers(memcg, 3.0, mark_ns.or(p.start_ns)) {
        if pid == invoker_tgid || Some(pid) == victim {
            continue;
        }
        match tasks.iter_mut().find(|t| t.pid == pid) {
            Some(t) => t.stalled_ms = t.stalled_ms.max(ms),
            None => tasks.push(StalledTask {
                pid,
                comm,
                stalled_ms: ms,
                source: StallSource::SampledReclaim,
            }),
        }
    }
    tasks.sort_by(|a, b| b.stalled_ms.total_cmp(&a.stalled_ms));
    tasks
}

/// The enabled consoles, with their speed when known.
fn enabled_consoles(host: Option<&crate::host::facts::Facts>) -> Vec<String> {
    host.map(|h| {
        h.consoles
            .iter()
            .filter(|c| c.enabled)
            .map(|c| match c.baud {
                Some(b) => format!("{} ({b} baud)", c.name),
                None => c.name.clone(),
            })
            .collect()
    })
    .unwrap_or_default()
}

/// The host's remedies, for the size of the dump this OOM printed (not
/// the host's task count: a memcg OOM lists the memcg's tasks only).
fn recommendations(p: &Pending, host: Option<crate::host::facts::Facts>) -> Vec<String> {
    let dump_rows = p
        .lines
        .iter()
        .skip_while(|l| !l.text.starts_with("Tasks state"))
        .skip(2)
        .take_while(|l| l.text.trim_start().starts_with('['))
        .count();
    host.map(|mut h| {
        h.tasks = dump_rows as u64;
        crate::host::facts::recommendations(&h)
    })
    .unwrap_or_default()
}

/// The printk level of each report line, from where it sits in the report
/// (the kernel prints the header at KERN_WARNING, the stack at the default
/// message level, memory state, task dump and the oom-kill: line at
/// KERN_INFO, and "Killed process" at KERN_ERR).
pub fn report_line_levels<'a>(lines: impl Iterator<Item = &'a str>, default_level: u8) -> Vec<u8> {
    let mut in_stack = false;
    lines
        .map(|l| {
            if l.contains(" invoked oom-killer:") {
                in_stack = true;
                4
            } else if l.contains("Killed process ") {
                3
            } else if l.starts_with("oom-kill:")
                || l.starts_with("Mem-Info")
                || l.starts_with("memory: usage")
                || l.starts_with("Tasks state")
            {
                in_stack = false;
                6
            } else if in_stack {
                default_level
            } else {
                6
            }
        })
        .collect()
}

pub(super) fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

/// One sentence in plain words.
pub fn diagnose(
    report_ms: Option<f64>,
    console_ms: Option<f64>,
    consoles: &[String],
    console_loglevel: Option<u8>,
    stalled: usize,
    stalled_ms: f64,
) -> String {
    let Some(report) = report_ms else {
        return "the OOM report was not captured (rate-limited by the kernel or printk:console unavailable)"
            .into();
    };
    let mut s = format!("the OOM report took {}", fmt_ms(report));
    if let Some(c) = console_ms.filter(|_| report > 0.0) {
        let share = (c / report * 100.0).min(100.0);
        let names = if consoles.is_empty() {
            "the console".to_string()
        } else {
            format!("console {}", consoles.join(", "))
        };
        if share >= 50.0 {
            s += &format!(", {share:.0}% of it writing to {names}");
        } else {
            s += &format!(", {share:.0}% of it console output");
            if let Some(l) = console_loglevel.filter(|l| *l <= 4) {
                s += &format!(" (console_loglevel {l} keeps the report off the console)");
            }
        }
    }
    if stalled > 0 {
        s += &format!(
            "; {stalled} other task{} waited {} in total",
            if stalled == 1 { "" } else { "s" },
            fmt_ms(stalled_ms)
        );
    }
    s
}
