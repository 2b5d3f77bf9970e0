//! Finishing a pending incident: the victim, the verdict (was it the
//! process that grew?), the timings and the memcg's window.
use super::*;

pub(super) fn oom_control_out(r: &Record<Control>, ctx: &dyn OomContext, page: u64) -> OomControl {
    let c = &r.event;
    let constraint = match c.constraint {
        Constraint::Known(OomConstraint::None) => ConstraintKind::Global,
        Constraint::Known(OomConstraint::Cpuset) => ConstraintKind::Cpuset,
        Constraint::Known(OomConstraint::MemoryPolicy) => ConstraintKind::Mempolicy,
        Constraint::Known(OomConstraint::Memcg) => ConstraintKind::Memcg,
        Constraint::Unknown(_) => ConstraintKind::Unknown,
    };
    OomControl {
        source: match c.source {
            HookSource::Kprobe => ControlSource::Kprobe,
            HookSource::Trampoline => ControlSource::Fentry,
        },
        constraint,
        totalpages: c.totalpages,
        totalpages_bytes: c.totalpages.saturating_mul(page),
        chosen_pid: r.target,
        chosen_points: c.chosen_points,
        memcg_id: c.memcg_id,
        memcg: c.memcg_id.and_then(|id| ctx.memcg_path(id)),
        order: c.order,
        gfp_mask: format!("{:#x}", c.gfp_mask),
    }
}

pub(super) fn ms_between(a: Option<u64>, b: Option<u64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b >= a => Some((b - a) as f64 / 1e6),
        _ => None,
    }
}

pub(super) fn candidates_out(c: &[Candidate], page: u64) -> Vec<CandidateOut> {
    let mut v: Vec<&Candidate> = c.iter().collect();
    v.sort_by_key(|c| std::cmp::Reverse(c.rss.unwrap_or(0)));
    v.into_iter()
        .take(10)
        .map(|c| CandidateOut {
            pid: c.pid,
            uid: c.uid,
            tgid: c.tgid,
            name: c.name.clone(),
            rss_bytes: c.rss.map(|v| v * page),
            rss_anon_bytes: c.rss_anon.map(|v| v * page),
            rss_file_bytes: c.rss_file.map(|v| v * page),
            rss_shmem_bytes: c.rss_shmem.map(|v| v * page),
            total_vm_bytes: c.total_vm.map(|v| v * page),
            pgtables_bytes: c.pgtables_bytes,
            swapents: c.swapents,
            oom_score_adj: c.oom_score_adj,
        })
        .collect()
}

pub(super) fn finish(p: Pending, ctx: &dyn OomContext, lost: u64) -> Incident {
    let rep: Report = kernel_text::parse(p.lines.iter().map(|l| l.text.as_str()));
    let page = ctx.page_size();
    let mark_ns = p.mark.as_ref().map(|m| m.ts_ns);
    let snap = snapshot_now(&p, ctx);
    let control = p.control.as_ref().map(|r| oom_control_out(r, ctx, page));
    let scope = scope_of(&rep, control.as_ref(), &snap);
    let victim = victim_of(&p, &rep, &snap);
    let victim_rss = victim
        .as_ref()
        .map(|v| v.rss_anon_bytes + v.rss_file_bytes + v.rss_shmem_bytes);
    let history = victim_history(ctx, &snap, victim_rss, mark_ns);
    // The victim's own rise over the window, with its RSS at the kill.
    let victim_growth = victim_growth(&history, snap.birth_ms);
    let victim_rise = victim_growth
        .as_ref()
        .map_or(0, |g| g.to_bytes.saturating_sub(g.from_bytes));
    let verdict = verdict(
        ctx,
        scope.memcg.as_deref(),
        victim.as_ref(),
        mark_ns,
        (victim_rss, victim_rise),
    );
    let (memcg_history, memcg_growth) = memcg_window(
        ctx,
        scope.memcg.as_deref(),
        mark_ns,
        rep.memcg_usage_kb.map(|k| k * 1024),
    );
    let victim_group = snap.group.clone();
    let candidates_rss_bytes = (!rep.candidates.is_empty()).then(|| {
        rep.candidates
            .iter()
            .map(|c| c.rss.unwrap_or(0) * page)
            .sum::<u64>()
    });
    let candidates_note = candidates_note(&rep, candidates_rss_bytes);
    let summary = summarize(
        &scope.constraint,
        scope.memcg.as_deref(),
        &victim,
        &victim_growth,
        &verdict.grower,
        verdict.choice,
    ) + &context_sentences(victim_group.as_ref(), memcg_growth.as_ref());
    let memory_at_oom = super::oom_memory::OomMemory::from_blocks(&rep.memory, page);
    let summary = summary + &memory_sentence(memory_at_oom.as_ref());
    let stall = stall(
        &p,
        ctx,
        mark_ns,
        scope.memcg.as_deref(),
        victim.as_ref().map(|v| v.pid),
    );
    Incident {
        kind: IncidentKind::OomKill,
        ts_ms: ctx.mono_to_unix_ms(mark_ns.or(p.start_ns).unwrap_or(p.created_ns)),
        invoker: invoker_of(&p, &rep, ctx),
        constraint: scope.constraint,
        memcg: scope.memcg,
        memcg_from: scope.memcg_from,
        memcg_usage_bytes: rep.memcg_usage_kb.map(|v| v * 1024),
        memcg_limit_bytes: rep.memcg_limit_kb.map(|v| v * 1024),
        report_complete: rep.invoked.is_some() && rep.killed.is_some(),
        report_lines_dropped: p.lines_dropped,
        candidates: candidates_out(&rep.candidates, page),
        candidates_total: rep.candidates.len(),
        candidates_rss_bytes,
        candidates_note,
        victim_history: history,
        victim_growth,
        top_grower: verdict.grower,
        victim_was_top_grower: verdict.victim_was_top_grower,
        victim_choice: Some(verdict.choice),
        growers: verdict.growers,
        victim_group,
        memcg_history,
        memcg_growth,
        lost_events: lost.saturating_sub(p.lost_before),
        timings_ms: timings(&p, mark_ns),
        freed_bytes: freed_bytes(&p, victim.as_ref()),
        reaper: reaper(&p),
        summary,
        stall,
        evidence_dir: None,
        grower_evidence_dir: None,
        memory_at_oom,
        host_ledger: None,
        after_kill_exits: Vec::new(),
        closed_early: false,
        report_printed_by: p.report_task,
        oom_control: control,
        oom_lock: p.lock_held.as_ref().map(oom_lock_out),
        victim,
        report_lines: p.lines,
    }
}

/// What leaktrace knows of the victim now. Asked again at the end: a
/// victim that lived less than one sample was unknown at the kill, and one
/// that moved to another memcg just before it was killed had its old one;
/// its exit record (comm, memcg, argv, birth) has arrived since. The
/// snapshot from the kill stays if the victim is no longer known.
fn snapshot_now(p: &Pending, ctx: &dyn OomContext) -> ProcSnapshot {
    let fresh = p
        .mark
        .as_ref()
        .and_then(|r| ctx.snapshot(r.target, victim_start(r)));
    richer(fresh, p.snapshot.clone()).unwrap_or_default()
}

/// Two snapshots of one process, the newer first, as one: the newer, with
/// what it lacks taken from the older (a memcg too new to be named yet,
/// an argv or exe not read, samples the model no longer holds). The
/// longer history wins: a victim's history only ever grows until the kill.
pub(super) fn richer(new: Option<ProcSnapshot>, old: Option<ProcSnapshot>) -> Option<ProcSnapshot> {
    let (mut f, old) = match (new, old) {
        (Some(f), Some(o)) => (f, o),
        (f, o) => return f.or(o),
    };
    let fill = |a: &mut String, b: &str| {
        if a.is_empty() {
            *a = b.to_string();
        }
    };
    fill(&mut f.comm, &old.comm);
    fill(&mut f.cmdline, &old.cmdline);
    fill(&mut f.cgroup, &old.cgroup);
    fill(&mut f.exe, &old.exe);
    if old.history.len() > f.history.len() {
        f.history = old.history;
    }
    f.birth_ms = f.birth_ms.or(old.birth_ms);
    f.ns_pid = f.ns_pid.or(old.ns_pid);
    f.group = f.group.or(old.group);
    Some(f)
}

/// The OOM's constraint and memcg, and where the memcg comes from.
struct Scope {
    constraint: String,
    memcg: Option<String>,
    memcg_from: Option<MemcgFrom>,
}

fn scope_of(rep: &Report, control: Option<&OomControl>, snap: &ProcSnapshot) -> Scope {
    // A memcg OOM whose report was rate-limited has no constraint line;
    // its "Memory cgroup out of memory" kill line still says it was one,
    // and the victim's memcg is the best name for it.
    let memcg_kill = rep
        .killed
        .as_ref()
        .is_some_and(|k| k.message.starts_with("Memory cgroup"));
    let constraint = rep
        .constraint
        .as_ref()
        .map(|c| c.kind.clone())
        .unwrap_or_else(|| {
            if memcg_kill {
                "memcg".into()
            } else {
                "unknown".into()
            }
        });
    // The report text is what this host has; where the kernel gave
    // struct oom_control and the report was cut (rate limit), it fills in.
    let constraint = match control {
        Some(c)
            if constraint == "unknown"
                || (rep.constraint.is_none() && c.constraint != ConstraintKind::Global) =>
        {
            c.constraint.as_str().to_string()
        }
        _ => constraint,
    };
    let control_memcg = control
        .filter(|c| c.constraint == ConstraintKind::Memcg)
        .and_then(|c| c.memcg.clone());
    let (memcg, memcg_from) = match rep.constraint.as_ref() {
        Some(c) if c.kind == "memcg" => (
            c.oom_memcg.clone(),
            c.oom_memcg.as_ref().map(|_| MemcgFrom::Report),
        ),
        Some(_) => (None, None),
        None if control_memcg.is_some() => (control_memcg, Some(MemcgFrom::OomControl)),
        None if memcg_kill && !snap.cgroup.is_empty() => (Some(snap.cgroup.clone()), Some(MemcgFrom::Victim)),
        None => (None, None),
    };
    Scope {
        constraint,
        memcg,
        memcg_from,
    }
}

/// The victim as the kernel marked it, named from what leaktrace knew of
/// it, else from the report.
fn victim_of(p: &Pending, rep: &Report, snap: &ProcSnapshot) -> Option<Victim> {
    let r = p.mark.as_ref()?;
    let m = &r.event;
    let comm = if !snap.comm.is_empty() {
        snap.comm.clone()
    } else if let Some(k) = rep.killed.as_ref().filter(|k| k.pid == r.target) {
        k.comm.clone()
    } else {
        rep.constraint
            .as_ref()
            .and_then(|c| c.task.clone())
            .unwrap_or_default()
    };
    let cgroup = if snap.cgroup.is_empty() {
        rep.constraint
            .as_ref()
            .and_then(|c| c.task_memcg.clone())
            .unwrap_or_default()
    } else {
        snap.cgroup.clone()
    };
    Some(Victim {
        attribution: attribute(&cgroup),
        pid: r.target,
        comm,
        exe: snap.exe.clone(),
        ns_pid: snap.ns_pid,
        cmdline: snap.cmdline.clone(),
        cgroup,
        rss_anon_bytes: m.rss_anon_bytes,
        rss_file_bytes: m.rss_file_bytes,
        rss_shmem_bytes: m.rss_shmem_bytes,
        total_vm_bytes: m.total_vm_bytes,
        uid: m.uid,
        pgtables_bytes: m.pgtables_bytes,
        oom_score_adj: m.oom_score_adj,
    })
}

/// The victim's RSS over time, ending with its RSS at the kill.
fn victim_history(
    ctx: &dyn OomContext,
    snap: &ProcSnapshot,
    victim_rss: Option<u64>,
    mark_ns: Option<u64>,
) -> Vec<(u64, u64)> {
    let mut history = snap.history.clone();
    if let (Some(rss), Some(t)) = (victim_rss, mark_ns) {
        // Samples after the kill see a victim being torn down (the reaper
        // frees its memory): they are not part of its growth.
        let kill_ms = ctx.mono_to_unix_ms(t);
        history.retain(|p| p.0 < kill_ms);
        history.push((kill_ms, rss));
    }
    history
}

/// Who grew the most in the OOM's scope, and whether that was the victim.
struct Verdict {
    grower: Option<Grower>,
    growers: Vec<GrowerSeries>,
    victim_was_top_grower: bool,
    choice: VictimChoice,
}

/// The verdict: every process in the OOM's scope, the victim included
/// with its RSS at the kill, compared over the same window ending at the
/// kill (docs/verdict.md).
fn verdict(
    ctx: &dyn OomContext,
    scope: Option<&str>,
    victim: Option<&Victim>,
    mark_ns: Option<u64>,
    (victim_rss, victim_rise): (Option<u64>, u64),
) -> Verdict {
    let ranked = victim
        .zip(mark_ns)
        .map(|(v, t)| {
            ctx.top_growers(
                scope,
                GROWTH_WINDOW_S,
                Some((v.pid, t as f64 / 1e9, victim_rss.unwrap_or(0))),
                4,
            )
        })
        .unwrap_or_default();
    let grower = ranked
        .first()
        .map(|g| g.0.clone())
        .filter(|g| g.growth_bytes as f64 >= MIN_GROWTH);
    let victim_pid = victim.map(|v| v.pid);
    let growers: Vec<GrowerSeries> = ranked
        .into_iter()
        .filter(|(g, _)| Some(g.pid) != victim_pid && g.growth_bytes >= 1 << 20)
        .take(3)
        .map(|(g, history)| GrowerSeries {
            pid: g.pid,
            comm: g.comm,
            growth_bytes: g.growth_bytes,
            history,
        })
        .collect();
    // True when the victim grew the most, or when nothing in scope grew
    // notably (then top_grower is null): never true with another pid.
    let victim_was_top_grower = match (&grower, victim) {
        (None, _) => true,
        (Some(g), Some(v)) => g.pid == v.pid,
        (Some(_), None) => false,
    };
    // Another process grew more: was it a sibling doing the same work?
    let sibling = match (&grower, victim) {
        (Some(g), Some(v)) if g.pid != v.pid => ctx
            .snapshot(g.pid, None)
            .is_some_and(|s| super::sibling::siblings(v, victim_rise, g, &s)),
        _ => false,
    };
    let choice = super::sibling::choice(grower.as_ref(), victim, sibling);
    Verdict {
        grower,
        growers,
        victim_was_top_grower,
        choice,
    }
}

fn timings(p: &Pending, mark_ns: Option<u64>) -> Timings {
    let start = p.start_ns.or(p.sigkill).or(mark_ns);
    Timings {
        to_kill: ms_between(start, mark_ns),
        to_exit: ms_between(start, p.exit_ns),
        to_reaped: ms_between(start, p.reap_finish_ns),
    }
}

/// RSS the kill released: all of it once the victim exited, else what
/// the reaper said it left.
fn freed_bytes(p: &Pending, victim: Option<&Victim>) -> Option<u64> {
    let v = victim?;
    let before = v.rss_anon_bytes + v.rss_file_bytes + v.rss_shmem_bytes;
    if p.exit_ns.is_some() {
        Some(before)
    } else {
        p.reaped.as_ref().map(|r| {
            let after =
                (r.anon_rss_kb.unwrap_or(0) + r.file_rss_kb.unwrap_or(0) + r.shmem_rss_kb.unwrap_or(0))
                    * 1024;
            before.saturating_sub(after)
        })
    }
}

fn reaper(p: &Pending) -> ReaperOutcome {
    if p.reap_finish_ns.is_some() {
        ReaperOutcome::Reaped
    } else if p.reap_skipped {
        ReaperOutcome::Skipped
    } else {
        ReaperOutcome::NotSeen
    }
}

fn oom_lock_out(r: &Record<LockHeld>) -> OomLock {
    OomLock {
        source: match r.event.source {
            HookSource::Kprobe => LockSource::Kretprobe,
            HookSource::Trampoline => LockSource::Fexit,
        },
        held_ms: r.event.return_ns.saturating_sub(r.event.enter_ns) as f64 / 1e6,
    }
}

/// The task whose allocation invoked the OOM killer: the kernel's records
/// name it, the report's first line gives its comm and allocation.
fn invoker_of(p: &Pending, rep: &Report, ctx: &dyn OomContext) -> Invoker {
    let invoker_pid = p
        .mark
        .as_ref()
        .map(|m| m.tgid)
        .filter(|t| *t != 0)
        .or(p.invoker_tgid)
        .unwrap_or(p.invoker_tid);
    let attribution = ctx
        .snapshot(invoker_pid, None)
        .map(|s| attribute(&s.cgroup))
        .unwrap_or_default();
    let invoked = rep.invoked.as_ref();
    Invoker {
        attribution,
        pid: invoker_pid,
        tid: p.invoker_tid,
        comm: invoked.map(|i| i.comm.clone()).unwrap_or(p.invoker_comm.clone()),
        gfp_mask: invoked.map(|i| i.gfp_mask.clone()),
        order: invoked.and_then(|i| i.order),
    }
}

/// The victim's largest rise in the growth window: (from, to, seconds).
/// None when it did not grow notably.
pub(super) fn victim_growth(history: &[(u64, u64)], birth: Option<(u64, u64)>) -> Option<VictimGrowth> {
    let end = history.last()?.0;
    let start = end.saturating_sub((GROWTH_WINDOW_S * 1000.0) as u64);
    let mut pts: Vec<(u64, u64)> = history.iter().copied().filter(|h| h.0 >= start).collect();
    if let Some(b) = birth.filter(|b| b.0 >= start && !pts.contains(b)) {
        let at = pts.partition_point(|p| p.0 < b.0);
        pts.insert(at, b);
    }
    let (mut lo, mut best) = (pts.first()?, None::<((u64, u64), (u64, u64))>);
    for p in &pts {
        if p.1 < lo.1 {
            lo = p;
        }
        if p.1 > lo.1 && best.is_none_or(|(a, b)| p.1 - lo.1 > b.1 - a.1) {
            best = Some((*lo, *p));
        }
    }
    let (a, b) = best?;
    let at_kill = history.last().map(|p| p.1);
    ((b.1 - a.1) as f64 >= MIN_GROWTH).then(|| VictimGrowth {
        from_bytes: a.1,
        to_bytes: b.1,
        secs: b.0.saturating_sub(a.0) as f64 / 1000.0,
        ended_before_kill_s: Some(end.saturating_sub(b.0) as f64 / 1000.0),
        from_birth: birth.is_some_and(|bp| bp.0 == a.0),
        at_kill_bytes: at_kill,
    })
}

/// The OOM memcg's usage in the window before the kill, and its rise.
/// The samples before the kill, then its usage at the kill: the report's
/// "memory: usage" line, or, when the kernel rate-limited the report, the
/// limit it hit (a memcg OOM happens at the limit). The rise is from the
/// lowest sample to the kill.
pub(super) fn memcg_window(
    ctx: &dyn OomContext,
    memcg: Option<&str>,
    mark_ns: Option<u64>,
    usage_at_kill: Option<u64>,
) -> (Vec<(u64, u64)>, Option<MemcgGrowth>) {
    let (Some(m), Some(t)) = (memcg, mark_ns) else {
        return (Vec::new(), None);
    };
    let kill_ms = ctx.mono_to_unix_ms(t);
    let t = t as f64 / 1e9;
    let Some((limit, mut pts)) = ctx.memcg_history(m, t - GROWTH_WINDOW_S, t) else {
        return (Vec::new(), None);
    };
    pts.retain(|p| p.0 < kill_ms);
    pts.push((kill_ms, usage_at_kill.unwrap_or(limit)));
    let low = pts.iter().min_by_key(|p| p.1).copied();
    let growth = match (low, pts.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => Some(MemcgGrowth {
            from_bytes: a.1,
            to_bytes: b.1,
            secs: (b.0 - a.0) as f64 / 1000.0,
            limit_bytes: limit,
        }),
        _ => None,
    };
    (pts, growth)
}
