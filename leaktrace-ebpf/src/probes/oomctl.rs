//! The OOM killer's own parameters, where the kernel lets a program attach
//! to its functions (fentry, else kprobe): `struct oom_control` as
//! oom_kill_process() receives it, and the time out_of_memory() runs with
//! `oom_lock` held by its caller. Where neither is allowed (this project's
//! development host refuses fentry and has no kprobes), the loader says so
//! and the incident keeps what the report text gives.
//!
//! Both go on `OOM_CRIT`, the small ring that report lines cannot crowd
//! out. Member offsets come from the running kernel's BTF (`TASK_OFFS`,
//! indices `off::OC_*`), read with `bpf_probe_read_kernel`.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{fentry, fexit, kprobe, kretprobe, map},
    maps::LruHashMap,
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use leaktrace_common::{hook_source, off, LockHeldRecord, OomControlRecord, OomKind};

use super::{
    kread::{o, Mem, Probe},
    oom::{emit_crit, header},
};

/// Threads inside out_of_memory() -> when they entered. LRU: an entry whose
/// return was never seen cannot keep a slot for ever.
#[map]
static OOM_ENTER: LruHashMap<u32, u64> = LruHashMap::with_max_entries(1024, 0);

#[inline(always)]
fn oom_control(oc: u64, source: u32) {
    let chosen = Probe::u64(oc, o(off::OC_CHOSEN));
    let tgid = Probe::u32(chosen, o(off::TASK_TGID));
    let memcg = Probe::u64(oc, o(off::OC_MEMCG));
    // memcg->css.cgroup->kn->id, as the task iterator names memcgs.
    let memcg_id = if memcg == 0 || o(off::MEMCG_CSS) == u64::MAX {
        0
    } else {
        let css = memcg + o(off::MEMCG_CSS);
        let cg = Probe::u64(css, o(off::CSS_CGROUP));
        let kn = Probe::u64(cg, o(off::CGROUP_KN));
        Probe::u64(kn, o(off::KN_ID))
    };
    emit_crit(OomControlRecord {
        hdr: header(OomKind::OomControl, tgid),
        constraint: Probe::u32(oc, o(off::OC_CONSTRAINT)),
        order: Probe::u32(oc, o(off::OC_ORDER)) as i32,
        gfp_mask: Probe::u32(oc, o(off::OC_GFP_MASK)),
        source,
        totalpages: Probe::u64(oc, o(off::OC_TOTALPAGES)),
        chosen_points: Probe::u64(oc, o(off::OC_CHOSEN_POINTS)) as i64,
        memcg_id,
        has_memcg: (memcg != 0) as u32,
        _pad: 0,
    });
}

#[fentry(function = "oom_kill_process")]
pub fn oom_kill_process_fentry(ctx: FEntryContext) -> i32 {
    oom_control(ctx.arg::<u64>(0), hook_source::FENTRY);
    0
}

#[kprobe]
pub fn oom_kill_process_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(oc) = ctx.arg::<u64>(0) {
        oom_control(oc, hook_source::KPROBE);
    }
    0
}

#[inline(always)]
fn enter() {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let _ = OOM_ENTER.insert(&tid, &now, 0);
}

#[inline(always)]
fn leave(ret: u64, source: u32) {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: plain lookup; the value is copied out before the removal.
    let Some(start) = (unsafe { OOM_ENTER.get(&tid) }).copied() else {
        return;
    };
    let _ = OOM_ENTER.remove(&tid);
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    emit_crit(LockHeldRecord {
        hdr: header(OomKind::OomLockHeld, tid),
        enter_ns: start,
        return_ns: now,
        ret: (ret & 0xff) as u32,
        source,
    });
}

#[fentry(function = "out_of_memory")]
pub fn out_of_memory_fentry(_ctx: FEntryContext) -> i32 {
    enter();
    0
}

#[fexit(function = "out_of_memory")]
pub fn out_of_memory_fexit(ctx: FExitContext) -> i32 {
    // out_of_memory(struct oom_control *) -> bool: the return value is the
    // argument after the last one.
    leave(ctx.arg::<u64>(1), hook_source::FENTRY);
    0
}

#[kprobe]
pub fn out_of_memory_kprobe(_ctx: ProbeContext) -> u32 {
    enter();
    0
}

#[kretprobe]
pub fn out_of_memory_kretprobe(ctx: RetProbeContext) -> u32 {
    leave(ctx.ret::<u64>(), hook_source::KPROBE);
    0
}
