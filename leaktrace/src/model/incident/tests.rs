use super::*;

/// Records the scopes asked for, to check them.
#[derive(Default)]
struct Ctx(std::cell::RefCell<Vec<Option<String>>>);
impl OomContext for Ctx {
    fn snapshot(&self, pid: u32, _start: Option<u64>) -> Option<ProcSnapshot> {
        (pid == 100).then(|| ProcSnapshot {
            comm: "big".into(),
            cmdline: "big --serve".into(),
            cgroup: "/app".into(),
            history: vec![(1_000, 500 << 20), (2_000, 500 << 20)],
            exited: true,
            ..Default::default()
        })
    }
    fn top_grower(
        &self,
        scope: Option<&str>,
        window_s: f64,
        _victim: Option<(u32, f64, u64)>,
    ) -> Option<Grower> {
        self.0.borrow_mut().push(scope.map(str::to_string));
        Some(Grower {
            attribution: Default::default(),
            pid: 200,
            comm: "grower".into(),
            growth_bytes: 90 << 20,
            from_bytes: 10 << 20,
            to_bytes: 100 << 20,
            window_s,
            growing_at_kill: true,
        })
    }
    fn mono_to_unix_ms(&self, ns: u64) -> u64 {
        ns / 1_000_000
    }
    fn page_size(&self) -> u64 {
        4096
    }
}

fn rec(pid: u32, target: u32, ts_ms: u64, event: OomEvent) -> Record {
    Record {
        pid,
        tgid: pid,
        target,
        ts_ns: ts_ms * 1_000_000,
        comm: "grower".into(),
        event,
    }
}

fn line_ending(pid: u32, ts_ms: u64, text: &str, starts: bool, end: LineEnd) -> Record {
    let l = ConsoleLine {
        starts,
        end,
        text: text.into(),
    };
    rec(pid, 0, ts_ms, OomEvent::Line(l))
}

/// A whole console line (it ended with a newline).
fn line(pid: u32, ts_ms: u64, text: &str) -> Record {
    line_ending(pid, ts_ms, text, false, LineEnd::Newline)
}

/// The first line of a report.
fn first_line(pid: u32, ts_ms: u64, text: &str) -> Record {
    line_ending(pid, ts_ms, text, true, LineEnd::Newline)
}

/// A pr_cont fragment that the next line continues.
fn fragment(pid: u32, ts_ms: u64, text: &str) -> Record {
    line_ending(pid, ts_ms, text, false, LineEnd::Fragment)
}

/// oom:mark_victim with these sizes in kB and oom_score_adj.
fn mark(pid: u32, victim: u32, ts_ms: u64, anon_kb: u64, pgtables_kb: u64, adj: i32) -> Record {
    let kb = |v: u64| v * 1024;
    let v = Marked {
        total_vm_bytes: kb(1000),
        rss_anon_bytes: kb(anon_kb),
        rss_file_bytes: 0,
        rss_shmem_bytes: 0,
        pgtables_bytes: kb(pgtables_kb),
        uid: 0,
        oom_score_adj: adj,
        life: None,
    };
    rec(pid, victim, ts_ms, OomEvent::MarkVictim(v))
}

fn victim_exit(victim: u32, ts_ms: u64) -> Record {
    rec(0, victim, ts_ms, OomEvent::VictimExit)
}

fn reaped(victim: u32, ts_ms: u64) -> Record {
    rec(0, victim, ts_ms, OomEvent::Reaper(ReaperStage::Finish))
}

fn report_lines(a: &mut Assembler, ctx: &dyn OomContext, tid: u32, victim: u32, t0: u64) {
    let first = first_line(
        tid,
        t0,
        "grower invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
    );
    a.handle(first, ctx, 0);
    a.handle(
        line(tid, t0 + 1, "memory: usage 131072kB, limit 131072kB, failcnt 10"),
        ctx,
        0,
    );
    // The constraint line arrives in pr_cont fragments.
    let frag = fragment(
        tid,
        t0 + 2,
        "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null)",
    );
    a.handle(frag, ctx, 0);
    let frag = fragment(tid, t0 + 2, ",cpuset=/,mems_allowed=0,oom_memcg=/app");
    a.handle(frag, ctx, 0);
    a.handle(
        line(tid, t0 + 2, ",task_memcg=/app,task=big,pid=100,uid=0"),
        ctx,
        0,
    );
    a.handle(mark(tid, victim, t0 + 3, 100 * 1024, 8, 1000), ctx, 0);
    a.handle(line(tid, t0 + 4, "Memory cgroup out of memory: Killed process 100 (big) total-vm:1000kB, anon-rss:102400kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:8kB oom_score_adj:1000"), ctx, 0);
}

fn control_rec(tid: u32, victim: u32, ts_ms: u64) -> Record {
    let c = Control {
        constraint: Constraint::Known(OomConstraint::Memcg),
        totalpages: 32768,
        chosen_points: 25050,
        memcg_id: Some(27),
        order: 0,
        gfp_mask: 0xcc0,
        source: HookSource::Trampoline,
    };
    rec(tid, victim, ts_ms, OomEvent::Control(c))
}

/// struct oom_control comes on the victims' ring, the report on the
/// other: whichever is read first, one incident carries both, and the
/// oom_lock time lands in it too.
#[test]
fn oom_control_joins_its_report_in_either_ring_order() {
    for control_first in [true, false] {
        let mut a = Assembler::new();
        let ctx = Ctx::default();
        if control_first {
            a.handle(control_rec(200, 100, 9_999), &ctx, 0);
            report_lines(&mut a, &ctx, 200, 100, 10_000);
        } else {
            // The console ring drained first, all of it; then the
            // victims' ring: the control record precedes the mark.
            let mut b = Assembler::new();
            report_lines(&mut b, &ctx, 200, 100, 10_000);
            let mark = b.pending.iter_mut().find_map(|p| p.mark.take()).unwrap();
            let mark = mark.clone().with(OomEvent::MarkVictim(mark.event));
            a = b;
            a.pending.retain(|p| !p.lines.is_empty());
            a.handle(control_rec(200, 100, 9_999), &ctx, 0);
            a.handle(mark, &ctx, 0);
        }
        let lock = LockHeld {
            enter_ns: 9_998 * 1_000_000,
            return_ns: 10_010 * 1_000_000,
            ret: 1,
            source: HookSource::Trampoline,
        };
        a.handle(rec(200, 200, 10_010, OomEvent::LockHeld(lock)), &ctx, 0);
        a.handle(victim_exit(100, 10_020), &ctx, 0);
        a.handle(reaped(100, 10_030), &ctx, 0);
        let out = a.poll(20_000 * 1_000_000, &ctx, 0);
        assert_eq!(out.len(), 1, "control first: {control_first}");
        let i = &out[0];
        let oc = i.oom_control.as_ref().expect("oom_control");
        assert_eq!(
            (
                oc.constraint.as_str(),
                oc.totalpages,
                oc.chosen_pid,
                oc.chosen_points,
                oc.memcg_id
            ),
            ("memcg", 32768, 100, 25050, Some(27))
        );
        assert_eq!(
            (oc.source.as_str(), oc.gfp_mask.as_str(), oc.order),
            ("fentry oom_kill_process", "0xcc0", 0)
        );
        assert_eq!(i.report_lines.len(), 4);
        assert_eq!(i.victim.as_ref().unwrap().pid, 100);
        let lock = i.oom_lock.as_ref().expect("oom_lock");
        assert_eq!(
            (lock.source.as_str(), lock.held_ms),
            ("fexit out_of_memory", 12.0)
        );
    }
}

/// oom_kill_process() entered, but the chosen task was already exiting
/// and nothing was killed: no incident.
#[test]
fn oom_control_alone_is_not_an_incident() {
    let mut a = Assembler::new();
    let ctx = Ctx::default();
    a.handle(control_rec(200, 100, 10_000), &ctx, 0);
    assert!(a.poll(100_000 * 1_000_000, &ctx, 0).is_empty());
    assert!(a.pending.is_empty());
}

#[test]
fn innocent_victim_is_flagged_and_timings_are_relative_to_invocation() {
    let mut a = Assembler::new();
    let ctx = Ctx::default();
    report_lines(&mut a, &ctx, 200, 100, 10_000);
    assert!(
        a.poll(10_004 * 1_000_000, &ctx, 0).is_empty(),
        "waits for the exit"
    );
    a.handle(victim_exit(100, 10_020), &ctx, 0);
    a.handle(reaped(100, 10_030), &ctx, 0);
    let out = a.poll(10_031 * 1_000_000, &ctx, 2);
    assert_eq!(out.len(), 1);
    assert_eq!(
        ctx.0.borrow().as_slice(),
        &[Some("/app".to_string())],
        "growth compared inside the memcg"
    );
    let i = &out[0];
    assert_eq!(i.constraint, "memcg");
    assert_eq!(i.memcg.as_deref(), Some("/app"));
    assert_eq!(i.memcg_limit_bytes, Some(128 << 20));
    let v = i.victim.as_ref().unwrap();
    assert_eq!((v.pid, v.comm.as_str(), v.oom_score_adj), (100, "big", 1000));
    assert_eq!(v.rss_anon_bytes, 100 << 20);
    assert!(!i.victim_was_top_grower);
    assert_eq!(i.top_grower.as_ref().unwrap().pid, 200);
    assert!(
        i.summary.contains("NOT the process that grew: pid 200 (grower)"),
        "{}",
        i.summary
    );
    assert_eq!(i.timings_ms.to_kill, Some(3.0));
    assert_eq!(i.timings_ms.to_exit, Some(20.0));
    assert_eq!(i.timings_ms.to_reaped, Some(30.0));
    assert_eq!(i.report_lines.len(), 4);
    assert!(i.report_complete);
    assert_eq!(i.lost_events, 2);
    assert_eq!(i.invoker.pid, 200);
    assert_eq!(i.invoker.gfp_mask.as_deref(), Some("0xcc0(GFP_KERNEL)"));
}

#[test]
fn interleaved_reports_stay_apart() {
    let mut a = Assembler::new();
    let ctx = Ctx::default();
    // Two invokers printing at the same time.
    let s1 = first_line(
        1,
        100,
        "a invoked oom-killer: gfp_mask=0x0, order=0, oom_score_adj=0",
    );
    let s2 = first_line(
        2,
        101,
        "b invoked oom-killer: gfp_mask=0x0, order=0, oom_score_adj=0",
    );
    a.handle(s1, &ctx, 0);
    a.handle(s2, &ctx, 0);
    a.handle(
        line(
            2,
            102,
            "oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/b,task_memcg=/b,task=b,pid=2,uid=0",
        ),
        &ctx,
        0,
    );
    a.handle(
        line(
            1,
            103,
            "oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/a,task_memcg=/a,task=a,pid=1,uid=0",
        ),
        &ctx,
        0,
    );
    let out = a.poll(u64::MAX / 2, &ctx, 0);
    assert_eq!(out.len(), 2);
    for i in &out {
        let want = if i.invoker.pid == 1 { "/a" } else { "/b" };
        assert!(i
            .report_lines
            .iter()
            .all(|l| !l.text.contains("oom_memcg") || l.text.contains(want)));
        assert!(i.victim.is_none());
    }
}

#[test]
fn a_report_printed_by_another_task_joins_its_victim() {
    let mut a = Assembler::new();
    let ctx = Ctx::default();
    // The victim is marked first, by the invoker (tid 200)...
    a.handle(mark(200, 100, 10_000, 100 * 1024, 8, 0), &ctx, 0);
    // ...and the report lines come from task 300, which held the
    // console lock, with timestamps before the mark.
    let first = first_line(
        300,
        9_999,
        "grower invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
    );
    a.handle(first, &ctx, 0);
    a.handle(
        line(
            300,
            10_001,
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/app,task_memcg=/app,task=big,pid=100,uid=0",
        ),
        &ctx,
        0,
    );
    a.handle(line(300, 10_002, "Memory cgroup out of memory: Killed process 100 (big) total-vm:1000kB, anon-rss:102400kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:8kB oom_score_adj:0"), &ctx, 0);
    a.handle(victim_exit(100, 10_020), &ctx, 0);
    let out = a.poll(10_020 * 1_000_000 + AFTER_EXIT_NS + 1, &ctx, 0);
    assert_eq!(out.len(), 1, "one incident, not two");
    let i = &out[0];
    assert_eq!(i.constraint, "memcg");
    assert_eq!(i.memcg.as_deref(), Some("/app"));
    assert_eq!(i.report_lines.len(), 3);
    assert_eq!(i.invoker.pid, 200);
    assert_eq!(i.report_printed_by, Some(300));
    assert!(a.poll(u64::MAX / 2, &ctx, 0).is_empty(), "no orphan left");
}

#[test]
fn rate_limited_report_still_makes_an_incident() {
    let mut a = Assembler::new();
    let ctx = Ctx::default();
    a.handle(mark(7, 100, 50, 1024, 0, 0), &ctx, 0);
    a.handle(line(7, 51, "Memory cgroup out of memory: Killed process 100 (big) total-vm:1kB, anon-rss:1024kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:0kB oom_score_adj:0"), &ctx, 0);
    a.handle(victim_exit(100, 60), &ctx, 0);
    let out = a.poll(2_000 * 1_000_000, &ctx, 0);
    assert_eq!(out.len(), 1);
    assert!(!out[0].report_complete);
    assert_eq!(out[0].report_lines.len(), 1);
    assert_eq!(out[0].victim.as_ref().unwrap().pid, 100);
}

#[test]
fn line_levels_follow_the_report_structure() {
    let lines = [
        "x invoked oom-killer: gfp_mask=0x0, order=0, oom_score_adj=0",
        "CPU: 0 UID: 0 PID: 1 Comm: x",
        " dump_stack_lvl+0x57/0x80",
        "memory: usage 1kB, limit 1kB, failcnt 1",
        "[  pid  ]   uid  tgid total_vm      rss name",
        "oom-kill:constraint=CONSTRAINT_MEMCG",
        "Memory cgroup out of memory: Killed process 1 (x)",
    ];
    assert_eq!(
        report_line_levels(lines.into_iter(), 4),
        vec![4, 4, 4, 6, 6, 6, 3]
    );
}

/// An incident reads back as itself: built from kernel records (the
/// report lines, the mark, struct oom_control, oom_lock, the exit and the
/// reaper), written as the `oom_kill` line of events.jsonl, read back
/// into the same type, and equal. A field renamed on one side only, or a
/// word that does not read back, fails here.
/// A whole incident as the assembler makes it from synthetic kernel
/// records (report lines, mark, struct oom_control, oom_lock, exit,
/// reaper), for the tests of what reads incidents back.
pub(crate) fn sample_incident() -> Incident {
    let mut a = Assembler::new();
    let ctx = Ctx::default();
    a.handle(control_rec(200, 100, 9_999), &ctx, 0);
    report_lines(&mut a, &ctx, 200, 100, 10_000);
    let lock = LockHeld {
        enter_ns: 9_998 * 1_000_000,
        return_ns: 10_010 * 1_000_000,
        ret: 1,
        source: HookSource::Kprobe,
    };
    a.handle(rec(200, 200, 10_010, OomEvent::LockHeld(lock)), &ctx, 0);
    a.handle(victim_exit(100, 10_020), &ctx, 0);
    a.handle(reaped(100, 10_030), &ctx, 0);
    let mut out = a.poll(20_000 * 1_000_000, &ctx, 3);
    assert_eq!(out.len(), 1);
    out.remove(0)
}

#[test]
fn an_incident_reads_back_as_itself() {
    let written = &sample_incident();
    assert!(written.oom_control.is_some() && written.oom_lock.is_some() && written.victim.is_some());
    let line = crate::fmt::json_line(written).unwrap();
    let read: Incident = serde_json::from_str(&line).unwrap();
    assert_eq!(&read, written);
    // The words are written as they were when they were strings.
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (
            v["type"].as_str(),
            v["reaper"].as_str(),
            v["memcg_from"].as_str(),
            v["oom_control"]["constraint"].as_str(),
            v["oom_control"]["source"].as_str(),
            v["oom_lock"]["source"].as_str(),
        ),
        (
            Some("oom_kill"),
            Some("reaped"),
            Some("report"),
            Some("memcg"),
            Some("fentry oom_kill_process"),
            Some("kretprobe out_of_memory"),
        )
    );
}

/// A pool: the victim (pid 100) and the top grower (pid 200) as the
/// context knows them; the grower's command and the victim's rise vary.
struct PoolCtx {
    grower_comm: &'static str,
    grower_exe: &'static str,
    grower_cmdline: &'static str,
    grower_cgroup: &'static str,
    victim_from_mib: u64,
}

impl OomContext for PoolCtx {
    fn snapshot(&self, pid: u32, _start: Option<u64>) -> Option<ProcSnapshot> {
        let base = ProcSnapshot {
            comm: "worker".into(),
            exe: "/usr/bin/worker".into(),
            exited: true,
            ..Default::default()
        };
        match pid {
            // Born at 1 s, allocated at start-up, flat until the kill at 10 s.
            100 => Some(ProcSnapshot {
                cmdline: "worker --job x".into(),
                cgroup: "/app".into(),
                history: vec![(1_000, self.victim_from_mib << 20), (1_100, 100 << 20), (9_000, 100 << 20)],
                birth_ms: Some((1_000, self.victim_from_mib << 20)),
                ..base
            }),
            200 => Some(ProcSnapshot {
                comm: self.grower_comm.into(),
                exe: self.grower_exe.into(),
                cmdline: self.grower_cmdline.into(),
                cgroup: self.grower_cgroup.into(),
                ..base
            }),
            _ => None,
        }
    }
    fn top_grower(&self, _: Option<&str>, window_s: f64, _: Option<(u32, f64, u64)>) -> Option<Grower> {
        Some(Grower {
            attribution: Default::default(),
            pid: 200,
            comm: "worker".into(),
            growth_bytes: 90 << 20,
            from_bytes: 10 << 20,
            to_bytes: 100 << 20,
            window_s,
            growing_at_kill: true,
        })
    }
    fn mono_to_unix_ms(&self, ns: u64) -> u64 {
        ns / 1_000_000
    }
    fn page_size(&self) -> u64 {
        4096
    }
}

fn pool_incident(ctx: &PoolCtx) -> Incident {
    let mut a = Assembler::new();
    report_lines(&mut a, ctx, 200, 100, 10_000);
    a.handle(victim_exit(100, 10_020), ctx, 0);
    a.handle(reaped(100, 10_030), ctx, 0);
    let mut out = a.poll(10_031 * 1_000_000, ctx, 0);
    assert_eq!(out.len(), 1);
    out.remove(0)
}

/// The victim and the top grower run the same executable and command in
/// the same memcg, and grew alike: the choice did not matter, and it is
/// not a wrong victim. Change any one of those and it is.
#[test]
fn a_sibling_doing_the_same_work_is_not_a_wrong_victim() {
    let same = PoolCtx {
        grower_comm: "worker",
        grower_exe: "/usr/bin/worker",
        grower_cmdline: "worker --job x",
        grower_cgroup: "/app",
        victim_from_mib: 4,
    };
    let i = pool_incident(&same);
    assert!(!i.victim_was_top_grower, "the grower is still named");
    assert_eq!(i.top_grower.as_ref().unwrap().pid, 200);
    assert_eq!(i.victim_choice, Some(VictimChoice::Sibling));
    assert!(!i.wrong_victim());
    assert!(i.summary.contains("the choice did not matter"), "{}", i.summary);
    assert!(!i.summary.contains("NOT the process"), "{}", i.summary);
    // It allocated at start-up, 9 s before the kill, and held it.
    assert!(
        i.summary.contains("allocated 96.0 MiB at start-up, 8.9 s before the kill; flat since"),
        "{}",
        i.summary
    );
    // A worker whose exe leaktrace has not read yet: its command line
    // still says what it runs.
    let no_exe = PoolCtx { grower_exe: "", ..same };
    assert_eq!(pool_incident(&no_exe).victim_choice, Some(VictimChoice::Sibling));
    for (other, why) in [
        (
            PoolCtx {
                grower_comm: "batch",
                ..same
            },
            "another comm",
        ),
        (
            PoolCtx {
                grower_exe: "",
                grower_cmdline: "",
                ..same
            },
            "a command line not read yet: the comm alone is no proof",
        ),
        (
            PoolCtx {
                grower_exe: "/opt/other/worker",
                ..same
            },
            "another executable of the same name",
        ),
        (
            PoolCtx {
                grower_cmdline: "worker --job y",
                ..same
            },
            "another command",
        ),
        (
            PoolCtx {
                grower_cgroup: "/other",
                ..same
            },
            "another memcg",
        ),
        (
            PoolCtx {
                victim_from_mib: 80,
                ..same
            },
            "a victim that rose 20 MiB against the grower's 90",
        ),
    ] {
        let i = pool_incident(&other);
        assert_eq!(i.victim_choice, Some(VictimChoice::Wrong), "{why}");
        assert!(i.wrong_victim(), "{why}");
        assert!(i.summary.contains("NOT the process that grew"), "{why}: {}", i.summary);
    }
}

/// A recording made before `victim_choice` was written: the old flag decides.
#[test]
fn an_old_incident_without_a_choice_reads_as_before() {
    let mut i = sample_incident();
    i.victim_choice = None;
    i.victim_was_top_grower = false;
    assert!(i.wrong_victim());
    i.victim_was_top_grower = true;
    assert!(!i.wrong_victim());
}

/// A newer snapshot that knows less (the model reset the victim when its
/// life record came) is completed from the older one, never emptied.
#[test]
fn a_snapshot_that_knows_less_is_completed_from_the_older() {
    let old = ProcSnapshot {
        comm: "worker".into(),
        cmdline: "worker --job x".into(),
        cgroup: "/app".into(),
        exe: "/usr/bin/worker".into(),
        history: vec![(1_000, 4 << 20), (2_000, 100 << 20)],
        birth_ms: Some((1_000, 4 << 20)),
        ..Default::default()
    };
    let reset = ProcSnapshot {
        birth_ms: Some((0, 0)),
        ..Default::default()
    };
    let s = super::finish::richer(Some(reset), Some(old.clone())).unwrap();
    assert_eq!((s.comm.as_str(), s.cmdline.as_str(), s.cgroup.as_str()), ("worker", "worker --job x", "/app"));
    assert_eq!(s.history, old.history);
    assert_eq!(s.birth_ms, Some((0, 0)), "the newer's own facts stay");
    let newer = ProcSnapshot {
        cgroup: "/moved".into(),
        history: vec![(1_000, 4 << 20), (2_000, 100 << 20), (3_000, 120 << 20)],
        ..old.clone()
    };
    let s = super::finish::richer(Some(newer), Some(old.clone())).unwrap();
    assert_eq!((s.cgroup.as_str(), s.history.len()), ("/moved", 3));
    assert!(super::finish::richer(None, None).is_none());
    assert_eq!(super::finish::richer(None, Some(old.clone())).unwrap().cmdline, old.cmdline);
}
