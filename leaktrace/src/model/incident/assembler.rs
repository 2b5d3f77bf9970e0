//! The assembler: kernel records in, one pending incident per OOM, closed
//! when complete (or when it has waited long enough).
use super::*;

#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) invoker_tid: u32,
    /// The invoker's process, from the kernel's records.
    pub(super) invoker_tgid: Option<u32>,
    pub(super) invoker_comm: String,
    pub(super) start_ns: Option<u64>,
    pub(super) lines: Vec<Line>,
    pub(super) lines_dropped: usize,
    /// The last line was a fragment that the next one continues.
    pub(super) last_open: bool,
    pub(super) report_done: bool,
    /// oom:mark_victim (its `ts_ns` is the time of the kill).
    pub(super) mark: Option<Record<Marked>>,
    pub(super) snapshot: Option<ProcSnapshot>,
    pub(super) sigkill: Option<u64>,
    pub(super) exit_ns: Option<u64>,
    pub(super) reap_finish_ns: Option<u64>,
    pub(super) reap_skipped: bool,
    pub(super) reaped: Option<kernel_text::Reaped>,
    pub(super) lost_before: u64,
    pub(super) created_ns: u64,
    /// (tgid, comm, begin ns, end ns) of reclaim episodes near the report.
    pub(super) stalls: Vec<(u32, String, u64, u64)>,
    pub(super) psi_start: Option<(u64, u64, u64)>,
    /// Consoles and printk levels as they were when the report started.
    pub(super) host: Option<crate::host::facts::Facts>,
    /// The task the report lines came from, when it was not the invoker.
    pub(super) report_task: Option<u32>,
    /// struct oom_control from the oom-control hook (OOM_CONTROL record).
    pub(super) control: Option<Record<Control>>,
    /// out_of_memory()'s run with oom_lock held (OOM_LOCK_HELD record).
    pub(super) lock_held: Option<Record<LockHeld>>,
}

impl Pending {
    fn victim_pid(&self) -> Option<u32> {
        self.mark.as_ref().map(|r| r.target)
    }
}

pub struct Assembler {
    /// After the victim exited, wait at least until its exit record has
    /// reached the model (one sample later at most), and this long in any
    /// case. Default AFTER_EXIT_NS.
    pub after_exit_ns: u64,
    pub(super) pending: Vec<Pending>,
    /// Pending incidents pushed out by MAX_PENDING newer ones: they are
    /// closed early (as incomplete incidents), never dropped.
    pub(super) evicted: Vec<Pending>,
    pub closed_early: u64,
}

impl Default for Assembler {
    fn default() -> Self {
        Self {
            after_exit_ns: AFTER_EXIT_NS,
            pending: Vec::new(),
            evicted: Vec::new(),
            closed_early: 0,
        }
    }
}

impl Assembler {
    pub fn new() -> Self {
        Self::default()
    }

    fn by_invoker(&mut self, tid: u32) -> Option<&mut Pending> {
        self.pending
            .iter_mut()
            .rev()
            .find(|p| p.invoker_tid == tid && !p.report_done)
    }

    fn by_victim(&mut self, pid: u32) -> Option<&mut Pending> {
        self.pending
            .iter_mut()
            .rev()
            .find(|p| p.victim_pid() == Some(pid))
    }

    fn open(&mut self, tid: u32, tgid: u32, comm: &str, ts: u64, lost: u64) -> &mut Pending {
        if self.pending.len() >= MAX_PENDING {
            // Closed now with what it has: a kill is never lost for want
            // of room.
            self.evicted.push(self.pending.remove(0));
            self.closed_early += 1;
            crate::limits::PENDING_INCIDENTS.hit();
        }
        self.pending.push(Pending {
            invoker_tid: tid,
            invoker_tgid: (tgid != 0).then_some(tgid),
            invoker_comm: comm.to_string(),
            lost_before: lost,
            created_ns: ts,
            ..Default::default()
        });
        self.pending.last_mut().unwrap()
    }

    /// Feeds one kernel record. `lost` is the kernel's running count of OOM
    /// events that did not fit in the ring buffer.
    ///
    /// The `match` has no `_` arm on purpose: a new kind of OOM record
    /// (a new `OomEvent` variant) does not compile until it is handled here.
    pub fn handle(&mut self, r: Record, ctx: &dyn OomContext, lost: u64) {
        let (r, event) = r.split();
        match event {
            OomEvent::Line(l) => self.console(r.with(l), ctx, lost),
            OomEvent::MarkVictim(v) => self.mark_victim(r.with(v), ctx, lost),
            OomEvent::Sigkill { .. } => {
                if let Some(p) = self.by_invoker(r.pid) {
                    p.sigkill.get_or_insert(r.ts_ns);
                }
            }
            OomEvent::VictimExit => {
                if let Some(p) = self.by_victim(r.target) {
                    p.exit_ns.get_or_insert(r.ts_ns);
                }
            }
            OomEvent::Reaper(ReaperStage::Finish) => {
                if let Some(p) = self.by_victim(r.target) {
                    p.reap_finish_ns.get_or_insert(r.ts_ns);
                }
            }
            OomEvent::Reaper(ReaperStage::Skip) => {
                if let Some(p) = self.by_victim(r.target) {
                    p.reap_skipped = true;
                }
            }
            // The reaper's wake-up and start add nothing that its finish
            // (or skip) does not say.
            OomEvent::Reaper(ReaperStage::Wake | ReaperStage::Start) => {}
            OomEvent::ReclaimStall(st) => {
                let (b, e) = (st.begin_ns, st.end_ns);
                // Every report whose time is near the episode.
                for p in self.pending.iter_mut() {
                    let start = p.start_ns.unwrap_or(p.created_ns);
                    let end = p.mark.as_ref().map(|m| m.ts_ns).unwrap_or(start) + 2_000_000_000;
                    if e + 2_000_000_000 >= start && b <= end && p.stalls.len() < 4096 {
                        p.stalls.push((r.tgid, r.comm.clone(), b, e));
                    }
                }
            }
            OomEvent::Control(c) => {
                // oom_kill_process() runs before the victim is marked, in
                // the invoker: the mark that follows finds this pending.
                let tid = r.pid;
                let p = match self.by_invoker(tid) {
                    Some(p) if p.mark.is_none() && p.control.is_none() => p,
                    _ => self.open(tid, r.tgid, &r.comm, r.ts_ns, lost),
                };
                p.control = Some(r.with(c));
            }
            OomEvent::LockHeld(l) => {
                // out_of_memory() returned after the kill: the newest
                // incident of this invoker that began inside that run.
                let (b, e) = (l.enter_ns, l.return_ns);
                if let Some(p) = self.pending.iter_mut().rev().find(|p| {
                    (p.invoker_tid == r.target || p.report_task == Some(r.target))
                        && p.lock_held.is_none()
                        && (b..=e).contains(&p.mark.as_ref().map(|m| m.ts_ns).unwrap_or(p.created_ns))
                }) {
                    p.lock_held = Some(r.with(l));
                }
            }
        }
    }

    fn mark_victim(&mut self, r: Record<Marked>, ctx: &dyn OomContext, lost: u64) {
        let tid = r.pid;
        let victim = r.target;
        let p = match self.by_invoker(tid) {
            Some(p) if p.mark.is_none() => p,
            // A rate-limited report prints no header: the kill is
            // still an incident.
            _ => self.open(tid, r.tgid, &r.comm, r.ts_ns, lost),
        };
        // What the model knew before the kernel's record of the victim's
        // life is handed over: that hand-over can leave the model knowing
        // less (seen under a host-wide fork storm: the victim's samples,
        // argv and exe gone, and a sibling judged "wrong" for it).
        let before = ctx.snapshot(victim, victim_start(&r));
        if let Some(l) = r.event.life.as_ref() {
            ctx.victim_marked(victim, l);
        }
        // Known now, while the victim is certainly alive; the
        // verdict is made when the incident is complete.
        p.snapshot = super::finish::richer(ctx.snapshot(victim, victim_start(&r)), before);
        p.mark = Some(r);
    }

    fn console(&mut self, r: Record<ConsoleLine>, ctx: &dyn OomContext, lost: u64) {
        let starts = r.event.starts;
        let text = &r.event.text;
        if let Some(reaped) = kernel_text::parse_reaped(text) {
            if let Some(p) = self.by_victim(reaped.pid) {
                p.reaped = Some(reaped);
            }
            return;
        }
        let killed = kernel_text::parse_killed(text);
        let tid = r.pid;
        let p = if starts {
            let comm = kernel_text::parse_invoked(text)
                .map(|i| i.comm)
                .unwrap_or_else(|| r.comm.clone());
            let psi = ctx.psi();
            // oom_kill_process() is entered just before it prints the
            // report: its struct oom_control record (the other ring, often
            // read first) already opened this incident.
            let opened = self.pending.iter().rposition(|p| {
                p.invoker_tid == tid
                    && p.control.is_some()
                    && p.lines.is_empty()
                    && p.mark.is_none()
                    && p.start_ns.is_none()
            });
            let p = match opened {
                Some(i) => {
                    let p = &mut self.pending[i];
                    p.invoker_comm = comm;
                    p
                }
                None => self.open(tid, r.tgid, &comm, r.ts_ns, lost),
            };
            p.start_ns = Some(r.ts_ns);
            p.psi_start = psi;
            p.host = ctx.host();
            p
        } else if let Some(p) = self
            .pending
            .iter_mut()
            .rev()
            .find(|p| p.invoker_tid == tid && !p.report_done)
        {
            p
        } else if let Some(k) = &killed {
            // The "Killed process" line of a rate-limited report.
            match self
                .pending
                .iter_mut()
                .rev()
                .find(|p| p.victim_pid() == Some(k.pid) && !p.report_done)
            {
                Some(p) => p,
                None => return,
            }
        } else {
            return;
        };
        let ConsoleLine { end, text, .. } = r.event;
        // pr_cont fragments (e.g. the oom-kill:constraint= line is printed
        // in pieces) are joined back into the line dmesg would show.
        let continues =
            p.last_open || (end == LineEnd::Unknown && text.starts_with(',') && !p.lines.is_empty());
        let n = p.lines.len();
        match p.lines.last_mut() {
            Some(last) if continues && last.text.len() + text.len() <= 4096 => last.text.push_str(&text),
            _ if n < MAX_LINES => p.lines.push(Line { ts_ns: r.ts_ns, text }),
            _ => {
                p.lines_dropped += 1;
                crate::limits::OOM_REPORT_LINES.hit();
            }
        }
        p.last_open = end == LineEnd::Fragment;
        if killed.is_some() {
            p.report_done = true;
        }
    }

    /// A report whose lines came from another task than the one that marked
    /// the victim (another task held the console lock and printed them), or
    /// that were handled after the victim's mark, ends up as two pending
    /// incidents: one with the victim and no lines, one with the lines and
    /// no victim. The lines name the victim ("oom-kill:...,pid=N",
    /// "Killed process N"): join them into the first.
    fn merge_split_reports(&mut self) {
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].mark.is_some() || self.pending[i].lines.is_empty() {
                i += 1;
                continue;
            }
            let rep = kernel_text::parse(self.pending[i].lines.iter().map(|l| l.text.as_str()));
            let named = rep
                .killed
                .as_ref()
                .map(|k| k.pid)
                .or_else(|| rep.constraint.as_ref().and_then(|c| c.pid));
            let target = named.and_then(|v| {
                self.pending
                    .iter()
                    .position(|p| p.victim_pid() == Some(v) && p.lines.is_empty())
            });
            match target {
                Some(t) => {
                    let lines = self.pending.remove(i);
                    let t = if t > i { t - 1 } else { t };
                    let p = &mut self.pending[t];
                    p.start_ns = lines.start_ns;
                    p.psi_start = lines.psi_start.or(p.psi_start);
                    p.host = lines.host.or(p.host.take());
                    p.lines = lines.lines;
                    p.lines_dropped = lines.lines_dropped;
                    p.report_done = lines.report_done;
                    p.stalls.extend(lines.stalls);
                    p.report_task = Some(lines.invoker_tid);
                    p.control = lines.control.or(p.control.take());
                    p.lock_held = lines.lock_held.or(p.lock_held.take());
                }
                None => i += 1,
            }
        }
    }

    /// Incidents that are complete, or have waited long enough.
    pub fn poll(&mut self, now_ns: u64, ctx: &dyn OomContext, lost: u64) -> Vec<Incident> {
        let mut out: Vec<Incident> = std::mem::take(&mut self.evicted)
            .into_iter()
            .map(|p| {
                let mut i = finish(p, ctx, lost);
                i.closed_early = true;
                i
            })
            .collect();
        self.merge_split_reports();
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            let ready = match &p.mark {
                Some(r) => {
                    let mark_ns = &r.ts_ns;
                    // Reaped (or the reaper gave up) and the victim's exit
                    // record is in the model; or long enough after the exit.
                    let settled = match p.exit_ns {
                        Some(exit) => {
                            let known = || ctx.snapshot(r.target, victim_start(r)).is_some_and(|s| s.exited);
                            ((p.reap_finish_ns.is_some() || p.reap_skipped) && known())
                                || now_ns >= exit + self.after_exit_ns
                        }
                        None => false,
                    };
                    (p.report_done || p.start_ns.is_none()) && settled || now_ns >= mark_ns + SETTLE_NS
                }
                None => now_ns >= p.created_ns + NO_VICTIM_NS,
            };
            if ready {
                let p = self.pending.remove(i);
                // oom_kill_process() entered but nothing followed (the
                // chosen task was already exiting): not a kill.
                if p.mark.is_none() && p.lines.is_empty() && p.control.is_some() {
                    continue;
                }
                out.push(finish(p, ctx, lost));
            } else {
                i += 1;
            }
        }
        out
    }
}

/// The victim's start time as the kernel kept it: with its pid, its
/// identity in the model.
pub(super) fn victim_start(r: &Record<Marked>) -> Option<u64> {
    r.event.life.map(|l| l.start_ns).filter(|s| *s != 0)
}
